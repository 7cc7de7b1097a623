"""Idempotent gymnasium registration: the dynamic-gap env pairs, the time-warp (action-repeat) pairs and the multi-task
env (``sb3_dreamer/...``), and MinAtar's games."""

import importlib.util
from pathlib import Path
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import load_env_creator

from sb3_dreamer.envs.wrappers import ActionRepeat

NAMESPACE = "sb3_dreamer"

#: Prefix of MinAtar's ids (``MinAtar/Breakout-v1``, ...). ``import minatar`` alone does not register them.
MINATAR_NAMESPACE = "MinAtar"

# id -> (entry point, default kwargs, max_episode_steps); kwargs passed to gymnasium.make override the defaults.
ENV_SPECS: dict[str, tuple[str, dict[str, float], int]] = {
    "PendulumSource-v0": ("sb3_dreamer.envs.classic:PendulumGapEnv", {}, 200),
    "PendulumTarget-v0": ("sb3_dreamer.envs.classic:PendulumGapEnv", {"mass": 1.5, "length": 1.3}, 200),
    # A larger physical gap (mass 2.0), the base of the time-warp pair whose source fails zero-shot (issue 19's goal).
    "PendulumHeavy-v0": ("sb3_dreamer.envs.classic:PendulumGapEnv", {"mass": 2.0, "length": 1.3}, 200),
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


#: Time-warp pairs: id -> (base name in :data:`ENV_SPECS`, action repeat), made by :func:`make_repeat_env`. Telepath's
#: dynamics gap is temporal (source action repeat 4, target 2; https://github.com/TroddenSpade/Telepath), the 2:1 warp
#: that DTW aligns. ``...Repeat2Target`` combines it with the physical gap of the base ``...Target-v0`` (its kwargs are
#: read from :data:`ENV_SPECS`), ``PendulumRepeat2Heavy`` with the larger one of ``PendulumHeavy-v0``. The base's time
#: limit (in base steps) applies inside the repeat, so every member of a pair covers the same physical time: base limit /
#: repeat agent steps per episode.
REPEAT_SPECS: dict[str, tuple[str, int]] = {
    "PendulumRepeat4-v0": ("PendulumSource-v0", 4),
    "PendulumRepeat2-v0": ("PendulumSource-v0", 2),
    "PendulumRepeat1-v0": ("PendulumSource-v0", 1),
    "PendulumRepeat2Target-v0": ("PendulumTarget-v0", 2),
    "PendulumRepeat2Heavy-v0": ("PendulumHeavy-v0", 2),
    "HopperRepeat4-v0": ("HopperSource-v0", 4),
    "HopperRepeat2-v0": ("HopperSource-v0", 2),
    "HopperRepeat1-v0": ("HopperSource-v0", 1),
    "HopperRepeat2Target-v0": ("HopperTarget-v0", 2),
    "HalfCheetahRepeat4-v0": ("HalfCheetahSource-v0", 4),
    "HalfCheetahRepeat2-v0": ("HalfCheetahSource-v0", 2),
    "HalfCheetahRepeat1-v0": ("HalfCheetahSource-v0", 1),
    "HalfCheetahRepeat2Target-v0": ("HalfCheetahTarget-v0", 2),
}

#: Multi-task env ids (no time limit of their own: each task keeps its own): id -> entry point.
MULTI_TASK_SPECS: dict[str, str] = {"MultiTask-v0": "sb3_dreamer.transfer.multitask:MultiTaskEnv"}


def make_repeat_env(base: str, repeat: int, **kwargs: Any) -> gym.Env:
    """Make the base env ``sb3_dreamer/<base>`` with its time limit, under :class:`ActionRepeat` (entry point of the
    :data:`REPEAT_SPECS` ids).

    The ``TimeLimit`` (the base's ``max_episode_steps`` of :data:`ENV_SPECS`, counted in base steps) sits *inside* the
    repeat, so an episode lasts the same physical time whatever ``repeat`` is: ``ceil(limit / repeat)`` agent steps
    (the last one shorter when ``repeat`` does not divide the limit), ``truncated`` at the last. The ids are therefore
    registered without a time limit of their own; ``env.spec.max_episode_steps`` is that agent-step count
    (:class:`ActionRepeat` converts it).

    :param base: name of the base env in :data:`ENV_SPECS`, e.g. ``"PendulumSource-v0"``
    :param repeat: base steps per agent step (>= 1)
    :param kwargs: kwargs of the base env (``mass``, ``friction_scale``, ``render_mode``...), overriding its
        :data:`ENV_SPECS` defaults
    :return: the wrapped env
    """
    if base not in ENV_SPECS:
        raise ValueError(f"unknown base env {base!r}; known: {sorted(ENV_SPECS)}")
    entry_point, defaults, max_episode_steps = ENV_SPECS[base]
    env = load_env_creator(entry_point)(**{**defaults, **kwargs})
    return ActionRepeat(gym.wrappers.TimeLimit(env, max_episode_steps), repeat)


def register_envs() -> list[str]:
    """Register every pair of :data:`ENV_SPECS`, the time-warp pairs of :data:`REPEAT_SPECS` and the multi-task env
    (``sb3_dreamer/MultiTask-v0``, its tasks as the ``tasks`` kwarg) as ``sb3_dreamer/<name>`` and, when minatar is
    installed, MinAtar's games as ``MinAtar/<Game>-v1``; ids already registered are left alone. A time-warp id takes its
    base's kwargs and ``repeat`` as ``gymnasium.make`` kwargs.

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
    for name, (base, repeat) in REPEAT_SPECS.items():
        env_id = f"{NAMESPACE}/{name}"
        if env_id not in gym.registry:
            kwargs = {"base": base, "repeat": repeat}
            gym.register(id=env_id, entry_point="sb3_dreamer.envs.registration:make_repeat_env", kwargs=kwargs)
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
