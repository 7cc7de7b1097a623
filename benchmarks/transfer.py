"""Reward-free transfer across a dynamics gap: the learned DTW-alignment reward against its baselines.

For each seed: a source Dreamer trains on the source env (with rewards) and records ``--references`` deterministic
reference episodes. On the target env (whose reward the agents never see), these variants then train and are
evaluated every ``eval_freq`` steps on the target's **true** reward (deterministic, ``--eval-episodes`` episodes):

- ``dreamer_dtw_<mode>``: Dreamer initialised from the source model (``target_learning_starts`` random warm-up
  steps, then the source policy acts and learns), trained on the DTW reward of ``<mode>``
  (``source_reward``, ``source_reward_split``, ``tracking``);
- ``dreamer_reference_only`` and ``dreamer_dtw_source_reward_noanchor`` (controls of ``dreamer_dtw_source_reward``):
  the reward model learns from the reference alone (pre-fit and reference anchor, no DTW labels: ``dtw_labels=False``),
  or from the DTW labels without the reference anchor (``anchor_reference=False``);
- ``dreamer_oracle``: the same, trained on the target's true reward (the upper reference, score 1);
- ``dreamer_oracle_scratch``: Dreamer from scratch on the target's true reward (same budget, the constructor's warm-up);
  ``dreamer_dtw_source_reward_scratch`` / ``dreamer_reference_only_scratch``: the DTW reward and its control, from scratch;
  ``*_refit500_scratch``: the same with a refit every 500 new labelled steps (``DTW_SETTINGS``);
- ``sac_dtw_source_reward`` / ``sac_reference_only`` / ``sac_oracle``: rl-zoo's tuned SAC from scratch on the DTW
  reward, its reference-only control, the true reward (the wrapper is algorithm-agnostic; SAC cannot start from a
  Dreamer);
- ``dreamer_dtw_source_reward_relabel`` / ``sac_dtw_source_reward_relabel``: the same DTW reward, with the rewards
  stored in the replay buffer rewritten by the current reward model after every refit (``RelabelCallback``);
- ``dreamer_dtw_source_reward_sampled`` / ``sac_dtw_source_reward_sampled``: the same DTW reward, computed by the
  replay buffer for every sampled batch instead of at each step (``SampledRewardCallback``, no per-step prediction);
- ``random`` (score 0) and ``source_zero_shot`` (the source model run on the target unchanged), evaluated once.

Normalised score (the one normalisation): (mean return - mean random) / (mean dreamer_oracle - mean random), means
over the seeds that have an oracle run; per-seed scores beside it. The final return of a run is its last evaluation;
a second table uses the mean of its last 3 evaluations (less evaluation noise).
Each evaluation of a DTW variant also records ``learned_mean``: the return of the same episodes under the run's reward
model at that time (the agent optimises that return; where it rises while the true one falls, the model misleads it).
Results: one JSON per run, ``transfer.md`` (tables), ``summary.json`` and ``transfer_<pair>.png`` (curves) in ``--out``.

Every run goes through the library's pipeline stages (:func:`sb3_dreamer.transfer.train_source`,
:func:`sb3_dreamer.transfer.train_target`, with their checkpoints), so the published numbers come from the code users run.

Run: ``python benchmarks/transfer.py --pair pendulum`` (2 processes with 1 torch thread each); ``--quick --out /tmp/x``
checks every stage with tiny budgets.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from common import EVAL_SEED, code_commit, jsonable, package_versions
from transfer_pairs import (
    DTW_CONTROLS,
    DTW_SETTINGS,
    PAIRS,
    QUICK,
    QUICK_EPISODES,
    RELABEL_SUFFIX,
    SAMPLED_SUFFIX,
    SCRATCH_SUFFIX,
    VARIANTS,
    reward_setting,
)

#: Default ``--out`` parent: one folder per pair.
RESULTS = Path(__file__).parent / "results" / "transfer"


def pair_spec(pair: str, quick: bool = False) -> dict[str, Any]:
    """The settings of ``pair``; with ``quick`` its budgets replaced by :data:`QUICK`'s."""
    spec = dict(PAIRS[pair])
    if quick:
        overrides = dict(QUICK)
        spec["dreamer"] = dict(spec["dreamer"], **overrides.pop("dreamer_quick"))
        spec["dtw_kwargs"] = dict(spec["dtw_kwargs"], **overrides.pop("dtw_quick"))
        spec.update(overrides)
    return spec


def _control_of(variant: str) -> str:
    """The reference-only control run like a DTW ``variant``: the same learner, ``DTW_SETTINGS`` part and ``_scratch``."""
    tail = SCRATCH_SUFFIX if variant.endswith(SCRATCH_SUFFIX) else ""
    stem = variant.removesuffix(tail)
    tail = next((suffix for suffix in DTW_SETTINGS if stem.endswith(suffix)), "") + tail
    return variant.split("_dtw_")[0] + "_reference_only" + tail


def _config(
    spec: dict[str, Any], seed: int, references: int, eval_episodes: int, init_from_source: bool = True, **fields: Any
) -> Any:
    """The library's ``TransferConfig`` of one run of the pair ``spec`` (a target Dreamer fine-tunes the source unless
    ``init_from_source`` is False)."""
    from sb3_dreamer.transfer import TransferConfig

    return TransferConfig(
        source_env=spec["source"],
        target_env=spec["target"],
        source_steps=spec["source_steps"],
        target_steps=spec["target_steps"],
        n_reference_episodes=references,
        init_from_source=init_from_source,
        dreamer_kwargs=dict(spec["dreamer"]),
        eval_episodes=eval_episodes,
        seed=seed,
        **fields,
    )


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


def needs_run(out: Path, variant: str, seed: int, variants: list[str]) -> bool:
    """Whether the job (``variant`` or ``"source"``, ``seed``) has to run: its JSON is missing, or, for a source, its
    model is missing while a Dreamer run of ``variants`` for that seed (initialised from it) is still to do.

    The source models are git-ignored, so a checkout on another machine has the source JSONs only; the source stage then
    runs again and rebuilds the model (for ``pendulum_repeat`` seeds 0, 1 and 2 it reproduced the saved curve,
    references and zero-shot bit for bit: same seed, one torch thread). SAC runs and the ``*_scratch`` Dreamer variants
    start from scratch and need only the reference file.
    """
    if not (out / f"{variant}_{seed}.json").exists():
        return True
    dreamers = (target for target in variants if target.startswith("dreamer_") and not target.endswith(SCRATCH_SUFFIX))
    targets_left = any(not (out / f"{target}_{seed}.json").exists() for target in dreamers)
    return variant == "source" and targets_left and not (out / f"source_{seed}.zip").exists()


def run_source(
    pair: str, seed: int, out: Path, references: int, eval_episodes: int, checkpoint_freq: int, quick: bool = False
) -> None:
    """Train the source Dreamer, record the references, evaluate random and zero-shot on the target's true reward
    (``sb3_dreamer.transfer.train_source``)."""
    from sb3_dreamer.transfer import train_source

    commit = code_commit()  # the code this process imported (a commit made while it runs does not count)
    spec = pair_spec(pair, quick)
    fields: dict[str, Any] = {}
    if "source_from" in spec and not quick:  # --quick trains its own tiny source
        model = RESULTS / spec["source_from"] / f"source_{seed}.zip"
        if not model.exists():
            raise SystemExit(
                f"--pair {pair} reuses the sources of --pair {spec['source_from']}: {model} is missing, run that first"
            )
        fields["source_model"] = str(model)
    stage = train_source(
        _config(spec, seed, references, eval_episodes, **fields),
        out,
        eval_freq=spec["eval_freq"],
        eval_seed=EVAL_SEED + seed,
        checkpoint_freq=checkpoint_freq,
        checkpoint_dir=_checkpoint_dir(out, "source", seed),
        source_file=f"source_{seed}.zip",
        reference_file=f"reference_{seed}.npz",
        label=f"{pair} source seed {seed}",
    )
    result = dict(
        pair=pair,
        variant="source",
        seed=seed,
        # A reused source keeps the learning curve of the run that trained it.
        curve=_read(Path(fields["source_model"]).with_suffix(".json"))["curve"] if fields else stage.curve,
        random=stage.random,
        source_zero_shot=stage.source_zero_shot,
        seconds=stage.seconds,  # includes the time before a resume
        resumed=stage.resumed,
        commit=commit,
        versions=package_versions(),
    )
    (out / f"source_{seed}.json").write_text(json.dumps(result, indent=1))
    stage.remove_checkpoint()  # only now: a run cut off before this line returns the finished stage


def run_target(
    pair: str, variant: str, seed: int, out: Path, eval_episodes: int, checkpoint_freq: int, quick: bool = False
) -> None:
    """Train one target variant on the reward-free target and record its true-reward learning curve
    (``sb3_dreamer.transfer.train_target``)."""
    from common import zoo_hyperparams

    from sb3_dreamer.transfer import train_target

    commit = code_commit()  # the code this process imported (a commit made while it runs does not count)
    spec = pair_spec(pair, quick)
    setting = reward_setting(variant)
    label_mode, extra = setting if setting is not None else ("source_reward", {})
    algo = "dreamer" if variant.startswith("dreamer_") else "sac"
    fine_tune = algo == "dreamer" and not variant.endswith(SCRATCH_SUFFIX)
    config = _config(
        spec,
        seed,
        1,  # unused: the references were recorded by the source run
        eval_episodes,
        label_mode=label_mode,
        wrapper_kwargs={**spec["dtw_kwargs"], **extra},
        init_from_source=fine_tune,
    )
    if algo == "sac":
        config.target_steps = spec["sac_steps"]
    stage = train_target(
        config,
        out,
        algo=algo,
        reward="oracle" if setting is None else "dtw",
        algo_kwargs=zoo_hyperparams("sac", spec["sac_zoo_entry"])[0] if algo == "sac" else None,
        # Fine-tuning: fewer random warm-up steps than from scratch (the world model already knows similar dynamics).
        learning_starts=spec["target_learning_starts"] if fine_tune else None,
        source_path=out / f"source_{seed}.zip",
        reference_path=out / f"reference_{seed}.npz",
        eval_freq=spec["eval_freq"],
        eval_seed=EVAL_SEED + seed,
        checkpoint_freq=checkpoint_freq,
        checkpoint_dir=_checkpoint_dir(out, variant, seed),
        # The final agent (and reward model) for later analysis; gitignored like the checkpoints.
        model_file=f"final/{variant}_{seed}.zip",
        wrapper_state_file=f"final/{variant}_{seed}_wrapper.npz" if setting is not None else None,
        label=f"{pair} {variant} seed {seed}",
        relabel=variant.endswith(RELABEL_SUFFIX),
        reward_at_sampling=variant.endswith(SAMPLED_SUFFIX),
    )
    result = dict(
        pair=pair,
        variant=variant,
        seed=seed,
        steps=stage.steps,
        curve=stage.curve,
        wrapper_kwargs=jsonable(stage.wrapper_kwargs),
        dtw=stage.dtw,
        seconds=stage.seconds,  # includes the time before a resume
        resumed=stage.resumed,
        commit=commit,
        versions=package_versions(),
    )
    (out / f"{variant}_{seed}.json").write_text(json.dumps(result, indent=1))
    stage.remove_checkpoint()


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
    tables[0] += "".join(f"\n{line}" for line in _source_progress(pair, out))
    learned = _learned_table(pair, runs)
    if learned:
        tables.append("\n".join(learned))
    filters = {
        variant: sorted({repr(run.get("wrapper_kwargs", {}).get("max_label_cost")) for run in group.values()})
        for variant, group in runs.items()
        if "_dtw_" in variant or variant in DTW_CONTROLS
    }
    if len({value for values in filters.values() for value in values}) > 1:  # e.g. old 0.5 runs beside new ones
        listed = "; ".join(f"{variant}: {', '.join(values)}" for variant, values in filters.items())
        tables.append(f"Label filters differ between the DTW runs (max_label_cost): {listed}.")
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
    """Markdown rows and JSON rows of the true return (mean of the last ``last`` evaluations) and normalised score.

    The one normalisation: score = (mean over seeds of R - mean random) / (mean oracle - mean random), a ratio of
    means over the seeds that have an oracle run (``dreamer_oracle``, same budget and seeds); the per-seed scores
    (R_s - random_s) / (oracle_s - random_s) are printed beside it. Below the table: each source's own final return on
    the source env (a seed whose source did not learn its task says nothing about transfer) and the check of the goal
    of issue 19 for every DTW variant against the reference-only control.
    """

    def final(run: dict[str, Any]) -> float:
        return float(np.mean([point["mean"] for point in run["curve"][-last:]]))

    oracle = {seed: final(run) for seed, run in runs.get("dreamer_oracle", {}).items()}
    random = {seed: run["random"][0] for seed, run in sources.items()}
    rows: list[tuple[str, dict[int, float]]] = [
        ("random", random),
        ("source_zero_shot", {seed: run["source_zero_shot"][0] for seed, run in sources.items()}),
    ]
    rows += [(variant, {seed: final(run) for seed, run in group.items()}) for variant, group in runs.items()]
    what = "final evaluation" if last == 1 else f"mean of the last {last} evaluations"
    lines = [
        f"| {pair}: variant | seeds | true return, {what} (mean ± std) | per seed | normalised score (ratio of means) "
        "| per seed |",
        "|---|---|---|---|---|---|",
    ]
    summary, ratios = [], {}
    for name, finals in rows:
        seeds = sorted(finals)
        values = np.array([finals[seed] for seed in seeds])
        scored = [seed for seed in seeds if seed in oracle and seed in sources]
        ratio = _ratio_of_means({s: finals[s] for s in scored}, oracle, random)
        per_seed = [(finals[s] - random[s]) / (oracle[s] - random[s]) for s in scored]
        ratio_text = f"{ratio:.2f}" if scored else "-"
        if 0 < len(scored) < len(seeds):  # some seeds have no oracle run yet
            ratio_text += f" (seed{'s' if len(scored) > 1 else ''} {', '.join(map(str, scored))} only)"
        lines.append(
            f"| {name} | {len(seeds)} | {values.mean():.1f} ± {values.std():.1f} | "
            f"{', '.join(f'{value:.0f}' for value in values)} | {ratio_text} | {', '.join(f'{v:.2f}' for v in per_seed)} |"
        )
        ratios[name] = ratio
        summary.append(dict(variant=name, seeds=seeds, finals=values.tolist(), ratio_of_means=ratio, scores=per_seed))
    source_finals = ", ".join(
        f"seed {s}: {run['curve'][-1]['mean']:.0f}" for s, run in sorted(sources.items()) if run["curve"]
    )
    lines += ["", f"Source's own final return on the source env: {source_finals}."]
    by_name = dict(rows)
    controls = any(name.split("_")[1:3] == ["reference", "only"] for name in by_name)  # see ``_control_of``
    if controls and math.isfinite(ratios.get("source_zero_shot", math.nan)):  # nan until the oracle ran
        zero_shot = ratios["source_zero_shot"]
        fits = zero_shot <= 0.5
        lines.append(
            f"Goal (issue 19): zero-shot {zero_shot:.2f} of the oracle ({'≤' if fits else '>'} 0.5: "
            f"{'a' if fits else 'not a'} pair of the goal)."
        )
        # SAC from scratch on the true reward, where run: a second reference, for pairs whose same-budget Dreamer oracle
        # is not a stable one (same formula, its own seeds).
        sac = by_name.get("sac_oracle", {})
        if sac:
            lines.append(
                f"Against sac_oracle (seeds {', '.join(map(str, sorted(sac)))}): zero-shot "
                f"{_ratio_of_means(by_name['source_zero_shot'], sac, random):.2f}."
            )
        for name in (name for name, _ in rows if "_dtw_" in name):
            matched = _control_of(name)
            common = sorted(set(by_name[name]) & set(by_name.get(matched, {})))  # the same seeds on both sides
            if len(common) < 2:  # no seed spread to compare the margin with
                continue
            ours, theirs = (np.array([by_name[key][seed] for seed in common]) for key in (name, matched))
            margin, spread = float(ours.mean() - theirs.mean()), float(max(ours.std(), theirs.std()))
            against_sac = f", {_ratio_of_means(by_name[name], sac, random):.2f} of sac_oracle" if sac else ""
            lines.append(
                f"- {name}: {ratios[name]:.2f} of the oracle ({'≥' if ratios[name] >= 0.8 else '<'} 0.8){against_sac}; "
                f"minus {matched}: {margin:+.1f} vs seed spread (larger std) {spread:.1f}: "
                f"{'beats it' if margin > spread else 'does not beat it by more than the spread'}."
            )
    return lines, summary


def _source_progress(pair: str, out: Path) -> list[str]:
    """For a pair with a ``source_progress`` setting: each seed's source progress on its task, read from its reference
    episodes (source-env observations only; the target's reward is not read), and the seeds below the pair's minimum,
    whose sources did not learn the task (their transfer scores say little about transfer)."""
    progress = PAIRS.get(pair, {}).get("source_progress")
    if progress is None:
        return []
    from sb3_dreamer.alignment import TrajectoryDataset

    values = {}
    for path in sorted(out.glob("reference_*.npz")):
        obs = TrajectoryDataset.load(path).next_observations
        values[int(path.stem.split("_")[1])] = float(obs[:, progress["index"]].mean() * progress["scale"])
    if not values:
        return []
    unit = progress["unit"]
    text = ", ".join(f"seed {seed}: {value:.2f} {unit}" for seed, value in sorted(values.items()))
    lines = [f"Source {progress['name']} in its reference episodes ({progress['how']}): {text}."]
    low = sorted(seed for seed, value in values.items() if value < progress["minimum"])
    if low:
        lines.append(
            f"Below {progress['minimum']} {unit}, the source {progress['failed']}: seed{'s' if len(low) > 1 else ''} "
            f"{', '.join(map(str, low))}; its scores say little about transfer."
        )
    return lines


def _ratio_of_means(values: dict[int, float], reference: dict[int, float], random: dict[int, float]) -> float:
    """(mean value - mean random) / (mean reference - mean random) over the seeds all three have (NaN if none)."""
    seeds = sorted(set(values) & set(reference) & set(random))
    if not seeds:
        return float("nan")
    base = np.mean([random[seed] for seed in seeds])
    return float((np.mean([values[seed] for seed in seeds]) - base) / (np.mean([reference[seed] for seed in seeds]) - base))


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
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"check every stage with tiny budgets ({QUICK}, {QUICK_EPISODES} reference and evaluation episodes); needs --out",
    )
    parser.add_argument("--summarise-only", action="store_true")
    parser.add_argument("--single", nargs=2, metavar=("VARIANT", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        if args.out is None:
            parser.error("--quick needs --out (a quick run's results do not belong in benchmarks/results)")
        args.references = args.eval_episodes = QUICK_EPISODES
    out = args.out or RESULTS / args.pair
    out.mkdir(parents=True, exist_ok=True)
    checkpoint_freq = args.checkpoint_freq or pair_spec(args.pair, args.quick)["eval_freq"]
    if args.single:
        import torch as th

        th.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
        variant, seed = args.single[0], int(args.single[1])
        if variant == "source":
            run_source(args.pair, seed, out, args.references, args.eval_episodes, checkpoint_freq, args.quick)
        else:
            run_target(args.pair, variant, seed, out, args.eval_episodes, checkpoint_freq, args.quick)
        return
    if not args.summarise_only:
        # Sources first; a target job waits for its seed's source (runs that already wrote their JSON are skipped, see
        # needs_run).
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
            elif needs_run(out, variant, seed, args.variants):
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
                command += ["--quick"] if args.quick else []
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
