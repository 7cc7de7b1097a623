"""Offline datasets of other agents' experience, for pretraining Dreamer's world model.

Method: "Adapting to the Unfamiliar: Leveraging Latent Space in RL for Cross-Environment Generalization"
(https://github.com/JonaSchulz/pydreamer, report section 2.4): episodes of several games, played by other agents
(several checkpoints per game, switched at random), are mixed in one dataset; a world model pretrained on them is
fine-tuned on a new game (:mod:`sb3_dreamer.transfer.pretrain`).

On disk a dataset is a folder::

    dataset.json              format name and version, observation layout, action representation, episode index
    episodes/000000.npz       one episode per file, in DreamerV3's replay rows (sequence_replay format below)

An episode of L steps has L + 1 rows: row t holds observation x_t (one array per key, ``obs`` for a Box space;
images keep their dtype, uint8 or bool), the action a_{t-1} that led to it in Dreamer's representation
(``prev_actions``: one-hot for Discrete, scaled to [-1, 1] for Box, zero-padded to the dataset's width), the reward
r_t, ``is_first`` and ``is_terminal`` (true termination, not a time limit). Several games share one dataset when they
share the observation layout and action representation: map MinAtar's per-game channels to one categorical map with
:class:`MinAtarCategorical` (the pydreamer layout) or zero-pad them with
:class:`~sb3_dreamer.transfer.PadObservation`; use the full action set (``MinAtar/<Game>-v0``: 6 actions in every
game) or let smaller action spaces be zero-padded (their one-hot or scaled vector fills the first entries).
"""

from __future__ import annotations

import json
import random
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces

from sb3_dreamer.common.usage import UsageError
from sb3_dreamer.dreamer.buffers import SequenceReplayBuffer
from sb3_dreamer.dreamer.policies import action_dim, same_observation_space, to_model_action

#: Name and version written into ``dataset.json``; a dataset of another version is refused with a clear error.
DATASET_FORMAT, DATASET_VERSION = "sb3-dreamer-offline", 1
_ROW_KEYS = ("prev_actions", "rewards", "is_first", "is_terminal")


class MinAtarCategorical(gym.ObservationWrapper):
    """MinAtar's (10, 10, C) boolean channels as one categorical map, one-hot over ``classes`` channels.

    Each cell becomes class ``1 + (first active channel)``, or 0 when empty (pydreamer's shared MinAtar layout, report
    section 2.4: 11 classes cover every game's channels); the output is the one-hot (10, 10, ``classes``) boolean
    image, so every game has the same observation space. Cells where several channels are active (e.g. Breakout's ball
    over its trail) keep only the first one.

    :param env: a MinAtar env (Box (H, W, C) of bool)
    :param classes: channels of the output: 1 + the largest channel count of the games to share (MinAtar: 11)
    """

    def __init__(self, env: gym.Env, classes: int = 11) -> None:
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, spaces.Box) or len(space.shape) != 3:
            raise UsageError(f"MinAtarCategorical needs (H, W, C) image observations, got {space}")
        if space.shape[-1] >= classes:
            raise UsageError(f"MinAtarCategorical: {space.shape[-1]} channels need classes >= {space.shape[-1] + 1}")
        self.observation_space = spaces.Box(0, 1, (*space.shape[:2], classes), bool)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        """(H, W, C) channels -> (H, W, classes) one-hot of the categorical map."""
        obs = np.asarray(observation, dtype=bool)
        category = np.where(obs.any(-1), obs.argmax(-1) + 1, 0)
        return np.eye(self.observation_space.shape[-1], dtype=bool)[category]


def _describe(space: spaces.Space) -> dict[str, dict[str, Any]]:
    subspaces = space.spaces if isinstance(space, spaces.Dict) else {"obs": space}
    for key, sub in subspaces.items():
        if not isinstance(sub, spaces.Box):
            raise UsageError(f"Offline datasets hold Box observations (or a Dict of them); {key!r} is {sub}")
    return {key: {"shape": list(sub.shape), "dtype": np.dtype(sub.dtype).name} for key, sub in subspaces.items()}


def _action_kind(space: spaces.Space) -> str:
    return "continuous" if isinstance(space, spaces.Box) else "discrete"


class OfflineDataset:
    """A versioned on-disk dataset of episodes in DreamerV3's replay rows (module docstring), shared by several games.

    ``OfflineDataset.create(path, observation_space, action_space)`` starts one; ``OfflineDataset(path)`` opens it.

    :param path: the dataset's folder
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        index = self.path / "dataset.json"
        if not index.exists():
            raise UsageError(f"{str(self.path)!r} is not an offline dataset: {index.name} is missing")
        try:
            meta = json.loads(index.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise UsageError(f"{index} is corrupt (not JSON: {error})") from None
        if not isinstance(meta, dict) or meta.get("format") != DATASET_FORMAT:
            raise UsageError(f"{index} is not an sb3-dreamer offline dataset (format {DATASET_FORMAT!r} expected)")
        if meta.get("version") != DATASET_VERSION:
            raise UsageError(f"{index} has version {meta.get('version')}; this sb3-dreamer reads version {DATASET_VERSION}")
        self.meta: dict[str, Any] = meta

    @classmethod
    def create(cls, path: str | Path, observation_space: spaces.Space, action_space: spaces.Space) -> OfflineDataset:
        """Start an empty dataset for this observation layout and action representation (refuses a non-empty folder).

        :param path: a new or empty folder
        :param observation_space: the common observation layout (Box or Dict of Box)
        :param action_space: the common action space; its model representation (one-hot / scaled Box) is stored
        """
        path = Path(path)
        if path.exists() and any(path.iterdir()):
            raise UsageError(f"Cannot create a dataset in {str(path)!r}: the folder is not empty (open it instead)")
        (path / "episodes").mkdir(parents=True, exist_ok=True)
        meta = dict(
            format=DATASET_FORMAT,
            version=DATASET_VERSION,
            observation=_describe(observation_space),
            action_kind=_action_kind(action_space),
            action_dim=action_dim(action_space),
            episodes=[],
        )
        (path / "dataset.json").write_text(json.dumps(meta, indent=1))
        return cls(path)

    # Contents ----------------------------------------------------------------------------------------------------------

    @property
    def episodes(self) -> list[dict[str, Any]]:
        """The episode index: file, game, source agent, length (steps) and return of each episode."""
        return self.meta["episodes"]

    @property
    def action_dim(self) -> int:
        """Width of the stored actions."""
        return int(self.meta["action_dim"])

    def num_steps(self, game: str | None = None) -> int:
        """Environment steps stored (of one game, or of all)."""
        return sum(ep["length"] for ep in self.episodes if game is None or ep["game"] == game)

    def games(self) -> list[str]:
        """The games in the dataset, in order of first appearance."""
        return list(dict.fromkeys(ep["game"] for ep in self.episodes))

    def check_layout(
        self, observation_space: spaces.Space, action_space: spaces.Space, what: str = "the model", pad: bool = False
    ) -> None:
        """Raise a :class:`UsageError` naming the difference if ``what`` does not share the dataset's layout.

        :param pad: accept narrower actions of the same kind (they are zero-padded when recorded)
        """
        layout = _describe(observation_space)
        if layout != self.meta["observation"]:
            raise UsageError(
                f"The dataset {str(self.path)!r} holds observations {self.meta['observation']}, {what} has {layout}; "
                "map them to one layout (MinAtarCategorical, PadObservation)"
            )
        kind, width = _action_kind(action_space), action_dim(action_space)
        if kind != self.meta["action_kind"] or width > self.action_dim or (width < self.action_dim and not pad):
            raise UsageError(
                f"The dataset {str(self.path)!r} holds {self.meta['action_kind']} actions of width {self.action_dim}, "
                f"{what} has {kind} actions of width {width} ({action_space}); use the full action set or pad"
            )

    def add_episode(self, rows: dict[str, np.ndarray], game: str, source: str = "") -> None:
        """Write one episode (replay rows, module docstring: ``obs`` or ``obs/<key>``, ``prev_actions``, ``rewards``,
        ``is_first``, ``is_terminal``) and add it to the index."""
        length = len(rows["rewards"])
        for key, spec in self.meta["observation"].items():
            array = rows.get(f"obs/{key}")
            if array is None or tuple(array.shape) != (length, *spec["shape"]) or array.dtype.name != spec["dtype"]:
                shape = None if array is None else (tuple(array.shape), array.dtype.name)
                raise UsageError(f"Episode observation {key!r} is {shape}, the dataset expects {length} x {spec}")
        if rows["prev_actions"].shape != (length, self.action_dim):
            raise UsageError(f"Episode actions are {rows['prev_actions'].shape}, expected ({length}, {self.action_dim})")
        for key in ("rewards", "prev_actions"):
            if not np.all(np.isfinite(rows[key])):
                raise UsageError(f"Episode {key} hold NaN or infinite values")
        name = f"episodes/{len(self.episodes):06d}.npz"
        np.savez_compressed(self.path / name, **rows)
        self.episodes.append(
            dict(file=name, game=game, source=source, length=length - 1, ret=float(rows["rewards"][1:].sum()))
        )
        tmp = self.path / "dataset.json.tmp"
        tmp.write_text(json.dumps(self.meta, indent=1))
        tmp.replace(self.path / "dataset.json")  # the index is never left half-written

    def iter_episodes(self) -> Iterator[dict[str, np.ndarray]]:
        """Load the episodes one by one (arrays as stored)."""
        for episode in self.episodes:
            file = self.path / episode["file"]
            try:
                with np.load(file) as data:
                    rows = {key: data[key] for key in data.files}
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
                raise UsageError(f"Episode file {file} is missing or corrupt ({error})") from None
            missing = sorted({*_ROW_KEYS, *(f"obs/{key}" for key in self.meta["observation"])} - set(rows))
            if missing:
                raise UsageError(f"Episode file {file} lacks {missing} (not written by this dataset's add_episode)")
            yield rows

    def replay_buffer(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: str | th.device = "cpu",
        **buffer_kwargs: Any,
    ) -> SequenceReplayBuffer:
        """All episodes in one replay stream (windows across episodes reset at ``is_first``, as in DreamerV3).

        :param observation_space: the model's observation space (checked against the dataset's layout)
        :param action_space: the model's action space (checked likewise)
        :param device: device of the sampled tensors (the model's)
        :param buffer_kwargs: sampling arguments of :class:`SequenceReplayBuffer` (the model's ``replay_buffer_kwargs``,
            e.g. ``terminal_fraction``)
        """
        self.check_layout(observation_space, action_space)
        if not self.episodes:
            raise UsageError(f"The dataset {str(self.path)!r} holds no episodes")
        rows = sum(ep["length"] + 1 for ep in self.episodes)
        buffer = SequenceReplayBuffer(
            rows, observation_space, action_space, device=device, action_dim=self.action_dim, **buffer_kwargs
        )
        for episode in self.iter_episodes():
            obs = {key: episode[f"obs/{key}"] for key in self.meta["observation"]}
            buffer.extend(obs, *(episode[key] for key in _ROW_KEYS))
        return buffer


def record_episodes(
    agents: Any | Sequence[Any],
    env: gym.Env,
    steps: int,
    dataset: OfflineDataset,
    game: str | None = None,
    layout: Callable[[gym.Env], gym.ObservationWrapper] | None = None,
    deterministic: bool = False,
    seed: int | None = None,
) -> int:
    """Play ``env`` with SB3 agents and append whole episodes to ``dataset`` until ``steps`` steps are stored.

    At every episode start one of ``agents`` is drawn at random (several checkpoints of one agent switched at random,
    as pydreamer's data collection does). The agents see the env's own observations; the dataset stores them mapped by
    ``layout`` (e.g. :class:`MinAtarCategorical`) and the actions in the dataset's representation, zero-padded.

    :param agents: an SB3 model (anything with ``predict(obs, state, episode_start, deterministic)``) or a list of them
    :param env: a single (not vectorised) gymnasium env, the one the agents were trained on
    :param steps: env steps to record (the last episode is finished, so slightly more may be stored)
    :param dataset: the dataset to append to
    :param game: the name stored with each episode (default: the env's id)
    :param layout: maps the env to the dataset's observation layout (a wrapper class or factory; None: as is)
    :param deterministic: the agents' greedy actions (default: sampled, for more varied data)
    :param seed: seed of the env's first reset and of the agent draws
    :return: the number of steps recorded
    """
    agents = list(agents) if isinstance(agents, (list, tuple)) else [agents]
    if not agents:
        raise UsageError("record_episodes needs at least one agent")
    for index, agent in enumerate(agents):
        if not same_observation_space(agent.observation_space, env.observation_space) or (
            agent.action_space != env.action_space
        ):
            raise UsageError(
                f"Agent {index} was trained on {agent.observation_space} / {agent.action_space}, the env has "
                f"{env.observation_space} / {env.action_space}"
            )
    mapped = layout(env) if layout is not None else None
    as_stored = mapped.observation if mapped is not None else (lambda obs: obs)
    dataset.check_layout(
        env.observation_space if mapped is None else mapped.observation_space,
        env.action_space,
        what="the recorded env",
        pad=True,
    )
    game = game or (env.spec.id if env.spec is not None else type(env.unwrapped).__name__)
    rng = random.Random(seed)
    recorded, reset_seed = 0, seed
    width = dataset.action_dim
    while recorded < steps:
        index = rng.randrange(len(agents))
        agent, state = agents[index], None
        obs, _ = env.reset(seed=reset_seed)
        reset_seed = None
        frames, actions, rewards, terminals = [as_stored(obs)], [np.zeros(width, np.float32)], [0.0], [False]
        done = False
        while not done:
            action, state = agent.predict(
                obs, state=state, episode_start=np.array([len(frames) == 1]), deterministic=deterministic
            )
            obs, reward, terminated, truncated, _ = env.step(action)
            model_action = to_model_action(env.action_space, np.asarray(action)[None])[0]
            padded = np.zeros(width, np.float32)
            padded[: model_action.size] = model_action
            frames.append(as_stored(obs))
            actions.append(padded)
            rewards.append(float(reward))
            terminals.append(bool(terminated))
            done = terminated or truncated
        rows = _stack_observations(frames, dataset.meta["observation"])
        rows.update(
            prev_actions=np.stack(actions),
            rewards=np.asarray(rewards, np.float32),
            is_first=np.arange(len(frames)) == 0,
            is_terminal=np.asarray(terminals),
        )
        dataset.add_episode(rows, game=game, source=f"agent {index}")
        recorded += len(frames) - 1
    return recorded


def _stack_observations(frames: list[Any], layout: dict[str, Any]) -> dict[str, np.ndarray]:
    if list(layout) == ["obs"] and not isinstance(frames[0], dict):
        return {"obs/obs": np.stack(frames).astype(layout["obs"]["dtype"])}
    return {f"obs/{key}": np.stack([f[key] for f in frames]).astype(spec["dtype"]) for key, spec in layout.items()}
