"""Wall-clock time to reach a Pendulum-v1 return of -200: Dreamer next to rl-zoo's tuned SAC, in one run.

Each algorithm trains alone on the machine (sequentially, same torch thread count) and is evaluated deterministically
every ``--eval-freq`` steps on ``--eval-episodes`` episodes; training stops at the first evaluation whose mean return
reaches the threshold. Reported: env steps and training seconds (evaluation time excluded) at that point.

Run: ``python benchmarks/wallclock_pendulum.py`` (writes ``benchmarks/results/wallclock_pendulum.json``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import gymnasium as gym
import torch as th
from common import EVAL_SEED, EvalCurve, zoo_hyperparams  # benchmarks/ is the script's folder
from sample_efficiency import DREAMER_HYPERPARAMS
from stable_baselines3 import SAC
from stable_baselines3.common.monitor import Monitor

from sb3_dreamer import Dreamer


def time_to_threshold(algo: str, seed: int, threshold: float, max_steps: int, eval_freq: int, eval_episodes: int) -> dict:
    """Train until the deterministic evaluation reaches ``threshold``; return steps and training seconds."""
    env_id = "Pendulum-v1"
    if algo == "dreamer":
        model = Dreamer("MlpPolicy", env_id, seed=seed, **DREAMER_HYPERPARAMS[env_id])
    else:
        model = SAC("MlpPolicy", env_id, seed=seed, **zoo_hyperparams("sac", env_id)[0])
    evaluate = EvalCurve(Monitor(gym.make(env_id)), eval_freq, eval_episodes, algo, stop_at=threshold, seed=EVAL_SEED + seed)
    model.learn(max_steps, callback=evaluate)
    last = evaluate.curve[-1] if evaluate.curve else {}
    return dict(
        algo=algo,
        seed=seed,
        threshold=threshold,
        reached=bool(last) and last["mean"] >= threshold,
        steps=last.get("step"),
        train_seconds=last.get("train_seconds"),
        last_eval=last.get("mean"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=-200.0)
    parser.add_argument("--eval-freq", type=int, default=500)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--threads", type=int, default=th.get_num_threads())
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "wallclock_pendulum.json")
    args = parser.parse_args()
    th.set_num_threads(args.threads)
    results = [
        time_to_threshold("dreamer", args.seed, args.threshold, 10_000, args.eval_freq, args.eval_episodes),
        time_to_threshold("sac", args.seed, args.threshold, 20_000, args.eval_freq, args.eval_episodes),
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(dict(threads=args.threads, results=results), indent=1))
    print("| algo | seed | reached | env steps | training seconds (eval excluded) |")
    print("|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['algo']} | {r['seed']} | {r['reached']} | {r.get('steps')} | {r.get('train_seconds', float('nan')):.0f} |"
        )


if __name__ == "__main__":
    main()
