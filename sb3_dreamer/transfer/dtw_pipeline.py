"""Reward-free transfer across a dynamics gap with the learned DTW-alignment reward, end to end.

Seed project: "Mitigating Dynamic Gaps in Policy Transfer Through Trajectory Alignment with Model-based RL and Dynamic
Time Warping" (TroddenSpade/Telepath). Pipeline: (1) train a source Dreamer on the source env (with rewards);
(2) record reference trajectories of it; (3) train a target Dreamer on the target env whose reward is replaced by
:class:`~sb3_dreamer.alignment.DTWRewardWrapper` (optionally initialised from the source model); (4) evaluate on the
target's true reward, next to a random policy and the source policy run zero-shot on the target.

The target env is wrapped as ``DTWRewardWrapper(Monitor(env))``: the agent learns only from the learned reward, while
Monitor (and so ``rollout/ep_rew_mean``) and the evaluation see the env's own reward, which is never used for learning.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

import sb3_dreamer.envs  # noqa: F401  (registers the sb3_dreamer/... env ids)
from sb3_dreamer.alignment import DTWRewardWrapper, record_trajectories
from sb3_dreamer.dreamer import Dreamer


@dataclasses.dataclass
class TransferConfig:
    """Settings of one transfer run.

    :param source_env: source env id (rewards available)
    :param target_env: target env id (its reward is only used for evaluation)
    :param source_steps: env steps to train the source Dreamer (ignored with ``source_model``)
    :param target_steps: env steps to train the target Dreamer
    :param source_model: path of a trained source Dreamer to reuse instead of training one
    :param n_reference_episodes: source episodes recorded as DTW references
    :param label_mode: one of :data:`sb3_dreamer.alignment.LABEL_MODES`
    :param init_from_source: start the target Dreamer from the source model's weights
    :param dreamer_kwargs: Dreamer constructor arguments for both agents
    :param wrapper_kwargs: extra :class:`DTWRewardWrapper` arguments
    :param eval_episodes: deterministic evaluation episodes on the target's true reward
    :param seed: random seed of every stage
    """

    source_env: str = "sb3_dreamer/PendulumSource-v0"
    target_env: str = "sb3_dreamer/PendulumTarget-v0"
    source_steps: int = 10_000
    target_steps: int = 10_000
    source_model: str | None = None
    n_reference_episodes: int = 10
    label_mode: str = "source_reward"
    init_from_source: bool = False
    dreamer_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    wrapper_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    eval_episodes: int = 10
    seed: int = 0


def evaluate_on_env(policy: Any, env_id: str, episodes: int, seed: int) -> tuple[float, float]:
    """Mean and std of the deterministic return of ``policy`` over ``episodes`` episodes of a fresh ``env_id``.

    :param policy: anything with SB3's ``predict``
    :param env_id: gymnasium id (the env's own reward is what is measured)
    :param episodes: number of episodes
    :param seed: seed of the first reset
    :return: ``(mean, std)``
    """
    env = Monitor(gym.make(env_id))
    env.reset(seed=seed)
    try:
        mean, std = evaluate_policy(policy, env, n_eval_episodes=episodes, deterministic=True)
    finally:
        env.close()
    return float(mean), float(std)


class RandomPolicy:
    """Uniform random actions with SB3's ``predict`` signature (for the random baseline)."""

    def __init__(self, action_space: gym.Space, seed: int) -> None:
        self.action_space = action_space
        self.action_space.seed(seed)

    def predict(self, obs: np.ndarray, state: Any = None, episode_start: Any = None, deterministic: bool = False) -> Any:
        batch = np.asarray(obs).shape[0] if np.asarray(obs).ndim > 1 else None
        if batch is None:
            return self.action_space.sample(), state
        return np.stack([self.action_space.sample() for _ in range(batch)]), state


def run_dtw_transfer(config: TransferConfig, out_dir: str | Path) -> dict[str, Any]:
    """Run the four stages and write ``source.zip``, ``reference.npz``, ``target.zip`` and ``results.json``.

    :param config: the run's settings
    :param out_dir: output folder (created)
    :return: the results: true-reward returns (mean, std) of random, source zero-shot and target policies
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kwargs = dict(config.dreamer_kwargs)
    # 1. Source agent.
    if config.source_model is not None:
        source = Dreamer.load(config.source_model, env=make_vec_env(config.source_env, seed=config.seed))
    else:
        source = Dreamer("MlpPolicy", config.source_env, seed=config.seed, **kwargs)
        source.learn(config.source_steps)
    source_path = out / "source.zip"
    source.save(source_path)
    # 2. Reference trajectories of the source agent on the source env.
    reference = record_trajectories(source, config.source_env, config.n_reference_episodes, seed=config.seed)
    reference_path = reference.save(out / "reference.npz")
    # 3. Target agent on the learned reward (Monitor inside records the true reward for reporting only).
    wrapper_kwargs = dict(reference=reference_path, label_mode=config.label_mode, seed=config.seed, **config.wrapper_kwargs)
    target_env = make_vec_env(
        config.target_env, seed=config.seed, wrapper_class=DTWRewardWrapper, wrapper_kwargs=wrapper_kwargs
    )
    if config.init_from_source:
        target = Dreamer.load(source_path, env=target_env, seed=config.seed)
    else:
        target = Dreamer("MlpPolicy", target_env, seed=config.seed, **kwargs)
    target.learn(config.target_steps)
    target.save(out / "target.zip")
    # 4. Evaluation on the target's true reward.
    probe = gym.make(config.target_env)
    results = dict(
        config=dataclasses.asdict(config),
        random=evaluate_on_env(
            RandomPolicy(probe.action_space, config.seed), config.target_env, config.eval_episodes, config.seed
        ),
        source_zero_shot=evaluate_on_env(source, config.target_env, config.eval_episodes, config.seed),
        target_dtw=evaluate_on_env(target, config.target_env, config.eval_episodes, config.seed),
        source_on_source=evaluate_on_env(source, config.source_env, config.eval_episodes, config.seed),
    )
    probe.close()
    (out / "results.json").write_text(json.dumps(results, indent=1))
    return results
