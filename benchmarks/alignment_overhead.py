"""Cost of the DTW reward wrapper relative to the raw environment step, on HopperBulletEnv-v0.

Setup (fixed here, printed and written to the JSON):
- 10 reference episodes of 1000 steps and the measured episodes are 1000 steps long: random actions with the Hopper's
  termination ignored (the body keeps being simulated on the ground), so the episode length is the TimeLimit's 1000,
  as for a trained policy. Random-policy Hopper episodes otherwise end after ~20 steps.
- Raw and wrapped episodes are interleaved with the same action sequences on the same env instance (raw: the
  wrapper's inner env stepped directly), so that load from other processes affects both alike; the order of the
  variants rotates from one episode to the next (in a fixed order the last variant, which cannot be faster than the
  raw env, measured 3-4 % faster than it in two of three runs).
  Overhead = (wrapped time - raw time) / raw time, in wall time and in process CPU time (less sensitive to other
  processes' load), over all measured episodes, for ``background=True`` also as the median of the per-episode ratios
  of each interleaved (raw, wrapped) pair (less sensitive to a one-off stall; not for the in-process wrapper, whose
  refits fall in some episodes only), and separately the sum of the wrapper's own components (per-step predict,
  episode-end alignment + labelling, refit) / raw time.
- Alignment time of one 1000 x 1000 pair (15 dims) with and without the default Sakoe-Chiba window.
- End to end is measured without timing hooks; the components come from a second pass over the same episodes with
  hooks (the in-process wrapper's predict, episode end, alignment and refit calls).
- The same for ``background=True`` (alignment, labels and refits in a worker process, ``BackgroundRewarder``), stepped
  in the same interleaved loop (raw, in-process, background, raw, ...) on the same env instance: the stepping
  process's overhead, and the worker's CPU seconds per raw step (the cost moved to another core, not removed). After
  each episode the loop waits (untimed) until the workers are idle, so that no worker competes with the next timed
  episode (before 2026-12-07 evening the worker ran on while the next raw episode was timed, which lowered the figure).
- And for ``background=True, reward_at_sampling=True`` (no per-step prediction: the learner's replay buffer computes
  the rewards of each sampled batch, ``SampledRewardCallback``), in the same loop. Where that cost goes instead is
  measured after the loop, in the same process: SAC (SB3 defaults, batch 256) and Dreamer (the library's defaults) on
  the wrapped Hopper, their buffers filled by ``LEARNER_STEPS`` random steps, then ``LEARNER_TIMED_STEPS`` steps with
  updates each: the reward computation's share of the updates' time, the rows it predicted per update, and its time
  per env step (to set beside the per-step wrapper's prediction per step).

Run: ``python benchmarks/alignment_overhead.py`` (writes benchmarks/results/alignment_overhead.json).
"""

import argparse
import json
import os
import platform
import time
from typing import Any

import gymnasium as gym
import numpy as np
import pybullet_envs_gymnasium  # noqa: F401  (registers HopperBulletEnv-v0)
import torch as th
from common import package_versions
from stable_baselines3 import SAC
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_dreamer import Dreamer
from sb3_dreamer.alignment import (
    DTWRewardWrapper,
    SampledRewardCallback,
    SampledRewardReplayBuffer,
    TrajectoryDataset,
    align,
    record_trajectories,
    reference_statistics,
)
from sb3_dreamer.alignment import relabel as relabel_module
from sb3_dreamer.alignment import rewarder as rewarder_module
from sb3_dreamer.alignment.background import BackgroundRewarder
from sb3_dreamer.alignment.reward_model import Predictor

ENV_ID = "HopperBulletEnv-v0"
EPISODE_STEPS = 1000
N_REFERENCES = 10
SEED = 0
#: Random steps that fill a learner's buffer, then steps with updates, timed (rewards computed at sampling).
LEARNER_STEPS = 2000
LEARNER_TIMED_STEPS = {"sac": 500, "dreamer": 20}


class IgnoreTermination(gym.Wrapper):
    """Report ``terminated=False`` so that episodes last until the TimeLimit (benchmark only)."""

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, _, truncated, info = self.env.step(action)
        return obs, reward, False, truncated, info


def make_env() -> gym.Env:
    # gym.make's own wrappers (TimeLimit 1000, OrderEnforcing, PassiveEnvChecker) are kept: the env as users get it.
    return IgnoreTermination(gym.make(ENV_ID))


class Timed:
    """Accumulates the wall time of calls to ``obj.name`` (monkey-patched on the instance, or the class)."""

    def __init__(self, obj: Any, name: str) -> None:
        self.total, self.calls = 0.0, 0
        self.inner = inner = getattr(obj, name)

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            result = inner(*args, **kwargs)
            self.total += time.perf_counter() - start
            self.calls += 1
            return result

        setattr(obj, name, wrapped)


def run_episode(env: gym.Env, actions: np.ndarray, seed: int) -> tuple[float, float]:
    """Wall and process CPU seconds of one episode's steps (CPU time is less sensitive to other processes' load)."""
    env.reset(seed=seed)
    start, cpu_start = time.perf_counter(), time.process_time()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            break
    return time.perf_counter() - start, time.process_time() - cpu_start


def pair_alignment_times(references: list[np.ndarray], window: int | None, repeats: int = 5) -> float:
    stats = reference_statistics(references[:1])
    target, reference = references[1], references[0]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        align(target, [reference], window=window, stats=stats)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def learner_costs(reference: TrajectoryDataset, wrapper_kwargs: dict[str, Any]) -> dict[str, dict[str, float]]:
    """SAC and Dreamer trained with rewards computed at sampling on the wrapped Hopper: after ``LEARNER_STEPS`` random
    steps (two episodes, a refit at the end of the second), ``LEARNER_TIMED_STEPS`` more steps with updates, timed: the
    updates (``model.train``), the reward computation inside them (``predict_finite`` as the buffers call it: their
    batched reward-model call) and the rows it predicted."""
    costs = {}
    for name, steps in LEARNER_TIMED_STEPS.items():
        env = DummyVecEnv([lambda: DTWRewardWrapper(make_env(), reference, reward_at_sampling=True, **wrapper_kwargs)])
        if name == "sac":
            model: Any = SAC("MlpPolicy", env, learning_starts=LEARNER_STEPS, seed=SEED,
                             replay_buffer_class=SampledRewardReplayBuffer)  # fmt: skip
        else:
            model = Dreamer("MlpPolicy", env, learning_starts=LEARNER_STEPS, seed=SEED)
        callback = SampledRewardCallback()
        model.learn(LEARNER_STEPS, callback=callback)  # random steps, no update yet
        train_timer, reward_timer = Timed(model, "train"), Timed(relabel_module, "predict_finite")
        rows_before = getattr(model.replay_buffer, "n_rewards_computed", 0)
        updates_before = model._n_updates
        model.learn(steps, callback=callback, reset_num_timesteps=False)
        relabel_module.predict_finite = reward_timer.inner
        updates = model._n_updates - updates_before
        if name == "sac":
            rows = model.replay_buffer.n_rewards_computed - rows_before
        else:  # every row of every batch (rows that start an episode are skipped, a few per batch)
            rows = reward_timer.calls * model.batch_size * model.batch_length
        costs[name] = dict(
            env_steps=steps,
            updates=updates,
            update_ms=1e3 * train_timer.total / max(updates, 1),
            reward_ms_per_update=1e3 * reward_timer.total / max(updates, 1),
            reward_us_per_env_step=1e6 * reward_timer.total / steps,
            reward_share_of_updates=reward_timer.total / train_timer.total,
            rows_per_update=rows / max(updates, 1),
        )
        env.close()
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=6, help="measured episodes per variant")
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--refit-steps", type=int, default=None, help="default: the wrapper's default")
    parser.add_argument("--refit-interval", type=int, default=None, help="default: the wrapper's default")
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "results", "alignment_overhead.json"))
    args = parser.parse_args()
    th.set_num_threads(1)
    rng = np.random.default_rng(SEED)
    action_space = make_env().action_space

    def random_policy(_obs: np.ndarray) -> np.ndarray:
        return rng.uniform(action_space.low, action_space.high).astype(np.float32)

    reference = record_trajectories(random_policy, make_env(), N_REFERENCES, seed=SEED)
    assert reference.episode_lengths.tolist() == [EPISODE_STEPS] * N_REFERENCES
    wrapper_kwargs: dict[str, Any] = {"window": args.window, "seed": SEED}
    if args.refit_steps is not None:
        wrapper_kwargs["refit_steps"] = args.refit_steps
    if args.refit_interval is not None:
        wrapper_kwargs["refit_interval"] = args.refit_interval

    raw_env = make_env()  # one Bullet instance stepped raw and through both wrappers: the difference is the wrapper
    start = time.perf_counter()
    wrapped = DTWRewardWrapper(raw_env, reference, **wrapper_kwargs)
    construction = time.perf_counter() - start
    background = DTWRewardWrapper(raw_env, reference, background=True, **wrapper_kwargs)
    assert isinstance(background.rewarder, BackgroundRewarder)
    sampled = DTWRewardWrapper(raw_env, reference, background=True, reward_at_sampling=True, **wrapper_kwargs)
    sampled.sampler_attached = True  # stands in for SampledRewardCallback: the buffer's cost is measured below
    rewarder = wrapped.rewarder

    episodes = [
        rng.uniform(-1, 1, size=(EPISODE_STEPS, action_space.shape[0])).astype(np.float32) for _ in range(args.episodes)
    ]
    run_episode(raw_env, episodes[0], SEED)  # warm-up: builds the Bullet scene
    n_steps = EPISODE_STEPS * args.episodes
    # End to end, without timing hooks; then the same episodes again with hooks for the components.
    raw_times, wrapped_times, background_times, sampled_times = [], [], [], []
    variants = [(raw_env, raw_times), (wrapped, wrapped_times), (background, background_times), (sampled, sampled_times)]
    for index, actions in enumerate(episodes):
        # The order rotates from one episode to the next, so that no variant always runs in the same position.
        for env, times in variants[index % 4 :] + variants[: index % 4]:
            times.append(run_episode(env, actions, SEED + index))
            background.rewarder.wait()  # untimed: no worker is busy during the next timed episode
            sampled.rewarder.wait()
    background.rewarder.wait()  # the last episode's alignment and refit, still in the worker
    worker_seconds = background.rewarder.worker_seconds
    background_refits = background.rewarder.n_refits
    sampled.rewarder.wait()
    sampled_worker_seconds = sampled.rewarder.worker_seconds
    sampled_end = Timed(sampled.rewarder, "end_episode")
    refits_end_to_end = rewarder.n_refits
    background_end = Timed(background.rewarder, "end_episode")
    row_timer = Timed(Predictor, "predict_row")  # the per-step reward, of both wrappers (predictors change at refits)
    end_timer = Timed(rewarder, "end_episode")
    fit_timer = Timed(rewarder.model, "fit")
    label_timer = Timed(rewarder_module, "label_episode")  # alignment + labelling inside end_episode
    predict_total, background_predict_total = 0.0, 0.0
    for index, actions in enumerate(episodes):
        before = row_timer.total
        run_episode(wrapped, actions, SEED + index)
        predict_total += row_timer.total - before
        before = row_timer.total
        run_episode(background, actions, SEED + index)
        background_predict_total += row_timer.total - before
        run_episode(sampled, actions, SEED + index)
    assert row_timer.calls == 2 * n_steps  # the in-process and background wrappers; none with reward_at_sampling
    background.close()
    sampled.close()
    raw_total, wrapped_total = (sum(wall for wall, _ in raw_times), sum(wall for wall, _ in wrapped_times))
    raw_cpu, wrapped_cpu = (sum(cpu for _, cpu in raw_times), sum(cpu for _, cpu in wrapped_times))
    learners = learner_costs(reference, wrapper_kwargs)

    def median_overhead(times: list[tuple[float, float]], cpu: bool = False) -> float:
        pairs = zip(times, raw_times, strict=True)
        return float(np.median([wrapped[cpu] / raw[cpu] - 1 for wrapped, raw in pairs]))

    def overheads(times: list[tuple[float, float]]) -> dict[str, float]:
        """A wrapper's step time and overhead: end to end (wall, CPU) and as the median of the per-episode ratios."""
        wall, cpu = sum(wall for wall, _ in times), sum(cpu for _, cpu in times)
        return {
            "wrapped_step_ms": 1e3 * wall / n_steps,
            "overhead_end_to_end": (wall - raw_total) / raw_total,
            "overhead_end_to_end_cpu": (cpu - raw_cpu) / raw_cpu,
            "overhead_median_episode": median_overhead(times),
            "overhead_median_episode_cpu": median_overhead(times, cpu=True),
        }

    components = {
        "predict_s": predict_total,
        "end_episode_s": end_timer.total,
        "alignment_and_labels_s": label_timer.total,
        "refit_s": fit_timer.total,
        "refits": fit_timer.calls,
    }
    own_cost = predict_total + end_timer.total
    references = [ep.next_observations.astype(np.float64) for ep in reference.episodes()]
    result = {
        "env_id": ENV_ID,
        "episode_steps": EPISODE_STEPS,
        "n_references": N_REFERENCES,
        "measured_episodes": args.episodes,
        "wrapper_kwargs": {
            "window": rewarder.window,
            "refit_steps": rewarder.refit_steps,
            "refit_interval": rewarder.refit_interval,
            "refit_budget_seconds": rewarder.refit_budget_seconds,
            "net_arch": list(rewarder.model.net_arch),
            "batch_size": rewarder.model.batch_size,
            "label_mode": rewarder.label_mode,
        },
        "raw_step_ms": 1e3 * raw_total / n_steps,
        "wrapped_step_ms": 1e3 * wrapped_total / n_steps,
        "overhead_end_to_end": (wrapped_total - raw_total) / raw_total,
        "overhead_end_to_end_cpu": (wrapped_cpu - raw_cpu) / raw_cpu,
        "overhead_components": own_cost / raw_total,
        "predict_us_per_step": 1e6 * predict_total / n_steps,
        "end_episode_ms_per_episode": 1e3 * end_timer.total / max(end_timer.calls, 1),
        "alignment_ms_per_episode_10_refs": 1e3 * label_timer.total / max(label_timer.calls, 1),
        "refit_ms_per_refit": 1e3 * fit_timer.total / max(fit_timer.calls, 1),
        "components_s": components,
        "construction_with_pretrain_s": construction,
        "pair_1000x1000_ms": {
            f"window_{args.window}": 1e3 * pair_alignment_times(references, args.window),
            "no_window": 1e3 * pair_alignment_times(references, None),
        },
        "truncated_refits": rewarder.n_truncated_refits,
        "refits_end_to_end": refits_end_to_end,
        "background": {
            **overheads(background_times),
            "predict_us_per_step": 1e6 * background_predict_total / n_steps,
            "end_episode_ms_per_episode": 1e3 * background_end.total / max(background_end.calls, 1),
            "worker_cpu_s": worker_seconds,
            "worker_cpu_per_raw_step": worker_seconds / raw_total,
            "refits_applied_end_to_end": background_refits,
        },
        "reward_at_sampling": {
            **overheads(sampled_times),
            "end_episode_ms_per_episode": 1e3 * sampled_end.total / max(sampled_end.calls, 1),
            "worker_cpu_per_raw_step": sampled_worker_seconds / raw_total,
            "learners": learners,
        },
        "versions": {**package_versions(), "torch_threads": th.get_num_threads()},
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(), "load": os.getloadavg()},
    }
    rows = [
        ("raw env step", f"{result['raw_step_ms']:.3f} ms"),
        ("wrapped env step", f"{result['wrapped_step_ms']:.3f} ms"),
        ("overhead (end to end)", f"{100 * result['overhead_end_to_end']:.1f} %"),
        ("overhead (end to end, process CPU time)", f"{100 * result['overhead_end_to_end_cpu']:.1f} %"),
        ("overhead (wrapper components)", f"{100 * result['overhead_components']:.1f} %"),
        ("predict per step", f"{result['predict_us_per_step']:.1f} us"),
        ("episode end (align 10 refs + labels + refit)", f"{result['end_episode_ms_per_episode']:.1f} ms"),
        ("  alignment + labels, 10 refs", f"{result['alignment_ms_per_episode_10_refs']:.1f} ms"),
        ("  refit", f"{result['refit_ms_per_refit']:.1f} ms x {fit_timer.calls}"),
        (f"1000x1000 pair, window {args.window}", f"{result['pair_1000x1000_ms'][f'window_{args.window}']:.1f} ms"),
        ("1000x1000 pair, no window", f"{result['pair_1000x1000_ms']['no_window']:.1f} ms"),
        ("construction incl. pre-fit", f"{construction:.2f} s"),
        ("background: wrapped env step", f"{result['background']['wrapped_step_ms']:.3f} ms"),
        ("background: overhead (end to end)", f"{100 * result['background']['overhead_end_to_end']:.1f} %"),
        ("background: overhead (process CPU time)", f"{100 * result['background']['overhead_end_to_end_cpu']:.1f} %"),
        ("background: overhead (median per episode)", f"{100 * result['background']['overhead_median_episode']:.1f} %"),
        (
            "background: overhead (median per episode, CPU)",
            f"{100 * result['background']['overhead_median_episode_cpu']:.1f} %",
        ),
        ("background: predict per step", f"{result['background']['predict_us_per_step']:.1f} us"),
        ("background: episode end in this process", f"{result['background']['end_episode_ms_per_episode']:.2f} ms"),
        ("background: worker CPU / raw step time", f"{100 * result['background']['worker_cpu_per_raw_step']:.1f} %"),
    ]
    at_sampling = result["reward_at_sampling"]
    rows += [
        ("at sampling: wrapped env step", f"{at_sampling['wrapped_step_ms']:.3f} ms"),
        ("at sampling: overhead (end to end)", f"{100 * at_sampling['overhead_end_to_end']:.1f} %"),
        ("at sampling: overhead (process CPU time)", f"{100 * at_sampling['overhead_end_to_end_cpu']:.1f} %"),
        ("at sampling: overhead (median per episode)", f"{100 * at_sampling['overhead_median_episode']:.1f} %"),
        ("at sampling: overhead (median per episode, CPU)", f"{100 * at_sampling['overhead_median_episode_cpu']:.1f} %"),
        ("at sampling: worker CPU / raw step time", f"{100 * at_sampling['worker_cpu_per_raw_step']:.1f} %"),
    ]
    for name, cost in learners.items():
        rows.append((
            f"at sampling: {name}, {cost['updates']} updates: update / its rewards",
            f"{cost['update_ms']:.1f} / {cost['reward_ms_per_update']:.3f} ms ({100 * cost['reward_share_of_updates']:.2f} %)",
        ))  # fmt: skip
        rows.append((
            f"at sampling: {name}, rows predicted per update / reward time per env step",
            f"{cost['rows_per_update']:.0f} / {cost['reward_us_per_env_step']:.1f} us",
        ))  # fmt: skip
    width = max(len(name) for name, _ in rows)
    print(f"{ENV_ID}, {N_REFERENCES} references x {EPISODE_STEPS} steps, {args.episodes} measured episodes")
    for name, value in rows:
        print(f"{name:<{width}}  {value:>14}")
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as file:
        json.dump(result, file, indent=2)
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
