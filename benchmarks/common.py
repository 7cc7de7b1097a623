"""Helpers shared by the benchmark scripts: rl-zoo's tuned hyperparameters, a learning-curve callback and checkpoints.

The scripts run as ``python benchmarks/<name>.py``, which puts this folder on ``sys.path``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

#: Offset of the evaluation env's seed from the run's seed (``EvalCurve(..., seed=EVAL_SEED + seed)``), so that evaluation
#: episodes start apart from the training env's.
EVAL_SEED = 1000


def zoo_hyperparams(algo: str, env_id: str) -> tuple[dict[str, Any], int]:
    """Hyperparameters of rl_zoo3's tuned entry for ``env_id`` (constructor kwargs) and its ``n_timesteps``.

    Read from the installed rl_zoo3 package's ``hyperparams/<algo>.yml``, not copied.
    """
    import rl_zoo3
    import yaml

    path = Path(rl_zoo3.__file__).parent / "hyperparams" / f"{algo}.yml"
    entry = dict(yaml.safe_load(path.read_text())[env_id])
    n_timesteps = int(float(entry.pop("n_timesteps")))
    entry.pop("policy", None)
    if isinstance(entry.get("policy_kwargs"), str):
        entry["policy_kwargs"] = eval(entry["policy_kwargs"])  # the zoo's own convention for this key
    for key in ("learning_rate", "buffer_size", "learning_starts", "batch_size", "train_freq", "gradient_steps"):
        if isinstance(entry.get(key), str) and entry[key].startswith("lin_"):  # the zoo's linear decay, e.g. lin_7.3e-4
            from rl_zoo3.utils import linear_schedule

            entry[key] = linear_schedule(float(entry[key][len("lin_") :]))
        elif isinstance(entry.get(key), str):
            entry[key] = float(entry[key])
    return entry, n_timesteps


#: Replay start of the MinAtar paper's DQN (Young & Tian, "MinAtar: An Atari-Inspired Testbed for Thorough and
#: Reproducible Reinforcement Learning Experiments", 2019, arXiv 1903.03176, Table 1).
MINATAR_LEARNING_STARTS = 5000


class MinAtarCNN(BaseFeaturesExtractor):
    """The MinAtar paper's DQN network body: one 3x3 convolution with 16 channels (stride 1), then 128 units.

    Observations are MinAtar's (10, 10, C) boolean frames, channel last; SB3's NatureCNN cannot read a 10 x 10 image
    (its first kernel is 8 x 8 with stride 4).
    """

    def __init__(self, observation_space: gym.spaces.Box, features_dim: int = 128) -> None:
        super().__init__(observation_space, features_dim)
        height, width, channels = observation_space.shape
        self.net = th.nn.Sequential(
            th.nn.Conv2d(channels, 16, kernel_size=3, stride=1),
            th.nn.ReLU(),
            th.nn.Flatten(),
            th.nn.Linear(16 * (height - 2) * (width - 2), features_dim),
            th.nn.ReLU(),
        )

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.net(observations.float().permute(0, 3, 1, 2))


def baseline_hyperparams(algo: str, env_id: str) -> tuple[str, dict[str, Any]]:
    """Policy and constructor arguments of the rl-zoo baseline of ``env_id``.

    rl-zoo's own tuned entry where it has one. MinAtar games have none: they take rl-zoo's ``atari`` DQN entry
    (learning rate, buffer, batch, target update, train frequency, exploration schedule) without its Atari wrappers and
    frame stack, with the MinAtar paper's replay start (``MINATAR_LEARNING_STARTS``; rl-zoo's 100k exceeds a 50k budget)
    and its network (:class:`MinAtarCNN`).
    """
    if env_id.startswith("MinAtar/"):
        entry, _ = zoo_hyperparams(algo, "atari")
        for key in ("env_wrapper", "frame_stack"):
            entry.pop(key, None)
        entry["learning_starts"] = MINATAR_LEARNING_STARTS
        entry["policy_kwargs"] = dict(features_extractor_class=MinAtarCNN, normalize_images=False)
        return "MlpPolicy", entry
    entry, _ = zoo_hyperparams(algo, env_id)
    return "MlpPolicy", entry


def jsonable(value: Any) -> Any:
    """``value`` with every non-JSON leaf replaced by its ``repr``."""
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    return value if isinstance(value, int | float | str | bool | type(None)) else repr(value)


def code_commit() -> str:
    """Git commit of the checkout that ran a benchmark (``"unknown"`` outside a git checkout), stored with results so
    that runs made before and after a fix can be told apart."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True, cwd=Path(__file__).parent
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


#: Distributions whose versions go into result files (:func:`package_versions`): the same code gave different Hopper
#: sources on two machines (benchmarks/README.md), and only versions can tell such machines apart.
VERSIONED = ("torch", "numpy", "gymnasium", "stable-baselines3", "pybullet", "pybullet_envs_gymnasium", "dtaidistance")


def package_versions() -> dict[str, str]:
    """Installed versions of :data:`VERSIONED` (``"not installed"`` for a missing one) and Python's, for result files."""
    import platform
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def commit_of(checkout: Path) -> str:
    """``git describe --always --dirty`` of another checkout (A/B timings), ``"unknown"`` outside git."""
    result = subprocess.run(["git", "-C", str(checkout), "describe", "--always", "--dirty"], capture_output=True, text=True)
    return result.stdout.strip() or "unknown"


def schedule(jobs: dict[str, list[str]], done: set[str], launch: Callable[[str], int], n_jobs: int) -> list[int]:
    """Run ``launch(name)`` for every job not in ``done``, at most ``n_jobs`` at once, each after its dependencies."""
    codes, running, failed = [], {}, set()
    pending = [name for name in jobs if name not in done]
    with ThreadPoolExecutor(n_jobs) as pool:
        while pending or running:
            ready = [n for n in pending if all(d in done for d in jobs[n])]
            blocked = [n for n in pending if any(d in failed for d in jobs[n])]
            for name in blocked:
                pending.remove(name)
                failed.add(name)
                print(f"{name}: skipped, a run it depends on failed", flush=True)
            for name in ready[: n_jobs - len(running)]:
                pending.remove(name)
                running[pool.submit(launch, name)] = name
            if not running:
                break
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in finished:
                name = running.pop(future)
                code = future.result()
                codes.append(code)
                (done if code == 0 else failed).add(name)
    return codes


def job_cli(
    doc: str,
    script: str,
    result_name: str,
    jobs_of: Callable[[int], dict[str, list[str]]],
    run_one: Callable[[str, Path, Any], None],
    summarise: Callable[[Path, Any], str],
    checkpoint_freq: int | None = None,
) -> None:
    """Command line of a benchmark made of dependent jobs, one process each: ``--seeds``, ``--jobs``, ``--eval-freq``,
    ``--eval-episodes``, ``--quick``, ``--out``, ``--summarise-only`` (and ``--checkpoint-freq`` if given a default).

    Runs whose ``<out>/<name>.json`` exists are skipped; the others run as ``script --single <name>`` processes,
    ``--jobs`` at a time, each after the runs it depends on (:func:`schedule`); then the summary is printed.

    :param doc: the script's docstring (the ``--help`` text)
    :param script: the script's ``__file__``
    :param result_name: results go to ``benchmarks/results/<result_name>`` (``_quick`` appended with ``--quick``)
    :param jobs_of: run names of one seed and the runs each depends on
    :param run_one: ``run_one(name, out, args)`` runs one job in this process
    :param summarise: ``summarise(out, args)`` returns the table to print
    :param checkpoint_freq: default of ``--checkpoint-freq`` (None: the script has no such option)
    """
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2, help="parallel processes (each uses BENCH_THREADS torch threads)")
    parser.add_argument("--eval-freq", type=int, default=1000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    if checkpoint_freq is not None:
        parser.add_argument("--checkpoint-freq", type=int, default=checkpoint_freq)
    parser.add_argument("--quick", action="store_true", help="tiny budgets through every stage (a pipeline check)")
    parser.add_argument("--out", type=Path, default=None, help=f"default: benchmarks/results/{result_name}[_quick]")
    parser.add_argument("--summarise-only", action="store_true")
    parser.add_argument("--single", help=argparse.SUPPRESS)
    args = parser.parse_args()
    out = args.out or Path(script).parent / "results" / (f"{result_name}_quick" if args.quick else result_name)
    out.mkdir(parents=True, exist_ok=True)
    if args.single:
        run_one(args.single, out, args)
        return
    if not args.summarise_only:
        jobs = {name: deps for seed in args.seeds for name, deps in jobs_of(seed).items()}
        done = {name for name in jobs if (out / f"{name}.json").exists()}
        print(f"{len(jobs) - len(done)} runs to do: {[n for n in jobs if n not in done]}", flush=True)

        def launch(name: str) -> int:
            command = [sys.executable, script, "--single", name, "--out", str(out), "--eval-freq", str(args.eval_freq)]
            command += ["--eval-episodes", str(args.eval_episodes)]
            if checkpoint_freq is not None:
                command += ["--checkpoint-freq", str(args.checkpoint_freq)]
            return subprocess.call(command + (["--quick"] if args.quick else []))

        codes = schedule(jobs, done, launch, args.jobs)
        if any(codes):
            print(f"some runs failed: {codes}", file=sys.stderr)
    print(summarise(out, args))


def finals_and_aucs(runs: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """Final evaluation and area under the learning curve (the mean of the evaluations) of each run's ``curve``."""
    return [run["curve"][-1]["mean"] for run in runs], [float(np.mean([p["mean"] for p in run["curve"]])) for run in runs]


def plot_runs(ax: Any, runs: list[dict[str, Any]], color: int, label: str, **style: Any) -> None:
    """One line per run (evaluation return against env steps), labelled once."""
    for i, run in enumerate(runs):
        points = run["curve"]
        ax.plot([p["step"] for p in points], [p["mean"] for p in points], color=f"C{color}", label=label if i == 0 else None,
                **{"alpha": 0.8, "linewidth": 1, **style})  # fmt: skip
