"""rl_zoo3 registration of Dreamer: algorithm table, Optuna sampler and converter, and this project's env ids.

rl_zoo3 has no plugin mechanism: ``rl_zoo3.ALGOS`` and the ``HYPERPARAMS_SAMPLER`` / ``HYPERPARAMS_CONVERTER`` tables of
``rl_zoo3.hyperparams_opt`` are plain dicts shared by ``train``, ``enjoy`` and the ``ExperimentManager``, so adding
entries in place is enough (the pattern the zoo maintainers recommend for outside algorithms, see
DLR-RM/rl-baselines3-zoo#384). Importing this module registers everything; :func:`register` is idempotent.
"""

from __future__ import annotations

from typing import Any

import optuna
import rl_zoo3
from rl_zoo3 import hyperparams_opt

import sb3_dreamer_plugins.gymnasium
from sb3_dreamer import Dreamer

#: Name of the algorithm on the command line (``--algo dreamer``).
ALGO_NAME = "dreamer"

#: Model sizes the Optuna sampler chooses from: the presets of ``sb3_dreamer.MODEL_SIZES`` that train on a CPU.
SAMPLED_MODEL_SIZES = ("xs", "size1m")


def sample_dreamer_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """Optuna sampler of Dreamer's main knobs (rl_zoo3 ``HYPERPARAMS_SAMPLER`` signature).

    Raw parameters are suggested (``one_minus_gamma``, ``model_size``) and turned into constructor arguments by
    :func:`convert_dreamer_params`, as the zoo's samplers do; derived values are recorded with ``trial.set_user_attr``.
    The update rate is sampled as SB3's ``train_freq`` (one update every ``train_freq`` vectorised steps), which does
    not depend on the batch shape; a ``train_ratio`` from the YAML is switched off for the trial.

    :param trial: the Optuna trial
    :param n_actions: action dimension (unused: Dreamer needs no action noise)
    :param n_envs: number of parallel envs of the trial
    :param additional_args: the zoo's extra arguments (HER settings; unused)
    :return: Dreamer constructor arguments (a sampled ``policy_kwargs`` replaces the YAML one, as for every zoo sampler)
    """
    one_minus_gamma = trial.suggest_float("one_minus_gamma", 0.001, 0.03, log=True)
    train_freq = trial.suggest_categorical("train_freq", [1, 2, 4, 8])
    sampled = {
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 1e-3, log=True),
        "actor_learning_rate": trial.suggest_float("actor_learning_rate", 1e-5, 1e-3, log=True),
        "critic_learning_rate": trial.suggest_float("critic_learning_rate", 1e-5, 1e-3, log=True),
        "model_size": trial.suggest_categorical("model_size", list(SAMPLED_MODEL_SIZES)),
        "batch_length": trial.suggest_categorical("batch_length", [16, 32, 64]),
        "train_freq": train_freq,
        "imagination_horizon": trial.suggest_int("imagination_horizon", 5, 30),
        "actor_entropy": trial.suggest_float("actor_entropy", 1e-5, 1e-2, log=True),
        "one_minus_gamma": one_minus_gamma,
    }
    trial.set_user_attr("gamma", 1.0 - one_minus_gamma)
    trial.set_user_attr("effective_horizon", 1.0 / one_minus_gamma)
    trial.set_user_attr("updates_per_env_step", 1.0 / (train_freq * n_envs))
    return convert_dreamer_params(sampled)


def convert_dreamer_params(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """Turn sampled parameters (``trial.params``) into Dreamer arguments (rl_zoo3 ``HYPERPARAMS_CONVERTER`` signature).

    Used by the sampler and by ``sb3-dreamer train --storage URL --study-name S --trial-id N`` to retrain a trial.

    :param sampled_params: parameters as suggested by :func:`sample_dreamer_params`
    :return: Dreamer constructor arguments
    """
    hyperparams = dict(sampled_params)
    if "one_minus_gamma" in hyperparams:
        hyperparams["gamma"] = 1.0 - hyperparams.pop("one_minus_gamma")
    if "model_size" in hyperparams:
        hyperparams["policy_kwargs"] = {"model_size": hyperparams.pop("model_size")}
    if "train_freq" in hyperparams:
        # train_ratio would take precedence over train_freq in Dreamer: switch it off so the sampled rate applies.
        hyperparams.update(gradient_steps=1, train_ratio=None)
    return hyperparams


def register() -> None:
    """Register ``dreamer`` in rl_zoo3's tables and this project's envs in gymnasium's registry (idempotent)."""
    rl_zoo3.ALGOS[ALGO_NAME] = Dreamer
    hyperparams_opt.HYPERPARAMS_SAMPLER[ALGO_NAME] = sample_dreamer_params
    hyperparams_opt.HYPERPARAMS_CONVERTER[ALGO_NAME] = convert_dreamer_params
    sb3_dreamer_plugins.gymnasium.register_envs()


register()
