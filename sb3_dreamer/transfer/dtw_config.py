"""Settings of the DTW transfer pipeline (:class:`TransferConfig`) and their checks (:func:`check_config`), which run
before anything is trained: a mistake that would only show after the source agent's training (unknown env id or
argument, source and target spaces that do not match, an unusable ``source_model``) is raised at once as a
:class:`~sb3_dreamer.common.usage.UsageError`.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import zipfile
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.save_util import json_to_data

import sb3_dreamer.envs  # noqa: F401  (registers the sb3_dreamer/... env ids)
from sb3_dreamer.alignment import LABEL_MODES, DTWRewarder, DTWRewardWrapper
from sb3_dreamer.common.usage import UsageError, check_env_id, check_keys
from sb3_dreamer.dreamer import Dreamer
from sb3_dreamer.dreamer.policies import DreamerPolicy

#: Dreamer arguments set by the pipeline itself, and by what.
RESERVED_DREAMER_ARGUMENTS = {"policy": "the pipeline (MlpPolicy)", "env": "--source-env/--target-env", "seed": "--seed"}
#: DTWRewardWrapper arguments set by the pipeline itself, and by what.
RESERVED_WRAPPER_ARGUMENTS = {
    "env": "--target-env",
    "reference": "the pipeline (the recorded source episodes)",
    "label_mode": "--label-mode",
    "seed": "--seed",
}


@dataclasses.dataclass
class TransferConfig:
    """Settings of one transfer run.

    :param source_env: source env id (rewards available)
    :param target_env: target env id (its reward is only used for evaluation)
    :param source_steps: env steps to train the source Dreamer (ignored with ``source_model``)
    :param target_steps: env steps to train the target Dreamer
    :param source_model: path of a trained source Dreamer to reuse instead of training one
    :param n_reference_episodes: source episodes recorded as DTW references
    :param label_mode: one of :data:`sb3_dreamer.alignment.LABEL_MODES`
    :param init_from_source: start the target Dreamer from the source model's weights
    :param dreamer_kwargs: Dreamer constructor arguments for both agents (a ``source_model`` keeps its own; with
        ``init_from_source`` they override the settings saved with the source, as ``Dreamer.load(..., **kwargs)`` does;
        the network sizes, ``policy_kwargs``, must then equal the source's)
    :param wrapper_kwargs: extra :class:`DTWRewardWrapper` arguments
    :param eval_episodes: deterministic evaluation episodes on the target's true reward
    :param seed: random seed of every stage
    """

    source_env: str = "sb3_dreamer/PendulumSource-v0"
    target_env: str = "sb3_dreamer/PendulumTarget-v0"
    source_steps: int = 10_000
    target_steps: int = 10_000
    source_model: str | None = None
    n_reference_episodes: int = 10
    label_mode: str = "source_reward"
    init_from_source: bool = False
    dreamer_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    wrapper_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    eval_episodes: int = 10
    seed: int = 0


def _option(field: str) -> str:
    """Command-line spelling of a :class:`TransferConfig` field, e.g. ``--source-steps``."""
    return "--" + field.replace("_", "-")


def _check_arguments(
    given: dict[str, Any], function: Any | tuple[Any, ...], reserved: dict[str, str], field: str, what: str
) -> None:
    """Raise :class:`UsageError` for a key of ``given`` that ``function`` does not accept or that the pipeline sets.

    :param given: the user's keyword arguments
    :param function: the callable they are passed to, or several (their signatures are the list of accepted keys)
    :param reserved: keys set by the pipeline, mapped to what sets them
    :param field: the :class:`TransferConfig` field they come from
    :param what: what an accepted key is, for the message
    """
    for key in given:
        if key in reserved:
            raise UsageError(f"{_option(field)}: {key!r} cannot be given here, it is set by {reserved[key]}")
    functions = function if isinstance(function, tuple) else (function,)
    parameters = {name for callable_ in functions for name in inspect.signature(callable_).parameters}
    accepted = parameters - {"self", "_init_setup_model", "rewarder_kwargs"} - set(reserved)
    check_keys(given, accepted, _option(field), what)


def _spaces(env_id: str) -> tuple[gym.Space, gym.Space]:
    env = gym.make(env_id)
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def _same_kind(first: gym.Space, second: gym.Space) -> bool:
    """Same space class and shape (and number of actions for Discrete); bounds may differ."""
    return (
        type(first) is type(second)
        and first.shape == second.shape
        and getattr(first, "n", None) == getattr(second, "n", None)
        and np.array_equal(getattr(first, "nvec", 0), getattr(second, "nvec", 0))
    )


def check_source_model(path: str | os.PathLike, observation_space: gym.Space, action_space: gym.Space) -> None:
    """Check that ``path`` is a model saved by ``Dreamer.save`` for these spaces, without loading its weights.

    :param path: the model file (``.zip`` is appended if the path does not exist, as SB3's ``load`` does)
    :param observation_space: the source env's observation space
    :param action_space: the source env's action space
    :raises UsageError: naming the file and the problem
    """
    path = os.fspath(path)
    if not os.path.isfile(path) and os.path.isfile(path + ".zip"):
        path += ".zip"
    where = f"--source-model {path!r}"
    if not os.path.isfile(path):
        raise UsageError(f"{where}: no such file (a model saved by Dreamer.save, e.g. source.zip of an earlier run)")
    if not zipfile.is_zipfile(path):
        raise UsageError(f"{where}: not a zip archive, so not a model saved by Dreamer.save")
    try:
        with zipfile.ZipFile(path) as archive:
            stored = json.loads(archive.read("data").decode())
        data = json_to_data(json.dumps({key: stored[key] for key in ("policy_class", "observation_space", "action_space")}))
    except (KeyError, ValueError, zipfile.BadZipFile, OSError) as error:
        raise UsageError(f"{where}: not a model saved by Dreamer.save (no readable SB3 'data' entry: {error})") from None
    policy_class = data.get("policy_class")
    if not (isinstance(policy_class, type) and issubclass(policy_class, DreamerPolicy)):
        name = getattr(policy_class, "__name__", policy_class)
        raise UsageError(f"{where}: saved by another algorithm (policy {name}), not by Dreamer")
    for kind, saved, env_space in (
        ("observation", data.get("observation_space"), observation_space),
        ("action", data.get("action_space"), action_space),
    ):
        if saved != env_space:
            raise UsageError(f"{where}: trained with {kind} space {saved}, but --source-env has {env_space}")


def check_config(config: TransferConfig) -> None:
    """Check a configuration before anything is trained: what would otherwise fail after the source training.

    Messages name the command-line options (each is the :class:`TransferConfig` field of the same name).

    :param config: the run's settings
    :raises UsageError: for a non-positive count, an unknown env id, label mode or argument, envs whose spaces do not
        fit the pipeline, or a ``source_model`` that is missing, not a Dreamer model or trained on other spaces
    """
    for field in ("source_steps", "target_steps", "n_reference_episodes", "eval_episodes"):
        value = getattr(config, field)
        if not isinstance(value, int) or value < 1:
            raise UsageError(f"{_option(field)} must be a positive integer, got {value!r}")
    if config.label_mode not in LABEL_MODES:
        raise UsageError(f"--label-mode: unknown mode {config.label_mode!r}, choose one of {', '.join(LABEL_MODES)}")
    check_env_id(config.source_env)
    check_env_id(config.target_env)
    _check_arguments(
        config.dreamer_kwargs,
        Dreamer.__init__,
        RESERVED_DREAMER_ARGUMENTS,
        "dreamer_kwargs",
        "a Dreamer argument (see help(sb3_dreamer.Dreamer))",
    )
    _check_arguments(
        config.wrapper_kwargs,
        (DTWRewardWrapper.__init__, DTWRewarder.__init__),  # the wrapper passes the others on to the rewarder
        RESERVED_WRAPPER_ARGUMENTS,
        "wrapper_kwargs",
        "a DTWRewardWrapper argument (see help(sb3_dreamer.alignment.DTWRewarder))",
    )
    source_obs, source_action = _spaces(config.source_env)
    target_obs, target_action = _spaces(config.target_env)
    source, target = f"--source-env {config.source_env}", f"--target-env {config.target_env}"
    if not isinstance(source_obs, gym.spaces.Box):
        raise UsageError(f"{source} has observation space {source_obs}: reference episodes need a Box observation space")
    if not isinstance(target_obs, gym.spaces.Box) or len(target_obs.shape) != 1:
        raise UsageError(f"{target} has observation space {target_obs}: the DTW reward needs a 1-D Box observation space")
    if (int(np.prod(source_obs.shape)),) != target_obs.shape:
        raise UsageError(
            f"{source} observes shape {source_obs.shape}, {target} observes shape {target_obs.shape}: the DTW reward "
            "compares target observations with the source's, so both envs need the same observation shape"
        )
    if not _same_kind(source_action, target_action):
        raise UsageError(
            f"{source} has action space {source_action}, {target} has {target_action}: the source policy is run on the "
            "target (zero-shot evaluation), so both envs need the same kind and shape of actions"
        )
    if config.init_from_source and (source_obs != target_obs or source_action != target_action):
        raise UsageError(
            f"--init-from-source loads the source model on the target env, which SB3 allows only with equal spaces: "
            f"{source} has {source_obs} and {source_action}, {target} has {target_obs} and {target_action}"
        )
    if config.source_model is not None:
        check_source_model(config.source_model, source_obs, source_action)
