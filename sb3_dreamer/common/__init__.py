"""Code shared by the subpackages and entry points: command-line checks and SB3 callbacks."""

from sb3_dreamer.common.callbacks import LogProgressCallback, TaskReturnCallback, TrueRewardCallback
from sb3_dreamer.common.usage import UsageError, check_env_id, check_keys, json_object, run_cli

__all__ = [
    "LogProgressCallback",
    "TaskReturnCallback",
    "TrueRewardCallback",
    "UsageError",
    "check_env_id",
    "check_keys",
    "json_object",
    "run_cli",
]
