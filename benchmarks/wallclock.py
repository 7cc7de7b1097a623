"""Wall-clock time to a return goal: Dreamer next to rl-zoo's tuned baseline (SAC on Pendulum-v1, DQN on CartPole-v1).

Each algorithm trains alone on the machine (sequentially, in one process, same torch thread count) and is evaluated
deterministically every ``--eval-freq`` steps on ``--eval-episodes`` episodes; training stops at the first evaluation
whose mean return reaches the goal (``sample_efficiency.GOALS``: -200 on Pendulum-v1, 475 on CartPole-v1) or at the
budget (Dreamer: its ``zoo_configs/dreamer.yml`` entry; the baseline: rl-zoo's own budget). Reported: env steps and
training seconds (evaluation time excluded) at that point, and their ratio.

Run: ``python benchmarks/wallclock.py --env CartPole-v1 --seed 0 --threads 1`` (writes
``benchmarks/results/wallclock_<env>_seed<seed>.json``); ``--dreamer-kwargs '{"train_freq": 4}'`` times a knob.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch as th
from common import EVAL_SEED, zoo_hyperparams  # benchmarks/ is the script's folder
from sample_efficiency import GOALS, dreamer_entry
from stable_baselines3 import DQN, SAC
from stable_baselines3.common.monitor import Monitor

from sb3_dreamer import Dreamer
from sb3_dreamer.common import EvalCurve


def time_to_threshold(
    algo: str, env_id: str, seed: int, eval_freq: int, eval_episodes: int, dreamer_kwargs: dict[str, Any]
) -> dict[str, Any]:
    """Train until the deterministic evaluation reaches the env's goal; return steps and training seconds."""
    goal = GOALS[env_id]
    if algo == "dreamer":  # zoo_configs/dreamer.yml: policy and budget (the settings are the constructor defaults)
        policy, max_steps, entry = dreamer_entry(env_id)
        model = Dreamer(policy, env_id, seed=seed, **{**entry, **dreamer_kwargs})
    else:
        hyperparams, max_steps = zoo_hyperparams(algo, env_id)
        model = {"sac": SAC, "dqn": DQN}[algo]("MlpPolicy", env_id, seed=seed, **hyperparams)
    threshold = goal["goal"]
    evaluate = EvalCurve(Monitor(gym.make(env_id)), eval_freq, eval_episodes, algo, stop_at=threshold, seed=EVAL_SEED + seed)
    model.learn(max_steps, callback=evaluate)
    last = evaluate.curve[-1] if evaluate.curve else {}
    return dict(
        algo=algo,
        env=env_id,
        seed=seed,
        threshold=threshold,
        dreamer_kwargs=dreamer_kwargs if algo == "dreamer" else None,
        reached=bool(last) and last["mean"] >= threshold,
        steps=last.get("step"),
        train_seconds=last.get("train_seconds"),
        last_eval=last.get("mean"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    with_goal = [env for env, goal in GOALS.items() if goal["goal"] is not None]
    parser.add_argument("--env", default="Pendulum-v1", choices=with_goal)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-freq", type=int, default=500)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--threads", type=int, default=th.get_num_threads())
    parser.add_argument("--dreamer-kwargs", type=json.loads, default={}, help="Dreamer arguments over the defaults")
    parser.add_argument("--out", type=Path, default=None, help="JSON report (default: results/wallclock_<env>_seed<S>.json)")
    args = parser.parse_args()
    th.set_num_threads(args.threads)
    results = [
        time_to_threshold(algo, args.env, args.seed, args.eval_freq, args.eval_episodes, args.dreamer_kwargs)
        for algo in ("dreamer", GOALS[args.env]["baseline"])
    ]
    out = args.out or Path(__file__).parent / "results" / f"wallclock_{args.env}_seed{args.seed}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(threads=args.threads, results=results), indent=1))
    print("| algo | env | seed | reached | env steps | training seconds (eval excluded) |")
    print("|---|---|---|---|---|---|")
    for r in results:
        seconds = r["train_seconds"] if r["train_seconds"] is not None else float("nan")
        print(f"| {r['algo']} | {r['env']} | {r['seed']} | {r['reached']} | {r['steps']} | {seconds:.0f} |")
    dreamer, baseline = results
    if dreamer["reached"] and baseline["reached"]:
        print(f"Dreamer / {baseline['algo']} wall-clock: {dreamer['train_seconds'] / baseline['train_seconds']:.1f}x")


if __name__ == "__main__":
    main()
