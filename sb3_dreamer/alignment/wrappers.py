"""Gymnasium and SB3 VecEnv reward wrappers that replace the env reward by a DTW-trained reward model.

Formulation: episode-level DTW alignment of the agent's observations to reference (source) episodes, labels from the
path (Telepath reward redistribution, TroddenSpade/Telepath ``modules/cem.py``, or the source reward / tracking cost
variants; methods.md sections C and C1), and an MLP reward model r̂(o) regressed on the labels.

Reward emitted: at every step, ``float(r̂(o_{t+1}))`` where ``o_{t+1}`` is the observation returned by that step (the
true final observation at episode end). Sign and scale are the source reward's for ``"source_reward"`` and
``"source_reward_split"`` (the latter divided by the local time-warp ratio), <= 0 (negative squared normalised
distance) for ``"tracking"`` and in (0, 1] for ``"tracking_exp"``. No alignment runs per step; alignment, labelling
and refitting run when an episode ends, so the model used from the next step on may differ. The env's own reward is
kept in ``info["original_reward"]``, unless an inner wrapper (``RewardFree``) already put the true reward there.
With ``reward_at_sampling=True`` no reward is computed per step: the step returns :data:`REWARD_AT_SAMPLING` (0.0)
and an off-policy learner computes r̂(o_{t+1}) with the current model when it samples its batches
(:class:`~sb3_dreamer.alignment.SampledRewardCallback`; without one attached, e.g. in an evaluation env, the reward is
computed per step as usual, with a one-time warning); at episode end ``info["learned_episode_return"]`` then holds the
episode's return under the current model (what :class:`~sb3_dreamer.TrueRewardCallback` logs as the learned return).
With ``background=True`` the episode-end work runs in a worker process
(:class:`~sb3_dreamer.alignment.background.BackgroundRewarder`): a new model is used one episode later, and the
episode-end ``info`` keys describe the previous episode (``info["alignment_episode"]`` names it).

Bad input (``strict=False``, the default): a step observation with NaN or infinite values gets the reward
:data:`~sb3_dreamer.alignment.rewarder.NON_FINITE_REWARD` (0.0) and a ``RuntimeWarning`` naming the step and the
episode (once per episode); the episode is not aligned and adds no labels (``info["alignment_skipped"]`` is True at its
end, ``rewarder.skipped_episodes`` counts it) and training continues. A non-finite reset observation only warns (the
reward never uses it). ``strict=True`` raises a ``ValueError`` in both cases. With ``reward_at_sampling=True`` the
check runs at the episode end (one call per episode): the same warning, naming the first such step, or the same error.
"""

import os
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn

from sb3_dreamer.alignment.background import BackgroundRewarder
from sb3_dreamer.alignment.dataset import TrajectoryDataset, read_npz
from sb3_dreamer.alignment.rewarder import (
    NON_FINITE_REWARD,
    DTWRewarder,
    EpisodeReport,
    load_reference,
    predict_finite,
)
from sb3_dreamer.common.callbacks import LEARNED_RETURN_KEY

Rewarder = DTWRewarder | BackgroundRewarder

#: The reward a step returns with ``reward_at_sampling=True``: a placeholder, the learner's buffer computes the reward.
REWARD_AT_SAMPLING = 0.0


def _rewards_deferred(wrapper: "DTWRewardWrapper | VecDTWRewardWrapper") -> bool:
    """Whether the learner computes this step's reward: ``reward_at_sampling=True`` and a replay buffer attached by
    :class:`~sb3_dreamer.alignment.SampledRewardCallback`. Without one (an evaluation env, or training without the
    callback) the wrapper computes the reward per step as usual, and says so once: a learner never sees placeholders."""
    if not wrapper.reward_at_sampling:
        return False
    if not wrapper.sampler_attached and not wrapper._warned_per_step:
        warnings.warn(
            f"{type(wrapper).__name__}(reward_at_sampling=True) has no replay buffer that computes its rewards (train "
            "an off-policy model with sb3_dreamer.alignment.SampledRewardCallback; SB3 algorithms also need "
            "replay_buffer_class=SampledRewardReplayBuffer): it computes the reward per step instead (fine for an "
            "evaluation env)",
            UserWarning,
            stacklevel=3,
        )
        wrapper._warned_per_step = True
    return wrapper.sampler_attached


def _vec_env_id(venv: VecEnv) -> str:
    """The gymnasium id of a VecEnv's first env, or "" (for error messages only)."""
    spec = venv.get_attr("spec", [0])[0] if venv.num_envs > 0 else None
    return spec.id if spec is not None else ""


def _flat_obs(obs: Any, obs_dim: int) -> np.ndarray:
    return np.asarray(obs, dtype=np.float32).reshape(-1, obs_dim)


def _make_rewarder(dataset: TrajectoryDataset, background: bool, rewarder_kwargs: dict[str, Any]) -> Rewarder:
    return BackgroundRewarder(dataset, **rewarder_kwargs) if background else DTWRewarder(dataset, **rewarder_kwargs)


def _check_reset_obs(obs: Any, rewarder: Rewarder, where: str) -> None:
    """A non-finite reset observation: ValueError with ``strict=True``, else a warning (the reward never uses it)."""
    if np.all(np.isfinite(_flat_obs(obs, rewarder.obs_dim))):
        return
    message = f"the reset observation of {where} has NaN or infinite values"
    if rewarder.strict:
        raise ValueError(f"{message}; DTW alignment needs finite values (strict=True)")
    warnings.warn(
        f"{message}; it is passed on unchanged (the learned reward uses step observations only)", RuntimeWarning, stacklevel=3
    )


def _first_non_finite(buffer: np.ndarray) -> int | None:
    """Index of the first row of a ``(T, obs_dim)`` episode buffer with NaN or infinite values, None if all are finite."""
    bad = np.flatnonzero(~np.isfinite(buffer).all(axis=1))
    return int(bad[0]) if len(bad) else None


def _episode_info(info: dict[str, Any], report: EpisodeReport | None, episode_return: float, skipped: bool) -> None:
    info["original_episode_return"] = float(episode_return)
    info["alignment_skipped"] = skipped
    if report is None or report.alignment is None:  # skipped, or a pending report restored from a state
        return
    info["alignment_episode"] = int(report.episode)
    info["alignment_distance"] = float(report.alignment.distance)
    info["alignment_reference"] = int(report.alignment.reference_index)
    info["alignment_end_index"] = int(report.alignment.end_index)
    info["alignment_labels_kept"] = int(report.kept.sum())


def _save_npz(path: str | os.PathLike, state: dict[str, np.ndarray]) -> str:
    path = os.fspath(path)
    if not path.endswith(".npz"):
        path += ".npz"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.savez(path, **state)
    return path


def _load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    return read_npz(os.fspath(path), "wrapper state file", "an .npz file written by save_state or AlignmentCheckpointCallback")


class _StateFileMixin:
    """``save_state`` / ``load_state`` of a wrapper's ``get_state`` / ``set_state`` dict as an ``.npz`` file."""

    def get_state(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def save_state(self, path: str | os.PathLike) -> str:
        """Write :meth:`get_state` to an ``.npz`` file (``.npz`` appended if missing).

        :param path: file path
        :return: the path written
        """
        return _save_npz(path, self.get_state())

    def load_state(self, path: str | os.PathLike) -> None:
        """Restore the state saved by :meth:`save_state`.

        :param path: ``.npz`` file
        """
        self.set_state(_load_npz(path))


class DTWRewardWrapper(_StateFileMixin, gym.Wrapper):
    """DTW-aligned learned reward for one gymnasium env (methods.md, sections C and C1).

    Every step returns ``float(r̂(obs))`` of the returned observation; at episode end the episode is aligned to the
    reference episodes, labelled, stored, and the reward model is refitted when ``refit_interval`` new labels have
    arrived. ``info["original_reward"]`` (every step), and at episode end ``info["alignment_episode"]`` (the episode
    the alignment keys describe: this one, or the previous one with ``background=True``), ``info["alignment_distance"]``,
    ``info["alignment_reference"]``, ``info["alignment_end_index"]``, ``info["alignment_labels_kept"]`` (labels stored,
    see ``max_label_cost``), ``info["original_episode_return"]``, ``info["alignment_skipped"]`` (True for an episode
    with a NaN or infinite observation: its labels are skipped and the other alignment keys are absent; see ``strict``).
    An episode cut short by ``reset`` before termination/truncation is discarded (not labelled).

    Usable from rl-zoo: ``env_wrapper: [{sb3_dreamer.alignment.DTWRewardWrapper: {reference: path/to/ref.npz}}]``.

    :param env: env with a 1-D Box observation space of the reference's dimension
    :param reference: reference episodes (:class:`TrajectoryDataset` or ``.npz`` path) with source rewards
    :param background: run alignment, labels and refits in a worker process
        (:class:`~sb3_dreamer.alignment.background.BackgroundRewarder`; the model changes one episode later)
    :param reward_at_sampling: return :data:`REWARD_AT_SAMPLING` at every step instead of the learned reward, which
        the learner's replay buffer computes with the current model when it samples a batch
        (:class:`~sb3_dreamer.alignment.SampledRewardCallback`): no per-step prediction, and always the current model's
        rewards. Off-policy learners only; until that callback is attached (an evaluation env, or training without
        it) the reward is computed per step as usual, with a one-time ``UserWarning``
    :param rewarder_kwargs: the settings of :class:`DTWRewarder` (``label_mode``, ``window``, ``max_label_cost``,
        ``dtw_labels``, ``refit_interval``, ``seed``, ``strict``, ...), documented there once
    """

    def __init__(
        self,
        env: gym.Env,
        reference: TrajectoryDataset | str | os.PathLike,
        background: bool = False,
        reward_at_sampling: bool = False,
        **rewarder_kwargs: Any,
    ) -> None:
        super().__init__(env)
        dataset = load_reference(reference, env.observation_space, env.spec.id if env.spec is not None else "")
        self.rewarder = _make_rewarder(dataset, background, rewarder_kwargs)
        self.reward_at_sampling = bool(reward_at_sampling)
        #: set by :class:`~sb3_dreamer.alignment.SampledRewardCallback` once a replay buffer computes the rewards
        self.sampler_attached = False
        self._warned_per_step = False
        self._deferred = False  # this episode's rewards are computed by the learner (fixed at its first step)
        # The episode's observations, written in place (no per-step allocation); doubled when full.
        self._episode_buffer = np.zeros((1024, self.rewarder.obs_dim), dtype=np.float32)
        self._episode_length = 0
        self._episode_return = 0.0
        self._non_finite_step: int | None = None  # first step of the current episode with a non-finite observation

    def _episode_name(self) -> str:
        """The current episode, for messages (0-based; episodes ended so far, labelled or skipped)."""
        return f"episode {self.rewarder.n_episodes + self.rewarder.skipped_episodes}"

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset the env and start a new episode buffer (an unfinished episode is discarded).

        :param seed: passed to the env
        :param options: passed to the env
        :return: ``(obs, info)``
        """
        obs, info = self.env.reset(seed=seed, options=options)
        _check_reset_obs(obs, self.rewarder, self._episode_name())
        self._episode_length, self._episode_return, self._non_finite_step = 0, 0.0, None
        return obs, info

    def close(self) -> None:
        """Close the env and stop the rewarder's worker process, if any."""
        super().close()
        if isinstance(self.rewarder, BackgroundRewarder):
            self.rewarder.close()

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Step the env and replace its reward by the learned one.

        :param action: action for the env
        :return: ``(obs, learned_reward, terminated, truncated, info)``
        """
        step = self._episode_length
        if step == 0:
            self._deferred = _rewards_deferred(self)
        obs, reward, terminated, truncated, info = self.env.step(action)
        if step == len(self._episode_buffer):
            self._episode_buffer = np.concatenate([self._episode_buffer, np.zeros_like(self._episode_buffer)])
        row = self._episode_buffer[step]
        row[:] = obs  # a copy: envs may reuse their observation buffer
        self._episode_length = step + 1
        if self._deferred:  # the learner's buffer computes it; the finiteness check runs at the episode end
            learned = REWARD_AT_SAMPLING
        else:
            try:  # no extra check on the per-step path: predict rejects NaN/inf observations with a ValueError
                learned = self.rewarder.predictor.predict_row(row)
            except ValueError:
                if np.all(np.isfinite(row)):
                    raise
                learned = NON_FINITE_REWARD
                if self._non_finite_step is None:  # warn (or raise if strict) once per episode
                    self.rewarder.non_finite_observation(f"step {step} (0-based) of {self._episode_name()}")
                    self._non_finite_step = step
        info = dict(info)  # a copy: an env may return the same dict every step
        # An inner RewardFree (or another relabelling wrapper) already holds the true reward: keep it.
        info.setdefault("original_reward", float(reward))
        self._episode_return += float(info["original_reward"])
        if terminated or truncated:
            if self._deferred:
                episode = self._episode_buffer[: self._episode_length]
                info[LEARNED_RETURN_KEY] = float(predict_finite(self.rewarder.predict, episode).sum())
                self._non_finite_step = _first_non_finite(episode)
                if self._non_finite_step is not None:
                    self.rewarder.non_finite_observation(f"step {self._non_finite_step} (0-based) of {self._episode_name()}")
            skipped = self._non_finite_step is not None
            if skipped:
                report = None
                self.rewarder.skip_episode()
            else:
                report = self.rewarder.end_episode(self._episode_buffer[: self._episode_length])
            _episode_info(info, report, self._episode_return, skipped)
            self._episode_length, self._episode_return, self._non_finite_step = 0, 0.0, None
        return obs, learned, terminated, truncated, info

    def get_state(self) -> dict[str, np.ndarray]:
        """Reward model, label store, RNG, counters and the current episode buffer as numpy arrays.

        :return: flat dict of arrays
        """
        state = self.rewarder.get_state()
        state["episode_obs"] = self._episode_buffer[: self._episode_length].copy()
        state["episode_return"] = np.asarray(self._episode_return, dtype=np.float64)
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore a state from :meth:`get_state`.

        :param state: dict of arrays
        """
        self.rewarder.set_state(state)
        buffer = np.asarray(state["episode_obs"], dtype=np.float32)
        self._episode_buffer = np.zeros((max(1024, 2 * len(buffer)), self.rewarder.obs_dim), dtype=np.float32)
        self._episode_buffer[: len(buffer)] = buffer
        self._episode_length = len(buffer)
        self._episode_return = float(state["episode_return"])
        self._non_finite_step = _first_non_finite(buffer)


class VecDTWRewardWrapper(_StateFileMixin, VecEnvWrapper):
    """DTW-aligned learned reward for an SB3 VecEnv: one reward-model call per step for all envs.

    Same reward, labels and info keys as :class:`DTWRewardWrapper` (see there for the parameters); one reward model
    and label store shared by all sub-envs, one episode buffer per sub-env. For a finished sub-env the reward is
    computed on ``infos[i]["terminal_observation"]`` (the returned obs is already the reset obs). Finished episodes
    are processed in sub-env order, so results are reproducible. Place it before ``VecNormalize``
    (rl-zoo ``vec_env_wrapper`` does).

    :param venv: SB3 VecEnv with a 1-D Box observation space
    :param reference: reference episodes (dataset or ``.npz`` path)
    :param background: run alignment, labels and refits in a worker process (see :class:`DTWRewardWrapper`)
    :param reward_at_sampling: rewards computed by the learner's replay buffer (see :class:`DTWRewardWrapper`)
    :param rewarder_kwargs: the settings of :class:`DTWRewarder` (messages about non-finite observations name the
        sub-env and its episode)
    """

    def __init__(
        self,
        venv: VecEnv,
        reference: TrajectoryDataset | str | os.PathLike,
        background: bool = False,
        reward_at_sampling: bool = False,
        **rewarder_kwargs: Any,
    ) -> None:
        super().__init__(venv)
        dataset = load_reference(reference, venv.observation_space, _vec_env_id(venv))
        self.rewarder = _make_rewarder(dataset, background, rewarder_kwargs)
        self.reward_at_sampling = bool(reward_at_sampling)
        #: set by :class:`~sb3_dreamer.alignment.SampledRewardCallback` once a replay buffer computes the rewards
        self.sampler_attached = False
        self._warned_per_step = False
        self._episode_obs: list[list[np.ndarray]] = [[] for _ in range(self.num_envs)]
        self._episode_returns = np.zeros(self.num_envs, dtype=np.float64)
        self._episode_counts = np.zeros(self.num_envs, dtype=np.int64)  # episodes ended per sub-env, for messages
        self._non_finite_steps: list[int | None] = [None] * self.num_envs

    def _where(self, index: int) -> str:
        return f"step {len(self._episode_obs[index])} (0-based) of episode {self._episode_counts[index]} of env {index}"

    def reset(self) -> np.ndarray:
        """Reset all envs and clear the episode buffers.

        :return: observations
        """
        obs = self.venv.reset()
        for index, row in enumerate(_flat_obs(obs, self.rewarder.obs_dim)):
            _check_reset_obs(row, self.rewarder, f"episode {self._episode_counts[index]} of env {index}")
        self._episode_obs = [[] for _ in range(self.num_envs)]
        self._episode_returns[:] = 0.0
        self._non_finite_steps = [None] * self.num_envs
        return obs  # type: ignore[return-value]

    def close(self) -> None:
        """Close the VecEnv and stop the rewarder's worker process, if any."""
        super().close()
        if isinstance(self.rewarder, BackgroundRewarder):
            self.rewarder.close()

    def step_wait(self) -> VecEnvStepReturn:
        """Step all envs and replace the rewards by the learned ones.

        :return: ``(obs, rewards, dones, infos)``
        """
        deferred = _rewards_deferred(self)
        obs, rewards, dones, infos = self.venv.step_wait()
        reward_obs = _flat_obs(obs, self.rewarder.obs_dim).copy()
        for index in np.flatnonzero(dones):
            if "terminal_observation" not in infos[index]:
                raise ValueError(f"env {index} finished without infos[{index}]['terminal_observation'] (not an SB3 VecEnv?)")
            reward_obs[index] = _flat_obs(infos[index]["terminal_observation"], self.rewarder.obs_dim)[0]
        finite = np.isfinite(reward_obs).all(axis=1)
        if deferred:  # the learner's buffer computes the rewards; finiteness is checked at episode end
            learned = np.full(self.num_envs, REWARD_AT_SAMPLING, dtype=np.float32)
            for index in np.flatnonzero(~finite):
                if self._non_finite_steps[index] is None:
                    self._non_finite_steps[index] = len(self._episode_obs[index])
        elif finite.all():
            learned = self.rewarder.predict(reward_obs).astype(np.float32)
        else:
            for index in np.flatnonzero(~finite):
                if self._non_finite_steps[index] is None:  # warn (or raise if strict) once per episode
                    self.rewarder.non_finite_observation(self._where(index))
                    self._non_finite_steps[index] = len(self._episode_obs[index])
            learned = np.full(self.num_envs, NON_FINITE_REWARD, dtype=np.float32)
            if finite.any():
                learned[finite] = self.rewarder.predict(reward_obs[finite])
        for index in range(self.num_envs):
            self._episode_obs[index].append(reward_obs[index])
            infos[index].setdefault("original_reward", float(rewards[index]))
            self._episode_returns[index] += float(infos[index]["original_reward"])
            if dones[index]:
                if deferred:
                    episode = np.stack(self._episode_obs[index])
                    infos[index][LEARNED_RETURN_KEY] = float(predict_finite(self.rewarder.predict, episode).sum())
                if deferred and self._non_finite_steps[index] is not None:
                    where = f"step {self._non_finite_steps[index]} (0-based) of episode {self._episode_counts[index]}"
                    self.rewarder.non_finite_observation(f"{where} of env {index}")
                skipped = self._non_finite_steps[index] is not None
                if skipped:
                    report = None
                    self.rewarder.skip_episode()
                else:
                    report = self.rewarder.end_episode(np.stack(self._episode_obs[index]))
                _episode_info(infos[index], report, self._episode_returns[index], skipped)
                self._episode_obs[index], self._episode_returns[index] = [], 0.0
                self._non_finite_steps[index] = None
                self._episode_counts[index] += 1
        return obs, learned, dones, infos

    def get_state(self) -> dict[str, np.ndarray]:
        """Reward model, label store, RNG, counters and every sub-env's episode buffer as numpy arrays.

        :return: flat dict of arrays
        """
        state = self.rewarder.get_state()
        for index, buffer in enumerate(self._episode_obs):
            state[f"episode_obs.{index}"] = np.stack(buffer) if buffer else np.zeros((0, self.rewarder.obs_dim), np.float32)
        state["episode_returns"] = self._episode_returns.copy()
        state["episode_counts"] = self._episode_counts.copy()
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore a state from :meth:`get_state` (same number of envs).

        :param state: dict of arrays
        """
        if len(state["episode_returns"]) != self.num_envs:
            raise ValueError(f"state holds {len(state['episode_returns'])} envs, this VecEnv has {self.num_envs}")
        self.rewarder.set_state(state)
        buffers = [np.asarray(state[f"episode_obs.{i}"], np.float32) for i in range(self.num_envs)]
        self._episode_obs = [list(buffer) for buffer in buffers]
        self._episode_returns = np.array(state["episode_returns"], dtype=np.float64)
        self._non_finite_steps = [_first_non_finite(buffer) for buffer in buffers]
        counts = state.get("episode_counts")  # absent in states saved before it was recorded
        self._episode_counts = np.zeros(self.num_envs, np.int64) if counts is None else np.array(counts, dtype=np.int64)


class AlignmentCheckpointCallback(BaseCallback):
    """Save the DTW reward wrapper state every ``save_freq`` calls, next to ``CheckpointCallback``'s files.

    Files: ``{save_path}/{name_prefix}_alignment_{num_timesteps}_steps.npz`` for a :class:`VecDTWRewardWrapper` or a
    single wrapped env, and ``..._steps_env{i}.npz`` per sub-env when several sub-envs carry a
    :class:`DTWRewardWrapper` (found with ``env_is_wrapped`` and saved through ``env_method``, which also works with
    ``SubprocVecEnv``). Use the same ``save_freq``, ``save_path`` and ``name_prefix`` as the ``CheckpointCallback``.

    :param save_freq: save every this many calls of ``on_step`` (per-env steps, as ``CheckpointCallback``)
    :param save_path: directory
    :param name_prefix: file name prefix
    :param verbose: 2 prints every saved path
    """

    def __init__(self, save_freq: int, save_path: str, name_prefix: str = "rl_model", verbose: int = 0) -> None:
        super().__init__(verbose)
        if save_freq < 1:
            raise ValueError(f"save_freq must be >= 1, got {save_freq}")
        self.save_freq = save_freq
        self.save_path = save_path
        self.name_prefix = name_prefix

    def _init_callback(self) -> None:
        os.makedirs(self.save_path, exist_ok=True)

    def _checkpoint_path(self, suffix: str = "") -> str:
        return os.path.join(self.save_path, f"{self.name_prefix}_alignment_{self.num_timesteps}_steps{suffix}.npz")

    def save_states(self) -> list[str]:
        """Save the state of every DTW reward wrapper found in the training env.

        :return: paths written
        :raises ValueError: if the training env holds no DTW reward wrapper
        """
        venv: VecEnv = self.training_env
        while isinstance(venv, VecEnvWrapper):
            if isinstance(venv, VecDTWRewardWrapper):
                return [venv.save_state(self._checkpoint_path())]
            venv = venv.venv
        wrapped = venv.env_is_wrapped(DTWRewardWrapper)
        indices = [index for index, flag in enumerate(wrapped) if flag]
        if not indices:
            raise ValueError("AlignmentCheckpointCallback: the training env holds no DTWRewardWrapper/VecDTWRewardWrapper")
        paths = []
        for index in indices:
            path = self._checkpoint_path("" if len(wrapped) == 1 else f"_env{index}")
            paths.extend(venv.env_method("save_state", path, indices=[index]))
        return paths

    def _on_step(self) -> bool:
        if self.n_calls % self.save_freq == 0:
            for path in self.save_states():
                if self.verbose >= 2:
                    print(f"Saving alignment state to {path}")
        return True
