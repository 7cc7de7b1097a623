"""Bad input to the DTW reward (issue 19, item 5): NaN/inf observations, a state of another reference, constant dims."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_dreamer.alignment import (
    NON_FINITE_REWARD,
    DTWRewarder,
    DTWRewardWrapper,
    TrajectoryDataset,
    VecDTWRewardWrapper,
    normalise,
    observation_scale,
)

th.set_num_threads(1)

LENGTH = 30
#: Small and exact: no refit during the tests (refit_interval), a short pre-fit, no time budget.
KWARGS = dict(
    pretrain_steps=50, refit_steps=10, refit_interval=10**6, refit_budget_seconds=None, net_arch=(16,), window=None, seed=0
)
CONSTANT = 0.5


def trajectory(phase: float) -> np.ndarray:
    """``(LENGTH, 3)`` observations: a sine, a cosine and a dimension that is constant at ``CONSTANT``."""
    t = np.arange(1, LENGTH + 1) / 5.0 + phase
    return np.stack([np.sin(t), np.cos(t), np.full(LENGTH, CONSTANT)], axis=1).astype(np.float32)


def make_reference(shift: float = 0.0) -> TrajectoryDataset:
    next_obs = np.concatenate([trajectory(0.0), trajectory(0.3)]) + np.float32(shift)
    return TrajectoryDataset(
        observations=next_obs,
        next_observations=next_obs,
        actions=np.zeros((len(next_obs), 1)),
        rewards=next_obs[:, 0].astype(np.float64),
        episode_lengths=[LENGTH, LENGTH],
        terminated=[False, False],
    )


class SineEnv(gym.Env):
    """Plays :func:`trajectory` (phase 0.1) for ``LENGTH`` steps; ``bad`` maps ``(episode, step)`` to a bad value."""

    def __init__(self, bad: dict[tuple[int, int], float] | None = None) -> None:
        self.observation_space = spaces.Box(-np.inf, np.inf, (3,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.bad = bad or {}
        self.episode, self.t = -1, 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.episode, self.t = self.episode + 1, 0
        return trajectory(0.1)[0], {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs = trajectory(0.1)[self.t].copy()
        if (self.episode, self.t) in self.bad:
            obs[1] = self.bad[(self.episode, self.t)]
        self.t += 1
        return obs, 1.0, False, self.t >= LENGTH, {}


def run_episode(env: gym.Env) -> tuple[np.ndarray, dict]:
    env.reset()
    rewards = []
    for _ in range(LENGTH):
        _, reward, terminated, truncated, info = env.step(0)
        rewards.append(reward)
    assert terminated or truncated
    return np.array(rewards), info


def test_nan_observation_skips_the_episode_and_training_continues() -> None:
    env = DTWRewardWrapper(SineEnv({(0, 7): np.nan, (0, 9): np.inf}), make_reference(), **KWARGS)
    with pytest.warns(RuntimeWarning, match=r"NaN or infinite values at step 7 \(0-based\) of episode 0") as record:
        rewards, info = run_episode(env)
    assert len(record) == 1  # once per episode, although step 9 is non-finite too
    assert np.all(np.isfinite(rewards)) and rewards[7] == rewards[9] == NON_FINITE_REWARD == 0.0
    assert info["alignment_skipped"] and "alignment_distance" not in info and info["original_episode_return"] == LENGTH
    assert env.rewarder.n_labels == 0 and env.rewarder.skipped_episodes == 1 and env.rewarder.n_episodes == 0
    # The next episode is labelled as usual, without any warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rewards, info = run_episode(env)
    assert np.all(np.isfinite(rewards)) and not info["alignment_skipped"] and info["alignment_labels_kept"] == LENGTH
    assert env.rewarder.n_labels == LENGTH and env.rewarder.n_episodes == 1 and env.rewarder.skipped_episodes == 1


def test_vec_wrapper_skips_only_the_episode_with_the_nan() -> None:
    venv = VecDTWRewardWrapper(DummyVecEnv([SineEnv, lambda: SineEnv({(0, 3): np.nan})]), make_reference(), **KWARGS)
    venv.reset()
    with pytest.warns(RuntimeWarning, match=r"step 3 \(0-based\) of episode 0 of env 1"):
        for step in range(LENGTH):
            _, rewards, dones, infos = venv.step(np.zeros(2, dtype=np.int64))
            assert np.all(np.isfinite(rewards)) and (rewards[1] == NON_FINITE_REWARD) == (step == 3)
    assert dones.all() and not infos[0]["alignment_skipped"] and infos[1]["alignment_skipped"]
    assert venv.rewarder.n_labels == LENGTH and venv.rewarder.n_episodes == 1 and venv.rewarder.skipped_episodes == 1


def test_strict_raises_on_nan() -> None:
    env = DTWRewardWrapper(SineEnv({(0, 7): np.nan}), make_reference(), strict=True, **KWARGS)
    with pytest.raises(ValueError, match=r"NaN or infinite values at step 7 \(0-based\) of episode 0.*strict=True"):
        run_episode(env)
    venv = VecDTWRewardWrapper(DummyVecEnv([lambda: SineEnv({(0, 2): np.nan})]), make_reference(), strict=True, **KWARGS)
    venv.reset()
    with pytest.raises(ValueError, match=r"NaN or infinite values at step 2 \(0-based\) of episode 0 of env 0"):
        for _ in range(3):
            venv.step(np.zeros(1, dtype=np.int64))
    # end_episode called directly: the same policy.
    episode = trajectory(0.1).astype(np.float64)
    episode[4, 0] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite values, the first at step 4"):
        DTWRewarder(make_reference(), strict=True, **KWARGS).end_episode(episode)
    lenient = DTWRewarder(make_reference(), **KWARGS)
    with pytest.warns(RuntimeWarning, match="the first at step 4.*labels are skipped"):
        assert lenient.end_episode(episode) is None
    assert lenient.n_labels == 0 and lenient.skipped_episodes == 1


def test_state_of_another_reference_is_rejected(tmp_path) -> None:
    env = DTWRewardWrapper(SineEnv({(0, 5): np.nan}), make_reference(), **KWARGS)
    with pytest.warns(RuntimeWarning):
        run_episode(env)  # skipped
    run_episode(env)  # labelled
    path = env.save_state(tmp_path / "state")
    other = DTWRewardWrapper(SineEnv(), make_reference(shift=0.01), **KWARGS)  # same shapes, other values
    with pytest.raises(ValueError, match="different reference"):
        other.load_state(path)
    assert other.rewarder.n_labels == 0  # nothing restored
    # The same reference (an equal dataset, not the same object) round-trips, skipped_episodes included.
    same = DTWRewardWrapper(SineEnv(), make_reference(), **dict(KWARGS, seed=5))
    same.load_state(path)
    probe = np.random.default_rng(0).normal(size=(16, 3))
    np.testing.assert_array_equal(same.rewarder.predict(probe), env.rewarder.predict(probe))
    assert same.rewarder.skipped_episodes == 1 and same.rewarder.n_labels == LENGTH
    # A state saved before the fingerprint existed loads with a warning.
    old = {key: value for key, value in env.get_state().items() if key not in ("reference_sha256", "skipped_episodes")}
    with pytest.warns(UserWarning, match="no reference fingerprint"):
        other.set_state(old)
    assert other.rewarder.n_labels == LENGTH and other.rewarder.skipped_episodes == 0


def test_observation_scale_rule() -> None:
    std = np.array([0.0, 5e-7, 2.0, 1e-3, 1e-3])
    mean = np.array([0.0, 0.0, 0.0, 0.0, 1e3])
    # std, or 1 below max(1e-6, 1e-5 |mean|): constant (0), float noise (5e-7), relative noise at |mean| = 1000.
    np.testing.assert_array_equal(observation_scale(std, mean), [1.0, 1.0, 2.0, 1e-3, 1.0])
    np.testing.assert_array_equal(observation_scale(std), [1.0, 1.0, 2.0, 1e-3, 1e-3])


def test_constant_dimension_has_one_scale_and_an_offset_in_it_is_harmless() -> None:
    reference = make_reference()
    rewarder = DTWRewarder(reference, **dict(KWARGS, pretrain_steps=300))
    obs = reference.next_observations.astype(np.float64)
    expected = observation_scale(obs.std(axis=0), obs.mean(axis=0))
    assert expected[2] == 1.0 and np.all(expected[:2] > 0.5)
    # Alignment and reward model divide by the same scale: exactly 1 for the constant dimension.
    assert rewarder.stats.std[2] == rewarder.model.obs_scale[2] == 1.0
    np.testing.assert_allclose(rewarder.stats.std, expected, rtol=1e-9)
    np.testing.assert_allclose(rewarder.model.obs_scale, expected, rtol=1e-9)
    shifted = obs.copy()
    shifted[:, 2] += 1e-3
    # Alignment: the offset moves the normalised observations by 1e-3, not by 1e-3 / tiny.
    np.testing.assert_allclose(normalise(shifted, rewarder.stats) - normalise(obs, rewarder.stats), [[0, 0, 1e-3]] * len(obs))
    # Reward model: with scale 1 the standardised input moves by 1e-3, so the prediction moves by at most 1e-3 times
    # the network's Lipschitz constant (product of the layers' spectral norms, tanh is 1-Lipschitz) times the label
    # std, plus float32 round-off (1e-5). A scale of 1e-4 (the former sqrt(var + 1e-8)) moved the input by 10.
    weights = [layer.weight.detach().numpy() for layer in rewarder.model.net if isinstance(layer, th.nn.Linear)]
    lipschitz = rewarder.model.label_std * np.prod([np.linalg.norm(w, 2) for w in weights])
    change = np.abs(rewarder.predict(shifted) - rewarder.predict(obs))
    assert change.max() <= 1e-3 * lipschitz + 1e-5
    assert change.max() < 0.01 * np.ptp(reference.rewards)  # and that bound is small against the rewards (range ~2)


def test_reward_at_sampling_checks_the_episode_at_its_end() -> None:
    """With ``reward_at_sampling=True`` no step is predicted: the NaN policy runs once, at the episode end."""
    env = DTWRewardWrapper(SineEnv({(0, 7): np.nan, (0, 9): np.inf}), make_reference(), reward_at_sampling=True, **KWARGS)
    env.sampler_attached = True  # stands in for SampledRewardCallback (the learner's buffer computes the rewards)
    env.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing before the episode ends
        for _ in range(LENGTH - 1):
            assert env.step(0)[1] == 0.0
    with pytest.warns(RuntimeWarning, match=r"NaN or infinite values at step 7 \(0-based\) of episode 0") as record:
        _, reward, _, truncated, info = env.step(0)
    assert len(record) == 1 and truncated and reward == 0.0
    assert info["alignment_skipped"] and env.rewarder.skipped_episodes == 1 and env.rewarder.n_labels == 0
    _, info = run_episode(env)
    assert not info["alignment_skipped"] and env.rewarder.n_labels == LENGTH
    strict = DTWRewardWrapper(SineEnv({(0, 7): np.nan}), make_reference(), reward_at_sampling=True, strict=True, **KWARGS)
    strict.sampler_attached = True
    with pytest.raises(ValueError, match=r"NaN or infinite values at step 7 \(0-based\) of episode 0.*strict=True"):
        run_episode(strict)
    venv = VecDTWRewardWrapper(DummyVecEnv([SineEnv, lambda: SineEnv({(0, 3): np.nan})]), make_reference(),
                               reward_at_sampling=True, **KWARGS)  # fmt: skip
    venv.sampler_attached = True
    venv.reset()
    with pytest.warns(RuntimeWarning, match=r"step 3 \(0-based\) of episode 0 of env 1"):
        for _ in range(LENGTH):
            _, rewards, dones, infos = venv.step(np.zeros(2, dtype=np.int64))
            assert np.all(rewards == 0.0)
    assert dones.all() and not infos[0]["alignment_skipped"] and infos[1]["alignment_skipped"]
    assert venv.rewarder.n_labels == LENGTH and venv.rewarder.skipped_episodes == 1
