"""Reward-free policy transfer by DTW trajectory alignment: datasets, DTW labels, reward model and reward wrappers."""

from sb3_dreamer.alignment.background import BackgroundRewarder
from sb3_dreamer.alignment.dataset import Episode, TrajectoryDataset, record_trajectories
from sb3_dreamer.alignment.dtw import (
    LABEL_MODES,
    TRACKING_MODES,
    Alignment,
    NormalisationStats,
    align,
    best_path,
    check_c_library,
    label_episode,
    normalise,
    reference_statistics,
    source_reward_labels,
    source_reward_split_labels,
    tracking_exp_labels,
    tracking_labels,
)
from sb3_dreamer.alignment.relabel import RelabelCallback, SampledRewardCallback, SampledRewardReplayBuffer
from sb3_dreamer.alignment.reward_model import FitResult, Predictor, RewardModel
from sb3_dreamer.alignment.rewarder import NON_FINITE_REWARD, DTWRewarder, EpisodeReport, reference_fingerprint
from sb3_dreamer.alignment.scaling import observation_scale
from sb3_dreamer.alignment.wrappers import (
    REWARD_AT_SAMPLING,
    AlignmentCheckpointCallback,
    DTWRewardWrapper,
    VecDTWRewardWrapper,
)

__all__ = [
    "LABEL_MODES",
    "NON_FINITE_REWARD",
    "REWARD_AT_SAMPLING",
    "TRACKING_MODES",
    "Alignment",
    "AlignmentCheckpointCallback",
    "BackgroundRewarder",
    "DTWRewardWrapper",
    "DTWRewarder",
    "Episode",
    "EpisodeReport",
    "FitResult",
    "NormalisationStats",
    "Predictor",
    "RelabelCallback",
    "RewardModel",
    "SampledRewardCallback",
    "SampledRewardReplayBuffer",
    "TrajectoryDataset",
    "VecDTWRewardWrapper",
    "align",
    "best_path",
    "check_c_library",
    "label_episode",
    "normalise",
    "observation_scale",
    "record_trajectories",
    "reference_fingerprint",
    "reference_statistics",
    "source_reward_labels",
    "source_reward_split_labels",
    "tracking_exp_labels",
    "tracking_labels",
]
