"""DTW reward wrappers: env checks, errors, state round trip, seeded reproducibility and use with SB3 algorithms."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.env_checker import check_env
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv

import sb3_dreamer.envs  # noqa: F401  (registers the sb3_dreamer/... ids)
from sb3_dreamer.alignment import (
    LABEL_MODES,
    AlignmentCheckpointCallback,
    DTWRewarder,
    DTWRewardWrapper,
    TrajectoryDataset,
    VecDTWRewardWrapper,
    label_episode,
    record_trajectories,
)

th.set_num_threads(1)

FAST = {"pretrain_steps": 50, "refit_steps": 10, "refit_interval": 100, "refit_budget_seconds": None, "net_arch": (16,)}


def swing_policy(obs: np.ndarray) -> np.ndarray:
    """Energy-pumping controller: a deterministic, non-trivial reference behaviour for Pendulum."""
    return np.array([2.0 * np.sign(obs[2] if abs(obs[2]) > 1e-3 else 1.0)], dtype=np.float32)


@pytest.fixture(scope="module")
def reference_path(tmp_path_factory) -> str:
    dataset = record_trajectories(swing_policy, "sb3_dreamer/PendulumSource-v0", n_episodes=2, seed=0)
    return dataset.save(tmp_path_factory.mktemp("ref") / "pendulum_source.npz")


def run_random(env: gym.Env, n_steps: int, seed: int) -> tuple[list[float], list[dict]]:
    env.action_space.seed(seed)
    env.reset(seed=seed)
    rewards, end_infos = [], []
    for _ in range(n_steps):
        _, reward, terminated, truncated, info = env.step(env.action_space.sample())
        rewards.append(reward)
        if terminated or truncated:
            end_infos.append(info)
            env.reset()
    return rewards, end_infos


@pytest.mark.parametrize("label_mode", LABEL_MODES)
def test_check_env_passes(reference_path: str, label_mode: str) -> None:
    env = DTWRewardWrapper(gym.make("sb3_dreamer/PendulumTarget-v0"), reference_path, label_mode=label_mode, seed=0, **FAST)
    check_env(env)
    check_env(ActionRepeatedTarget(reference_path))


def ActionRepeatedTarget(reference_path: str) -> gym.Env:
    from sb3_dreamer.envs import ActionRepeat, RewardFree

    inner = RewardFree(ActionRepeat(gym.make("sb3_dreamer/PendulumTarget-v0"), 2))
    return DTWRewardWrapper(inner, reference_path, label_mode="source_reward_split", seed=0, **FAST)


def test_rewards_info_and_labels(reference_path: str) -> None:
    env = DTWRewardWrapper(gym.make("sb3_dreamer/PendulumTarget-v0"), reference_path, seed=0, **FAST)
    rewards, end_infos = run_random(env, 400, seed=1)
    assert all(isinstance(r, float) for r in rewards)
    assert len(end_infos) == 2
    for info in end_infos:
        assert isinstance(info["original_reward"], float)
        assert info["alignment_reference"] in (0, 1) and info["alignment_distance"] > 0
        assert 0 <= info["alignment_end_index"] < 200
    assert env.rewarder.n_episodes == 2 and env.rewarder.n_refits == 2
    obs, labels = env.rewarder.label_data
    assert obs.shape == (400, 3) and labels.shape == (400,)
    # source_reward labels are Pendulum rewards of the reference: within the env's reward range.
    assert np.all(labels <= 0) and np.all(labels >= -16.3)


def test_pretrained_model_predicts_reference_rewards(reference_path: str) -> None:
    dataset = TrajectoryDataset.load(reference_path)
    env = DTWRewardWrapper(gym.make("sb3_dreamer/PendulumSource-v0"), dataset, seed=0, pretrain_steps=1500, net_arch=(64, 64))
    predicted = env.rewarder.predict(dataset.next_observations)
    error = np.mean((predicted - dataset.rewards) ** 2)
    assert error < 0.1 * np.var(dataset.rewards)


def test_tracking_reference_labels_leave_one_out(reference_path: str) -> None:
    dataset = TrajectoryDataset.load(reference_path)
    tracking = DTWRewarder(dataset, label_mode="tracking", pretrain=False, coarse_stride=1)
    labels = tracking.reference_labels()
    first, second = (np.asarray(seq) for seq in tracking._references)
    expected_first, _ = label_episode(first, [second], None, mode="tracking", window=100, coarse_stride=1)
    assert labels.shape == dataset.rewards.shape and np.all(labels <= 0) and labels.min() < -1e-3
    np.testing.assert_allclose(labels[: len(first)], expected_first)
    # With a single reference episode there is nothing to leave out: zeros; source modes use the source rewards.
    single = record_trajectories(swing_policy, "sb3_dreamer/PendulumSource-v0", n_episodes=1, seed=0)
    one_labels = DTWRewarder(single, "tracking", pretrain=False).reference_labels()
    assert np.all(one_labels == 0) and one_labels.shape == single.rewards.shape
    np.testing.assert_array_equal(DTWRewarder(dataset, pretrain=False).reference_labels(), dataset.rewards)


def test_tracking_exp_scale_from_reference(reference_path: str) -> None:
    dataset = TrajectoryDataset.load(reference_path)
    kwargs = dict(pretrain=False, coarse_stride=1, window=None)
    costs = -DTWRewarder(dataset, "tracking", **kwargs).reference_labels()
    rewarder = DTWRewarder(dataset, "tracking_exp", **kwargs)
    # cost_scale: median leave-one-out cost between the reference episodes; reference labels exp(-cost / scale).
    assert rewarder.cost_scale == pytest.approx(np.median(costs)) and rewarder.cost_scale > 0
    labels = rewarder.reference_labels()
    np.testing.assert_allclose(labels, np.exp(-costs / rewarder.cost_scale))
    assert np.median(labels) == pytest.approx(np.exp(-1.0), rel=1e-3)  # even count: mean of the two middle ones
    # A target episode far from the reference gets labels near 0, never negative; the reference itself 1.
    reference_episode = next(dataset.episodes()).next_observations
    far = reference_episode + 5.0 * dataset.next_observations.std(axis=0)
    far_labels = rewarder.end_episode(far).labels
    assert np.all(far_labels < 0.01) and np.all(far_labels >= 0)
    np.testing.assert_allclose(rewarder.end_episode(reference_episode).labels[:-10], 1.0, atol=1e-6)
    # One reference episode: no leave-one-out cost, the scale falls back to obs_dim and the reference labels are 1.
    single = record_trajectories(swing_policy, "sb3_dreamer/PendulumSource-v0", n_episodes=1, seed=0)
    one = DTWRewarder(single, "tracking_exp", pretrain=False)
    assert one.cost_scale == single.obs_dim and np.all(one.reference_labels() == 1.0)
    # Other modes do not use a scale.
    assert DTWRewarder(dataset, **kwargs).cost_scale == 1.0


def test_max_label_cost_drops_labels_far_from_the_reference(reference_path: str) -> None:
    dataset = TrajectoryDataset.load(reference_path)
    reference_episode = next(dataset.episodes()).next_observations
    far = reference_episode[:50] + 20.0 * dataset.next_observations.std(axis=0)  # 20 std away in every dimension
    episode = np.concatenate([reference_episode, far])
    kwargs = dict(pretrain=False, refit_interval=10**6, coarse_stride=1)
    filtered = DTWRewarder(dataset, max_label_cost=0.5, **kwargs)
    report = filtered.end_episode(episode)
    # The copy of the reference aligns at cost ~0 (its last steps may warp onto neighbours), the far part never.
    assert report.kept[: len(reference_episode) - 10].all() and not report.kept[len(reference_episode) :].any()
    np.testing.assert_array_equal(filtered.label_data[0], episode[report.kept].astype(np.float32))
    np.testing.assert_array_equal(filtered.label_data[1], report.labels[report.kept])
    assert len(DTWRewarder(dataset, **kwargs).end_episode(episode).labels) == len(episode)
    unfiltered = DTWRewarder(dataset, **kwargs)
    unfiltered.end_episode(episode)
    assert len(unfiltered.label_data[1]) == len(episode)
    # tracking labels are the cost itself: nothing is dropped
    assert DTWRewarder(dataset, "tracking", max_label_cost=0.5, **kwargs).end_episode(episode).kept.all()
    with pytest.raises(ValueError, match="max_label_cost must be >= 0"):
        DTWRewarder(dataset, max_label_cost=-1.0)
    with pytest.raises(ValueError, match="'reference' or None"):
        DTWRewarder(dataset, max_label_cost="auto")
    # Every label dropped and no anchor: the refit has nothing to fit and is skipped.
    empty = DTWRewarder(dataset, pretrain=False, anchor_reference=False, max_label_cost=0.5, refit_interval=1)
    assert empty.end_episode(far).fit is None and empty.n_refits == 0


def test_max_label_cost_from_the_reference_alone(reference_path: str) -> None:
    """``max_label_cost="reference"``: the 95th percentile of the reference steps' leave-one-out costs (no target reward)."""
    from sb3_dreamer.alignment.rewarder import REFERENCE_COST_QUANTILE

    dataset = TrajectoryDataset.load(reference_path)
    kwargs = dict(pretrain=False, refit_interval=10**6, coarse_stride=1)
    rewarder = DTWRewarder(dataset, max_label_cost="reference", **kwargs)
    costs = -DTWRewarder(dataset, "tracking", **kwargs).reference_labels()  # the same leave-one-out costs
    assert rewarder.max_label_cost == pytest.approx(float(np.quantile(costs, REFERENCE_COST_QUANTILE)))
    assert 0.0 < rewarder.max_label_cost < float(costs.max())
    one_episode = record_trajectories(swing_policy, "sb3_dreamer/PendulumSource-v0", n_episodes=1, seed=0)
    with pytest.raises(ValueError, match="at least two reference episodes"):
        DTWRewarder(one_episode, max_label_cost="reference")


def test_reference_only_control_aligns_but_stores_no_label(reference_path: str) -> None:
    """``dtw_labels=False``: episodes are aligned (diagnostics logged) but the model learns from the reference alone."""
    env = DTWRewardWrapper(gym.make("sb3_dreamer/PendulumTarget-v0"), reference_path, dtw_labels=False, seed=0, **FAST)
    _, end_infos = run_random(env, 400, seed=0)
    rewarder = env.rewarder
    assert len(end_infos) == 2 and all("alignment_distance" in info for info in end_infos)
    assert rewarder.n_labels == 0 and all(info["alignment_labels_kept"] == 0 for info in end_infos)
    assert rewarder.n_refits == 2  # refits on the reference anchor only
    fit_obs, _ = rewarder.label_data
    assert len(fit_obs) == 0


@pytest.mark.parametrize("anchor_reference", [True, False])
def test_refit_data_with_and_without_reference_anchor(reference_path: str, anchor_reference: bool, monkeypatch) -> None:
    env = DTWRewardWrapper(
        gym.make("sb3_dreamer/PendulumTarget-v0"), reference_path, seed=0, anchor_reference=anchor_reference, **FAST
    )
    fits = []
    original_fit = env.rewarder.model.fit
    monkeypatch.setattr(
        env.rewarder.model, "fit", lambda obs, labels, **kw: fits.append((obs, labels)) or original_fit(obs, labels, **kw)
    )
    _, end_infos = run_random(env, 200, seed=3)
    (obs, labels), reference = fits[-1], TrajectoryDataset.load(reference_path)
    store_obs, store_labels = env.rewarder.label_data
    assert len(fits) == 1 and end_infos[0]["alignment_labels_kept"] == 200
    if anchor_reference:
        np.testing.assert_array_equal(obs, np.concatenate([reference.next_observations.astype(np.float32), store_obs]))
        np.testing.assert_array_equal(labels, np.concatenate([reference.rewards, store_labels]))
    else:
        np.testing.assert_array_equal(obs, store_obs)
        np.testing.assert_array_equal(labels, store_labels)


def test_mismatched_dim_raises(reference_path: str) -> None:
    # The message names the reference file, the env it was recorded on, and the env it is used with.
    message = (
        rf"observation dim mismatch: reference file '{reference_path}' \(recorded on 'sb3_dreamer/PendulumSource-v0'\) "
        r"has 3-dim observations, but env '{}' has observation shape \(4,\)"
    )
    with pytest.raises(ValueError, match=message.format("sb3_dreamer/CartPoleSource-v0")):
        DTWRewardWrapper(gym.make("sb3_dreamer/CartPoleSource-v0"), reference_path)
    with pytest.raises(ValueError, match=message.format("CartPole-v1")):
        VecDTWRewardWrapper(DummyVecEnv([lambda: gym.make("CartPole-v1")]), reference_path)


@pytest.mark.parametrize(("content", "message"), [(b"", "it is empty"), (b"step,reward\n1,0.5\n", "it is a text file")])
def test_load_state_of_a_bad_file_names_it(tmp_path, reference_path: str, content: bytes, message: str) -> None:
    env = DTWRewardWrapper(gym.make("sb3_dreamer/PendulumTarget-v0"), reference_path, seed=0, **FAST)
    path = tmp_path / "state.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"wrapper state file '{path}' is not a valid .npz archive: {message}.*save_state"):
        env.load_state(path)


@pytest.mark.parametrize(
    ("content", "message"), [(b"", "is empty"), (b"PK\x03\x04 garbage", "not a valid .npz"), (None, "not a valid .npz")]
)
def test_bad_reference_files_raise(tmp_path, reference_path: str, content: bytes | None, message: str) -> None:
    path = tmp_path / "reference.npz"
    if content is None:  # truncated copy of a valid file
        data = open(reference_path, "rb").read()
        content = data[: len(data) // 3]
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as error:
        DTWRewardWrapper(gym.make("sb3_dreamer/PendulumTarget-v0"), str(path))
    assert "reference.npz" in str(error.value)


class NaNAfter(gym.Wrapper):
    """Returns a NaN observation from the given step on."""

    def __init__(self, env: gym.Env, step: int) -> None:
        super().__init__(env)
        self.nan_step, self.count = step, 0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.count += 1
        if self.count >= self.nan_step:
            obs = np.full_like(obs, np.nan)
        return obs, reward, terminated, truncated, info


def test_nan_observation_raises_when_strict(reference_path: str) -> None:
    env = DTWRewardWrapper(NaNAfter(gym.make("sb3_dreamer/PendulumTarget-v0"), 3), reference_path, seed=0, strict=True, **FAST)
    env.reset(seed=0)
    env.step(env.action_space.sample())
    env.step(env.action_space.sample())
    with pytest.raises(ValueError, match="NaN"):
        env.step(env.action_space.sample())


def test_seeded_runs_are_identical(reference_path: str) -> None:
    def rewards(seed: int) -> list[float]:
        env = DTWRewardWrapper(gym.make("sb3_dreamer/PendulumTarget-v0"), reference_path, seed=seed, **FAST)
        return run_random(env, 500, seed=3)[0]

    first, second = rewards(0), rewards(0)
    assert first == second
    assert first != rewards(1)


def test_state_round_trip(tmp_path, reference_path: str) -> None:
    env = DTWRewardWrapper(gym.make("sb3_dreamer/PendulumTarget-v0"), reference_path, seed=0, **FAST)
    run_random(env, 250, seed=4)  # one episode labelled and refitted, 50 steps into the second
    path = env.save_state(tmp_path / "state")
    restored = DTWRewardWrapper(gym.make("sb3_dreamer/PendulumTarget-v0"), reference_path, seed=123, **FAST)
    restored.load_state(path)
    probe = np.random.default_rng(0).uniform(-1, 1, size=(64, 3)) * np.array([1, 1, 8])
    np.testing.assert_array_equal(restored.rewarder.predict(probe), env.rewarder.predict(probe))
    for name, value in env.get_state().items():
        np.testing.assert_array_equal(restored.get_state()[name], value, err_msg=name)
    # Both continue identically: same episode buffer, label store, Adam moments and sampling RNG.
    episode = np.random.default_rng(1).normal(size=(150, 3))
    env.rewarder.end_episode(episode)
    restored.rewarder.end_episode(episode)
    np.testing.assert_array_equal(restored.rewarder.predict(probe), env.rewarder.predict(probe))


def test_vec_wrapper_matches_single_env_wrapper(reference_path: str) -> None:
    single = DTWRewardWrapper(gym.make("sb3_dreamer/PendulumTarget-v0"), reference_path, seed=0, **FAST)
    venv = VecDTWRewardWrapper(
        DummyVecEnv([lambda: gym.make("sb3_dreamer/PendulumTarget-v0")]), reference_path, seed=0, **FAST
    )
    venv.seed(5)
    venv.reset()
    single.reset(seed=5)
    actions = np.random.default_rng(2).uniform(-2, 2, size=(450, 1)).astype(np.float32)
    for step, action in enumerate(actions):
        _, vec_reward, dones, infos = venv.step(action[None])
        _, reward, terminated, truncated, info = single.step(action)
        # Batch and single-row paths round float32 sums differently.
        assert vec_reward.dtype == np.float32 and vec_reward[0] == pytest.approx(reward, rel=1e-5, abs=1e-6), step
        assert infos[0]["original_reward"] == pytest.approx(info["original_reward"], rel=1e-6)  # VecEnv rewards are float32
        if terminated or truncated:
            assert dones[0] and infos[0]["alignment_distance"] == pytest.approx(info["alignment_distance"])
            single.reset()
    assert venv.rewarder.n_refits == single.rewarder.n_refits == 2


def test_vec_wrapper_several_envs_and_state(tmp_path, reference_path: str) -> None:
    venv = VecDTWRewardWrapper(make_vec_env("sb3_dreamer/PendulumTarget-v0", n_envs=3, seed=0), reference_path, seed=0, **FAST)
    venv.reset()
    ends = 0
    for _ in range(210):
        _, rewards, _, infos = venv.step(np.zeros((3, 1), dtype=np.float32))
        assert rewards.shape == (3,)
        ends += sum("alignment_distance" in info for info in infos)
    assert ends == 3 and venv.rewarder.n_episodes == 3
    path = venv.save_state(tmp_path / "vec_state.npz")
    clone = VecDTWRewardWrapper(make_vec_env("sb3_dreamer/PendulumTarget-v0", n_envs=3), reference_path, seed=9, **FAST)
    clone.load_state(path)
    probe = np.random.default_rng(0).normal(size=(10, 3))
    np.testing.assert_array_equal(clone.rewarder.predict(probe), venv.rewarder.predict(probe))
    assert [len(buffer) for buffer in clone._episode_obs] == [10, 10, 10]


def test_sac_on_pendulum_pair_with_checkpoint_callback(tmp_path, reference_path: str) -> None:
    wrapper_kwargs = {"reference": reference_path, "seed": 0, **FAST}
    env = make_vec_env(
        "sb3_dreamer/PendulumTarget-v0", n_envs=1, seed=0, wrapper_class=DTWRewardWrapper, wrapper_kwargs=wrapper_kwargs
    )
    callback = AlignmentCheckpointCallback(save_freq=150, save_path=str(tmp_path), name_prefix="sac")
    model = SAC(
        "MlpPolicy", env, learning_starts=100, batch_size=32, policy_kwargs={"net_arch": [16, 16]}, seed=0, device="cpu"
    )
    model.learn(300, callback=callback)
    assert model.num_timesteps == 300
    # Monitor sits under the wrapper (make_vec_env), so episode returns are the true env rewards.
    assert len(model.ep_info_buffer) == 1 and model.ep_info_buffer[0]["r"] < 0
    saved = sorted(p.name for p in tmp_path.iterdir())
    assert saved == ["sac_alignment_150_steps.npz", "sac_alignment_300_steps.npz"]
    restored = DTWRewardWrapper(gym.make("sb3_dreamer/PendulumTarget-v0"), reference_path, seed=5, **FAST)
    restored.load_state(tmp_path / "sac_alignment_300_steps.npz")
    live = env.envs[0].get_wrapper_attr("rewarder")
    probe = np.random.default_rng(0).normal(size=(10, 3))
    np.testing.assert_array_equal(restored.rewarder.predict(probe), live.predict(probe))


def test_ppo_with_vec_wrapper_and_callback(tmp_path, reference_path: str) -> None:
    venv = VecDTWRewardWrapper(make_vec_env("sb3_dreamer/PendulumTarget-v0", n_envs=2, seed=0), reference_path, seed=0, **FAST)
    model = PPO("MlpPolicy", venv, n_steps=128, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(512, callback=AlignmentCheckpointCallback(save_freq=128, save_path=str(tmp_path), name_prefix="ppo"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ppo_alignment_256_steps.npz", "ppo_alignment_512_steps.npz"]
    assert venv.rewarder.n_episodes == 2


def test_callback_without_wrapper_raises(tmp_path) -> None:
    model = PPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=64, n_epochs=1, device="cpu")
    with pytest.raises(ValueError, match="no DTWRewardWrapper"):
        model.learn(64, callback=AlignmentCheckpointCallback(save_freq=10, save_path=str(tmp_path)))


def test_time_warp_pair_split_labels_keep_the_return() -> None:
    """Repeat 4 -> repeat 2 (the registered time-warp pair): every target step spans half a source step, so DTW maps two
    target steps onto each source step; ``source_reward_split`` labels then sum to the target's true return (the
    reward is summed over the inner steps) and ``source_reward`` labels to about twice it."""
    reference = record_trajectories(swing_policy, "sb3_dreamer/PendulumRepeat4-v0", n_episodes=3, seed=0)
    target = record_trajectories(swing_policy, "sb3_dreamer/PendulumRepeat2-v0", n_episodes=3, seed=0)
    kwargs = dict(window=None, pretrain=False, refit_interval=10**9, coarse_stride=1)
    split = DTWRewarder(reference, label_mode="source_reward_split", **kwargs)
    mean = DTWRewarder(reference, label_mode="source_reward", **kwargs)
    for episode in target.episodes():
        true_return = episode.rewards.sum()
        assert split.end_episode(episode.next_observations).labels.sum() / true_return == pytest.approx(1.0, abs=0.05)
        assert mean.end_episode(episode.next_observations).labels.sum() / true_return == pytest.approx(2.0, abs=0.15)
