"""``python -m sb3_dreamer.transfer``: run the reward-free DTW transfer pipeline and print its results."""

from __future__ import annotations

import argparse
import json
import sys

from sb3_dreamer.alignment.dtw import LABEL_MODES
from sb3_dreamer.transfer.dtw_pipeline import TransferConfig, run_dtw_transfer


def main(argv: list[str] | None = None) -> int:
    """Parse arguments into a :class:`TransferConfig`, run it and print the results.

    :param argv: command-line arguments (default: ``sys.argv[1:]``)
    :return: exit code
    """
    defaults = TransferConfig()
    parser = argparse.ArgumentParser(prog="python -m sb3_dreamer.transfer", description=__doc__)
    parser.add_argument("--source-env", default=defaults.source_env)
    parser.add_argument("--target-env", default=defaults.target_env)
    parser.add_argument("--source-steps", type=int, default=defaults.source_steps)
    parser.add_argument("--target-steps", type=int, default=defaults.target_steps)
    parser.add_argument("--source-model", default=None, help="reuse a trained source Dreamer (.zip)")
    parser.add_argument("--n-reference-episodes", type=int, default=defaults.n_reference_episodes)
    parser.add_argument("--label-mode", default=defaults.label_mode, choices=LABEL_MODES)
    parser.add_argument("--init-from-source", action="store_true")
    parser.add_argument("--dreamer-kwargs", type=json.loads, default={}, help="JSON Dreamer arguments")
    parser.add_argument("--wrapper-kwargs", type=json.loads, default={}, help="JSON DTWRewardWrapper arguments")
    parser.add_argument("--eval-episodes", type=int, default=defaults.eval_episodes)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="transfer_run", help="output folder")
    args = parser.parse_args(argv)
    config = TransferConfig(**{key: value for key, value in vars(args).items() if key != "out"})
    results = run_dtw_transfer(config, args.out)
    for key in ("random", "source_zero_shot", "target_dtw", "source_on_source"):
        mean, std = results[key]
        print(f"{key:>18}: {mean:9.1f} +/- {std:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
