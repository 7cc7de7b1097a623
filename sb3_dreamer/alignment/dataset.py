"""Reference trajectories: recording from any SB3 model or callable, and a versioned ``.npz`` file format.

Layout: all episodes are concatenated along the first axis; ``episode_lengths`` splits them. Step ``t`` of an episode
stores the observation the action was taken in (``observations[t]``), the action, the reward returned by ``step`` and
the observation returned by ``step`` (``next_observations[t]``; the true final observation at episode end, never the
observation after an automatic reset).

File format (``format_version`` 1), written with :func:`numpy.savez_compressed` and read with ``allow_pickle=False``:

==================== ================ =========================================================
key                  dtype / shape    meaning
==================== ================ =========================================================
``format_version``   int64, ()        1
``observations``     float32, (N, D)  flattened Box observations before each action
``next_observations`` float32, (N, D) flattened observations returned by each step
``actions``          numeric, (N, ...) actions as given to ``env.step``
``rewards``          float64, (N,)    rewards returned by each step
``episode_lengths``  int64, (E,)      steps per episode, all > 0, summing to N
``terminated``       bool, (E,)       True if the episode ended by termination (not truncation)
``env_id``           str, ()          gymnasium id of the recording env ("" if unknown)
``observation_space`` str, ()         ``repr`` of the observation space
``action_space``     str, ()          ``repr`` of the action space
==================== ================ =========================================================
"""

import dataclasses
import os
import zipfile
import zlib
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
from gymnasium import spaces

FORMAT_VERSION = 1
_KNOWN_VERSIONS = (1,)
_ARRAY_KEYS = ("observations", "next_observations", "actions", "rewards", "episode_lengths", "terminated")
_STRING_KEYS = ("env_id", "observation_space", "action_space")


class Episode(NamedTuple):
    """Arrays of one episode (views into the dataset).

    :param observations: ``(T, D)`` observations before each action
    :param next_observations: ``(T, D)`` observations returned by each step
    :param actions: ``(T, ...)`` actions
    :param rewards: ``(T,)`` rewards
    :param terminated: whether the episode ended by termination
    """

    observations: np.ndarray
    next_observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: bool


@dataclasses.dataclass
class TrajectoryDataset:
    """Concatenated episodes recorded in one environment, validated on construction.

    :param observations: ``(N, D)`` float32 observations before each action
    :param next_observations: ``(N, D)`` float32 observations returned by each step
    :param actions: ``(N, ...)`` numeric actions
    :param rewards: ``(N,)`` float64 rewards
    :param episode_lengths: ``(E,)`` int64 episode lengths (each > 0, summing to N)
    :param terminated: ``(E,)`` bool, True when the episode ended by termination rather than truncation
    :param env_id: gymnasium id of the environment ("" if unknown)
    :param observation_space: ``repr`` of the observation space
    :param action_space: ``repr`` of the action space
    """

    observations: np.ndarray
    next_observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    episode_lengths: np.ndarray
    terminated: np.ndarray
    env_id: str = ""
    observation_space: str = ""
    action_space: str = ""

    def __post_init__(self) -> None:
        self.observations = np.asarray(self.observations, dtype=np.float32)
        self.next_observations = np.asarray(self.next_observations, dtype=np.float32)
        self.actions = np.asarray(self.actions)
        self.rewards = np.asarray(self.rewards, dtype=np.float64)
        self.episode_lengths = np.asarray(self.episode_lengths, dtype=np.int64)
        self.terminated = np.asarray(self.terminated, dtype=bool)
        self.env_id, self.observation_space, self.action_space = (
            str(self.env_id),
            str(self.observation_space),
            str(self.action_space),
        )
        self._validate()

    def _validate(self) -> None:
        """Check shapes, dtypes and values; raise ``ValueError`` naming the first problem found."""
        if self.observations.ndim != 2 or self.observations.shape[1] == 0:
            raise ValueError(f"observations must be a 2-D (N, obs_dim) array, got shape {self.observations.shape}")
        n_steps = self.observations.shape[0]
        if self.next_observations.shape != self.observations.shape:
            raise ValueError(
                f"next_observations shape {self.next_observations.shape} != observations shape {self.observations.shape}"
            )
        if self.actions.shape[:1] != (n_steps,) or not np.issubdtype(self.actions.dtype, np.number):
            raise ValueError(
                f"actions must be a numeric array with {n_steps} rows, got {self.actions.dtype} {self.actions.shape}"
            )
        if self.rewards.shape != (n_steps,):
            raise ValueError(f"rewards must have shape ({n_steps},), got {self.rewards.shape}")
        if self.episode_lengths.ndim != 1 or len(self.episode_lengths) == 0:
            raise ValueError("the dataset holds no episode: at least one non-empty episode is needed")
        if np.any(self.episode_lengths <= 0):
            raise ValueError(f"episode lengths must be positive, got {self.episode_lengths.tolist()}")
        if int(self.episode_lengths.sum()) != n_steps:
            raise ValueError(f"episode lengths sum to {int(self.episode_lengths.sum())}, but there are {n_steps} steps")
        if self.terminated.shape != self.episode_lengths.shape:
            raise ValueError(f"terminated must have shape {self.episode_lengths.shape}, got {self.terminated.shape}")
        for name in ("observations", "next_observations", "actions", "rewards"):
            if not np.all(np.isfinite(getattr(self, name))):
                raise ValueError(f"{name} contains NaN or infinite values")

    @property
    def obs_dim(self) -> int:
        """Flattened observation dimension D."""
        return int(self.observations.shape[1])

    @property
    def n_episodes(self) -> int:
        """Number of episodes E."""
        return len(self.episode_lengths)

    @property
    def episode_starts(self) -> np.ndarray:
        """``(N,)`` bool array, True at the first step of each episode (SB3's ``episode_start``)."""
        starts = np.zeros(len(self.observations), dtype=bool)
        starts[np.concatenate(([0], np.cumsum(self.episode_lengths)[:-1]))] = True
        return starts

    def episodes(self) -> Iterator[Episode]:
        """Iterate over episodes in recording order.

        :return: iterator of :class:`Episode` (views, not copies)
        """
        start = 0
        for length, terminated in zip(self.episode_lengths.tolist(), self.terminated.tolist(), strict=True):
            end = start + length
            yield Episode(
                self.observations[start:end],
                self.next_observations[start:end],
                self.actions[start:end],
                self.rewards[start:end],
                bool(terminated),
            )
            start = end

    def save(self, path: str | os.PathLike) -> str:
        """Write the dataset as a compressed ``.npz`` file (format described in the module docstring).

        :param path: file path; ``.npz`` is appended if missing (numpy's behaviour)
        :return: the path actually written
        """
        path = os.fspath(path)
        if not path.endswith(".npz"):
            path += ".npz"
        arrays: dict[str, Any] = {name: getattr(self, name) for name in _ARRAY_KEYS}
        arrays.update({name: np.array(getattr(self, name)) for name in _STRING_KEYS})
        np.savez_compressed(path, format_version=np.array(FORMAT_VERSION, dtype=np.int64), **arrays)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TrajectoryDataset":
        """Read and validate a dataset written by :meth:`save`.

        :param path: ``.npz`` file
        :return: the dataset
        :raises FileNotFoundError: if the file does not exist
        :raises ValueError: naming the file, if it is empty, not a valid npz archive (corrupt or truncated), of an
            unknown format version, misses keys, or holds inconsistent or non-finite data
        """
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"reference file {path!r} does not exist")
        if os.path.getsize(path) == 0:
            raise ValueError(f"reference file {path!r} is empty")
        contents = _read_npz(path)
        if "format_version" not in contents:
            raise ValueError(f"reference file {path!r} has no 'format_version' field: not a TrajectoryDataset file")
        version = int(contents["format_version"])
        if version not in _KNOWN_VERSIONS:
            raise ValueError(f"reference file {path!r} has format_version {version}, known versions: {_KNOWN_VERSIONS}")
        missing = [key for key in (*_ARRAY_KEYS, *_STRING_KEYS) if key not in contents]
        if missing:
            raise ValueError(f"reference file {path!r} misses fields {missing}")
        fields = {key: contents[key] for key in _ARRAY_KEYS}
        fields.update({key: str(contents[key]) for key in _STRING_KEYS})
        try:
            return cls(**fields)
        except ValueError as exc:
            raise ValueError(f"reference file {path!r} is invalid: {exc}") from exc


def _read_npz(path: str) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` file eagerly (npz members are decompressed lazily, so truncation shows late)."""
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("the file holds a single .npy array, not an .npz archive")
        with archive:
            return {key: archive[key] for key in archive.files}
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise ValueError(f"file {path!r} is not a valid .npz archive (corrupt or truncated?): {exc}") from exc


def _flatten_obs(observation: Any, name: str) -> np.ndarray:
    flat = np.asarray(observation, dtype=np.float32).reshape(-1)
    if not np.all(np.isfinite(flat)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return flat


def record_trajectories(
    model_or_callable: Any,
    env: gym.Env | str,
    n_episodes: int,
    deterministic: bool = True,
    seed: int | None = None,
) -> TrajectoryDataset:
    """Roll out a policy for ``n_episodes`` episodes and return the recorded trajectories.

    With an SB3 model, actions come from ``model.predict(obs, state=state, episode_start=..., deterministic=...)`` and
    the returned ``state`` is threaded from step to step (reset at episode starts), so recurrent policies such as
    ``RecurrentPPO`` or ``Dreamer`` work. Any other callable is called as ``policy(obs) -> action``.

    :param model_or_callable: SB3 model (anything with ``predict``) or a callable ``policy(obs) -> action``
    :param env: a gymnasium env or an env id (created with ``gymnasium.make`` and closed afterwards); its observation
        space must be a Box (observations are flattened to float32 vectors)
    :param n_episodes: number of complete episodes to record (the env must terminate or truncate, e.g. a TimeLimit)
    :param deterministic: passed to ``model.predict``
    :param seed: seed of the first ``reset`` (later resets continue the env's RNG)
    :return: the recorded dataset
    """
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    owns_env = isinstance(env, str)
    environment = gym.make(env) if isinstance(env, str) else env
    if not isinstance(environment.observation_space, spaces.Box):
        raise ValueError(f"record_trajectories needs a Box observation space, got {environment.observation_space}")
    has_predict = hasattr(model_or_callable, "predict")
    if not has_predict and not callable(model_or_callable):
        raise TypeError("model_or_callable must be an SB3 model (with predict) or a callable policy(obs) -> action")
    policy: Callable[[Any], Any] = model_or_callable
    columns: dict[str, list[Any]] = {name: [] for name in ("observations", "next_observations", "actions", "rewards")}
    lengths, terminated_flags = [], []
    try:
        for episode in range(n_episodes):
            obs, _ = environment.reset(seed=seed if episode == 0 else None)
            state, episode_start, length, done = None, True, 0, False
            while not done:
                if has_predict:
                    action, state = model_or_callable.predict(
                        obs, state=state, episode_start=np.array([episode_start]), deterministic=deterministic
                    )
                else:
                    action = policy(obs)
                next_obs, reward, terminated, truncated, _ = environment.step(action)
                columns["observations"].append(_flatten_obs(obs, "observation"))
                columns["next_observations"].append(_flatten_obs(next_obs, "observation"))
                columns["actions"].append(np.asarray(action))
                columns["rewards"].append(float(reward))
                obs, episode_start, length = next_obs, False, length + 1
                done = bool(terminated or truncated)
            lengths.append(length)
            terminated_flags.append(bool(terminated))
    finally:
        if owns_env:
            environment.close()
    spec = environment.spec
    return TrajectoryDataset(
        observations=np.stack(columns["observations"]),
        next_observations=np.stack(columns["next_observations"]),
        actions=np.stack(columns["actions"]),
        rewards=np.asarray(columns["rewards"]),
        episode_lengths=np.asarray(lengths),
        terminated=np.asarray(terminated_flags),
        env_id=spec.id if spec is not None else "",
        observation_space=repr(environment.observation_space),
        action_space=repr(environment.action_space),
    )
