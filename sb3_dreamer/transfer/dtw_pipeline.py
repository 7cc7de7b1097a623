"""Reward-free transfer across a dynamics gap with the learned DTW-alignment reward, end to end.

Seed project: "Mitigating Dynamic Gaps in Policy Transfer Through Trajectory Alignment with Model-based RL and Dynamic
Time Warping" (TroddenSpade/Telepath). Pipeline: (1) train a source Dreamer on the source env (with rewards);
(2) record reference trajectories of it; (3) train a target Dreamer on the target env whose reward is replaced by
:class:`~sb3_dreamer.alignment.DTWRewardWrapper` (optionally initialised from the source model); (4) evaluate on the
target's true reward, next to a random policy and the source policy run zero-shot on the target.

The target env is wrapped as ``DTWRewardWrapper(Monitor(env))``: the agent learns only from the learned reward, while
Monitor (and so ``rollout/ep_rew_mean``) and the evaluation see the env's own reward, which is never used for learning.

:func:`check_config` runs first (also inside :func:`run_dtw_transfer`): a mistake that would only show after the
source agent's training (unknown env id or argument, source and target spaces that do not match, an unusable
``source_model``) is raised at once as a :class:`~sb3_dreamer.common.usage.UsageError`.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.save_util import json_to_data

import sb3_dreamer.envs  # noqa: F401  (registers the sb3_dreamer/... env ids)
from sb3_dreamer.alignment import LABEL_MODES, DTWRewarder, DTWRewardWrapper, record_trajectories
from sb3_dreamer.common.usage import UsageError, check_env_id, check_keys
from sb3_dreamer.dreamer import Dreamer
from sb3_dreamer.dreamer.policies import DreamerPolicy

#: Dreamer arguments set by the pipeline itself, and by what.
RESERVED_DREAMER_ARGUMENTS = {"policy": "the pipeline (MlpPolicy)", "env": "--source-env/--target-env", "seed": "--seed"}
#: DTWRewardWrapper arguments set by the pipeline itself, and by what.
RESERVED_WRAPPER_ARGUMENTS = {
    "env": "--target-env",
    "reference": "the pipeline (the recorded source episodes)",
    "label_mode": "--label-mode",
    "seed": "--seed",
}


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


def _option(field: str) -> str:
    """Command-line spelling of a :class:`TransferConfig` field, e.g. ``--source-steps``."""
    return "--" + field.replace("_", "-")


def _check_arguments(given: dict[str, Any], function: Any, reserved: dict[str, str], field: str, what: str) -> None:
    """Raise :class:`UsageError` for a key of ``given`` that ``function`` does not accept or that the pipeline sets.

    :param given: the user's keyword arguments
    :param function: the callable they are passed to (its signature is the list of accepted keys)
    :param reserved: keys set by the pipeline, mapped to what sets them
    :param field: the :class:`TransferConfig` field they come from
    :param what: what an accepted key is, for the message
    """
    for key in given:
        if key in reserved:
            raise UsageError(f"{_option(field)}: {key!r} cannot be given here, it is set by {reserved[key]}")
    parameters = inspect.signature(function).parameters
    accepted = set(parameters) - {"self", "_init_setup_model"} - set(reserved)
    check_keys(given, accepted, _option(field), what)


def _spaces(env_id: str) -> tuple[gym.Space, gym.Space]:
    env = gym.make(env_id)
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def _same_kind(first: gym.Space, second: gym.Space) -> bool:
    """Same space class and shape (and number of actions for Discrete); bounds may differ."""
    return (
        type(first) is type(second)
        and first.shape == second.shape
        and getattr(first, "n", None) == getattr(second, "n", None)
        and np.array_equal(getattr(first, "nvec", 0), getattr(second, "nvec", 0))
    )


def check_source_model(path: str | os.PathLike, observation_space: gym.Space, action_space: gym.Space) -> None:
    """Check that ``path`` is a model saved by ``Dreamer.save`` for these spaces, without loading its weights.

    :param path: the model file (``.zip`` is appended if the path does not exist, as SB3's ``load`` does)
    :param observation_space: the source env's observation space
    :param action_space: the source env's action space
    :raises UsageError: naming the file and the problem
    """
    path = os.fspath(path)
    if not os.path.isfile(path) and os.path.isfile(path + ".zip"):
        path += ".zip"
    where = f"--source-model {path!r}"
    if not os.path.isfile(path):
        raise UsageError(f"{where}: no such file (a model saved by Dreamer.save, e.g. source.zip of an earlier run)")
    if not zipfile.is_zipfile(path):
        raise UsageError(f"{where}: not a zip archive, so not a model saved by Dreamer.save")
    try:
        with zipfile.ZipFile(path) as archive:
            stored = json.loads(archive.read("data").decode())
        data = json_to_data(json.dumps({key: stored[key] for key in ("policy_class", "observation_space", "action_space")}))
    except (KeyError, ValueError, zipfile.BadZipFile, OSError) as error:
        raise UsageError(f"{where}: not a model saved by Dreamer.save (no readable SB3 'data' entry: {error})") from None
    policy_class = data.get("policy_class")
    if not (isinstance(policy_class, type) and issubclass(policy_class, DreamerPolicy)):
        name = getattr(policy_class, "__name__", policy_class)
        raise UsageError(f"{where}: saved by another algorithm (policy {name}), not by Dreamer")
    for kind, saved, env_space in (
        ("observation", data.get("observation_space"), observation_space),
        ("action", data.get("action_space"), action_space),
    ):
        if saved != env_space:
            raise UsageError(f"{where}: trained with {kind} space {saved}, but --source-env has {env_space}")


def check_config(config: TransferConfig) -> None:
    """Check a configuration before anything is trained: what would otherwise fail after the source training.

    Messages name the command-line options (each is the :class:`TransferConfig` field of the same name).

    :param config: the run's settings
    :raises UsageError: for a non-positive count, an unknown env id, label mode or argument, envs whose spaces do not
        fit the pipeline, or a ``source_model`` that is missing, not a Dreamer model or trained on other spaces
    """
    for field in ("source_steps", "target_steps", "n_reference_episodes", "eval_episodes"):
        value = getattr(config, field)
        if not isinstance(value, int) or value < 1:
            raise UsageError(f"{_option(field)} must be a positive integer, got {value!r}")
    if config.label_mode not in LABEL_MODES:
        raise UsageError(f"--label-mode: unknown mode {config.label_mode!r}, choose one of {', '.join(LABEL_MODES)}")
    check_env_id(config.source_env)
    check_env_id(config.target_env)
    _check_arguments(
        config.dreamer_kwargs,
        Dreamer.__init__,
        RESERVED_DREAMER_ARGUMENTS,
        "dreamer_kwargs",
        "a Dreamer argument (see help(sb3_dreamer.Dreamer))",
    )
    _check_arguments(
        config.wrapper_kwargs,
        DTWRewarder.__init__,  # the wrapper passes its keyword arguments on to the rewarder
        RESERVED_WRAPPER_ARGUMENTS,
        "wrapper_kwargs",
        "a DTWRewardWrapper argument (see help(sb3_dreamer.alignment.DTWRewarder))",
    )
    source_obs, source_action = _spaces(config.source_env)
    target_obs, target_action = _spaces(config.target_env)
    source, target = f"--source-env {config.source_env}", f"--target-env {config.target_env}"
    if not isinstance(source_obs, gym.spaces.Box):
        raise UsageError(f"{source} has observation space {source_obs}: reference episodes need a Box observation space")
    if not isinstance(target_obs, gym.spaces.Box) or len(target_obs.shape) != 1:
        raise UsageError(f"{target} has observation space {target_obs}: the DTW reward needs a 1-D Box observation space")
    if (int(np.prod(source_obs.shape)),) != target_obs.shape:
        raise UsageError(
            f"{source} observes shape {source_obs.shape}, {target} observes shape {target_obs.shape}: the DTW reward "
            "compares target observations with the source's, so both envs need the same observation shape"
        )
    if not _same_kind(source_action, target_action):
        raise UsageError(
            f"{source} has action space {source_action}, {target} has {target_action}: the source policy is run on the "
            "target (zero-shot evaluation), so both envs need the same kind and shape of actions"
        )
    if config.init_from_source and (source_obs != target_obs or source_action != target_action):
        raise UsageError(
            f"--init-from-source loads the source model on the target env, which SB3 allows only with equal spaces: "
            f"{source} has {source_obs} and {source_action}, {target} has {target_obs} and {target_action}"
        )
    if config.source_model is not None:
        check_source_model(config.source_model, source_obs, source_action)


def run_dtw_transfer(config: TransferConfig, out_dir: str | Path) -> dict[str, Any]:
    """Run the four stages and write ``source.zip``, ``reference.npz``, ``target.zip`` and ``results.json``.

    :param config: the run's settings
    :param out_dir: output folder (created)
    :return: the results: true-reward returns (mean, std) of random, source zero-shot and target policies
    :raises UsageError: from :func:`check_config`, before anything is trained, and if Dreamer rejects a value of
        ``dreamer_kwargs``
    """
    check_config(config)
    kwargs = dict(config.dreamer_kwargs)
    # 1. Source agent.
    if config.source_model is not None:
        source = Dreamer.load(config.source_model, env=make_vec_env(config.source_env, seed=config.seed))
    else:
        try:
            source = Dreamer("MlpPolicy", config.source_env, seed=config.seed, **kwargs)
        except (TypeError, ValueError) as error:
            raise UsageError(f"--dreamer-kwargs: cannot build Dreamer on {config.source_env} with {kwargs}: {error}") from None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if config.source_model is None:
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
