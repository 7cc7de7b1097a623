"""Dynamic-gap env pairs, their registration, and the ActionRepeat / RewardFree wrappers (sb3_dreamer.envs)."""

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.env_checker import check_env

import sb3_dreamer.envs
from sb3_dreamer.envs import ENV_SPECS, REPEAT_SPECS, ActionRepeat, RewardFree, make_repeat_env, register_envs
from tests.conftest import SUBPROCESS_TIMEOUT

CLASSIC = ["PendulumSource-v0", "PendulumTarget-v0", "PendulumHeavy-v0", "CartPoleSource-v0", "CartPoleTarget-v0"]
BULLET = ["HopperSource-v0", "HopperTarget-v0", "HalfCheetahSource-v0", "HalfCheetahTarget-v0"]
# Time-warp pairs: <Body>Repeat<k>-v0 on <Body>Source-v0, <Body>Repeat2<Gap>-v0 on <Body><Gap>-v0.
REPEAT = [f"{body}Repeat{k}-v0" for body in ("Pendulum", "Hopper", "HalfCheetah") for k in ("4", "2", "1", "2Target")]
REPEAT.append("PendulumRepeat2Heavy-v0")


def repeat_and_base(name: str) -> tuple[int, str]:
    """Action repeat and base name of a time-warp id, from the id itself (not from REPEAT_SPECS)."""
    body, _, rest = name.partition("Repeat")
    return int(rest[0]), f"{body}{rest[1:].removesuffix('-v0') or 'Source'}-v0"


def test_register_envs_is_idempotent() -> None:
    assert register_envs() == []  # the import already registered everything
    assert register_envs() == []
    assert set(ENV_SPECS) == set(CLASSIC + BULLET)
    assert REPEAT_SPECS == {name: (repeat_and_base(name)[1], repeat_and_base(name)[0]) for name in REPEAT}
    for name in [*ENV_SPECS, *REPEAT_SPECS]:
        assert f"sb3_dreamer/{name}" in gym.registry
    assert sb3_dreamer.envs.NAMESPACE == "sb3_dreamer"
    # a missing id is registered again, the others are left alone
    spec = gym.registry.pop("sb3_dreamer/HopperRepeat2Target-v0")
    try:
        assert register_envs() == ["sb3_dreamer/HopperRepeat2Target-v0"]
        assert gym.registry["sb3_dreamer/HopperRepeat2Target-v0"].kwargs == spec.kwargs
        assert register_envs() == []
    finally:
        gym.registry["sb3_dreamer/HopperRepeat2Target-v0"] = spec


@pytest.mark.parametrize("name", CLASSIC)
def test_classic_pairs_pass_check_env(name: str) -> None:
    env = gym.make(f"sb3_dreamer/{name}")
    check_env(env.unwrapped)
    check_env(env)


def test_pendulum_gap_changes_dynamics_only() -> None:
    source, target = gym.make("sb3_dreamer/PendulumSource-v0"), gym.make("sb3_dreamer/PendulumTarget-v0")
    assert source.observation_space == target.observation_space and source.action_space == target.action_space
    assert target.unwrapped.gap_parameters == {"mass": 1.5, "length": 1.3, "gravity": 10.0, "max_torque": 2.0}
    source.reset(seed=0)
    target.reset(seed=0)
    action = np.array([1.5], dtype=np.float32)
    obs_s, reward_s, *_ = source.step(action)
    obs_t, reward_t, *_ = target.step(action)
    assert reward_s == pytest.approx(reward_t)  # reward uses the state before the step: same start, same reward
    assert not np.allclose(obs_s, obs_t)  # different dynamics
    custom = gym.make("sb3_dreamer/PendulumTarget-v0", mass=2.0, gravity=9.81, max_torque=1.0).unwrapped
    assert custom.gap_parameters == {"mass": 2.0, "length": 1.3, "gravity": 9.81, "max_torque": 1.0}  # length: registered
    with pytest.raises(ValueError, match="max_torque"):
        gym.make("sb3_dreamer/PendulumTarget-v0", max_torque=3.0)
    with pytest.raises(ValueError, match="mass must be positive"):
        gym.make("sb3_dreamer/PendulumTarget-v0", mass=0.0)


def test_cartpole_gap_parameters() -> None:
    target = gym.make("sb3_dreamer/CartPoleTarget-v0").unwrapped
    assert target.length == 0.75 and target.masspole == 0.2 and target.force_mag == 8.0
    assert target.total_mass == pytest.approx(1.2) and target.polemass_length == pytest.approx(0.15)
    source, target = gym.make("sb3_dreamer/CartPoleSource-v0"), gym.make("sb3_dreamer/CartPoleTarget-v0")
    source.reset(seed=0)
    target.reset(seed=0)
    assert not np.allclose(source.step(1)[0], target.step(1)[0])


@pytest.mark.parametrize("name", BULLET)
def test_bullet_pairs_reset_and_step(name: str) -> None:
    env = gym.make(f"sb3_dreamer/{name}")
    check_env(env)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    for _ in range(3):
        obs, reward, *_ = env.step(env.action_space.sample())
        assert isinstance(reward, float) and np.all(np.isfinite(obs))
    env.close()


def test_bullet_gap_is_applied_after_every_reset() -> None:
    source = gym.make("sb3_dreamer/HopperSource-v0").unwrapped
    target = gym.make("sb3_dreamer/HopperTarget-v0", power_scale=0.5, part_mass_scale={"torso": 2.0}).unwrapped
    with pytest.raises(RuntimeError, match="reset"):
        target.link_dynamics()
    source.reset(seed=0)
    target.reset(seed=0)
    nominal, changed = source.link_dynamics(), target.link_dynamics()
    assert changed["thigh"][0] == pytest.approx(1.3 * nominal["thigh"][0], rel=1e-6)
    assert changed["torso"][0] == pytest.approx(2.6 * nominal["torso"][0], rel=1e-6)
    assert changed["foot"][1] == pytest.approx(0.7 * nominal["foot"][1], rel=1e-6)
    assert target.robot.power == pytest.approx(0.5 * source.robot.power)
    target.reset()
    assert target.link_dynamics() == changed  # relative to nominal values, not compounded
    with pytest.raises(ValueError, match="unknown parts"):
        gym.make("sb3_dreamer/HopperTarget-v0", part_mass_scale={"wing": 2.0}).reset(seed=0)
    source.close()
    target.close()


@pytest.mark.parametrize("name", REPEAT)
def test_repeat_pairs_make_step_and_reset(name: str) -> None:
    repeat, base = repeat_and_base(name)
    env, base_env = gym.make(f"sb3_dreamer/{name}"), gym.make(f"sb3_dreamer/{base}")
    assert env.observation_space == base_env.observation_space and env.action_space == base_env.action_space
    assert env.get_wrapper_attr("repeat") == repeat
    assert env.spec.id == f"sb3_dreamer/{name}" and env.spec.max_episode_steps == ENV_SPECS[base][2] // repeat
    for seed in (0, 1):
        obs, _ = env.reset(seed=seed)
        assert env.observation_space.contains(obs)
        obs, reward, terminated, _, info = env.step(np.zeros(env.action_space.shape, np.float32))
        assert isinstance(reward, float) and np.all(np.isfinite(obs))
        assert info["action_repeat_steps"] == repeat or terminated
    if name.startswith("Pendulum"):
        check_env(env)
    env.close()
    base_env.close()


# HalfCheetah stands still under zero actions until its time limit; Hopper falls (terminated), so it is left out here.
@pytest.mark.parametrize("name", [name for name in REPEAT if not name.startswith("Hopper")])
def test_repeat_episode_covers_the_base_time_limit(name: str) -> None:
    repeat, base = repeat_and_base(name)
    env = gym.make(f"sb3_dreamer/{name}")
    env.reset(seed=0)
    action = np.zeros(env.action_space.shape, np.float32)
    for step in range(1, ENV_SPECS[base][2] // repeat + 1):
        _, _, terminated, truncated, info = env.step(action)
        assert not terminated and truncated == (step == ENV_SPECS[base][2] // repeat)
        assert info["action_repeat_steps"] == repeat
    env.close()


@pytest.mark.parametrize("name", ["PendulumRepeat4-v0", "PendulumRepeat2Target-v0", "HalfCheetahRepeat2-v0"])
def test_repeat_step_is_k_base_steps(name: str) -> None:
    # One agent step = `repeat` steps of the base env from the same state: same observation, rewards summed.
    repeat, base = repeat_and_base(name)
    env, base_env = gym.make(f"sb3_dreamer/{name}"), gym.make(f"sb3_dreamer/{base}")
    obs, _ = env.reset(seed=3)
    base_obs, _ = base_env.reset(seed=3)
    np.testing.assert_array_equal(obs, base_obs)
    env.action_space.seed(0)
    for _ in range(5):
        action = env.action_space.sample()
        obs, reward, *_ = env.step(action)
        base_steps = [base_env.step(action) for _ in range(repeat)]
        assert reward == pytest.approx(sum(base_step[1] for base_step in base_steps), rel=1e-12)
        np.testing.assert_array_equal(obs, base_steps[-1][0])
    env.close()
    base_env.close()


def test_repeat_target_has_the_target_gap() -> None:
    pendulum = gym.make("sb3_dreamer/PendulumRepeat2Target-v0").unwrapped
    target_kwargs = ENV_SPECS["PendulumTarget-v0"][1]
    assert (pendulum.m, pendulum.l) == (target_kwargs["mass"], target_kwargs["length"]) != (1.0, 1.0)
    hopper, target = gym.make("sb3_dreamer/HopperRepeat2Target-v0"), gym.make("sb3_dreamer/HopperTarget-v0")
    gap = {key: hopper.unwrapped.gap_parameters[key] for key in ("mass_scale", "friction_scale")}
    assert gap == ENV_SPECS["HopperTarget-v0"][1] and gap != {"mass_scale": 1.0, "friction_scale": 1.0}
    hopper.reset(seed=0)
    target.reset(seed=0)
    assert hopper.unwrapped.link_dynamics() == target.unwrapped.link_dynamics()
    cheetah = gym.make("sb3_dreamer/HalfCheetahRepeat2Target-v0").unwrapped
    assert {key: cheetah.gap_parameters[key] for key in ("mass_scale", "friction_scale")} == ENV_SPECS["HalfCheetahTarget-v0"][
        1
    ]
    hopper.close()
    target.close()
    cheetah.close()


def test_repeat_ids_take_base_kwargs_and_repeat() -> None:
    env = gym.make("sb3_dreamer/PendulumRepeat2Target-v0", repeat=4, mass=2.0)
    assert env.get_wrapper_attr("repeat") == 4 and env.spec.max_episode_steps == 50
    assert env.unwrapped.gap_parameters["mass"] == 2.0
    assert env.unwrapped.gap_parameters["length"] == ENV_SPECS["PendulumTarget-v0"][1]["length"]
    env.reset(seed=0)
    lengths = [env.step(env.action_space.sample())[4]["action_repeat_steps"] for _ in range(50)]
    assert lengths == [4] * 50
    # a repeat that does not divide the limit: the last agent step is shorter, the physical time is the same
    env = gym.make("sb3_dreamer/PendulumRepeat1-v0", repeat=3)
    assert env.spec.max_episode_steps == 67
    env.reset(seed=0)
    infos = [env.step(env.action_space.sample()) for _ in range(67)]
    assert [info[3] for info in infos] == [False] * 66 + [True]
    assert sum(info[4]["action_repeat_steps"] for info in infos) == 200
    assert gym.make(env.spec).spec.max_episode_steps == 67  # the spec recreates the env
    with pytest.raises(ValueError, match="unknown base env"):
        make_repeat_env("Pendulum-v1", 2)
    with pytest.raises(ValueError, match="repeat"):
        gym.make("sb3_dreamer/PendulumRepeat2-v0", repeat=0)


class CountingEnv(gym.Env):
    """Reward = step index; terminates at ``horizon``."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, horizon: int = 5) -> None:
        self.horizon, self.t = horizon, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.full(1, self.t, np.float32), float(self.t), self.t >= self.horizon, False, {"t": self.t}


def test_action_repeat_sums_and_stops_at_termination() -> None:
    env = ActionRepeat(CountingEnv(horizon=5), repeat=2)
    env.reset()
    obs, reward, terminated, _, info = env.step(0)
    assert reward == 3.0 and obs[0] == 2 and not terminated and info["action_repeat_steps"] == 2
    env.step(0)
    obs, reward, terminated, _, info = env.step(0)
    assert reward == 5.0 and terminated and info["action_repeat_steps"] == 1
    truncated_env = ActionRepeat(gym.wrappers.TimeLimit(CountingEnv(horizon=100), max_episode_steps=3), repeat=4)
    truncated_env.reset()
    _, reward, terminated, truncated, info = truncated_env.step(0)
    assert truncated and not terminated and reward == 6.0 and info["action_repeat_steps"] == 3
    with pytest.raises(ValueError, match="repeat"):
        ActionRepeat(CountingEnv(), repeat=0)
    check_env(ActionRepeat(gym.make("sb3_dreamer/PendulumTarget-v0"), 2))
    assert ActionRepeat(gym.make("sb3_dreamer/PendulumSource-v0"), 4).spec.max_episode_steps == 50  # in agent steps


def test_reward_free_hides_reward() -> None:
    env = RewardFree(CountingEnv())
    env.reset()
    _, reward, _, _, info = env.step(1)
    assert reward == 0.0 and info["original_reward"] == 1.0 and isinstance(info["original_reward"], float)
    assert info["t"] == 1
    check_env(RewardFree(gym.make("sb3_dreamer/CartPoleTarget-v0")))


def test_importing_the_package_registers_the_pairs() -> None:
    # A fresh interpreter: `import sb3_dreamer` alone must make the ids available (no sb3_dreamer.envs import).
    code = "import gymnasium, sb3_dreamer; print(gymnasium.make('sb3_dreamer/PendulumTarget-v0').unwrapped.m)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) == ENV_SPECS["PendulumTarget-v0"][1]["mass"] != 1.0


def test_importing_the_package_registers_minatar() -> None:
    # A fresh interpreter: Dreamer("CnnPolicy", "MinAtar/Breakout-v1") must work after `import sb3_dreamer` alone.
    code = (
        "import gymnasium, sb3_dreamer; from sb3_dreamer import Dreamer; "
        "model = Dreamer('CnnPolicy', 'MinAtar/Breakout-v1', policy_kwargs=dict(model_size='debug')); "
        "print(model.observation_space.shape)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(10, 10, 4)"


def test_minatar_registration_matches_minatar_and_does_not_import_it() -> None:
    # Our ids, entry points and kwargs equal those of minatar.gym.register_envs(); import sb3_dreamer leaves minatar out.
    code = (
        "import sys, gymnasium as gym, sb3_dreamer\n"
        "ours = {k: (v.entry_point, v.kwargs) for k, v in gym.registry.items() if k.startswith('MinAtar/')}\n"
        "print('minatar' in sys.modules)\n"
        "for k in list(ours): del gym.registry[k]\n"
        "import minatar.gym; minatar.gym.register_envs()\n"
        "theirs = {k: (v.entry_point, v.kwargs) for k, v in gym.registry.items() if k.startswith('MinAtar/')}\n"
        "print(len(ours), ours == theirs)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "10", "True"]
