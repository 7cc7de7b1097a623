"""Update speed of Dreamer on this CPU, and that speed as a fraction of the FLOP-bound limit.

In one run: (1) measure the machine's dense fp32 matmul rate on the GEMM shapes an update uses; (2) count the FLOPs
of one Dreamer update with ``torch.utils.flop_counter`` (matrix products, forward and backward); (3) time updates.
The bound is ``matmul rate / FLOPs per update``; the fraction is measured updates/s over that bound.

Run: ``python benchmarks/speed.py`` (writes ``benchmarks/results/speed.json``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch as th
from stable_baselines3.common.logger import configure
from torch.utils.flop_counter import FlopCounterMode

from sb3_dreamer import Dreamer


def matmul_rate(shapes: list[tuple[int, int, int]], seconds: float = 1.0) -> dict[str, float]:
    """GFLOP/s of ``(m x k) @ (k x n)`` for each shape, best of repeated timings."""
    rates = {}
    for m, k, n in shapes:
        a, b = th.randn(m, k), th.randn(k, n)
        for _ in range(3):
            a @ b
        best, start = float("inf"), time.perf_counter()
        while time.perf_counter() - start < seconds:
            tick = time.perf_counter()
            for _ in range(10):
                a @ b
            best = min(best, (time.perf_counter() - tick) / 10)
        rates[f"{m}x{k}x{n}"] = 2 * m * k * n / best / 1e9
    return rates


def make_model(env_id: str, hyperparams: dict[str, Any]) -> Dreamer:
    """A model with a filled buffer, ready to run updates."""
    model = Dreamer("MlpPolicy", env_id, seed=0, learning_starts=10**9, **hyperparams)
    model.learn(1000)
    model.learning_starts = 0
    model.set_logger(configure(None, []))
    return model


def measure(env_id: str, hyperparams: dict[str, Any], updates: int, gemm_gflops: float) -> dict[str, Any]:
    """FLOPs per update, updates/s and the fraction of the FLOP bound for one configuration."""
    model = make_model(env_id, hyperparams)
    model.train(2, model.batch_size)  # warm-up
    with FlopCounterMode(display=False) as counter:
        model.train(1, model.batch_size)
    flops = counter.get_total_flops()
    start = time.perf_counter()
    model.train(updates, model.batch_size)
    seconds = (time.perf_counter() - start) / updates
    bound = gemm_gflops * 1e9 / flops
    return dict(
        env=env_id,
        hyperparams=hyperparams,
        gflop_per_update=flops / 1e9,
        updates_per_second=1.0 / seconds,
        flop_bound_updates_per_second=bound,
        fraction_of_bound=(1.0 / seconds) / bound,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--updates", type=int, default=30)
    parser.add_argument("--threads", type=int, default=th.get_num_threads())
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "speed.json")
    args = parser.parse_args()
    th.set_num_threads(args.threads)
    rates = matmul_rate([(1024, 256, 256), (4096, 256, 256), (512, 128, 384), (16384, 256, 256)])
    gemm = max(rates.values())
    default = dict(batch_size=16, batch_length=32, imagination_starts=256, train_freq=2)
    configs = [
        ("Pendulum-v1", default),
        ("CartPole-v1", default),
        ("Pendulum-v1", dict(batch_size=16, batch_length=64)),  # DreamerV3's 16 x 64 batch, imagination from all starts
    ]
    results = [measure(env_id, hyperparams, args.updates, gemm) for env_id, hyperparams in configs]
    report = dict(threads=args.threads, matmul_gflops=rates, gemm_ceiling_gflops=gemm, results=results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"matmul GFLOP/s ({args.threads} threads): " + ", ".join(f"{k}: {v:.0f}" for k, v in rates.items()))
    print("| env | settings | GFLOP / update | updates/s | FLOP-bound updates/s | fraction of bound |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['env']} | {r['hyperparams']} | {r['gflop_per_update']:.2f} | {r['updates_per_second']:.2f} | "
            f"{r['flop_bound_updates_per_second']:.1f} | {100 * r['fraction_of_bound']:.0f} % |"
        )


if __name__ == "__main__":
    main()
