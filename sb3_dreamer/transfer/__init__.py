"""Transfer of saved Dreamer agents: the reward-free DTW-alignment pipeline."""

from sb3_dreamer.transfer.dtw_pipeline import RandomPolicy, TransferConfig, evaluate_on_env, run_dtw_transfer

__all__ = ["RandomPolicy", "TransferConfig", "evaluate_on_env", "run_dtw_transfer"]
