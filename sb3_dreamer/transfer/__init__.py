"""Transfer of trained Dreamer agents: the reward-free DTW-alignment pipeline, and multi-source transfer (a multi-task
env for one agent over several tasks, fractional, modular and meta-model transfer; Sasso et al., TMLR 2023), and
reward compensation (TransReward, https://github.com/SJ9VRF/TransReward)."""

from sb3_dreamer.transfer.callback import TransferCallback
from sb3_dreamer.transfer.compensation import (
    DreamerRewardModel,
    RewardCompensation,
    compensated_reward,
    compensation_wrappers,
    mean_shift,
    reward_compensation_loop,
)
from sb3_dreamer.transfer.dtw_pipeline import (
    RandomPolicy,
    SourceStage,
    TargetStage,
    TransferConfig,
    evaluate_on_env,
    run_dtw_transfer,
    train_source,
    train_target,
)
from sb3_dreamer.transfer.fractional import MODULES, fractional_transfer, modular_transfer
from sb3_dreamer.transfer.meta_model import meta_model_policy_kwargs, meta_model_transfer
from sb3_dreamer.transfer.multitask import MultiTaskEnv, MultiTaskVecEnv, PadAction, PadObservation, TaskSet
from sb3_dreamer.transfer.offline import MinAtarCategorical, OfflineDataset, record_episodes
from sb3_dreamer.transfer.pretrain import FREEZE_NAMES, load_world_model, pretrain_world_model

__all__ = [
    "FREEZE_NAMES",
    "MODULES",
    "DreamerRewardModel",
    "MinAtarCategorical",
    "MultiTaskEnv",
    "MultiTaskVecEnv",
    "OfflineDataset",
    "PadAction",
    "PadObservation",
    "RandomPolicy",
    "RewardCompensation",
    "SourceStage",
    "TargetStage",
    "TaskSet",
    "TransferCallback",
    "TransferConfig",
    "compensated_reward",
    "compensation_wrappers",
    "evaluate_on_env",
    "fractional_transfer",
    "load_world_model",
    "mean_shift",
    "meta_model_policy_kwargs",
    "meta_model_transfer",
    "modular_transfer",
    "pretrain_world_model",
    "record_episodes",
    "reward_compensation_loop",
    "run_dtw_transfer",
    "train_source",
    "train_target",
]
