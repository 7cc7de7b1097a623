"""Reward compensation (TransReward, https://github.com/SJ9VRF/TransReward): formula, wrapper, source Dreamer, loop."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import configure

from sb3_dreamer import Dreamer
from sb3_dreamer.common.usage import UsageError
from sb3_dreamer.dreamer.type_aliases import AgentState
from sb3_dreamer.transfer import (
    DreamerRewardModel,
    RewardCompensation,
    compensated_reward,
    compensation_wrappers,
    mean_shift,
    reward_compensation_loop,
)
from tests.conftest import TerminatingEnv, tiny

#: Pendulum actions within its bounds [-2, 2], so that the source's clipping to [-1, 1] does not matter.
ACTIONS = [np.array([a], dtype=np.float32) for a in (0.5, -1.0, 2.0, 0.0, -2.0, 1.5, -0.3)]


@pytest.fixture(scope="module")
def source() -> Dreamer:
    """A tiny source Dreamer on Pendulum-v1 whose reward head predicts different rewards in different states."""
    th.manual_seed(0)
    model = Dreamer("MlpPolicy", "Pendulum-v1", seed=0, **tiny())
    with th.no_grad():  # the output layer starts at 0 (a fresh head predicts 0 everywhere): give it weights
        output = [m for m in model.policy.reward_head.modules() if isinstance(m, th.nn.Linear)][-1]
        output.weight.normal_(0.0, 0.5)
        output.bias.normal_(0.0, 0.5)
    return model


def test_formula_on_known_numbers() -> None:
    assert compensated_reward(1.0, 3.0, 0.5) == 2.0
    assert compensated_reward(1.0, 3.0, 1.0) == 3.0
    assert compensated_reward(1.0, 3.0, 0.0) == 1.0
    np.testing.assert_allclose(compensated_reward(np.array([1.0, -2.0]), np.array([3.0, 2.0]), 0.5), [2.0, 0.0])
    assert mean_shift([1, 2, 3], [0, 0]) == 2.0
    assert mean_shift(np.array([[1.0], [3.0]]), [4.0]) == -2.0
    for bad in ([], [np.nan], [1.0, np.inf]):
        with pytest.raises(UsageError):
            mean_shift(bad, [1.0])
        with pytest.raises(UsageError):
            mean_shift([1.0], bad)
    for lam in (-0.1, np.nan, np.inf):
        with pytest.raises(UsageError, match="lam"):
            compensated_reward(1.0, 3.0, lam)


def test_shift_variant() -> None:
    env = RewardCompensation(TerminatingEnv(horizon=50), shift=-0.5)  # reward = action
    env.reset(seed=0)
    _, reward, *_, info = env.step(1)
    assert reward == 0.5 and info["original_reward"] == 1.0 and "predicted_source_reward" not in info
    env.shift = 2.0
    assert env.step(1)[1] == 3.0
    env.set_shift(-1.0)
    assert env.step(0)[1] == -1.0
    assert env.original_reward_sum == 2.0 and env.original_reward_count == 3
    np.testing.assert_array_equal(env.pop_original_rewards(), [1.0, 1.0, 0.0])
    assert env.pop_original_rewards().size == 0 and env.original_reward_count == 3
    half = RewardCompensation(TerminatingEnv(horizon=50), shift=-0.5, lam=0.5)
    half.reset()
    assert half.step(1)[1] == 0.75  # r + lam * shift
    with pytest.raises(UsageError, match="finite"):
        env.shift = np.nan


def test_callable_regressor_gets_the_observation_before_the_action() -> None:
    env = RewardCompensation(TerminatingEnv(horizon=50), source_reward=lambda obs, action: 3.0 + 100.0 * obs[0], lam=0.5)
    env.reset()
    for t in range(4):  # TerminatingEnv's observation at time t is t / 10
        _, reward, _, _, info = env.step(1)
        assert info["predicted_source_reward"] == pytest.approx(3.0 + 10.0 * t)
        assert info["original_reward"] == 1.0 and isinstance(info["original_reward"], float)
        assert reward == pytest.approx(1.0 + 0.5 * (3.0 + 10.0 * t - 1.0))
    assert env.variant == "regressor"
    with pytest.raises(UsageError, match="mean-shift"):
        env.shift = 1.0


def test_predict_regressor_gets_obs_and_action_rows() -> None:
    class Regressor:
        def __init__(self) -> None:
            self.rows: list[np.ndarray] = []

        def predict(self, x: np.ndarray) -> np.ndarray:
            self.rows.append(x.copy())
            return np.array([x.sum()])

    regressor = Regressor()
    env = RewardCompensation(gym.make("Pendulum-v1"), source_reward=regressor)
    obs, _ = env.reset(seed=1)
    for action in ACTIONS[:3]:
        next_obs, reward, _, _, _ = env.step(action)
        row = regressor.rows[-1]
        assert row.shape == (1, 4)
        np.testing.assert_allclose(row[0], np.concatenate([obs, action]), rtol=1e-6)
        assert reward == pytest.approx(row.sum())  # lam = 1: the prediction itself
        obs = next_obs


def test_source_dreamer_prediction_matches_filter_step_by_hand(source: Dreamer, tmp_path: Path) -> None:
    env = RewardCompensation(gym.make("Pendulum-v1"), source_reward=source, lam=1.0)
    twin = gym.make("Pendulum-v1")
    obs, _ = env.reset(seed=3)
    observations = [twin.reset(seed=3)[0]]
    np.testing.assert_array_equal(obs, observations[0])
    predicted, rewards = [], []
    for action in ACTIONS:
        _, reward, _, _, info = env.step(action)
        predicted.append(info["predicted_source_reward"])
        rewards.append(reward)
        observations.append(twin.step(action)[0])

    policy, deter = source.policy, source.policy.size["deter"]
    expected = []
    with th.no_grad():
        feat = policy.filter_step(policy.obs_to_tensor(observations[0])[0], policy.initial_state(1), np.array([True]), True)
        for action, next_obs in zip(ACTIONS, observations[1:], strict=True):
            state = AgentState(feat[:, :deter].numpy(), feat[:, deter:].numpy(), policy.to_model_action(action[None]))
            feat = policy.filter_step(policy.obs_to_tensor(next_obs)[0], state, np.array([False]), True)
            expected.append(policy.reward_head.predict(feat).item())
    assert np.ptp(expected) > 1e-3  # the check can tell states apart
    np.testing.assert_allclose(predicted, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rewards, expected, rtol=1e-5, atol=1e-6)  # lam = 1 replaces the reward

    # A new episode starts from the initial state again: the same start and action give the same prediction.
    env.reset(seed=3)
    assert env.step(ACTIONS[0])[4]["predicted_source_reward"] == pytest.approx(expected[0], rel=1e-5)
    # The saved zip gives the same source reward model.
    source.save(tmp_path / "source.zip")
    loaded = RewardCompensation(gym.make("Pendulum-v1"), source_reward=str(tmp_path / "source.zip"), lam=0.0)
    loaded.reset(seed=3)
    _, reward, _, _, info = loaded.step(ACTIONS[0])
    assert info["predicted_source_reward"] == pytest.approx(expected[0], rel=1e-5)
    assert reward == info["original_reward"]  # lam = 0 leaves the reward alone
    model = DreamerRewardModel(source)
    with pytest.raises(RuntimeError, match="reset"):
        model(observations[0], ACTIONS[0], observations[1])


def test_construction_errors(source: Dreamer) -> None:
    with pytest.raises(UsageError, match=r"exactly one.*both"):
        RewardCompensation(gym.make("Pendulum-v1"), source_reward=lambda obs, action: 0.0, shift=0.0)
    with pytest.raises(UsageError, match=r"exactly one.*neither"):
        RewardCompensation(gym.make("Pendulum-v1"))
    for lam in (-1.0, np.nan):
        with pytest.raises(UsageError, match="lam"):
            RewardCompensation(gym.make("Pendulum-v1"), shift=0.0, lam=lam)
    with pytest.raises(UsageError, match=r"another observation space.*\(3,\).*\(4,\)"):
        RewardCompensation(gym.make("CartPole-v1"), source_reward=source)
    with pytest.raises(UsageError, match=r"another action space.*Discrete"):
        RewardCompensation(TerminatingEnv(obs_dim=3), source_reward=source)  # same observations, discrete actions
    with pytest.raises(UsageError, match="does not exist"):
        RewardCompensation(gym.make("Pendulum-v1"), source_reward="no/such/source.zip")
    with pytest.raises(UsageError, match="source_reward must be"):
        RewardCompensation(gym.make("Pendulum-v1"), source_reward=3.0)


def test_nonfinite_prediction_falls_back_to_the_original_reward() -> None:
    predictions = iter([5.0, np.nan, np.inf, 7.0, np.nan])
    env = RewardCompensation(TerminatingEnv(horizon=50), source_reward=lambda obs, action: next(predictions))
    env.reset()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rewards = [env.step(1)[1] for _ in range(5)]
    assert rewards == [5.0, 1.0, 1.0, 7.0, 1.0]
    assert env.nonfinite_predictions == 3
    warned = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(warned) == 1 and "nonfinite_predictions" in str(warned[0].message)  # warned once


def _sac(env: Any) -> SAC:
    return SAC("MlpPolicy", env, learning_starts=50, batch_size=16, policy_kwargs=dict(net_arch=[16]), seed=0)


def test_loop_recomputes_the_shift_from_each_iterations_original_rewards(tmp_path: Path) -> None:
    env = make_vec_env("Pendulum-v1", n_envs=1, seed=0, wrapper_class=RewardCompensation, wrapper_kwargs=dict(shift=0.0))
    model = _sac(env)
    model.set_logger(configure(str(tmp_path), ["csv"]))
    source_rewards = np.array([-1.0, -2.0, 0.5])
    seen: list[tuple[np.ndarray, float]] = []

    def refit(model: SAC, target_rewards: np.ndarray, wrappers: list[RewardCompensation]) -> None:
        seen.append((target_rewards, wrappers[0].shift))

    assert reward_compensation_loop(model, source_rewards, 2, 100, refit=refit) is model
    assert model.num_timesteps == 200
    (first, shift_1), (second, shift_2) = seen
    assert first.size == second.size == 100
    assert shift_1 == pytest.approx(source_rewards.mean() - first.mean())
    assert shift_2 == pytest.approx(source_rewards.mean() - second.mean())
    assert shift_1 != shift_2 and compensation_wrappers(env)[0].shift == shift_2
    # The learner got r + shift (0 in iteration 0), the Monitor below the wrapper the original rewards.
    stored = model.replay_buffer.rewards[:200, 0]
    np.testing.assert_allclose(stored, np.concatenate([first, second + shift_1]), rtol=1e-5, atol=1e-5)
    assert env.envs[0].get_wrapper_attr("get_episode_rewards")()[0] == pytest.approx(first.sum() + second.sum())
    with open(tmp_path / "progress.csv") as file:
        logged = [float(row["compensation/shift"]) for row in csv.DictReader(file) if row.get("compensation/shift")]
    assert logged == pytest.approx([shift_1, shift_2])


def test_loop_regressor_variant_and_refusals() -> None:
    with pytest.raises(UsageError, match="no RewardCompensation"):
        reward_compensation_loop(_sac("Pendulum-v1"), [1.0], 1, 10)
    regressor = make_vec_env(
        "Pendulum-v1", n_envs=1, wrapper_class=RewardCompensation, wrapper_kwargs=dict(source_reward=lambda o, a: 1.0)
    )
    with pytest.raises(UsageError, match="shift="):
        reward_compensation_loop(_sac(regressor), [1.0], 1, 10)
    shifted = make_vec_env("Pendulum-v1", n_envs=1, wrapper_class=RewardCompensation, wrapper_kwargs=dict(shift=0.0))
    with pytest.raises(UsageError, match="need source_rewards"):
        reward_compensation_loop(_sac(shifted), None, 1, 10)
    with pytest.raises(UsageError, match="positive ints"):
        reward_compensation_loop(_sac(shifted), [1.0], 0, 10)
    calls: list[int] = []
    model = reward_compensation_loop(_sac(regressor), None, 2, 20, refit=lambda m, rewards, w: calls.append(rewards.size))
    assert calls == [20, 20] and model.num_timesteps == 40
    assert np.all(model.replay_buffer.rewards[:40] == 1.0)  # lam = 1: the predicted source reward
