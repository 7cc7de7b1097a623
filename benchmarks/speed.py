"""Update speed of Dreamer on this CPU, where the time goes, and that speed as a fraction of the FLOP-bound limit.

In one run: (1) measure the machine's dense fp32 matmul rate on the GEMM shapes an update uses; (2) count the FLOPs
of one Dreamer update with ``torch.utils.flop_counter`` (matrix products, forward and backward); (3) time updates,
split into the phases that ``Dreamer.train`` logs (``train/time_<phase>``: replay sampling, world model, imagination,
loss forwards, actor step, critic step); (4) time acting (``predict`` with the RSSM state, one env, per step).
The bound is ``matmul rate / FLOPs per update``; the fraction is measured updates/s over that bound.

Run: ``python benchmarks/speed.py`` (writes ``benchmarks/results/speed.json``); ``--configs`` picks rows.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
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


#: Rows of the table: name -> (env id, Dreamer arguments).
CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "xs-pendulum": ("Pendulum-v1", {}),  # the constructor defaults
    "xs-cartpole": ("CartPole-v1", {}),
    "size1m-pendulum": ("Pendulum-v1", dict(policy_kwargs=dict(model_size="size1m"))),
    # DreamerV3's 16 x 64 batch, imagination from all B * T starts, at the xs model size
    "xs-16x64-all-starts": ("Pendulum-v1", dict(batch_length=64, imagination_starts=None)),
    # sheeprl's DreamerV3 XS architecture (recurrent 256, dense 256, 32 x 32 latents, one hidden layer), 16 x 64, all starts
    "sheeprl-xs-arch-cartpole": (
        "CartPole-v1",
        dict(
            batch_length=64,
            imagination_starts=None,
            imagination_horizon=15,
            policy_kwargs=dict(deter=256, stoch=32, classes=32, units=256, mlp_layers=1),
        ),
    ),
}
PHASES = ("replay", "world_model", "imagination", "losses", "actor", "critic")


def acting_seconds(model: Dreamer, steps: int = 300) -> float:
    """Seconds per env step of ``predict`` with the RSSM state carried, one env, env stepping excluded."""
    env = model.get_env()
    obs, state, episode_start = env.reset(), None, np.ones(1, dtype=bool)
    total = 0.0
    for _ in range(steps):
        tick = time.perf_counter()
        action, state = model.predict(obs, state=state, episode_start=episode_start)
        total += time.perf_counter() - tick
        obs, _, episode_start, _ = env.step(action)
    return total / steps


def measure(env_id: str, hyperparams: dict[str, Any], updates: int, gemm_gflops: float) -> dict[str, Any]:
    """FLOPs per update, updates/s, phase times, acting time and the fraction of the FLOP bound for one configuration."""
    model = make_model(env_id, hyperparams)
    model.train(2, model.batch_size)  # warm-up
    with FlopCounterMode(display=False) as counter:
        model.train(1, model.batch_size)
    flops = counter.get_total_flops()
    logged: dict[str, float] = {}
    model.logger.record = lambda key, value, exclude=None: logged.__setitem__(key, value)
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
        phase_seconds={phase: logged[f"train/time_{phase}"] for phase in PHASES},
        acting_ms_per_step=1e3 * acting_seconds(model),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--updates", type=int, default=30)
    parser.add_argument("--threads", type=int, default=th.get_num_threads())
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "speed.json")
    args = parser.parse_args()
    th.set_num_threads(args.threads)
    rates = matmul_rate([(1024, 256, 256), (4096, 256, 256), (512, 128, 384), (16384, 256, 256)])
    gemm = max(rates.values())
    results = {name: measure(*CONFIGS[name], args.updates, gemm) for name in args.configs}
    report = dict(threads=args.threads, torch=th.__version__, matmul_gflops=rates, gemm_ceiling_gflops=gemm, results=results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"matmul GFLOP/s ({args.threads} threads): " + ", ".join(f"{k}: {v:.0f}" for k, v in rates.items()))
    print("| config | GFLOP / update | updates/s | FLOP-bound updates/s | fraction of bound | acting ms/step |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['gflop_per_update']:.2f} | {r['updates_per_second']:.2f} | "
            f"{r['flop_bound_updates_per_second']:.1f} | {100 * r['fraction_of_bound']:.0f} % | "
            f"{r['acting_ms_per_step']:.2f} |"
        )
    print("\nShare of the update time per phase:")
    print("| config | " + " | ".join(PHASES) + " |")
    print("|---|" + "---|" * len(PHASES))
    for name, r in results.items():
        total = sum(r["phase_seconds"].values())
        print(f"| {name} | " + " | ".join(f"{100 * r['phase_seconds'][p] / total:.0f} %" for p in PHASES) + " |")


if __name__ == "__main__":
    main()
