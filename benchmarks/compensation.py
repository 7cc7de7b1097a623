"""Reward compensation (TransReward, https://github.com/SJ9VRF/TransReward) on a target whose own reward is sparse.

Protocol (per seed):

1. ``source``: Dreamer (default settings) on ``sb3_dreamer/PendulumSource-v0`` (Pendulum-v1, dense reward) for
   ``SOURCE_STEPS`` env steps. Its reward head is the source reward model r̂_src; its replayed rewards are the source
   rewards of the mean-shift variant. Evaluated at the end on the source (did it learn?) and on the target's task
   (zero-shot).
2. Target ``sb3_dreamer/PendulumTarget-v0`` (mass 1.5, length 1.3) with a **sparse** reward (:class:`SparseUpright`:
   1 per step with the pole within 20 degrees of upright, else 0): a reward that is poor to learn from, while the
   source's dense reward model applies to the target's states. SB3 SAC with rl-zoo's Pendulum-v1 hyperparameters,
   ``TARGET_STEPS`` steps, on:

   - ``sparse``: the target's own reward alone (the control: no compensation);
   - ``lam0.5``, ``lam1``: ``RewardCompensation(env, source_reward=<source Dreamer>, lam)``;
   - ``lam1-untrained``: the same as ``lam1`` with an untrained Dreamer as the source (the control that removes the
     ingredient claimed to work: a reward model that learned the source task);
   - ``shift``: the repository's scalar variant, ``reward_compensation_loop`` with ``ITERATIONS`` iterations
     (shift = mean source reward - mean target reward of the last iteration);
   - ``dense``: the target's dense Pendulum reward (a reference, not a transfer method: the reward the target is
     assumed not to offer).

Every method is evaluated on the target's task reward: steps upright per 200-step episode (the sparse return), with a
seeded evaluation env (seed 1000 + seed), every ``--eval-freq`` steps. Metrics: final evaluation and area under the
curve (mean of the evaluations). Each run is its own process (``--jobs`` at a time, one torch thread each); finished
runs are skipped when the script is run again, and the source run resumes from its checkpoint.

Run: ``python benchmarks/compensation.py`` (3 seeds); ``--quick`` is a pipeline check with tiny budgets.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

SOURCE, TARGET = "sb3_dreamer/PendulumSource-v0", "sb3_dreamer/PendulumTarget-v0"
SOURCE_STEPS, TARGET_STEPS, ITERATIONS = 10_000, 10_000, 10
QUICK_STEPS = (300, 400)
METHODS = ("sparse", "lam0.5", "lam1", "lam1-untrained", "shift", "dense")
UPRIGHT_DEGREES = 20.0
EVAL_SEED = 1000  # the evaluation env's seed is EVAL_SEED + seed, as in benchmarks/common.py


class SparseUpright(gym.Wrapper):
    """Pendulum with a sparse reward: 1 when the pole is within ``degrees`` of upright, else 0; the dense reward goes
    to ``info["dense_reward"]``."""

    def __init__(self, env: gym.Env, degrees: float = UPRIGHT_DEGREES) -> None:
        super().__init__(env)
        self.threshold = float(np.cos(np.radians(degrees)))

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = dict(info, dense_reward=float(reward))
        return obs, float(obs[0] >= self.threshold), terminated, truncated, info  # obs[0] = cos(theta)


def budgets(quick: bool) -> tuple[int, int]:
    """(source, target) env steps."""
    return QUICK_STEPS if quick else (SOURCE_STEPS, TARGET_STEPS)


def jobs_of(seed: int) -> dict[str, list[str]]:
    """Run names of one seed and the runs each depends on."""
    source = f"source_{seed}"
    needs_source = ("lam0.5", "lam1", "shift")
    return {source: [], **{f"target-{m}_{seed}": ([source] if m in needs_source else []) for m in METHODS}}


def sparse_target() -> gym.Env:
    """The target env with the sparse task reward, under a Monitor (episode returns = steps upright)."""
    from stable_baselines3.common.monitor import Monitor

    return Monitor(SparseUpright(gym.make(TARGET)))


def run_one(name: str, out: Path, eval_freq: int, eval_episodes: int, quick: bool) -> None:
    """Train one run of :func:`jobs_of` and write ``out / <name>.json``."""
    import torch as th
    from common import code_commit, zoo_hyperparams
    from stable_baselines3 import SAC
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    from sb3_dreamer import Dreamer
    from sb3_dreamer.common import EvalCurve, ResumableRun
    from sb3_dreamer.transfer import RewardCompensation, reward_compensation_loop

    th.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    kind, seed = name.rsplit("_", 1)[0], int(name.rsplit("_", 1)[1])
    source_steps, target_steps = budgets(quick)
    final = out / "final"
    final.mkdir(parents=True, exist_ok=True)
    evaluate = EvalCurve(sparse_target(), eval_freq, eval_episodes, name, seed=EVAL_SEED + seed)
    result: dict[str, Any] = dict(name=name, seed=seed)
    if kind == "source":
        checkpoint = ResumableRun(out / "checkpoints" / name, max(eval_freq * 2, 1000), evaluate)
        model = checkpoint.restore(lambda path: Dreamer.load(path, env=Monitor(gym.make(SOURCE)), seed=seed))
        resumed = model is not None
        model = model or Dreamer("MlpPolicy", Monitor(gym.make(SOURCE)), seed=seed)
        model.learn(source_steps - model.num_timesteps, callback=[evaluate, checkpoint], reset_num_timesteps=not resumed)
        buffer = model.replay_buffer
        rows = buffer.stream_pos[0] if not buffer.stream_full[0] else buffer.capacity
        rewards = buffer.rewards[0, :rows][~buffer.is_first[0, :rows]]  # the rewards of real steps
        np.save(final / f"{name}_rewards.npy", rewards)
        model.save(final / f"{name}.zip")
        source_eval = Monitor(gym.make(SOURCE))
        source_eval.reset(seed=EVAL_SEED + seed)
        result["source_return"] = float(evaluate_policy(model, source_eval, n_eval_episodes=eval_episodes)[0])
        result.update(steps=source_steps, resumed=resumed)
        checkpoint.remove()
    else:
        method = kind.removeprefix("target-")
        source_zip = final / f"source_{seed}.zip"
        if method == "lam1-untrained":
            source_zip = final / f"untrained_{seed}.zip"
            Dreamer("MlpPolicy", gym.make(SOURCE), seed=seed).save(source_zip)
        wrapper: dict[str, Any] = {
            "sparse": {},
            "dense": {},
            "shift": dict(shift=0.0),
            "lam0.5": dict(source_reward=str(source_zip), lam=0.5),
            "lam1": dict(source_reward=str(source_zip), lam=1.0),
            "lam1-untrained": dict(source_reward=str(source_zip), lam=1.0),
        }[method]

        def make_env() -> gym.Env:
            env = gym.make(TARGET) if method == "dense" else SparseUpright(gym.make(TARGET))
            return Monitor(RewardCompensation(env, **wrapper) if wrapper else env)

        hyperparams, _ = zoo_hyperparams("sac", "Pendulum-v1")
        if quick:
            hyperparams["learning_starts"] = 100
        model = SAC("MlpPolicy", DummyVecEnv([make_env]), seed=seed, verbose=0, **hyperparams)
        if method == "shift":
            source_rewards = np.load(final / f"source_{seed}_rewards.npy")
            per_iteration = target_steps // ITERATIONS
            reward_compensation_loop(model, source_rewards, ITERATIONS, per_iteration, callback=evaluate)
            result["shifts"] = [float(s) for s in model.get_env().get_attr("shift")]
        else:
            model.learn(target_steps, callback=evaluate)
        result.update(steps=target_steps)
    result.update(curve=evaluate.curve, seconds=time.perf_counter() - evaluate.start, commit=code_commit(), quick=quick)
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))


def summarise(out: Path) -> str:
    """Table (markdown) and PNG: per method, final and AUC of the sparse target return, per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from common import finals_and_aucs, plot_runs

    runs = {path.stem: json.loads(path.read_text()) for path in sorted(out.glob("*_*.json"))}
    sources = sorted((run for key, run in runs.items() if key.startswith("source_")), key=lambda run: run["seed"])
    lines = [
        "| method | seeds | final (steps upright of 200) per seed | final mean | AUC per seed | AUC mean |",
        "|---|---|---|---|---|---|",
    ]
    if sources:
        zero_shot = [run["curve"][-1]["mean"] for run in sources]
        lines.append(f"| zero-shot (source policy) | {len(sources)} | {', '.join(f'{v:.0f}' for v in zero_shot)} | "
                     f"{np.mean(zero_shot):.0f} | | |")  # fmt: skip
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for color, method in enumerate(METHODS):
        group = sorted((run for key, run in runs.items() if key.startswith(f"target-{method}_")), key=lambda r: r["seed"])
        if not group:
            continue
        finals, aucs = finals_and_aucs(group)
        lines.append(
            f"| {method} | {len(group)} | {', '.join(f'{f:.0f}' for f in finals)} | {np.mean(finals):.0f} | "
            f"{', '.join(f'{a:.0f}' for a in aucs)} | {np.mean(aucs):.0f} |"
        )
        plot_runs(ax, group, color, method)
    ax.set_title(f"SAC on {TARGET} with a sparse reward (one line per seed)", fontsize=9)
    ax.set_xlabel("environment steps")
    ax.set_ylabel(f"steps within {UPRIGHT_DEGREES:.0f} degrees of upright (of 200)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "compensation.png", dpi=110)
    notes = [f"seed {run['seed']}: source return {run['source_return']:.0f} on {SOURCE}" for run in sources]
    table = "\n".join(lines) + "\n\nSource Dreamers on their own task (mean return):\n" + "\n".join(notes)
    (out / "compensation.md").write_text(table + "\n")
    return table


def main() -> None:
    from common import job_cli

    job_cli(__doc__, __file__, "compensation", jobs_of,
            lambda name, out, args: run_one(name, out, args.eval_freq, args.eval_episodes, args.quick),
            lambda out, args: summarise(out))  # fmt: skip


if __name__ == "__main__":
    main()
