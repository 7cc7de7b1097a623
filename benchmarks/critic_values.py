"""What a trained Dreamer's critic predicts along its own episodes, beside the discounted return it then receives.

Loads a saved Dreamer (a benchmark's ``final/<run>.zip`` or a checkpoint's ``model.zip``), runs deterministic episodes
on seeded envs and prints, at a few points of each episode, the critic's value of the posterior state, the discounted
return-to-go actually received (the model's gamma; an episode cut by the time limit counts only the steps it had) and
the first observation component (the cart position on CartPole-v1). A critic that stays flat while the return-to-go
falls cannot see failures beyond the imagination horizon.

``python benchmarks/critic_values.py MODEL.zip --env CartPole-v1 --episodes 3``
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
import torch as th

from sb3_dreamer import Dreamer


def critic_along_episode(model: Dreamer, env: gym.Env, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Critic values, discounted returns-to-go and first observation components along one deterministic episode."""
    policy = model.policy
    obs, _ = env.reset(seed=seed)
    state, start, done = policy.initial_state(1), np.ones(1, dtype=bool), False
    values, rewards, first = [], [], []
    while not done:
        first.append(float(np.ravel(obs)[0]))
        action, state = policy.act(th.as_tensor(obs[None], dtype=th.float32), state, start, True)
        with th.no_grad():  # the state act() returns is the posterior it acted on: value it without filtering again
            feat = th.as_tensor(np.concatenate([state.deter, state.stoch], axis=-1))
            values.append(float(policy.value(feat)[0]))
        start = np.zeros(1, dtype=bool)
        obs, reward, terminated, truncated, _ = env.step(action[0])
        rewards.append(float(reward))
        done = terminated or truncated
    returns = np.zeros(len(rewards))
    running = 0.0
    for t in reversed(range(len(rewards))):
        running = rewards[t] + model.gamma * running
        returns[t] = running
    return np.array(values), returns, np.array(first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1000, help="seed of the first episode (the benchmark's eval seed)")
    args = parser.parse_args()
    th.set_num_threads(1)
    model = Dreamer.load(args.model)
    env = gym.make(args.env)
    print(f"{args.model}: {model.num_timesteps} env steps, gamma {model.gamma:.4f}")
    for episode in range(args.episodes):
        values, returns, first = critic_along_episode(model, env, args.seed + episode)
        length = len(values)
        points = sorted({0, length // 4, length // 2, 3 * length // 4, max(length - 20, 0), max(length - 5, 0), length - 1})
        print(f"episode of {length} steps, at steps {points}:")
        print("  critic value     " + " ".join(f"{values[i]:7.1f}" for i in points))
        print("  return-to-go     " + " ".join(f"{returns[i]:7.1f}" for i in points))
        print("  observation[0]   " + " ".join(f"{first[i]:+7.2f}" for i in points))


if __name__ == "__main__":
    main()
