"""How well the learned DTW reward tracks the target's true reward, on the states a policy actually visits.

For each seed of a finished ``transfer.py`` run (its ``source_<seed>.zip`` and ``reference_<seed>.npz``): a policy acts
on the reward-free target inside ``DTWRewardWrapper`` (each label mode, wrapper defaults, seeded) for ``--episodes``
episodes, either the source Dreamer (deterministic; states near the reference) or a uniform random policy (states an
exploring agent also visits, mostly off the reference); per step the wrapper's learned reward is paired with the env's true
reward (``info["original_reward"]``, which the wrapper never learns from). Reported per mode: Pearson and Spearman
correlation of learned vs true reward over all steps, and of the episode returns, separately for episodes scored by the
reference pre-fit model and by the model after its first refit on the target's own DTW labels.

A learned reward that ranks states like the true reward (high correlation) is what an agent needs; the scale may
differ (``tracking`` has its own scale by design).

Run: ``python benchmarks/reward_fidelity.py --pair pendulum`` (after ``transfer.py``; writes
``results/transfer/<pair>/reward_fidelity.json``).
"""

import argparse
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch as th
from transfer_pairs import PAIRS

from sb3_dreamer import Dreamer
from sb3_dreamer.alignment import DTWRewardWrapper
from sb3_dreamer.alignment.dtw import LABEL_MODES


def ranks(values: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(values)).astype(float)


def correlations(learned: np.ndarray, true: np.ndarray) -> dict[str, float]:
    return {
        "pearson": float(np.corrcoef(learned, true)[0, 1]),
        "spearman": float(np.corrcoef(ranks(learned), ranks(true))[0, 1]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", choices=list(PAIRS), default="pendulum")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--episodes", type=int, default=20, help="per seed; the first refit comes after 2000 steps")
    parser.add_argument("--policies", nargs="+", choices=["source", "random"], default=["source", "random"])
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/transfer/<pair>")
    parser.add_argument("--wrapper-kwargs", type=json.loads, default={}, help="JSON, e.g. '{\"anchor_reference\": false}'")
    parser.add_argument("--tag", default="", help="suffix of the result file: reward_fidelity<tag>.json")
    args = parser.parse_args()
    th.set_num_threads(1)
    out = args.out or Path(__file__).parent / "results" / "transfer" / args.pair
    target_id = PAIRS[args.pair]["target"]
    result: dict[str, dict[str, dict[str, object]]] = {policy: {} for policy in args.policies}
    for policy, mode in ((policy, mode) for policy in args.policies for mode in LABEL_MODES):
        # Steps of episodes that started before / after the wrapper's first refit (pre-fit model vs refitted model).
        buckets: dict[str, dict[str, list[float]]] = {
            phase: {"learned": [], "true": [], "return_learned": [], "return_true": []} for phase in ("pre_fit", "refitted")
        }
        for seed in args.seeds:
            model = Dreamer.load(out / f"source_{seed}.zip")
            env = DTWRewardWrapper(
                gym.make(target_id), out / f"reference_{seed}.npz", label_mode=mode, seed=seed, **args.wrapper_kwargs
            )
            env.action_space.seed(seed)
            for episode in range(args.episodes):
                bucket = buckets["refitted" if env.rewarder.n_refits else "pre_fit"]
                obs, _ = env.reset(seed=1000 * seed + episode)
                state, start, done = None, np.array([True]), False
                learned, true = [], []
                while not done:
                    if policy == "source":
                        action, state = model.predict(obs, state=state, episode_start=start, deterministic=True)
                    else:
                        action = env.action_space.sample()
                    obs, reward, terminated, truncated, info = env.step(action)
                    learned.append(reward)
                    true.append(info["original_reward"])
                    start, done = np.array([False]), terminated or truncated
                bucket["learned"] += learned
                bucket["true"] += true
                bucket["return_learned"].append(sum(learned))
                bucket["return_true"].append(sum(true))
        result[policy][mode] = {}
        for phase, bucket in buckets.items():
            if len(bucket["return_true"]) < 2:
                continue
            line = {
                "steps": correlations(np.array(bucket["learned"]), np.array(bucket["true"])),
                "episode_returns": correlations(np.array(bucket["return_learned"]), np.array(bucket["return_true"])),
                "episodes": len(bucket["return_true"]),
                "mean_learned_return": float(np.mean(bucket["return_learned"])),
                "mean_true_return": float(np.mean(bucket["return_true"])),
            }
            result[policy][mode][phase] = line
            print(
                f"{policy:<6} {mode:<31} {phase:<8} per step: pearson {line['steps']['pearson']:.2f} "
                f"spearman {line['steps']['spearman']:.2f}; episode returns: pearson "
                f"{line['episode_returns']['pearson']:.2f} ({line['episodes']} episodes; mean learned return "
                f"{line['mean_learned_return']:.0f}, true {line['mean_true_return']:.0f})"
            )
    path = out / f"reward_fidelity{args.tag}.json"
    path.write_text(json.dumps(dict(wrapper_kwargs=args.wrapper_kwargs, result=result), indent=1))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
