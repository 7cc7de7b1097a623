"""The ``sb3-dreamer`` command: rl_zoo3's own scripts with Dreamer registered and ``zoo_configs/dreamer.yml`` as default.

``sb3-dreamer train|enjoy|plot_train|plot_from_file|all_plots [zoo arguments]`` (also ``python -m sb3_dreamer_plugins``)
runs ``rl_zoo3``'s script of that name unchanged, after:

- registering ``dreamer`` and the env ids (:mod:`sb3_dreamer_plugins.rl_zoo`);
- ``train`` / ``enjoy``: ``--algo dreamer`` when no ``--algo`` is given; ``train``: ``--conf-file`` pointing to the
  packaged ``zoo_configs/dreamer.yml`` when ``--algo dreamer`` has no ``-conf/--conf-file``;
- checking what the zoo would only report from deep inside, or not at all: an unknown env id, a YAML key that is neither
  a Dreamer argument nor an rl-zoo key, a float that PyYAML read as a string, ``normalize: true``, a ``--storage``
  database URL whose driver is missing, ``enjoy`` on an env (or ``--exp-id``, best model, checkpoint) that the log
  folder does not have, and ``plot_train`` runs with no more episodes than the smoothing window (an empty figure).
  Each gives a one-line error and exit status 2 (:func:`sb3_dreamer.common.usage.run_cli`);
- ``plot_train -o/--output FILE``: save the figure (PNG by extension) instead of showing it.

``sb3-dreamer -h`` prints :func:`help_text` (plain text); ``sb3-dreamer <script> -h`` prints a note on the defaults above,
then the zoo script's own help.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.resources
import importlib.util
import inspect
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
import yaml
from huggingface_sb3 import EnvironmentName
from rl_zoo3.utils import StoreDict, get_latest_run_id
from stable_baselines3.common.monitor import get_monitor_files, load_results

from sb3_dreamer import MODEL_SIZES, Dreamer, DreamerPolicy
from sb3_dreamer.common import usage
from sb3_dreamer.common.usage import UsageError, check_keys, run_cli
from sb3_dreamer_plugins.rl_zoo import ALGO_NAME, register

__all__ = [
    "UsageError",
    "check_config",
    "check_env_id",
    "check_model",
    "check_plot_train",
    "check_storage",
    "default_config_path",
    "help_text",
    "main",
]

PROG = "sb3-dreamer"
SCRIPTS = ("train", "enjoy", "plot_train", "plot_from_file", "all_plots")
HELP = """\
usage: {prog} <script> [arguments]

Runs rl_zoo3's own scripts with the Dreamer algorithm (--algo {algo}) and this package's environments
registered.

scripts:
  train           train an agent: {prog} train --env CartPole-v1 -f logs
  enjoy           replay a trained agent: {prog} enjoy --env CartPole-v1 -f logs
                  (-f is train's log folder; --exp-id 0, the default, picks the latest run)
  plot_train      plot training rewards: {prog} plot_train -a {algo} -e CartPole-v1 -f logs
                  (-o FILE saves the figure instead of showing it; -w N: smoothing window, default 100)
  all_plots       gather the evaluation results of runs, plot them and print a table
                  (-o FILE saves the data for plot_from_file)
  plot_from_file  plot the data saved by all_plots -o (-i FILE)

train and enjoy use --algo {algo} unless --algo is given. train --algo {algo} reads the
hyperparameters of the packaged file
  {config}
unless -conf/--conf-file is given (copy it, or override single values with -params key:value).

A mistake that rl_zoo3 would report from deep inside (an unknown env id, a misspelt hyperparameter,
an env without a trained run, fewer episodes than the smoothing window, ...) is reported as one
line, with exit status 2.

Run {prog} <script> -h for the script's own arguments. python -m sb3_dreamer_plugins is the same
command.
"""

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
#: A run folder written by the zoo's train: ``<env name>_<experiment id>``.
_RUN_FOLDER = re.compile(r"^(?P<env>.+)_(?P<id>\d+)$")
#: pip package of the DB-API driver module named in an ImportError (the SQLAlchemy default drivers).
DRIVER_PACKAGES = {
    "psycopg2": "psycopg2-binary",
    "psycopg": "psycopg[binary]",
    "pymysql": "pymysql",
    "MySQLdb": "mysqlclient",
    "oracledb": "oracledb",
    "pyodbc": "pyodbc",
}
#: ``plot_train -y`` choices and the Monitor column each plots (``rl_zoo3/plots/plot_train.py``).
PLOT_COLUMNS = {"success": "is_success", "reward": "r", "length": "l"}


def _packaged_config() -> Path:
    return Path(str(importlib.resources.files("sb3_dreamer_plugins.zoo_configs").joinpath("dreamer.yml")))


def default_config_path() -> Path:
    """Path of the packaged ``zoo_configs/dreamer.yml`` (the repository file in an editable install).

    :return: the path of the YAML file
    """
    path = _packaged_config()
    if not path.is_file():
        raise UsageError(f"{path} is missing: reinstall sb3-dreamer")
    return path


def help_text() -> str:
    """The plain-text help of ``sb3-dreamer -h``.

    :return: the help, ending with a newline
    """
    return HELP.format(prog=PROG, algo=ALGO_NAME, config=_packaged_config())


def main(argv: list[str] | None = None) -> int:
    """Run one rl_zoo3 script with Dreamer registered.

    :param argv: ``[script, *arguments]`` (default: ``sys.argv[1:]``)
    :return: exit status (0 on success, 2 on a usage or configuration error)
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(help_text(), end="", file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    script, args = argv[0], argv[1:]
    return run_cli(f"{PROG} {script}", lambda: _run(script, args))


def _run(script: str, args: list[str]) -> int:
    if script not in SCRIPTS:
        raise UsageError(f"unknown script {script!r}; choose one of {', '.join(SCRIPTS)} ({PROG} -h describes them)")
    register()
    run, args = _prepare(script, args)
    saved_argv = sys.argv
    sys.argv = [f"{PROG} {script}", *args]
    try:
        run()
    finally:
        sys.argv = saved_argv
    return 0


def _prepare(script: str, args: list[str]) -> tuple[Callable[[], None], list[str]]:
    """Check the arguments of ``script`` and return the zoo function to run with the arguments it should see."""
    wants_help = "-h" in args or "--help" in args  # the zoo prints its help and exits: nothing to check
    if script == "train":
        from rl_zoo3.train import train

        if wants_help:
            print(f"{PROG}: --algo defaults to {ALGO_NAME}; train --algo {ALGO_NAME} reads {_packaged_config()}")
            print(f"{PROG}: unless -conf/--conf-file is given. rl_zoo3's help follows.\n")
            return train, args
        return train, _prepare_train(args)
    if script == "enjoy":
        from rl_zoo3.enjoy import enjoy

        if wants_help:
            print(f"{PROG}: --algo defaults to {ALGO_NAME}; -f must be the log folder of train (e.g. -f logs): there are")
            print(f"{PROG}: no pretrained Dreamer agents to download. rl_zoo3's help follows.\n")
            return enjoy, args
        args = _with_default_algo(args)
        known = _parse_known(args)
        _import_gym_packages(known.gym_packages)
        check_env_id(known.env)
        check_model(_parse_model_options(args), known.folder, known.algo, known.env)
        return enjoy, args
    if script == "plot_train":
        from rl_zoo3.plots import plot_train

        output_parser = argparse.ArgumentParser(add_help=False)
        output_parser.add_argument("-o", "--output", default=None)
        output, rest = output_parser.parse_known_args(args)
        if wants_help:
            print(f"{PROG}: -o/--output FILE saves the figure (PNG by extension) instead of showing it.")
            print(f"{PROG}: rl_zoo3's help follows.\n")
        else:
            check_plot_train(rest)
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
    return _parse(parser, args)


def _parse_model_options(args: list[str]) -> argparse.Namespace:
    """``enjoy``'s options that choose the model file, spelled as in ``rl_zoo3/enjoy.py``."""
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    parser.add_argument("--exp-id", type=int, default=0)
    parser.add_argument("--load-best", action="store_true")
    parser.add_argument("--load-checkpoint", type=int, default=None)
    parser.add_argument("--load-last-checkpoint", action="store_true")
    return _parse(parser, args)


def _parse(parser: argparse.ArgumentParser, args: list[str]) -> argparse.Namespace:
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
    """:func:`sb3_dreamer.common.usage.check_env_id`, with the zoo's way to register other packages' envs.

    :param env_id: the ``--env`` value
    """
    usage.check_env_id(
        env_id,
        allow_module=False,
        other_packages=f"envs of other packages: {PROG} imports their module with --gym-packages <module>",
    )


def check_model(options: argparse.Namespace, folder: str, algo: str, env_id: str) -> None:
    """Check that ``enjoy`` finds a model, looking where ``rl_zoo3.utils.get_model_path`` looks.

    ``--exp-id 0`` means the latest run ``<folder>/<algo>/<env>_<N>``, a negative id the folder ``<folder>/<algo>``
    itself. The zoo tries to download a model it does not find only when ``folder`` is its ``rl-trained-agents``, and
    the hub has no Dreamer agents: other algorithms are not checked there.

    :param options: the parsed ``--exp-id``, ``--load-best``, ``--load-checkpoint`` and ``--load-last-checkpoint``
    :param folder: the ``-f/--folder`` value
    :param algo: the ``--algo`` value
    :param env_id: the ``--env`` value
    """
    if algo != ALGO_NAME and "rl-trained-agents" in folder:
        return
    algo_folder = os.path.join(folder, algo)
    if not os.path.isdir(algo_folder):
        raise UsageError(f"no {algo} runs in {algo_folder}: pass the log folder of train with -f")
    env_name = EnvironmentName(env_id)  # the name of the zoo's run folders: "/" becomes "-"
    runs = _runs(algo_folder)
    exp_id = options.exp_id if options.exp_id != 0 else get_latest_run_id(algo_folder, env_name)
    log_path = os.path.join(algo_folder, f"{env_name}_{exp_id}") if exp_id > 0 else algo_folder
    if not os.path.isdir(log_path):
        ids = ", ".join(map(str, runs.get(env_name, []))) or "none"
        raise UsageError(
            f"--exp-id {exp_id}: no folder {log_path}; runs of {env_id} in {algo_folder}: {ids} "
            "(--exp-id 0, the default, picks the latest)"
        )
    checkpoints = _checkpoints(log_path)
    if options.load_best:
        option, model_path = "--load-best", os.path.join(log_path, "best_model.zip")
    elif options.load_checkpoint is not None:
        option = f"--load-checkpoint {options.load_checkpoint}"
        model_path = os.path.join(log_path, f"rl_model_{options.load_checkpoint}_steps.zip")
    elif options.load_last_checkpoint:
        option = "--load-last-checkpoint"
        model_path = os.path.join(log_path, f"rl_model_{checkpoints[-1] if checkpoints else '<steps>'}_steps.zip")
    else:
        option, model_path = "the final model", os.path.join(log_path, f"{env_name}.zip")
    if os.path.isfile(model_path):
        return
    if exp_id == 0:  # no run <env>_<N>: the zoo looked in the algorithm folder itself, the layout of --exp-id -1
        there = ", ".join(f"{name} ({', '.join(map(str, ids))})" for name, ids in runs.items()) or "none"
        raise UsageError(
            f"{env_id} has no run in {algo_folder} (no folder {env_name}_<N>); runs there: {there}; "
            f"train one with: {PROG} train --env {env_id} -f {folder}"
        )
    raise UsageError(f"{option}: {model_path} not found; {_loadable(log_path, env_name, checkpoints)}")


def _runs(algo_folder: str) -> dict[str, list[int]]:
    """The run folders ``<env name>_<N>`` in ``algo_folder``: their sorted ids by env name."""
    runs: dict[str, list[int]] = {}
    for entry in os.scandir(algo_folder):
        match = _RUN_FOLDER.match(entry.name)
        if match and entry.is_dir():
            runs.setdefault(match["env"], []).append(int(match["id"]))
    return {name: sorted(ids) for name, ids in sorted(runs.items())}


def _checkpoints(log_path: str) -> list[int]:
    """The steps of the checkpoints ``rl_model_<steps>_steps.zip`` in ``log_path``, ascending."""
    names = (re.fullmatch(r"rl_model_(\d+)_steps\.zip", entry.name) for entry in os.scandir(log_path))
    return sorted(int(match[1]) for match in names if match)


def _loadable(log_path: str, env_name: str, checkpoints: list[int]) -> str:
    """What ``enjoy`` could load from the run ``log_path``, as options."""
    found = []
    if os.path.isfile(os.path.join(log_path, f"{env_name}.zip")):
        found.append("the final model (no option)")
    if os.path.isfile(os.path.join(log_path, "best_model.zip")):
        found.append("--load-best")
    if checkpoints:
        found.append(f"--load-checkpoint {'/'.join(map(str, checkpoints))}, --load-last-checkpoint")
    if found:
        return f"{log_path} has: {', '.join(found)}"
    return (
        f"{log_path} has no model yet (train writes {env_name}.zip when it ends, best_model.zip with --eval-freq "
        "and checkpoints with --save-freq)"
    )


def check_plot_train(args: list[str]) -> None:
    """Check that ``plot_train`` would draw a curve, reading the runs as ``rl_zoo3/plots/plot_train.py`` does.

    The zoo plots a run's episodes smoothed over ``-w/--episode-window`` episodes (default 100), and nothing for a run
    with fewer: the figure would be empty. A run with exactly that many episodes gives a single point, which is not
    drawn either.

    :param args: ``plot_train``'s arguments (without ``-o/--output``)
    """
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    parser.add_argument("-a", "--algo")
    parser.add_argument("-e", "--env", nargs="+")
    parser.add_argument("-f", "--exp-folder")
    parser.add_argument("-max", "--max-timesteps", type=int)
    parser.add_argument("-y", "--y-axis", choices=list(PLOT_COLUMNS), default="reward")
    parser.add_argument("-w", "--episode-window", type=int, default=100)
    known = _parse(parser, args)
    if known.algo is None or known.env is None or known.exp_folder is None:
        return  # the zoo reports the missing required argument
    window = known.episode_window
    if window < 1:
        raise UsageError(f"-w/--episode-window must be at least 1, got {window}")
    log_path = os.path.join(known.exp_folder, known.algo)
    if not os.path.isdir(log_path):
        raise UsageError(f"no folder {log_path}: -f takes the log folder of train, which has a folder per algorithm (-a)")
    folders = sorted(entry.path for env in known.env for entry in os.scandir(log_path) if env in entry.name and entry.is_dir())
    if not folders:
        there = ", ".join(_runs(log_path)) or "none"
        raise UsageError(f"no run of {' '.join(known.env)} in {log_path}; envs with runs there: {there}")
    logged = [folder for folder in folders if get_monitor_files(folder)]
    if not logged:
        raise UsageError(f"no Monitor file (*monitor.csv, written by train) in {', '.join(folders)}")
    column = PLOT_COLUMNS[known.y_axis]
    episodes = {}
    for folder in logged:
        data_frame = load_results(folder)
        if known.max_timesteps is not None:
            data_frame = data_frame[data_frame.l.cumsum() <= known.max_timesteps]
        if column in data_frame.columns:
            episodes[os.path.basename(folder)] = len(data_frame)
    if not episodes:
        raise UsageError(f"-y {known.y_axis}: the Monitor files in {', '.join(logged)} have no column {column!r}")
    most = max(episodes.values())
    if most > window:
        return
    runs = f"the runs of {' '.join(known.env)} in {log_path} have at most {most} episode{'s' if most != 1 else ''}"
    counts = ", ".join(f"{name}: {count}" for name, count in episodes.items())
    within = f" within -max {known.max_timesteps} steps" if known.max_timesteps is not None else ""
    if most < 2:
        advice = "raise -max" if known.max_timesteps is not None else "train for longer"
        raise UsageError(f"{runs}{within} ({counts}): a curve needs 2; {advice}")
    raise UsageError(
        f"{runs}{within} ({counts}), not more than the smoothing window -w {window}, so the figure would be empty; "
        f"pass e.g. -w {max(1, most // 10)} (a curve needs a window below {most})"
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
    check_keys([key], ZOO_KEYS | _dreamer_arguments(), where, "a Dreamer argument or an rl-zoo key")


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
    check_keys(policy_kwargs, accepted, f"{where}: policy_kwargs", "a DreamerPolicy argument")
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
