"""Save/load round trips, parameters API, replay-buffer checkpoints, exact resumption and determinism."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.logger import configure
from stable_baselines3.common.monitor import Monitor

from sb3_dreamer import Dreamer
from tests.conftest import ImageEnv, tiny


def _rollout_actions(model: Dreamer, env: gym.Env, steps: int = 20) -> np.ndarray:
    obs, _ = env.reset(seed=3)
    state, start, actions = None, True, []
    for _ in range(steps):
        action, state = model.predict(obs, state=state, episode_start=np.array([start]), deterministic=True)
        obs, _, terminated, truncated, _ = env.step(action)
        start = terminated or truncated
        if start:
            obs, _ = env.reset()
        actions.append(np.asarray(action, dtype=np.float64).ravel())
    return np.concatenate(actions)


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
def test_save_load_identical_actions_and_state(tmp_path, env_id) -> None:
    model = Dreamer("MlpPolicy", env_id, seed=0, **tiny())
    model.learn(40)
    model.save(tmp_path / "model.zip")
    loaded = Dreamer.load(tmp_path / "model.zip")
    env = gym.make(env_id)
    np.testing.assert_array_equal(_rollout_actions(model, env), _rollout_actions(loaded, env))
    obs, _ = env.reset(seed=0)
    _, state_a = model.predict(obs, deterministic=True)
    _, state_b = loaded.predict(obs, deterministic=True)
    for a, b in zip(state_a, state_b, strict=True):
        np.testing.assert_array_equal(a, b)
    # The slow critic and the return-normalisation statistics are restored too.
    for key, value in model.policy.state_dict().items():
        th.testing.assert_close(value, loaded.policy.state_dict()[key], rtol=0, atol=0, msg=key)


def test_image_model_round_trip(tmp_path) -> None:
    model = Dreamer("CnnPolicy", ImageEnv((10, 10, 4), bool), seed=0, **tiny())
    model.learn(30)
    model.save(tmp_path / "img")
    loaded = Dreamer.load(tmp_path / "img.zip", env=ImageEnv((10, 10, 4), bool))
    obs = np.random.default_rng(0).random((3, 10, 10, 4)) > 0.5
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])


def test_predict_single_batch_and_state_threading(pendulum) -> None:
    model = Dreamer("MlpPolicy", pendulum, seed=0, **tiny())
    obs, _ = pendulum.reset(seed=0)
    action, state = model.predict(obs)
    assert action.shape == (1,) and action.dtype == np.float32 and pendulum.action_space.contains(action)
    batch = np.stack([obs] * 4)
    actions, state = model.predict(batch, deterministic=True)
    assert actions.shape == (4, 1) and [s.shape[0] for s in state] == [4, 4, 4]
    # Carrying the state changes the prediction; an episode start resets it.
    with pytest.warns(UserWarning, match="policy is recurrent"):  # a second stateless call with the same batch
        fresh, _ = model.predict(batch, deterministic=True)
    carried, _ = model.predict(batch, state=state, episode_start=np.zeros(4, dtype=bool), deterministic=True)
    reset, _ = model.predict(batch, state=state, episode_start=np.ones(4, dtype=bool), deterministic=True)
    np.testing.assert_array_equal(fresh, reset)
    assert not np.array_equal(fresh[:, 0], carried[:, 0]) or model.policy.size["deter"] == 0
    with pytest.raises(ValueError, match="state must be"):
        model.predict(batch, state=tuple(s[:2] for s in state))
    with pytest.raises(ValueError, match="Unexpected observation shape"):
        model.predict(np.zeros(5, dtype=np.float32))
    with pytest.raises(ValueError, match="tuple"):
        model.predict(pendulum.reset())


def test_get_set_parameters_and_custom_objects(tmp_path, pendulum) -> None:
    model = Dreamer("MlpPolicy", pendulum, seed=0, **tiny())
    other = Dreamer("MlpPolicy", pendulum, seed=1, **tiny())
    params = model.get_parameters()
    assert {"policy", "policy.world_model_optimizer", "policy.actor_optimizer", "policy.critic_optimizer"} == set(params)
    other.set_parameters(params)
    for key, value in model.policy.state_dict().items():
        th.testing.assert_close(value, other.policy.state_dict()[key])
    with pytest.raises(ValueError):
        other.set_parameters({"not_a_module": {}}, exact_match=False)
    model.save(tmp_path / "m.zip")
    loaded = Dreamer.load(tmp_path / "m.zip", custom_objects={"learning_rate": 0.0, "lr_schedule": lambda _: 0.0})
    assert loaded.learning_rate == 0.0


def test_load_overrides_settings_as_the_constructor_would(tmp_path, pendulum) -> None:
    Dreamer("MlpPolicy", pendulum, seed=0, **tiny()).save(tmp_path / "m.zip")
    fresh = Dreamer("MlpPolicy", pendulum, seed=0, **tiny(dyn_scale=0.7, rep_scale=0.2, train_ratio=64.0, actor_entropy=0.01))
    loaded = Dreamer.load(tmp_path / "m.zip", env=pendulum, dyn_scale=0.7, rep_scale=0.2, train_ratio=64.0, actor_entropy=0.01)
    for model in (fresh, loaded):  # settings the constructor derives (loss scales, training schedule) are derived on load
        assert model.loss_scales == {"rec": 1.0, "rew": 1.0, "cont": 1.0, "dyn": 0.7, "rep": 0.2}
        assert (model.train_ratio, model.train_freq.frequency, model.gradient_steps, model.actor_entropy) == (
            64.0,
            1,
            -1,
            0.01,
        )


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (dict(real_data_ratio=1.5), "real_data_ratio must lie in"),
        (dict(actor_grad="backprop"), "actor_grad must be"),
        (dict(batch_length=1), "batch_length must be >= 2"),
    ],
)
def test_load_rejects_the_settings_the_constructor_rejects(tmp_path, pendulum, setting, message) -> None:
    Dreamer("MlpPolicy", pendulum, seed=0, **tiny()).save(tmp_path / "m.zip")
    for build in (
        lambda: Dreamer("MlpPolicy", pendulum, **tiny(**setting)),
        lambda: Dreamer.load(tmp_path / "m.zip", **setting),
    ):
        with pytest.raises(ValueError, match=message):
            build()
    assert Dreamer.load(tmp_path / "m.zip").real_data_ratio == tiny().get("real_data_ratio", 0.0)  # the file is intact


def test_set_env(pendulum) -> None:
    model = Dreamer("MlpPolicy", pendulum, **tiny())
    model.learn(20)
    model.set_env(gym.make("Pendulum-v1"))
    model.learn(20, reset_num_timesteps=False)
    assert model.num_timesteps == 40
    with pytest.raises(ValueError, match="Observation spaces do not match"):
        model.set_env(gym.make("MountainCarContinuous-v0"))


def test_corrupt_and_foreign_files_raise_clear_errors(tmp_path, pendulum) -> None:
    bad = tmp_path / "corrupt.zip"
    bad.write_bytes(b"this is not a zip archive")
    with pytest.raises(ValueError, match="wasn't a zip-file"):
        Dreamer.load(bad)
    model = Dreamer("MlpPolicy", pendulum, **tiny())
    model.save(tmp_path / "good.zip")
    data = (tmp_path / "good.zip").read_bytes()
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="Could not load a Dreamer model"):
        Dreamer.load(truncated)
    with pytest.raises(ValueError, match="Could not read a replay buffer"):
        model.load_replay_buffer(bad)
    (tmp_path / "good.zip").read_bytes()  # the user's saved file is untouched
    assert (tmp_path / "good.zip").stat().st_size == len(data)


def test_replay_buffer_round_trip_and_exact_resume(tmp_path, pendulum) -> None:
    model = Dreamer("MlpPolicy", pendulum, seed=0, **tiny())
    model.learn(60)
    model.save(tmp_path / "ckpt")
    model.save_replay_buffer(tmp_path / "buffer")
    loaded = Dreamer.load(tmp_path / "ckpt.zip", env=gym.make("Pendulum-v1"))
    loaded.load_replay_buffer(tmp_path / "buffer.pkl")
    assert loaded.replay_buffer.size() == model.replay_buffer.size()
    np.testing.assert_array_equal(loaded.replay_buffer.rewards, model.replay_buffer.rewards)
    # The same update from the same RNG state gives identical weights: optimiser state, slow critic and return
    # statistics were all restored.
    for algo in (model, loaded):
        algo.set_logger(configure(None, []))
        th.manual_seed(7)
        np.random.seed(7)
        algo.train(gradient_steps=2, batch_size=algo.batch_size)
    for key, value in model.policy.state_dict().items():
        th.testing.assert_close(value, loaded.policy.state_dict()[key], rtol=0, atol=0, msg=key)


def test_replay_buffer_pickled_by_an_older_version_loads_and_keeps_training(tmp_path, pendulum) -> None:
    import pickle

    model = Dreamer("MlpPolicy", pendulum, seed=0, **tiny())
    model.learn(40)
    buffer = model.replay_buffer
    for name in ("terminal_fraction", "non_finite", "n_non_finite", "has_terminal", "_cut"):  # added since 2026-12
        del buffer.__dict__[name]
    (tmp_path / "old.pkl").write_bytes(pickle.dumps(buffer))
    model.load_replay_buffer(tmp_path / "old.pkl")
    old = model.replay_buffer
    assert (old.terminal_fraction, old.non_finite, old.n_non_finite, old.has_terminal) == (0.0, "raise", 0, True)
    model.learn(40, reset_num_timesteps=False)  # adds and samples with the old behaviour
    assert old.size() == 80 + 2  # one reset row at the start and one after loading the buffer (a new segment)


def test_replay_buffer_mismatch_raises(tmp_path) -> None:
    model = Dreamer("MlpPolicy", "CartPole-v1", **tiny())
    model.learn(20)
    model.save_replay_buffer(tmp_path / "cartpole")
    other = Dreamer("MlpPolicy", "Acrobot-v1", **tiny())
    with pytest.raises(ValueError, match="action_dim"):
        other.load_replay_buffer(tmp_path / "cartpole.pkl")


def _run(seed: int, env_id: str) -> tuple[float, float, float]:
    if env_id == "image":  # pixels from the env's seeded generator, through the CNN encoder and decoder
        model = Dreamer("CnnPolicy", ImageEnv((16, 16, 3)), seed=seed, **tiny())
    else:
        model = Dreamer("MlpPolicy", env_id, seed=seed, **tiny())
    model.learn(60)
    env = model.get_env()
    obs, total_action, total_reward = env.reset(), 0.0, 0.0
    state = None
    for _ in range(30):
        action, state = model.predict(obs, state=state, deterministic=False)
        obs, reward, _, _ = env.step(action)
        total_action += float(np.sum(action))
        total_reward += float(np.sum(reward))
    # The trained weights too: a discrete policy's sampled actions can hide a different world model.
    weights = sum(float(p.detach().double().sum()) for p in model.policy.parameters())
    return total_action, total_reward, weights


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1", "image"])
def test_seeded_runs_are_identical(env_id: str) -> None:
    assert _run(5, env_id) == _run(5, env_id)
    assert _run(5, env_id) != _run(6, env_id)


@pytest.mark.parametrize("kind", ["vector", "image", "dict"])
def test_policy_saved_alone_loads_and_evaluates(tmp_path, kind) -> None:
    """SB3's policy round trip: ``model.policy.save(path)``, ``DreamerPolicy.load(path)``, then ``evaluate_policy``."""
    from stable_baselines3.common.evaluation import evaluate_policy

    from sb3_dreamer.dreamer import DreamerPolicy

    if kind == "vector":
        make_env, policy = (lambda: gym.make("Pendulum-v1")), "MlpPolicy"
    elif kind == "image":
        make_env, policy = (lambda: ImageEnv((10, 10, 3), np.uint8, continuous=True)), "CnnPolicy"
    else:
        make_env, policy = (lambda: DictEnv()), "MultiInputPolicy"
    model = Dreamer(policy, make_env(), seed=0, **tiny())
    model.learn(40)
    model.policy.save(tmp_path / "policy.pth")
    loaded = DreamerPolicy.load(tmp_path / "policy.pth")
    for key, value in model.policy.state_dict().items():
        th.testing.assert_close(value, loaded.state_dict()[key], rtol=0, atol=0, msg=key)
    assert loaded.size == model.policy.size and loaded.observation_space == model.observation_space
    samples = [make_env().observation_space.sample() for _ in range(2)]
    obs = {key: np.stack([x[key] for x in samples]) for key in samples[0]} if kind == "dict" else np.stack(samples)
    expected, _ = model.policy.predict(obs, deterministic=True)
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], expected)
    # The stand-alone policy works where SB3 takes a policy (evaluate_policy passes the recurrent state back).
    mean, _ = evaluate_policy(loaded, Monitor(make_env()), n_eval_episodes=1, deterministic=True)
    assert np.isfinite(mean)


def test_policy_refuses_normalize_images_false(pendulum) -> None:
    from sb3_dreamer.dreamer import DreamerPolicy

    with pytest.raises(ValueError, match="normalize_images=False is not supported"):
        DreamerPolicy(pendulum.observation_space, pendulum.action_space, lambda _: 1e-4, normalize_images=False)


class DictEnv(gym.Env):
    """A Dict observation of a vector and a small image, continuous actions, 20-step episodes."""

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Dict(
            {"vec": gym.spaces.Box(-1.0, 1.0, (3,), np.float32), "img": gym.spaces.Box(0, 255, (8, 8, 1), np.uint8)}
        )
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        self.t += 1
        return self.observation_space.sample(), float(action[0]), False, self.t >= 20, {}


def test_last_latent_is_restored_when_saved_with_include(tmp_path, pendulum) -> None:
    model = Dreamer("MlpPolicy", pendulum, seed=0, **tiny())
    model.learn(20)
    model.save(tmp_path / "with_latent", include=["_last_latent"])
    model.save(tmp_path / "default")
    loaded = Dreamer.load(tmp_path / "with_latent", env=pendulum)
    for saved, restored in zip(model._last_latent, loaded._last_latent, strict=True):
        np.testing.assert_array_equal(saved, restored)
    assert Dreamer.load(tmp_path / "default", env=pendulum)._last_latent is None  # excluded by default


def test_replay_buffer_pickles_only_the_rows_written(tmp_path, pendulum) -> None:
    import pickle

    model = Dreamer("MlpPolicy", pendulum, seed=0, **tiny(buffer_size=20_000))
    model.learn(60)
    buffer = model.replay_buffer
    data = pickle.dumps(buffer)
    assert len(data) < buffer.nbytes / 50  # 61 of 20,000 rows written
    copy = pickle.loads(data)
    assert copy.capacity == buffer.capacity and copy.nbytes == buffer.nbytes
    for name, value in buffer._stream_arrays().items():
        np.testing.assert_array_equal(copy._stream_arrays()[name], value, err_msg=name)
    # A buffer whose stream wrapped around is saved whole and loads the same.
    small = Dreamer("MlpPolicy", gym.make("Pendulum-v1"), seed=0, **tiny(buffer_size=50))
    small.learn(60)
    assert small.replay_buffer.stream_full.all()
    again = pickle.loads(pickle.dumps(small.replay_buffer))
    np.testing.assert_array_equal(again.rewards, small.replay_buffer.rewards)
    assert again.size() == small.replay_buffer.size() == 50
    # Loaded back into a model, training goes on from the restored rows.
    model.save_replay_buffer(tmp_path / "buffer")
    model.load_replay_buffer(tmp_path / "buffer.pkl")
    model.learn(20, reset_num_timesteps=False)
    assert model.replay_buffer.size() == 61 + 21
