"""DreamerV3-style agent for Stable-Baselines3."""

from sb3_dreamer.dreamer.buffers import SequenceReplayBuffer
from sb3_dreamer.dreamer.dreamer import DREAMERV3_SETTINGS, Dreamer
from sb3_dreamer.dreamer.policies import MODEL_SIZES, CnnPolicy, DreamerPolicy, MlpPolicy, MultiInputPolicy
from sb3_dreamer.dreamer.update import lambda_return

__all__ = [
    "DREAMERV3_SETTINGS",
    "MODEL_SIZES",
    "CnnPolicy",
    "Dreamer",
    "DreamerPolicy",
    "MlpPolicy",
    "MultiInputPolicy",
    "SequenceReplayBuffer",
    "lambda_return",
]
