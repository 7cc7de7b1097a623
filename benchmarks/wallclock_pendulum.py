"""Wall-clock time to reach a Pendulum-v1 return of -200: Dreamer next to rl-zoo's tuned SAC, in one run.

Each algorithm trains alone on the machine (sequentially, same torch thread count) and is evaluated deterministically
every ``--eval-freq`` steps on ``--eval-episodes`` episodes; training stops at the first evaluation whose mean return
reaches the threshold. Reported: env steps and training seconds (evaluation time excluded) at that point.

Run: ``python benchmarks/wallclock_pendulum.py`` (writes ``benchmarks/results/wallclock_pendulum.json``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gymnasium as gym
import torch as th
from common import zoo_hyperparams  # benchmarks/ is the script's folder
from sample_efficiency import DREAMER_HYPERPARAMS
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from sb3_dreamer import Dreamer


def time_to_threshold(algo: str, seed: int, threshold: float, max_steps: int, eval_freq: int, eval_episodes: int) -> dict:
    """Train until the deterministic evaluation reaches ``threshold``; return steps and training seconds."""
    env_id = "Pendulum-v1"
    if algo == "dreamer":
        model = Dreamer("MlpPolicy", env_id, seed=seed, **DREAMER_HYPERPARAMS[env_id])
    else:
        model = SAC("MlpPolicy", env_id, seed=seed, **zoo_hyperparams("sac", env_id)[0])
    eval_env = Monitor(gym.make(env_id))
    result: dict = dict(algo=algo, seed=seed, threshold=threshold, reached=False)
    start, eval_seconds = time.perf_counter(), 0.0

    class StopAtThreshold(BaseCallback):
        def _on_step(self) -> bool:
            nonlocal eval_seconds
            if self.num_timesteps % eval_freq:
                return True
            tick = time.perf_counter()
            train_seconds = tick - start - eval_seconds  # evaluations so far excluded
            mean, _ = evaluate_policy(self.model, eval_env, n_eval_episodes=eval_episodes, deterministic=True)
            eval_seconds += time.perf_counter() - tick
            result.update(steps=self.num_timesteps, train_seconds=train_seconds, last_eval=float(mean))
            print(f"{algo}: step {self.num_timesteps} return {mean:.1f}", flush=True)
            if mean >= threshold:
                result["reached"] = True
                return False
            return True

    model.learn(max_steps, callback=StopAtThreshold())
    return result


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
