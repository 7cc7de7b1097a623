"""``python -m sb3_dreamer.transfer``: run the reward-free DTW transfer pipeline and print its results."""

from __future__ import annotations

import argparse
import inspect
import sys

from sb3_dreamer.alignment.dtw import LABEL_MODES
from sb3_dreamer.common.usage import UsageError, json_object, run_cli
from sb3_dreamer.dreamer import Dreamer
from sb3_dreamer.transfer.dtw_pipeline import TransferConfig, run_dtw_transfer

PROG = "python -m sb3_dreamer.transfer"
#: Output folder when --out is not given.
DEFAULT_OUT = "transfer_run"

_STEPS = f"{TransferConfig.source_steps} + {TransferConfig.target_steps}"
#: Dreamer's constructor defaults, which the transfer's agents use unless --dreamer-kwargs says otherwise.
_DREAMER_DEFAULTS = {name: p.default for name, p in inspect.signature(Dreamer).parameters.items()}
#: Updates of a default run: both stages update every train_freq env steps after learning_starts random ones.
_UPDATES = sum(
    (steps - _DREAMER_DEFAULTS["learning_starts"]) // _DREAMER_DEFAULTS["train_freq"]
    for steps in (TransferConfig.source_steps, TransferConfig.target_steps)
)
#: Seconds per env step after learning_starts with Dreamer's defaults on an idle 2-core CPU (python -m sb3_dreamer
#: --quick: 5.8 env steps/s, 2026-12-02), per update.
_SECONDS_PER_UPDATE = 2 / 5.8

DESCRIPTION = f"""\
Reward-free transfer across a dynamics gap with a DTW-alignment reward, in four stages:
  1. train a source Dreamer on --source-env with its reward (or load one with --source-model);
  2. record --n-reference-episodes deterministic episodes of it on the source env as references;
  3. train a target Dreamer on --target-env, whose reward is replaced by DTWRewardWrapper's learned reward
     (labels from aligning each episode to the references); the target's own reward is never used for learning;
  4. evaluate on the target's true reward (--eval-episodes deterministic episodes each): a random policy, the
     source policy zero-shot, the target policy, and the source policy on its own env; print the four returns.

Writes to --out: source.zip (source model), reference.npz (reference episodes, TrajectoryDataset),
target.zip (target model) and results.json (the configuration and each (mean, std) return).

Duration, estimated from the measured rate, not from a full run: the defaults ({_STEPS} env steps with Dreamer's
constructor defaults, its CPU settings: a 16 x 32 update every {_DREAMER_DEFAULTS["train_freq"]} env steps after
{_DREAMER_DEFAULTS["learning_starts"]} random ones) make about {_UPDATES:,} updates; at ~{_SECONDS_PER_UPDATE:.2f} s each
on an idle 2-core CPU that is about {_UPDATES * _SECONDS_PER_UPDATE / 60:.0f} minutes, several times more on a busy one.
--source-model skips the source half; --dreamer-kwargs with sb3_dreamer.DREAMERV3_SETTINGS' values (16 x 64, all
imagination starts, train_ratio 512) is about 4 times the work.

Quick check of every stage (about 1.5 minutes on an idle 2-core CPU; the agents learn little):
  {PROG} --source-steps 1200 --target-steps 1200 --n-reference-episodes 2 --eval-episodes 2 \\
    --dreamer-kwargs '{{"learning_starts": 400, "train_freq": 8}}' \\
    --out quick_run"""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows each option's default and keeps the description's line breaks."""


def _parser() -> argparse.ArgumentParser:
    defaults = TransferConfig()
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION, formatter_class=_HelpFormatter)
    parser.add_argument("--source-env", default=defaults.source_env, help="gymnasium id of the source env (with rewards)")
    parser.add_argument(
        "--target-env",
        default=defaults.target_env,
        help="gymnasium id of the target env (same observation shape and action space; its reward is only evaluated)",
    )
    parser.add_argument(
        "--source-steps", type=int, default=defaults.source_steps, help="env steps of the source training (stage 1)"
    )
    parser.add_argument(
        "--target-steps", type=int, default=defaults.target_steps, help="env steps of the target training (stage 3)"
    )
    parser.add_argument(
        "--source-model",
        default=None,
        help="a source Dreamer saved by Dreamer.save (.zip) to reuse instead of training one; --source-steps is ignored",
    )
    parser.add_argument(
        "--n-reference-episodes",
        type=int,
        default=defaults.n_reference_episodes,
        help="source episodes recorded as DTW references (stage 2)",
    )
    parser.add_argument(
        "--label-mode",
        default=defaults.label_mode,
        choices=LABEL_MODES,
        help="how an alignment becomes reward labels (see docs/modules/alignment.md)",
    )
    parser.add_argument(
        "--init-from-source",
        action="store_true",
        help="start the target Dreamer from the source model's weights and settings (needs equal spaces)",
    )
    parser.add_argument(
        "--dreamer-kwargs",
        type=json_object,
        default={},
        help="JSON object of Dreamer arguments of the agents trained here, e.g. '{\"train_freq\": 2}' (a --source-model "
        "keeps its settings; an --init-from-source target takes these over the source's, as rl-zoo's --trained-agent "
        "does)",
    )
    parser.add_argument(
        "--wrapper-kwargs",
        type=json_object,
        default={},
        help="JSON object of extra DTWRewardWrapper arguments, e.g. '{\"max_label_cost\": 0.5}'",
    )
    parser.add_argument(
        "--eval-episodes",
        type=int,
        default=defaults.eval_episodes,
        help="deterministic evaluation episodes of each policy (stage 4)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed of every stage")
    parser.add_argument(
        "--checkpoint-freq",
        type=int,
        default=None,
        help="env steps between checkpoints of each training (in OUT/checkpoints, deleted once results.json is "
        "written); run the same command again to continue a run that was cut off",
    )
    parser.add_argument(
        "--out", default=DEFAULT_OUT, help="output folder (created): source.zip, reference.npz, target.zip, results.json"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse arguments into a :class:`TransferConfig`, run it and print the results.

    Mistakes (bad JSON, an unknown env id or argument, spaces that do not match, a missing or foreign source model,
    a non-positive count) are reported in one line with exit status 2 before anything is trained.

    :param argv: command-line arguments (default: ``sys.argv[1:]``)
    :return: exit code
    """
    args = _parser().parse_args(argv)
    return run_cli(PROG, lambda: _run(args))


def config_from_args(args: argparse.Namespace) -> TransferConfig:
    """The :class:`TransferConfig` of parsed arguments (every option but ``--out`` and ``--checkpoint-freq``)."""
    return TransferConfig(**{key: value for key, value in vars(args).items() if key not in ("out", "checkpoint_freq")})


def _run(args: argparse.Namespace) -> int:
    if args.checkpoint_freq is not None and args.checkpoint_freq <= 0:
        raise UsageError(f"--checkpoint-freq must be a positive integer, got {args.checkpoint_freq}")
    results = run_dtw_transfer(config_from_args(args), args.out, checkpoint_freq=args.checkpoint_freq)
    for key in ("random", "source_zero_shot", "target_dtw", "source_on_source"):
        mean, std = results[key]
        print(f"{key:>18}: {mean:9.1f} +/- {std:.1f}")
    print(f"Models, reference and results.json written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
