"""The ``sb3-dreamer`` command: rl_zoo3's own scripts with Dreamer registered and ``zoo_configs/dreamer.yml`` as default.

``sb3-dreamer train|enjoy|plot_train|plot_from_file|all_plots [zoo arguments]`` (also ``python -m sb3_dreamer_plugins``)
runs ``rl_zoo3``'s script of that name unchanged, after:

- registering ``dreamer`` and the env ids (:mod:`sb3_dreamer_plugins.rl_zoo`);
- ``train`` / ``enjoy``: ``--algo dreamer`` when no ``--algo`` is given; ``train``: ``--conf-file`` pointing to the
  packaged ``zoo_configs/dreamer.yml`` when ``--algo dreamer`` has no ``-conf/--conf-file``;
- checking what the zoo would only report from deep inside: an unknown env id, a YAML key that is neither a Dreamer
  argument nor an rl-zoo key, a float that PyYAML read as a string, ``normalize: true``, and a ``--storage`` database
  URL whose driver is missing. Each gives a one-line error and exit status 2;
- ``plot_train -o/--output FILE``: save the figure (PNG by extension) instead of showing it.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import importlib.resources
import importlib.util
import inspect
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
import yaml
from rl_zoo3.utils import StoreDict

from sb3_dreamer import MODEL_SIZES, Dreamer, DreamerPolicy
from sb3_dreamer_plugins.rl_zoo import ALGO_NAME, register

PROG = "sb3-dreamer"
SCRIPTS = ("train", "enjoy", "plot_train", "plot_from_file", "all_plots")

#: YAML keys that the zoo consumes itself (``ExperimentManager._preprocess_hyperparams``); they never reach Dreamer.
ZOO_KEYS = frozenset(
    {
        "n_timesteps",
        "n_envs",
        "normalize",
        "frame_stack",
        "env_wrapper",
        "vec_env_wrapper",
        "callback",
        "monitor_kwargs",
        "env_kwargs",
        "noise_type",
        "noise_std",
    }
)
#: Dreamer arguments that the zoo passes from the command line; a YAML value would clash with them.
COMMAND_LINE_ARGS = {
    "env": "--env",
    "seed": "--seed",
    "verbose": "--verbose",
    "tensorboard_log": "--tensorboard-log",
    "device": "--device",
}
#: Keys whose string values are meant as strings (the zoo parses them itself).
STRING_KEYS = frozenset({"policy", "policy_kwargs", "env_wrapper", "vec_env_wrapper", "callback", "monitor_kwargs"})
_FLOAT_STRING = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")
#: pip package of the DB-API driver module named in an ImportError (the SQLAlchemy default drivers).
DRIVER_PACKAGES = {
    "psycopg2": "psycopg2-binary",
    "psycopg": "psycopg[binary]",
    "pymysql": "pymysql",
    "MySQLdb": "mysqlclient",
    "oracledb": "oracledb",
    "pyodbc": "pyodbc",
}


class UsageError(Exception):
    """A command-line or configuration mistake, reported as one line without traceback."""


def default_config_path() -> Path:
    """Path of the packaged ``zoo_configs/dreamer.yml`` (the repository file in an editable install).

    :return: the path of the YAML file
    """
    path = Path(str(importlib.resources.files("sb3_dreamer_plugins.zoo_configs").joinpath("dreamer.yml")))
    if not path.is_file():
        raise UsageError(f"{path} is missing: reinstall sb3-dreamer")
    return path


def main(argv: list[str] | None = None) -> int:
    """Run one rl_zoo3 script with Dreamer registered.

    :param argv: ``[script, *arguments]`` (default: ``sys.argv[1:]``)
    :return: exit status (0 on success, 2 on a usage or configuration error)
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {PROG} {{{','.join(SCRIPTS)}}} [arguments]  ({PROG} <script> -h for the script's arguments)")
        print(__doc__)
        return 0 if argv else 2
    script, args = argv[0], argv[1:]
    if script not in SCRIPTS:
        return _fail(script, f"unknown script {script!r}; choose one of {', '.join(SCRIPTS)}")
    register()
    try:
        run, args = _prepare(script, args)
    except UsageError as error:
        return _fail(script, str(error))
    saved_argv = sys.argv
    sys.argv = [f"{PROG} {script}", *args]
    try:
        run()
    finally:
        sys.argv = saved_argv
    return 0


def _fail(script: str, message: str) -> int:
    print(f"{PROG} {script}: error: {message}", file=sys.stderr)
    return 2


def _prepare(script: str, args: list[str]) -> tuple[Callable[[], None], list[str]]:
    """Check the arguments of ``script`` and return the zoo function to run with the arguments it should see."""
    if script == "train":
        from rl_zoo3.train import train

        return train, _prepare_train(args)
    if script == "enjoy":
        from rl_zoo3.enjoy import enjoy

        args = _with_default_algo(args)
        known = _parse_known(args)
        _import_gym_packages(known.gym_packages)
        check_env_id(known.env)
        if known.algo == ALGO_NAME and not (Path(known.folder) / ALGO_NAME).is_dir():
            # The zoo would try to download a pretrained agent from the Hugging Face hub, which has none for Dreamer.
            raise UsageError(f"no {ALGO_NAME} runs in {known.folder}/{ALGO_NAME}: pass the log folder of train with -f")
        return enjoy, args
    if script == "plot_train":
        from rl_zoo3.plots import plot_train

        output_parser = argparse.ArgumentParser(add_help=False)
        output_parser.add_argument("-o", "--output", default=None)
        output, rest = output_parser.parse_known_args(args)
        if output.output is None:
            return plot_train, rest
        return (lambda: _run_saving_figure(plot_train, output.output)), rest
    from rl_zoo3.plots import all_plots, plot_from_file

    return {"plot_from_file": plot_from_file, "all_plots": all_plots}[script], args


def _prepare_train(args: list[str]) -> list[str]:
    args = _with_default_algo(args)
    known = _parse_known(args)
    _import_gym_packages(known.gym_packages)
    check_env_id(known.env)
    check_storage(known.storage)
    if known.algo != ALGO_NAME:
        return args
    config = known.conf_file
    if config is None:
        config = str(default_config_path())
        args = [*args, "--conf-file", config]
    check_config(config, known.env, known.hyperparams or {}, n_timesteps_given=known.n_timesteps > 0)
    return args


def _with_default_algo(args: list[str]) -> list[str]:
    return args if _parse_known(args).algo is not None else ["--algo", ALGO_NAME, *args]


def _parse_known(args: list[str]) -> argparse.Namespace:
    """The few zoo options this wrapper inspects, spelled as in ``rl_zoo3/train.py`` and ``rl_zoo3/enjoy.py``."""
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    parser.add_argument("--algo", default=None)
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("-n", "--n-timesteps", type=int, default=-1)
    parser.add_argument("-conf", "--conf-file", default=None)
    parser.add_argument("-params", "--hyperparams", type=str, nargs="+", action=StoreDict, default=None)
    parser.add_argument("--storage", default=None)
    parser.add_argument("--gym-packages", type=str, nargs="+", default=[])
    parser.add_argument("-f", "--folder", "--log-folder", default="rl-trained-agents")  # enjoy's default
    try:
        known, _ = parser.parse_known_args(args)
    except (argparse.ArgumentError, NameError, SyntaxError, TypeError, ValueError) as error:
        # -params values are Python expressions evaluated by the zoo's StoreDict
        raise UsageError(f"cannot parse the arguments: {error}") from None
    return known


def _import_gym_packages(modules: list[str]) -> None:
    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise UsageError(f"--gym-packages {module}: no module named {module!r}")
        importlib.import_module(module)


def check_env_id(env_id: str) -> None:
    """Raise :class:`UsageError` naming ``env_id`` and close matches if gymnasium does not know it.

    :param env_id: the ``--env`` value
    """
    if env_id in gym.registry:
        return
    registered = list(gym.registry)
    close = difflib.get_close_matches(env_id, registered, n=3, cutoff=0.5)
    ours = sorted(name for name in registered if name.startswith("sb3_dreamer/"))
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UsageError(
        f"unknown environment id {env_id!r}; {hint}This package registers {', '.join(ours)} and MinAtar/<Game>-v1 "
        "(e.g. MinAtar/Breakout-v1); envs of other packages need --gym-packages <module>."
    )


def check_storage(storage: str | None) -> None:
    """Check that an Optuna ``--storage`` database URL has its driver installed (journal files need nothing).

    :param storage: the ``--storage`` value: a journal file ending in ``.log`` or an SQLAlchemy URL
    """
    if storage is None or storage.endswith(".log"):
        return
    if importlib.util.find_spec("sqlalchemy") is None:
        raise UsageError(
            f"--storage {storage}: database storages need SQLAlchemy (pip install sqlalchemy); "
            "a journal file (--storage path/to/study.log) needs nothing"
        )
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        url = make_url(storage)
    except ArgumentError as error:
        raise UsageError(
            f"--storage {storage}: not a database URL ({error}); use e.g. sqlite:///study.db, "
            "postgresql://user:password@host/db, or a journal file ending in .log"
        ) from None
    shown = url.render_as_string(hide_password=True)
    try:
        dialect = url.get_dialect()
    except NoSuchModuleError:
        raise UsageError(f"--storage {shown}: unknown database backend {url.drivername!r}") from None
    import_dbapi = getattr(dialect, "import_dbapi", None) or dialect.dbapi  # SQLAlchemy 2 / 1.4
    try:
        import_dbapi()
    except ImportError as error:
        module = (error.name or "").split(".")[0]
        package = DRIVER_PACKAGES.get(module, module)
        raise UsageError(
            f"--storage {shown}: the {url.get_backend_name()} driver {module!r} is not installed "
            f"(pip install {package}), or use a journal file: --storage path/to/study.log"
        ) from None


def check_config(path: str, env_id: str, overrides: dict[str, Any], n_timesteps_given: bool = False) -> None:
    """Check the hyperparameters that ``train --algo dreamer`` would read for ``env_id`` from a YAML ``path``.

    Follows the zoo's lookup (the env's entry, else ``default:``) and its precedence (``--hyperparams`` override the
    file). Python configs (``.py``, modules) are executed by the zoo and not checked here.

    :param path: the ``--conf-file`` value
    :param env_id: the ``--env`` value
    :param overrides: the parsed ``--hyperparams``
    :param n_timesteps_given: whether ``-n`` was passed (then ``n_timesteps`` may be missing)
    """
    if not path.endswith((".yml", ".yaml")):
        return
    if not Path(path).is_file():
        raise UsageError(f"config file {path} not found")
    try:
        entries = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as error:
        raise UsageError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(entries, dict):
        raise UsageError(f"{path} must map env ids to hyperparameters")
    name = env_id if env_id in entries else "default"
    if name not in entries:
        raise UsageError(f"{path} has no entry for {env_id} and no default: entry")
    if not isinstance(entries[name], dict):
        raise UsageError(f"{path}: entry {name!r} must be a mapping of hyperparameters")
    hyperparams = {**entries[name], **overrides}

    def source(key: str) -> str:
        return "--hyperparams" if key in overrides else f"{path}, entry {name!r}"

    for key in hyperparams:
        _check_key(key, source(key))
    for key, value in hyperparams.items():
        if key not in STRING_KEYS and isinstance(value, str) and _FLOAT_STRING.match(value.strip()):
            raise UsageError(
                f"{source(key)}: {key}: {value} is read by PyYAML as the string {value!r}; "
                f"write a float with a decimal point ({_with_decimal_point(value)}) or !!float {value}"
            )
    if "n_timesteps" not in hyperparams and not n_timesteps_given:
        raise UsageError(f"{path}, entry {name!r}: n_timesteps is missing (or pass -n)")
    if hyperparams.get("normalize"):
        raise UsageError(
            f"{source('normalize')}: normalize must be false: Dreamer normalises observations (symlog) and rewards itself and "
            "refuses VecNormalize"
        )
    policy = hyperparams.get("policy", "MlpPolicy")
    if isinstance(policy, str) and "." not in policy and policy not in Dreamer.policy_aliases:
        raise UsageError(f"{source('policy')}: policy {policy!r} is not one of {', '.join(Dreamer.policy_aliases)}")
    if "policy_kwargs" in hyperparams:
        _check_policy_kwargs(hyperparams["policy_kwargs"], source("policy_kwargs"))


def _check_key(key: str, where: str) -> None:
    if key in COMMAND_LINE_ARGS:
        raise UsageError(f"{where}: {key} is set by the zoo from the command line; use {COMMAND_LINE_ARGS[key]}")
    accepted = sorted(ZOO_KEYS | _dreamer_arguments())
    if key not in accepted:
        close = difflib.get_close_matches(key, accepted, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UsageError(f"{where}: unknown key {key!r}{hint}: neither a Dreamer argument nor an rl-zoo key")


def _dreamer_arguments() -> set[str]:
    names = set(inspect.signature(Dreamer.__init__).parameters) - {"self", "_init_setup_model"}
    return names - set(COMMAND_LINE_ARGS)


def _with_decimal_point(value: str) -> str:
    mantissa, exponent = re.split("[eE]", value.strip())
    return f"{mantissa if '.' in mantissa else mantissa + '.0'}e{exponent}"


def _check_policy_kwargs(policy_kwargs: Any, where: str) -> None:
    if isinstance(policy_kwargs, str):
        # The zoo evaluates this string with nn, th and np in scope (rl_zoo3/exp_manager.py).
        try:
            policy_kwargs = eval(policy_kwargs, {"nn": th.nn, "th": th, "np": np})
        except Exception as error:
            raise UsageError(f"{where}: policy_kwargs {policy_kwargs!r} does not evaluate: {error}") from None
    if not isinstance(policy_kwargs, dict):
        raise UsageError(f"{where}: policy_kwargs must be a dict, got {policy_kwargs!r}")
    accepted = set(inspect.signature(DreamerPolicy.__init__).parameters) - {
        "self",
        "observation_space",
        "action_space",
        "lr_schedule",
        "actor_lr_schedule",
        "critic_lr_schedule",
    }
    for key in policy_kwargs:
        if key not in accepted:
            close = difflib.get_close_matches(key, sorted(accepted), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UsageError(f"{where}: policy_kwargs: unknown key {key!r}{hint}: not a DreamerPolicy argument")
    model_size = policy_kwargs.get("model_size", "xs")
    if model_size not in MODEL_SIZES:
        raise UsageError(f"{where}: policy_kwargs: model_size {model_size!r} is not one of {', '.join(MODEL_SIZES)}")


def _run_saving_figure(plot: Callable[[], None], output: str) -> None:
    """Run a zoo plot script and save its figure to ``output`` where the script would show it."""
    import matplotlib.pyplot as plt

    plt.switch_backend("Agg")
    show = plt.show
    plt.show = lambda *args, **kwargs: plt.savefig(output)
    try:
        plot()
    finally:
        plt.show = show
    print(f"Saved the figure to {output}")
