"""Reward compensation: train on a target task with its reward moved towards a source task's reward.

Method: "TransReward: Multi-Task and Multi-Dynamics Learning by Reward Transfer", repository
https://github.com/SJ9VRF/TransReward (a sketch without a learner, cited as such: ``src/reward_compensation.py``,
``src/experiment.py``). The compensated reward is :math:`r'_t = r_t + \\lambda (\\hat r_{src}(s_t, a_t) - r_t)`
(lambda = 1 replaces the target reward by the predicted source reward, lambda = 0 leaves it alone). Two variants:

- **regressor**: r̂_src is a source :class:`~sb3_dreamer.Dreamer`'s reward head (:class:`DreamerRewardModel`), a
  scikit-learn-style regressor or a plain function;
- **mean shift** (the repository's ``calculate_compensation``): one scalar ``c = mean(r_src) - mean(r_tgt)`` and
  ``r'_t = r_t + lambda * c``, i.e. r̂_src = r_t + c. :func:`reward_compensation_loop` recomputes c after every
  training iteration from the target rewards of that iteration.

**Difference from the repository**: its ``Experiment.apply_reward_compensation`` adds c to the *action*
(``action + compensation_factor``), a bug; like its ``RewardCompensation.calculate_compensation`` we add it to the
reward.
"""

from __future__ import annotations

import os
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import unwrap_wrapper
from stable_baselines3.common.type_aliases import MaybeCallback
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecEnvWrapper

from sb3_dreamer.common.usage import UsageError
from sb3_dreamer.dreamer import Dreamer
from sb3_dreamer.dreamer.policies import action_dim, same_observation_space
from sb3_dreamer.dreamer.type_aliases import AgentState
from sb3_dreamer.transfer.fractional import load_model

#: Warning on the first non-finite prediction of a :class:`RewardCompensation`.
_NONFINITE = (
    "RewardCompensation: the source reward model predicted {}; such steps keep their original reward and are counted "
    "in nonfinite_predictions (warned once)"
)
#: ``refit(model, target_rewards, wrappers)`` of :func:`reward_compensation_loop`.
Refit = Callable[[BaseAlgorithm, np.ndarray, list["RewardCompensation"]], None]


def _check_lam(lam: float) -> float:
    if not np.isfinite(lam) or lam < 0:
        raise UsageError(f"lam must be a finite number >= 0, got {lam}")
    return float(lam)


def compensated_reward(reward: float | np.ndarray, predicted: float | np.ndarray, lam: float) -> float | np.ndarray:
    """``r + lam * (predicted - r)``: the compensated reward of https://github.com/SJ9VRF/TransReward.

    :param reward: target reward(s) r_t
    :param predicted: predicted source reward(s) r̂_src(s_t, a_t)
    :param lam: weight of the compensation (finite, >= 0; 1 replaces r_t by the prediction)
    :return: a float for scalar inputs, else an array
    """
    lam = _check_lam(lam)
    reward, predicted = np.asarray(reward, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    out = reward + lam * (predicted - reward)
    return float(out) if out.ndim == 0 else out


def _rewards(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise UsageError(f"{name} is empty")
    if not np.isfinite(array).all():
        raise UsageError(f"{name} holds NaN or infinite values")
    return array


def mean_shift(source_rewards: Sequence[float] | np.ndarray, target_rewards: Sequence[float] | np.ndarray) -> float:
    """``mean(source) - mean(target)``: the scalar compensation of ``calculate_compensation`` in
    https://github.com/SJ9VRF/TransReward (``src/reward_compensation.py``).

    :param source_rewards: per-step rewards of the source task
    :param target_rewards: per-step rewards of the target task
    :return: the shift c (a :class:`UsageError` on empty or non-finite input)
    """
    return float(_rewards(source_rewards, "source_rewards").mean() - _rewards(target_rewards, "target_rewards").mean())


def _flat(value: Any) -> np.ndarray:
    if isinstance(value, dict):
        return np.concatenate([_flat(value[key]) for key in value])
    return np.asarray(value, dtype=np.float64).reshape(-1)


def _copy(obs: Any) -> Any:
    return {key: np.array(value) for key, value in obs.items()} if isinstance(obs, dict) else np.array(obs)


class DreamerRewardModel:
    """r̂_src of a source :class:`~sb3_dreamer.Dreamer`: its reward head on the latent state that the *source* world
    model filters from the *target* episode (posterior mode, as ``predict(deterministic=True)``).

    DreamerV3 predicts the reward r_{t+1} from the state s_{t+1} reached by a_t, so ``__call__`` filters ``next_obs``
    with a_t and reads the reward head there. Box actions are scaled by the source's action bounds and clipped to
    [-1, 1] as Dreamer stores them; (Multi)Discrete ones are one-hot encoded.

    :param source: the source Dreamer, or the path of its saved zip
    """

    def __init__(self, source: Dreamer | str | os.PathLike[str]) -> None:
        self.policy = load_model(source, "source reward").policy  # type: ignore[arg-type]
        self.policy.set_training_mode(False)
        self._latent: tuple[np.ndarray, np.ndarray] | None = None

    def _filter(self, obs: Any, state: AgentState, first: bool) -> th.Tensor:
        obs_tensor = self.policy.obs_to_tensor(obs)[0]
        feat = self.policy.filter_step(obs_tensor, state, np.array([first]), deterministic=True)
        deter, stoch = feat.split([self.policy.size["deter"], feat.shape[-1] - self.policy.size["deter"]], dim=-1)
        self._latent = (deter.cpu().numpy(), stoch.cpu().numpy())
        return feat

    def reset(self, obs: Any) -> None:
        """Start an episode: filter its first observation from the initial state.

        :param obs: the observation returned by ``env.reset``
        """
        with th.no_grad():
            self._filter(obs, self.policy.initial_state(1), first=True)

    def __call__(self, obs: Any, action: Any, next_obs: Any) -> float:
        """The source's predicted reward of the step ``obs --action--> next_obs``.

        :param obs: observation s_t (its information is already in the latent state)
        :param action: the executed env action a_t
        :param next_obs: the observation s_{t+1} that a_t led to
        :return: r̂_src, the source reward head's prediction at the filtered s_{t+1}
        """
        if self._latent is None:
            raise RuntimeError("DreamerRewardModel: call reset(obs) at the start of every episode")
        model_action = self.policy.to_model_action(np.asarray([action]))
        if isinstance(self.policy.action_space, spaces.Box):
            model_action = np.clip(model_action, -1.0, 1.0)
        with th.no_grad():
            feat = self._filter(next_obs, AgentState(*self._latent, model_action), first=False)
            return float(self.policy.reward_head.predict(feat).item())


class _FunctionRewardModel:
    """r̂_src(s_t, a_t) = ``function(obs, action)``, without per-episode state."""

    def __init__(self, function: Callable[[Any, Any], float]) -> None:
        self.function = function

    def reset(self, obs: Any) -> None:
        pass

    def __call__(self, obs: Any, action: Any, next_obs: Any) -> float:
        return float(self.function(obs, action))


def _predict_one_row(regressor: Any) -> Callable[[Any, Any], float]:
    """A scikit-learn-style ``regressor.predict(X)`` on the one row ``X = [flatten(obs), flatten(action)]``."""

    def predict(obs: Any, action: Any) -> float:
        x = np.concatenate([_flat(obs), _flat(action)])[None, :]
        prediction = np.asarray(regressor.predict(x), dtype=np.float64)
        if prediction.size != 1:
            raise UsageError(f"source_reward.predict(X) of one row X {x.shape} must return one value, got {prediction.shape}")
        return float(prediction.reshape(-1)[0])

    return predict


def _reward_model(source_reward: Any, env: gym.Env) -> DreamerRewardModel | _FunctionRewardModel:
    if isinstance(source_reward, (Dreamer, str, os.PathLike)):
        source_reward = DreamerRewardModel(source_reward)
    if isinstance(source_reward, DreamerRewardModel):
        source, env_obs, env_act = source_reward.policy, env.observation_space, env.action_space
        if not same_observation_space(source.observation_space, env_obs):
            raise UsageError(
                "RewardCompensation: a source reward model for another observation space (source Dreamer: "
                f"{source.observation_space}, env: {env_obs}); shape and dtype must agree"
            )
        if type(source.action_space) is not type(env_act) or source.action_dim != action_dim(env_act):
            raise UsageError(
                "RewardCompensation: a source reward model for another action space (source Dreamer: "
                f"{source.action_space}, env: {env_act})"
            )
        return source_reward
    if hasattr(source_reward, "predict"):
        return _FunctionRewardModel(_predict_one_row(source_reward))
    if callable(source_reward):
        return _FunctionRewardModel(source_reward)
    raise UsageError(
        "source_reward must be a source Dreamer (or the path of its zip), a DreamerRewardModel, a regressor with "
        f".predict(X) or a function f(obs, action) -> float; got {type(source_reward).__name__}"
    )


class RewardCompensation(gym.Wrapper):
    """Replace the reward r_t by ``r_t + lam * (r̂_src(s_t, a_t) - r_t)`` (https://github.com/SJ9VRF/TransReward).

    Give exactly one of ``source_reward`` (``variant = "regressor"``) and ``shift`` (``"shift"``: ``r_t + lam * shift``).
    ``info["original_reward"]`` holds the received reward (unless an inner wrapper, e.g. ``RewardFree``, already put
    the true reward there), ``info["predicted_source_reward"]`` the regressor's r̂_src. A non-finite
    prediction does not end the run: that step keeps its original reward, ``nonfinite_predictions`` counts it and the
    first one is warned about. The received rewards are summed (``original_reward_sum``, ``original_reward_count``)
    and stored until :meth:`pop_original_rewards` (the last ``max_stored`` of them).

    :param env: the target env
    :param source_reward: a source Dreamer or its zip (see :class:`DreamerRewardModel`), a regressor with
        ``.predict(X)`` on rows ``[flatten(obs), flatten(action)]`` (Dict values in key order), or ``f(obs, action)``
    :param lam: weight lambda of the compensation (finite, >= 0)
    :param shift: the scalar c of the mean-shift variant (settable later: ``wrapper.shift = c``)
    :param max_stored: capacity of the store read by :meth:`pop_original_rewards`
    """

    def __init__(
        self, env: gym.Env, source_reward: Any = None, lam: float = 1.0, shift: float | None = None, max_stored: int = 10**6
    ) -> None:
        if (source_reward is None) == (shift is None):
            raise UsageError(
                "RewardCompensation needs exactly one of source_reward (a source reward model) and shift (the scalar "
                f"mean-shift variant); got {'both' if shift is not None else 'neither'}"
            )
        super().__init__(env)
        self.lam = _check_lam(lam)
        self.reward_model = None if source_reward is None else _reward_model(source_reward, env)
        self.variant = "shift" if source_reward is None else "regressor"
        self._shift: float | None = None
        if shift is not None:
            self.shift = shift
        self.nonfinite_predictions = 0
        self.original_reward_sum = 0.0
        self.original_reward_count = 0
        self._rewards: deque[float] = deque(maxlen=max_stored)
        self._last_obs: Any = None

    @property
    def shift(self) -> float | None:
        """The scalar c of the mean-shift variant (None in the regressor variant)."""
        return self._shift

    @shift.setter
    def shift(self, value: float) -> None:
        if self.reward_model is not None:
            raise UsageError("This RewardCompensation uses a source reward model; shift belongs to the mean-shift variant")
        if not np.isfinite(value):
            raise UsageError(f"shift must be finite, got {value}")
        self._shift = float(value)

    def set_shift(self, value: float) -> None:
        """``self.shift = value``, callable through ``VecEnv.env_method`` (``set_attr`` sets the outermost wrapper).

        :param value: the new shift c
        """
        self.shift = value

    def pop_original_rewards(self) -> np.ndarray:
        """The received rewards stored since the last call (oldest first), and clear the store."""
        rewards = np.fromiter(self._rewards, dtype=np.float64, count=len(self._rewards))
        self._rewards.clear()
        return rewards

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset the env and start the reward model's episode.

        :param seed: passed to the env
        :param options: passed to the env
        :return: ``(obs, info)``
        """
        obs, info = self.env.reset(seed=seed, options=options)
        self._last_obs = _copy(obs)
        if self.reward_model is not None:
            self.reward_model.reset(obs)
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Step the env and compensate its reward.

        :param action: action for the env
        :return: ``(obs, compensated reward, terminated, truncated, info)``
        """
        if self._last_obs is None:
            raise gym.error.ResetNeeded("RewardCompensation: call reset() before step()")
        obs, reward, terminated, truncated, info = self.env.step(action)
        reward = float(reward)
        self.original_reward_sum += reward
        self.original_reward_count += 1
        self._rewards.append(reward)
        info = dict(info)
        info.setdefault("original_reward", reward)
        if self.reward_model is None:
            new_reward = reward + self.lam * float(self._shift)  # type: ignore[arg-type]
        else:
            predicted = self.reward_model(self._last_obs, action, obs)
            info["predicted_source_reward"] = predicted
            if np.isfinite(predicted):
                new_reward = float(compensated_reward(reward, predicted, self.lam))
            else:
                new_reward = reward
                self.nonfinite_predictions += 1
                if self.nonfinite_predictions == 1:
                    warnings.warn(_NONFINITE.format(predicted), RuntimeWarning, stacklevel=2)
        self._last_obs = _copy(obs)
        return obs, new_reward, terminated, truncated, info


def compensation_wrappers(env: VecEnv) -> list[RewardCompensation]:
    """The :class:`RewardCompensation` wrappers (the outermost of each sub-env) of a VecEnv whose envs run in this
    process (a :class:`DummyVecEnv`, possibly under VecEnv wrappers); an empty list for other VecEnvs.

    :param env: the VecEnv
    """
    while isinstance(env, VecEnvWrapper):
        env = env.venv
    wrappers = [unwrap_wrapper(sub_env, RewardCompensation) for sub_env in (env.envs if isinstance(env, DummyVecEnv) else [])]
    return [wrapper for wrapper in wrappers if isinstance(wrapper, RewardCompensation)]


def reward_compensation_loop(
    model: BaseAlgorithm,
    source_rewards: Sequence[float] | np.ndarray | None,
    iterations: int,
    steps_per_iteration: int,
    refit: Refit | None = None,
    callback: MaybeCallback = None,
    progress_bar: bool = False,
    reset_num_timesteps: bool = True,
) -> BaseAlgorithm:
    """The iterative loop of https://github.com/SJ9VRF/TransReward for any SB3 algorithm whose envs are wrapped in
    :class:`RewardCompensation`: learn, then update the compensation from the target rewards of that iteration.

    Iteration k runs ``model.learn(steps_per_iteration, reset_num_timesteps=reset_num_timesteps and k == 0)``, then

    - mean-shift variant (``source_rewards`` given): ``shift = mean(source_rewards) - mean(original rewards the
      wrappers received in iteration k)``, set on every wrapper; iteration 0 uses the wrappers' initial shift;
    - regressor variant (``source_rewards=None``): nothing changes, a fixed source model needs no refitting;
      ``refit`` may update a learned one.

    Logged per iteration: ``compensation/shift``, ``compensation/target_reward_mean``,
    ``compensation/nonfinite_predictions``.

    :param model: an SB3 model whose env has :class:`RewardCompensation` wrappers
    :param source_rewards: per-step rewards of the source task (mean-shift variant), or None (regressor variant)
    :param iterations: number of iterations (>= 1)
    :param steps_per_iteration: environment steps per iteration (>= 1)
    :param refit: ``refit(model, target_rewards, wrappers)``, called after every iteration (both variants) with the
        iteration's original rewards and :func:`compensation_wrappers` (empty for envs in other processes)
    :param callback: passed to every ``learn``
    :param progress_bar: passed to every ``learn``
    :param reset_num_timesteps: passed to the first ``learn`` (later ones continue the count)
    :return: the trained model
    """
    if any(int(n) != n or n < 1 for n in (iterations, steps_per_iteration)):
        raise UsageError(f"iterations and steps_per_iteration must be positive ints, got {iterations}, {steps_per_iteration}")
    vec_env = model.get_env()
    indices = [] if vec_env is None else [i for i, wrapped in enumerate(vec_env.env_is_wrapped(RewardCompensation)) if wrapped]
    if vec_env is None or not indices:
        raise UsageError(
            "reward_compensation_loop: the model's env has no RewardCompensation wrapper; wrap the target env, e.g. "
            "make_vec_env(env_id, wrapper_class=RewardCompensation, wrapper_kwargs=dict(shift=0.0))"
        )
    variants = set(vec_env.get_attr("variant", indices))
    if source_rewards is not None:
        source = _rewards(source_rewards, "source_rewards")
        if variants != {"shift"}:
            raise UsageError("source_rewards (mean-shift variant) needs wrappers built with shift=..., not source_reward")
    elif "shift" in variants:
        raise UsageError("Wrappers built with shift=... need source_rewards to recompute the shift")
    wrappers = compensation_wrappers(vec_env)
    vec_env.env_method("pop_original_rewards", indices=indices)  # rewards from before the loop do not count
    for k in range(int(iterations)):
        reset = reset_num_timesteps and k == 0
        model.learn(int(steps_per_iteration), callback=callback, reset_num_timesteps=reset, progress_bar=progress_bar)
        target = np.concatenate([np.asarray(r, float) for r in vec_env.env_method("pop_original_rewards", indices=indices)])
        if target.size:
            model.logger.record("compensation/target_reward_mean", float(target.mean()))
        if source_rewards is not None:
            shift = mean_shift(source, target)
            vec_env.env_method("set_shift", shift, indices=indices)
            model.logger.record("compensation/shift", shift)
        else:
            model.logger.record("compensation/nonfinite_predictions", sum(vec_env.get_attr("nonfinite_predictions", indices)))
        model.logger.dump(model.num_timesteps)
        if refit is not None:
            refit(model, target, wrappers)
    return model
