"""Sequence replay buffer: DreamerV3 row format, episode boundaries, terminal vs truncation, bounded memory."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces

from sb3_dreamer.dreamer.buffers import SequenceReplayBuffer


def _buffer(size: int = 100, n_envs: int = 1) -> SequenceReplayBuffer:
    return SequenceReplayBuffer(size, spaces.Box(-10, 10, (2,), np.float32), spaces.Discrete(2), "cpu", n_envs, 2)


def _add(buffer, obs, next_obs, reward, done, truncated=False, first=False):
    n = buffer.n_envs
    buffer.add(
        np.full((n, 2), obs, np.float32),
        np.full((n, 2), next_obs, np.float32),
        np.tile([[0.0, 1.0]], (n, 1)),
        np.full(n, reward, np.float32),
        np.full(n, done),
        [{"TimeLimit.truncated": truncated} for _ in range(n)],
        is_first=np.full(n, first),
    )


def test_rows_follow_dreamer_format() -> None:
    buffer = _buffer()
    _add(buffer, 0, 1, 1.0, False, first=True)
    _add(buffer, 1, 2, 2.0, True)  # terminated
    _add(buffer, 0, 5, 3.0, True, truncated=True, first=True)  # time-limit end is not terminal
    assert buffer.size() == 5
    obs = buffer.observations["obs"][0, :5, 0]
    np.testing.assert_array_equal(obs, [0, 1, 2, 0, 5])
    np.testing.assert_array_equal(buffer.rewards[0, :5], [0, 1, 2, 0, 3])
    np.testing.assert_array_equal(buffer.is_first[0, :5], [1, 0, 0, 1, 0])
    np.testing.assert_array_equal(buffer.is_terminal[0, :5], [0, 0, 1, 0, 0])
    np.testing.assert_array_equal(buffer.prev_actions[0, :5, 1], [0, 1, 1, 0, 1])


def test_windows_never_cross_the_write_position() -> None:
    buffer = _buffer(size=10)
    for t in range(25):  # wraps around 2.5 times; observation = global step index
        _add(buffer, t - 1, t, 0.0, False, first=(t == 0))
    np.random.seed(0)
    samples = buffer.sample(64, 4)
    obs = samples.observations[..., 0].numpy()
    assert obs.shape == (64, 4)
    np.testing.assert_array_equal(np.diff(obs, axis=1), np.ones((64, 3)))  # consecutive, no jump over the head
    assert obs.min() >= 15  # only the 10 newest rows are kept


def test_sampling_needs_enough_rows_and_reports_it() -> None:
    buffer = _buffer()
    _add(buffer, 0, 1, 0.0, False, first=True)
    assert not buffer.can_sample(8)
    with pytest.raises(ValueError, match="no sequence of length 8"):
        buffer.sample(2, 8)


def test_images_stay_uint8_and_memory_is_bounded() -> None:
    space = spaces.Box(0, 255, (3, 64, 64), np.uint8)
    buffer = SequenceReplayBuffer(1000, space, spaces.Discrete(3), "cpu", n_envs=2, action_dim=3)
    assert buffer.observations["obs"].dtype == np.uint8
    assert buffer.capacity == 500
    assert buffer.nbytes < 1000 * (3 * 64 * 64 + 3 * 4 + 4 + 2) * 1.01


def test_non_finite_values_raise_when_asked() -> None:
    buffer = SequenceReplayBuffer(100, spaces.Box(-10, 10, (2,), np.float32), spaces.Discrete(2), "cpu", 1, 2,
                                  non_finite="raise")  # fmt: skip
    with pytest.raises(ValueError, match="non-finite observation"):
        _add(buffer, 0, np.nan, 0.0, False, first=True)
    with pytest.raises(ValueError, match="non-finite reward"):
        _add(buffer, 0, 1, np.inf, False, first=True)
    with pytest.raises(ValueError, match="non_finite must be one of"):
        SequenceReplayBuffer(10, spaces.Box(-1, 1, (2,)), spaces.Discrete(2), "cpu", 1, 2, non_finite="ignore")


def test_non_finite_steps_are_skipped_and_cut_the_stream() -> None:
    buffer = _buffer()
    _add(buffer, 0, 1, 1.0, False, first=True)
    with pytest.warns(UserWarning, match="non-finite observation"):
        _add(buffer, 1, np.nan, 2.0, False)  # skipped
    _add(buffer, np.nan, 3, 3.0, False)  # the next finite observation starts a segment (reward and action dropped)
    _add(buffer, 3, 4, 4.0, False)
    _add(buffer, 4, 5, np.inf, False)  # a non-finite reward restarts the segment at its (finite) observation
    _add(buffer, 5, 6, 6.0, True)
    assert buffer.n_non_finite == 2
    rows = buffer.size()
    np.testing.assert_array_equal(buffer.observations["obs"][0, :rows, 0], [0, 1, 3, 4, 5, 6])
    np.testing.assert_array_equal(buffer.is_first[0, :rows], [1, 0, 1, 0, 1, 0])
    np.testing.assert_array_equal(buffer.rewards[0, :rows], [0, 1, 0, 4, 0, 6])
    np.testing.assert_array_equal(buffer.prev_actions[0, :rows, 1], [0, 1, 0, 1, 0, 1])
    np.testing.assert_array_equal(buffer.is_terminal[0, :rows], [0, 0, 0, 0, 0, 1])
    assert np.all(np.isfinite(buffer.sample(8, 2).observations.numpy()))


def test_streams_are_separate_per_env() -> None:
    buffer = _buffer(size=40, n_envs=2)
    buffer.add(
        np.array([[0, 0], [100, 100]], np.float32),
        np.array([[1, 1], [101, 101]], np.float32),
        np.zeros((2, 2)),
        np.zeros(2),
        np.array([False, True]),
        [{}, {}],
        is_first=np.array([True, True]),
    )
    np.testing.assert_array_equal(buffer.observations["obs"][0, :2, 0], [0, 1])
    np.testing.assert_array_equal(buffer.observations["obs"][1, :2, 0], [100, 101])
    np.testing.assert_array_equal(buffer.is_terminal[:, 1], [False, True])


@pytest.mark.parametrize("fraction", [1.0, 0.5])
def test_terminal_fraction_ends_windows_at_terminal_rows(fraction: float) -> None:
    buffer = SequenceReplayBuffer(60, spaces.Box(-10, 10, (2,), np.float32), spaces.Discrete(2), "cpu", 1, 2,
                                  terminal_fraction=fraction)  # fmt: skip
    for _ in range(10):  # episodes of 6 steps, the last terminal; 70 rows written, the 60 newest kept
        for t in range(6):
            _add(buffer, t, t + 1, 1.0, t == 5, first=t == 0)
    np.random.seed(0)
    batch = buffer.sample(400, 4)
    last_terminal = batch.is_terminal[:, -1].numpy()
    if fraction == 1.0:
        assert last_terminal.all()
    else:  # about half moved to terminals, plus the uniform windows that end at one by chance (1 in 7)
        assert 0.45 < last_terminal.mean() < 0.7
    obs = batch.observations[..., 0].numpy()
    assert np.all((np.diff(obs, axis=1) == 1) | (obs[:, 1:] == 0))  # consecutive rows of the stream


def test_terminal_fraction_is_uniform_without_terminals_and_checked() -> None:
    buffer = SequenceReplayBuffer(50, spaces.Box(-10, 10, (2,), np.float32), spaces.Discrete(2), "cpu", 1, 2,
                                  terminal_fraction=1.0)  # fmt: skip
    for t in range(30):
        _add(buffer, t - 1, t, 0.0, False, first=t == 0)
    uniform = _buffer(50)
    for t in range(30):
        _add(uniform, t - 1, t, 0.0, False, first=t == 0)
    np.random.seed(0)
    batches = [buffer.sample(64, 4) for _ in range(2)]
    assert not any(batch.is_terminal.numpy().any() for batch in batches)
    np.random.seed(0)  # the same windows as terminal_fraction=0: no random number is drawn before a first terminal
    for batch in batches:
        np.testing.assert_array_equal(batch.observations.numpy(), uniform.sample(64, 4).observations.numpy())
    with pytest.raises(ValueError, match="terminal_fraction must lie in"):
        SequenceReplayBuffer(50, spaces.Box(-1, 1, (2,)), spaces.Discrete(2), "cpu", 1, 2, terminal_fraction=1.5)
