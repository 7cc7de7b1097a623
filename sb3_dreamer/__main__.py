"""Train Dreamer on an environment with an embedded default configuration: ``python -m sb3_dreamer``.

The full rl-zoo workflow (train, enjoy, tune, plot from ``zoo_configs/dreamer.yml``) is the ``sb3-dreamer`` command;
this entry point needs no files at all.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from sb3_dreamer.dreamer import Dreamer

#: Default run: Pendulum-v1, the settings of ``benchmarks/sample_efficiency.py`` (see the README's results table).
DEFAULT_CONFIG: dict[str, Any] = dict(
    env="Pendulum-v1",
    n_timesteps=10_000,
    hyperparams=dict(
        batch_size=16,
        batch_length=32,
        imagination_starts=256,
        train_freq=2,
        learning_starts=1000,
    ),
)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, train with a progress bar, save the model and print its deterministic evaluation.

    :param argv: command-line arguments (default: ``sys.argv[1:]``)
    :return: exit code
    """
    parser = argparse.ArgumentParser(prog="python -m sb3_dreamer", description=__doc__)
    parser.add_argument("--env", default=DEFAULT_CONFIG["env"], help="gymnasium environment id")
    parser.add_argument("-n", "--n-timesteps", type=int, default=DEFAULT_CONFIG["n_timesteps"], help="environment steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-path", default=None, help="model file (default: dreamer_<env>.zip)")
    parser.add_argument(
        "--hyperparams",
        type=json.loads,
        default={},
        help="JSON overrides of the Dreamer arguments, e.g. '{\"train_freq\": 4}'",
    )
    parser.add_argument("--eval-episodes", type=int, default=5, help="deterministic evaluation episodes after training")
    parser.add_argument("-v", "--verbose", type=int, default=1)
    args = parser.parse_args(argv)
    hyperparams = {**DEFAULT_CONFIG["hyperparams"], **args.hyperparams}
    model = Dreamer(
        "MultiInputPolicy" if _has_dict_obs(args.env) else "MlpPolicy",
        args.env,
        seed=args.seed,
        verbose=args.verbose,
        **hyperparams,
    )
    model.learn(args.n_timesteps, progress_bar=True)
    save_path = args.save_path or f"dreamer_{args.env.replace('/', '_')}.zip"
    model.save(save_path)
    print(f"Saved the model to {save_path}")
    if args.eval_episodes > 0:
        from stable_baselines3.common.evaluation import evaluate_policy

        mean, std = evaluate_policy(model, model.get_env(), n_eval_episodes=args.eval_episodes, deterministic=True)
        print(f"Deterministic evaluation over {args.eval_episodes} episodes: {mean:.1f} +/- {std:.1f}")
    return 0


def _has_dict_obs(env_id: str) -> bool:
    import gymnasium as gym

    env = gym.make(env_id)
    try:
        return isinstance(env.observation_space, gym.spaces.Dict)
    finally:
        env.close()


if __name__ == "__main__":
    sys.exit(main())
