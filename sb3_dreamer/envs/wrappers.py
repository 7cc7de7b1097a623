"""Gap and reward-removal wrappers: ``ActionRepeat`` (the Telepath dynamic gap) and ``RewardFree`` (reward-free target)."""

from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import EnvSpec


class ActionRepeat(gym.Wrapper):
    """Repeat each action ``repeat`` times; the dynamic gap of Telepath (methods.md, section C: source repeat 4,
    target repeat 2, ``--action-repeat`` / ``--second-action-repeat`` in TroddenSpade/Telepath ``train.py``).

    Rewards of the inner steps are summed; repetition stops early at termination or truncation, and the info of the
    last inner step is returned with ``info["action_repeat_steps"]`` (inner steps actually taken). A time limit of the
    wrapped env counts inner steps; ``spec.max_episode_steps`` is converted to agent steps (``ceil(limit / repeat)``).

    :param env: env to wrap
    :param repeat: number of inner steps per action (>= 1)
    """

    def __init__(self, env: gym.Env, repeat: int) -> None:
        if int(repeat) != repeat or repeat < 1:
            raise ValueError(f"repeat must be a positive int, got {repeat}")
        super().__init__(env)
        self.repeat = int(repeat)

    @property
    def spec(self) -> EnvSpec | None:
        """The wrapped env's spec with this wrapper added and ``max_episode_steps`` in agent steps."""
        if self._cached_spec is None:
            spec = super().spec  # a copy, cached by gymnasium: converted once
            if spec is not None and spec.max_episode_steps is not None:
                spec.max_episode_steps = -(-spec.max_episode_steps // self.repeat)
        return self._cached_spec

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Apply ``action`` up to ``repeat`` times.

        :param action: action
        :return: ``(obs, summed reward, terminated, truncated, info)``
        """
        total, steps = 0.0, 0
        for _ in range(self.repeat):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            steps += 1
            if terminated or truncated:
                break
        info = dict(info)
        info["action_repeat_steps"] = steps
        return obs, total, bool(terminated), bool(truncated), info


class RewardFree(gym.Wrapper):
    """Hide the reward: every step returns 0.0, the true reward goes to ``info["original_reward"]`` (a float).

    Models a target env without reward for training (Telepath, methods.md section C); keep the true reward for
    reporting only (sb3-contract section 12).

    :param env: env to wrap
    """

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Step the env and replace the reward by 0.0.

        :param action: action
        :return: ``(obs, 0.0, terminated, truncated, info)``
        """
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = dict(info)
        info["original_reward"] = float(reward)
        return obs, 0.0, terminated, truncated, info
