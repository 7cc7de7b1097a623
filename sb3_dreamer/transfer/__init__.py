"""Transfer of trained Dreamer agents: the reward-free DTW-alignment pipeline, and multi-source transfer (a multi-task
env for one agent over several tasks, fractional, modular and meta-model transfer; Sasso et al., TMLR 2023)."""

from sb3_dreamer.transfer.callback import TransferCallback
from sb3_dreamer.transfer.dtw_pipeline import RandomPolicy, TransferConfig, evaluate_on_env, run_dtw_transfer
from sb3_dreamer.transfer.fractional import MODULES, fractional_transfer, modular_transfer
from sb3_dreamer.transfer.meta_model import meta_model_policy_kwargs, meta_model_transfer
from sb3_dreamer.transfer.multitask import MultiTaskEnv, MultiTaskVecEnv, PadAction, PadObservation, TaskSet

__all__ = [
    "MODULES",
    "MultiTaskEnv",
    "MultiTaskVecEnv",
    "PadAction",
    "PadObservation",
    "RandomPolicy",
    "TaskSet",
    "TransferCallback",
    "TransferConfig",
    "evaluate_on_env",
    "fractional_transfer",
    "meta_model_policy_kwargs",
    "meta_model_transfer",
    "modular_transfer",
    "run_dtw_transfer",
]
