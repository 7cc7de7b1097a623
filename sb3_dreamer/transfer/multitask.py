"""One vectorised environment over several tasks, for training one multi-task Dreamer.

Paper: Sasso, Sabatelli & Wiering, "Multi-Source Transfer Learning for Deep Model-Based Reinforcement Learning",
TMLR 2023 (https://arxiv.org/abs/2205.14410), section 4.1; code https://github.com/remosasso/multi-source-TL-for-deep-MBRL
(``dreamer-multi-task.py``, ``wrappers.py`` ``PadActions``). One agent (one encoder, world model, actor and critic, no
task id) trains on all tasks at once; the task is inferred from the observations.

Rules, per task:

- **Actions** (the paper's ``PadActions``): a Box action space is first rescaled to [-1, 1] (the paper's
  ``NormalizeActions``), then padded to the largest action dimension over the tasks; at ``step`` the action is cut
  back to the task's own dimensions (the extra dimensions are ignored, not penalised). Discrete action spaces must
  have the same number of actions in every task (there is nothing to cut a categorical action back to).
- **Observations**: the paper renders every task to 64 x 64 pixels, so differing proprioceptive sizes never reach its
  model. For vector observations we zero-pad flat Box observations to the largest dimension (this project's
  extension, not in the paper). Images are resized (nearest neighbour) to the largest height and width and their
  channels zero-padded to the largest channel count.
- **Returns**: a :class:`~stable_baselines3.common.monitor.Monitor` sits below the padding, so episode returns are the
  task's own; each step's ``info["task"]`` names the task, from which
  :class:`~sb3_dreamer.common.TaskReturnCallback` (added by :class:`~sb3_dreamer.Dreamer` itself) logs
  ``rollout/<task>/ep_rew_mean`` and ``ep_len_mean``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from gymnasium.wrappers import RescaleAction
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.preprocessing import is_image_space_channels_first
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_dreamer.common.callbacks import TASK_KEY
from sb3_dreamer.common.usage import UsageError, check_env_id

#: A task: a registered gymnasium id or a function that makes the env.
Task = str | Callable[[], gym.Env]


class PadAction(gym.ActionWrapper):
    """Accept actions of a larger Box (padded with extra dimensions) and pass only the env's own dimensions on.

    :param env: env with a flat Box action space
    :param size: the padded action dimension (>= the env's)
    :param low: lower bounds of the padded space (its first dimensions must contain the env's own bounds)
    :param high: upper bounds of the padded space
    """

    def __init__(self, env: gym.Env, size: int, low: np.ndarray, high: np.ndarray) -> None:
        super().__init__(env)
        self.own_dim = int(np.prod(env.action_space.shape))
        if size < self.own_dim:
            raise UsageError(f"PadAction: size {size} is smaller than the env's action dimension {self.own_dim}")
        self.action_space = spaces.Box(low, high, (size,), np.float32)

    def action(self, action: np.ndarray) -> np.ndarray:
        """Cut a padded action back to the env's own dimensions."""
        own = np.asarray(action, dtype=self.env.action_space.dtype).reshape(-1)[: self.own_dim]
        return own.reshape(self.env.action_space.shape)


class PadObservation(gym.ObservationWrapper):
    """Zero-pad flat vector observations to ``space``; resize images (nearest) and zero-pad their channels.

    :param env: env with a Box observation space (vector or image)
    :param space: the common observation space to map to
    """

    def __init__(self, env: gym.Env, space: spaces.Box) -> None:
        super().__init__(env)
        self.observation_space = space
        self.image = len(space.shape) == 3
        self.channels_first = self.image and is_image_space_channels_first(space)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        """Map one observation of the env to the common space."""
        obs = np.asarray(observation)
        if not self.image:
            out = np.zeros(self.observation_space.shape, self.observation_space.dtype)
            out[: obs.size] = obs.reshape(-1)
            return out
        chw = obs if self.channels_first else np.moveaxis(obs, -1, 0)
        channels, height, width = (
            self.observation_space.shape if self.channels_first else np.roll(self.observation_space.shape, 1)
        )
        if chw.shape[1:] != (height, width):
            resized = th.nn.functional.interpolate(th.as_tensor(chw[None].astype(np.float32)), size=(height, width))
            chw = resized[0].numpy()
        out = np.zeros((channels, height, width), self.observation_space.dtype)
        out[: chw.shape[0]] = chw.astype(self.observation_space.dtype)
        return out if self.channels_first else np.moveaxis(out, 0, -1)


def default_task_names(tasks: Sequence[Task], envs: Sequence[gym.Env]) -> list[str]:
    """Env ids without a ``module:`` prefix (or the env classes' names for factories of unregistered envs); repeated
    names get ``-1``, ``-2`` ..."""
    names = [
        t.split(":")[-1] if isinstance(t, str) else e.spec.id if e.spec is not None else type(e.unwrapped).__name__
        for t, e in zip(tasks, envs, strict=True)
    ]
    return [f"{name}-{names[:i].count(name)}" if names.count(name) > 1 else name for i, name in enumerate(names)]


def common_spaces(
    observation_spaces: Sequence[spaces.Space], action_spaces: Sequence[spaces.Space], names: Sequence[str]
) -> tuple[spaces.Box, spaces.Space]:
    """The padded observation and action spaces of a set of tasks, or a :class:`UsageError` naming the mismatch.

    :param observation_spaces: each task's observation space
    :param action_spaces: each task's action space (Box actions already rescaled to [-1, 1])
    :param names: task names, for error messages
    :return: (observation space, action space) shared by all tasks
    """
    for name, space in zip(names, observation_spaces, strict=True):
        if not isinstance(space, spaces.Box):
            raise UsageError(
                f"MultiTaskVecEnv: task {name!r} has observation space {space}; only Box observations (vectors or "
                "images) can be padded"
            )
    images = [len(space.shape) == 3 for space in observation_spaces]  # the codec's rule: a 3-D Box is an image
    if any(images) and not all(images):
        layout = ", ".join(f"{n}: {s.shape}" for n, s in zip(names, observation_spaces, strict=True))
        raise UsageError(f"MultiTaskVecEnv: cannot pad image and vector observations into one space ({layout})")
    if all(images):
        first = observation_spaces[0]
        channels_first = is_image_space_channels_first(first)
        if any(is_image_space_channels_first(s) != channels_first for s in observation_spaces):
            raise UsageError("MultiTaskVecEnv: the tasks' images mix channels-first and channels-last layouts")
        if any(
            s.dtype != first.dtype or s.low.min() != first.low.min() or s.high.max() != first.high.max()
            for s in observation_spaces
        ):
            kinds = ", ".join(
                f"{n}: {s.dtype} in [{s.low.min()}, {s.high.max()}]" for n, s in zip(names, observation_spaces, strict=True)
            )
            raise UsageError(f"MultiTaskVecEnv: image observations must share dtype and bounds ({kinds})")
        chw = np.array([s.shape if channels_first else np.roll(s.shape, 1) for s in observation_spaces]).max(axis=0)
        shape = tuple(int(x) for x in (chw if channels_first else np.roll(chw, -1)))
        obs_space = spaces.Box(first.low.min(), first.high.max(), shape, first.dtype)
    else:
        size = max(int(np.prod(s.shape)) for s in observation_spaces)
        low = np.full(size, -np.inf, np.float32)
        high = np.full(size, np.inf, np.float32)
        obs_space = spaces.Box(low, high, (size,), np.float32)

    if all(isinstance(s, spaces.Box) for s in action_spaces):
        size = max(int(np.prod(s.shape)) for s in action_spaces)
        return obs_space, spaces.Box(-1.0, 1.0, (size,), np.float32)
    if all(isinstance(s, spaces.Discrete) for s in action_spaces) and len({int(s.n) for s in action_spaces}) == 1:
        return obs_space, action_spaces[0]
    kinds = ", ".join(f"{n}: {s}" for n, s in zip(names, action_spaces, strict=True))
    raise UsageError(
        f"MultiTaskVecEnv: action spaces must all be Box (padded to the largest) or all Discrete with the same n; got {kinds}"
        " (MinAtar: the -v0 ids have the full action set of 6 in every game)"
    )


class TaskLabel(gym.Wrapper):
    """Put the task's name in ``info["task"]`` at every ``reset`` and ``step``.

    :param env: one task's env
    :param name: the task's name
    """

    def __init__(self, env: gym.Env, name: str) -> None:
        super().__init__(env)
        self.name = name

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        return obs, {**info, TASK_KEY: self.name}

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, {**info, TASK_KEY: self.name}


class TaskSet:
    """Several tasks and the padded spaces they share; :meth:`make` builds one task's env in those spaces.

    :param tasks: registered env ids or functions that make an env
    :param env_kwargs: keyword arguments of ``gym.make`` per task id
    :param task_names: names used in ``info["task"]`` and the logs (default: the env ids)
    """

    def __init__(
        self,
        tasks: Sequence[Task],
        env_kwargs: dict[str, dict[str, Any]] | None = None,
        task_names: Sequence[str] | None = None,
    ) -> None:
        if len(tasks) == 0:
            raise UsageError("A multi-task env needs at least one task")
        self.tasks, self.env_kwargs = list(tasks), dict(env_kwargs or {})
        for task in self.tasks:
            if isinstance(task, str):
                check_env_id(task, other_packages="import the package that registers it first (e.g. import "
                             "pybullet_envs_gymnasium for the *BulletEnv ids), or give the id as module:EnvId")  # fmt: skip
        probes = [self._make_raw(task) for task in self.tasks]
        names = list(task_names) if task_names is not None else default_task_names(tasks, probes)
        if len(names) != len(tasks) or len(set(names)) != len(names):
            raise UsageError(f"task_names must name each of the {len(tasks)} tasks once, got {names}")
        own_actions = [rescaled(e).action_space for e in probes]
        self.observation_space, self.action_space = common_spaces([e.observation_space for e in probes], own_actions, names)
        for probe in probes:
            probe.close()
        self.names = names

    def _make_raw(self, task: Task) -> gym.Env:
        return gym.make(task, **self.env_kwargs.get(task, {})) if isinstance(task, str) else task()

    def make(self, index: int) -> gym.Env:
        """Task ``index``'s env: Monitor (the task's own returns), actions rescaled and padded, observations padded."""
        env = rescaled(Monitor(self._make_raw(self.tasks[index])))
        if isinstance(self.action_space, spaces.Box):
            env = PadAction(env, self.action_space.shape[0], self.action_space.low, self.action_space.high)
        return TaskLabel(PadObservation(env, self.observation_space), self.names[index])


def rescaled(env: gym.Env) -> gym.Env:
    """``env`` with a bounded Box action space rescaled to [-1, 1] (the paper's ``NormalizeActions``), else ``env``."""
    space = env.action_space
    if isinstance(space, spaces.Box) and np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high)):
        return RescaleAction(env, np.float32(-1.0), np.float32(1.0))
    return env


class MultiTaskVecEnv(DummyVecEnv):
    """A :class:`~stable_baselines3.common.vec_env.DummyVecEnv` over several tasks, with padded observation and action
    spaces, so that one unchanged :class:`~sb3_dreamer.Dreamer` trains on all of them (the multi-task agent of Sasso et
    al., TMLR 2023).

    Sub-env ``i * n_envs_per_task + j`` runs task ``i``. Each step's ``infos`` carry ``info["task"]``.

    :param tasks: registered env ids or functions that make an env
    :param n_envs_per_task: sub-envs per task
    :param seed: seed of the first sub-env (sub-env ``k`` gets ``seed + k``), or None
    :param env_kwargs: keyword arguments of ``gym.make`` per task id
    :param task_names: names used in the logs (default: the env ids)
    """

    def __init__(
        self,
        tasks: Sequence[Task],
        n_envs_per_task: int = 1,
        seed: int | None = None,
        env_kwargs: dict[str, dict[str, Any]] | None = None,
        task_names: Sequence[str] | None = None,
    ) -> None:
        if n_envs_per_task < 1:
            raise UsageError(f"n_envs_per_task must be >= 1, got {n_envs_per_task}")
        self.task_set = TaskSet(tasks, env_kwargs, task_names)
        self.task_names = self.task_set.names
        self.env_tasks = [name for name in self.task_names for _ in range(n_envs_per_task)]
        indices = [index for index in range(len(self.task_names)) for _ in range(n_envs_per_task)]
        super().__init__([functools.partial(self.task_set.make, index) for index in indices])
        if seed is not None:
            self.seed(seed)


class MultiTaskEnv(gym.Env):
    """One gymnasium env that runs its tasks in turn, one episode each (the paper's round-robin schedule), in the
    padded spaces of :class:`MultiTaskVecEnv`; registered as ``sb3_dreamer/MultiTask-v0`` for rl-zoo, where
    ``n_envs`` copies run side by side.

    :param tasks: registered env ids
    :param env_kwargs: keyword arguments of ``gym.make`` per task id
    """

    def __init__(self, tasks: Sequence[str] = (), env_kwargs: dict[str, dict[str, Any]] | None = None) -> None:
        self.task_set = TaskSet(list(tasks), env_kwargs)
        self.observation_space, self.action_space = self.task_set.observation_space, self.task_set.action_space
        self.envs: list[gym.Env | None] = [None] * len(self.task_set.names)
        self.current = -1

    def _env(self, index: int) -> gym.Env:
        """Task ``index``'s env, made on first use."""
        if self.envs[index] is None:
            self.envs[index] = self.task_set.make(index)
        return self.envs[index]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        """Start an episode of the next task; a seeded reset starts over from the first task and seeds task ``i``'s
        env with ``seed + i``, so the whole sequence of episodes repeats."""
        super().reset(seed=seed)
        if seed is not None:
            self.current = -1
            for index in range(len(self.envs)):
                self._env(index).reset(seed=seed + index)
        self.current = (self.current + 1) % len(self.envs)
        return self._env(self.current).reset(options=options)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        return self.envs[self.current].step(action)

    def close(self) -> None:
        for env in self.envs:
            if env is not None:
                env.close()
