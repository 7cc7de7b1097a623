"""Fresh rewards for off-policy learners: relabel the replay buffer after every refit of the DTW reward model.

The DTW reward wrappers emit ``r̂(x_{t+1})`` of the reward model *at the time of the step*; an off-policy agent keeps
those rewards in its replay buffer, so after a refit it keeps training on rewards of older reward models.
:class:`RelabelCallback` rewrites the stored rewards with the current model after each refit: for SB3's
``ReplayBuffer`` the reward of row i is recomputed on its stored next observation, for Dreamer's
``SequenceReplayBuffer`` the reward r_t of row t on its observation x_t (rows that start an episode hold no reward and
are left alone). Both are exactly what the wrapper would emit now for the same step.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import unwrap_wrapper
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecEnvWrapper

from sb3_dreamer.alignment.rewarder import NON_FINITE_REWARD, DTWRewarder
from sb3_dreamer.alignment.wrappers import DTWRewardWrapper, VecDTWRewardWrapper
from sb3_dreamer.common.usage import UsageError
from sb3_dreamer.dreamer.buffers import SequenceReplayBuffer

#: Rows predicted per reward-model call while relabelling.
CHUNK = 65_536


def rewarders_of(env: VecEnv) -> list[tuple[DTWRewarder, list[int]]]:
    """The DTW rewarders of a VecEnv and the sub-env indices each labels: a :class:`VecDTWRewardWrapper` labels all
    sub-envs with one rewarder, :class:`DTWRewardWrapper` inside a :class:`DummyVecEnv` one sub-env each.

    :param env: the model's VecEnv
    :return: ``[(rewarder, env indices), ...]`` (empty if there is none)
    """
    while isinstance(env, VecEnvWrapper):
        if isinstance(env, VecDTWRewardWrapper):
            return [(env.rewarder, list(range(env.num_envs)))]
        env = env.venv
    if not isinstance(env, DummyVecEnv):
        return []
    found = []
    for index, sub_env in enumerate(env.envs):
        wrapper = unwrap_wrapper(sub_env, DTWRewardWrapper)
        if isinstance(wrapper, DTWRewardWrapper):
            found.append((wrapper.rewarder, [index]))
    return found


def _predict(predict: Callable[[np.ndarray], np.ndarray], obs: np.ndarray) -> np.ndarray:
    """Rewards of stored observations in chunks; rows with NaN or infinite values get :data:`NON_FINITE_REWARD`, the
    reward the wrappers emitted for them."""
    flat = obs.reshape(len(obs), -1).astype(np.float32)
    rewards = np.full(len(flat), NON_FINITE_REWARD, dtype=np.float64)
    finite = np.flatnonzero(np.isfinite(flat).all(axis=1))
    for start in range(0, len(finite), CHUNK):
        rows = finite[start : start + CHUNK]
        rewards[rows] = predict(flat[rows])
    return rewards


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
        new = _predict(predict, obs)
        change = float(np.abs(rewards[keep] - new).mean()) if len(new) else 0.0
        rewards[keep] = new
        return len(new), change
    if isinstance(buffer, ReplayBuffer):
        size = buffer.size()
        if buffer.optimize_memory_usage:
            next_obs = buffer.observations[(np.arange(size) + 1) % buffer.buffer_size, env_index]
        else:
            next_obs = buffer.next_observations[:size, env_index]
        new = _predict(predict, next_obs)
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
