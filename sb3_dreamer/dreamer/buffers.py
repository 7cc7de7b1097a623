"""Sequence replay buffer for Dreamer: per-environment streams of steps, sampled as fixed-length windows.

Row t of a stream holds DreamerV3's replay format (danijar/dreamerv3 ``embodied/core/replay.py``): observation x_t,
the action a_{t-1} that led to it, the reward r_t received on arrival, ``is_first`` (x_t starts an episode) and
``is_terminal`` (x_t is a true terminal state, not a time-limit truncation). An episode of L steps takes L + 1 rows:
the reset observation and then one row per step, the last holding the terminal observation.

Sampled tensors are laid out as (batch, time, ...).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import BaseBuffer

from sb3_dreamer.dreamer.type_aliases import SequenceSamples

NON_FINITE_POLICIES = ("skip", "raise")


class SequenceReplayBuffer(BaseBuffer):
    """Bounded FIFO of per-environment step streams that samples (batch, time) windows.

    Memory is ``buffer_size`` rows in total (split evenly across environments); images keep their dtype (uint8 stays
    uint8). Windows never cross the write position of a stream, so they never join unrelated data; they may cross
    episode boundaries, where ``is_first`` tells the world model to reset its state (as in DreamerV3).

    :param buffer_size: maximum number of rows (steps) kept in total
    :param observation_space: observation space (Box or Dict)
    :param action_space: action space; stored actions use the model's representation of width ``action_dim``
    :param device: device of sampled tensors
    :param n_envs: number of parallel environments
    :param action_dim: width of the stored action representation
    :param terminal_fraction: share of the sampled windows that end at a terminal row (drawn uniformly among the
        terminal rows that can end a window; uniform windows while there is none, drawn exactly as with 0 until a
        first terminal row is stored), so that terminal states stay in the world model's batches as failures become
        rare. Default 0.25, a deliberate difference from DreamerV3, which samples uniformly (0): DreamerV2's
        ``oversample_ends`` (Hafner et al. 2021, https://arxiv.org/abs/2010.02193; https://github.com/danijar/dreamerv2),
        chosen on CartPole-v1, Acrobot-v1 and MinAtar Breakout (benchmarks/README.md, "Terminal oversampling")
    :param non_finite: what a step with a NaN or infinite reward or observation does. ``"skip"`` (default): the step
        is not stored, the stream is cut there and the next finite observation starts a new segment (an ``is_first``
        row, as after a reset), so the world model never trains across the gap; the first skip warns, every skip is
        counted in ``n_non_finite`` (Dreamer logs it as ``rollout/non_finite_steps``). ``"raise"``: stop with a
        ``ValueError`` naming the value.
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        n_envs: int = 1,
        action_dim: int = 1,
        terminal_fraction: float = 0.25,
        non_finite: str = "skip",
    ) -> None:
        super().__init__(buffer_size, observation_space, action_space, device=device, n_envs=n_envs)
        if not 0.0 <= terminal_fraction <= 1.0:
            raise ValueError(f"terminal_fraction must lie in [0, 1], got {terminal_fraction}")
        if non_finite not in NON_FINITE_POLICIES:
            raise ValueError(f"non_finite must be one of {NON_FINITE_POLICIES}, got {non_finite!r}")
        self.non_finite = non_finite
        self.n_non_finite = 0  # steps not stored because a value was NaN or infinite
        self._cut = np.zeros(n_envs, dtype=bool)  # the stream's last step was skipped: the next row starts a segment
        # Whether a terminal row was ever stored (since reset): until then terminal_fraction draws no random numbers,
        # so a run on a task without terminations samples exactly as with terminal_fraction=0.
        self.has_terminal = False
        self.terminal_fraction = float(terminal_fraction)
        self.capacity = max(int(buffer_size) // n_envs, 2)
        self.action_dim = action_dim
        subspaces = observation_space.spaces if isinstance(observation_space, spaces.Dict) else {"obs": observation_space}
        self.obs_keys = list(subspaces)
        self.observations = {
            key: np.zeros((n_envs, self.capacity, *space.shape), dtype=space.dtype) for key, space in subspaces.items()
        }
        self.prev_actions = np.zeros((n_envs, self.capacity, action_dim), dtype=np.float32)
        self.rewards = np.zeros((n_envs, self.capacity), dtype=np.float32)
        self.is_first = np.zeros((n_envs, self.capacity), dtype=bool)
        self.is_terminal = np.zeros((n_envs, self.capacity), dtype=bool)
        self.stream_pos = np.zeros(n_envs, dtype=np.int64)
        self.stream_full = np.zeros(n_envs, dtype=bool)
        #: Recomputes rewards when a batch is sampled (None: the stored rewards are used): called as
        #: ``reward_function(envs, index)`` with the sampled windows' streams ``(B, 1)`` and rows ``(B, T)``, it writes
        #: their rewards into :attr:`rewards` (set by :class:`~sb3_dreamer.alignment.SampledRewardCallback`; not saved).
        self.reward_function: Callable[[np.ndarray, np.ndarray], None] | None = None

    def _stream_arrays(self) -> dict[str, np.ndarray]:
        """The ``(n_envs, capacity, ...)`` arrays, by attribute name (observations as ``observations.<key>``)."""
        arrays = {f"observations.{key}": value for key, value in self.observations.items()}
        arrays.update(
            prev_actions=self.prev_actions, rewards=self.rewards, is_first=self.is_first, is_terminal=self.is_terminal
        )
        return arrays

    def __getstate__(self) -> dict[str, Any]:
        """Pickle only the rows written so far: until a stream wraps around, the rows beyond the furthest write
        position are unused zeros (a 1M-step buffer after 100k steps would otherwise save ten times its data)."""
        state = self.__dict__.copy()
        state["reward_function"] = None  # bound to a live reward model (and possibly its worker process)
        if self.stream_full.any():
            return state
        rows = int(self.stream_pos.max())
        state["observations"] = {key: value[:, :rows].copy() for key, value in self.observations.items()}
        for name in ("prev_actions", "rewards", "is_first", "is_terminal"):
            state[name] = getattr(self, name)[:, :rows].copy()
        state["_pickled_rows"] = rows
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickle, giving back the capacity that :meth:`__getstate__` left out, and giving a buffer saved by an older
        version the attributes added since, with its old behaviour."""
        n_envs = state["n_envs"]
        defaults = dict(terminal_fraction=0.0, non_finite="raise", n_non_finite=0, has_terminal=True, reward_function=None)
        self.__dict__.update({**defaults, "_cut": np.zeros(n_envs, dtype=bool), **state})
        if self.__dict__.pop("_pickled_rows", None) is None:
            return
        for name, value in self._stream_arrays().items():
            full = np.zeros((n_envs, self.capacity, *value.shape[2:]), dtype=value.dtype)
            full[:, : value.shape[1]] = value
            if name.startswith("observations."):
                self.observations[name.removeprefix("observations.")] = full
            else:
                setattr(self, name, full)

    @property
    def nbytes(self) -> int:
        """Memory held by the buffer's arrays, in bytes."""
        return int(sum(array.nbytes for array in self._stream_arrays().values()))

    def size(self) -> int:
        """Number of rows currently stored, over all environments."""
        return int(sum(self.capacity if full else pos for pos, full in zip(self.stream_pos, self.stream_full, strict=True)))

    def reset(self) -> None:
        """Forget all data."""
        self.stream_pos[:] = 0
        self.stream_full[:] = False
        self.has_terminal = False

    def _write(
        self, env: int, obs: dict[str, np.ndarray], action: np.ndarray, reward: float, first: bool, terminal: bool
    ) -> None:
        pos = self.stream_pos[env]
        for key in self.obs_keys:
            self.observations[key][env, pos] = obs[key]
        self.prev_actions[env, pos] = action
        self.rewards[env, pos] = reward
        self.is_first[env, pos] = first
        self.is_terminal[env, pos] = terminal
        self.has_terminal = self.has_terminal or terminal
        self.stream_pos[env] = (pos + 1) % self.capacity
        if self.stream_pos[env] == 0:
            self.stream_full[env] = True

    def add(  # type: ignore[override]
        self,
        obs: np.ndarray | dict[str, np.ndarray],
        next_obs: np.ndarray | dict[str, np.ndarray],
        action: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        infos: list[dict[str, Any]],
        is_first: np.ndarray | None = None,
    ) -> None:
        """Store one vectorised transition (x_t, a_t, r_{t+1}, x_{t+1}) for every environment.

        :param obs: observations x_t (n_envs, ...), used only where ``is_first`` starts a new stream segment
        :param next_obs: next observations x_{t+1}; for finished episodes the true terminal observation
        :param action: actions a_t in the model's representation (n_envs, action_dim)
        :param reward: rewards r_{t+1} (n_envs,)
        :param done: episode ends (n_envs,)
        :param infos: per-env info dicts; ``TimeLimit.truncated`` marks time-limit ends (not terminal)
        :param is_first: (n_envs,) flags: x_t starts an episode, so it is written as an ``is_first`` row first
        """
        obs_dict = obs if isinstance(obs, dict) else {"obs": obs}
        next_dict = next_obs if isinstance(next_obs, dict) else {"obs": next_obs}
        reward = np.asarray(reward, dtype=np.float32).reshape(self.n_envs)
        action = np.asarray(action, dtype=np.float32).reshape(self.n_envs, self.action_dim)
        first = np.ones(self.n_envs, dtype=bool) if is_first is None else np.asarray(is_first, dtype=bool)
        cut = self._cut
        for env in range(self.n_envs):
            start = {key: obs_dict[key][env] for key in self.obs_keys}
            step = {key: next_dict[key][env] for key in self.obs_keys}
            if first[env]:
                cut[env] = not self._accept(env, "observation (episode start)", start)
                if not cut[env]:
                    self._write(env, start, np.zeros(self.action_dim, np.float32), 0.0, True, False)
            if not self._accept(env, "observation", step):
                cut[env] = True
            elif cut[env]:  # the previous row was skipped: this observation starts a new segment
                self._write(env, step, np.zeros(self.action_dim, np.float32), 0.0, True, False)
                cut[env] = False
            elif self._accept(env, "reward", {"reward": reward[env]}):
                terminal = bool(done[env]) and not infos[env].get("TimeLimit.truncated", False)
                self._write(env, step, action[env], reward[env], False, terminal)
            else:  # a non-finite reward with a finite observation: restart the segment at this observation
                self._write(env, step, np.zeros(self.action_dim, np.float32), 0.0, True, False)

    def _accept(self, env: int, name: str, values: dict[str, Any]) -> bool:
        """Whether ``values`` are finite; otherwise raise (``non_finite="raise"``) or count the skip and warn once."""
        arrays = {key: np.asarray(value) for key, value in values.items()}
        bad = [key for key, a in arrays.items() if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a))]
        if not bad:
            return True
        what = f"{name} {bad}" if len(arrays) > 1 else name
        if self.non_finite == "raise":
            shown = {key: arrays[key] for key in bad}
            raise ValueError(f"The environment returned a non-finite {what} (NaN or inf) in env {env}: {shown}")
        self.n_non_finite += 1
        if self.n_non_finite == 1:
            warnings.warn(
                f"Skipped a step with a non-finite {what} (NaN or inf) in env {env}: it is not stored and the next "
                "finite observation starts a new segment of the stream. Further skips are counted in "
                "replay_buffer.n_non_finite (logged as rollout/non_finite_steps); this warning is shown once. Pass "
                'replay_buffer_kwargs={"non_finite": "raise"} to stop instead.',
                stacklevel=3,
            )
        return False

    def extend(
        self,
        obs: dict[str, np.ndarray],
        prev_actions: np.ndarray,
        rewards: np.ndarray,
        is_first: np.ndarray,
        is_terminal: np.ndarray,
        env: int = 0,
    ) -> None:
        """Append rows already in the replay format (an episode of an offline dataset) to stream ``env``.

        Only the last ``capacity`` rows are kept if more are given (FIFO, as for single steps).

        :param obs: observation arrays (L, ...) per key (``"obs"`` for a Box space)
        :param prev_actions: actions a_{t-1} in the model's representation (L, action_dim)
        :param rewards: rewards r_t (L,)
        :param is_first: is_first flags (L,)
        :param is_terminal: is_terminal flags (L,)
        :param env: the stream to append to
        """
        rows = len(rewards)
        arrays = {**{f"observation {key!r}": obs[key] for key in self.obs_keys}, "prev_actions": prev_actions}
        arrays.update(is_first=is_first, is_terminal=is_terminal)
        for name, array in arrays.items():
            if len(array) != rows:
                raise ValueError(f"extend: {name} has {len(array)} rows, rewards {rows}")
        _check_finite("reward", rewards)
        chunk = slice(max(rows - self.capacity, 0), rows)
        n = chunk.stop - chunk.start
        index = (self.stream_pos[env] + np.arange(n)) % self.capacity
        for key in self.obs_keys:
            self.observations[key][env, index] = obs[key][chunk]
        self.prev_actions[env, index] = np.asarray(prev_actions[chunk], np.float32).reshape(n, self.action_dim)
        self.rewards[env, index] = rewards[chunk]
        self.is_first[env, index] = is_first[chunk]
        self.is_terminal[env, index] = is_terminal[chunk]
        self.has_terminal = self.has_terminal or bool(np.any(is_terminal[chunk]))
        if self.stream_pos[env] + n >= self.capacity:
            self.stream_full[env] = True
        self.stream_pos[env] = (self.stream_pos[env] + n) % self.capacity

    def can_sample(self, batch_length: int) -> bool:
        """Whether at least one stream holds a window of ``batch_length`` rows."""
        return bool(np.any(self._num_windows(batch_length) > 0))

    def _num_windows(self, batch_length: int) -> np.ndarray:
        rows = np.where(self.stream_full, self.capacity, self.stream_pos)
        return np.maximum(rows - batch_length + 1, 0)

    def sample(self, batch_size: int, batch_length: int = 64, env: Any = None) -> SequenceSamples:  # type: ignore[override]
        """Sample ``batch_size`` windows of ``batch_length`` consecutive rows, uniformly over all valid windows, then
        move a ``terminal_fraction`` share of them to end at a terminal row (once one is stored).

        :param batch_size: number of sequences B
        :param batch_length: sequence length T
        :param env: unused (SB3 signature; Dreamer refuses ``VecNormalize``)
        :return: tensors of shape (B, T, ...)
        """
        windows = self._num_windows(batch_length)
        if windows.sum() == 0:
            raise ValueError(f"The replay buffer holds no sequence of length {batch_length} yet ({self.size()} rows stored)")
        envs = np.random.choice(self.n_envs, size=batch_size, p=windows / windows.sum())
        offsets = np.floor(np.random.random(batch_size) * windows[envs]).astype(np.int64)
        if self.terminal_fraction > 0.0 and self.has_terminal:
            self._end_at_terminals(envs, offsets, batch_length, windows)
        # In a full stream the oldest row sits at the write position; windows start there and never cross it.
        starts = np.where(self.stream_full[envs], self.stream_pos[envs] + offsets, offsets)
        index = (starts[:, None] + np.arange(batch_length)[None, :]) % self.capacity  # (B, T)
        rows = envs[:, None]
        if self.reward_function is not None:
            self.reward_function(rows, index)
        observations = {key: self.to_torch(array[rows, index]) for key, array in self.observations.items()}
        return SequenceSamples(
            observations=observations if isinstance(self.observation_space, spaces.Dict) else observations["obs"],
            prev_actions=self.to_torch(self.prev_actions[rows, index]),
            rewards=self.to_torch(self.rewards[rows, index]),
            is_first=self.to_torch(self.is_first[rows, index]),
            is_terminal=self.to_torch(self.is_terminal[rows, index]),
        )

    def _end_at_terminals(self, envs: np.ndarray, offsets: np.ndarray, batch_length: int, windows: np.ndarray) -> None:
        """Move a ``terminal_fraction`` share of the windows (in place) to end at a terminal row of their stream."""
        chosen = np.flatnonzero(np.random.random(len(envs)) < self.terminal_fraction)
        for env in np.unique(envs[chosen]):
            rows = np.where(self.stream_full[env], self.capacity, self.stream_pos[env])
            oldest = self.stream_pos[env] if self.stream_full[env] else 0
            # Terminal rows as offsets from the oldest row; a window ending there starts batch_length - 1 rows earlier.
            ends = (np.flatnonzero(self.is_terminal[env]) - oldest) % self.capacity
            starts = ends[(ends < rows) & (ends >= batch_length - 1)] - (batch_length - 1)
            starts = starts[starts < windows[env]]
            if len(starts):
                picks = chosen[envs[chosen] == env]
                offsets[picks] = starts[np.random.randint(len(starts), size=len(picks))]

    def to_torch(self, array: np.ndarray, copy: bool = True) -> th.Tensor:
        """Numpy array to a tensor on the buffer's device, keeping integer and boolean dtypes."""
        return th.as_tensor(array, device=self.device)

    def _get_samples(self, batch_inds: np.ndarray, env: Any = None) -> Any:  # pragma: no cover - SB3 abstract method
        raise NotImplementedError("SequenceReplayBuffer samples windows with sample(batch_size, batch_length)")


def _check_finite(name: str, *arrays: np.ndarray) -> None:
    for array in arrays:
        array = np.asarray(array)
        if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
            raise ValueError(f"The environment returned a non-finite {name} (NaN or inf): {array}")


def finite_rows(obs: np.ndarray | dict[str, np.ndarray], n_envs: int) -> tuple[Any, np.ndarray]:
    """Rows of a (possibly Dict) batch of observations that are finite, and the batch with the other rows zeroed.

    :return: (observations safe to encode, (n_envs,) bool mask of the finite rows)
    """
    arrays = obs.values() if isinstance(obs, dict) else [obs]
    finite = np.ones(n_envs, dtype=bool)
    for array in arrays:
        if np.issubdtype(np.asarray(array).dtype, np.floating):
            finite &= np.isfinite(np.asarray(array)).reshape(n_envs, -1).all(axis=1)
    if finite.all():
        return obs, finite
    if isinstance(obs, dict):
        return {key: np.where(_rows(finite, value), value, 0) for key, value in obs.items()}, finite
    return np.where(_rows(finite, obs), obs, 0), finite


def _rows(mask: np.ndarray, like: np.ndarray) -> np.ndarray:
    return mask.reshape(-1, *([1] * (np.ndim(like) - 1)))
