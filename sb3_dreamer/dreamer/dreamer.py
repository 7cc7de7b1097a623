"""Dreamer: DreamerV3-style model-based RL as a Stable-Baselines3 off-policy algorithm.

Paper: Hafner, Pasukonis, Ba, Lillicrap, "Mastering diverse control tasks through world models", Nature 2025
(arXiv 2301.04104). Reference implementation: https://github.com/danijar/dreamerv3.

Tensors are laid out as (batch, time, ...) for replayed sequences and (horizon, starts, ...) for imagined ones.
"""

from __future__ import annotations

import contextlib
import io
import pathlib
import pickle
import sys
import time
import zipfile
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, ConvertCallback
from stable_baselines3.common.logger import Image
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.save_util import load_from_pkl
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import FloatSchedule, polyak_update, update_learning_rate
from stable_baselines3.common.vec_env import VecEnv, unwrap_vec_normalize

from sb3_dreamer.common.callbacks import LogProgressCallback, TaskReturnCallback, TrueRewardCallback
from sb3_dreamer.common.timing import PhaseTimer
from sb3_dreamer.dreamer.buffers import SequenceReplayBuffer, finite_rows
from sb3_dreamer.dreamer.policies import CnnPolicy, DreamerPolicy, MlpPolicy, MultiInputPolicy
from sb3_dreamer.dreamer.type_aliases import AgentState
from sb3_dreamer.dreamer.update import behavior_losses, open_loop_strips, optimizer_step, world_model_step

SelfDreamer = TypeVar("SelfDreamer", bound="Dreamer")

#: DreamerV3's update settings: batch 16 x 64, imagination from all B * T replayed states, train ratio 512 (one update
#: per two env steps at that batch), uniform replay (no terminal oversampling). About 4x the work per env step of the
#: constructor defaults (16 x 32 batches, 256 imagination starts, one update per two env steps, a quarter of the windows
#: ending at a terminal row), which are this project's CPU settings:
#: ``Dreamer("MlpPolicy", env, **DREAMERV3_SETTINGS)`` trains as the paper does.
DREAMERV3_SETTINGS: Mapping[str, Any] = MappingProxyType(
    dict(
        batch_size=16,
        batch_length=64,
        imagination_starts=None,
        train_ratio=512,
        learning_starts=1024,
        replay_buffer_kwargs=dict(terminal_fraction=0.0),
    )
)

#: Weights of the world-model loss terms (DreamerV3, Eq. 5): prediction terms 1, beta_dyn, beta_rep.
WORLD_MODEL_LOSSES = ("rec", "rew", "cont", "dyn", "rep")


class Dreamer(OffPolicyAlgorithm):
    """DreamerV3: a world model learned from replay, and an actor-critic trained on trajectories it imagines.

    Paper: https://arxiv.org/abs/2301.04104 (Nature 2025). Reference implementation: https://github.com/danijar/dreamerv3

    Glossary (paper -> code): h_t -> ``deter``, z_t -> ``stoch``, q(z|h,x) -> ``post``, p(z|h) -> ``prior``,
    filtering -> ``observe``, latent rollout -> ``imagine``, H -> ``imagination_horizon``, lambda -> ``return_lambda``,
    beta_dyn / beta_rep -> ``dyn_scale`` / ``rep_scale``, free bits -> ``free_nats``, eta -> ``actor_entropy``,
    EMA critic -> ``slow_critic``.

    Update rate: DreamerV3's ``train_ratio`` is replayed steps per environment step. One update replays
    ``batch_size * batch_length`` steps, so updates per env step = ``train_ratio / (batch_size * batch_length)``. Either
    set ``train_ratio`` (then ``train_freq``/``gradient_steps`` are ignored), or SB3's ``train_freq`` and
    ``gradient_steps``: ``train_freq=2, gradient_steps=1`` with 16 x 64 batches is train ratio 512. With ``n_envs > 1``,
    ``train_freq`` counts vectorised steps, each bringing ``n_envs`` transitions.

    Defaults: CPU settings. The constructor's update settings (16 x 32 batches, 256 of the 512 replayed states as
    imagination starts, one update every two env steps, i.e. train ratio 256) are those of the Pendulum-v1 and
    CartPole-v1 results in benchmarks/README.md and do about a quarter of DreamerV3's work per env step;
    ``Dreamer(..., **DREAMERV3_SETTINGS)`` restores DreamerV3's (16 x 64, all starts, train ratio 512).

    :param policy: "MlpPolicy", "CnnPolicy", "MultiInputPolicy" (all the same :class:`DreamerPolicy`) or a class
    :param env: environment or its registered id
    :param learning_rate: world-model learning rate (float or schedule)
    :param actor_learning_rate: actor learning rate (float or schedule)
    :param critic_learning_rate: critic learning rate (float or schedule); 10x DreamerV3's 2023 value (3e-5), so that
        the critic reaches the returns of a task within CPU budgets of 5-25k updates (docs/modules/dreamer.md)
    :param buffer_size: replay capacity in steps (bounds memory)
    :param learning_starts: random-action steps before the first update
    :param batch_size: replayed sequences per update (B)
    :param batch_length: steps per replayed sequence (T)
    :param train_freq: update every ``train_freq`` steps (SB3 semantics)
    :param gradient_steps: updates per training round (SB3 semantics)
    :param train_ratio: replayed steps per env step (DreamerV3 semantics); overrides ``train_freq``/``gradient_steps``
    :param gamma: discount (DreamerV3: 1 - 1/333)
    :param return_lambda: lambda of the lambda-returns
    :param imagination_horizon: imagined steps H
    :param imagination_starts: number of posterior states imagination starts from, drawn at random from the B * T
        replayed ones (None: all, as DreamerV3)
    :param dyn_scale: beta_dyn, weight of the dynamics KL
    :param rep_scale: beta_rep, weight of the representation KL
    :param free_nats: free bits of both KL terms
    :param actor_entropy: entropy bonus eta
    :param actor_grad: "reinforce" (likelihood-ratio gradients, DreamerV3), "dynamics" (backpropagate through the
        imagined dynamics, DreamerV1/V2 continuous control) or "auto" (dynamics for Box actions, else reinforce)
    :param slow_critic_update: EMA rate of the slow critic per update
    :param slow_critic_scale: weight of the regulariser toward the slow critic
    :param return_norm_decay: EMA decay of the return percentiles
    :param return_norm_limit: minimum return scale (advantages are divided by max(limit, P95 - P5))
    :param world_model_grad_clip: gradient-norm clip of the world model
    :param actor_grad_clip: gradient-norm clip of the actor
    :param critic_grad_clip: gradient-norm clip of the critic
    :param replay_value_scale: weight of the critic's replay-value loss: lambda-returns along the replayed real
        sequences, with real rewards and terminal flags, bootstrapped from imagined returns (DreamerV3 code since 2024,
        ``repval``, weight 0.3; 0: off)
    :param real_data_ratio: hybrid model-free fallback: weight of actor-critic losses on replayed real sequences (0: off)
    :param world_model_warmup: the model's first updates that train only the world model (actor and critic start
        after them; fine-tuning a pretrained world model, ``train_finetune.py`` of github.com/JonaSchulz/pydreamer)
    :param mixed_precision: run the update's forward passes under ``torch.autocast`` in bfloat16 on ``device``
        (parameters, optimiser state and gradients stay float32; acting stays float32). Meant for GPUs with bfloat16
        support; on a CPU without bfloat16 matrix units it is slower (see benchmarks/README.md)
    :param log_image_interval: updates between open-loop image previews in TensorBoard (image observations only)
    :param action_noise: optional action noise for exploration (continuous actions)
    :param replay_buffer_kwargs: extra arguments of :class:`SequenceReplayBuffer`
    :param policy_kwargs: arguments of :class:`DreamerPolicy` (``model_size``, ``net_arch``, widths)
    :param stats_window_size: episodes averaged for rollout logging
    :param tensorboard_log: TensorBoard log folder
    :param verbose: 0 none, 1 info, 2 debug
    :param seed: random seed
    :param device: torch device
    :param _init_setup_model: build the networks at construction
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }
    policy: DreamerPolicy
    replay_buffer: SequenceReplayBuffer  # type: ignore[assignment]

    def __init__(
        self,
        policy: str | type[DreamerPolicy] = "MlpPolicy",
        env: GymEnv | str | None = None,
        learning_rate: float | Schedule = 1e-4,
        actor_learning_rate: float | Schedule = 3e-5,
        critic_learning_rate: float | Schedule = 3e-4,
        buffer_size: int = 1_000_000,
        learning_starts: int = 1000,
        batch_size: int = 16,
        batch_length: int = 32,
        train_freq: int | tuple[int, str] = 2,
        gradient_steps: int = 1,
        train_ratio: float | None = None,
        gamma: float = 1.0 - 1.0 / 333.0,
        return_lambda: float = 0.95,
        imagination_horizon: int = 15,
        imagination_starts: int | None = 256,
        dyn_scale: float = 0.5,
        rep_scale: float = 0.1,
        free_nats: float = 1.0,
        actor_entropy: float = 3e-4,
        actor_grad: str = "auto",
        slow_critic_update: float = 0.02,
        slow_critic_scale: float = 1.0,
        return_norm_decay: float = 0.99,
        return_norm_limit: float = 1.0,
        world_model_grad_clip: float = 1000.0,
        actor_grad_clip: float = 100.0,
        critic_grad_clip: float = 100.0,
        replay_value_scale: float = 0.0,
        real_data_ratio: float = 0.0,
        world_model_warmup: int = 0,
        mixed_precision: bool = False,
        log_image_interval: int = 1000,
        action_noise: ActionNoise | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ) -> None:
        if train_ratio is not None:
            # One training round per vectorised step, with as many updates as the replay credit allows (see train()).
            train_freq, gradient_steps = 1, -1
        super().__init__(
            policy,
            env,  # type: ignore[arg-type]
            learning_rate,
            buffer_size=buffer_size,
            learning_starts=learning_starts,
            batch_size=batch_size,
            gamma=gamma,
            train_freq=train_freq,
            gradient_steps=gradient_steps,
            action_noise=action_noise,
            replay_buffer_class=None,
            replay_buffer_kwargs=replay_buffer_kwargs,
            policy_kwargs=policy_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            device=device,
            support_multi_env=True,
            seed=seed,
            sde_support=False,
            supported_action_spaces=(spaces.Box, spaces.Discrete, spaces.MultiDiscrete),
        )
        self.actor_learning_rate = actor_learning_rate
        self.critic_learning_rate = critic_learning_rate
        self.batch_length = batch_length
        self.train_ratio = train_ratio
        self.return_lambda = return_lambda
        self.imagination_horizon = imagination_horizon
        self.imagination_starts = imagination_starts
        self.loss_scales = {"rec": 1.0, "rew": 1.0, "cont": 1.0, "dyn": dyn_scale, "rep": rep_scale}
        self.free_nats = free_nats
        self.actor_entropy = actor_entropy
        self.actor_grad = actor_grad
        self.slow_critic_update = slow_critic_update
        self.slow_critic_scale = slow_critic_scale
        self.return_norm_decay = return_norm_decay
        self.return_norm_limit = return_norm_limit
        self.world_model_grad_clip = world_model_grad_clip
        self.actor_grad_clip = actor_grad_clip
        self.critic_grad_clip = critic_grad_clip
        self.replay_value_scale = replay_value_scale
        self.real_data_ratio = real_data_ratio
        self.world_model_warmup = int(world_model_warmup)
        self.mixed_precision = mixed_precision
        self.log_image_interval = log_image_interval
        self._replay_credit = 0.0
        self._last_latent: AgentState | None = None
        self._restart_filter: np.ndarray | None = None  # rows whose filter restarts at the next observation
        if _init_setup_model:
            self._setup_model()

    # Setup -------------------------------------------------------------------------------------------------------------

    def _check_settings(self) -> None:
        """Reject impossible settings; run by ``_setup_model``, so settings replaced by :meth:`load`'s kwargs too."""
        if self.actor_grad not in ("auto", "reinforce", "dynamics"):
            raise ValueError(f"actor_grad must be 'auto', 'reinforce' or 'dynamics', got {self.actor_grad!r}")
        if self.replay_value_scale < 0.0:
            raise ValueError(f"replay_value_scale must be >= 0, got {self.replay_value_scale}")
        if not 0.0 <= self.real_data_ratio <= 1.0:
            raise ValueError(f"real_data_ratio must lie in [0, 1], got {self.real_data_ratio}")
        if self.world_model_warmup < 0:
            raise ValueError(f"world_model_warmup must be >= 0, got {self.world_model_warmup}")
        if self.batch_length < 2 or self.batch_size < 1 or self.imagination_horizon < 1:
            raise ValueError("batch_length must be >= 2, batch_size >= 1 and imagination_horizon >= 1")

    def _setup_model(self) -> None:
        self._check_settings()
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        _check_observation_space(self.observation_space)
        self._refuse_vec_normalize(self.env)
        self.actor_lr_schedule = FloatSchedule(self.actor_learning_rate)
        self.critic_lr_schedule = FloatSchedule(self.critic_learning_rate)
        self.policy = self.policy_class(
            self.observation_space,
            self.action_space,
            self.lr_schedule,
            actor_lr_schedule=self.actor_lr_schedule,
            critic_lr_schedule=self.critic_lr_schedule,
            **self.policy_kwargs,
        ).to(self.device)
        self.replay_buffer = SequenceReplayBuffer(
            self.buffer_size,
            self.observation_space,
            self.action_space,
            device=self.device,
            n_envs=self.n_envs,
            action_dim=self.policy.action_dim,
            **(self.replay_buffer_kwargs or {}),
        )
        self._convert_train_freq()
        # _last_latent keeps what __init__ or load() set: None, or the state saved with include=["_last_latent"].

    @staticmethod
    def _refuse_vec_normalize(env: VecEnv | None) -> None:
        if env is not None and unwrap_vec_normalize(env) is not None:
            raise ValueError(
                "Dreamer does not support VecNormalize: its world model normalises observations itself (symlog) and "
                "learns rewards in symlog space. Train without it (rl-zoo: `normalize: false`)."
            )

    def set_env(self, env: GymEnv, force_reset: bool = True) -> None:
        """Replace the environment (same spaces and number of envs). VecNormalize is refused, as at construction."""
        super().set_env(env, force_reset=force_reset)
        self._refuse_vec_normalize(self.env)
        self._last_latent = None

    @property
    def _actor_grad(self) -> str:
        if self.actor_grad == "auto":
            return "dynamics" if isinstance(self.action_space, spaces.Box) else "reinforce"
        return self.actor_grad

    # Interaction -------------------------------------------------------------------------------------------------------

    def _sample_action(
        self, learning_starts: int, action_noise: ActionNoise | None = None, n_envs: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """Filter the last observation into the RSSM state and act (random actions before ``learning_starts``).

        :return: actions for the environment and their model representation (scaled Box, one-hot), which is stored
        """
        if self._last_latent is None or self._last_latent.deter.shape[0] != n_envs:
            self._last_latent = self.policy.initial_state(n_envs)
        self.policy.set_training_mode(False)
        restart = self._restart_filter
        if restart is None or restart.shape != (n_envs,):
            restart = np.zeros(n_envs, dtype=bool)
        obs, finite = finite_rows(self._last_obs, n_envs)  # type: ignore[arg-type]
        obs_tensor, _ = self.policy.obs_to_tensor(obs)
        starts = np.asarray(self._last_episode_starts, dtype=bool) | restart
        env_action, latent = self.policy.act(obs_tensor, self._last_latent, starts, deterministic=False)
        if self.num_timesteps < learning_starts:
            env_action = np.array([self.action_space.sample() for _ in range(n_envs)])
        for i in np.flatnonzero(~finite):  # the replay buffer skips this step (non_finite="skip"): act at random
            env_action[i] = self.action_space.sample()
        self._restart_filter = ~finite  # the buffer starts a segment at the next finite observation: so does the filter
        model_action = self.policy.to_model_action(env_action)
        if action_noise is not None and isinstance(self.action_space, spaces.Box):
            model_action = np.clip(model_action + action_noise().reshape(n_envs, -1), -1.0, 1.0).astype(np.float32)
            env_action = self.policy.unscale_action(model_action).reshape(n_envs, *self.action_space.shape)
        self._last_latent = AgentState(latent.deter, latent.stoch, model_action)
        return env_action, model_action

    def _store_transition(
        self,
        replay_buffer: ReplayBuffer,
        buffer_action: np.ndarray,
        new_obs: np.ndarray | dict[str, np.ndarray],
        reward: np.ndarray,
        dones: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        """Store the step in the sequence buffer; on ``done`` the true last observation is ``terminal_observation``."""
        next_obs = {k: v.copy() for k, v in new_obs.items()} if isinstance(new_obs, dict) else new_obs.copy()
        for i, done in enumerate(dones):
            terminal_obs = infos[i].get("terminal_observation") if done else None
            if terminal_obs is not None:
                if isinstance(next_obs, dict):
                    for key in next_obs:
                        next_obs[key][i] = terminal_obs[key]
                else:
                    next_obs[i] = terminal_obs
        self.replay_buffer.add(
            self._last_obs,  # type: ignore[arg-type]
            next_obs,
            buffer_action,
            reward,
            dones,
            infos,
            is_first=self._last_episode_starts,
        )
        if self.replay_buffer.n_non_finite:
            self.logger.record("rollout/non_finite_steps", self.replay_buffer.n_non_finite)
        # A non-finite reward restarts the buffer's segment at new_obs: restart the filter there too.
        bad_reward = ~np.isfinite(np.asarray(reward, dtype=np.float64)).reshape(-1)
        restart = self._restart_filter
        self._restart_filter = bad_reward if restart is None or restart.shape != bad_reward.shape else restart | bad_reward
        self._last_obs = new_obs
        self._last_episode_starts = np.asarray(dones, dtype=bool).copy()

    def learn(
        self: SelfDreamer,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "Dreamer",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfDreamer:
        """Train for ``total_timesteps`` environment steps (SB3's ``learn``), with three additions.

        - ``rollout/<task>/ep_rew_mean`` and ``ep_len_mean`` are logged on multi-task envs (``info["task"]``, see
          :class:`~sb3_dreamer.transfer.MultiTaskVecEnv` and :class:`~sb3_dreamer.common.TaskReturnCallback`).
        - ``rollout/ep_true_rew_mean`` and ``rollout/ep_learned_rew_mean`` are logged when the env reports its true
          reward in ``info["original_reward"]`` (reward-free and DTW-relabelled envs), see
          :class:`~sb3_dreamer.common.TrueRewardCallback`.
        - ``progress_bar=True`` with standard output that is not a terminal (a log file, a pipe) prints a line with
          steps, steps/s and ETA every 10 seconds instead of a progress bar, which would show nothing until the end.

        :param total_timesteps: environment steps to collect
        :param callback: SB3 callback(s) called at every step
        :param log_interval: episodes between two logger dumps
        :param tb_log_name: name of the TensorBoard run
        :param reset_num_timesteps: start the step count (and the logger's run) anew
        :param progress_bar: show progress (a bar on a terminal, lines otherwise)
        :return: the trained model
        """
        callbacks = list(self._logging_callbacks)
        if progress_bar and not sys.stdout.isatty():
            callbacks.append(LogProgressCallback())
            progress_bar = False
        if isinstance(callback, list):
            callbacks.insert(0, CallbackList(callback))
        elif callback is not None:  # a BaseCallback, or a function of (locals, globals) as SB3 accepts
            callbacks.insert(0, callback if isinstance(callback, BaseCallback) else ConvertCallback(callback))
        return super().learn(
            total_timesteps=total_timesteps,
            callback=CallbackList(callbacks),
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )

    @property
    def _logging_callbacks(self) -> tuple[TrueRewardCallback, TaskReturnCallback]:
        """One :class:`TrueRewardCallback` and one :class:`TaskReturnCallback` per model, so that their episode
        windows outlive a single ``learn`` call."""
        if getattr(self, "_true_reward_logger", None) is None:
            self._true_reward_logger = TrueRewardCallback()
        if getattr(self, "_task_return_logger", None) is None:
            self._task_return_logger = TaskReturnCallback()
        return self._true_reward_logger, self._task_return_logger

    # Training ----------------------------------------------------------------------------------------------------------

    def _updates_due(self, gradient_steps: int) -> int:
        """Number of updates for this round: ``gradient_steps``, or the replay credit earned under ``train_ratio``."""
        if self.train_ratio is None:
            return gradient_steps
        self._replay_credit += gradient_steps * self.train_ratio / (self.batch_size * self.batch_length)
        updates = int(self._replay_credit)
        self._replay_credit -= updates
        return updates

    def _update_learning_rate(self, optimizers: Any = None) -> None:
        progress = self._current_progress_remaining
        policy = self.policy
        for optimizer, schedule, key in (
            (policy.world_model_optimizer, self.lr_schedule, "learning_rate"),
            (policy.actor_optimizer, self.actor_lr_schedule, "actor_learning_rate"),
            (policy.critic_optimizer, self.critic_lr_schedule, "critic_learning_rate"),
        ):
            update_learning_rate(optimizer, schedule(progress))
            self.logger.record(f"train/{key}", schedule(progress))

    def train(self, gradient_steps: int, batch_size: int = 16) -> None:
        """Run the updates due: world model, then actor and critic in imagination (DreamerV3, Methods).

        :param gradient_steps: updates to run (or, under ``train_ratio``, env transitions collected since last round)
        :param batch_size: replayed sequences per update
        """
        updates = self._updates_due(gradient_steps)
        if updates == 0 or not self.replay_buffer.can_sample(self.batch_length):
            return
        self.policy.set_training_mode(True)
        self._update_learning_rate()
        policy = self.policy
        metrics: dict[str, list[float]] = {}
        dynamics_grad = self._actor_grad == "dynamics"

        start_time = time.perf_counter()
        timer = PhaseTimer()
        for _ in range(updates):
            timer.restart()
            # 1. Replay: B sequences of T steps, row t = (x_t, a_{t-1}, r_t, is_first_t, is_terminal_t).
            data = self.replay_buffer.sample(batch_size, self.batch_length)
            timer.lap("replay")
            # 2. World model (Eq. 5): prediction losses + KL balancing with free bits.
            post, feat, world_model = world_model_step(self, data)
            timer.lap("world_model")

            step_metrics = dict(world_model)
            if self._n_updates >= self.world_model_warmup:  # the first world_model_warmup updates train the model only
                with self._autocast():
                    # 3.-6. Imagination, lambda-returns, actor and critic losses (update.behavior_losses).
                    actor_loss, critic_loss, behavior = behavior_losses(self, post, feat, data, dynamics_grad, timer)
                timer.lap("losses")
                actor_norm = optimizer_step(policy.actor_optimizer, actor_loss, self.actor_grad_clip)
                timer.lap("actor")
                critic_norm = optimizer_step(policy.critic_optimizer, critic_loss, self.critic_grad_clip)

                # 7. Slow critic: EMA of the critic's weights.
                polyak_update(policy.critic.parameters(), policy.slow_critic.parameters(), self.slow_critic_update)
                timer.lap("critic")
                step_metrics.update(
                    actor_loss=actor_loss.item(),
                    critic_loss=critic_loss.item(),
                    **behavior,
                    actor_grad_norm=actor_norm,
                    critic_grad_norm=critic_norm,
                )
            for key, number in step_metrics.items():
                metrics.setdefault(key, []).append(number)
            self._n_updates += 1
            if self.log_image_interval > 0 and self._n_updates % self.log_image_interval == 0:
                for key, strip in open_loop_strips(policy, data).items():
                    self.logger.record(f"train/open_loop_{key}", Image(strip, "CHW"), exclude=("stdout", "log", "json", "csv"))

        elapsed = time.perf_counter() - start_time
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/updates_per_second", updates / max(elapsed, 1e-9))
        for phase, seconds in timer.totals.items():  # seconds per update in each phase of the update
            self.logger.record(f"train/time_{phase}", seconds / updates)
        for key, numbers in metrics.items():
            self.logger.record(f"train/{key}", float(np.mean(numbers)))

    def _autocast(self) -> contextlib.AbstractContextManager:
        """bfloat16 autocast on the model's device when ``mixed_precision`` is set, else nothing."""
        if not self.mixed_precision:
            return contextlib.nullcontext()
        return th.autocast(device_type=self.device.type, dtype=th.bfloat16)

    # Saving ------------------------------------------------------------------------------------------------------------

    @classmethod
    def load(  # type: ignore[override]
        cls: type[SelfDreamer],
        path: str | pathlib.Path | io.BufferedIOBase,
        env: GymEnv | None = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> SelfDreamer:
        """Load a model saved with :meth:`save` (SB3's ``load``), with a clear error for damaged or foreign files.

        :param path: the zip file
        :param env: environment to attach (must match the saved spaces)
        :param device: torch device
        :param custom_objects: values that replace saved ones (e.g. schedules that cannot be unpickled)
        :param print_system_info: print the saved and current system info
        :param force_reset: reset the environment before the next ``learn``
        :param kwargs: settings that replace saved ones, as in SB3 (rl-zoo's ``--trained-agent`` passes its
            hyperparameters here); ``train_ratio``, ``dyn_scale`` and ``rep_scale`` become what ``__init__`` makes of them
        :return: the model
        """
        scales = {key[:3]: kwargs.pop(key) for key in ("dyn_scale", "rep_scale") if key in kwargs}
        if kwargs.get("train_ratio") is not None:
            kwargs.update(train_freq=1, gradient_steps=-1)  # as in __init__
        try:
            model = super().load(path, env, device, custom_objects, print_system_info, force_reset, **kwargs)
        except (AssertionError, KeyError, EOFError, RuntimeError, zipfile.BadZipFile, pickle.UnpicklingError) as error:
            raise ValueError(f"Could not load a Dreamer model from {path!r}: {type(error).__name__}: {error}") from error
        model.loss_scales.update(scales)
        return model

    def _excluded_save_params(self) -> list[str]:
        return [
            *super()._excluded_save_params(),
            "_last_latent",
            "_restart_filter",
            "actor_lr_schedule",
            "critic_lr_schedule",
            "_true_reward_logger",
            "_task_return_logger",
        ]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", "policy.world_model_optimizer", "policy.actor_optimizer", "policy.critic_optimizer"], []

    def load_replay_buffer(self, path: str | pathlib.Path | io.BufferedIOBase, truncate_last_traj: bool = True) -> None:
        """Load a replay buffer saved with :meth:`save_replay_buffer`.

        Every stream restarts its episode at the next step (``is_first``), so ``truncate_last_traj`` needs no action.

        :param path: the pickle file
        :param truncate_last_traj: accepted for SB3 compatibility
        """
        try:
            buffer = load_from_pkl(path, self.verbose)
        except Exception as error:  # a truncated or foreign pickle raises many exception types
            raise ValueError(f"Could not read a replay buffer from {path!r}: {error}") from error
        if not isinstance(buffer, SequenceReplayBuffer):
            raise ValueError(f"{path!r} holds a {type(buffer).__name__}, not a Dreamer SequenceReplayBuffer")
        if buffer.n_envs != self.n_envs or buffer.action_dim != self.policy.action_dim:
            raise ValueError(
                f"The replay buffer in {path!r} was made for n_envs={buffer.n_envs}, action_dim={buffer.action_dim}; "
                f"this model has n_envs={self.n_envs}, action_dim={self.policy.action_dim}"
            )
        buffer.device = self.device
        self.replay_buffer = buffer
        self._last_episode_starts = np.ones(self.n_envs, dtype=bool)


def _check_observation_space(space: spaces.Space) -> None:
    boxes = space.spaces.values() if isinstance(space, spaces.Dict) else [space]
    for sub in boxes:
        if not isinstance(sub, spaces.Box) or len(sub.shape) not in (1, 2, 3):
            raise ValueError(
                f"Dreamer supports Box observations (vectors or images) and Dict spaces of them, got {space}. "
                "Wrap other spaces first (e.g. gymnasium.wrappers.FlattenObservation for Discrete/Tuple spaces)."
            )
