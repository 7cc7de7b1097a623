"""Reward-free transfer across a dynamics gap: the learned DTW-alignment reward against its baselines.

For each seed: a source Dreamer trains on the source env (with rewards) and records ``--references`` deterministic
reference episodes. On the target env (whose reward the agents never see), these variants then train and are
evaluated every ``eval_freq`` steps on the target's **true** reward (deterministic, ``--eval-episodes`` episodes):

- ``dreamer_dtw_<mode>``: Dreamer initialised from the source model (``target_learning_starts`` random warm-up
  steps, then the source policy acts and learns), trained on the DTW reward of ``<mode>``
  (``source_reward``, ``source_reward_split``, ``tracking``);
- ``dreamer_oracle``: the same, trained on the target's true reward (the upper reference, score 1);
- ``sac_dtw_source_reward`` / ``sac_oracle``: rl-zoo's tuned SAC from scratch on the DTW / true reward (the wrapper is
  algorithm-agnostic; SAC cannot start from a Dreamer);
- ``random`` (score 0) and ``source_zero_shot`` (the source model run on the target unchanged), evaluated once.

Normalised score per seed: (return - random) / (dreamer_oracle - random), both from the same seed. The final return
of a run is its last evaluation; a second table uses the mean of its last 3 evaluations (less evaluation noise).
Each evaluation of a DTW variant also records ``learned_mean``: the return of the same episodes under the run's reward
model at that time (the agent optimises that return; where it rises while the true one falls, the model misleads it).
Results: one JSON per run, ``transfer.md`` (tables), ``summary.json`` and ``transfer_<pair>.png`` (curves) in ``--out``.

Run: ``python benchmarks/transfer.py --pair pendulum`` (2 processes with 1 torch thread each).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from common import EVAL_SEED, code_commit, jsonable

from sb3_dreamer.alignment.dtw import LABEL_MODES

#: Dreamer settings of the Pendulum pair: the constructor defaults (its CPU settings: 16 x 32 batches, 256 imagination
#: starts, train_freq 2, learning_starts 1000; these runs' settings before they became the defaults).
DREAMER_CPU: dict[str, Any] = {}


def _pair(name: str, source_steps: int, target_steps: int, warm_up: int, eval_freq: int, **extra: Any) -> dict[str, Any]:
    """One benchmark pair: ``sb3_dreamer/<name>Source-v0`` / ``<name>Target-v0``, step budgets, Dreamer settings."""
    return dict(
        source=f"sb3_dreamer/{name}Source-v0",
        target=f"sb3_dreamer/{name}Target-v0",
        source_steps=source_steps,
        target_steps=target_steps,
        target_learning_starts=warm_up,
        eval_freq=eval_freq,
        **extra,
    )


#: Benchmark pairs. ``sac_zoo_entry``: the rl-zoo SAC entry used for the SAC variants; ``dtw_kwargs``: extra
#: ``DTWRewardWrapper`` arguments of the DTW variants. Pendulum's ``max_label_cost`` was chosen with
#: ``reward_fidelity.py``, which looks at the target's true reward (0.5 and 2.0 gave the same fidelity; see
#: benchmarks/README.md).
PAIRS: dict[str, dict[str, Any]] = {
    "pendulum": _pair(
        "Pendulum",
        6_000,
        5_000,
        400,
        1_000,
        sac_steps=10_000,
        sac_zoo_entry="Pendulum-v1",
        dreamer=DREAMER_CPU,
        dtw_kwargs=dict(max_label_cost=0.5),
    ),
    # Hopper: Dreamer at train_freq 5 ran 8.7 env steps/s per process in the first 20k source steps (two runs plus other
    # jobs on the 2 cores) and 12.8 with only the two runs, so a 60k source takes ~1.5-2 h and a 20k target run ~30-40
    # min; the whole pair is ~10-12 h of CPU, spread over sessions by the checkpoints (first planned at 100k / 30k).
    "hopper": _pair(
        "Hopper",
        60_000,
        20_000,
        2_000,
        5_000,
        sac_steps=100_000,
        sac_zoo_entry="HopperBulletEnv-v0",
        dreamer=dict(DREAMER_CPU, train_freq=5, learning_starts=5_000),
        dtw_kwargs={},
    ),
}
#: The evaluation env of a run's learning curve is seeded with ``common.EVAL_SEED + seed``; runs made at 62b58bb or
#: earlier (their JSON's ``commit``) evaluated on an unseeded env.
VARIANTS = (*(f"dreamer_dtw_{mode}" for mode in LABEL_MODES), "dreamer_oracle", "sac_dtw_source_reward", "sac_oracle")


def _checkpoint_dir(out: Path, variant: str, seed: int) -> Path:
    return out / "checkpoints" / f"{variant}_{seed}"


def _claim(out: Path, variant: str, seed: int) -> Path | None:
    """Lock file that marks a run as taken by this invocation, or None if a live process of another invocation holds it.

    Lets several ``transfer.py`` commands with overlapping jobs share the cores: each run is done by one of them. A lock
    whose process is gone (a stopped session) is taken over.
    """
    lock = out / "checkpoints" / f"{variant}_{seed}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    # The PID is written first and the lock appears with it in one step (a hard link fails if the lock exists).
    mine = lock.with_name(f"{lock.name}.{os.getpid()}")
    mine.write_text(str(os.getpid()))
    try:
        while True:
            try:
                os.link(mine, lock)
                return lock
            except FileExistsError:
                try:
                    os.kill(int(lock.read_text()), 0)
                    return None
                except ValueError:  # being written by an older transfer.py (PID written after creation)
                    return None
                except (ProcessLookupError, FileNotFoundError):
                    lock.unlink(missing_ok=True)
    finally:
        mine.unlink()


def run_source(pair: str, seed: int, out: Path, references: int, eval_episodes: int, checkpoint_freq: int) -> None:
    """Train the source Dreamer, record the references, evaluate random and zero-shot on the target's true reward."""
    import gymnasium as gym
    from stable_baselines3.common.monitor import Monitor

    from sb3_dreamer import Dreamer
    from sb3_dreamer.alignment import record_trajectories
    from sb3_dreamer.common import EvalCurve, ResumableRun
    from sb3_dreamer.transfer import RandomPolicy, evaluate_on_env

    spec = PAIRS[pair]
    label = f"{pair} source seed {seed}"
    evaluate = EvalCurve(Monitor(gym.make(spec["source"])), spec["eval_freq"], eval_episodes, label, seed=EVAL_SEED + seed)
    checkpoint = ResumableRun(_checkpoint_dir(out, "source", seed), checkpoint_freq, evaluate)
    source = checkpoint.restore(lambda path: Dreamer.load(path, env=Monitor(gym.make(spec["source"])), seed=seed))
    resumed = source is not None
    if source is None:
        source = Dreamer("MlpPolicy", spec["source"], seed=seed, **spec["dreamer"])
    source.learn(spec["source_steps"] - source.num_timesteps, callback=[evaluate, checkpoint], reset_num_timesteps=not resumed)
    source.save(out / f"source_{seed}.zip")
    record_trajectories(source, spec["source"], references, seed=seed).save(out / f"reference_{seed}.npz")

    result = dict(
        pair=pair,
        variant="source",
        seed=seed,
        curve=evaluate.curve,
        random=evaluate_on_env(RandomPolicy(gym.make(spec["target"]).action_space, seed), spec["target"], eval_episodes, seed),
        source_zero_shot=evaluate_on_env(source, spec["target"], eval_episodes, seed),
        seconds=time.perf_counter() - evaluate.start,  # includes the time before a resume
        resumed=resumed,
    )
    (out / f"source_{seed}.json").write_text(json.dumps(result, indent=1))
    checkpoint.remove()


def run_target(pair: str, variant: str, seed: int, out: Path, eval_episodes: int, checkpoint_freq: int) -> None:
    """Train one target variant on the reward-free target and record its true-reward learning curve."""
    import gymnasium as gym
    from common import zoo_hyperparams
    from stable_baselines3 import SAC
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.monitor import Monitor

    from sb3_dreamer import Dreamer
    from sb3_dreamer.alignment import DTWRewardWrapper
    from sb3_dreamer.common import EvalCurve, ResumableRun

    commit = code_commit()  # the code this process imported (a commit made while it runs does not count)
    spec = PAIRS[pair]
    wrapper_kwargs: dict[str, Any] = {}
    if "_dtw_" in variant:
        label_mode = variant.split("_dtw_")[1]
        wrapper_kwargs = dict(
            reference=str(out / f"reference_{seed}.npz"), label_mode=label_mode, seed=seed, **spec["dtw_kwargs"]
        )
    env = make_vec_env(
        spec["target"],
        seed=seed,
        wrapper_class=DTWRewardWrapper if wrapper_kwargs else None,
        wrapper_kwargs=wrapper_kwargs or None,
    )
    label = f"{pair} {variant} seed {seed}"
    # DTW variants: each evaluation also sums the current reward model over the evaluation episodes (``learned_mean``).
    learned_reward = env.envs[0].rewarder.predict if wrapper_kwargs else None
    evaluate = EvalCurve(
        Monitor(gym.make(spec["target"])),
        spec["eval_freq"],
        eval_episodes,
        label,
        learned_reward=learned_reward,
        seed=EVAL_SEED + seed,
    )
    # DTWRewardWrapper(Monitor(env)) is the outermost wrapper of the single sub-env.
    checkpoint = ResumableRun(
        _checkpoint_dir(out, variant, seed), checkpoint_freq, evaluate, env.envs[0] if wrapper_kwargs else None
    )
    algo: Any = Dreamer if variant.startswith("dreamer_") else SAC
    model: Any = checkpoint.restore(lambda path: algo.load(path, env=env, seed=seed))
    resumed = model is not None
    steps = spec["target_steps"] if algo is Dreamer else spec["sac_steps"]
    if model is None and algo is Dreamer:
        # Fine-tuning: fewer random warm-up steps than from scratch (the world model already knows similar dynamics).
        source_path = out / f"source_{seed}.zip"
        model = Dreamer.load(source_path, env=env, seed=seed, learning_starts=spec["target_learning_starts"])
    elif model is None:
        model = SAC("MlpPolicy", env, seed=seed, verbose=0, **zoo_hyperparams("sac", spec["sac_zoo_entry"])[0])
    # A model loaded from the source carries the source's step count: reset it unless resuming this run.
    done_steps = model.num_timesteps if resumed else 0
    model.learn(steps - done_steps, callback=[evaluate, checkpoint], reset_num_timesteps=not resumed)
    # The final agent (and reward model) for later analysis; gitignored like the checkpoints.
    (out / "final").mkdir(exist_ok=True)
    model.save(out / "final" / f"{variant}_{seed}.zip")
    if wrapper_kwargs:
        env.envs[0].save_state(out / "final" / f"{variant}_{seed}_wrapper.npz")
    dtw_stats = {}
    if wrapper_kwargs:
        rewarder = env.envs[0].rewarder
        dtw_stats = dict(
            episodes=rewarder.n_episodes,
            refits=rewarder.n_refits,
            truncated_refits=rewarder.n_truncated_refits,
            labels_stored=rewarder.n_labels,  # all target steps unless max_label_cost dropped some
        )
    result = dict(
        pair=pair,
        variant=variant,
        seed=seed,
        steps=steps,
        curve=evaluate.curve,
        wrapper_kwargs=jsonable(wrapper_kwargs),
        dtw=dtw_stats,
        seconds=time.perf_counter() - evaluate.start,  # includes the time before a resume
        resumed=resumed,
        commit=commit,
    )
    (out / f"{variant}_{seed}.json").write_text(json.dumps(result, indent=1))
    checkpoint.remove()


def summarise(pair: str, out: Path) -> str:
    """Table of final true returns and normalised scores per variant, plus a PNG of the learning curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sources = {run["seed"]: run for run in map(_read, sorted(out.glob("source_*.json")))}
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    for variant in VARIANTS:
        for path in sorted(out.glob(f"{variant}_*.json")):
            run = _read(path)
            if run["variant"] == variant and run["curve"]:  # the glob of a mode also matches longer mode names
                runs.setdefault(variant, {})[run["seed"]] = run
    tables, summary = [], {}
    for last in (1, 3):
        lines, rows = _score_table(pair, sources, runs, last)
        tables.append("\n".join(lines))
        summary[f"last_{last}"] = rows
    learned = _learned_table(pair, runs)
    if learned:
        tables.append("\n".join(learned))
    fig, ax = plt.subplots(figsize=(8, 5))
    for index, (variant, group) in enumerate(runs.items()):
        length = min(len(run["curve"]) for run in group.values())
        steps = np.array([point["step"] for point in next(iter(group.values()))["curve"][:length]])
        means = np.array([[point["mean"] for point in run["curve"][:length]] for run in group.values()])
        ax.plot(
            steps,
            means.mean(0),
            color=f"C{index}",
            label=f"{variant} ({len(group)} seeds)",
        )
        ax.fill_between(steps, means.min(0), means.max(0), color=f"C{index}", alpha=0.15)
    for row in summary["last_1"][:2]:  # random and source_zero_shot as horizontal lines
        level = float(np.mean(row["finals"]))
        ax.axhline(level, linestyle="--", linewidth=1, color="grey" if row["variant"] == "random" else "k")
        ax.annotate(row["variant"], (0, level), fontsize=8)
    ax.set_title(f"{pair}: target true return (mean over seeds, band min-max)")
    ax.set_xlabel("target environment steps")
    ax.set_ylabel("deterministic eval return (true reward)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / f"transfer_{pair}.png", dpi=120)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    table = "\n\n".join(tables)
    (out / "transfer.md").write_text(table + "\n")
    return table


def _score_table(
    pair: str, sources: dict[int, dict[str, Any]], runs: dict[str, dict[int, dict[str, Any]]], last: int
) -> tuple[list[str], list[dict[str, Any]]]:
    """Markdown rows and JSON rows of the true return (mean of the last ``last`` evaluations) and normalised score."""

    def final(run: dict[str, Any]) -> float:
        return float(np.mean([point["mean"] for point in run["curve"][-last:]]))

    oracle = {seed: final(run) for seed, run in runs.get("dreamer_oracle", {}).items()}
    rows: list[tuple[str, dict[int, float]]] = [
        ("random", {seed: run["random"][0] for seed, run in sources.items()}),
        ("source_zero_shot", {seed: run["source_zero_shot"][0] for seed, run in sources.items()}),
    ]
    rows += [(variant, {seed: final(run) for seed, run in group.items()}) for variant, group in runs.items()]
    what = "final evaluation" if last == 1 else f"mean of the last {last} evaluations"
    lines = [
        f"| {pair}: variant | seeds | true return, {what} (mean ± std) | per seed | normalised score (mean ± std) |",
        "|---|---|---|---|---|",
    ]
    summary = []
    for name, finals in rows:
        seeds = sorted(finals)
        values = np.array([finals[seed] for seed in seeds])
        scored = [seed for seed in seeds if seed in oracle and seed in sources]
        scores = np.array(
            [(finals[s] - sources[s]["random"][0]) / (oracle[s] - sources[s]["random"][0]) for s in scored],
            dtype=float,
        )
        score_text = f"{scores.mean():.2f} ± {scores.std():.2f}" if len(scores) else "-"
        if 0 < len(scores) < len(seeds):  # some seeds have no oracle run yet
            score_text += f" (seed{'s' if len(scored) > 1 else ''} {', '.join(map(str, scored))} only)"
        lines.append(
            f"| {name} | {len(seeds)} | {values.mean():.1f} ± {values.std():.1f} | "
            f"{', '.join(f'{value:.0f}' for value in values)} | {score_text} |"
        )
        summary.append(dict(variant=name, seeds=seeds, finals=values.tolist(), scores=scores.tolist()))
    return lines, summary


def _learned_table(pair: str, runs: dict[str, dict[int, dict[str, Any]]]) -> list[str]:
    """Markdown rows of the true and the learned (reward-model) return at each DTW run's final evaluation, for the runs
    that recorded ``learned_mean`` (made at 73bf26c or later); empty if none did."""
    lines = [
        f"| {pair}: DTW run, final evaluation | seed | true return | learned return (run's reward model) |",
        "|---|---|---|---|",
    ]
    for variant, group in runs.items():
        for seed, run in sorted(group.items()):
            point = run["curve"][-1]
            if "learned_mean" in point:
                lines.append(f"| {variant} | {seed} | {point['mean']:.1f} | {point['learned_mean']:.1f} |")
    return lines if len(lines) > 2 else []


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", choices=list(PAIRS), default="pendulum")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument(
        "--references",
        type=int,
        default=10,
        help="reference episodes recorded from the source",
    )
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument(
        "--jobs",
        type=int,
        default=2,
        help="parallel processes (each uses BENCH_THREADS torch threads)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="default: benchmarks/results/transfer/<pair>",
    )
    parser.add_argument(
        "--checkpoint-freq",
        type=int,
        default=None,
        help="env steps between checkpoints of a run (default: the pair's eval_freq); a cut-off run resumes from its "
        "last checkpoint when the command is run again",
    )
    parser.add_argument("--summarise-only", action="store_true")
    parser.add_argument("--single", nargs=2, metavar=("VARIANT", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    out = args.out or Path(__file__).parent / "results" / "transfer" / args.pair
    out.mkdir(parents=True, exist_ok=True)
    checkpoint_freq = args.checkpoint_freq or PAIRS[args.pair]["eval_freq"]
    if args.single:
        import torch as th

        th.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
        variant, seed = args.single[0], int(args.single[1])
        if variant == "source":
            run_source(args.pair, seed, out, args.references, args.eval_episodes, checkpoint_freq)
        else:
            run_target(args.pair, variant, seed, out, args.eval_episodes, checkpoint_freq)
        return
    if not args.summarise_only:
        # Sources first; a target job waits for its seed's source (runs that already wrote their JSON are skipped).
        done = {seed: threading.Event() for seed in args.seeds}
        jobs = [("source", seed) for seed in args.seeds] + [(v, s) for s in args.seeds for v in args.variants]

        def launch(job: tuple[str, int]) -> int:
            variant, seed = job
            if variant != "source":
                done[seed].wait()
            code = 0
            lock = _claim(out, variant, seed)
            while lock is None and variant == "source":  # targets need it: wait for the other invocation's source
                time.sleep(30)
                lock = _claim(out, variant, seed)
            if lock is None:
                print(f"{args.pair} {variant} seed {seed}: run by another transfer.py process, skipped here")
            elif not (out / f"{variant}_{seed}.json").exists():
                command = [
                    sys.executable,
                    __file__,
                    "--pair",
                    args.pair,
                    "--single",
                    variant,
                    str(seed),
                    "--out",
                    str(out),
                ]
                command += [
                    "--references",
                    str(args.references),
                    "--eval-episodes",
                    str(args.eval_episodes),
                    "--checkpoint-freq",
                    str(checkpoint_freq),
                ]
                code = subprocess.call(command)
            if lock is not None:
                lock.unlink(missing_ok=True)
            if variant == "source":
                done[seed].set()
            return code

        with ThreadPoolExecutor(args.jobs) as pool:
            codes = list(pool.map(launch, jobs))
        if any(codes):
            print(
                f"some runs failed: {list(zip(jobs, codes, strict=True))}",
                file=sys.stderr,
            )
    print(summarise(args.pair, out))


if __name__ == "__main__":
    main()
