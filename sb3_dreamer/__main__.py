"""Train Dreamer on an environment with an embedded default configuration: ``python -m sb3_dreamer``.

The full rl-zoo workflow (train, enjoy, tune, plot from ``zoo_configs/dreamer.yml``) is the ``sb3-dreamer`` command;
this entry point needs no files at all.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from typing import Any

import gymnasium as gym
from stable_baselines3.common.callbacks import BaseCallback

from sb3_dreamer.common.usage import UsageError, check_env_id, check_keys, json_object, run_cli
from sb3_dreamer.dreamer import Dreamer

PROG = "python -m sb3_dreamer"

#: Default run: Pendulum-v1 for up to 10k steps with Dreamer's constructor defaults (its CPU settings, those of the
#: README's results table), stopped early when a deterministic evaluation reaches ``stop_at`` (the task's usual goal);
#: ``--hyperparams`` overrides the settings, ``--no-stop`` runs all steps.
DEFAULT_CONFIG: dict[str, Any] = dict(env="Pendulum-v1", n_timesteps=10_000, stop_at=-200.0, eval_freq=1000, hyperparams={})
#: Environment steps of ``--quick``: a short run that shows every stage (random warm-up, updates, save, evaluation).
QUICK_TIMESTEPS = 2000
#: Minutes of the default run on an idle 2-core CPU: 6 min 50 s measured on 2026-12-02, 11 min 55 s on 2026-12-03's
#: slower machine with the critic learning rate 3e-4 (-200 reached at 3000 steps both times).
DEFAULT_RUN_MINUTES = "7-12"
#: Minutes of ``--no-stop`` (all 10k steps) and of ``--quick`` on the same machines.
NO_STOP_MINUTES, QUICK_MINUTES = "30-50", "3.5-6"
#: Dreamer arguments that this command sets itself.
RESERVED_ARGUMENTS = frozenset({"self", "policy", "env", "seed", "verbose", "_init_setup_model"})

DESCRIPTION = f"""\
Train Dreamer with an embedded default configuration, save it and evaluate it.

Defaults: {DEFAULT_CONFIG["env"]}, up to {DEFAULT_CONFIG["n_timesteps"]} env steps, stopping early once a deterministic
evaluation (every {DEFAULT_CONFIG["eval_freq"]} steps) reaches a mean return of {DEFAULT_CONFIG["stop_at"]:g}, with
Dreamer's constructor defaults (its CPU settings: 16 x 32 batches, 256 imagination starts, an update every 2 env
steps after 1000 random steps). On an idle 2-core CPU the default run stops after 3000-4000 steps,
{DEFAULT_RUN_MINUTES} minutes; all 10000 steps (--no-stop) take {NO_STOP_MINUTES} minutes; --quick ({QUICK_TIMESTEPS} steps)
takes {QUICK_MINUTES} minutes and does not yet solve the task. Other processes on the same cores slow it down many times
over. The full rl-zoo workflow (train, enjoy, tune, plot) is the sb3-dreamer command."""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows each option's default and keeps the description's line breaks."""


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, train with a progress bar, save the model and print its deterministic evaluation.

    Mistakes (an unknown env id or Dreamer argument, bad JSON) are reported in one line with exit status 2.

    :param argv: command-line arguments (default: ``sys.argv[1:]``)
    :return: exit code
    """
    args = _parser().parse_args(argv)
    return run_cli(PROG, lambda: _train(args))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION, formatter_class=_HelpFormatter)
    parser.add_argument(
        "--env",
        default=DEFAULT_CONFIG["env"],
        help="gymnasium environment id, or module:EnvId for an env that module registers",
    )
    steps = parser.add_mutually_exclusive_group()
    steps.add_argument("-n", "--n-timesteps", type=int, default=DEFAULT_CONFIG["n_timesteps"], help="environment steps")
    steps.add_argument(
        "--quick", action="store_true", help=f"a short run of {QUICK_TIMESTEPS} steps that checks the whole pipeline"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--save-path", default=argparse.SUPPRESS, help="model file (default: dreamer_<env>.zip)")
    parser.add_argument(
        "--hyperparams",
        type=json_object,
        default={},
        help="JSON object of Dreamer arguments that override the embedded defaults, e.g. '{\"train_freq\": 4}'",
    )
    parser.add_argument("--eval-episodes", type=int, default=5, help="deterministic evaluation episodes")
    stop = parser.add_mutually_exclusive_group()
    stop.add_argument(
        "--stop-at",
        type=float,
        default=argparse.SUPPRESS,
        help=f"stop when the periodic evaluation's mean return reaches this (default: {DEFAULT_CONFIG['stop_at']:g} on "
        f"{DEFAULT_CONFIG['env']}, no early stop on other envs)",
    )
    stop.add_argument("--no-stop", action="store_true", help="train all the steps, without periodic evaluation")
    parser.add_argument(
        "--eval-freq", type=int, default=DEFAULT_CONFIG["eval_freq"], help="env steps between two periodic evaluations"
    )
    parser.add_argument("-v", "--verbose", type=int, default=1, help="0: progress only, 1: SB3's training logs")
    return parser


def _train(args: argparse.Namespace) -> int:
    n_timesteps = QUICK_TIMESTEPS if args.quick else args.n_timesteps
    if n_timesteps <= 0:
        raise UsageError(f"-n/--n-timesteps must be positive, got {n_timesteps}")
    check_env_id(args.env)
    accepted = set(inspect.signature(Dreamer.__init__).parameters) - RESERVED_ARGUMENTS
    check_keys(args.hyperparams, accepted, "--hyperparams", "a Dreamer argument (see help(sb3_dreamer.Dreamer))")
    hyperparams = {**DEFAULT_CONFIG["hyperparams"], **args.hyperparams}
    try:
        model = Dreamer(
            "MultiInputPolicy" if _has_dict_obs(args.env) else "MlpPolicy",
            args.env,
            seed=args.seed,
            verbose=args.verbose,
            **hyperparams,
        )
    except (TypeError, ValueError) as error:
        raise UsageError(f"cannot build Dreamer on {args.env} with {hyperparams}: {error}") from None
    model.learn(n_timesteps, progress_bar=True, callback=_goal_callback(args))
    save_path = getattr(args, "save_path", None) or f"dreamer_{args.env.split(':')[-1].replace('/', '_')}.zip"
    model.save(save_path)
    print(f"Saved the model to {save_path}")
    if args.eval_episodes > 0:
        from stable_baselines3.common.evaluation import evaluate_policy

        mean, std = evaluate_policy(model, model.get_env(), n_eval_episodes=args.eval_episodes, deterministic=True)
        print(f"Deterministic evaluation over {args.eval_episodes} episodes: {mean:.1f} +/- {std:.1f}")
    return 0


def _goal_callback(args: argparse.Namespace) -> BaseCallback | None:
    """SB3's ``EvalCallback`` + ``StopTrainingOnRewardThreshold`` for ``--stop-at`` (or the default goal), else None."""
    explicit = hasattr(args, "stop_at")
    default = DEFAULT_CONFIG["stop_at"] if args.env == DEFAULT_CONFIG["env"] else None
    stop_at = args.stop_at if explicit else default
    if args.no_stop or stop_at is None:
        return None
    if args.eval_freq <= 0 or args.eval_episodes <= 0:
        if explicit:
            raise UsageError("--stop-at needs periodic evaluations: --eval-freq and --eval-episodes must be positive")
        return None
    from stable_baselines3.common.callbacks import EvalCallback, StopTrainingOnRewardThreshold
    from stable_baselines3.common.env_util import make_vec_env

    return EvalCallback(
        make_vec_env(args.env, n_envs=1, seed=args.seed + 10_000),  # its own seeded env, not the training env
        callback_on_new_best=StopTrainingOnRewardThreshold(reward_threshold=stop_at, verbose=1),
        n_eval_episodes=args.eval_episodes,
        eval_freq=args.eval_freq,
        deterministic=True,
        verbose=1,
    )


def _has_dict_obs(env_id: str) -> bool:
    env = gym.make(env_id)
    try:
        return isinstance(env.observation_space, gym.spaces.Dict)
    finally:
        env.close()


if __name__ == "__main__":
    sys.exit(main())
