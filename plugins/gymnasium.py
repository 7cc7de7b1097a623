"""Gymnasium registration of the environments sb3-dreamer uses: its dynamic-gap pairs and MinAtar's games.

Importing this module registers them; :func:`register_envs` is idempotent and may be called any number of times.
"""

from __future__ import annotations

import importlib.util

import gymnasium as gym

import sb3_dreamer.envs

#: Prefix of MinAtar's ids (``MinAtar/Breakout-v1``, ...). ``import minatar`` does not register them.
MINATAR_NAMESPACE = "MinAtar"


def register_minatar_envs() -> list[str]:
    """Register MinAtar's games through ``minatar.gym.register_envs()`` unless present or MinAtar is not installed.

    :return: the ids registered by this call
    """
    if importlib.util.find_spec("minatar") is None or any(
        env_id.startswith(f"{MINATAR_NAMESPACE}/") for env_id in gym.registry
    ):
        return []
    import minatar.gym

    before = set(gym.registry)
    minatar.gym.register_envs()
    return sorted(set(gym.registry) - before)


def register_envs() -> list[str]:
    """Register ``sb3_dreamer/...`` (:func:`sb3_dreamer.envs.register_envs`) and ``MinAtar/...`` ids.

    :return: the ids registered by this call (empty if all were present)
    """
    return sb3_dreamer.envs.register_envs() + register_minatar_envs()


register_envs()
