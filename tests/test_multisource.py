"""Multi-source transfer (Sasso et al., TMLR 2023): the multi-task env, fractional, modular and meta-model transfer."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.logger import configure

from sb3_dreamer import Dreamer
from sb3_dreamer.common.usage import UsageError
from sb3_dreamer.dreamer.policies import module_of
from sb3_dreamer.transfer import MultiTaskVecEnv, fractional_transfer, modular_transfer
from sb3_dreamer.transfer.meta_model import meta_model_policy_kwargs, meta_model_transfer
from tests.conftest import SUBPROCESS_TIMEOUT, ImageEnv, tiny


class RecordingEnv(gym.Env):
    """Vector env with ``obs_dim`` observations equal to ``value``, a Box(-2, 2) action of ``act_dim``, and a record
    of every action it received; episodes of 10 steps, reward 1 per step."""

    def __init__(self, obs_dim: int, act_dim: int, value: float = 1.0) -> None:
        self.observation_space = spaces.Box(-5.0, 5.0, (obs_dim,), np.float32)
        self.action_space = spaces.Box(-2.0, 2.0, (act_dim,), np.float32)
        self.value, self.t, self.actions = value, 0, []

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return np.full(self.observation_space.shape, self.value, np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.actions.append(np.array(action))
        self.t += 1
        return np.full(self.observation_space.shape, self.value, np.float32), 1.0, False, self.t >= 10, {}


def two_tasks() -> MultiTaskVecEnv:
    return MultiTaskVecEnv([lambda: RecordingEnv(2, 1, 1.0), lambda: RecordingEnv(4, 3, 2.0)], task_names=["small", "big"])


def inner(env: MultiTaskVecEnv, index: int) -> RecordingEnv:
    return env.envs[index].unwrapped


def test_multitask_pads_observations_with_zeros_and_cuts_actions_back() -> None:
    env = two_tasks()
    assert env.observation_space.shape == (4,) and env.action_space.shape == (3,)
    obs = env.reset()
    np.testing.assert_array_equal(obs, [[1.0, 1.0, 0.0, 0.0], [2.0, 2.0, 2.0, 2.0]])
    action = np.array([[0.5, 0.9, -0.9], [1.0, -1.0, 0.5]], np.float32)
    _, _, _, infos = env.step(action)
    small, big = inner(env, 0).actions[-1], inner(env, 1).actions[-1]
    # Cut to the task's own size, then rescaled from [-1, 1] to the task's own bounds [-2, 2].
    assert small.shape == (1,) and big.shape == (3,)
    np.testing.assert_allclose(small, [1.0])
    np.testing.assert_allclose(big, [2.0, -2.0, 1.0])
    assert [info["task"] for info in infos] == ["small", "big"]


def test_multitask_images_are_resized_and_channels_zero_padded() -> None:
    env = MultiTaskVecEnv([lambda: ImageEnv((10, 10, 4), np.uint8), lambda: ImageEnv((8, 8, 2), np.uint8)], n_envs_per_task=2)
    assert env.observation_space.shape == (10, 10, 4) and env.num_envs == 4
    obs = env.reset()
    assert obs.shape == (4, 10, 10, 4)
    assert np.all(obs[2:, :, :, 2:] == 0) and obs[2:, :, :, :2].any()
    assert env.env_tasks[:2] == [env.task_names[0]] * 2


@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        ([lambda: RecordingEnv(2, 1), lambda: ImageEnv((10, 10, 3))], "image and vector"),
        ([lambda: ImageEnv((10, 10, 3)), lambda: ImageEnv((10, 10, 3), np.float32)], "dtype and bounds"),
        (["CartPole-v1", "Acrobot-v1"], "same n"),
        (["CartPole-v1", "Pendulum-v1"], "must all be Box"),
    ],
)
def test_multitask_refuses_spaces_it_cannot_pad(tasks: list, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        MultiTaskVecEnv(tasks)


def test_dreamer_trains_on_multitask_env_and_logs_each_task(tmp_path: Path) -> None:
    model = Dreamer("MlpPolicy", two_tasks(), seed=0, **tiny())
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(60, log_interval=1)
    header = (tmp_path / "progress.csv").read_text().splitlines()[0].split(",")
    assert {"rollout/small/ep_rew_mean", "rollout/big/ep_len_mean"} <= set(header)
    assert model._logging_callbacks[1].returns["big"][-1] == pytest.approx(10.0)
    # The model's actions reach each task cut to its own size.
    assert inner(model.env, 0).actions[-1].shape == (1,)


# Fractional and modular transfer ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def source() -> Dreamer:
    """A multi-task source (padded to 4 observation and 3 action dims) after a short training."""
    model = Dreamer("MlpPolicy", two_tasks(), seed=0, **tiny())
    return model.learn(60)


def fresh_target(obs_dim: int = 4, act_dim: int = 3, **kwargs: object) -> Dreamer:
    return Dreamer("MlpPolicy", RecordingEnv(obs_dim, act_dim), seed=1, **tiny(**kwargs))


def expected_rule(name: str, fraction: float, reinit: tuple[str, ...] = ()) -> str:
    """The paper's rule for one policy tensor: "copy", "init", "fraction", "latent-copy" or "critic"."""
    if name.startswith("slow_critic."):
        return "critic"
    if module_of(name) is None or module_of(name) in reinit or name.startswith("actor.3."):  # return_norm; actor output
        return "init"
    if name.startswith(("reward_head.3.", "critic.3.")):
        return "fraction"
    if name == "rssm.img_in.0.weight":
        return "latent-copy"
    return "copy"


@pytest.mark.parametrize("fraction", [0.2, 0.5])
def test_fractional_transfer_rules_for_every_tensor(source: Dreamer, fraction: float) -> None:
    target = fresh_target(act_dim=2)  # fewer action dims than the source
    init = {k: v.clone() for k, v in target.get_parameters()["policy"].items()}
    fractional_transfer(source, target, fraction=fraction)
    after, src = target.get_parameters()["policy"], source.get_parameters()["policy"]
    stoch_dim = target.policy.rssm.stoch_dim
    for name, value in after.items():
        rule = expected_rule(name, fraction)
        if rule == "copy":
            assert th.equal(value, src[name]), name
        elif rule == "init":
            assert th.equal(value, init[name]), name
        elif rule == "fraction":
            assert th.allclose(value, init[name] + fraction * src[name]), name
        elif rule == "latent-copy":
            assert th.equal(value[:, :stoch_dim], src[name][:, :stoch_dim])
            assert th.equal(value[:, stoch_dim:], init[name][:, stoch_dim:])  # action columns keep their init
            assert not th.equal(value[:, stoch_dim:], src[name][:, stoch_dim : stoch_dim + 2])
        else:
            assert th.equal(value, after["critic." + name.split(".", 1)[1]]), name
    # The source trained its output heads away from zero, so "fraction" really moved them.
    assert not th.equal(after["critic.3.weight"], init["critic.3.weight"])
    for key in ("world_model_optimizer", "actor_optimizer", "critic_optimizer"):
        assert len(getattr(target.policy, key).state) == 0


def test_source_observations_larger_than_target_are_cut(source: Dreamer) -> None:
    target = fresh_target(obs_dim=3)
    fractional_transfer(source, target)
    src = source.get_parameters()["policy"]["codec.vector_encoder.0.weight"]
    assert th.equal(target.get_parameters()["policy"]["codec.vector_encoder.0.weight"], src[:, :3])


@pytest.mark.parametrize(
    ("target_kwargs", "message"),
    [
        (dict(obs_dim=6), "smaller than the target"),
        (dict(policy_kwargs=dict(model_size="debug", deter=8)), "differ in deter"),
    ],
)
def test_transfer_refuses_mismatched_models(source: Dreamer, target_kwargs: dict, message: str) -> None:
    obs_dim = target_kwargs.pop("obs_dim", 4)
    with pytest.raises(UsageError, match=message):
        fractional_transfer(source, fresh_target(obs_dim=obs_dim, **target_kwargs))


def test_transfer_refuses_unknown_modules_and_missing_files(source: Dreamer, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="Unknown module name"):
        modular_transfer(source, fresh_target(), reinit=["world_model"])
    with pytest.raises(UsageError, match="in both"):
        modular_transfer(source, fresh_target(), reinit=["actor"], copy_modules=["actor"])
    with pytest.raises(UsageError, match="does not exist"):
        fractional_transfer(tmp_path / "nothing.zip", fresh_target())
    broken = fresh_target()
    with th.no_grad():
        broken.policy.rssm.gru.weight[0, 0] = float("nan")
    with pytest.raises(UsageError, match=r"rssm\.gru\.weight holds NaN"):
        fractional_transfer(broken, fresh_target())
    modular_transfer(broken, fresh_target(), reinit=["rssm"])  # the broken tensor is not transferred


def test_transfer_refuses_images_of_another_size() -> None:
    def image_model(shape: tuple[int, ...]) -> Dreamer:
        return Dreamer("CnnPolicy", ImageEnv(shape, np.uint8), seed=0, **tiny(buffer_size=100))

    source = image_model((16, 16, 4))
    fractional_transfer(source, image_model((16, 16, 2)))  # fewer channels: cut
    with pytest.raises(UsageError, match="image 'obs' is"):
        fractional_transfer(source, image_model((8, 8, 4)))
    with pytest.raises(UsageError, match="image 'obs' is"):  # the posterior reads the image embedding
        modular_transfer(source, image_model((8, 8, 4)), copy_modules=["rssm"])
    modular_transfer(source, image_model((8, 8, 4)), copy_modules=["actor", "critic"])  # model-state inputs only


def test_transfer_refuses_dict_vectors_that_cannot_be_cut() -> None:
    def dict_model(a: int, b: int) -> Dreamer:
        space = spaces.Dict({"a": spaces.Box(-1, 1, (a,)), "b": spaces.Box(-1, 1, (b,))})

        class DictEnv(RecordingEnv):
            def __init__(self) -> None:
                super().__init__(1, 1)
                self.observation_space = space

            def reset(self, **kwargs: object) -> tuple[dict, dict]:
                super().reset()
                return space.sample(), {}

        return Dreamer("MultiInputPolicy", DictEnv(), seed=0, **tiny())

    with pytest.raises(UsageError, match="vector parts of the Dict"):
        fractional_transfer(dict_model(4, 3), dict_model(2, 3))
    fractional_transfer(dict_model(4, 3), dict_model(4, 3))


def test_modular_transfer_leaves_excluded_modules_at_init(source: Dreamer) -> None:
    target = fresh_target()
    init = {k: v.clone() for k, v in target.get_parameters()["policy"].items()}
    modular_transfer(source, target, reinit=["actor", "critic", "reward_head"])
    after, src = target.get_parameters()["policy"], source.get_parameters()["policy"]
    for name, value in after.items():
        rule = expected_rule(name, 0.2, reinit=("actor", "critic", "reward_head"))
        if rule == "copy":
            assert th.equal(value, src[name]), name
        elif rule in ("init", "fraction"):
            assert th.equal(value, init[name]), name


def test_transferred_model_saves_loads_and_trains(source: Dreamer, tmp_path: Path) -> None:
    target = fractional_transfer(source, fresh_target())
    target.save(tmp_path / "target")
    loaded = Dreamer.load(tmp_path / "target", env=RecordingEnv(4, 3))
    for name, value in target.get_parameters()["policy"].items():
        assert th.equal(value, loaded.get_parameters()["policy"][name]), name
    loaded.learn(40)
    assert loaded.num_timesteps == 40


# Freezing and meta-model transfer -----------------------------------------------------------------------------------


def test_frozen_modules_get_no_gradient_and_do_not_change() -> None:
    model = fresh_target(policy_kwargs=dict(model_size="debug", frozen_modules=("encoder", "rssm")))
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    optimised = {id(p) for p in model.policy.world_model_parameters()}
    model.learn(60)
    for name, param in model.policy.named_parameters():
        if module_of(name) in ("encoder", "rssm"):
            assert not param.requires_grad and param.grad is None and id(param) not in optimised, name
            assert th.equal(param, before[name]), name
    assert not th.equal(model.policy.state_dict()["codec.vector_decoder.0.weight"], before["codec.vector_decoder.0.weight"])
    with pytest.raises(ValueError, match="not freezable"):
        fresh_target(policy_kwargs=dict(model_size="debug", frozen_modules=("actor",)))


def test_meta_model_reward_head_reads_the_source_predictions(source: Dreamer, tmp_path: Path) -> None:
    sources = [fresh_target(), fresh_target()]
    for index, agent in enumerate(sources):  # stand-ins for trained sources: distinct, non-zero reward heads
        th.nn.init.normal_(agent.policy.reward_head[3].weight, std=1.0 + index)
    target = fresh_target(policy_kwargs=dict(model_size="debug", **meta_model_policy_kwargs(2)))
    meta_model_transfer(source, sources, target)
    head = target.policy.reward_head
    src = source.get_parameters()["policy"]
    assert th.equal(target.get_parameters()["policy"]["codec.vector_encoder.0.weight"], src["codec.vector_encoder.0.weight"])
    feat = th.randn(5, target.policy.rssm.deter_dim + target.policy.rssm.stoch_dim)
    inputs = []
    hook = head.meta[0].register_forward_hook(lambda module, args, out: inputs.append(args[0]))
    head.predict(feat)
    hook.remove()
    for index, agent in enumerate(sources):
        expected = th.sign(agent.policy.reward_head.predict(feat)) * th.log1p(agent.policy.reward_head.predict(feat).abs())
        assert th.allclose(inputs[0][:, index], expected, atol=1e-5)
    assert th.equal(inputs[0][:, 2:], feat)
    # Frozen: the encoder, decoder and the source heads keep their values through learn; the meta head trains.
    frozen_before = {k: v.clone() for k, v in target.policy.state_dict().items() if "sources" in k or k.startswith("codec.")}
    meta_before = head.meta[0].weight.clone()
    target.learn(60)
    for name, value in frozen_before.items():
        assert th.equal(target.policy.state_dict()[name], value), name
    assert not th.equal(head.meta[0].weight, meta_before)
    target.save(tmp_path / "meta")
    loaded = Dreamer.load(tmp_path / "meta")
    assert loaded.policy.reward_sources == 2 and not loaded.policy.reward_head.sources[0][0].weight.requires_grad
    with pytest.raises(UsageError, match="2 source reward heads but 1"):
        meta_model_transfer(source, sources[:1], target)
    with th.no_grad():
        sources[1].policy.reward_head[3].bias[0] = float("inf")
    with pytest.raises(UsageError, match="Reward source 1's reward head holds NaN or infinite"):
        meta_model_transfer(source, sources, target)


# The gymnasium multi-task env and the rl-zoo route -------------------------------------------------------------------


def test_multitask_env_runs_its_tasks_in_turn() -> None:
    env = gym.make("sb3_dreamer/MultiTask-v0", tasks=["Pendulum-v1", "MountainCarContinuous-v0"])
    assert env.observation_space.shape == (3,) and env.action_space.shape == (1,)
    tasks = []
    for _ in range(4):
        obs, info = env.reset(seed=0) if not tasks else env.reset()
        tasks.append(info["task"])
        if info["task"] == "MountainCarContinuous-v0":
            assert obs[2] == 0.0  # padded
        _, _, _, _, info = env.step(env.action_space.sample())
        assert info["task"] == tasks[-1]
    assert tasks == ["Pendulum-v1", "MountainCarContinuous-v0"] * 2
    runs = []
    for _ in range(2):  # a seeded reset starts the round over and repeats the sequence of episodes
        first, info = env.reset(seed=3)
        runs.append([first, env.reset()[0], env.reset()[0]])
        assert info["task"] == "Pendulum-v1"
    assert all(np.array_equal(a, b) for a, b in zip(*runs, strict=True))
    assert not np.array_equal(runs[0][0], runs[0][2])  # the next Pendulum episode starts elsewhere


def test_transfer_callback_transfers_before_the_first_step(source: Dreamer, tmp_path: Path) -> None:
    from sb3_dreamer.transfer import TransferCallback

    source.save(tmp_path / "source")
    target = fresh_target()
    init = target.get_parameters()["policy"]["actor.3.weight"].clone()
    target.learn(8, callback=TransferCallback("fractional", str(tmp_path / "source.zip"), verbose=0))  # no update yet
    after, src = target.get_parameters()["policy"], source.get_parameters()["policy"]
    assert th.equal(after["rssm.gru.weight"], src["rssm.gru.weight"]) and th.equal(after["actor.3.weight"], init)
    with pytest.raises(UsageError, match="unknown method"):
        TransferCallback("fractionnal", "x.zip")
    with pytest.raises(UsageError, match="needs the reward_sources"):
        TransferCallback("meta_model", "x.zip")
    with pytest.raises(UsageError, match="belong to method 'world_model'"):
        TransferCallback("modular", "x.zip", freeze=["rssm"])


def test_transfer_callback_loads_a_pretrained_world_model(source: Dreamer, tmp_path: Path) -> None:
    from sb3_dreamer.transfer import TransferCallback

    source.save(tmp_path / "pretrained")
    target = fresh_target()  # the source's padded layout: 4 observations, 3 actions
    init = target.get_parameters()["policy"]["actor.3.weight"].clone()
    callback = TransferCallback("world_model", str(tmp_path / "pretrained.zip"), freeze=["rssm"], verbose=0)
    target.learn(8, callback=callback)  # no update yet
    after, src = target.get_parameters()["policy"], source.get_parameters()["policy"]
    assert th.equal(after["rssm.gru.weight"], src["rssm.gru.weight"]) and th.equal(after["actor.3.weight"], init)
    assert target.policy.frozen_modules == ("rssm",)


TRANSFER_CONFIGS = sorted((Path(__file__).resolve().parents[1] / "zoo_configs").glob("transfer_*.yml"))


@pytest.mark.parametrize("config", TRANSFER_CONFIGS, ids=[path.stem for path in TRANSFER_CONFIGS])
def test_transfer_configs_build_their_callbacks(config: Path) -> None:
    """Each zoo entry of zoo_configs/transfer_*.yml names a valid TransferCallback and only budget, policy,
    policy_kwargs and callback (Dreamer's settings stay the constructor defaults)."""
    import yaml
    from rl_zoo3.utils import get_callback_list

    from sb3_dreamer.transfer import TransferCallback

    entries = yaml.safe_load(config.read_text())
    assert TRANSFER_CONFIGS and entries
    for name, entry in entries.items():
        assert set(entry) <= {"n_timesteps", "policy", "policy_kwargs", "callback", "env_wrapper"}, (config.name, name)
        (callback,) = get_callback_list({"callback": entry["callback"]})
        assert isinstance(callback, TransferCallback)
        if callback.method == "world_model":  # fine-tuning a pretrained world model in the dataset's layout
            assert entry["env_wrapper"] == "sb3_dreamer.transfer.MinAtarCategorical" and callback.source.endswith(".zip")
            continue
        assert callback.source.endswith("sb3_dreamer-MultiTask-v0.zip")
        if callback.method == "meta_model":
            kwargs = eval(entry["policy_kwargs"])  # the zoo evaluates this string the same way
            assert kwargs["reward_sources"] == len(callback.reward_sources)


def test_sb3_dreamer_train_starts_from_a_transferred_model(source: Dreamer, tmp_path: Path) -> None:
    """``sb3-dreamer train`` with a YAML entry whose callback transfers from a saved multi-task model."""
    import subprocess
    import sys

    source.save(tmp_path / "multi_task")
    config = tmp_path / "transfer.yml"
    config.write_text(
        "Pendulum-v1:\n  n_timesteps: !!float 40\n  policy: MlpPolicy\n  callback:\n"
        "    - sb3_dreamer.transfer.TransferCallback:\n        method: modular\n"
        f"        source: {tmp_path / 'multi_task.zip'}\n        reinit: [actor]\n"
    )
    params = ["policy_kwargs:dict(model_size='debug')", "batch_size:2", "batch_length:8", "learning_starts:100"]
    script = Path(sys.executable).parent / "sb3-dreamer"
    args = ["train", "--env", "Pendulum-v1", "-conf", str(config), "-f", "logs", "--seed", "0", "--num-threads", "1"]
    result = subprocess.run(
        [str(script), *args, "-params", *params], cwd=tmp_path, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Transferred (modular)" in result.stdout
    trained = Dreamer.load(tmp_path / "logs" / "dreamer" / "Pendulum-v1_1" / "Pendulum-v1.zip")
    # 40 steps < learning_starts: no update, so the transferred tensors are exactly the source's (observations cut
    # from the source's 4 padded dimensions to Pendulum's 3).
    src = source.get_parameters()["policy"]["codec.vector_encoder.0.weight"][:, :3]
    assert th.equal(trained.get_parameters()["policy"]["codec.vector_encoder.0.weight"], src)
