"""Each observation x action kind trains a few steps with the debug preset; SB3 API behaviours of learn()."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback, CheckpointCallback, EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import IdentityEnv, SimpleMultiObsEnv
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecNormalize

from sb3_dreamer import DREAMERV3_SETTINGS, Dreamer
from tests.conftest import ImageEnv, TerminatingEnv, tiny


class MultiDiscreteEnv(gym.Env):
    observation_space = spaces.Box(-1.0, 1.0, (4,), np.float32)
    action_space = spaces.MultiDiscrete([3, 2])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        assert self.action_space.contains(np.asarray(action)), action
        return self.observation_space.sample(), float(action[0] == 1), False, False, {}


@pytest.mark.parametrize(
    "env_fn",
    [
        lambda: gym.make("Pendulum-v1"),
        lambda: gym.make("CartPole-v1"),
        lambda: gym.wrappers.TimeLimit(MultiDiscreteEnv(), 30),
        lambda: ImageEnv((64, 64, 3), np.uint8),
        lambda: ImageEnv((10, 10, 4), bool),
        lambda: ImageEnv((40, 40, 2), np.float32, continuous=True),
        lambda: ImageEnv((2, 40, 40), np.float32),
    ],
    ids=["box-pendulum", "discrete-cartpole", "multidiscrete", "image-64x64x3", "image-10x10x4-bool", "image-40x40x2", "chw"],
)
def test_learn_each_space(env_fn) -> None:
    model = Dreamer("MlpPolicy", env_fn(), seed=0, **tiny())
    model.learn(48)
    assert model.num_timesteps == 48
    assert model._n_updates > 0
    env = model.get_env()
    obs = env.reset()
    action, _state = model.predict(obs, deterministic=True)
    assert action.shape == (1, *model.action_space.shape)
    assert model.action_space.contains(action[0])


def test_dict_observations() -> None:
    env = SimpleMultiObsEnv(random_start=True)
    model = Dreamer("MultiInputPolicy", env, seed=0, **tiny())
    model.learn(40)
    obs = env.reset()[0] if isinstance(env.reset(), tuple) else env.reset()
    single = {key: value for key, value in obs.items()}
    action, state = model.predict(single, deterministic=True)
    assert np.shape(action) == () and model.action_space.contains(int(action))
    batch = {key: np.stack([value, value]) for key, value in obs.items()}
    actions, state = model.predict(batch, deterministic=True)
    assert actions.shape == (2,)
    assert state[0].shape[0] == 2
    with pytest.raises(ValueError, match="MultiInputPolicy"):
        Dreamer("MlpPolicy", env, **tiny())


@pytest.mark.parametrize(
    "space",
    [spaces.Discrete(4), spaces.MultiBinary(3), spaces.Box(0, 1, (2, 2, 2, 2))],
    ids=["discrete-obs", "multibinary-obs", "4d-box-obs"],
)
def test_unsupported_observation_space_raises(space) -> None:
    env = IdentityEnv(space=spaces.Discrete(2))
    env.observation_space = space
    with pytest.raises(ValueError, match="Dreamer supports Box observations"):
        Dreamer("MlpPolicy", env, **tiny())


def test_unsupported_action_space_raises() -> None:
    env = TerminatingEnv()
    env.action_space = spaces.MultiBinary(2)
    with pytest.raises(AssertionError, match="only supports"):
        Dreamer("MlpPolicy", env, **tiny())


def test_unknown_policy_and_bad_options_raise(pendulum) -> None:
    with pytest.raises(ValueError, match="Policy LstmPolicy unknown"):
        Dreamer("LstmPolicy", pendulum)
    with pytest.raises(ValueError, match="model_size"):
        Dreamer("MlpPolicy", pendulum, policy_kwargs=dict(model_size="huge"))
    with pytest.raises(ValueError, match="actor_grad"):
        Dreamer("MlpPolicy", pendulum, actor_grad="sideways")
    with pytest.raises(ValueError, match="net_arch"):
        Dreamer("MlpPolicy", pendulum, policy_kwargs=dict(net_arch=[64, 32]))


def test_net_arch_sets_mlp_widths(pendulum) -> None:
    model = Dreamer("MlpPolicy", pendulum, policy_kwargs=dict(model_size="debug", net_arch=[24, 24, 24]))
    linears = [m for m in model.policy.actor if hasattr(m, "weight") and m.weight.dim() == 2]
    assert [m.out_features for m in linears] == [24, 24, 24, 2]
    split = Dreamer("MlpPolicy", pendulum, policy_kwargs=dict(model_size="debug", net_arch=dict(pi=[8], vf=[12, 12])))
    assert split.policy.actor[0].out_features == 8 and split.policy.critic[3].out_features == 12


def test_vecnormalize_is_refused() -> None:
    venv = VecNormalize(DummyVecEnv([lambda: gym.make("Pendulum-v1")]))
    with pytest.raises(ValueError, match="VecNormalize"):
        Dreamer("MlpPolicy", venv, **tiny())


def test_callback_can_stop_training(pendulum) -> None:
    class StopAfter(BaseCallback):
        def _on_step(self) -> bool:
            return self.n_calls < 30

    callback = StopAfter()
    model = Dreamer("MlpPolicy", pendulum, **tiny()).learn(500, callback=callback)
    assert callback.n_calls == 30 == model.num_timesteps
    # The callback sees SB3's local names.
    seen = {}

    def spy(locals_, globals_):
        seen.update(keys=set(locals_))
        return True

    Dreamer("MlpPolicy", pendulum, **tiny()).learn(20, callback=spy)
    assert {"new_obs", "dones", "infos"} <= seen["keys"]


def test_num_timesteps_continue_and_progress_bar(pendulum) -> None:
    model = Dreamer("MlpPolicy", pendulum, **tiny())
    model.learn(64, progress_bar=True)
    assert model.num_timesteps == 64
    model.learn(64, reset_num_timesteps=False)
    assert model.num_timesteps == 128


@pytest.mark.parametrize("vec_cls", [DummyVecEnv, SubprocVecEnv])
def test_multiple_envs(vec_cls) -> None:
    venv = make_vec_env("CartPole-v1", n_envs=2, vec_env_cls=vec_cls, seed=0)
    model = Dreamer("MlpPolicy", venv, seed=0, **tiny())
    model.learn(80)
    assert model.num_timesteps == 80
    assert model.replay_buffer.size() >= 80  # every transition stored, plus a first row per episode
    actions, _state = model.predict(venv.reset())
    assert actions.shape == (2,)
    venv.close()


def test_train_ratio_sets_update_count(pendulum) -> None:
    # train_ratio 32 with 2 x 8 batches: 2 updates per env step after learning_starts.
    model = Dreamer("MlpPolicy", pendulum, **tiny(train_ratio=32.0, learning_starts=20))
    model.learn(30)
    assert model._n_updates == 2 * (30 - 20)
    model = Dreamer("MlpPolicy", pendulum, **tiny(train_ratio=4.0, learning_starts=20))
    model.learn(36)
    assert model._n_updates == (36 - 20) // 4


@pytest.mark.parametrize("actor_grad", ["reinforce", "dynamics"])
def test_actor_gradient_modes_and_hybrid(pendulum, actor_grad) -> None:
    model = Dreamer("MlpPolicy", pendulum, seed=0, actor_grad=actor_grad, real_data_ratio=0.5, **tiny())
    before = [p.clone() for p in model.policy.actor.parameters()]
    model.learn(40)
    assert any(not th.equal(b, a) for b, a in zip(before, model.policy.actor.parameters(), strict=True))
    # World-model parameters never receive gradients from the actor loss (requires_grad restored afterwards).
    assert all(p.requires_grad for p in model.policy.world_model_parameters())


def test_replay_value_loss_trains_the_critic_and_only_the_critic(cartpole) -> None:
    trained = {}
    for scale in (0.0, 0.3):
        model = Dreamer("MlpPolicy", cartpole, seed=0, replay_value_scale=scale, **tiny(learning_starts=48))
        model.learn(48)  # fills the buffer, no update yet
        th.manual_seed(1)
        model.train(1, model.batch_size)
        trained[scale] = model.policy.state_dict()
    # Same seed, same data, one update: only the critic (and its slow copy) moves differently.
    differs = {key.split(".")[0] for key in trained[0.0] if not th.equal(trained[0.0][key], trained[0.3][key])}
    assert differs == {"critic", "slow_critic"}, differs
    with pytest.raises(ValueError, match="replay_value_scale"):
        Dreamer("MlpPolicy", cartpole, replay_value_scale=-1.0, **tiny())


def test_evaluate_policy_and_eval_checkpoint_callbacks(tmp_path) -> None:
    env = make_vec_env("CartPole-v1", n_envs=1, seed=1)
    model = Dreamer("MlpPolicy", "CartPole-v1", seed=0, **tiny())
    eval_cb = EvalCallback(env, eval_freq=30, n_eval_episodes=2, log_path=str(tmp_path), best_model_save_path=str(tmp_path))
    ckpt_cb = CheckpointCallback(save_freq=30, save_path=str(tmp_path), save_replay_buffer=True)
    model.learn(60, callback=[eval_cb, ckpt_cb])
    assert (tmp_path / "evaluations.npz").exists() and (tmp_path / "best_model.zip").exists()
    assert (tmp_path / "rl_model_60_steps.zip").exists() and (tmp_path / "rl_model_replay_buffer_60_steps.pkl").exists()
    evaluations = np.load(tmp_path / "evaluations.npz")
    assert list(evaluations["timesteps"]) == [30, 60] and evaluations["results"].shape == (2, 2)
    returns, lengths = evaluate_policy(model, env, n_eval_episodes=2, return_episode_rewards=True)
    assert len(returns) == 2 and returns == [float(length) for length in lengths]  # CartPole pays 1 per step


class _GlitchingEnv(TerminatingEnv):
    """TerminatingEnv whose observation is NaN at steps 23 and 31 of the run and whose reward is inf at step 27."""

    def __init__(self) -> None:
        super().__init__(horizon=6)
        self.steps = 0

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = super().step(action)
        self.steps += 1
        if self.steps in (23, 31):  # after learning_starts (16): the policy acts
            obs = np.full_like(obs, np.nan)
        return obs, (np.inf if self.steps == 27 else reward), terminated, truncated, info


def test_a_non_finite_step_is_skipped_logged_and_training_goes_on() -> None:
    model = Dreamer("MlpPolicy", _GlitchingEnv(), seed=0, **tiny())
    with pytest.warns(UserWarning, match="Skipped a step with a non-finite observation"):
        model.learn(60)
    buffer = model.replay_buffer
    assert buffer.n_non_finite == 3 and model.logger.name_to_value["rollout/non_finite_steps"] == 3
    rows = buffer.size()
    assert np.all(np.isfinite(buffer.observations["obs"][0, :rows])) and np.all(np.isfinite(buffer.rewards[0, :rows]))
    # 60 steps in 10 episodes (10 reset rows); steps 23 and 31 are not stored; the rows of steps 24, 27, 32 start segments.
    assert rows == 60 + 10 - 2 and buffer.is_first[0, :rows].sum() == 10 + 3
    assert buffer.is_first[0, [24 + 3 - 1, 27 + 4 - 1]].all()  # row of step s in episode e (from 0): s + e - skipped
    assert np.isfinite(model._last_latent.deter).all()  # the acting filter restarted after the NaN observation
    assert all(th.isfinite(p).all() for p in model.policy.parameters())
    strict = Dreamer("MlpPolicy", _GlitchingEnv(), seed=0, replay_buffer_kwargs={"non_finite": "raise"}, **tiny())
    with pytest.raises(ValueError, match="non-finite observation"):
        strict.learn(60)


def test_the_acting_filter_never_sees_a_non_finite_observation_and_restarts_after_it(monkeypatch) -> None:
    model = Dreamer("MlpPolicy", TerminatingEnv(), seed=0, **tiny(learning_starts=0))
    model._setup_learn(10)
    seen = []
    act = model.policy.act

    def spy(obs: th.Tensor, state, start: np.ndarray, deterministic: bool):
        seen.append((obs.clone(), start.copy()))
        return act(obs, state, start, deterministic=deterministic)

    monkeypatch.setattr(model.policy, "act", spy)
    model._last_episode_starts = np.zeros(1, dtype=bool)
    model._last_obs = np.full((1, 3), np.nan, np.float32)
    model._sample_action(0)
    model._last_obs = np.full((1, 3), 0.5, np.float32)
    model._sample_action(0)
    assert th.isfinite(seen[0][0]).all() and not seen[0][1][0]  # encoded as zeros; nothing to restart yet
    assert seen[1][1][0]  # the next observation starts the filter afresh, as the buffer starts a new segment there


def test_terminal_fraction_trains_exactly_as_uniform_sampling_without_terminations(pendulum) -> None:
    params = []
    for fraction in (0.0, 0.25):
        model = Dreamer("MlpPolicy", pendulum, seed=0, replay_buffer_kwargs={"terminal_fraction": fraction}, **tiny())
        model.learn(120)
        assert not model.replay_buffer.has_terminal  # Pendulum only truncates
        params.append(th.cat([p.detach().flatten() for p in model.policy.parameters()]))
    assert th.equal(params[0], params[1])


def test_default_replay_oversamples_terminals_and_dreamerv3_settings_sample_uniformly() -> None:
    shares = []
    for kwargs in ({}, {"replay_buffer_kwargs": DREAMERV3_SETTINGS["replay_buffer_kwargs"]}):
        model = Dreamer("MlpPolicy", TerminatingEnv(horizon=20), seed=0, **tiny(learning_starts=200, **kwargs))
        model.learn(150)  # stores 150 rows, 7 of them terminal; no update yet
        np.random.seed(0)
        shares.append(model.replay_buffer.sample(400, 4).is_terminal[:, -1].float().mean().item())
    assert shares[0] > 0.2  # a quarter of the windows end at a terminal row (on top of the uniform ones)
    assert shares[1] < 0.12  # DreamerV3: uniform windows, about 7 in 150 end at a terminal row
