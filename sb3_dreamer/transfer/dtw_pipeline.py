"""Reward-free transfer across a dynamics gap with the learned DTW-alignment reward, end to end.

Seed project: "Mitigating Dynamic Gaps in Policy Transfer Through Trajectory Alignment with Model-based RL and Dynamic
Time Warping" (TroddenSpade/Telepath). Pipeline: (1) train a source Dreamer on the source env (with rewards);
(2) record reference trajectories of it; (3) train a target Dreamer on the target env whose reward is replaced by
:class:`~sb3_dreamer.alignment.DTWRewardWrapper` (optionally initialised from the source model); (4) evaluate on the
target's true reward, next to a random policy and the source policy run zero-shot on the target.

The target env is wrapped as ``DTWRewardWrapper(Monitor(env))``: the agent learns only from the learned reward, while
Monitor (and so ``rollout/ep_rew_mean``) and the evaluation see the env's own reward, which is never used for learning.

The stages can be called one by one: :func:`train_source` (stages 1 and 2) and :func:`train_target` (stage 3, on the
DTW reward or, as the oracle control, the true reward; Dreamer or SAC). Given ``checkpoint_freq`` each writes
checkpoints (:class:`~sb3_dreamer.common.ResumableRun`) and continues from the last one when called again, and given
``eval_freq`` each records a learning curve (:class:`~sb3_dreamer.common.EvalCurve`); ``benchmarks/transfer.py`` runs
its variants through them. :func:`run_dtw_transfer` composes them.

:func:`check_config` runs first (also inside :func:`run_dtw_transfer`): a mistake that would only show after the
source agent's training (unknown env id or argument, source and target spaces that do not match, an unusable
``source_model``) is raised at once as a :class:`~sb3_dreamer.common.usage.UsageError`.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

import sb3_dreamer.envs  # noqa: F401  (registers the sb3_dreamer/... env ids)
from sb3_dreamer.alignment import (
    DTWRewardWrapper,
    RelabelCallback,
    SampledRewardCallback,
    SampledRewardReplayBuffer,
    record_trajectories,
)
from sb3_dreamer.common.resumable import EvalCurve, ResumableRun
from sb3_dreamer.common.usage import UsageError
from sb3_dreamer.dreamer import Dreamer
from sb3_dreamer.transfer.dtw_config import (  # noqa: F401  (re-exported: the pipeline's public names)
    RESERVED_DREAMER_ARGUMENTS,
    RESERVED_WRAPPER_ARGUMENTS,
    TransferConfig,
    check_config,
    check_source_model,
)


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


#: Checkpoint folders of the stages inside ``out``, when no ``checkpoint_dir`` is given.
CHECKPOINT_DIRS = {"source": Path("checkpoints") / "source", "target": Path("checkpoints") / "target"}


class _Checkpointed:
    checkpoint: ResumableRun | None

    def remove_checkpoint(self) -> None:
        """Delete the stage's checkpoint once its results are stored. Until then it holds the finished stage: called
        again with the same arguments, the stage returns the same model and curve without training."""
        if self.checkpoint is not None:
            self.checkpoint.remove()


@dataclasses.dataclass
class SourceStage(_Checkpointed):
    """What :func:`train_source` returns.

    :param model: the trained (or loaded) source Dreamer
    :param source_path: where it was saved
    :param reference_path: where its reference episodes were saved
    :param curve: its learning curve on the source env (:class:`~sb3_dreamer.common.EvalCurve` points; empty without
        ``eval_freq``)
    :param random: return (mean, std) of a random policy on the target's true reward
    :param source_zero_shot: return (mean, std) of the source policy on the target's true reward
    :param seconds: wall time of the stage, including the time before a resume
    :param resumed: whether the training continued from a checkpoint
    :param checkpoint: the stage's checkpoint (None without ``checkpoint_freq``), kept until
        :meth:`remove_checkpoint`
    """

    model: Dreamer
    source_path: Path
    reference_path: Path
    curve: list[dict[str, float]]
    random: tuple[float, float]
    source_zero_shot: tuple[float, float]
    seconds: float
    resumed: bool
    checkpoint: ResumableRun | None = dataclasses.field(default=None, repr=False)


@dataclasses.dataclass
class TargetStage(_Checkpointed):
    """What :func:`train_target` returns.

    :param model: the trained target agent
    :param model_path: where it was saved
    :param curve: its learning curve on the target's true reward (empty without ``eval_freq``); for ``reward="dtw"``
        each point also has ``learned_mean``, the same episodes' return under the reward model at that time
    :param wrapper_kwargs: the :class:`DTWRewardWrapper` arguments of the run (empty for ``reward="oracle"``)
    :param dtw: the reward wrapper's counts: ``episodes``, ``refits``, ``truncated_refits``, ``labels_stored``, and
        ``relabels`` with ``relabel=True`` (empty for ``reward="oracle"``)
    :param steps: env steps of the training
    :param seconds: wall time of the stage, including the time before a resume
    :param resumed: whether the training continued from a checkpoint
    :param checkpoint: the stage's checkpoint (None without ``checkpoint_freq``), kept until
        :meth:`remove_checkpoint`
    """

    model: Any
    model_path: Path
    curve: list[dict[str, float]]
    wrapper_kwargs: dict[str, Any]
    dtw: dict[str, int]
    steps: int
    seconds: float
    resumed: bool
    checkpoint: ResumableRun | None = dataclasses.field(default=None, repr=False)


def _resumable(
    eval_env_id: str,
    eval_freq: int | None,
    eval_episodes: int,
    label: str,
    eval_seed: int,
    checkpoint_freq: int | None,
    checkpoint_dir: Path,
    wrapper: Any = None,
    learned_reward: Any = None,
) -> tuple[EvalCurve, ResumableRun | None, list[Any]]:
    """The learning curve, the checkpoints (None without ``checkpoint_freq``) and the callbacks to pass to ``learn``.

    Without ``eval_freq`` the curve never evaluates (it only carries the time for the checkpoints).
    """
    curve = EvalCurve(
        Monitor(gym.make(eval_env_id)),
        eval_freq or sys.maxsize,
        eval_episodes,
        label,
        learned_reward=learned_reward,
        seed=eval_seed,
    )
    checkpoint = None if checkpoint_freq is None else ResumableRun(checkpoint_dir, checkpoint_freq, curve, wrapper)
    callbacks: list[Any] = [callback for callback in (curve if eval_freq else None, checkpoint) if callback is not None]
    return curve, checkpoint, callbacks


def _baselines(source: Any, config: TransferConfig) -> tuple[tuple[float, float], tuple[float, float]]:
    """Returns (mean, std) of a random policy and of ``source`` zero-shot on the target's true reward."""
    probe = gym.make(config.target_env)
    try:
        random = RandomPolicy(probe.action_space, config.seed)
        random_return = evaluate_on_env(random, config.target_env, config.eval_episodes, config.seed)
    finally:
        probe.close()
    return random_return, evaluate_on_env(source, config.target_env, config.eval_episodes, config.seed)


def train_source(
    config: TransferConfig,
    out: str | Path,
    *,
    eval_freq: int | None = None,
    eval_seed: int | None = None,
    checkpoint_freq: int | None = None,
    checkpoint_dir: str | Path | None = None,
    source_file: str = "source.zip",
    reference_file: str = "reference.npz",
    label: str | None = None,
    callback: list[BaseCallback] | None = None,
) -> SourceStage:
    """Stages 1 and 2: train the source Dreamer (or load ``config.source_model``), save it, record and save its
    reference episodes, and evaluate a random policy and the source policy zero-shot on the target's true reward.

    Called again after being cut off, it continues from its last checkpoint (model, replay buffer, curve; see
    :class:`~sb3_dreamer.common.ResumableRun`). The finished stage is checkpointed too, and the checkpoint is kept
    until the caller has stored what it needs (:meth:`SourceStage.remove_checkpoint`), so that a run cut off in
    between loses nothing.

    :param config: the run's settings (``source_*``, ``n_reference_episodes``, ``dreamer_kwargs``, ``eval_episodes``,
        ``seed``)
    :param out: output folder (created)
    :param eval_freq: env steps between evaluations on the source env's reward (None: no learning curve)
    :param eval_seed: seed of the curve's evaluation env (default: ``config.seed``)
    :param checkpoint_freq: env steps between checkpoints (None: no checkpoints)
    :param checkpoint_dir: checkpoint folder (default: ``out/checkpoints/source``)
    :param source_file: file name of the model in ``out``
    :param reference_file: file name of the reference episodes in ``out``
    :param label: prefix of the curve's progress lines
    :param callback: further callbacks of the training (after the curve and the checkpoints)
    :return: the model, file paths, curve and the random / zero-shot returns on the target
    :raises UsageError: from :func:`check_config`, and if Dreamer rejects a value of ``dreamer_kwargs``
    """
    check_config(config)
    out = Path(out)
    seed = config.seed
    curve, checkpoint, callbacks = _resumable(
        config.source_env,
        eval_freq,
        config.eval_episodes,
        label or f"source seed {seed}",
        seed if eval_seed is None else eval_seed,
        checkpoint_freq,
        Path(checkpoint_dir) if checkpoint_dir is not None else out / CHECKPOINT_DIRS["source"],
    )
    source = None
    if checkpoint is not None and config.source_model is None:
        source = checkpoint.restore(lambda path: Dreamer.load(path, env=Monitor(gym.make(config.source_env)), seed=seed))
    resumed = source is not None
    if config.source_model is not None:
        source = Dreamer.load(config.source_model, env=make_vec_env(config.source_env, seed=seed))
    elif source is None:
        kwargs = dict(config.dreamer_kwargs)
        try:
            source = Dreamer("MlpPolicy", config.source_env, seed=seed, **kwargs)
        except (TypeError, ValueError) as error:
            raise UsageError(f"--dreamer-kwargs: cannot build Dreamer on {config.source_env} with {kwargs}: {error}") from None
    out.mkdir(parents=True, exist_ok=True)  # after the checks of the arguments: a mistake leaves no folder
    if config.source_model is None:
        source.learn(
            max(config.source_steps - source.num_timesteps, 0),
            callback=callbacks + list(callback or []),
            reset_num_timesteps=not resumed,
        )
        if checkpoint is not None:
            checkpoint.save()  # the finished stage: a rerun returns it without training
    source_path = out / source_file
    source.save(source_path)
    reference = record_trajectories(source, config.source_env, config.n_reference_episodes, seed=seed)
    reference_path = Path(reference.save(out / reference_file))
    random, zero_shot = _baselines(source, config)
    seconds = time.perf_counter() - curve.start
    return SourceStage(source, source_path, reference_path, curve.curve, random, zero_shot, seconds, resumed, checkpoint)


def _sac(env: Any, seed: int, algo_kwargs: dict[str, Any]) -> Any:
    from stable_baselines3 import SAC

    return SAC("MlpPolicy", env, seed=seed, verbose=0, **algo_kwargs)


def _check_target_arguments(algo: str, reward: str, relabel: bool, reward_at_sampling: bool) -> None:
    """:func:`train_target`'s choices: a ``UsageError`` naming a wrong one."""
    if algo not in ("dreamer", "sac"):
        raise UsageError(f"algo must be 'dreamer' or 'sac', got {algo!r}")
    if reward not in ("dtw", "oracle"):
        raise UsageError(f"reward must be 'dtw' or 'oracle', got {reward!r}")
    if relabel and reward != "dtw":
        raise UsageError("relabel=True needs reward='dtw': the oracle's true rewards never change")
    if reward_at_sampling and (reward != "dtw" or relabel):
        raise UsageError("reward_at_sampling=True needs reward='dtw' and relabel=False (sampled rewards are always fresh)")


def train_target(
    config: TransferConfig,
    out: str | Path,
    *,
    algo: str = "dreamer",
    reward: str = "dtw",
    algo_kwargs: dict[str, Any] | None = None,
    learning_starts: int | None = None,
    source_path: str | Path | None = None,
    reference_path: str | Path | None = None,
    eval_freq: int | None = None,
    eval_seed: int | None = None,
    checkpoint_freq: int | None = None,
    checkpoint_dir: str | Path | None = None,
    model_file: str = "target.zip",
    wrapper_state_file: str | None = None,
    label: str | None = None,
    callback: list[BaseCallback] | None = None,
    relabel: bool = False,
    reward_at_sampling: bool = False,
) -> TargetStage:
    """Stage 3: train an agent for ``config.target_steps`` env steps on the target env, on the learned DTW reward or
    (the oracle control) on the target's true reward, and save it.

    ``reward="dtw"``: the env is ``DTWRewardWrapper(Monitor(env))`` with ``config.wrapper_kwargs`` (passed on to
    :class:`~sb3_dreamer.alignment.DTWRewarder`), so Monitor and the curve see the true reward, which is never learned
    from; the wrapper's state is part of the checkpoints. Called again after being cut off, the stage continues from
    its last checkpoint; the finished stage is checkpointed too, kept until :meth:`TargetStage.remove_checkpoint`.

    :param config: the run's settings (``target_env``, ``target_steps``, ``label_mode``, ``init_from_source``,
        ``dreamer_kwargs``, ``wrapper_kwargs``, ``eval_episodes``, ``seed``)
    :param out: output folder (holds the source model and the reference unless their paths are given)
    :param algo: ``"dreamer"`` (with ``config.dreamer_kwargs``: from the source model's weights with
        ``config.init_from_source``, its saved settings overridden by ``dreamer_kwargs``, else from scratch) or ``"sac"``
        (SB3's SAC from scratch with ``algo_kwargs``)
    :param reward: ``"dtw"`` (the learned alignment reward) or ``"oracle"`` (the target's true reward)
    :param algo_kwargs: SAC's constructor arguments (``algo="sac"`` only)
    :param learning_starts: Dreamer's random warm-up steps on the target, overriding the source model's or
        ``dreamer_kwargs``' value (None: no override)
    :param source_path: the source model (default: ``out/source.zip``)
    :param reference_path: the reference episodes (default: ``out/reference.npz``)
    :param eval_freq: env steps between evaluations on the target's true reward (None: no learning curve)
    :param eval_seed: seed of the curve's evaluation env (default: ``config.seed``)
    :param checkpoint_freq: env steps between checkpoints (None: no checkpoints)
    :param checkpoint_dir: checkpoint folder (default: ``out/checkpoints/target``)
    :param model_file: file name (or path relative to ``out``) of the trained agent
    :param wrapper_state_file: file (relative to ``out``) for the reward wrapper's final state, or None
    :param label: prefix of the curve's progress lines
    :param callback: further callbacks of the training (after the curve and the checkpoints)
    :param relabel: rewrite the rewards stored in the agent's replay buffer after every refit of the reward model
        (:class:`~sb3_dreamer.alignment.RelabelCallback`; ``reward="dtw"`` only); ``dtw["relabels"]`` counts them
    :param reward_at_sampling: no per-step reward prediction: the agent's replay buffer computes the rewards of every
        sampled batch with the current model (the wrapper's ``reward_at_sampling=True``,
        :class:`~sb3_dreamer.alignment.SampledRewardCallback`, and SAC's
        ``replay_buffer_class=SampledRewardReplayBuffer``; ``reward="dtw"`` only, not with ``relabel``)
    :return: the model, its path, the curve, the wrapper's arguments and counts
    :raises UsageError: from :func:`check_config`, for an unknown ``algo`` or ``reward``, a missing source model
        (``init_from_source``), and if Dreamer rejects a value of ``dreamer_kwargs``
    """
    check_config(config)
    _check_target_arguments(algo, reward, relabel, reward_at_sampling)
    out = Path(out)
    seed = config.seed
    source = Path(source_path) if source_path is not None else out / "source.zip"
    if algo == "dreamer" and config.init_from_source and not source.is_file():
        raise UsageError(f"init_from_source: the source model {source} does not exist (train_source writes it)")
    wrapper_kwargs: dict[str, Any] = {}
    if reward == "dtw":
        reference = Path(reference_path) if reference_path is not None else out / "reference.npz"
        wrapper_kwargs = dict(reference=str(reference), label_mode=config.label_mode, seed=seed, **config.wrapper_kwargs)
        if reward_at_sampling:
            wrapper_kwargs["reward_at_sampling"] = True
    env = make_vec_env(
        config.target_env,
        seed=seed,
        wrapper_class=DTWRewardWrapper if wrapper_kwargs else None,
        wrapper_kwargs=wrapper_kwargs or None,
    )
    wrapper = env.envs[0] if wrapper_kwargs else None  # DTWRewardWrapper(Monitor(env)), the single sub-env
    curve, checkpoint, callbacks = _resumable(
        config.target_env,
        eval_freq,
        config.eval_episodes,
        label or f"target {algo} {reward} seed {seed}",
        seed if eval_seed is None else eval_seed,
        checkpoint_freq,
        Path(checkpoint_dir) if checkpoint_dir is not None else out / CHECKPOINT_DIRS["target"],
        wrapper,
        learned_reward=wrapper.rewarder.predict if wrapper is not None else None,
    )
    load = Dreamer.load if algo == "dreamer" else _sac_load
    model: Any = None if checkpoint is None else checkpoint.restore(lambda path: load(path, env=env, seed=seed))
    resumed = model is not None
    overrides = {} if learning_starts is None else dict(learning_starts=learning_starts)
    if model is None and algo == "sac":
        sampled = dict(replay_buffer_class=SampledRewardReplayBuffer) if reward_at_sampling else {}
        model = _sac(env, seed, {**(algo_kwargs or {}), **sampled})
    elif model is None:
        kwargs = {**config.dreamer_kwargs, **overrides}
        try:
            if config.init_from_source:  # the source's weights, with the run's settings on top (SB3's load overrides)
                model = Dreamer.load(source, env=env, seed=seed, **kwargs)
            else:
                model = Dreamer("MlpPolicy", env, seed=seed, **kwargs)
        except (TypeError, ValueError) as error:
            raise UsageError(f"--dreamer-kwargs: cannot build Dreamer on {config.target_env} with {kwargs}: {error}") from None
    # A model loaded from the source carries the source's step count: it restarts at 0 unless this run is resumed.
    done_steps = model.num_timesteps if resumed else 0
    steps = max(config.target_steps - done_steps, 0)
    relabeller = [RelabelCallback()] if relabel else [SampledRewardCallback()] if reward_at_sampling else []
    model.learn(steps, callback=callbacks + relabeller + list(callback or []), reset_num_timesteps=not resumed)
    if checkpoint is not None:
        checkpoint.save()  # the finished stage: a rerun returns it without training
    model_path = out / model_file
    model_path.parent.mkdir(parents=True, exist_ok=True)
    model.save(model_path)
    dtw: dict[str, int] = {}
    if wrapper is not None:
        if wrapper_state_file is not None:
            (out / wrapper_state_file).parent.mkdir(parents=True, exist_ok=True)
            wrapper.save_state(out / wrapper_state_file)
        rewarder = wrapper.rewarder
        dtw = dict(
            episodes=rewarder.n_episodes,
            refits=rewarder.n_refits,
            truncated_refits=rewarder.n_truncated_refits,
            labels_stored=rewarder.n_labels,  # all target steps unless max_label_cost dropped some
        )
        if relabel:
            dtw["relabels"] = relabeller[0].n_relabels  # since this process started (a resumed run counts anew)
    seconds = time.perf_counter() - curve.start
    return TargetStage(model, model_path, curve.curve, wrapper_kwargs, dtw, config.target_steps, seconds, resumed, checkpoint)


def _sac_load(path: str | Path, **kwargs: Any) -> Any:
    from stable_baselines3 import SAC

    return SAC.load(path, **kwargs)


def run_dtw_transfer(config: TransferConfig, out_dir: str | Path, checkpoint_freq: int | None = None) -> dict[str, Any]:
    """Run the four stages (:func:`train_source`, :func:`train_target`, then the evaluations) and write ``source.zip``,
    ``reference.npz``, ``target.zip`` and ``results.json``.

    :param config: the run's settings
    :param out_dir: output folder (created)
    :param checkpoint_freq: env steps between checkpoints of each training (in ``out_dir/checkpoints``; None: none);
        a stage cut off continues from its last checkpoint when this is called again (with the same arguments), a
        target cut off reuses the finished source's ``source.zip`` and ``reference.npz``, and the checkpoints are
        deleted once ``results.json`` is written
    :return: the results: true-reward returns (mean, std) of random, source zero-shot and target policies
    :raises UsageError: from :func:`check_config`, before anything is trained, and if Dreamer rejects a value of
        ``dreamer_kwargs``
    """
    check_config(config)
    out = Path(out_dir)
    if checkpoint_freq is not None and ResumableRun.exists_at(out / CHECKPOINT_DIRS["target"]):
        # The source stage finished before the target was cut off: keep its model and reference (the target's
        # checkpoint holds a reward wrapper fitted to that reference).
        source_model = Dreamer.load(out / "source.zip")
        random, zero_shot = _baselines(source_model, config)
    else:
        source = train_source(config, out, checkpoint_freq=checkpoint_freq)
        source_model, random, zero_shot = source.model, source.random, source.source_zero_shot
    target = train_target(config, out, checkpoint_freq=checkpoint_freq)
    # 4. Evaluation on the target's true reward.
    results = dict(
        config=dataclasses.asdict(config),
        random=random,
        source_zero_shot=zero_shot,
        target_dtw=evaluate_on_env(target.model, config.target_env, config.eval_episodes, config.seed),
        source_on_source=evaluate_on_env(source_model, config.source_env, config.eval_episodes, config.seed),
    )
    (out / "results.json").write_text(json.dumps(results, indent=1))
    if checkpoint_freq is not None:  # the results are stored: the same files as a run without checkpoints
        for directory in CHECKPOINT_DIRS.values():
            ResumableRun.remove_at(out / directory)
        checkpoints = out / "checkpoints"
        if checkpoints.is_dir() and not any(checkpoints.iterdir()):
            checkpoints.rmdir()
    return results
