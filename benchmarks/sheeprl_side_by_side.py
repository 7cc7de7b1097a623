"""Seconds per update of sheeprl's DreamerV3 (``XS``) and of ``sb3_dreamer.Dreamer`` at the same size, side by side.

Both on CartPole-v1 with vector observations, DreamerV3's batch of 16 sequences x 64 steps, imagination of 15 steps
from every posterior state of the batch, one torch thread. The rounds alternate (sheeprl, ours, sheeprl, ours, ...),
each in its own process and never two at once, so that a change of load on the machine affects both sides alike; the
result is the ratio of the two speeds in one run, not two numbers measured on different days.

- sheeprl: its own training loop, run through its own command line (``sheeprl exp=dreamer_v3 algo=dreamer_v3_XS
  env=gym env.id=CartPole-v1 ...``, replay ratio 1: one update per environment step after 1024 random steps), by
  a small runner executed with the python of a virtualenv of its own (``benchmarks/.venv-sheeprl``, created on the
  first run: sheeprl is no dependency of this package). Without changing sheeprl's code, the runner wraps three names
  of ``sheeprl.algos.dreamer_v3.dreamer_v3`` before calling the command line: ``training_timer`` (the block sheeprl
  itself times as ``Time/train_time``: the sampling of the batch from the replay buffer, the EMA of the target critic
  and ``train``), ``train`` (world model, imagination, actor and critic losses and optimizer steps) and
  ``sample_batches`` (the sampling alone). One timed block is one update: the seconds per update of sheeprl are these
  blocks. The environment steps and the player's forward passes between updates are outside them.
- ours: ``model.train(1, 16)`` timed call by call on a buffer filled with 1000 random steps (``speed.make_model``);
  it samples the batch and runs the world model, imagination, actor, critic and slow-critic updates, so it covers the
  same work as sheeprl's timed block.

The first ``--warmup`` updates of a round are dropped; the median of the others is the round's seconds per update.
Peak RSS is the child process's ``ru_maxrss`` from ``os.wait4`` (the whole process: imports, environment, model,
buffer and updates).

Run: ``OMP_NUM_THREADS=1 python benchmarks/sheeprl_side_by_side.py`` (writes
``benchmarks/results/sheeprl_side_by_side.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
SHEEPRL_VERSION = "0.8.4"
TORCH_VERSION = "2.13.0"  # the CPU build on this machine's disk; pip's default torch is a multi-GB CUDA build
DEFAULT_VENV = HERE / ".venv-sheeprl"
LEARNING_STARTS = 1024  # sheeprl's default; ours fills its buffer with 1000 random steps (speed.make_model)

#: Our side: sheeprl's XS architecture (``algo/dreamer_v3_XS.yaml``: recurrent state 256, 32 x 32 stochastic state,
#: dense units 256, one hidden layer per MLP), batch 16 x 64, horizon 15, all starts; the row of ``speed.py``.
SPEED_CONFIG = "sheeprl-xs-arch-cartpole"

#: Executed by the python of sheeprl's virtualenv: ``runner.py OUT_JSON HYDRA_OVERRIDES...``.
SHEEPRL_RUNNER = '''
import importlib.metadata
import json
import resource
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

torch.set_num_threads(1)

import sheeprl  # noqa: F401  (registers the algorithms)
from sheeprl.algos.dreamer_v3 import dreamer_v3 as algo
from sheeprl.cli import run

record = {"train_seconds": [], "block_seconds": [], "block_updates": [], "sample_seconds": [], "torch_threads": None}
record["parameters"] = None
original_train, original_timer, original_sample = algo.train, algo.training_timer, algo.sample_batches


def timed_train(*args, **kwargs):
    """sheeprl's ``train``: world model, imagination, actor and critic, timed call by call."""
    if record["torch_threads"] is None:
        record["torch_threads"] = torch.get_num_threads()
        world_model, actor, critic = args[1:4]
        record["parameters"] = {
            name: sum(p.numel() for p in module.parameters())
            for name, module in (("world_model", world_model), ("actor", actor), ("critic", critic))
        }
    start = time.perf_counter()
    result = original_train(*args, **kwargs)
    record["train_seconds"].append(time.perf_counter() - start)
    return result


@contextmanager
def timed_block(device):
    """sheeprl's ``Time/train_time`` block: sampling, target-critic EMA and the ``train`` calls of one iteration."""
    updates, start = len(record["train_seconds"]), time.perf_counter()
    with original_timer(device):
        yield
    record["block_seconds"].append(time.perf_counter() - start)
    record["block_updates"].append(len(record["train_seconds"]) - updates)


def timed_sample(*args, **kwargs):
    """sheeprl's batches, with the time each one takes to be sampled."""
    batches = original_sample(*args, **kwargs)
    while True:
        start = time.perf_counter()
        try:
            batch = next(batches)
        except StopIteration:
            return
        record["sample_seconds"].append(time.perf_counter() - start)
        yield batch


algo.train, algo.training_timer, algo.sample_batches = timed_train, timed_block, timed_sample
out = sys.argv[1]
sys.argv = ["sheeprl", *sys.argv[2:]]
try:
    run()
except SystemExit as error:
    if error.code not in (None, 0):
        raise

sps_train = None
try:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for events in Path(".").rglob("events.out.tfevents*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        if "Time/sps_train" in accumulator.Tags()["scalars"]:
            sps_train = [event.value for event in accumulator.Scalars("Time/sps_train")]
except Exception as error:  # the cross-check is optional
    sps_train = repr(error)
record.update(
    logged_sps_train=sps_train,
    float32_matmul_precision=torch.get_float32_matmul_precision(),
    versions={name: importlib.metadata.version(name) for name in ("sheeprl", "torch", "lightning", "gymnasium", "numpy")},
    self_maxrss_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
)
Path(out).write_text(json.dumps(record))
'''


def sheeprl_overrides(updates: int) -> list[str]:
    """sheeprl's command line for ``updates`` updates: XS on CartPole-v1, vector observations, batch 16 x 64, CPU."""
    return [
        "exp=dreamer_v3",
        "algo=dreamer_v3_XS",
        "env=gym",
        "env.id=CartPole-v1",
        "env.num_envs=1",
        "env.sync_env=True",  # no environment worker process: one process, one core
        "env.capture_video=False",
        "fabric.accelerator=cpu",
        "fabric.devices=1",
        "num_threads=1",
        "seed=0",
        "algo.cnn_keys.encoder=[]",
        "algo.cnn_keys.decoder=[]",
        "algo.mlp_keys.encoder=[vector]",
        "algo.mlp_keys.decoder=[vector]",
        "algo.per_rank_batch_size=16",
        "algo.per_rank_sequence_length=64",
        "algo.horizon=15",
        f"algo.learning_starts={LEARNING_STARTS}",
        "algo.replay_ratio=1",
        # Training starts at the iteration of step `learning_starts` with one update, then one per step.
        f"algo.total_steps={LEARNING_STARTS + updates - 1}",
        "algo.run_test=False",
        "buffer.size=1000000",
        "buffer.memmap=False",  # in memory, as ours
        "buffer.checkpoint=False",
        "checkpoint.every=0",
        "checkpoint.save_last=False",
        "metric.log_level=1",
        "metric.log_every=1000000",  # one log, at the last iteration: Time/sps_train over the whole run
        "model_manager.disabled=True",
    ]


def ensure_sheeprl_venv(venv: Path) -> Path:
    """The python of sheeprl's own virtualenv, created and filled on first use (torch's CPU build first)."""
    python = venv / "bin" / "python"
    if python.exists() and subprocess.run([python, "-c", "import sheeprl"], capture_output=True).returncode == 0:
        return python
    subprocess.run(["python3", "-m", "venv", venv], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    # torch first, pinned: sheeprl's bare `torch>=2.6` then finds it satisfied and pulls no CUDA build.
    subprocess.run([*pip, f"torch=={TORCH_VERSION}"], check=True)
    subprocess.run([*pip, f"sheeprl=={SHEEPRL_VERSION}", f"torch=={TORCH_VERSION}"], check=True)
    return python


def child_env() -> dict[str, str]:
    """The environment of a round: one OpenMP thread, whatever the caller has."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run_child(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> dict[str, Any]:
    """Run ``command`` to its end: its wall and CPU seconds, its peak RSS (MB) from ``os.wait4``, and the machine's
    1-minute load average before and after (about 1 while the round runs alone, 2 while another job uses the second
    core)."""
    load_before, start = os.getloadavg()[0], time.perf_counter()
    with log.open("w") as output:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed ({process.returncode}), last output:\n" + log.read_text()[-3000:])
    return dict(
        wall_seconds=time.perf_counter() - start,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        peak_rss_mb=usage.ru_maxrss / 1024,  # KiB on Linux
        loadavg_1min_before=load_before,
        loadavg_1min_after=os.getloadavg()[0],
    )


def sheeprl_round(python: Path, warmup: int, updates: int, workdir: Path) -> dict[str, Any]:
    """One sheeprl round in its own process, in a scratch directory (its logs and hydra outputs go there)."""
    runner, out = workdir / "runner.py", workdir / "sheeprl_round.json"
    runner.write_text(SHEEPRL_RUNNER)
    env = {**child_env(), "TORCHINDUCTOR_CACHE_DIR": str(workdir / "inductor")}
    command = [str(python), str(runner), str(out), *sheeprl_overrides(warmup + updates)]
    child = run_child(command, workdir, env, workdir / "sheeprl.log")
    record = json.loads(out.read_text())
    per_block = [s / n for s, n in zip(record["block_seconds"], record["block_updates"], strict=True) if n > 0]
    if len(per_block) < warmup + updates:
        raise RuntimeError(f"sheeprl ran {len(per_block)} updates, expected {warmup + updates}")
    return dict(
        side="sheeprl",
        warmup_seconds=per_block[:warmup],
        seconds_per_update=per_block[warmup:],
        train_call_seconds=record["train_seconds"][warmup:],
        sample_seconds=record["sample_seconds"][warmup:],
        block_updates=record["block_updates"],
        logged_sps_train_all_updates=record["logged_sps_train"],
        torch_threads=record["torch_threads"],
        parameters=record["parameters"],
        float32_matmul_precision=record["float32_matmul_precision"],
        versions=record["versions"],
        self_maxrss_mb=record["self_maxrss_kib"] / 1024,
        **child,
        command="sheeprl " + " ".join(sheeprl_overrides(warmup + updates)),
    )


def ours_round(warmup: int, updates: int, workdir: Path) -> dict[str, Any]:
    """One round of ours in its own process (this script with ``--child``)."""
    out = workdir / "ours_round.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--child", str(out), "--warmup", str(warmup)]
    command += ["--updates", str(updates)]
    child = run_child(command, HERE.parent, child_env(), workdir / "ours.log")
    record = json.loads(out.read_text())
    return dict(side="ours", **record, **child)


def ours_child(out: Path, warmup: int, updates: int) -> None:
    """Body of an ours round: time ``model.train(1, 16)`` call by call, then the replay sampling alone."""
    import importlib.metadata

    import torch as th

    th.set_num_threads(1)
    from speed import CONFIGS, make_model

    env_id, hyperparams = CONFIGS[SPEED_CONFIG]
    model = make_model(env_id, hyperparams)
    seconds = []
    for _ in range(warmup + updates):
        start = time.perf_counter()
        model.train(1, model.batch_size)
        seconds.append(time.perf_counter() - start)
    samples = []
    for _ in range(updates):
        start = time.perf_counter()
        model.replay_buffer.sample(model.batch_size, model.batch_length)
        samples.append(time.perf_counter() - start)
    commit = subprocess.run(["git", "-C", str(HERE), "describe", "--always", "--dirty"], capture_output=True, text=True)
    record = dict(
        warmup_seconds=seconds[:warmup],
        seconds_per_update=seconds[warmup:],
        sample_seconds=samples,
        torch_threads=th.get_num_threads(),
        parameters=dict(
            world_model=sum(p.numel() for p in model.policy.world_model_parameters()),
            actor=sum(p.numel() for p in model.policy.actor.parameters()),
            critic=sum(p.numel() for p in model.policy.critic.parameters()),
        ),
        float32_matmul_precision=th.get_float32_matmul_precision(),
        versions={
            name: importlib.metadata.version(name) for name in ("sb3-dreamer", "torch", "stable_baselines3", "gymnasium")
        },
        commit=commit.stdout.strip(),
        hyperparams=hyperparams,
        self_maxrss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )
    out.write_text(json.dumps(record))


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Median seconds per update of each side over all its timed updates, the ratio, and the ratio round by round."""
    summary: dict[str, Any] = {}
    for side in ("sheeprl", "ours"):
        times = [t for r in rounds if r["side"] == side for t in r["seconds_per_update"]]
        median = float(np.median(times))
        summary[side] = dict(
            timed_updates=len(times),
            median_seconds_per_update=median,
            updates_per_second=1.0 / median,
            median_sample_seconds=float(np.median([t for r in rounds if r["side"] == side for t in r["sample_seconds"]])),
            peak_rss_mb=max(r["peak_rss_mb"] for r in rounds if r["side"] == side),
        )
    summary["ratio_ours_over_sheeprl"] = summary["ours"]["updates_per_second"] / summary["sheeprl"]["updates_per_second"]
    pairs = zip([r for r in rounds if r["side"] == "sheeprl"], [r for r in rounds if r["side"] == "ours"], strict=True)
    summary["ratio_by_round"] = [s["median_seconds_per_update"] / o["median_seconds_per_update"] for s, o in pairs]
    return summary


def table(rounds: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    """The markdown table: one row per round, one per side over all rounds, and the ratio."""
    lines = [
        "| side | round | timed updates | median s / update | updates/s | median sampling s | peak RSS (MB) | load avg |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rounds:
        lines.append(
            f"| {r['side']} | {r['round']} | {len(r['seconds_per_update'])} | {r['median_seconds_per_update']:.3f} | "
            f"{1 / r['median_seconds_per_update']:.3f} | {np.median(r['sample_seconds']):.4f} | {r['peak_rss_mb']:.0f} | "
            f"{r['loadavg_1min_before']:.2f} -> {r['loadavg_1min_after']:.2f} |"
        )
    for side in ("sheeprl", "ours"):
        s = summary[side]
        lines.append(
            f"| **{side}** | all | {s['timed_updates']} | {s['median_seconds_per_update']:.3f} | "
            f"{s['updates_per_second']:.3f} | {s['median_sample_seconds']:.4f} | {s['peak_rss_mb']:.0f} | |"
        )
    by_round = ", ".join(f"{x:.2f}" for x in summary["ratio_by_round"])
    lines.append("")
    lines.append(
        f"Ratio ours / sheeprl (updates/s): **{summary['ratio_ours_over_sheeprl']:.2f}** (round by round: {by_round})"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="rounds per side, alternated")
    parser.add_argument("--updates", type=int, default=20, help="timed updates per round")
    parser.add_argument("--warmup", type=int, default=3, help="updates dropped at the start of each round")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="sheeprl's virtualenv (created if missing)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "sheeprl_side_by_side.json")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # internal: run one round of ours
    args = parser.parse_args()
    if args.child is not None:
        ours_child(args.child, args.warmup, args.updates)
        return
    python = ensure_sheeprl_venv(args.venv.resolve())
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sheeprl_side_by_side_") as scratch:
        for index in range(args.rounds):
            for side in ("sheeprl", "ours"):
                workdir = Path(scratch) / f"{side}_{index}"
                workdir.mkdir()
                if side == "sheeprl":
                    result = sheeprl_round(python, args.warmup, args.updates, workdir)
                else:
                    result = ours_round(args.warmup, args.updates, workdir)
                result.update(round=index, median_seconds_per_update=float(np.median(result["seconds_per_update"])))
                rounds.append(result)
                print(
                    f"round {index} {side}: {result['median_seconds_per_update']:.3f} s/update, "
                    f"peak RSS {result['peak_rss_mb']:.0f} MB, {result['wall_seconds']:.0f} s wall, "
                    f"load {result['loadavg_1min_before']:.2f} -> {result['loadavg_1min_after']:.2f}",
                    flush=True,
                )
    summary = summarize(rounds)
    report = dict(
        machine=dict(platform=platform.platform(), processor=_cpu_model(), cores=os.cpu_count()),
        settings=dict(rounds=args.rounds, updates=args.updates, warmup=args.warmup, omp_num_threads=1, torch_threads=1),
        sheeprl_install=[
            f"python3 -m venv {args.venv}",
            f"{args.venv}/bin/python -m pip install torch=={TORCH_VERSION}",
            f"{args.venv}/bin/python -m pip install sheeprl=={SHEEPRL_VERSION} torch=={TORCH_VERSION}",
        ],
        summary=summary,
        rounds=rounds,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(table(rounds, summary))


def _cpu_model() -> str:
    """The processor's model name, from /proc/cpuinfo."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
