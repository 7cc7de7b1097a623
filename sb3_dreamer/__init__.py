"""sb3-dreamer: DreamerV3-style model-based RL and reward-free policy transfer for Stable-Baselines3.

Importing the package registers the dynamics-gap env pairs (``sb3_dreamer/PendulumTarget-v0`` ...) with gymnasium,
as ``import pybullet_envs_gymnasium`` does for its envs.
"""

import sb3_dreamer.envs  # noqa: F401  (registers the sb3_dreamer/... gymnasium ids)
from sb3_dreamer.alignment import DTWRewardWrapper, TrajectoryDataset, VecDTWRewardWrapper, record_trajectories
from sb3_dreamer.common import LogProgressCallback, TrueRewardCallback
from sb3_dreamer.dreamer import DREAMERV3_SETTINGS, MODEL_SIZES, CnnPolicy, Dreamer, DreamerPolicy, MlpPolicy, MultiInputPolicy

__version__ = "0.1.0"

__all__ = [
    "DREAMERV3_SETTINGS",
    "MODEL_SIZES",
    "CnnPolicy",
    "DTWRewardWrapper",
    "Dreamer",
    "DreamerPolicy",
    "LogProgressCallback",
    "MlpPolicy",
    "MultiInputPolicy",
    "TrajectoryDataset",
    "TrueRewardCallback",
    "VecDTWRewardWrapper",
    "__version__",
    "record_trajectories",
]
