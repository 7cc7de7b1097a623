"""Dynamic-gap source/target env pairs (registered as ``sb3_dreamer/...`` gymnasium ids) and gap wrappers."""

from sb3_dreamer.envs.classic import CartPoleGapEnv, PendulumGapEnv
from sb3_dreamer.envs.registration import ENV_SPECS, NAMESPACE, register_envs
from sb3_dreamer.envs.wrappers import ActionRepeat, RewardFree

register_envs()

__all__ = [
    "ENV_SPECS",
    "NAMESPACE",
    "ActionRepeat",
    "CartPoleGapEnv",
    "PendulumGapEnv",
    "RewardFree",
    "register_envs",
]
