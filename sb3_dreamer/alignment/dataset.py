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

A file that is not such an archive (a text file, a single ``.npy`` array, a pickle, an empty or truncated file) is
rejected by :meth:`TrajectoryDataset.load` with a ``ValueError`` that names the file and says what it holds instead.
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
_NOT_A_DATASET = "expected an .npz archive written by TrajectoryDataset.save or record_trajectories(...).save()"


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
    :param path: the file the dataset was read from by :meth:`load` ("" otherwise); shown in error messages, not saved
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
    path: str = dataclasses.field(default="", compare=False)

    def __post_init__(self) -> None:
        self.observations = np.asarray(self.observations, dtype=np.float32)
        self.next_observations = np.asarray(self.next_observations, dtype=np.float32)
        self.actions = np.asarray(self.actions)
        self.rewards = np.asarray(self.rewards, dtype=np.float64)
        self.episode_lengths = np.asarray(self.episode_lengths, dtype=np.int64)
        self.terminated = np.asarray(self.terminated, dtype=bool)
        self.env_id, self.observation_space, self.action_space, self.path = (
            str(self.env_id),
            str(self.observation_space),
            str(self.action_space),
            os.fspath(self.path),
        )
        self._validate()

    def __repr__(self) -> str:
        """One line: episodes, steps, observation dim, actions, rewards, recording env and file (never the arrays)."""
        lengths = self.episode_lengths
        returns = np.add.reduceat(self.rewards, np.concatenate(([0], np.cumsum(lengths)[:-1])))
        parts = [
            f"{self.n_episodes} episodes",
            f"{len(self.observations)} steps ({int(lengths.min())}-{int(lengths.max())} per episode)",
            f"obs_dim={self.obs_dim}",
            f"actions {self.actions.dtype} {self.actions.shape[1:]}",
            f"rewards (episode return {float(returns.mean()):.4g} mean, {float(returns.min()):.4g} to "
            f"{float(returns.max()):.4g})",
            f"{int(self.terminated.sum())} terminated",
            f"env_id={self.env_id!r}" if self.env_id else "env_id unknown",
        ]
        if self.path:
            parts.append(f"path={self.path!r}")
        return f"TrajectoryDataset({', '.join(parts)})"

    def describe(self) -> str:
        """Where the dataset comes from, for error messages.

        :return: e.g. ``"reference file 'ref.npz' (recorded on 'Pendulum-v1')"``
        """
        origin = f"reference file {self.path!r}" if self.path else "the reference dataset"
        recorded = f"recorded on {self.env_id!r}" if self.env_id else "recording env unknown"
        return f"{origin} ({recorded})"

    def check_observation_space(self, observation_space: spaces.Space, env_id: str = "") -> None:
        """Check that an env's observations are 1-D Box vectors of the reference's dimension (what the DTW reward needs).

        :param observation_space: the env's observation space
        :param env_id: the env's gymnasium id, for the message ("" if unknown)
        :raises ValueError: naming the reference file, the env it was recorded on, the env and its observation shape
        """
        shape = getattr(observation_space, "shape", None)
        if isinstance(observation_space, spaces.Box) and shape == (self.obs_dim,):
            return
        env = f"env {env_id!r}" if env_id else "the env"
        if not isinstance(observation_space, spaces.Box) or shape is None or len(shape) != 1:
            raise ValueError(
                f"{env} has observation space {observation_space}; the DTW reward needs a 1-D Box observation space "
                f"like that of {self.describe()}, which has {self.obs_dim}-dim observations"
            )
        raise ValueError(
            f"observation dim mismatch: {self.describe()} has {self.obs_dim}-dim observations, but {env} has "
            f"observation shape {shape}; record the reference on an env whose observations have the target's shape"
        )

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
        :raises ValueError: naming the file, if it is empty, not a valid npz archive (a text file, a ``.npy`` array,
            corrupt or truncated), of an unknown format version, misses keys, or holds inconsistent or non-finite data
        """
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"reference file {path!r} does not exist")
        contents = read_npz(path)
        if "format_version" not in contents:
            raise ValueError(
                f"reference file {path!r} is an .npz archive without a 'format_version' field: {_NOT_A_DATASET} "
                f"(it holds {sorted(contents)[:6]})"
            )
        version = int(contents["format_version"])
        if version not in _KNOWN_VERSIONS:
            raise ValueError(f"reference file {path!r} has format_version {version}, known versions: {_KNOWN_VERSIONS}")
        missing = [key for key in (*_ARRAY_KEYS, *_STRING_KEYS) if key not in contents]
        if missing:
            raise ValueError(f"reference file {path!r} misses fields {missing}")
        fields = {key: contents[key] for key in _ARRAY_KEYS}
        fields.update({key: str(contents[key]) for key in _STRING_KEYS})
        try:
            return cls(**fields, path=path)
        except ValueError as exc:
            raise ValueError(f"reference file {path!r} is invalid: {exc}") from exc


def read_npz(path: str, what: str = "reference file", expected: str = "") -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` file eagerly (npz members are decompressed lazily, so truncation shows late).

    :param path: the file
    :param what: what the file is meant to be, for the message (e.g. ``"reference file"``)
    :param expected: what a valid file is, for the message (default: an archive of :class:`TrajectoryDataset`)
    :return: its arrays by name
    :raises ValueError: naming the file and what it holds, if it is not a readable ``.npz`` archive
    """
    expected = f"expected {expected}" if expected else _NOT_A_DATASET
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} {path!r} does not exist")
    with open(path, "rb") as file:
        head = file.read(512)
    problem = _not_a_zip(head)
    if problem is not None:
        raise ValueError(f"{what} {path!r} is not a valid .npz archive: {problem}; {expected}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise ValueError(
            f"{what} {path!r} is not a valid .npz archive: it is truncated or corrupt "
            f"({type(exc).__name__}: {exc}); {expected}"
        ) from exc


def _not_a_zip(head: bytes) -> str | None:
    """Say what a file is if its first bytes are not a zip archive's (an ``.npz`` file is a zip archive).

    :param head: the file's first bytes
    :return: a description such as ``"it is empty"``, or None for a zip archive
    """
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return None
    if not head:
        return "it is empty (0 bytes)"
    if head.startswith(b"\x93NUMPY"):
        return "it holds a single .npy array (numpy.save), not an .npz archive"
    if head.startswith(b"\x80"):
        return "it is a Python pickle, not an .npz archive"
    if b"\x00" in head:
        return "it is a binary file that is not a zip archive"
    return "it is a text file, not a zip archive"


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
