"""Offline datasets, world-model pretraining and fine-tuning from a pretrained world model (issue 18, seed 003)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import DQN

from sb3_dreamer import Dreamer
from sb3_dreamer.common.usage import UsageError
from sb3_dreamer.dreamer.policies import module_of, same_observation_space
from sb3_dreamer.transfer import (
    MinAtarCategorical,
    OfflineDataset,
    load_world_model,
    pretrain_world_model,
    record_episodes,
)
from tests.conftest import ImageEnv, TerminatingEnv, tiny

WORLD_MODEL = ("encoder", "decoder", "rssm", "reward_head", "continue_head")


class ConstantAgent:
    """A duck-typed SB3 model that always plays ``action``."""

    def __init__(self, env: gym.Env, action: int) -> None:
        self.observation_space, self.action_space, self.action = env.observation_space, env.action_space, action

    def predict(self, obs: Any, state: Any = None, episode_start: Any = None, deterministic: bool = False) -> Any:
        return np.array(self.action), state


def params(model: Dreamer) -> dict[str, th.Tensor]:
    return {name: value.clone() for name, value in model.policy.state_dict().items()}


def changed(before: dict[str, th.Tensor], after: dict[str, th.Tensor], module: str) -> list[bool]:
    return [not th.equal(before[n], after[n]) for n in before if module_of(n) == module and before[n].is_floating_point()]


@pytest.fixture
def cartpole_dataset(tmp_path: Path) -> OfflineDataset:
    env = gym.make("CartPole-v1")
    dataset = OfflineDataset.create(tmp_path / "data", env.observation_space, env.action_space)
    agents = [DQN("MlpPolicy", env, seed=0), DQN("MlpPolicy", env, seed=1)]
    record_episodes(agents, env, 120, dataset, seed=0)
    return dataset


def test_dataset_round_trip_keeps_rows_exactly(tmp_path: Path) -> None:
    env = gym.wrappers.TimeLimit(TerminatingEnv(horizon=5), 100)
    dataset = OfflineDataset.create(tmp_path / "d", env.observation_space, spaces.Discrete(3))  # actions padded 2 -> 3
    assert record_episodes(ConstantAgent(env, 1), env, 8, dataset, game="toy") == 10  # two whole episodes
    reopened = OfflineDataset(tmp_path / "d")
    assert [ep["length"] for ep in reopened.episodes] == [5, 5] and reopened.games() == ["toy"]
    assert reopened.num_steps() == 10 and reopened.episodes[0]["ret"] == 5.0
    rows = next(reopened.iter_episodes())
    np.testing.assert_allclose(rows["obs/obs"][:, 0], np.arange(6) / 10.0, rtol=1e-6)
    np.testing.assert_array_equal(rows["rewards"], [0, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(rows["is_first"], [1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(rows["is_terminal"], [0, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(rows["prev_actions"], [[0, 0, 0]] + [[0, 1, 0]] * 5)  # one-hot, zero-padded
    buffer = reopened.replay_buffer(env.observation_space, spaces.Discrete(3))
    assert buffer.size() == 12
    batch = buffer.sample(4, 6)
    assert batch.observations.shape == (4, 6, 3) and batch.prev_actions.shape == (4, 6, 3)
    ends = reopened.replay_buffer(env.observation_space, spaces.Discrete(3), terminal_fraction=1.0)  # the model's kwargs
    assert ends.sample(16, 3).is_terminal[:, -1].all()


def test_images_stay_uint8_and_minatar_layout_is_one_categorical_map(tmp_path: Path) -> None:
    channels = np.zeros((10, 10, 4), bool)
    channels[0, 0, 2] = True
    channels[1, 1, [0, 3]] = True  # two active channels: the first one wins
    env = gym.make("MinAtar/Breakout-v0")
    wrapped = MinAtarCategorical(env)
    assert wrapped.observation_space.shape == (10, 10, 11)
    mapped = wrapped.observation(channels)
    assert mapped[0, 0].argmax() == 3 and mapped[1, 1].argmax() == 1 and mapped[5, 5].argmax() == 0
    assert mapped.sum() == 100  # exactly one class per cell
    seaquest = MinAtarCategorical(gym.make("MinAtar/Seaquest-v0"))
    assert seaquest.observation_space == wrapped.observation_space  # games share the layout
    with pytest.raises(UsageError, match="classes >= 11"):
        MinAtarCategorical(gym.make("MinAtar/Seaquest-v0"), classes=10)
    dataset = OfflineDataset.create(tmp_path / "m", wrapped.observation_space, env.action_space)
    record_episodes(ConstantAgent(env, 0), env, 10, dataset, layout=MinAtarCategorical, seed=0)
    assert next(dataset.iter_episodes())["obs/obs"].dtype == bool
    model = Dreamer("CnnPolicy", MinAtarCategorical(gym.make("MinAtar/SpaceInvaders-v0")), **tiny())
    pretrain_world_model(model, dataset, 1)  # a fifth game's model pretrains on Breakout's episodes
    assert model.pretrain_updates == 1


def test_dataset_errors_name_the_problem(tmp_path: Path, cartpole_dataset: OfflineDataset) -> None:
    with pytest.raises(UsageError, match=r"dataset\.json is missing"):
        OfflineDataset(tmp_path)
    with pytest.raises(UsageError, match="not empty"):
        OfflineDataset.create(cartpole_dataset.path, gym.make("CartPole-v1").observation_space, spaces.Discrete(2))
    pendulum = Dreamer("MlpPolicy", "Pendulum-v1", **tiny())
    with pytest.raises(UsageError, match=r"holds observations .* the model has"):
        pretrain_world_model(pendulum, cartpole_dataset, 1)
    wide = Dreamer("MlpPolicy", gym.make("MinAtar/Breakout-v1"), **tiny())
    with pytest.raises(UsageError, match="holds observations"):
        cartpole_dataset.replay_buffer(wide.observation_space, wide.action_space)
    index = cartpole_dataset.path / "dataset.json"
    meta = json.loads(index.read_text())
    np.savez(cartpole_dataset.path / meta["episodes"][1]["file"], rewards=np.zeros(3))  # a foreign file
    with pytest.raises(UsageError, match=r"lacks \['is_first'"):
        list(OfflineDataset(cartpole_dataset.path).iter_episodes())
    (cartpole_dataset.path / meta["episodes"][0]["file"]).write_bytes(b"garbage")
    with pytest.raises(UsageError, match="missing or corrupt"):
        list(OfflineDataset(cartpole_dataset.path).iter_episodes())
    index.write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(UsageError, match="version 99"):
        OfflineDataset(cartpole_dataset.path)
    index.write_text("{not json")
    with pytest.raises(UsageError, match="corrupt"):
        OfflineDataset(cartpole_dataset.path)


def test_pretraining_touches_only_the_world_model_and_resumes(tmp_path: Path, cartpole_dataset: OfflineDataset) -> None:
    model = Dreamer("MlpPolicy", "CartPole-v1", **tiny())
    before = params(model)
    pretrain_world_model(model, cartpole_dataset.path, 3, log_interval=2, checkpoint_freq=2, checkpoint_path=tmp_path / "wm")
    after = params(model)
    for module in WORLD_MODEL:
        assert any(changed(before, after, module)), module
    for name in before:
        if module_of(name) in ("actor", "critic") or name.startswith(("slow_critic", "return_norm")):
            assert th.equal(before[name], after[name]), name
    assert model._n_updates == 0 and model.num_timesteps == 0 and model.pretrain_updates == 3
    resumed = Dreamer.load(tmp_path / "wm.zip")
    assert resumed.pretrain_updates == 3
    for name, value in resumed.policy.state_dict().items():
        assert th.equal(value, after[name]), name
    pretrain_world_model(resumed, cartpole_dataset, 5)
    assert resumed.pretrain_updates == 5


def test_pretraining_samples_as_the_models_replay(monkeypatch: pytest.MonkeyPatch, cartpole_dataset: OfflineDataset) -> None:
    import sb3_dreamer.transfer.pretrain as pretrain_module

    batches: list[Any] = []
    monkeypatch.setattr(pretrain_module, "world_model_step", lambda model, batch: (batches.append(batch), None, {}))
    model = Dreamer("MlpPolicy", "CartPole-v1", **tiny(replay_buffer_kwargs={"terminal_fraction": 1.0}))
    pretrain_world_model(model, cartpole_dataset, 2)
    assert len(batches) == 2 and all(batch.is_terminal[:, -1].all() for batch in batches)  # every window ends at one


def test_load_world_model_copies_every_world_model_tensor_and_nothing_else(cartpole_dataset: OfflineDataset) -> None:
    source = pretrain_world_model(Dreamer("MlpPolicy", "CartPole-v1", **tiny(seed=1)), cartpole_dataset, 2)
    target = Dreamer("MlpPolicy", "CartPole-v1", **tiny(seed=2))
    fresh, src = params(target), params(source)
    load_world_model(target, source)
    loaded = target.get_parameters()["policy"]
    for name, value in loaded.items():
        expected = src[name] if module_of(name) in WORLD_MODEL else fresh[name]
        assert th.equal(value, expected), name


def test_frozen_parts_get_no_gradient_and_do_not_change_during_learn(tmp_path: Path) -> None:
    source = Dreamer("MlpPolicy", "CartPole-v1", **tiny(seed=1))
    target = Dreamer("MlpPolicy", "CartPole-v1", **tiny(seed=2))
    load_world_model(target, source, freeze=("rssm", "reward"))
    assert target.policy.frozen_modules == ("rssm", "reward_head")
    before = params(target)
    target.learn(80)
    after = params(target)
    assert target._n_updates > 0
    for module in ("rssm", "reward_head"):
        assert not any(changed(before, after, module)), module
        assert all(p.grad is None for n, p in target.policy.named_parameters() if module_of(n) == module)
    for module in ("encoder", "decoder", "continue_head", "actor", "critic"):
        assert any(changed(before, after, module)), module
    target.save(tmp_path / "ft")
    loaded = Dreamer.load(tmp_path / "ft.zip", env=gym.make("CartPole-v1"))
    assert loaded.policy.frozen_modules == ("rssm", "reward_head")
    assert not any(p.requires_grad for n, p in loaded.policy.named_parameters() if module_of(n) == "rssm")
    loaded.learn(20)  # keeps training after a save and load
    assert all(th.equal(loaded.policy.state_dict()[n], after[n]) for n in after if module_of(n) == "rssm")


def test_world_model_warmup_keeps_actor_and_critic_idle() -> None:
    source = Dreamer("MlpPolicy", "CartPole-v1", **tiny(seed=1))
    target = Dreamer("MlpPolicy", "CartPole-v1", **tiny(seed=2))
    load_world_model(target, source, world_model_warmup=1000)
    before = params(target)
    target.learn(80)
    after = params(target)
    assert 0 < target._n_updates < 1000
    assert any(changed(before, after, "rssm"))
    assert not any(changed(before, after, "actor")) and not any(changed(before, after, "critic"))


def test_load_world_model_refuses_incompatible_inputs() -> None:
    target = Dreamer("MlpPolicy", "CartPole-v1", **tiny())
    with pytest.raises(UsageError, match="Unknown freeze name"):
        load_world_model(target, Dreamer("MlpPolicy", "CartPole-v1", **tiny()), freeze=("actor",))
    with pytest.raises(UsageError, match="nothing to fine-tune"):
        load_world_model(target, Dreamer("MlpPolicy", "CartPole-v1", **tiny()), freeze=list(WORLD_MODEL))
    bigger = Dreamer("MlpPolicy", "CartPole-v1", **tiny(policy_kwargs=dict(model_size="debug", deter=32)))
    with pytest.raises(UsageError, match="differ in deter"):
        load_world_model(target, bigger)
    wider = Dreamer("MlpPolicy", gym.wrappers.TimeLimit(TerminatingEnv(obs_dim=4), 50), **tiny())
    wider_actions = Dreamer("MlpPolicy", "Acrobot-v1", **tiny())  # 6 observations, 3 actions
    with pytest.raises(UsageError, match="another size"):
        load_world_model(target, wider_actions)
    load_world_model(target, wider)  # same layout and action width: accepted
    with pytest.raises(UsageError, match="does not exist"):
        load_world_model(target, "no/such/model.zip")


def test_sb3_cnn_agents_record_their_images_as_uint8(tmp_path: Path) -> None:
    """SB3 image policies see channel-first images; the dataset keeps the env's own (H, W, C) uint8 frames."""
    env = gym.wrappers.TimeLimit(ImageEnv(shape=(36, 36, 3)), 30)
    agent = DQN("CnnPolicy", env, buffer_size=100, learning_starts=10**6, seed=0)
    assert agent.observation_space.shape == (3, 36, 36)
    dataset = OfflineDataset.create(tmp_path / "img", env.observation_space, env.action_space)
    assert record_episodes(agent, env, 15, dataset, seed=0) == 20  # one whole episode (ImageEnv truncates at 20)
    frames = next(dataset.iter_episodes())["obs/obs"]
    assert frames.shape == (21, 36, 36, 3) and frames.dtype == np.uint8


def test_same_observation_space_accepts_only_the_channel_first_transpose(tmp_path: Path) -> None:
    """The check record_episodes and compensation share: the (C, H, W) view SB3 gives image policies passes, another
    shape, dtype or Dict key does not, and record_episodes names both spaces."""
    image = spaces.Box(0, 255, (10, 12, 3), np.uint8)
    assert same_observation_space(spaces.Box(0, 255, (3, 10, 12), np.uint8), image)
    assert same_observation_space(image, image)
    assert not same_observation_space(spaces.Box(0, 255, (12, 10, 3), np.uint8), image)  # H and W swapped
    assert not same_observation_space(spaces.Box(0, 1, (3, 10, 12), np.float32), image)  # dtype
    vector = spaces.Box(-1, 1, (4,), np.float32)
    assert not same_observation_space(spaces.Box(-1, 1, (5,), np.float32), vector)
    assert same_observation_space(spaces.Dict(a=image, b=vector), spaces.Dict(a=image, b=vector))
    assert not same_observation_space(spaces.Dict(a=image), spaces.Dict(a=image, b=vector))
    env = gym.wrappers.TimeLimit(TerminatingEnv(obs_dim=4), 50)
    other = ConstantAgent(gym.wrappers.TimeLimit(TerminatingEnv(obs_dim=3), 50), 0)
    with pytest.raises(UsageError, match=r"Agent 0 was trained on .*\(3,\).*\(4,\)"):
        record_episodes(other, env, 10, OfflineDataset.create(tmp_path / "d", env.observation_space, env.action_space))
