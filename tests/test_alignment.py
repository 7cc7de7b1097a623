"""DTW alignment, label functions, reward model and trajectory datasets (sb3_dreamer.alignment)."""

import os

import numpy as np
import pytest
import torch as th
from dtaidistance import dtw, dtw_ndim

from sb3_dreamer.alignment import (
    RewardModel,
    TrajectoryDataset,
    align,
    best_path,
    label_episode,
    record_trajectories,
    reference_statistics,
    source_reward_labels,
    source_reward_split_labels,
    tracking_exp_labels,
    tracking_labels,
)

th.set_num_threads(1)


def brute_force_dtw(a: np.ndarray, b: np.ndarray, window: int | None = None, open_end: bool = False) -> float:
    """Textbook DTW dynamic programme: squared Euclidean local cost, sqrt of the accumulated cost.

    Band as dtaidistance implements it: -window - max(0, n - m) < j - i < window + max(0, m - n).
    """
    n, m = len(a), len(b)
    cost = np.full((n + 1, m + 1), np.inf)
    cost[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            if window and not (-window - max(0, n - m) < j - i < window + max(0, m - n)):
                continue
            local = float(np.sum((a[i - 1] - b[j - 1]) ** 2))
            cost[i, j] = local + min(cost[i - 1, j - 1], cost[i - 1, j], cost[i, j - 1])
    return float(np.sqrt(cost[n, 1:].min() if open_end else cost[n, m]))


def path_cost(a: np.ndarray, b: np.ndarray, path: np.ndarray) -> float:
    return float(np.sqrt(np.sum((a[path[:, 0]] - b[path[:, 1]]) ** 2)))


def make_dataset(n_episodes: int = 2, length: int = 20, dim: int = 3, seed: int = 0) -> TrajectoryDataset:
    rng = np.random.default_rng(seed)
    n = n_episodes * length
    return TrajectoryDataset(
        observations=rng.normal(size=(n, dim)),
        next_observations=rng.normal(size=(n, dim)),
        actions=rng.uniform(-1, 1, size=(n, 1)),
        rewards=rng.normal(size=n),
        episode_lengths=[length] * n_episodes,
        terminated=[False] * n_episodes,
        env_id="Test-v0",
    )


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("window", [None, 3])
def test_distance_matches_dtaidistance_and_brute_force(seed: int, window: int | None) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(7 + seed, 3)), rng.normal(size=(9, 3))
    result = align(a, [b], window=window, open_end=False)
    reference = dtw_ndim.distance(a, b, window=window)
    assert result.distance == pytest.approx(reference, rel=1e-9)
    assert result.distance == pytest.approx(brute_force_dtw(a, b, window), rel=1e-9)
    # The returned path realises the distance, starts at (0, 0) and ends at the last cells.
    assert path_cost(a, b, result.path) == pytest.approx(result.distance, rel=1e-9)
    assert tuple(result.path[0]) == (0, 0) and tuple(result.path[-1]) == (len(a) - 1, len(b) - 1)
    assert np.all(np.diff(result.path, axis=0) >= 0) and np.all(np.diff(result.path, axis=0).sum(axis=1) >= 1)


@pytest.mark.parametrize("seed", range(6))
def test_best_path_is_dtaidistance_backtrack(seed: int) -> None:
    # Integer-valued series make many equal accumulated costs, so tie-breaking is exercised; random windows and
    # open-end columns cover band edges (inf cells) and paths that end before the last column.
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 3, size=(rng.integers(5, 40), 2)).astype(float)
    b = rng.integers(0, 3, size=(rng.integers(5, 40), 2)).astype(float)
    window = [None, 2, 5][seed % 3]
    _, wps = dtw_ndim.warping_paths_fast(a, b, window=window, psi=(0, 0, 0, len(b)), psi_neg=False)
    for col in {len(b), int(np.argmin(wps[-1, 1:])) + 1, int(rng.integers(1, len(b) + 1))}:
        if not np.isfinite(wps[-1, col]):
            continue
        expected = np.asarray(dtw.best_path(wps, row=len(a), col=col), dtype=np.int64).reshape(-1, 2)
        np.testing.assert_array_equal(best_path(wps, row=len(a), col=col), expected)


@pytest.mark.parametrize("seed", range(3))
def test_open_end_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(10 + seed)
    a, b = rng.normal(size=(6, 2)), rng.normal(size=(12, 2))
    result = align(a, [b], open_end=True)
    assert result.distance == pytest.approx(brute_force_dtw(a, b, open_end=True), rel=1e-9)
    assert path_cost(a, b, result.path) == pytest.approx(result.distance, rel=1e-9)
    assert result.path[-1, 1] == result.end_index


def test_open_end_finds_prefix() -> None:
    rng = np.random.default_rng(0)
    reference = np.cumsum(rng.normal(size=(200, 3)), axis=0)
    target = reference[:80] + rng.normal(scale=0.01, size=(80, 3))
    result = align(target, [reference], open_end=True)
    assert abs(result.end_index - 79) <= 1
    assert result.distance < 0.5
    closed = align(target, [reference], open_end=False)
    assert closed.end_index == 199 and closed.distance > 10 * result.distance


def test_best_reference_is_chosen() -> None:
    rng = np.random.default_rng(1)
    references = [np.cumsum(rng.normal(size=(50, 2)), axis=0) for _ in range(3)]
    target = references[2][::2] + 0.01
    result = align(target, references, open_end=True)
    assert result.reference_index == 2


# Length pairs and windows for which dtaidistance 2.5.1's C warping paths are wrong (T == R == 2 * window, T > R with
# T - R + 2 * window == R, T < R with window in [T / 2, T - 1]; benchmarks/dtaidistance_window_check.py), and two
# unaffected ones. align must agree with the textbook programme on all of them.
@pytest.mark.parametrize(
    ("n_target", "n_reference", "window"), [(20, 20, 10), (20, 15, 5), (12, 20, 6), (12, 20, 11), (20, 20, 9), (15, 9, 4)]
)
@pytest.mark.parametrize("open_end", [False, True])
def test_windowed_alignment_matches_brute_force(n_target: int, n_reference: int, window: int, open_end: bool) -> None:
    rng = np.random.default_rng(n_target * 100 + n_reference + window)
    a, b = rng.normal(size=(n_target, 2)), rng.normal(size=(n_reference, 2))
    result = align(a, [b], window=window, open_end=open_end)
    assert result.distance == pytest.approx(brute_force_dtw(a, b, window, open_end=open_end), rel=1e-9)
    assert path_cost(a, b, result.path) == pytest.approx(result.distance, rel=1e-9)


def test_sequence_aligns_to_itself_with_half_length_window() -> None:
    # The symptom of the dtaidistance bug: a 200-step Pendulum episode against itself at the default window 100 got an
    # infinite last cell and a path off the diagonal.
    x = np.random.default_rng(3).normal(size=(40, 3))
    result = align(x, [x], window=20, open_end=True)
    assert result.distance == 0.0 and result.end_index == 39
    np.testing.assert_array_equal(result.path, np.stack([np.arange(40), np.arange(40)], axis=1))


def test_window_is_respected() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(30, 2)), rng.normal(size=(30, 2))
    result = align(a, [b], window=2, open_end=False)
    assert np.max(np.abs(result.path[:, 0] - result.path[:, 1])) < 2


def test_normalisation_uses_reference_statistics() -> None:
    rng = np.random.default_rng(3)
    reference = rng.normal(size=(40, 2)) * np.array([1000.0, 1.0])
    stats = reference_statistics([reference])
    np.testing.assert_allclose(stats.mean, reference.mean(axis=0))
    np.testing.assert_allclose(stats.std, reference.std(axis=0))
    scaled = align(reference[:20], [reference], stats=stats)
    expected = dtw_ndim.distance(
        (reference[:20] - stats.mean) / stats.std, (reference - stats.mean) / stats.std, psi=(0, 0, 0, 40)
    )
    assert scaled.distance == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((0, 3)), "empty"),
        (np.zeros((5, 2)), "dim"),
        (np.array([[0.0, np.nan, 0.0]] * 4), "NaN"),
        (np.array([[0.0, np.inf, 0.0]] * 4), "NaN or infinite"),
    ],
)
def test_invalid_inputs_raise(bad: np.ndarray, message: str) -> None:
    reference = np.zeros((10, 3))
    with pytest.raises(ValueError, match=message):
        align(bad, [reference])
    with pytest.raises(ValueError, match=message):
        align(np.zeros((4, 3)), [reference, bad])


def test_no_reference_raises() -> None:
    with pytest.raises(ValueError, match="at least one reference"):
        align(np.zeros((4, 3)), [])


def test_split_labels_halve_rewards_of_doubled_target() -> None:
    rng = np.random.default_rng(4)
    source = np.cumsum(rng.normal(size=(25, 3)), axis=0)
    rewards = rng.uniform(0.5, 2.0, size=25)
    target = np.repeat(source, 2, axis=0)  # every source step taken twice: action-repeat ratio 2
    labels, alignment = label_episode(target, [source], [rewards], mode="source_reward_split", window=None)
    np.testing.assert_allclose(labels, np.repeat(rewards / 2, 2))
    assert labels.sum() == pytest.approx(rewards.sum())
    assert alignment.end_index == 24
    mean_labels, _ = label_episode(target, [source], [rewards], mode="source_reward", window=None)
    np.testing.assert_allclose(mean_labels, np.repeat(rewards, 2))


def test_labels_on_hand_made_path() -> None:
    # target step 0 <- source 0 and 1; target steps 1, 2 <- source 2; target step 3 <- source 3.
    path = np.array([[0, 0], [0, 1], [1, 2], [2, 2], [3, 3]])
    rewards = np.array([1.0, 3.0, 4.0, 10.0, 100.0])
    np.testing.assert_allclose(source_reward_labels(path, 4, rewards), [2.0, 4.0, 4.0, 10.0])
    split = source_reward_split_labels(path, 4, rewards)
    np.testing.assert_allclose(split, [4.0, 2.0, 2.0, 10.0])
    assert split.sum() == pytest.approx(rewards[:4].sum())  # segment total up to the end index is preserved
    target = np.array([[0.0], [1.0], [2.0], [3.0]])
    reference = np.array([[0.0], [2.0], [1.0], [5.0], [9.0]])
    np.testing.assert_allclose(tracking_labels(path, target, reference), [-2.0, 0.0, -1.0, -4.0])
    with pytest.raises(ValueError, match="cover every target step"):
        source_reward_labels(path, 5, rewards)


def test_tracking_labels_zero_on_reference() -> None:
    rng = np.random.default_rng(5)
    reference = rng.normal(size=(30, 4))
    labels, _ = label_episode(reference, [reference], None, mode="tracking", stats=reference_statistics([reference]))
    np.testing.assert_allclose(labels, 0.0, atol=1e-12)
    noisy, _ = label_episode(reference + 0.5, [reference], None, mode="tracking", stats=reference_statistics([reference]))
    assert np.all(noisy < 0)
    with pytest.raises(ValueError, match="unknown label mode"):
        label_episode(reference, [reference], None, mode="nope")


def test_tracking_exp_labels_hand_made() -> None:
    # Same path as the tracking example: costs 2, 0, 1, 4 -> exp(-cost / 2).
    path = np.array([[0, 0], [1, 1], [2, 2], [3, 3]])
    target = np.array([[1.0 + np.sqrt(2.0)], [2.0], [2.0], [7.0]])
    reference = np.array([[1.0], [2.0], [1.0], [5.0], [9.0]])
    expected = np.exp(-np.array([2.0, 0.0, 1.0, 4.0]) / 2.0)
    np.testing.assert_allclose(tracking_exp_labels(path, target, reference, cost_scale=2.0), expected)
    with pytest.raises(ValueError, match="cost_scale must be > 0"):
        tracking_exp_labels(path, target, reference, cost_scale=0.0)
    # Through label_episode: 1 on the reference, in (0, 1) off it, ordered like the negative cost.
    rng = np.random.default_rng(5)
    episode = rng.normal(size=(30, 4))
    stats = reference_statistics([episode])
    on, _ = label_episode(episode, [episode], None, mode="tracking_exp", stats=stats, cost_scale=3.0)
    np.testing.assert_allclose(on, 1.0)
    noisy = episode + rng.normal(scale=0.5, size=episode.shape)
    exp_labels, _ = label_episode(noisy, [episode], None, mode="tracking_exp", stats=stats, cost_scale=3.0)
    cost_labels, _ = label_episode(noisy, [episode], None, mode="tracking", stats=stats)
    assert np.all((exp_labels > 0) & (exp_labels < 1))
    np.testing.assert_allclose(exp_labels, np.exp(cost_labels / 3.0))


def test_reward_model_fits_and_is_deterministic() -> None:
    rng = np.random.default_rng(6)
    obs = rng.normal(size=(512, 3))
    labels = obs[:, 0] - 2.0 * obs[:, 1] + 5.0

    def train() -> RewardModel:
        model = RewardModel(3, net_arch=(32, 32), seed=7)
        model.update_statistics(obs)
        result = model.fit(obs, labels, budget_seconds=None, max_steps=1000)
        assert result.n_steps == 1000 and not result.truncated
        return model

    first, second = train(), train()
    np.testing.assert_array_equal(first.predict(obs), second.predict(obs))
    assert np.mean((first.predict(obs) - labels) ** 2) < 0.05 * np.var(labels)
    assert first.predict(obs[0]).shape == ()
    # The one-observation path (used on every env step) agrees with the batched path and checks its input alike.
    singles = np.array([first.predict(row) for row in obs[:50]])
    np.testing.assert_allclose(singles, first.predict(obs[:50]), rtol=1e-5, atol=1e-5)
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(ValueError, match="NaN or infinite"):
            first.predict(np.array([0.0, bad, 1.0]))
    with pytest.raises(ValueError, match=r"shape \(batch, 3\)"):
        first.predict(np.zeros(4))
    truncated = RewardModel(3, seed=0).fit(obs, labels, budget_seconds=0.0, max_steps=100)
    assert truncated.truncated and truncated.n_steps == 0


def test_reward_model_state_round_trip() -> None:
    rng = np.random.default_rng(8)
    obs, labels = rng.normal(size=(128, 2)), rng.normal(size=128)
    model = RewardModel(2, seed=1)
    model.update_statistics(obs)
    model.fit(obs, labels, max_steps=20)
    state = model.get_state()
    assert all(isinstance(value, np.ndarray) for value in state.values())
    clone = RewardModel(2, seed=99)
    clone.set_state(state)
    np.testing.assert_array_equal(clone.predict(obs), model.predict(obs))
    # Continuing training from the restored state (Adam moments + sampling RNG) gives identical results.
    model.fit(obs, labels, max_steps=10)
    clone.fit(obs, labels, max_steps=10)
    np.testing.assert_array_equal(clone.predict(obs), model.predict(obs))
    with pytest.raises(ValueError, match="net_arch"):
        RewardModel(2, net_arch=(8,)).set_state(state)


def test_dataset_save_load_round_trip(tmp_path) -> None:
    dataset = make_dataset()
    path = dataset.save(tmp_path / "ref")
    assert path.endswith(".npz")
    loaded = TrajectoryDataset.load(path)
    for name in ("observations", "next_observations", "actions", "rewards", "episode_lengths", "terminated"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(dataset, name))
    assert loaded.env_id == "Test-v0"
    episodes = list(loaded.episodes())
    assert len(episodes) == 2 and episodes[1].observations.shape == (20, 3)
    assert loaded.episode_starts.sum() == 2 and loaded.episode_starts[20]


def test_record_trajectories_round_trip(tmp_path) -> None:
    from stable_baselines3 import PPO

    model = PPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=64, seed=0, device="cpu")
    dataset = record_trajectories(model, "Pendulum-v1", n_episodes=2, seed=3)
    assert dataset.episode_lengths.tolist() == [200, 200] and dataset.obs_dim == 3
    assert dataset.env_id == "Pendulum-v1" and "Box" in dataset.observation_space
    # Observations chain: next_observations[t] == observations[t + 1] inside an episode.
    first = next(dataset.episodes())
    np.testing.assert_array_equal(first.next_observations[:-1], first.observations[1:])
    again = record_trajectories(model, "Pendulum-v1", n_episodes=2, seed=3)
    np.testing.assert_array_equal(again.rewards, dataset.rewards)
    loaded = TrajectoryDataset.load(dataset.save(os.path.join(tmp_path, "ppo.npz")))
    np.testing.assert_array_equal(loaded.observations, dataset.observations)
    np.testing.assert_array_equal(loaded.actions, dataset.actions)
    calls = []

    def policy(obs: np.ndarray) -> np.ndarray:
        calls.append(obs)
        return np.zeros(1, dtype=np.float32)

    from_callable = record_trajectories(policy, "Pendulum-v1", n_episodes=1, seed=0)
    assert len(calls) == 200 and from_callable.actions.shape == (200, 1)


def test_record_trajectories_threads_recurrent_state() -> None:
    class RecurrentStub:
        """Counts steps in its state and checks that episode_start resets it."""

        def __init__(self) -> None:
            self.seen: list[int] = []

        def predict(self, obs, state=None, episode_start=None, deterministic=False):
            count = 0 if state is None or episode_start[0] else state
            self.seen.append(count)
            return np.zeros(1, dtype=np.float32), count + 1

    stub = RecurrentStub()
    record_trajectories(stub, "Pendulum-v1", n_episodes=2, seed=0)
    assert stub.seen == list(range(200)) * 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"this is not a zip archive at all", "not a valid .npz"),
    ],
)
def test_load_rejects_empty_and_corrupt_files(tmp_path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as error:
        TrajectoryDataset.load(path)
    assert "bad.npz" in str(error.value)


def test_load_rejects_truncated_file(tmp_path) -> None:
    path = make_dataset(length=200).save(tmp_path / "full.npz")
    data = open(path, "rb").read()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"truncated\.npz.*not a valid \.npz"):
        TrajectoryDataset.load(truncated)


def test_load_rejects_missing_file_and_bad_content(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TrajectoryDataset.load(tmp_path / "missing.npz")
    dataset = make_dataset()
    base = {name: getattr(dataset, name) for name in ("observations", "next_observations", "actions", "rewards")}
    base.update(episode_lengths=dataset.episode_lengths, terminated=dataset.terminated)
    strings = {"env_id": np.array(""), "observation_space": np.array(""), "action_space": np.array("")}
    cases = {
        "version": ({**base, **strings, "format_version": np.array(99)}, "format_version 99"),
        "noversion": ({**base, **strings}, "format_version"),
        "nan": ({**base, **strings, "format_version": np.array(1), "rewards": np.full(40, np.nan)}, "NaN"),
        "lengths": ({**base, **strings, "format_version": np.array(1), "episode_lengths": np.array([10, 10])}, "sum to 20"),
        "noepisode": (
            {
                **strings,
                "format_version": np.array(1),
                "observations": np.zeros((0, 3)),
                "next_observations": np.zeros((0, 3)),
                "actions": np.zeros((0, 1)),
                "rewards": np.zeros(0),
                "episode_lengths": np.zeros(0, dtype=np.int64),
                "terminated": np.zeros(0, dtype=bool),
            },
            "no episode",
        ),
    }
    for name, (arrays, message) in cases.items():
        path = tmp_path / f"{name}.npz"
        np.savez(path, **arrays)
        with pytest.raises(ValueError, match=message):
            TrajectoryDataset.load(path)


def test_dataset_repr_is_one_short_line(tmp_path) -> None:
    dataset = make_dataset(n_episodes=3, length=200)
    text = repr(dataset)
    assert "\n" not in text and len(text) < 300, text
    for part in (
        "3 episodes",
        "600 steps (200-200 per episode)",
        "obs_dim=3",
        "actions float64 (1,)",
        "rewards",
        "env_id='Test-v0'",
    ):
        assert part in text, (part, text)
    loaded = TrajectoryDataset.load(dataset.save(tmp_path / "ref.npz"))
    assert str(loaded).endswith(f"path={str(tmp_path / 'ref.npz')!r})")
    assert loaded.path == str(tmp_path / "ref.npz") and "path" not in repr(dataset)


def test_observation_dim_mismatch_names_file_and_envs(tmp_path) -> None:
    from gymnasium import spaces

    path = make_dataset().save(tmp_path / "ref.npz")
    loaded = TrajectoryDataset.load(path)
    loaded.check_observation_space(spaces.Box(-1, 1, (3,)), "Same-v0")  # the right dimension passes
    with pytest.raises(ValueError) as error:
        loaded.check_observation_space(spaces.Box(-1, 1, (4,)), "CartPole-v1")
    message = str(error.value)
    for part in (repr(path), "recorded on 'Test-v0'", "3-dim observations", "env 'CartPole-v1'", "observation shape (4,)"):
        assert part in message, (part, message)
    with pytest.raises(ValueError, match=r"the reference dataset \(recorded on 'Test-v0'\) has 3-dim"):
        make_dataset().check_observation_space(spaces.Box(-1, 1, (5,)))
    with pytest.raises(ValueError, match=r"env 'Img-v0' has observation space .*needs a 1-D Box.*ref\.npz"):
        loaded.check_observation_space(spaces.Box(0, 255, (3, 1), np.uint8), "Img-v0")
    # load_reference (used by the reward wrappers) runs the same check when given the env's space.
    from sb3_dreamer.alignment.rewarder import load_reference

    assert load_reference(path, spaces.Box(-1, 1, (3,)), "Same-v0").path == path
    with pytest.raises(
        ValueError, match=r"ref\.npz' \(recorded on 'Test-v0'\) has 3-dim.*env 'CartPole-v1' has observation shape \(4,\)"
    ):
        load_reference(path, spaces.Box(-1, 1, (4,)), "CartPole-v1")


@pytest.mark.parametrize(
    ("kind", "description"),
    [
        ("text", "it is a text file, not a zip archive"),
        ("empty", "it is empty (0 bytes)"),
        ("truncated", "it is truncated or corrupt"),
        ("npy", "it holds a single .npy array (numpy.save)"),
        ("pickle", "it is a Python pickle"),
        ("binary", "it is a binary file that is not a zip archive"),
    ],
)
def test_load_of_a_file_that_is_not_a_reference_says_so(tmp_path, kind: str, description: str) -> None:
    import pickle

    path = tmp_path / "ref.npz"
    if kind == "text":
        path.write_text("step,obs,reward\n0,0.1,1.0\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        data = open(make_dataset(length=200).save(tmp_path / "full.npz"), "rb").read()
        path.write_bytes(data[: len(data) // 3])
    elif kind == "npy":
        with open(path, "wb") as file:
            np.save(file, np.zeros(3))
    elif kind == "pickle":
        path.write_bytes(pickle.dumps({"observations": [1, 2]}))
    else:
        path.write_bytes(bytes(range(256)))
    with pytest.raises(ValueError) as error:
        TrajectoryDataset.load(path)
    message = str(error.value)
    assert message.startswith(f"reference file {str(path)!r} is not a valid .npz archive: {description}"), message
    assert "written by TrajectoryDataset.save or record_trajectories" in message
    assert "allow_pickle" not in message and "pickled" not in message
