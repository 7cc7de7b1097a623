"""A/B timing of the DTW reward wrapper's three hot spots: this checkout against another one, in the same process.

The three costs of ``DTWRewardWrapper`` (see ``alignment_overhead.py``): the reward model's one-observation ``predict``
(every env step), the episode-end ``align`` of a 900-step episode to 10 references of 1000 steps (15 dims, window 100,
``coarse_stride`` 4) and one refit (``RewardModel.fit``, 50 Adam steps, batch 256) on label stores of 7,000 and
100,000 steps. Both versions' modules are loaded side by side from their source files and timed alternately (A, B, A,
B, ...), so that load from other processes affects both alike; the script also checks that both give the same paths
and (to float32 rounding) the same predictions.

Run: ``git worktree add /tmp/baseline <commit> && python benchmarks/alignment_speed_ab.py --baseline /tmp/baseline``
(writes ``benchmarks/results/alignment_speed_ab.json``).
"""

import argparse
import importlib.util
import json
import os
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch as th
from common import commit_of  # benchmarks/ is the script's folder

HERE = Path(__file__).resolve().parent.parent


def load_module(checkout: Path, name: str) -> ModuleType:
    """Import ``sb3_dreamer/alignment/<name>.py`` of ``checkout`` under a private module name."""
    path = checkout / "sb3_dreamer" / "alignment" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"ab_{checkout.name}_{name}", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"no module {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def alternate(functions: dict[str, Any], repeats: int) -> dict[str, float]:
    """Median seconds of each function, called in turn ``repeats`` times."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(values)) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, help="checkout of the version to compare against")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--output", type=Path, default=HERE / "benchmarks" / "results" / "alignment_speed_ab.json")
    args = parser.parse_args()
    th.set_num_threads(1)
    checkouts = {"baseline": args.baseline.resolve(), "this": HERE}
    models = {name: load_module(path, "reward_model") for name, path in checkouts.items()}
    dtws = {name: load_module(path, "dtw") for name, path in checkouts.items()}
    rng = np.random.default_rng(0)
    result: dict[str, Any] = {"commits": {name: commit_of(path) for name, path in checkouts.items()}}

    # predict, one observation (Hopper has 15 dims).
    obs = rng.normal(size=(5000, 15)).astype(np.float32)
    labels = np.sin(obs[:, 0]) + obs[:, 1] ** 2
    fitted = {}
    for name, module in models.items():
        model = module.RewardModel(15, (64, 64), seed=0)
        model.update_statistics(obs)
        model.fit(obs, labels, max_steps=100)
        fitted[name] = model
    singles = {name: np.array([model.predict(row) for row in obs[:500]]) for name, model in fitted.items()}
    result["predict_max_abs_difference"] = float(np.abs(singles["baseline"] - singles["this"]).max())
    n_calls = 2000
    medians = alternate(
        {name: (lambda model=model: [model.predict(row) for row in obs[:n_calls]]) for name, model in fitted.items()},
        args.repeats,
    )
    result["predict_us"] = {name: 1e6 * value / n_calls for name, value in medians.items()}

    # align: 900-step episode, 10 references of 1000 steps.
    references = [np.cumsum(rng.normal(size=(1000, 15)), axis=0) * 0.1 for _ in range(10)]
    target = references[3][:900] + rng.normal(size=(900, 15)) * 0.2
    paths = {name: module.align(target, references, window=100, coarse_stride=4).path for name, module in dtws.items()}
    result["align_same_path"] = bool(np.array_equal(paths["baseline"], paths["this"]))
    medians = alternate(
        {name: (lambda m=module: m.align(target, references, window=100, coarse_stride=4)) for name, module in dtws.items()},
        args.repeats,
    )
    result["align_ms"] = {name: 1e3 * value for name, value in medians.items()}

    # refit: 50 steps on stores of 7k and 100k labelled steps.
    for size in (7_000, 100_000):
        store = rng.normal(size=(size, 15)).astype(np.float32)
        store_labels = np.sin(store[:, 0]) + store[:, 1] ** 2
        refit_models = {}
        for name, module in models.items():
            model = module.RewardModel(15, (64, 64), seed=0)
            model.update_statistics(store[:1000])
            refit_models[name] = model
        medians = alternate(
            {name: (lambda m=model, x=store, y=store_labels: m.fit(x, y, None, 50)) for name, model in refit_models.items()},
            args.repeats,
        )
        result[f"refit_ms_store_{size}"] = {name: 1e3 * value for name, value in medians.items()}

    rows = [("predict, one obs (us)", "predict_us"), ("align, 900 x 10 refs (ms)", "align_ms")]
    rows += [(f"refit 50 steps, store {size} (ms)", f"refit_ms_store_{size}") for size in (7_000, 100_000)]
    print(f"baseline {result['commits']['baseline']} vs this {result['commits']['this']} (median of {args.repeats})")
    for label, key in rows:
        base, this = result[key]["baseline"], result[key]["this"]
        result[key]["ratio"] = base / this
        print(f"{label:<34} baseline {base:9.2f}   this {this:9.2f}   speed-up {base / this:5.2f}x")
    difference = result["predict_max_abs_difference"]
    print(f"same alignment path: {result['align_same_path']}; max |predict difference|: {difference:.2e}")
    result["load"] = os.getloadavg()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
