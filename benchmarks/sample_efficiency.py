"""Dreamer's shared defaults across tasks, next to rl-zoo's tuned baselines at the same budget and seeds.

Every run trains one (algorithm, env, seed) in its own process and evaluates the deterministic policy every
``--eval-freq`` env steps on a separate, seeded environment (``--eval-episodes`` episodes). Dreamer runs with the
settings of ``zoo_configs/dreamer.yml`` (its entries hold only budgets and policies, so these are the constructor
defaults) and the entry's ``n_timesteps`` as budget; the baselines (SAC, DQN) with rl_zoo3's own tuned entries (read
from the installed package, not copied) at the same budget. ``--dreamer-kwargs`` with ``--tag`` runs a knob under test
beside the defaults (e.g. the hybrid ``real_data_ratio``).

A run checkpoints every ``--checkpoint-freq`` steps (model and replay buffer through Dreamer's own ``save`` and
``save_replay_buffer``) and resumes from there when started again; a run whose result file exists is skipped. So the
whole grid can be run over several sessions by repeating the same command. Results: one JSON per run, a summary JSON,
a markdown table (per-seed numbers, goal met or not) and a PNG of the learning curves in ``--out``.

Run: ``python benchmarks/sample_efficiency.py`` (all runs, 2 processes with 1 torch thread each; many hours).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from common import EVAL_SEED, code_commit, jsonable

ROOT = Path(__file__).resolve().parent.parent

#: Goal of every seed and the rl-zoo baseline per env. ``hold``: fraction of the evaluations after the first one that
#: reaches the goal which must reach it too. A goal of None: the curve is reported, no goal.
GOALS: dict[str, dict[str, Any]] = {
    "CartPole-v1": dict(goal=475.0, hold=0.8, baseline="dqn", seeds=5),
    "Pendulum-v1": dict(goal=-200.0, hold=None, baseline="sac", seeds=5),
    "Acrobot-v1": dict(goal=-100.0, hold=None, baseline="dqn", seeds=5),
    "MountainCarContinuous-v0": dict(goal=90.0, hold=None, baseline="sac", seeds=5),
    "MinAtar/Breakout-v1": dict(goal=None, hold=None, baseline="dqn", seeds=3),
}


def dreamer_entry(env_id: str) -> tuple[str, int, dict[str, Any]]:
    """Policy, budget and the remaining arguments of ``env_id``'s entry in ``zoo_configs/dreamer.yml``."""
    entry = dict(yaml.safe_load((ROOT / "zoo_configs" / "dreamer.yml").read_text())[env_id])
    return entry.pop("policy"), int(entry.pop("n_timesteps")), entry


def run_name(algo: str, env_id: str, seed: int) -> str:
    return f"{algo}_{env_id.replace('/', '-')}_{seed}"


def run_one(
    algo: str,
    env_id: str,
    seed: int,
    steps: int | None,
    eval_freq: int,
    eval_episodes: int,
    out: Path,
    dreamer_kwargs: dict,
    checkpoint_freq: int,
    log_train: bool = False,
) -> None:
    """Train one model (resuming its checkpoint if there is one) and write its curve to ``out / <run_name>.json``.

    :param algo: "dreamer", "dreamer+<tag>" (Dreamer with ``dreamer_kwargs``), "sac" or "dqn"
    :param steps: env-step budget (None: the zoo entry's ``n_timesteps``)
    :param dreamer_kwargs: Dreamer arguments over the defaults (a knob under test; recorded in the JSON)
    :param log_train: write SB3's training log (``train/*`` metrics) to ``out / "logs" / <run_name> / progress.csv``
        (the part after a resume at step N to ``.../<run_name>/from_N/progress.csv``)
    """
    import gymnasium as gym
    import torch as th
    from common import baseline_hyperparams
    from stable_baselines3 import DQN, SAC
    from stable_baselines3.common.monitor import Monitor

    from sb3_dreamer import Dreamer  # importing the package also registers the MinAtar ids
    from sb3_dreamer.common import EvalCurve, ResumableRun

    th.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    policy, budget, entry = dreamer_entry(env_id)
    steps = steps or budget
    if algo.startswith("dreamer"):
        cls, hyperparams = Dreamer, {**entry, **dreamer_kwargs}
    else:
        cls, (policy, hyperparams) = {"sac": SAC, "dqn": DQN}[algo], baseline_hyperparams(algo, env_id)
    label = f"{algo} {env_id} seed {seed}"
    evaluate = EvalCurve(Monitor(gym.make(env_id)), eval_freq, eval_episodes, label, seed=EVAL_SEED + seed)
    name = run_name(algo, env_id, seed)
    checkpoint = ResumableRun(out / "checkpoints" / name, checkpoint_freq, evaluate)
    model = checkpoint.restore(lambda path: cls.load(path, env=Monitor(gym.make(env_id)), seed=seed))
    resumed = model is not None
    if model is None:
        model = cls(policy, Monitor(gym.make(env_id)), seed=seed, verbose=0, **hyperparams)
    if log_train:
        from stable_baselines3.common.logger import configure

        # SB3's CSV output starts a new file: a resumed run logs to its own folder, so no earlier rows are lost.
        folder = out / "logs" / name / (f"from_{model.num_timesteps}" if resumed else "")
        model.set_logger(configure(str(folder), ["csv"]))
    model.learn(steps - model.num_timesteps, callback=[evaluate, checkpoint], reset_num_timesteps=not resumed)
    result = dict(
        algo=algo,
        env=env_id,
        seed=seed,
        steps=steps,
        hyperparams=jsonable(hyperparams),
        curve=evaluate.curve,
        seconds=time.perf_counter() - evaluate.start,  # includes the time before a resume
        resumed=resumed,
        commit=code_commit(),
    )
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))
    # The final agent for later analysis (benchmarks/critic_values.py); gitignored like the checkpoints.
    (out / "final").mkdir(exist_ok=True)
    model.save(out / "final" / f"{name}.zip")
    checkpoint.remove()


def first_crossing(curve: list[dict[str, float]], threshold: float) -> tuple[int | None, float | None]:
    """First evaluated step (and training seconds) whose mean return reaches ``threshold``."""
    for point in curve:
        if point["mean"] >= threshold:
            return int(point["step"]), float(point["train_seconds"])
    return None, None


def goal_met(curve: list[dict[str, float]], goal: float, hold: float | None) -> tuple[bool, float | None]:
    """Whether a run meets its goal: the final evaluation reaches ``goal`` and, with ``hold``, at least that fraction of
    the evaluations from the first one reaching ``goal`` on reach it too.

    :return: (met, fraction of evaluations at the goal after the first crossing, or None if never crossed)
    """
    means = [point["mean"] for point in curve]
    reached = [i for i, mean in enumerate(means) if mean >= goal]
    if not reached:
        return False, None
    after = means[reached[0] :]
    fraction = sum(mean >= goal for mean in after) / len(after)
    return means[-1] >= goal and (hold is None or fraction >= hold), fraction


def summarise(out: Path) -> str:
    """Aggregate the per-run JSON files into a markdown table, a summary JSON and a PNG of the curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [json.loads(path.read_text()) for path in sorted(out.glob("*_*_*.json"))]
    lines = [
        "| env | algo | seeds | env steps | goal | final return per seed | mean ± std | goal met (seeds) | "
        "steps to goal per seed | at goal after first reaching it |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    summary = []
    envs = [env_id for env_id in GOALS if any(run["env"] == env_id for run in runs)]
    fig, axes = plt.subplots(1, max(len(envs), 1), figsize=(5.5 * max(len(envs), 1), 4), squeeze=False)
    for ax, env_id in zip(axes[0], envs, strict=False):
        goal, hold = GOALS[env_id]["goal"], GOALS[env_id]["hold"]
        algos = sorted({run["algo"] for run in runs if run["env"] == env_id}, key=lambda a: (not a.startswith("dreamer"), a))
        for color, algo in enumerate(algos):
            group = sorted(
                (r for r in runs if r["env"] == env_id and r["algo"] == algo and r["curve"]), key=lambda r: r["seed"]
            )
            if not group:
                continue
            finals = [run["curve"][-1]["mean"] for run in group]
            met_text, cross_text, hold_text = "-", "-", "-"
            entry: dict[str, Any] = dict(env=env_id, algo=algo, seeds=[r["seed"] for r in group], finals=finals)
            if goal is not None:
                checks = [goal_met(run["curve"], goal, hold) for run in group]
                crossings = [first_crossing(run["curve"], goal)[0] for run in group]
                met_text = f"{sum(met for met, _ in checks)}/{len(group)}"
                cross_text = ", ".join("never" if step is None else str(step) for step in crossings)
                hold_text = ", ".join("-" if frac is None else f"{frac:.0%}" for _, frac in checks)
                entry.update(met=[met for met, _ in checks], crossings=crossings, at_goal=[frac for _, frac in checks])
            lines.append(
                f"| {env_id} | {algo} | {len(group)} | {group[0]['steps']} | {'-' if goal is None else f'{goal:g}'} | "
                f"{', '.join(f'{f:.{0 if goal is not None else 1}f}' for f in finals)} | "
                f"{np.mean(finals):.1f} ± {np.std(finals):.1f} | {met_text} | "
                f"{cross_text} | {hold_text} |"
            )
            summary.append(entry)
            for i, run in enumerate(group):
                steps = [point["step"] for point in run["curve"]]
                means = [point["mean"] for point in run["curve"]]
                ax.plot(steps, means, color=f"C{color}", alpha=0.8, linewidth=1, label=algo if i == 0 else None)
        if goal is not None:
            ax.axhline(goal, color="grey", linestyle="--", linewidth=1, label=f"goal {goal:g}")
        ax.set_title(f"{env_id} (one line per seed)")
        ax.set_xlabel("environment steps")
        ax.set_ylabel("deterministic eval return (10 episodes)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "sample_efficiency.png", dpi=110)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    table = "\n".join(lines)
    (out / "sample_efficiency.md").write_text(table + "\n")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=list(GOALS))
    parser.add_argument("--algos", nargs="+", default=["dreamer", "baseline"], help="dreamer, sac, dqn or baseline")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="default: 0 .. the env's seed count - 1")
    parser.add_argument("--eval-freq", type=int, default=1000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--checkpoint-freq", type=int, default=2000, help="env steps between two checkpoints")
    parser.add_argument("--jobs", type=int, default=2, help="parallel processes (each uses BENCH_THREADS torch threads)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "across_tasks")
    parser.add_argument("--summarise-only", action="store_true")
    parser.add_argument(
        "--dreamer-kwargs", type=json.loads, default={}, help='Dreamer arguments over the defaults, e.g. {"train_freq": 4}'
    )
    parser.add_argument("--tag", default=None, help="name of the --dreamer-kwargs variant (runs are named dreamer+TAG)")
    parser.add_argument("--single", nargs=3, metavar=("ALGO", "ENV", "SEED"), help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=None, help="override every run's env-step budget")
    parser.add_argument("--log-train", action="store_true", help="write each run's train/* metrics to OUT/logs/<run>/")
    args = parser.parse_args()
    if args.dreamer_kwargs and not args.tag and not args.single:
        parser.error("--dreamer-kwargs needs --tag, so that its runs are not mistaken for the defaults")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.single:
        algo, env_id, seed = args.single
        run_one(
            algo, env_id, int(seed), args.steps, args.eval_freq, args.eval_episodes, args.out, args.dreamer_kwargs,
            args.checkpoint_freq, args.log_train,
        )  # fmt: skip
        return
    if not args.summarise_only:
        jobs = []
        for env_id in args.envs:
            for algo in args.algos:
                name = GOALS[env_id]["baseline"] if algo == "baseline" else algo
                if name == "dreamer" and args.tag:
                    name = f"dreamer+{args.tag}"
                seeds = args.seeds if args.seeds is not None else range(GOALS[env_id]["seeds"])
                jobs += [
                    (name, env_id, seed) for seed in seeds if not (args.out / f"{run_name(name, env_id, seed)}.json").exists()
                ]
        extra = ["--steps", str(args.steps)] if args.steps else []
        extra += ["--dreamer-kwargs", json.dumps(args.dreamer_kwargs), "--checkpoint-freq", str(args.checkpoint_freq)]
        extra += ["--log-train"] if args.log_train else []
        print(f"{len(jobs)} runs to do: {jobs}", flush=True)

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
