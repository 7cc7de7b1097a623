"""Dynamic-gap and time-warp (action-repeat) source/target env pairs (registered as ``sb3_dreamer/...`` gymnasium ids,
with MinAtar's games when minatar is installed) and gap wrappers."""

from sb3_dreamer.envs.classic import CartPoleGapEnv, PendulumGapEnv
from sb3_dreamer.envs.registration import (
    ENV_SPECS,
    MINATAR_NAMESPACE,
    NAMESPACE,
    REPEAT_SPECS,
    make_repeat_env,
    register_envs,
    register_minatar_envs,
)
from sb3_dreamer.envs.wrappers import ActionRepeat, RewardFree

register_envs()

__all__ = [
    "ENV_SPECS",
    "MINATAR_NAMESPACE",
    "NAMESPACE",
    "REPEAT_SPECS",
    "ActionRepeat",
    "CartPoleGapEnv",
    "PendulumGapEnv",
    "RewardFree",
    "make_repeat_env",
    "register_envs",
    "register_minatar_envs",
]
