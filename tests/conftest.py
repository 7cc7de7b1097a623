"""Shared fixtures: tiny Dreamer settings and small environments of every supported kind."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback

#: Tiny settings so that a learn() of a few hundred steps takes seconds on a CPU.
TINY: dict[str, Any] = dict(
    policy_kwargs=dict(model_size="debug"),
    batch_size=2,
    batch_length=8,
    learning_starts=16,
    imagination_horizon=3,
    train_freq=4,
)

#: Seconds a test's subprocess (a CLI run, a fresh interpreter importing torch and SB3) may take before the test fails
#: as hung. Generous: on a machine whose cores are busy with other work an import alone can take over two minutes.
SUBPROCESS_TIMEOUT = 900


def tiny(**overrides: Any) -> dict[str, Any]:
    """TINY with overrides (a fresh dict each call)."""
    kwargs = {key: (dict(value) if isinstance(value, dict) else value) for key, value in TINY.items()}
    kwargs.update(overrides)
    return kwargs


class TerminatingEnv(gym.Env):
    """Vector env whose episodes end by termination after ``horizon`` steps (or by the TimeLimit wrapper)."""

    def __init__(self, horizon: int = 5, obs_dim: int = 3) -> None:
        self.observation_space = spaces.Box(-1.0, 1.0, (obs_dim,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.horizon = horizon
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def _obs(self) -> np.ndarray:
        return np.full(self.observation_space.shape, self.t / 10.0, dtype=np.float32)

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        return self._obs(), float(action), self.t >= self.horizon, False, {}


class ImageEnv(gym.Env):
    """Image env of any shape and dtype with a reward for action 1 (or for positive Box actions)."""

    def __init__(self, shape: tuple[int, ...] = (64, 64, 3), dtype: type = np.uint8, continuous: bool = False) -> None:
        high = 255 if dtype == np.uint8 else 1.0
        self.observation_space = spaces.Box(0, high, shape, dtype)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32) if continuous else spaces.Discrete(3)
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return self._observation(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        reward = float(np.sum(action)) if isinstance(self.action_space, spaces.Box) else float(action == 1)
        return self._observation(), reward, False, self.t >= 20, {}

    def _observation(self) -> np.ndarray:
        # Drawn from the env's own generator, so a seeded reset makes the episode reproducible.
        space = self.observation_space
        if space.dtype == np.uint8:
            return self.np_random.integers(0, 256, space.shape, dtype=np.uint8)
        return self.np_random.random(space.shape).astype(space.dtype)


class CutOff(Exception):
    """Stands for the process being killed (raised by :class:`CutOffAt`)."""


class CutOffAt(BaseCallback):
    """Raise :class:`CutOff` when training reaches ``step`` env steps: a run cut off by a session limit or a kill."""

    def __init__(self, step: int) -> None:
        super().__init__()
        self.step = step

    def _on_step(self) -> bool:
        if self.num_timesteps == self.step:
            raise CutOff
        return True


@pytest.fixture
def pendulum() -> gym.Env:
    return gym.make("Pendulum-v1")


@pytest.fixture
def cartpole() -> gym.Env:
    return gym.make("CartPole-v1")
