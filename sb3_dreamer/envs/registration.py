"""Idempotent gymnasium registration: the dynamic-gap env pairs and the multi-task env (``sb3_dreamer/...``), and
MinAtar's games."""

import importlib.util
from pathlib import Path

import gymnasium as gym

NAMESPACE = "sb3_dreamer"

#: Prefix of MinAtar's ids (``MinAtar/Breakout-v1``, ...). ``import minatar`` alone does not register them.
MINATAR_NAMESPACE = "MinAtar"

# id -> (entry point, default kwargs, max_episode_steps); kwargs passed to gymnasium.make override the defaults.
ENV_SPECS: dict[str, tuple[str, dict[str, float], int]] = {
    "PendulumSource-v0": ("sb3_dreamer.envs.classic:PendulumGapEnv", {}, 200),
    "PendulumTarget-v0": ("sb3_dreamer.envs.classic:PendulumGapEnv", {"mass": 1.5, "length": 1.3}, 200),
    "CartPoleSource-v0": ("sb3_dreamer.envs.classic:CartPoleGapEnv", {}, 500),
    "CartPoleTarget-v0": (
        "sb3_dreamer.envs.classic:CartPoleGapEnv",
        {"pole_length": 0.75, "pole_mass": 0.2, "force_mag": 8.0},
        500,
    ),
    "HopperSource-v0": ("sb3_dreamer.envs.bullet:HopperGapEnv", {}, 1000),
    "HopperTarget-v0": ("sb3_dreamer.envs.bullet:HopperGapEnv", {"mass_scale": 1.3, "friction_scale": 0.7}, 1000),
    "HalfCheetahSource-v0": ("sb3_dreamer.envs.bullet:HalfCheetahGapEnv", {}, 1000),
    "HalfCheetahTarget-v0": ("sb3_dreamer.envs.bullet:HalfCheetahGapEnv", {"mass_scale": 1.3, "friction_scale": 0.7}, 1000),
}


#: Multi-task env ids (no time limit of their own: each task keeps its own): id -> entry point.
MULTI_TASK_SPECS: dict[str, str] = {"MultiTask-v0": "sb3_dreamer.transfer.multitask:MultiTaskEnv"}


def register_envs() -> list[str]:
    """Register every pair of :data:`ENV_SPECS` and the multi-task env (``sb3_dreamer/MultiTask-v0``, its tasks as the
    ``tasks`` kwarg) as ``sb3_dreamer/<name>`` and, when minatar is installed, MinAtar's games as ``MinAtar/<Game>-v1``;
    ids already registered are left alone.

    Safe to call any number of times (``import sb3_dreamer`` and ``plugins/`` both call it). The Bullet envs are
    registered by entry-point string, so pybullet is imported only when such an env is made.

    :return: the ids registered by this call (empty if all were present)
    """
    added = []
    for name, (entry_point, kwargs, max_episode_steps) in ENV_SPECS.items():
        env_id = f"{NAMESPACE}/{name}"
        if env_id in gym.registry:
            continue
        gym.register(id=env_id, entry_point=entry_point, kwargs=dict(kwargs), max_episode_steps=max_episode_steps)
        added.append(env_id)
    for name, entry_point in MULTI_TASK_SPECS.items():
        env_id = f"{NAMESPACE}/{name}"
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point)
            added.append(env_id)
    return added + register_minatar_envs()


def register_minatar_envs() -> list[str]:
    """Register MinAtar's games as ``minatar.gym.register_envs()`` does, without importing minatar.

    Importing minatar takes seconds (it imports seaborn and pandas), which every ``import sb3_dreamer`` would pay, so the
    ids are registered by entry-point string (``minatar.gym:BaseEnv``) and minatar is imported when such an env is made.
    The games are the modules of the installed ``minatar/environments`` folder; ids and kwargs follow
    ``minatar.gym.register_envs`` (``MinAtar/<Game>-v0``: full action set, ``-v1``: minimal one), which
    ``tests/test_envs.py`` checks against the real function. Nothing is registered when minatar is not installed or its
    ids are present.

    :return: the ids registered by this call
    """
    spec = importlib.util.find_spec("minatar")
    if spec is None or any(env_id.startswith(f"{MINATAR_NAMESPACE}/") for env_id in gym.registry):
        return []
    added = []
    for location in spec.submodule_search_locations or []:
        for module in sorted((Path(location) / "environments").glob("*.py")):
            if module.stem.startswith("_"):
                continue
            name = module.stem.title().replace("_", "")
            for version, minimal in (("v0", False), ("v1", True)):
                env_id = f"{MINATAR_NAMESPACE}/{name}-{version}"
                kwargs = dict(game=module.stem, use_minimal_action_set=minimal)
                gym.register(id=env_id, entry_point="minatar.gym:BaseEnv", kwargs=kwargs)
                added.append(env_id)
    return added
