"""Multi-source transfer (Sasso et al., TMLR 2023) against Dreamer from scratch, on a protocol a 2-core CPU runs.

Protocol (per seed, Dreamer's default settings everywhere):

1. ``multitask``: one Dreamer on ``MultiTaskVecEnv(SOURCES)`` for ``SOURCE_STEPS`` env steps (both tasks together).
   Sources differ in observation and action dimensions: Pendulum-v1 (3 observations, 1 action) and ReacherBulletEnv-v0
   (9, 2); observations are zero-padded to 9, actions to 2. Its curve is the **zero-shot** control: the multi-task
   agent on the target (padded the same way), evaluated every ``--eval-freq`` steps; at the end each source task is
   evaluated once, to tell whether the sources were learned at all.
2. ``metasource-<task>``: for meta-model transfer, one agent per source task with the multi-task encoder and decoder
   copied in and the encoder frozen, ``META_SOURCE_STEPS`` each.
3. Target ``sb3_dreamer/PendulumTarget-v0`` (mass 1.5, length 1.3; observation layout of Pendulum-v1), ``TARGET_STEPS``
   each: ``scratch`` (the control), ``fractional0.2``, ``fractional0.5``, ``modular`` (world model transferred, actor
   and critic from scratch), ``meta`` (frozen UFS encoder and decoder, the two sources' reward heads) and ``ufs``, the
   control of ``meta`` without the source reward heads (frozen UFS encoder and decoder, a plain reward head: what the
   paper's released code runs as meta-model transfer).

The target's true reward is the task reward; every method uses it (this is not reward-free transfer). Metrics per run:
final evaluation return and area under the learning curve (the mean of the evaluations), with the source env steps
each method spent. Each run is its own process (``--jobs`` at a time, one torch thread each), checkpointed every
``--checkpoint-freq`` steps and resumed when the script is run again; finished runs are skipped.

Run: ``python benchmarks/multisource.py`` (3 seeds, several hours on 2 cores); ``--quick`` runs tiny budgets through
every stage (a pipeline check, not a result).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

SOURCES = ["Pendulum-v1", "pybullet_envs_gymnasium:ReacherBulletEnv-v0"]
TARGET = "sb3_dreamer/PendulumTarget-v0"
SOURCE_STEPS, META_SOURCE_STEPS, TARGET_STEPS = 20_000, 5_000, 10_000
QUICK_STEPS = (1_500, 1_200, 1_200)
METHODS = ("scratch", "fractional0.2", "fractional0.5", "modular", "meta", "ufs")
EVAL_SEED = 1000  # the evaluation env's seed is EVAL_SEED + seed, as in benchmarks/common.py


def budgets(quick: bool) -> tuple[int, int, int]:
    """(multi-task, meta source, target) env steps."""
    return QUICK_STEPS if quick else (SOURCE_STEPS, META_SOURCE_STEPS, TARGET_STEPS)


def source_steps(method: str, quick: bool) -> int:
    """Source env steps a target method builds on."""
    multitask, meta_source, _ = budgets(quick)
    return {"scratch": 0, "meta": multitask + len(SOURCES) * meta_source}.get(method, multitask)


def short_name(task: str) -> str:
    """``Pendulum`` for ``Pendulum-v1``, ``ReacherBulletEnv`` for ``module:ReacherBulletEnv-v0`` (run names)."""
    return task.split(":")[-1].split("-v")[0]


def jobs_of(seed: int) -> dict[str, list[str]]:
    """Run names of one seed and the runs each depends on."""
    multitask = f"multitask_{seed}"
    meta_sources = [f"metasource-{short_name(task)}_{seed}" for task in SOURCES]
    jobs = {multitask: [], **{name: [multitask] for name in meta_sources}}
    for method in METHODS:
        jobs[f"target-{method}_{seed}"] = (
            [] if method == "scratch" else [multitask] + (meta_sources if method == "meta" else [])
        )
    return jobs


def run_one(name: str, out: Path, eval_freq: int, eval_episodes: int, checkpoint_freq: int, quick: bool) -> None:
    """Train one run of :func:`jobs_of` (resuming its checkpoint) and write ``out / <name>.json``."""
    import gymnasium as gym
    import torch as th
    from common import code_commit
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor

    from sb3_dreamer import Dreamer
    from sb3_dreamer.common import EvalCurve, ResumableRun
    from sb3_dreamer.transfer import MultiTaskVecEnv, TaskSet, fractional_transfer, modular_transfer
    from sb3_dreamer.transfer.meta_model import meta_model_policy_kwargs, meta_model_transfer

    th.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    kind, seed = name.rsplit("_", 1)[0], int(name.rsplit("_", 1)[1])
    multitask_steps, meta_source_steps, target_steps = budgets(quick)
    final = out / "final"
    final.mkdir(parents=True, exist_ok=True)
    padded = TaskSet([*SOURCES, TARGET])  # the target in the multi-task agent's padded spaces (zero-shot)
    policy_kwargs: dict = {}
    if kind == "multitask":
        steps, eval_env = multitask_steps, padded.make(len(SOURCES))
        make_env = lambda: MultiTaskVecEnv(SOURCES, seed=seed)  # noqa: E731
    elif kind.startswith("metasource-"):
        task = next(t for t in SOURCES if short_name(t) == kind.split("-", 1)[1])
        steps, eval_env, make_env = meta_source_steps, Monitor(gym.make(task)), lambda: Monitor(gym.make(task))
        policy_kwargs = dict(frozen_modules=("encoder",))
    else:
        method = kind.split("-", 1)[1]
        steps, eval_env, make_env = target_steps, Monitor(gym.make(TARGET)), lambda: Monitor(gym.make(TARGET))
        policy_kwargs = {"meta": meta_model_policy_kwargs(len(SOURCES)), "ufs": meta_model_policy_kwargs(0)}.get(method, {})
    evaluate = EvalCurve(eval_env, eval_freq, eval_episodes, name, seed=EVAL_SEED + seed)
    checkpoint = ResumableRun(out / "checkpoints" / name, checkpoint_freq, evaluate)
    model = checkpoint.restore(lambda path: Dreamer.load(path, env=make_env(), seed=seed))
    resumed = model is not None
    if model is None:
        model = Dreamer("MlpPolicy", make_env(), seed=seed, verbose=0, policy_kwargs=policy_kwargs or None)
        source = final / f"multitask_{seed}.zip"
        if kind.startswith("metasource-") or kind == "target-ufs":
            modular_transfer(source, model, copy_modules=["encoder", "decoder"])
        elif kind.startswith("target-fractional"):
            fractional_transfer(source, model, fraction=float(kind.removeprefix("target-fractional")))
        elif kind == "target-modular":
            modular_transfer(source, model, reinit=["actor", "critic"])
        elif kind == "target-meta":
            meta_sources = [final / f"{job}.zip" for job in jobs_of(seed)[name] if job.startswith("metasource-")]
            meta_model_transfer(source, meta_sources, model)
    model.learn(steps - model.num_timesteps, callback=[evaluate, checkpoint], reset_num_timesteps=not resumed)
    result = dict(name=name, seed=seed, steps=steps, curve=evaluate.curve, seconds=time.perf_counter() - evaluate.start)
    if kind == "multitask":  # did the multi-task agent learn its sources? (one evaluation per task)
        task_set = TaskSet(SOURCES)
        result["sources_final"] = {
            task: float(evaluate_policy(model, task_set.make(index), n_eval_episodes=eval_episodes)[0])
            for index, task in enumerate(task_set.names)
        }
    result.update(commit=code_commit(), resumed=resumed, quick=quick)
    model.save(final / f"{name}.zip")
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))
    checkpoint.remove()


def summarise(out: Path, quick: bool) -> str:
    """Table (markdown) and PNG of the target runs next to the zero-shot control."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from common import finals_and_aucs, plot_runs

    runs = {path.stem: json.loads(path.read_text()) for path in sorted(out.glob("*_*.json"))}
    lines = [
        "| method | seeds | source env steps | final return per seed | final mean ± std | AUC per seed | AUC mean |",
        "|---|---|---|---|---|---|---|",
    ]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for color, method in enumerate(("zero-shot", *METHODS)):
        prefix = "multitask_" if method == "zero-shot" else f"target-{method}_"
        group = sorted((run for key, run in runs.items() if key.startswith(prefix)), key=lambda run: run["seed"])
        if not group:
            continue
        finals, aucs = finals_and_aucs(group)
        steps = budgets(quick)[0] if method == "zero-shot" else source_steps(method, quick)
        lines.append(
            f"| {method} | {len(group)} | {steps} | {', '.join(f'{f:.0f}' for f in finals)} | {np.mean(finals):.0f} ± "
            f"{np.std(finals):.0f} | {', '.join(f'{a:.0f}' for a in aucs)} | {np.mean(aucs):.0f} |"
        )
        plot_runs(ax, group, color, method)
    sources = [f"seed {run['seed']}: {run['sources_final']}" for key, run in runs.items() if key.startswith("multitask_")]
    ax.set_title(f"{TARGET} (one line per seed; zero-shot: x = multi-task training steps)", fontsize=9)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("deterministic eval return")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "multisource.png", dpi=110)
    table = "\n".join(lines) + "\n\nMulti-task agent on its sources at the end (mean return):\n" + "\n".join(sources)
    (out / "multisource.md").write_text(table + "\n")
    return table


def main() -> None:
    from common import job_cli

    job_cli(__doc__, __file__, "multisource", jobs_of,
            lambda name, out, a: run_one(name, out, a.eval_freq, a.eval_episodes, a.checkpoint_freq, a.quick),
            lambda out, args: summarise(out, args.quick), checkpoint_freq=2000)  # fmt: skip


if __name__ == "__main__":
    main()
