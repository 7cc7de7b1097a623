"""Code shared by the subpackages and entry points: command-line checks, SB3 callbacks and resumable runs."""

from sb3_dreamer.common.callbacks import LogProgressCallback, TaskReturnCallback, TrueRewardCallback
from sb3_dreamer.common.resumable import EvalCurve, ResumableRun
from sb3_dreamer.common.usage import UsageError, check_env_id, check_keys, json_object, run_cli

__all__ = [
    "EvalCurve",
    "LogProgressCallback",
    "ResumableRun",
    "TaskReturnCallback",
    "TrueRewardCallback",
    "UsageError",
    "check_env_id",
    "check_keys",
    "json_object",
    "run_cli",
]
