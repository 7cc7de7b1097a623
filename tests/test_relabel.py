"""Fresh rewards: after a refit of the DTW reward model, the rewards stored in replay buffers are relabelled, or the
rewards of every sampled batch are computed with the current model (``SampledRewardCallback``)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import SAC, TD3
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

import sb3_dreamer.envs  # noqa: F401  (registers the sb3_dreamer/... ids)
from sb3_dreamer import Dreamer
from sb3_dreamer.alignment import (
    REWARD_AT_SAMPLING,
    DTWRewardWrapper,
    SampledRewardCallback,
    SampledRewardReplayBuffer,
    VecDTWRewardWrapper,
    record_trajectories,
)
from sb3_dreamer.alignment.relabel import RelabelCallback, relabel_buffer
from sb3_dreamer.common.usage import UsageError
from tests.conftest import tiny

th.set_num_threads(1)

FAST = {"pretrain_steps": 20, "refit_steps": 5, "refit_interval": 100, "refit_budget_seconds": None, "net_arch": (8,)}
TARGET = "sb3_dreamer/PendulumTarget-v0"


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> str:
    policy = lambda obs: np.array([2.0 * np.sign(obs[2] or 1.0)], dtype=np.float32)  # noqa: E731
    dataset = record_trajectories(policy, "sb3_dreamer/PendulumSource-v0", n_episodes=2, seed=0)
    return dataset.save(tmp_path_factory.mktemp("ref") / "reference.npz")


def stored_sb3(model: SAC) -> tuple[np.ndarray, np.ndarray]:
    size = model.replay_buffer.size()
    return model.replay_buffer.next_observations[:size, 0], model.replay_buffer.rewards[:size, 0]


@pytest.mark.parametrize("relabel", [True, False])
def test_sac_buffer_holds_the_current_models_rewards_only_with_the_callback(reference: str, relabel: bool) -> None:
    env = DummyVecEnv([lambda: DTWRewardWrapper(gym.make(TARGET), reference, seed=0, **FAST)])
    rewarder = env.envs[0].rewarder
    model = SAC("MlpPolicy", env, learning_starts=1000, seed=0)
    callback = RelabelCallback() if relabel else None
    model.learn(450, callback=callback)  # two finished episodes: refits after each
    assert rewarder.n_refits >= 2
    obs, rewards = stored_sb3(model)
    current = rewarder.predict(obs.astype(np.float32))
    if relabel:
        np.testing.assert_allclose(rewards, current, rtol=1e-5, atol=1e-6)
        assert callback.n_relabels == rewarder.n_refits
    else:  # the stale rewards of the first episode come from the pre-fitted model, not the current one
        assert np.abs(rewards[:200] - current[:200]).max() > 1e-3


@pytest.mark.parametrize("background", [False, True])
def test_dreamer_sequence_buffer_is_relabelled_except_first_rows(reference: str, background: bool) -> None:
    env = VecDTWRewardWrapper(DummyVecEnv([lambda: gym.make(TARGET)] * 2), reference, background, seed=0, **FAST)
    model = Dreamer("MlpPolicy", env, **tiny(learning_starts=1000))
    # 2 x 220 steps: one finished episode per sub-env (in the background, sub-env 1's episode end applies the refit
    # of sub-env 0's episode, which the callback then sees like an in-process one)
    model.learn(440, callback=RelabelCallback())
    buffer, rewarder = model.replay_buffer, env.rewarder
    assert rewarder.n_refits >= 1
    for index in range(2):
        rows = int(buffer.stream_pos[index])
        first = buffer.is_first[index, :rows]
        obs, rewards = buffer.observations["obs"][index, :rows], buffer.rewards[index, :rows]
        np.testing.assert_allclose(rewards[~first], rewarder.predict(obs[~first]), rtol=1e-5, atol=1e-6)
        assert np.all(rewards[first] == 0.0)
    env.close()


def test_relabel_buffer_with_memory_optimised_replay(reference: str) -> None:
    env = DummyVecEnv([lambda: gym.make(TARGET)])
    model = TD3("MlpPolicy", env, learning_starts=1000, optimize_memory_usage=True, replay_buffer_kwargs=dict(
        handle_timeout_termination=False), buffer_size=500, seed=0)  # fmt: skip
    model.learn(50)
    count, _ = relabel_buffer(model.replay_buffer, lambda obs: obs[:, 0] * 2.0, env_index=0)
    size = model.replay_buffer.size()
    assert count == size
    next_obs = model.replay_buffer.observations[1 : size + 1, 0]
    np.testing.assert_allclose(model.replay_buffer.rewards[:size, 0], next_obs[:, 0] * 2.0, rtol=1e-6)


def test_callback_refuses_models_without_a_dtw_wrapper() -> None:
    model = SAC("MlpPolicy", gym.make("Pendulum-v1"), learning_starts=1000)
    with pytest.raises(UsageError, match="no DTW reward wrapper"):
        model.learn(2, callback=RelabelCallback())


def test_rows_with_non_finite_observations_get_the_wrappers_reward(reference: str) -> None:
    from sb3_dreamer.alignment.rewarder import NON_FINITE_REWARD

    model = SAC("MlpPolicy", gym.make(TARGET), learning_starts=1000, buffer_size=100, seed=0)
    model.learn(10)
    model.replay_buffer.next_observations[3, 0, 1] = np.nan  # a NaN observation the wrapper let through (strict=False)
    relabel_buffer(model.replay_buffer, lambda obs: obs[:, 0] + 5.0, env_index=0)
    rewards = model.replay_buffer.rewards[:10, 0]
    assert rewards[3] == NON_FINITE_REWARD and np.all(rewards[np.arange(10) != 3] > 3.0)


def sac_at_sampling(reference: str, **wrapper_kwargs) -> tuple[SAC, DTWRewardWrapper]:
    env = DummyVecEnv([lambda: DTWRewardWrapper(gym.make(TARGET), reference, seed=0, **FAST, **wrapper_kwargs)])
    model = SAC("MlpPolicy", env, learning_starts=100, batch_size=64, seed=0,
                replay_buffer_class=SampledRewardReplayBuffer)  # fmt: skip
    return model, env.envs[0]


def test_sac_samples_the_current_models_rewards_and_the_env_returns_placeholders(reference: str) -> None:
    model, wrapper = sac_at_sampling(reference, reward_at_sampling=True)
    model.learn(450, callback=SampledRewardCallback())  # two finished episodes: refits after each
    rewarder = wrapper.rewarder
    assert rewarder.n_refits >= 2 and wrapper.sampler_attached
    buffer = model.replay_buffer
    never = np.ones(buffer.size(), dtype=bool)  # rows never sampled still hold the env's placeholder
    th.manual_seed(1)
    np.random.seed(1)
    batch = buffer.sample(64)
    expected = rewarder.predict(batch.next_observations.numpy())
    np.testing.assert_allclose(batch.rewards.numpy()[:, 0], expected, rtol=1e-5, atol=1e-6)
    obs, rewards = stored_sb3(model)
    never[np.isin(obs, batch.next_observations.numpy()).all(axis=1)] = False
    assert np.abs(expected).min() > 0.0  # the placeholders below are not predictions that happen to be 0
    _, reward, *_ = wrapper.step(wrapper.action_space.sample())  # the env itself returns the placeholder
    assert reward == REWARD_AT_SAMPLING == 0.0
    # The rows sampled hold the current model's rewards; the wrapper computed none per step.
    np.testing.assert_allclose(rewards[~never], rewarder.predict(obs[~never].astype(np.float32)), rtol=1e-5, atol=1e-6)


def test_reward_at_sampling_never_gives_a_learner_placeholders(reference: str) -> None:
    model, wrapper = sac_at_sampling(reference, reward_at_sampling=True)
    with pytest.warns(UserWarning, match=r"no replay buffer that computes its rewards.*computes the reward per step"):
        with pytest.raises(UsageError, match=r"SampledRewardReplayBuffer has no reward model.*SampledRewardCallback"):
            model.learn(120)  # no callback: the wrapper computes per-step rewards, the buffer refuses its first batch
    stored_obs, stored = stored_sb3(model)
    np.testing.assert_allclose(stored, wrapper.rewarder.predict(stored_obs.astype(np.float32)), rtol=1e-5, atol=1e-6)
    # An evaluation env (nothing attached): the learned reward per step, and the warning once only.
    env = DTWRewardWrapper(gym.make(TARGET), reference, reward_at_sampling=True, seed=0, **FAST)
    env.reset(seed=0)
    with pytest.warns(UserWarning, match="computes the reward per step") as record:
        obs, reward, *_ = env.step(env.action_space.sample())
        expected = env.rewarder.predict(obs)  # before the refit at the episode's end
        for _ in range(250):  # past an episode end
            env.step(env.action_space.sample())
    assert len(record) == 1 and reward == pytest.approx(expected, rel=1e-6) and reward != 0.0
    plain = SAC("MlpPolicy", DummyVecEnv([lambda: DTWRewardWrapper(gym.make(TARGET), reference, seed=0, **FAST)]),
                learning_starts=1000)  # fmt: skip
    with pytest.raises(UsageError, match="replay_buffer_class=SampledRewardReplayBuffer, not SAC with ReplayBuffer"):
        plain.learn(2, callback=SampledRewardCallback())
    normalised = VecNormalize(DummyVecEnv([lambda: DTWRewardWrapper(gym.make(TARGET), reference, reward_at_sampling=True,
                                                                    seed=0, **FAST)]))  # fmt: skip
    model = SAC("MlpPolicy", normalised, learning_starts=1000, replay_buffer_class=SampledRewardReplayBuffer)
    with pytest.raises(UsageError, match="norm_reward=False"):
        model.learn(2, callback=SampledRewardCallback())


@pytest.mark.parametrize("background", [False, True])
def test_dreamer_samples_the_current_models_rewards_except_first_rows(reference: str, background: bool,
                                                                      tmp_path) -> None:  # fmt: skip
    env = VecDTWRewardWrapper(DummyVecEnv([lambda: gym.make(TARGET)] * 2), reference, background,
                              reward_at_sampling=True, seed=0, **FAST)  # fmt: skip
    model = Dreamer("MlpPolicy", env, **tiny(learning_starts=300))
    model.learn(440, callback=SampledRewardCallback())  # trains on sampled batches from step 300 on
    buffer, rewarder = model.replay_buffer, env.rewarder
    assert rewarder.n_refits >= 1 and np.abs(buffer.rewards).max() > 0.0  # batches got rewards; the env gave 0.0
    batch = buffer.sample(8, 16)
    obs, first = batch.observations.numpy(), batch.is_first.numpy().astype(bool)
    rewards = batch.rewards.numpy()
    np.testing.assert_allclose(rewards[~first], rewarder.predict(obs[~first]), rtol=1e-5, atol=1e-6)
    assert np.all(rewards[first] == 0.0)
    model.save_replay_buffer(tmp_path / "buffer.pkl")  # the reward function (and its worker's pipe) is not saved
    model.load_replay_buffer(tmp_path / "buffer.pkl")
    assert model.replay_buffer.reward_function is None
    env.close()


def test_sampled_reward_buffer_pickles_without_its_reward_model(reference: str, tmp_path) -> None:
    model, _ = sac_at_sampling(reference, reward_at_sampling=True, background=True)
    model.learn(120, callback=SampledRewardCallback())
    model.save_replay_buffer(tmp_path / "buffer.pkl")
    model.load_replay_buffer(tmp_path / "buffer.pkl")
    assert model.replay_buffer.reward_sources == [] and model.replay_buffer.size() == 120
    model.get_env().close()


def test_sampled_rewards_are_computed_once_per_reward_model(reference: str, monkeypatch) -> None:
    from sb3_dreamer.alignment import relabel

    model, wrapper = sac_at_sampling(reference, reward_at_sampling=True)
    model.learn(210, callback=SampledRewardCallback())  # one finished episode: a refit (version 1)
    buffer, rewarder = model.replay_buffer, wrapper.rewarder
    assert rewarder.n_refits == 1
    predicted = []
    inner = relabel.predict_finite
    monkeypatch.setattr(relabel, "predict_finite", lambda predict, obs: predicted.append(len(obs)) or inner(predict, obs))
    inds = np.arange(0, 200, 2)
    buffer._get_samples(inds)  # rows computed before the refit or never: all recomputed, once
    stale = len(predicted) and predicted[-1]
    buffer._get_samples(inds)
    assert len(predicted) == 1 and 0 < stale <= len(inds)  # the second batch: all fresh, nothing predicted
    np.testing.assert_allclose(buffer.rewards[inds, 0], rewarder.predict(buffer.next_observations[inds, 0]), rtol=1e-5)
    rewarder.n_refits += 1  # a new model version: every row is stale again
    buffer._get_samples(inds)
    assert predicted[-1] == len(inds)
    buffer.add(np.zeros((1, 3)), np.zeros((1, 3)), np.zeros((1, 1)), np.zeros(1), np.zeros(1), [{}])
    assert buffer.reward_versions[buffer.pos - 1, 0] == -1  # a new row holds no computed reward


def test_sampled_rewards_use_each_sub_envs_own_reward_model(reference: str) -> None:
    env = DummyVecEnv([
        lambda seed=seed: DTWRewardWrapper(gym.make(TARGET), reference, reward_at_sampling=True, seed=seed, **FAST)
        for seed in (0, 1)
    ])  # fmt: skip
    model = SAC("MlpPolicy", env, learning_starts=1000, replay_buffer_class=SampledRewardReplayBuffer, seed=0)
    model.learn(420, callback=SampledRewardCallback())  # two sub-envs, one finished episode each: a refit each
    buffer, (first, second) = model.replay_buffer, (wrapper.rewarder for wrapper in env.envs)
    assert first.n_refits == second.n_refits == 1
    inds = np.arange(buffer.size())
    buffer._get_samples(inds)  # computes every row of both sub-envs, each with its own model
    for index, rewarder in enumerate((first, second)):
        obs = buffer.next_observations[inds, index]
        np.testing.assert_allclose(buffer.rewards[inds, index], rewarder.predict(obs), rtol=1e-5, atol=1e-6)
    assert np.abs(first.predict(obs) - second.predict(obs)).max() > 1e-3  # the two models differ


def test_learned_return_of_an_episode_whose_steps_return_placeholders(reference: str) -> None:
    from sb3_dreamer import TrueRewardCallback

    no_refit = {**FAST, "refit_interval": 10**6}  # the model at the episode's end is the one of its steps
    env = DTWRewardWrapper(gym.make(TARGET), reference, reward_at_sampling=True, seed=0, **no_refit)
    env.sampler_attached = True  # stands in for SampledRewardCallback
    env.reset(seed=0)
    observations, truncated = [], False
    while not truncated:
        obs, reward, _, truncated, info = env.step(env.action_space.sample())
        observations.append(obs)
        assert reward == 0.0
    expected = float(env.rewarder.predict(np.array(observations)).sum())
    assert info["learned_episode_return"] == pytest.approx(expected, rel=1e-5) and expected != 0.0
    model, _ = sac_at_sampling(reference, reward_at_sampling=True)
    logged = TrueRewardCallback()
    model.learn(210, callback=[SampledRewardCallback(), logged])  # one finished 200-step episode
    assert len(logged.learned_returns) == 1 and logged.learned_returns[0] != 0.0  # not the sum of the placeholders
