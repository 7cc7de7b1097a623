"""How well each finished run's final reward model ranks the target's true reward, on one shared set of target states.

For each seed of a finished ``transfer.py`` pair: target episodes (seeded) from three policies, uniform random, the
source model zero-shot, and a policy trained on the target's true reward (``final/<oracle>_<seed>.zip``, default
``dreamer_oracle_scratch``: the states a good target policy visits); then the reference pre-fit (a fresh
``DTWRewardWrapper`` with the run's settings, before any target episode) and every DTW variant's final reward model
(``final/<variant>_<seed>_wrapper.npz``, restored with ``DTWRewardWrapper.load_state``) predict the reward of each
visited state, as the wrapper does at a step (the reward of the observation the step returns). Printed per policy and
model: Pearson and Spearman correlation of learned vs true reward over the steps of each seed, their mean over seeds,
the per-seed values beside it.

This tells whether the DTW labels of the target episodes made the reward model better on target states than the
reference alone (the reference-only control's model stays the pre-fit, refitted on the references). **Analysis only**:
it reads the target's true reward to describe reward models after the fact and chooses no setting of any run.

Run: ``python benchmarks/final_reward_fidelity.py --pair pendulum_repeat_heavy`` (after ``transfer.py``; writes
``results/transfer/<pair>/final_reward_fidelity.json``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from common import EVAL_SEED
from reward_fidelity import correlations
from transfer_pairs import PAIRS

from sb3_dreamer import Dreamer
from sb3_dreamer.alignment import DTWRewardWrapper, record_trajectories

PRE_FIT = "reference_pre_fit"


def rollouts(env_id: str, policy: Any, episodes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Observations returned by each step and the true rewards of ``episodes`` seeded target episodes
    (:func:`~sb3_dreamer.alignment.record_trajectories`).

    :param policy: a model with SB3's ``predict`` (deterministic), or None for uniform random actions
    :return: ``(observations (steps, obs_dim), true rewards (steps,))``
    """
    env = gym.make(env_id)
    env.action_space.seed(seed)
    actor = policy if policy is not None else (lambda _obs: env.action_space.sample())
    try:
        dataset = record_trajectories(actor, env, episodes, deterministic=True, seed=seed)
    finally:
        env.close()
    return dataset.next_observations, dataset.rewards


def reward_models(out: Path, target_id: str, seed: int, variants: list[str]) -> dict[str, DTWRewardWrapper]:
    """The reference pre-fit and each variant's final reward model of ``seed`` (variants without a saved state are left
    out). The pre-fit uses the settings of the first variant found (``wrapper_kwargs`` of its run JSON); its scale
    depends on that variant's label mode, which the correlations do not see."""
    models: dict[str, DTWRewardWrapper] = {}
    reference = out / f"reference_{seed}.npz"
    for variant in variants:
        state, run = out / "final" / f"{variant}_{seed}_wrapper.npz", out / f"{variant}_{seed}.json"
        if not state.is_file() or not run.is_file():
            continue
        # The run's wrapper arguments (label mode, seed, settings), its reference file as found in this checkout.
        kwargs = {key: value for key, value in json.loads(run.read_text())["wrapper_kwargs"].items() if key != "reference"}
        if PRE_FIT not in models:
            prefit_kwargs = {key: value for key, value in kwargs.items() if key != "dtw_labels"}
            models[PRE_FIT] = DTWRewardWrapper(gym.make(target_id), reference, **prefit_kwargs)
        wrapper = DTWRewardWrapper(gym.make(target_id), reference, **kwargs)
        wrapper.load_state(state)
        models[variant] = wrapper
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", choices=list(PAIRS), default="pendulum_repeat_heavy")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--episodes", type=int, default=10, help="per policy and seed")
    parser.add_argument("--oracle", default="dreamer_oracle_scratch", help="variant whose final model is the good policy")
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/transfer/<pair>")
    args = parser.parse_args()
    th.set_num_threads(1)
    out = args.out or Path(__file__).parent / "results" / "transfer" / args.pair
    target_id = PAIRS[args.pair]["target"]
    variants = sorted({path.stem.rsplit("_", 2)[0] for path in (out / "final").glob("*_wrapper.npz")})
    result: dict[str, dict[str, dict[int, dict[str, float]]]] = {}
    for seed in args.seeds:
        policies = {
            "random": None,
            "source_zero_shot": Dreamer.load(out / f"source_{seed}.zip"),
            args.oracle: Dreamer.load(out / "final" / f"{args.oracle}_{seed}.zip"),
        }
        models = reward_models(out, target_id, seed, variants)
        for name, policy in policies.items():
            observations, true = rollouts(target_id, policy, args.episodes, EVAL_SEED + 100 * seed)
            for model, wrapper in models.items():
                learned = wrapper.rewarder.predict(observations)
                result.setdefault(name, {}).setdefault(model, {})[seed] = correlations(learned, true)
    lines = [
        f"| {args.pair}: states of | reward model | seeds | Pearson (mean) | per seed | Spearman (mean) | per seed |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, by_model in result.items():
        for model, by_seed in by_model.items():
            seeds = sorted(by_seed)
            pearson = [by_seed[seed]["pearson"] for seed in seeds]
            spearman = [by_seed[seed]["spearman"] for seed in seeds]
            lines.append(
                f"| {name} | {model} | {len(seeds)} | {np.mean(pearson):.2f} | {', '.join(f'{v:.2f}' for v in pearson)} "
                f"| {np.mean(spearman):.2f} | {', '.join(f'{v:.2f}' for v in spearman)} |"
            )
    print("\n".join(lines))
    path = out / "final_reward_fidelity.json"
    path.write_text(json.dumps(dict(episodes=args.episodes, oracle=args.oracle, result=result), indent=1))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
