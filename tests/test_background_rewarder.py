"""The background rewarder: the in-process rewarder's results one episode later, exact state round trips, clear errors."""

import multiprocessing

import gymnasium as gym
import numpy as np
import pytest
import torch as th

from sb3_dreamer.alignment import DTWRewarder, DTWRewardWrapper, TrajectoryDataset, record_trajectories
from sb3_dreamer.alignment.background import BackgroundRewarder

FAST = {"pretrain_steps": 50, "refit_steps": 10, "refit_interval": 100, "refit_budget_seconds": None, "net_arch": (16,)}


def swing_policy(obs: np.ndarray) -> np.ndarray:
    return np.array([2.0 * np.sign(obs[2] if abs(obs[2]) > 1e-3 else 1.0)], dtype=np.float32)


@pytest.fixture(scope="module")
def reference() -> TrajectoryDataset:
    return record_trajectories(swing_policy, "sb3_dreamer/PendulumSource-v0", n_episodes=2, seed=0)


@pytest.fixture
def one_thread():
    """The worker fits with one torch thread; the in-process rewarder it is compared with must too (same rounding)."""
    threads = th.get_num_threads()
    th.set_num_threads(1)
    yield
    th.set_num_threads(threads)


@pytest.fixture(scope="module")
def episodes() -> list[np.ndarray]:
    """Target episodes of different lengths (each long enough to trigger a refit at refit_interval 100)."""
    rng = np.random.default_rng(3)
    env = gym.make("sb3_dreamer/PendulumTarget-v0")
    result = []
    for index, length in enumerate([120, 150, 110, 130, 140]):
        env.reset(seed=index)
        result.append(np.stack([env.step(rng.uniform(-2, 2, size=1))[0] for _ in range(length)]).astype(np.float32))
    return result


def test_background_rewarder_gives_the_in_process_results_one_episode_later(reference, episodes, one_thread) -> None:
    sync = DTWRewarder(reference, seed=0, **FAST)
    background = BackgroundRewarder(reference, seed=0, **FAST)
    probe = episodes[0][:20]
    try:
        sync_predictions, sync_reports = [], []
        for index, episode in enumerate(episodes):
            sync_predictions.append(sync.predict(probe))
            predictions = background.predict(probe)
            # Episode 0 and 1 use the pre-fit; episode k >= 1 uses the model the in-process rewarder used at k - 1.
            np.testing.assert_array_equal(predictions, sync_predictions[max(index - 1, 0)])
            # The wrappers' per-step path of the predictor sent by the worker (its buffers rebuilt on unpickling).
            rows = [background.predictor.predict_row(row) for row in probe]
            np.testing.assert_allclose(rows, predictions, rtol=1e-5, atol=1e-6)
            report = background.end_episode(episode)
            sync_reports.append(sync.end_episode(episode))
            if index == 0:
                assert report is None and background.n_refits == 0
            else:  # the previous episode's labels, alignment and refit, computed in the worker
                expected = sync_reports[index - 1]
                assert report.episode == index - 1 and background.n_refits == index
                np.testing.assert_array_equal(report.labels, expected.labels)
                np.testing.assert_array_equal(report.alignment.path, expected.alignment.path)
                assert report.fit.n_steps == expected.fit.n_steps
        assert sync.n_refits == len(episodes) and background.n_episodes == sync.n_episodes
        assert not np.array_equal(sync_predictions[0], sync_predictions[-1])  # the refits changed the model
        assert background.worker_seconds > 0
    finally:
        background.close()
    assert not background._process.is_alive()


def test_background_state_round_trip_with_a_result_pending_continues_exactly(reference, episodes) -> None:
    first = BackgroundRewarder(reference, seed=0, **FAST)
    clone = BackgroundRewarder(reference, seed=1, **FAST)  # another seed: everything must come from the state
    probe = episodes[1][:30]
    try:
        for episode in episodes[:2]:
            first.end_episode(episode)
        state = first.get_state()
        assert "background.pending_predictor.layer0.weight" in state  # episode 1's refit is not applied yet
        clone.set_state(state)
        np.testing.assert_array_equal(clone.predict(probe), first.predict(probe))
        for episode in episodes[2:]:
            first_report, clone_report = first.end_episode(episode), clone.end_episode(episode)
            assert clone.n_refits == first.n_refits
            np.testing.assert_array_equal(clone.predict(probe), first.predict(probe))
        # The report restored from the state has no alignment (not saved); later ones are complete and equal.
        np.testing.assert_array_equal(clone_report.labels, first_report.labels)
    finally:
        first.close()
        clone.close()


def test_background_rewarder_accepts_an_in_process_state(reference, episodes, one_thread) -> None:
    sync = DTWRewarder(reference, seed=0, **FAST)
    for episode in episodes[:2]:
        sync.end_episode(episode)
    background = BackgroundRewarder(reference, seed=5, **FAST)
    try:
        background.set_state(sync.get_state())
        probe = episodes[2]
        np.testing.assert_array_equal(background.predict(probe), sync.predict(probe))
        assert (background.n_refits, background.n_episodes, background.n_labels) == (2, 2, sync.n_labels)
    finally:
        background.close()


def test_background_rewarder_errors_name_the_problem(reference, episodes) -> None:
    with pytest.raises(ValueError, match="unknown label_mode 'nope'"):
        BackgroundRewarder(reference, label_mode="nope")
    background = BackgroundRewarder(reference, seed=0, **FAST)
    other = record_trajectories(swing_policy, "sb3_dreamer/PendulumSource-v0", n_episodes=2, seed=7)
    try:
        with pytest.raises(ValueError, match="different reference"):
            background.set_state(DTWRewarder(other, seed=0, **FAST).get_state())
        with pytest.raises(ValueError, match="episode observations"):
            background.end_episode(np.zeros((10, reference.obs_dim + 1)))
        bad = episodes[0].copy()
        bad[4, 1] = np.nan
        with pytest.warns(RuntimeWarning, match="first at step 4"):
            assert background.end_episode(bad) is None
        assert background.skipped_episodes == 1 and background.n_episodes == 0
        background.end_episode(episodes[0])  # the worker still serves after the errors
        assert background.get_state()["counters"][1] == 1
    finally:
        background.close()


def test_wrapper_in_the_background_reports_the_previous_episode_and_closes_the_worker(reference) -> None:
    env = DTWRewardWrapper(gym.make("sb3_dreamer/PendulumTarget-v0"), reference, background=True, seed=0, **FAST)
    env.action_space.seed(0)
    env.reset(seed=0)
    ends = []
    while len(ends) < 3:
        _, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert np.isfinite(reward)
        if terminated or truncated:
            ends.append(info)
            env.reset()
    assert "alignment_episode" not in ends[0] and not ends[0]["alignment_skipped"]
    assert [info["alignment_episode"] for info in ends[1:]] == [0, 1]
    process = env.rewarder._process
    env.close()
    assert not process.is_alive()


def test_a_daemonic_process_gets_a_clear_error(reference, monkeypatch) -> None:
    # SubprocVecEnv workers are daemonic and cannot start processes: say what to do instead of failing in Process.start.
    monkeypatch.setitem(multiprocessing.current_process()._config, "daemon", True)
    with pytest.raises(ValueError, match=r"daemonic process .* VecDTWRewardWrapper\(venv, reference, background=True\)"):
        BackgroundRewarder(reference, seed=0, **FAST)
