"""Transfer of trained Dreamer agents: the reward-free DTW-alignment pipeline, and multi-source transfer (a multi-task
env for one agent over several tasks, fractional, modular and meta-model transfer; Sasso et al., TMLR 2023)."""

from sb3_dreamer.transfer.dtw_pipeline import RandomPolicy, TransferConfig, evaluate_on_env, run_dtw_transfer
from sb3_dreamer.transfer.fractional import MODULES, fractional_transfer, modular_transfer
from sb3_dreamer.transfer.multitask import MultiTaskVecEnv, PadAction, PadObservation

__all__ = [
    "MODULES",
    "MultiTaskVecEnv",
    "PadAction",
    "PadObservation",
    "RandomPolicy",
    "TransferConfig",
    "evaluate_on_env",
    "fractional_transfer",
    "modular_transfer",
    "run_dtw_transfer",
]
