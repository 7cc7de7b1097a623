"""The true reward behind a relabelled env (both wrapper orders), its logging, progress lines and the predict warning."""

from __future__ import annotations

import io
import re
import warnings

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import SAC
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.monitor import Monitor

import sb3_dreamer.envs  # noqa: F401  (registers the sb3_dreamer/... ids)
from sb3_dreamer import Dreamer
from sb3_dreamer.alignment import DTWRewardWrapper, record_trajectories
from sb3_dreamer.common import LogProgressCallback, TrueRewardCallback
from sb3_dreamer.envs import RewardFree
from tests.conftest import TerminatingEnv, tiny

FAST = {"pretrain_steps": 20, "refit_steps": 5, "refit_interval": 100, "refit_budget_seconds": None, "net_arch": (8,)}


@pytest.fixture(scope="module")
def reference_path(tmp_path_factory) -> str:
    dataset = record_trajectories(lambda obs: np.array([1.0], np.float32), "sb3_dreamer/PendulumSource-v0", 2, seed=0)
    return dataset.save(tmp_path_factory.mktemp("ref") / "source.npz")


def true_returns(n_episodes: int, seed: int) -> list[float]:
    """Returns of the plain target env under the same random actions (the ground truth)."""
    env = gym.make("sb3_dreamer/PendulumTarget-v0")
    env.action_space.seed(seed)
    env.reset(seed=seed)
    returns, total = [], 0.0
    while len(returns) < n_episodes:
        _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        total += float(reward)
        if terminated or truncated:
            returns.append(total)
            total = 0.0
            env.reset()
    return returns


@pytest.mark.parametrize("reward_free", [True, False])
def test_dtw_wrapper_keeps_the_true_reward(reference_path: str, reward_free: bool) -> None:
    inner = gym.make("sb3_dreamer/PendulumTarget-v0")
    env = DTWRewardWrapper(RewardFree(inner) if reward_free else inner, reference_path, seed=0, **FAST)
    env.action_space.seed(0)
    env.reset(seed=0)
    total = 0.0
    for _ in range(200):
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        total += info["original_reward"]
    assert truncated and not terminated
    # Under RewardFree the wrapper receives 0.0: the true reward must still come through, never that 0.0.
    assert info["original_episode_return"] == pytest.approx(total) == pytest.approx(true_returns(1, seed=0)[0])
    assert total < -100.0  # random actions on Pendulum: far from 0


@pytest.mark.parametrize("order", ["monitor_above_dtw", "monitor_below_dtw"])
def test_dreamer_logs_true_and_learned_returns(reference_path: str, order: str) -> None:
    def target() -> gym.Env:
        return RewardFree(gym.make("sb3_dreamer/PendulumTarget-v0"))

    if order == "monitor_above_dtw":  # plain Python: SB3 puts Monitor on top of the env it is given
        env = DTWRewardWrapper(target(), reference_path, seed=0, **FAST)
    else:  # rl-zoo and make_vec_env: Monitor first, the wrapper above it
        env = make_vec_env(
            target, wrapper_class=DTWRewardWrapper, wrapper_kwargs=dict(reference=reference_path, seed=0, **FAST)
        )
    model = Dreamer("MlpPolicy", env, seed=1, **tiny(learning_starts=400, train_freq=100))
    model.set_random_seed(1)
    logged: dict = {}
    model.set_logger(Logger(None, [_DictFormat(logged)]))
    model.learn(400, log_interval=1)
    callback = model._logging_callbacks[0]
    assert len(callback.true_returns) == 2
    # Random actions before learning_starts: true returns are Pendulum's (negative, hundreds), learned ones the model's.
    assert all(value < -100.0 for value in callback.true_returns)
    assert np.mean(callback.true_returns) == pytest.approx(logged["rollout/ep_true_rew_mean"])
    assert np.mean(callback.learned_returns) == pytest.approx(logged["rollout/ep_learned_rew_mean"])
    assert logged["rollout/ep_true_rew_mean"] != pytest.approx(logged["rollout/ep_learned_rew_mean"])
    # SB3's own ep_rew_mean shows whatever Monitor saw: the learned reward above the wrapper, 0.0 (RewardFree) below.
    expected = logged["rollout/ep_learned_rew_mean"] if order == "monitor_above_dtw" else 0.0
    assert logged["rollout/ep_rew_mean"] == pytest.approx(expected, abs=1e-3)


class _DictFormat(KVWriter):
    """Logger output that keeps the last value of every key."""

    def __init__(self, store: dict) -> None:
        self.store = store

    def write(self, key_values: dict, key_excluded: dict, step: int = 0) -> None:
        self.store.update(key_values)

    def close(self) -> None:
        pass


def test_true_reward_callback_with_sac_and_plain_envs() -> None:
    env = Monitor(RewardFree(gym.make("sb3_dreamer/PendulumTarget-v0")))
    callback = TrueRewardCallback()
    SAC("MlpPolicy", env, learning_starts=1000, seed=0).learn(400, callback=callback)
    assert len(callback.true_returns) == 2 and all(value < -100.0 for value in callback.true_returns)
    assert list(callback.learned_returns) == [0.0, 0.0]
    # An env without original_reward: nothing recorded.
    callback = TrueRewardCallback()
    SAC("MlpPolicy", "Pendulum-v1", learning_starts=1000, seed=0).learn(400, callback=callback)
    assert len(callback.true_returns) == 0


def test_log_progress_lines() -> None:
    stream = io.StringIO()
    callback = LogProgressCallback(interval=0.0, stream=stream)
    Dreamer("MlpPolicy", TerminatingEnv(), **tiny(train_freq=4)).learn(32, callback=callback)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 33  # one per step with interval 0, one at the end
    assert re.fullmatch(r"step 8/32 \(25 %\), [\d.]+ steps/s, elapsed \d+s, ETA \d+s", lines[7])
    assert re.fullmatch(r"step 32/32 \(100 %\), [\d.]+ steps/s, elapsed \d+s, ETA 0s", lines[-1])


def test_learn_prints_progress_lines_when_output_is_not_a_terminal(capsys) -> None:
    # Under pytest stdout is captured (not a terminal): progress_bar=True gives lines, not a progress bar.
    Dreamer("MlpPolicy", TerminatingEnv(), **tiny()).learn(20, progress_bar=True)
    out = capsys.readouterr().out
    assert re.search(r"^step 20/20 \(100 %\)", out, flags=re.MULTILINE), out


def test_predict_without_state_warns_once_in_a_loop() -> None:
    model = Dreamer("MlpPolicy", "CartPole-v1", **tiny())
    env = model.get_env()
    obs = env.reset()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.predict(obs)  # one call without state (e.g. the first of evaluate_policy): fine
        assert not caught
        for _ in range(5):
            action, _ = model.predict(obs)
            obs, *_ = env.step(action)
    messages = [str(warning.message) for warning in caught if "recurrent" in str(warning.message)]
    assert len(messages) == 1 and "state=state, episode_start=episode_start" in messages[0]
    assert caught[0].filename == __file__  # points at the user's line


def test_predict_with_state_does_not_warn() -> None:
    model = Dreamer("MlpPolicy", "CartPole-v1", **tiny())
    env = model.get_env()
    obs, state, episode_start = env.reset(), None, np.ones(1, dtype=bool)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(10):
            action, state = model.predict(obs, state=state, episode_start=episode_start)
            obs, _, episode_start, _ = env.step(action)
        for _ in range(3):  # independent first observations, flagged as episode starts
            model.predict(obs, episode_start=np.ones(1, dtype=bool))
