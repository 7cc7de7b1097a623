"""Dreamer's policy: world model, actor, critic and slow critic, with a ``predict`` that carries the RSSM state.

Paper: Hafner et al., "Mastering diverse control tasks through world models", Nature 2025 (DreamerV3).
Reference implementation: https://github.com/danijar/dreamerv3. Tensors are laid out as (batch, time, ...).
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from stable_baselines3.common.vec_env import VecTransposeImage
from torch import nn

from sb3_dreamer.dreamer.distributions import mode_onehot, sample_onehot, unimix_logits
from sb3_dreamer.dreamer.heads import BernoulliHead, MetaRewardHead, ReturnNorm, TwoHotHead
from sb3_dreamer.dreamer.type_aliases import AgentState, RSSMState
from sb3_dreamer.dreamer.world_model import RSSM, ObservationCodec, mlp

#: Model sizes. ``size*`` presets are DreamerV3's (danijar/dreamerv3 ``configs.yaml``; Nature 2025, Extended Data
#: Table 4), ``xs`` is this project's CPU preset (measured in ``benchmarks/speed.py``), ``debug`` is for tests.
MODEL_SIZES: dict[str, dict[str, int]] = {
    "debug": dict(deter=16, stoch=4, classes=4, units=16, mlp_layers=1, cnn_depth=4),
    "xs": dict(deter=128, stoch=16, classes=8, units=128, mlp_layers=2, cnn_depth=16),
    "size1m": dict(deter=512, stoch=32, classes=4, units=64, mlp_layers=3, cnn_depth=4),
    "size12m": dict(deter=2048, stoch=32, classes=16, units=256, mlp_layers=3, cnn_depth=16),
    "size25m": dict(deter=3072, stoch=32, classes=24, units=384, mlp_layers=3, cnn_depth=24),
    "size200m": dict(deter=8192, stoch=32, classes=64, units=1024, mlp_layers=3, cnn_depth=64),
}


#: The policy's modules by name (for freezing and for :mod:`sb3_dreamer.transfer`): name -> parameter-name prefixes.
POLICY_MODULES: dict[str, tuple[str, ...]] = {
    "encoder": ("codec.vector_encoder.", "codec.image_encoders."),
    "decoder": ("codec.vector_decoder.", "codec.image_decoders."),
    "rssm": ("rssm.",),
    "reward_head": ("reward_head.",),
    "continue_head": ("continue_head.",),
    "actor": ("actor.",),
    "critic": ("critic.",),
}

#: Modules that ``frozen_modules`` may name: the world model's (the actor and critic always train).
FREEZABLE_MODULES = ("encoder", "decoder", "rssm", "reward_head", "continue_head")


def module_of(name: str) -> str | None:
    """The :data:`POLICY_MODULES` name a policy parameter belongs to (None for the slow critic and buffers)."""
    for module, prefixes in POLICY_MODULES.items():
        if name.startswith(prefixes):
            return module
    return None


class ActionDist:
    """Action distribution of the actor, in the model's action representation.

    Continuous actions: DreamerV3's bounded normal, mean tanh(mu), std in [min_std, max_std]; samples are clipped to
    [-1, 1] when executed. Discrete and multi-discrete actions: one-hot categoricals with uniform mix.

    :param params: actor outputs (..., P)
    :param action_space: the environment's action space
    :param unimix: uniform mix of discrete actions
    :param min_std: lower bound of the normal's standard deviation
    :param max_std: upper bound of the normal's standard deviation
    """

    def __init__(self, params: th.Tensor, action_space: spaces.Space, unimix: float, min_std: float, max_std: float):
        self.continuous = isinstance(action_space, spaces.Box)
        if self.continuous:
            mean, std = params.chunk(2, dim=-1)
            self.mean = th.tanh(mean)
            self.std = (max_std - min_std) * th.sigmoid(std + 2.0) + min_std
        else:
            sizes = categorical_sizes(action_space)
            self.log_probs = [unimix_logits(part, unimix) for part in params.split(sizes, dim=-1)]

    def sample(self, straight_through: bool = False) -> th.Tensor:
        """Sample an action (reparameterised for continuous actions, straight-through if asked for discrete)."""
        if self.continuous:
            return self.mean + self.std * th.randn_like(self.mean)
        return th.cat([sample_onehot(lp, straight_through) for lp in self.log_probs], dim=-1)

    def mode(self) -> th.Tensor:
        """Most likely action."""
        if self.continuous:
            return self.mean
        return th.cat([mode_onehot(lp) for lp in self.log_probs], dim=-1)

    def log_prob(self, action: th.Tensor) -> th.Tensor:
        """Log-likelihood of actions (..., A), summed over action dimensions."""
        if self.continuous:
            return th.distributions.Normal(self.mean, self.std).log_prob(action).sum(-1)
        parts = action.split([lp.shape[-1] for lp in self.log_probs], dim=-1)
        return sum((part * lp).sum(-1) for part, lp in zip(parts, self.log_probs, strict=True))

    def entropy(self) -> th.Tensor:
        """Entropy, summed over action dimensions."""
        if self.continuous:
            return th.distributions.Normal(self.mean, self.std).entropy().sum(-1)
        return sum(-(lp.exp() * lp).sum(-1) for lp in self.log_probs)


def categorical_sizes(action_space: spaces.Space) -> list[int]:
    """Number of classes of each categorical action dimension: [n] for Discrete, nvec for MultiDiscrete."""
    if isinstance(action_space, spaces.Discrete):
        return [int(action_space.n)]
    return [int(n) for n in action_space.nvec]


def categorical_starts(action_space: spaces.Space) -> np.ndarray:
    """First action of each categorical dimension (gymnasium's ``start``, 0 unless the space says otherwise)."""
    return np.asarray(action_space.start, dtype=np.int64).reshape(-1)


def action_dim(action_space: spaces.Space) -> int:
    """Width of the model's action representation: Box dims, or the total one-hot width of (Multi)Discrete."""
    if isinstance(action_space, spaces.Box):
        return int(np.prod(action_space.shape))
    return sum(categorical_sizes(action_space))


def same_observation_space(source: spaces.Space, env: spaces.Space) -> bool:
    """Whether a model trained on ``source`` can act on ``env``'s observations: same shape and dtype, or ``source`` is
    the channel-first view SB3 gives its policies of a channel-last image (``VecTransposeImage.transpose_space``); Dict
    spaces key by key.
    """
    if isinstance(source, spaces.Dict) and isinstance(env, spaces.Dict):
        return source.spaces.keys() == env.spaces.keys() and all(
            same_observation_space(source[key], env[key]) for key in env.spaces
        )
    if isinstance(source, spaces.Box) and isinstance(env, spaces.Box):
        if source.shape == env.shape and source.dtype == env.dtype:
            return True
        transposable = is_image_space(env, check_channels=False) and not is_image_space_channels_first(env)
        return transposable and source == VecTransposeImage.transpose_space(env)
    return source == env


def to_model_action(action_space: spaces.Space, env_action: np.ndarray) -> np.ndarray:
    """Map environment actions (N, ...) to the model's representation (N, A): Box actions scaled to [-1, 1] from the
    space's bounds, (Multi)Discrete ones one-hot per dimension.

    :raises ValueError: for a discrete action outside the space
    """
    env_action = np.asarray(env_action)
    n = env_action.shape[0]
    if isinstance(action_space, spaces.Box):
        low, high = action_space.low, action_space.high
        return (2.0 * ((env_action - low) / (high - low)) - 1.0).reshape(n, -1).astype(np.float32)
    sizes = categorical_sizes(action_space)
    indices = env_action.reshape(n, len(sizes)).astype(np.int64) - categorical_starts(action_space)
    if np.any(indices < 0) or np.any(indices >= np.asarray(sizes)):
        raise ValueError(f"Action {env_action.tolist()} is outside the action space {action_space}")
    onehots = [np.eye(size, dtype=np.float32)[indices[:, i]] for i, size in enumerate(sizes)]
    return np.concatenate(onehots, axis=-1)


#: State-dict keys of models saved before the heads module (0.x): old name -> new name, or None to drop.
_OLD_KEYS: dict[str, str | None] = {
    "bins": None,  # derived from num_bins, now a non-persistent buffer of each two-hot head
    "return_low": "return_norm.low",
    "return_high": "return_norm.high",
    "return_norm_initialized": "return_norm.initialized",
}


def _rename_old_keys(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """Load-state-dict pre-hook: rename the keys of policies saved by earlier versions, so their files still load."""
    for old, new in _OLD_KEYS.items():
        if prefix + old in state_dict:
            value = state_dict.pop(prefix + old)
            if new is not None:
                state_dict[prefix + new] = value


class DreamerPolicy(BasePolicy):
    """World model, actor, critic and slow critic of Dreamer, and the optimisers that ``Dreamer.train`` steps.

    :param observation_space: Box (vector or image) or Dict observation space
    :param action_space: Box, Discrete or MultiDiscrete action space
    :param lr_schedule: world-model learning-rate schedule
    :param actor_lr_schedule: actor learning-rate schedule
    :param critic_lr_schedule: critic learning-rate schedule
    :param model_size: a key of :data:`MODEL_SIZES`
    :param net_arch: SB3-style MLP widths: a list sets ``units`` and ``mlp_layers`` of every MLP; a dict with keys
        ``pi`` / ``vf`` sets the actor / critic widths
    :param deter: override of the preset's deterministic state width
    :param stoch: override of the number of categorical latents
    :param classes: override of the classes per latent
    :param units: override of the MLP width
    :param mlp_layers: override of the MLP depth
    :param cnn_depth: override of the first CNN stage width
    :param unimix: uniform mix of latents and discrete actions
    :param min_std: lower bound of the continuous actor's standard deviation
    :param max_std: upper bound of the continuous actor's standard deviation
    :param num_bins: bins of the two-hot reward and critic heads
    :param optimizer_class: optimiser of all three modules (DreamerV3 2023 code: Adam)
    :param optimizer_kwargs: extra optimiser arguments; the default eps is 1e-8 (world model) and 1e-5 (actor, critic)
    :param normalize_images: SB3's policy argument, kept so that ``DreamerPolicy.load`` works; must stay True (the
        codec scales images from the space's bounds itself)
    :param frozen_modules: world-model modules (names of :data:`FREEZABLE_MODULES`) that never train: no
        ``requires_grad`` and in no optimiser; gradients still flow through them (meta-model and pretrained transfer)
    :param reward_sources: number of frozen source reward heads of a meta-model reward head
        (:class:`~sb3_dreamer.dreamer.heads.MetaRewardHead`); 0 for the plain two-hot reward head
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        actor_lr_schedule: Schedule | None = None,
        critic_lr_schedule: Schedule | None = None,
        model_size: str = "xs",
        net_arch: list[int] | dict[str, list[int]] | None = None,
        deter: int | None = None,
        stoch: int | None = None,
        classes: int | None = None,
        units: int | None = None,
        mlp_layers: int | None = None,
        cnn_depth: int | None = None,
        unimix: float = 0.01,
        min_std: float = 0.1,
        max_std: float = 1.0,
        num_bins: int = 255,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        frozen_modules: list[str] | tuple[str, ...] = (),
        reward_sources: int = 0,
    ) -> None:
        if reward_sources < 0:
            raise ValueError(f"reward_sources must be >= 0, got {reward_sources}")
        self.frozen_modules, self.reward_sources = tuple(frozen_modules), int(reward_sources)
        if not normalize_images:
            raise ValueError(
                "DreamerPolicy scales image observations itself, from the observation space's bounds to [-0.5, 0.5] "
                "(DreamerV3's convention); normalize_images=False is not supported"
            )
        super().__init__(
            observation_space,
            action_space,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
            normalize_images=normalize_images,
        )
        # predict() calls in a row without a state, and whether that was warned about (see _warn_stateless_predict)
        self._stateless_predicts = 0
        self._stateless_n_obs: int | None = None
        self._warned_stateless = False
        if model_size not in MODEL_SIZES:
            raise ValueError(f"Unknown model_size {model_size!r}; choose one of {sorted(MODEL_SIZES)}")
        size = dict(MODEL_SIZES[model_size])
        overrides = dict(deter=deter, stoch=stoch, classes=classes, units=units, mlp_layers=mlp_layers, cnn_depth=cnn_depth)
        size.update({key: value for key, value in overrides.items() if value is not None})
        actor_arch = critic_arch = [size["units"]] * size["mlp_layers"]
        if isinstance(net_arch, dict):
            actor_arch = list(net_arch.get("pi", actor_arch))
            critic_arch = list(net_arch.get("vf", net_arch.get("qf", critic_arch)))
        elif net_arch is not None:
            if len(net_arch) == 0 or len(set(net_arch)) != 1:
                raise ValueError(f"net_arch must be a non-empty list of equal widths (e.g. [256, 256]), got {net_arch}")
            size["units"], size["mlp_layers"] = int(net_arch[0]), len(net_arch)
            actor_arch = critic_arch = list(net_arch)
        self.size = size
        self.model_size, self.net_arch = model_size, net_arch
        self.unimix, self.min_std, self.max_std, self.num_bins = unimix, min_std, max_std, num_bins
        self.lr_schedule = lr_schedule
        self.actor_lr_schedule = actor_lr_schedule or lr_schedule
        self.critic_lr_schedule = critic_lr_schedule or lr_schedule
        self.action_dim = action_dim(action_space)
        self._build(size, actor_arch, critic_arch)

    def _build(self, size: dict[str, int], actor_arch: list[int], critic_arch: list[int]) -> None:
        units, layers = size["units"], size["mlp_layers"]
        feat_dim = size["deter"] + size["stoch"] * size["classes"]
        self.codec = ObservationCodec(self.observation_space, units, layers, size["cnn_depth"], feat_dim)
        self.rssm = RSSM(
            size["deter"], size["stoch"], size["classes"], units, self.action_dim, self.codec.embed_dim, self.unimix
        )
        # Reward and continue heads have 1 hidden layer (DreamerV3); reward head and critic are two-hot heads.
        if self.reward_sources:
            self.reward_head: TwoHotHead | MetaRewardHead = MetaRewardHead(
                feat_dim, [units], self.num_bins, self.reward_sources
            )
        else:
            self.reward_head = TwoHotHead(feat_dim, [units], self.num_bins)
        self.continue_head = BernoulliHead(feat_dim, [units])
        actor_out = 2 * self.action_dim if isinstance(self.action_space, spaces.Box) else self.action_dim
        self.actor = mlp(feat_dim, actor_arch, actor_out)
        self.critic = TwoHotHead(feat_dim, critic_arch, self.num_bins)
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.return_norm = ReturnNorm()
        self.register_load_state_dict_pre_hook(_rename_old_keys)

        opt_kwargs = dict(self.optimizer_kwargs)
        self.freeze(self.frozen_modules)
        self.actor_optimizer = self.optimizer_class(
            self.actor.parameters(), lr=self.actor_lr_schedule(1), **{"eps": 1e-5, **opt_kwargs}
        )
        self.critic_optimizer = self.optimizer_class(
            self.critic.parameters(), lr=self.critic_lr_schedule(1), **{"eps": 1e-5, **opt_kwargs}
        )

    def freeze(self, modules: list[str] | tuple[str, ...]) -> None:
        """Freeze exactly ``modules`` of the world model (names of :data:`FREEZABLE_MODULES`; the others train) and
        build a fresh world-model optimiser over the parameters that train. Saved with the model.

        :param modules: the world-model modules that never train: no ``requires_grad``, in no optimiser
        """
        unknown = sorted(set(modules) - set(FREEZABLE_MODULES))
        if unknown:
            raise ValueError(f"frozen_modules: unknown or not freezable {unknown}; choose from {list(FREEZABLE_MODULES)}")
        if len(set(modules)) == len(FREEZABLE_MODULES):
            raise ValueError("frozen_modules: freezing the whole world model leaves it nothing to train")
        self.frozen_modules = tuple(modules)
        source_heads = getattr(self.reward_head, "sources", nn.ModuleList())  # a meta-model's source heads never train
        always_frozen = {id(param) for param in source_heads.parameters()}
        for name, param in self.named_parameters():
            if module_of(name) in FREEZABLE_MODULES and id(param) not in always_frozen:
                param.requires_grad_(module_of(name) not in self.frozen_modules)
        world_model_modules = (self.codec, self.rssm, self.reward_head, self.continue_head)
        world_model_params = [p for module in world_model_modules for p in module.parameters() if p.requires_grad]
        self.world_model_optimizer = self.optimizer_class(
            world_model_params, lr=self.lr_schedule(1), **{"eps": 1e-8, **self.optimizer_kwargs}
        )
        # SB3 expects ``policy.optimizer`` (e.g. its DQN compatibility path on load); the world model is the main one.
        self.optimizer = self.world_model_optimizer

    def world_model_parameters(self) -> list[nn.Parameter]:
        """Parameters trained by the world-model loss."""
        return [p for group in self.world_model_optimizer.param_groups for p in group["params"]]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            lr_schedule=self._dummy_schedule,
            actor_lr_schedule=self._dummy_schedule,
            critic_lr_schedule=self._dummy_schedule,
            model_size=self.model_size,
            net_arch=self.net_arch,
            deter=self.size["deter"],
            stoch=self.size["stoch"],
            classes=self.size["classes"],
            units=self.size["units"],
            mlp_layers=self.size["mlp_layers"],
            cnn_depth=self.size["cnn_depth"],
            unimix=self.unimix,
            min_std=self.min_std,
            max_std=self.max_std,
            num_bins=self.num_bins,
            optimizer_class=self.optimizer_class,
            optimizer_kwargs=self.optimizer_kwargs,
            frozen_modules=self.frozen_modules,
            reward_sources=self.reward_sources,
        )
        return data

    # Acting -----------------------------------------------------------------------------------------------------------

    def action_dist(self, feat: th.Tensor) -> ActionDist:
        """The actor's distribution pi(a | s) for model states (..., F)."""
        return ActionDist(self.actor(feat), self.action_space, self.unimix, self.min_std, self.max_std)

    def value(self, feat: th.Tensor, slow: bool = False) -> th.Tensor:
        """Critic (or slow critic) value of model states (..., F) in the environment's reward scale."""
        return (self.slow_critic if slow else self.critic).predict(feat)

    def initial_state(self, n_envs: int) -> AgentState:
        """Zero recurrent state for ``n_envs`` environments."""
        size = self.size
        return AgentState(
            np.zeros((n_envs, size["deter"]), np.float32),
            np.zeros((n_envs, size["stoch"] * size["classes"]), np.float32),
            np.zeros((n_envs, self.action_dim), np.float32),
        )

    def filter_step(self, obs: PyTorchObs, state: AgentState, episode_start: np.ndarray, deterministic: bool) -> th.Tensor:
        """One posterior step on real observations: returns the model state (N, F) after observing ``obs``.

        :param obs: preprocessed observation tensors (N, ...)
        :param state: recurrent state before ``obs``: (h_{t-1}, z_{t-1}, a_{t-1})
        :param episode_start: (N,) flags: reset these rows to the initial state first (``is_first``)
        :param deterministic: use the posterior's mode instead of a sample
        """
        keep = th.as_tensor(1.0 - np.asarray(episode_start, dtype=np.float32), device=self.device).view(-1, 1)
        deter, stoch, prev_action = (th.as_tensor(x, device=self.device) * keep for x in state)
        deter = self.rssm.sequence_step(RSSMState(deter, stoch), prev_action)
        post_lp = self.rssm.post_log_probs(deter, self.codec.encode(obs))
        stoch = (mode_onehot(post_lp) if deterministic else sample_onehot(post_lp, straight_through=False)).flatten(-2)
        return th.cat([deter, stoch], dim=-1)

    def to_env_action(self, action: th.Tensor) -> np.ndarray:
        """Map model actions (N, A) to environment actions: unscale Box actions, argmax one-hot segments."""
        if isinstance(self.action_space, spaces.Box):
            scaled = action.clamp(-1.0, 1.0).cpu().numpy()
            env_action = self.unscale_action(scaled).reshape(-1, *self.action_space.shape)
            return env_action.astype(self.action_space.dtype)
        sizes = categorical_sizes(self.action_space)
        indices = th.stack([part.argmax(-1) for part in action.split(sizes, dim=-1)], dim=-1).cpu().numpy()
        indices = indices + categorical_starts(self.action_space)
        if isinstance(self.action_space, spaces.Discrete):
            indices = indices[:, 0]
        return indices.astype(self.action_space.dtype)

    def to_model_action(self, env_action: np.ndarray) -> np.ndarray:
        """Map environment actions (N, ...) to the model's representation (N, A) (:func:`to_model_action`)."""
        return to_model_action(self.action_space, env_action)

    def act(
        self, obs: PyTorchObs, state: AgentState, episode_start: np.ndarray, deterministic: bool
    ) -> tuple[np.ndarray, AgentState]:
        """Observe ``obs`` and choose actions. Returns environment actions and the next recurrent state."""
        with th.no_grad():
            feat = self.filter_step(obs, state, episode_start, deterministic)
            dist = self.action_dist(feat)
            action = dist.mode() if deterministic else dist.sample()
            if isinstance(self.action_space, spaces.Box):
                action = action.clamp(-1.0, 1.0)
            deter, stoch = feat.split([self.size["deter"], feat.shape[-1] - self.size["deter"]], dim=-1)
            next_state = AgentState(deter.cpu().numpy(), stoch.cpu().numpy(), action.cpu().numpy())
        return self.to_env_action(action), next_state

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        # Stateless prediction from the initial state (used by SB3 helpers that ignore recurrent state).
        n = next(iter(observation.values())).shape[0] if isinstance(observation, dict) else observation.shape[0]
        actions, _ = self.act(observation, self.initial_state(n), np.ones(n, dtype=bool), deterministic)
        return th.as_tensor(actions)

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """Action from an observation, carrying the RSSM state like ``RecurrentPPO`` does.

        :param observation: one observation or a batch
        :param state: ``(deter, stoch, prev_action)`` from the previous call, or None to start from the initial state
        :param episode_start: (N,) flags marking observations that start an episode (resets the state)
        :param deterministic: take the mode of the posterior and of the actor
        :return: the actions (one or a batch, like ``observation``) and the next state
        """
        self.set_training_mode(False)
        if isinstance(observation, tuple) and len(observation) == 2 and isinstance(observation[1], dict):
            raise ValueError(
                "You have passed a tuple to the predict() function instead of a Numpy array or a Dict. "
                "You are probably mixing Gym API with SB3 VecEnv API: `obs, info = env.reset()` (Gym) "
                "vs `obs = vec_env.reset()` (SB3 VecEnv)."
            )
        obs_tensor, vectorized_env = self.obs_to_tensor(observation)
        n = next(iter(obs_tensor.values())).shape[0] if isinstance(obs_tensor, dict) else obs_tensor.shape[0]
        if state is None:
            self._warn_stateless_predict(episode_start, n)
            state = self.initial_state(n)
            episode_start = np.ones(n, dtype=bool)
        elif len(state) != 3 or any(np.asarray(x).shape[0] != n for x in state):
            raise ValueError(f"state must be the (deter, stoch, prev_action) tuple returned by predict() for {n} observations")
        else:
            self._stateless_predicts = 0
        if episode_start is None:
            episode_start = np.zeros(n, dtype=bool)
        actions, next_state = self.act(obs_tensor, AgentState(*state), np.asarray(episode_start).reshape(n), deterministic)
        if not vectorized_env:
            actions = actions.squeeze(axis=0)
        return actions, tuple(next_state)

    def _warn_stateless_predict(self, episode_start: np.ndarray | None, n_obs: int) -> None:
        """Warn once if ``predict`` is called again without a state, as in SAC's ``action, _ = model.predict(obs)`` loop.

        Each such call starts the RSSM from its initial state, so the agent acts on one observation without the
        history it was trained with, which plays much worse inside an episode. Not warned about: a first call without
        state (as in ``evaluate_policy``), calls that flag every observation as an episode start, and a call whose
        number of observations differs from the previous one's (not a stepping loop).

        :param episode_start: the ``episode_start`` argument of ``predict``
        :param n_obs: the number of observations of this call
        """
        if episode_start is not None and np.all(episode_start):
            return
        same_batch = n_obs == self._stateless_n_obs
        self._stateless_n_obs = n_obs
        self._stateless_predicts = self._stateless_predicts + 1 if same_batch else 1
        if self._stateless_predicts >= 2 and not self._warned_stateless:
            self._warned_stateless = True
            warnings.warn(
                "Dreamer's policy is recurrent: predict() without `state` starts the world model's latent state "
                "afresh at every call, which acts much worse inside an episode. Pass back the state that predict() "
                "returns, with episode_start flags, as with RecurrentPPO: `action, state = model.predict(obs, "
                "state=state, episode_start=episode_start)`. This warning is shown once.",
                UserWarning,
                stacklevel=4,
            )


MlpPolicy = DreamerPolicy
CnnPolicy = DreamerPolicy
MultiInputPolicy = DreamerPolicy
