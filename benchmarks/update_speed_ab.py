"""A/B timing of Dreamer's update: this checkout against another one, in turns, on the same machine and in one run.

One worker process per checkout (one torch thread each unless ``--threads`` says otherwise; ``sb3_dreamer`` imported
from that checkout's files) builds the same model on the same seed with a filled replay buffer, then waits; the main
process tells the workers in turn (A, B, A, B, ...) to run a few updates and report the seconds, so that load from
other processes affects both alike and only one of them computes at a time. Reported: the median seconds per update
of each and their ratio, by median and by minimum.

Run: ``git worktree add /tmp/baseline <commit> && python benchmarks/update_speed_ab.py --baseline /tmp/baseline``
(``--config`` picks a row of ``speed.py``'s ``CONFIGS``, ``--kwargs`` adds Dreamer arguments to both,
``--baseline-kwargs`` gives the baseline other ones; writes ``benchmarks/results/update_speed_ab_<config>.json``).
A knob of one checkout against its default: ``--baseline . --kwargs '{"mixed_precision": true}' --baseline-kwargs '{}'``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from common import commit_of  # benchmarks/ is the script's folder

HERE = Path(__file__).resolve().parent

WORKER = """
import importlib.util, json, sys, time
import torch as th
th.set_num_threads({threads})
sys.path.insert(0, {benchmarks!r})
# Import the package from the checkout's files (an editable install's finder would otherwise win over sys.path).
package = {checkout!r} + "/sb3_dreamer"
spec = importlib.util.spec_from_file_location("sb3_dreamer", package + "/__init__.py", submodule_search_locations=[package])
sb3_dreamer = importlib.util.module_from_spec(spec)
sys.modules["sb3_dreamer"] = sb3_dreamer
spec.loader.exec_module(sb3_dreamer)
assert sb3_dreamer.__file__.startswith({checkout!r}), ("imported the wrong checkout", sb3_dreamer.__file__)
from speed import CONFIGS, make_model
env_id, hyperparams = CONFIGS[{config!r}]
model = make_model(env_id, {{**hyperparams, **json.loads({kwargs!r})}})
model.train(2, model.batch_size)
print("ready", flush=True)
for line in sys.stdin:
    start = time.perf_counter()
    model.train(int(line), model.batch_size)
    print(time.perf_counter() - start, flush=True)
"""


def start_worker(checkout: Path, config: str, kwargs: str, threads: int) -> subprocess.Popen:
    """A worker that imports ``sb3_dreamer`` from ``checkout`` and times updates on request."""
    code = WORKER.format(benchmarks=str(HERE), checkout=str(checkout), config=config, kwargs=kwargs, threads=threads)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    worker = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert worker.stdout is not None
    line = worker.stdout.readline()
    if line.strip() != "ready":
        raise RuntimeError(f"worker for {checkout} failed to start (see its error above)")
    return worker


def timed(worker: subprocess.Popen, updates: int) -> float:
    """Seconds per update of ``updates`` updates run by ``worker``."""
    assert worker.stdin is not None and worker.stdout is not None
    worker.stdin.write(f"{updates}\n")
    worker.stdin.flush()
    return float(worker.stdout.readline()) / updates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, help="checkout of the version to compare against")
    parser.add_argument("--config", default="xs-pendulum", help="a row of speed.py's CONFIGS")
    parser.add_argument("--kwargs", default="{}", help="Dreamer arguments for both, JSON")
    parser.add_argument("--baseline-kwargs", default=None, help="Dreamer arguments for the baseline (default: --kwargs)")
    parser.add_argument("--out", type=Path, default=None, help="JSON report (default: results/update_speed_ab_<config>.json)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of this checkout's worker")
    parser.add_argument("--baseline-threads", type=int, default=None, help="the baseline's (default: --threads)")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--updates", type=int, default=5, help="updates per turn")
    args = parser.parse_args()
    checkouts = {"this": HERE.parent, "baseline": args.baseline.resolve()}
    kwargs = {"this": args.kwargs, "baseline": args.kwargs if args.baseline_kwargs is None else args.baseline_kwargs}
    threads = {"this": args.threads, "baseline": args.baseline_threads or args.threads}
    workers = {name: start_worker(path, args.config, kwargs[name], threads[name]) for name, path in checkouts.items()}
    times: dict[str, list[float]] = {name: [] for name in workers}
    for _ in range(args.rounds):
        for name, worker in workers.items():
            times[name].append(timed(worker, args.updates))
    for worker in workers.values():
        worker.communicate("")
    median = {name: float(np.median(values)) for name, values in times.items()}
    report = dict(
        config=args.config,
        kwargs={name: json.loads(value) for name, value in kwargs.items()},
        threads=threads,
        commits={name: commit_of(path) for name, path in checkouts.items()},
        seconds_per_update=times,
        median_seconds=median,
        speedup_median=median["baseline"] / median["this"],
        speedup_min=min(times["baseline"]) / min(times["this"]),
    )
    out = args.out or HERE / "results" / f"update_speed_ab_{args.config}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(
        f"{args.config}: this {median['this']:.3f} s/update ({report['commits']['this']}, {kwargs['this']}), baseline "
        f"{median['baseline']:.3f} ({report['commits']['baseline']}, {kwargs['baseline']}): "
        f"{report['speedup_median']:.2f}x by median, "
        f"{report['speedup_min']:.2f}x by minimum"
    )


if __name__ == "__main__":
    main()
