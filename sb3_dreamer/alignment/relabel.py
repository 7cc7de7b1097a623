"""Fresh rewards for off-policy learners: relabel the replay buffer after every refit of the DTW reward model.

The DTW reward wrappers emit ``r̂(x_{t+1})`` of the reward model *at the time of the step*; an off-policy agent keeps
those rewards in its replay buffer, so after a refit it keeps training on rewards of older reward models.
:class:`RelabelCallback` rewrites the stored rewards with the current model after each refit: for SB3's
``ReplayBuffer`` the reward of row i is recomputed on its stored next observation, for Dreamer's
``SequenceReplayBuffer`` the reward r_t of row t on its observation x_t (rows that start an episode hold no reward and
are left alone). Both are exactly what the wrapper would emit now for the same step.

:class:`SampledRewardCallback` instead computes the rewards of every sampled batch with the current model (Dreamer's
``SequenceReplayBuffer``, or SB3 algorithms built with ``replay_buffer_class=SampledRewardReplayBuffer``): always the
current model's rewards, at one batched prediction per batch, and with the wrappers' ``reward_at_sampling=True`` no
per-step prediction at all (the option of issue 19, item 4: "the reward model is applied when batches are sampled").
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import unwrap_wrapper
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecEnvWrapper, VecNormalize

from sb3_dreamer.alignment.rewarder import DTWRewarder, predict_finite
from sb3_dreamer.alignment.wrappers import DTWRewardWrapper, VecDTWRewardWrapper
from sb3_dreamer.common.usage import UsageError
from sb3_dreamer.dreamer.buffers import SequenceReplayBuffer


def dtw_wrappers_of(env: VecEnv) -> list[tuple[DTWRewardWrapper | VecDTWRewardWrapper, list[int]]]:
    """The DTW reward wrappers of a VecEnv and the sub-env indices each labels: a :class:`VecDTWRewardWrapper` labels
    all sub-envs with one rewarder, :class:`DTWRewardWrapper` inside a :class:`DummyVecEnv` one sub-env each.

    :param env: the model's VecEnv
    :return: ``[(wrapper, env indices), ...]`` (empty if there is none)
    """
    while isinstance(env, VecEnvWrapper):
        if isinstance(env, VecDTWRewardWrapper):
            return [(env, list(range(env.num_envs)))]
        env = env.venv
    if not isinstance(env, DummyVecEnv):
        return []
    found = []
    for index, sub_env in enumerate(env.envs):
        wrapper = unwrap_wrapper(sub_env, DTWRewardWrapper)
        if isinstance(wrapper, DTWRewardWrapper):
            found.append((wrapper, [index]))
    return found


def rewarders_of(env: VecEnv) -> list[tuple[DTWRewarder, list[int]]]:
    """The DTW rewarders of a VecEnv and the sub-env indices each labels (see :func:`dtw_wrappers_of`).

    :param env: the model's VecEnv
    :return: ``[(rewarder, env indices), ...]`` (empty if there is none)
    """
    return [(wrapper.rewarder, envs) for wrapper, envs in dtw_wrappers_of(env)]


def relabel_buffer(buffer: ReplayBuffer | SequenceReplayBuffer, predict: Callable[[np.ndarray], np.ndarray],
                   env_index: int) -> tuple[int, float]:  # fmt: skip
    """Rewrite the rewards stored for one sub-env with ``predict`` (the current reward model).

    :param buffer: SB3's ``ReplayBuffer`` (flat observations) or Dreamer's ``SequenceReplayBuffer``
    :param predict: the reward model, (N, obs_dim) observations -> (N,) rewards
    :param env_index: the sub-env whose rows are rewritten
    :return: the number of rewards rewritten and their mean absolute change
    """
    if isinstance(buffer, SequenceReplayBuffer):
        rows = buffer.capacity if buffer.stream_full[env_index] else int(buffer.stream_pos[env_index])
        keep = ~buffer.is_first[env_index, :rows]
        obs = buffer.observations["obs"][env_index, :rows][keep]
        rewards = buffer.rewards[env_index, :rows]
        new = predict_finite(predict, obs)
        change = float(np.abs(rewards[keep] - new).mean()) if len(new) else 0.0
        rewards[keep] = new
        return len(new), change
    if isinstance(buffer, ReplayBuffer):
        size = buffer.size()
        if buffer.optimize_memory_usage:
            next_obs = buffer.observations[(np.arange(size) + 1) % buffer.buffer_size, env_index]
        else:
            next_obs = buffer.next_observations[:size, env_index]
        new = predict_finite(predict, next_obs)
        change = float(np.abs(buffer.rewards[:size, env_index] - new).mean()) if size else 0.0
        buffer.rewards[:size, env_index] = new
        return size, change
    raise UsageError(f"Cannot relabel a {type(buffer).__name__}: SB3's ReplayBuffer or Dreamer's SequenceReplayBuffer")


class RelabelCallback(BaseCallback):
    """After every refit of a DTW reward model, relabel the rewards in the off-policy model's replay buffer.

    Relabelling runs at the end of each rollout (before the training round) that saw a refit. Works with
    :class:`~sb3_dreamer.alignment.VecDTWRewardWrapper` or :class:`~sb3_dreamer.alignment.DTWRewardWrapper`
    in a ``DummyVecEnv``, and SB3 off-policy algorithms (``ReplayBuffer``) or Dreamer. Logged after each relabelling:
    ``relabel/rewards`` (rows rewritten) and ``relabel/mean_abs_change``. The relabelling costs one reward-model
    prediction per stored row, once per refit.

    :param verbose: print a line per relabelling
    """

    def __init__(self, verbose: int = 0) -> None:
        super().__init__(verbose)
        self._rewarders: list[tuple[DTWRewarder, list[int]]] = []
        self._refits: list[int] = []
        self.n_relabels = 0

    def _init_callback(self) -> None:
        buffer = getattr(self.model, "replay_buffer", None)
        if not isinstance(buffer, ReplayBuffer | SequenceReplayBuffer):
            raise UsageError(
                f"RelabelCallback needs an off-policy model with a replay buffer, not {type(self.model).__name__}"
            )
        self._rewarders = rewarders_of(self.model.get_env())
        if not self._rewarders:
            raise UsageError("RelabelCallback found no DTW reward wrapper in the model's env (VecDTWRewardWrapper, or "
                             "DTWRewardWrapper inside a DummyVecEnv)")  # fmt: skip
        self._refits = [rewarder.n_refits for rewarder, _ in self._rewarders]

    def _on_step(self) -> bool:
        # A refit happens inside env.step, before SB3 stores that step: relabel once the rollout has stored it.
        return True

    def _on_rollout_end(self) -> None:
        """Relabel after every refit since the last rollout, before the training round that follows it."""
        for position, (rewarder, envs) in enumerate(self._rewarders):
            if rewarder.n_refits == self._refits[position]:
                continue
            self._refits[position] = rewarder.n_refits
            rows, weighted = 0, 0.0
            for env_index in envs:
                count, change = relabel_buffer(self.model.replay_buffer, rewarder.predict, env_index)
                rows, weighted = rows + count, weighted + change * count
            self.n_relabels += 1
            self.logger.record("relabel/rewards", rows)
            self.logger.record("relabel/mean_abs_change", weighted / max(rows, 1))
            if self.verbose:
                print(f"Relabelled {rows} stored rewards after refit {rewarder.n_refits} (mean change "
                      f"{weighted / max(rows, 1):.4f})")  # fmt: skip


class SampledRewardReplayBuffer(ReplayBuffer):
    """SB3's ``ReplayBuffer`` whose sampled rewards come from the current DTW reward model: r̂ of each sampled row's
    next observation, what the wrapper would emit now for that step.

    A row's reward is computed when it is sampled and its stored reward is not from the current model (a new row, or
    one computed before the last refit; the model's version is its rewarder's ``n_refits``), then stored with that
    version: each row is predicted about once per reward model, in batches, so the total cost is about that of a
    per-step reward plus a relabelling after each refit, while the stepping process computes none. Build the
    algorithm with ``replay_buffer_class=SampledRewardReplayBuffer`` and train it with :class:`SampledRewardCallback`,
    which gives the buffer its reward models.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: ``(rewarder, env indices)``, set by :class:`SampledRewardCallback` (not saved: live reward models)
        self.reward_sources: list[tuple[Any, list[int]]] = []
        #: the model version (``n_refits``) whose reward each row holds; -1: none yet (the env's placeholder)
        self.reward_versions = np.full((self.buffer_size, self.n_envs), -1, dtype=np.int64)
        #: rows whose reward was computed at sampling (a count, for benchmarks and logs)
        self.n_rewards_computed = 0

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["reward_sources"] = []
        return state

    def add(self, *args: Any, **kwargs: Any) -> None:
        """SB3's ``add``; the row written holds no computed reward yet (nor, with ``optimize_memory_usage``, the row
        before it, whose next observation this row replaces)."""
        self.reward_versions[self.pos] = -1
        if self.optimize_memory_usage:
            self.reward_versions[(self.pos - 1) % self.buffer_size] = -1
        super().add(*args, **kwargs)

    def _get_samples(self, batch_inds: np.ndarray, env: VecNormalize | None = None) -> ReplayBufferSamples:
        if not self.reward_sources:
            raise UsageError(
                "SampledRewardReplayBuffer has no reward model: train with callback=SampledRewardCallback() (it finds "
                "the DTW reward wrappers of the model's env)"
            )
        for rewarder, envs in self.reward_sources:
            version, columns = rewarder.n_refits, np.asarray(envs)
            rows, which = np.nonzero(self.reward_versions[batch_inds[:, None], columns] != version)
            if len(rows) == 0:
                continue
            inds, env_inds = batch_inds[rows], columns[which]
            if self.optimize_memory_usage:
                next_obs = self.observations[(inds + 1) % self.buffer_size, env_inds]
            else:
                next_obs = self.next_observations[inds, env_inds]
            self.rewards[inds, env_inds] = predict_finite(rewarder.predict, next_obs)
            self.reward_versions[inds, env_inds] = version
            self.n_rewards_computed += len(inds)
        return super()._get_samples(batch_inds, env)


#: ``(predict, env indices)``: a reward model and the sub-envs whose rewards it computes
RewardSource = tuple[Callable[[np.ndarray], np.ndarray], list[int]]


def _sequence_rewards(buffer: SequenceReplayBuffer, sources: list[RewardSource], envs: np.ndarray,
                      index: np.ndarray) -> None:  # fmt: skip
    """Dreamer's sampled windows (streams ``envs`` (B, 1), rows ``index`` (B, T)): r_t = r̂(x_t) with the current
    model, written into the buffer; rows that start an episode hold no reward and are left alone."""
    for predict, source_envs in sources:
        take = np.isin(envs[:, 0], source_envs)
        if not take.any():
            continue
        streams, rows = np.broadcast_to(envs[take], index[take].shape), index[take]
        keep = ~buffer.is_first[streams, rows]
        rewards = buffer.rewards[streams, rows]
        rewards[keep] = predict_finite(predict, buffer.observations["obs"][streams, rows][keep])
        buffer.rewards[streams, rows] = rewards


class SampledRewardCallback(BaseCallback):
    """Compute the DTW rewards of every batch the off-policy model samples with the current reward model.

    Works with Dreamer (its ``SequenceReplayBuffer``) and with SB3 off-policy algorithms built with
    ``replay_buffer_class=SampledRewardReplayBuffer``; the env holds :class:`~sb3_dreamer.alignment.VecDTWRewardWrapper`
    or :class:`~sb3_dreamer.alignment.DTWRewardWrapper` inside a ``DummyVecEnv``. Needed by (and attached to) wrappers
    built with ``reward_at_sampling=True``, which then skip the per-step prediction; with per-step rewards it replaces
    :class:`RelabelCallback` (no relabelling pass after refits). Reward normalisation by ``VecNormalize`` is refused
    with ``reward_at_sampling=True``: its statistics would come from the placeholder rewards.
    """

    def _init_callback(self) -> None:
        buffer = getattr(self.model, "replay_buffer", None)
        wrappers = dtw_wrappers_of(self.model.get_env())
        if not wrappers:
            raise UsageError("SampledRewardCallback found no DTW reward wrapper in the model's env (VecDTWRewardWrapper, "
                             "or DTWRewardWrapper inside a DummyVecEnv)")  # fmt: skip
        if isinstance(buffer, SequenceReplayBuffer):
            sources: list[RewardSource] = [(wrapper.rewarder.predict, envs) for wrapper, envs in wrappers]
            buffer.reward_function = partial(_sequence_rewards, buffer, sources)
        elif isinstance(buffer, SampledRewardReplayBuffer):
            buffer.reward_sources = [(wrapper.rewarder, envs) for wrapper, envs in wrappers]
        else:
            raise UsageError(
                f"SampledRewardCallback needs Dreamer or an SB3 off-policy model built with "
                f"replay_buffer_class=SampledRewardReplayBuffer, not {type(self.model).__name__} with "
                f"{type(buffer).__name__}"
            )
        normalize = self.model.get_vec_normalize_env()
        if normalize is not None and normalize.norm_reward and any(w.reward_at_sampling for w, _ in wrappers):
            raise UsageError("VecNormalize(norm_reward=True) cannot normalise rewards computed at sampling "
                             "(reward_at_sampling=True): pass norm_reward=False")  # fmt: skip
        for wrapper, _ in wrappers:
            wrapper.sampler_attached = True

    def _on_step(self) -> bool:
        return True
