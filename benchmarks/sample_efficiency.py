"""Sample efficiency of Dreamer next to rl-zoo's tuned SAC (Pendulum-v1) and DQN (CartPole-v1).

Every run trains one (algorithm, env, seed) in its own process and evaluates the deterministic policy every
``--eval-freq`` env steps on a separate environment (``--eval-episodes`` episodes). SAC and DQN use the
hyperparameters of rl_zoo3's own ``hyperparams/*.yml`` (read from the installed package, not copied). Results:
one JSON per run, a summary JSON, a markdown table and a PNG of the learning curves in ``--out``.

Run: ``python benchmarks/sample_efficiency.py`` (all runs, 2 processes with 1 torch thread each).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from common import EVAL_SEED, jsonable

#: The benchmark grid: env -> (threshold, Dreamer's env-step budget, baseline algorithm, baseline budget).
GOALS: dict[str, dict[str, Any]] = {
    "Pendulum-v1": dict(threshold=-200.0, dreamer_steps=10_000, baseline="sac", baseline_steps=20_000),
    "CartPole-v1": dict(threshold=475.0, dreamer_steps=20_000, baseline="dqn", baseline_steps=50_000),
}

#: Dreamer settings per env beyond the constructor defaults (its CPU settings, which were these runs' settings before
#: they became the defaults; the same entries as zoo_configs/dreamer.yml).
DREAMER_HYPERPARAMS: dict[str, dict[str, Any]] = {
    "Pendulum-v1": {},
    "CartPole-v1": dict(actor_learning_rate=3e-5, critic_learning_rate=3e-5),
}


def run_one(
    algo: str, env_id: str, seed: int, steps: int, eval_freq: int, eval_episodes: int, out: Path, dreamer_kwargs: dict
) -> None:
    """Train one model and write its learning curve to ``out / f"{algo}_{env_id}_{seed}.json"``.

    :param dreamer_kwargs: Dreamer arguments over ``DREAMER_HYPERPARAMS`` (a knob under test; recorded in the JSON)
    """
    import gymnasium as gym
    import torch as th
    from common import EvalCurve, zoo_hyperparams
    from stable_baselines3 import DQN, SAC
    from stable_baselines3.common.monitor import Monitor

    from sb3_dreamer import Dreamer

    th.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    if algo == "dreamer":
        cls, hyperparams = Dreamer, {**DREAMER_HYPERPARAMS[env_id], **dreamer_kwargs}
    else:
        cls, (hyperparams, _) = {"sac": SAC, "dqn": DQN}[algo], zoo_hyperparams(algo, env_id)
    label = f"{algo} {env_id} seed {seed}"
    evaluate = EvalCurve(Monitor(gym.make(env_id)), eval_freq, eval_episodes, label, seed=EVAL_SEED + seed)
    model = cls("MlpPolicy", env_id, seed=seed, verbose=0, **hyperparams)
    model.learn(steps, callback=evaluate)
    curve = evaluate.curve
    result = dict(algo=algo, env=env_id, seed=seed, steps=steps, hyperparams=jsonable(hyperparams), curve=curve)
    (out / f"{algo}_{env_id}_{seed}.json").write_text(json.dumps(result, indent=1))


def first_crossing(curve: list[dict[str, float]], threshold: float) -> tuple[int | None, float | None]:
    """First evaluated step (and training seconds) whose mean return reaches ``threshold``."""
    for point in curve:
        if point["mean"] >= threshold:
            return int(point["step"]), float(point["train_seconds"])
    return None, None


def summarise(out: Path) -> str:
    """Aggregate the per-run JSON files into a markdown table, a summary JSON and a PNG of the curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [json.loads(path.read_text()) for path in sorted(out.glob("*_*_*.json")) if path.name != "summary.json"]
    lines = [
        "| env | algo | seeds | env steps | final return (mean ± std over seeds) | best eval | steps to goal per seed | "
        "train seconds to goal per seed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    summary = []
    envs = sorted({run["env"] for run in runs})
    fig, axes = plt.subplots(1, max(len(envs), 1), figsize=(6 * max(len(envs), 1), 4), squeeze=False)
    for ax, env_id in zip(axes[0], envs, strict=False):
        threshold = GOALS[env_id]["threshold"]
        for algo in sorted({run["algo"] for run in runs if run["env"] == env_id}):
            group = [run for run in runs if run["env"] == env_id and run["algo"] == algo and run["curve"]]
            if not group:
                continue
            finals = [run["curve"][-1]["mean"] for run in group]
            best = [max(point["mean"] for point in run["curve"]) for run in group]
            crossings = [first_crossing(run["curve"], threshold) for run in group]
            lines.append(
                f"| {env_id} | {algo} | {len(group)} | {group[0]['steps']} | {np.mean(finals):.1f} ± {np.std(finals):.1f} | "
                f"{np.mean(best):.1f} | {', '.join(str(step) for step, _ in crossings)} | "
                f"{', '.join('-' if sec is None else f'{sec:.0f}' for _, sec in crossings)} |"
            )
            seeds = [run["seed"] for run in group]
            summary.append(dict(env=env_id, algo=algo, seeds=seeds, finals=finals, crossings=crossings))
            steps = np.array([point["step"] for point in group[0]["curve"]])
            length = min(len(run["curve"]) for run in group)
            means = np.array([[point["mean"] for point in run["curve"][:length]] for run in group])
            color = "C0" if algo == "dreamer" else "C1"
            ax.plot(steps[:length], means.mean(0), color=color, label=f"{algo} ({len(group)} seeds, mean; band min-max)")
            ax.fill_between(steps[:length], means.min(0), means.max(0), color=color, alpha=0.2)
        ax.axhline(threshold, color="grey", linestyle="--", linewidth=1, label=f"goal {threshold:g}")
        ax.set_title(env_id)
        ax.set_xlabel("environment steps")
        ax.set_ylabel("deterministic eval return")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "sample_efficiency.png", dpi=120)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    table = "\n".join(lines)
    (out / "sample_efficiency.md").write_text(table + "\n")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--envs", nargs="+", default=list(GOALS))
    parser.add_argument("--algos", nargs="+", default=["dreamer", "baseline"], help="dreamer, sac, dqn or baseline")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--eval-freq", type=int, default=1000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=2, help="parallel processes (each uses BENCH_THREADS torch threads)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "sample_efficiency")
    parser.add_argument("--summarise-only", action="store_true")
    parser.add_argument(
        "--dreamer-kwargs", type=json.loads, default={}, help='Dreamer arguments over the defaults, e.g. {"train_freq": 4}'
    )
    parser.add_argument("--single", nargs=3, metavar=("ALGO", "ENV", "SEED"), help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=None, help="override every run's env-step budget")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.single:
        algo, env_id, seed = args.single
        goal = GOALS[env_id]
        steps = args.steps or (goal["dreamer_steps"] if algo == "dreamer" else goal["baseline_steps"])
        run_one(algo, env_id, int(seed), steps, args.eval_freq, args.eval_episodes, args.out, args.dreamer_kwargs)
        return
    if not args.summarise_only:
        jobs = []
        for env_id in args.envs:
            for algo in args.algos:
                name = GOALS[env_id]["baseline"] if algo == "baseline" else algo
                jobs += [(name, env_id, seed) for seed in args.seeds]
        extra = ["--steps", str(args.steps)] if args.steps else []
        extra += ["--dreamer-kwargs", json.dumps(args.dreamer_kwargs)]

        def launch(job: tuple[str, str, int]) -> int:
            command = [sys.executable, __file__, "--single", job[0], job[1], str(job[2]), "--out", str(args.out)]
            command += ["--eval-freq", str(args.eval_freq), "--eval-episodes", str(args.eval_episodes), *extra]
            return subprocess.call(command)

        with ThreadPoolExecutor(args.jobs) as pool:
            codes = list(pool.map(launch, jobs))
        if any(codes):
            print(f"some runs failed: {codes}", file=sys.stderr)
    print(summarise(args.out))


if __name__ == "__main__":
    main()
