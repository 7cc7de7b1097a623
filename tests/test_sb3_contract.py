"""The rest of Stable-Baselines3's generic algorithm tests, run against Dreamer.

Mirrors SB3's ``tests/test_save_load.py`` (exclude/include, paths and file objects), ``tests/test_predict.py``
(auto-wrapping, channel-last images), ``tests/test_callbacks.py`` (the built-in callbacks together),
``tests/test_spaces.py`` (action spaces with offsets and float64) and ``tests/test_train_eval_mode.py``.
"""

from __future__ import annotations

import io
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.callbacks import (
    CallbackList,
    CheckpointCallback,
    EvalCallback,
    EveryNTimesteps,
    ProgressBarCallback,
    StopTrainingOnMaxEpisodes,
    StopTrainingOnNoModelImprovement,
    StopTrainingOnRewardThreshold,
)
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecTransposeImage

from sb3_dreamer import Dreamer
from tests.conftest import ImageEnv, TerminatingEnv, tiny


def test_exclude_and_include_saved_params(tmp_path: Path) -> None:
    """SB3's rule: ``exclude`` drops an attribute from the archive, ``include`` wins over ``exclude``."""
    model = Dreamer("MlpPolicy", "Pendulum-v1", verbose=2, **tiny())
    model.save(tmp_path / "m", exclude=["verbose"])
    assert Dreamer.load(tmp_path / "m.zip").verbose == 0
    model.save(tmp_path / "m", exclude=["verbose"], include=["verbose"])
    assert Dreamer.load(tmp_path / "m.zip").verbose == 2


def _same_policy(a: Dreamer, b: Dreamer) -> None:
    for key, value in a.policy.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), b.policy.state_dict()[key].numpy(), err_msg=key)


def test_save_and_load_through_paths_and_file_objects(tmp_path: Path) -> None:
    model = Dreamer("MlpPolicy", "Pendulum-v1", seed=0, **tiny())
    model.learn(30)
    buffer = io.BytesIO()
    model.save(buffer)
    buffer.seek(0)
    _same_policy(model, Dreamer.load(buffer))
    with open(tmp_path / "file.zip", "wb") as handle:
        model.save(handle)
    with open(tmp_path / "file.zip", "rb") as handle:
        _same_policy(model, Dreamer.load(handle))
    model.save(str(tmp_path / "no_suffix"))  # SB3 appends .zip; load finds it without the suffix too
    _same_policy(model, Dreamer.load(str(tmp_path / "no_suffix")))
    # The replay buffer goes through file objects and paths alike.
    stored = model.replay_buffer.size()
    replay = io.BytesIO()
    model.save_replay_buffer(replay)
    replay.seek(0)
    model.load_replay_buffer(replay)
    model.save_replay_buffer(tmp_path / "replay")
    model.load_replay_buffer(str(tmp_path / "replay.pkl"))
    assert model.replay_buffer.size() == stored > 0


def test_learn_without_an_env_names_the_problem(tmp_path: Path) -> None:
    Dreamer("MlpPolicy", "Pendulum-v1", **tiny()).save(tmp_path / "m")
    loaded = Dreamer.load(tmp_path / "m.zip")
    assert loaded.get_env() is None
    with pytest.raises(AssertionError, match="You must set the environment"):
        loaded.learn(10)


def test_envs_are_auto_wrapped_like_sb3() -> None:
    model = Dreamer("MlpPolicy", gym.make("CartPole-v1"), **tiny())
    assert isinstance(model.get_env(), DummyVecEnv) and model.get_env().env_is_wrapped(Monitor) == [True]
    # Channel-last images are transposed by VecTransposeImage, and predict takes channel-last observations.
    model = Dreamer("CnnPolicy", ImageEnv((16, 16, 3)), seed=0, **tiny())
    assert isinstance(model.get_env(), VecTransposeImage)
    assert model.observation_space.shape == (3, 16, 16)
    model.learn(30)
    space = ImageEnv((16, 16, 3)).observation_space
    single, _ = model.predict(space.sample(), deterministic=True)
    batch, _ = model.predict(np.stack([space.sample(), space.sample()]), deterministic=True)
    assert np.shape(single) == () and batch.shape == (2,)
    with pytest.raises(ValueError, match="Unexpected observation shape"):
        model.predict(np.zeros((16, 3, 16), dtype=np.uint8))


def test_sb3_callbacks_together(tmp_path: Path) -> None:
    """SB3's built-in callbacks in one CallbackList: the episode limit ends training at exactly two episodes."""
    eval_env = Monitor(TerminatingEnv(horizon=5))
    evaluation = EvalCallback(
        eval_env,
        eval_freq=4,
        n_eval_episodes=1,
        callback_on_new_best=StopTrainingOnRewardThreshold(reward_threshold=1e9),
        callback_after_eval=StopTrainingOnNoModelImprovement(max_no_improvement_evals=100),
        log_path=str(tmp_path),
    )
    checkpoints = EveryNTimesteps(n_steps=4, callback=CheckpointCallback(save_freq=1, save_path=str(tmp_path)))
    callbacks = CallbackList([StopTrainingOnMaxEpisodes(max_episodes=2), evaluation, checkpoints, ProgressBarCallback()])
    model = Dreamer("MlpPolicy", TerminatingEnv(horizon=5), seed=0, **tiny())
    model.learn(1000, callback=callbacks)
    assert model.num_timesteps == 10  # two 5-step episodes
    assert sorted(np.load(tmp_path / "evaluations.npz")["timesteps"]) == [4, 8]
    saved = sorted(path.name for path in tmp_path.glob("rl_model_*.zip"))
    assert len(saved) == 2
    Dreamer.load(tmp_path / saved[0])


class _SumRewardEnv(TerminatingEnv):
    """TerminatingEnv for any action space: reward is the sum of the action, the action is kept for inspection."""

    def __init__(self, action_space: spaces.Space) -> None:
        super().__init__(horizon=6)
        self.action_space = action_space
        self.actions: list[np.ndarray] = []

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        assert self.action_space.contains(action), f"{action!r} not in {self.action_space}"
        self.actions.append(np.asarray(action))
        self.t += 1
        return self._obs(), float(np.sum(action)), self.t >= self.horizon, False, {}


@pytest.mark.parametrize(
    "action_space",
    [
        spaces.Discrete(3, start=1),
        spaces.MultiDiscrete([3, 2], start=[-1, 5]),
        spaces.Box(0.0, 2.0, (2,), np.float64),
        spaces.Box(np.array([0.0, -5.0]), np.array([2.0, 5.0]), dtype=np.float32),
    ],
    ids=["discrete-start", "multidiscrete-start", "box-float64", "box-asymmetric"],
)
def test_action_spaces_with_offsets_and_dtypes(action_space: spaces.Space) -> None:
    env = _SumRewardEnv(action_space)
    model = Dreamer("MlpPolicy", env, seed=0, **tiny())
    model.learn(40)  # random warm-up and policy actions both go through the env's contains() check
    action, _ = model.predict(env.reset()[0], deterministic=True)
    assert action_space.contains(action) and np.asarray(action).dtype == action_space.dtype
    assert len(env.actions) == 40
    if not isinstance(action_space, spaces.Box):
        low = np.asarray(action_space.start).reshape(1, -1) - 1
        with pytest.raises(ValueError, match="outside the action space"):
            model.policy.to_model_action(low)


def test_categorical_offsets_round_trip() -> None:
    """to_model_action and to_env_action are inverse maps when the space starts away from 0."""
    env = _SumRewardEnv(spaces.MultiDiscrete([3, 2], start=[-1, 5]))
    model = Dreamer("MlpPolicy", env, **tiny())
    actions = np.array([[-1, 5], [0, 6], [1, 5]])
    onehot = model.policy.to_model_action(actions)
    np.testing.assert_array_equal(onehot, [[1, 0, 0, 1, 0], [0, 1, 0, 0, 1], [0, 0, 1, 1, 0]])
    np.testing.assert_array_equal(model.policy.to_env_action(th.as_tensor(onehot)), actions)


def test_predict_puts_the_policy_in_eval_mode() -> None:
    model = Dreamer("MlpPolicy", "Pendulum-v1", **tiny())
    model.policy.set_training_mode(True)
    model.predict(np.zeros(3, dtype=np.float32))
    assert not any(module.training for module in model.policy.modules())
