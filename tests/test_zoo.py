"""rl-zoo workflow: registration, zoo_configs/dreamer.yml, the sb3-dreamer command (train, enjoy, tune, plot, errors).

The console script is run in subprocesses where it is the thing under test (train, two tuning workers, one error);
everything else calls ``sb3_dreamer_plugins.cli.main`` in-process. Budgets are tiny (debug model, a few hundred steps).
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import matplotlib.pyplot as plt
import numpy as np
import optuna
import pytest
import rl_zoo3
import tomllib
import torch as th
import yaml
from huggingface_sb3 import EnvironmentName
from rl_zoo3.callbacks import TrialEvalCallback
from rl_zoo3.exp_manager import ExperimentManager
from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER, HYPERPARAMS_SAMPLER
from rl_zoo3.utils import get_model_path
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.monitor import ResultsWriter

from sb3_dreamer import Dreamer
from sb3_dreamer_plugins import cli
from sb3_dreamer_plugins.rl_zoo import convert_dreamer_params, register, sample_dreamer_params
from tests.conftest import SUBPROCESS_TIMEOUT, tiny

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "zoo_configs" / "dreamer.yml"
SCRIPT = Path(sys.executable).parent / "sb3-dreamer"
#: Tiny settings for the command line (``--hyperparams``), as tests/conftest.py's TINY.
TINY_PARAMS = [
    "policy_kwargs:dict(model_size='debug')",
    "batch_size:2",
    "batch_length:8",
    "learning_starts:16",
    "imagination_horizon:3",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
th.set_num_threads(1)


def run_script(*args: str, cwd: Path, timeout: float = SUBPROCESS_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


# Packaging and registration ----------------------------------------------------------------------------------------


def test_pyproject_lists_every_package() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {".".join(path.parent.relative_to(ROOT).parts) for path in (ROOT / "sb3_dreamer").rglob("__init__.py")} | {
        "sb3_dreamer_plugins",
        "sb3_dreamer_plugins.zoo_configs",
    }
    assert set(setuptools["packages"]) == folders
    assert setuptools["package-dir"] == {"sb3_dreamer_plugins": "plugins", "sb3_dreamer_plugins.zoo_configs": "zoo_configs"}
    assert cli.default_config_path().read_text() == CONFIG.read_text()


def test_registration_is_idempotent() -> None:
    register()
    assert rl_zoo3.ALGOS["dreamer"] is Dreamer
    assert HYPERPARAMS_SAMPLER["dreamer"] is sample_dreamer_params
    assert HYPERPARAMS_CONVERTER["dreamer"] is convert_dreamer_params
    for env_id in ("sb3_dreamer/PendulumTarget-v0", "MinAtar/Breakout-v1", "MinAtar/Seaquest-v0"):
        assert env_id in gym.registry


def test_sampler_and_converter_agree() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), direction="maximize")
    for _ in range(5):
        trial = study.ask()
        kwargs = sample_dreamer_params(trial, n_actions=1, n_envs=1, additional_args={})
        # --trial-id rebuilds the same arguments from the stored params
        assert convert_dreamer_params(trial.params) == kwargs
        assert set(kwargs) - {"policy_kwargs"} <= set(inspect.signature(Dreamer).parameters)
        assert kwargs["train_ratio"] is None and kwargs["gradient_steps"] == 1
        assert trial.user_attrs["gamma"] == pytest.approx(kwargs["gamma"])
        study.tell(trial, 0.0)
    Dreamer("MlpPolicy", "Pendulum-v1", **kwargs)


def test_pruned_trial_stops_learning() -> None:
    class AlwaysPrune(optuna.pruners.BasePruner):
        def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
            return True

    trial = optuna.create_study(pruner=AlwaysPrune(), direction="maximize").ask()
    model = Dreamer("MlpPolicy", "CartPole-v1", **_tiny())
    callback = TrialEvalCallback(make_vec_env("CartPole-v1"), trial, n_eval_episodes=1, eval_freq=20)
    model.learn(200, callback=callback)
    assert callback.is_pruned and model.num_timesteps == 20
    assert trial.study.trials[0].intermediate_values


# zoo_configs/dreamer.yml -------------------------------------------------------------------------------------------

ENTRIES = yaml.safe_load(CONFIG.read_text())


def test_config_has_the_required_entries() -> None:
    required = {
        "default",
        "CartPole-v1",
        "Pendulum-v1",
        "MountainCarContinuous-v0",
        "Acrobot-v1",
        "HopperBulletEnv-v0",
        "HalfCheetahBulletEnv-v0",
        "Walker2DBulletEnv-v0",
        "AntBulletEnv-v0",
        "MinAtar/Breakout-v1",
        "sb3_dreamer/PendulumTarget-v0",
    }
    assert required <= set(ENTRIES)
    assert ENTRIES["MinAtar/Breakout-v1"]["policy"] == "CnnPolicy"
    wrapper = ENTRIES["sb3_dreamer/PendulumTarget-v0"]["env_wrapper"][0]
    assert "sb3_dreamer.alignment.DTWRewardWrapper" in wrapper
    for name, entry in ENTRIES.items():
        assert isinstance(entry["n_timesteps"], float), name  # not a string such as "1e4"
        assert not entry.get("normalize", False), name
        cli.check_config(str(CONFIG), name, {})


def test_one_hyperparameter_set_for_every_task() -> None:
    """Entries set only budgets, policies, wrappers, n_envs and env_kwargs (which tasks an env runs): every task trains
    with the constructor's defaults."""
    allowed = {"n_timesteps", "policy", "env_wrapper", "n_envs", "normalize", "env_kwargs"}
    for name, entry in ENTRIES.items():
        assert set(entry) <= allowed, (name, set(entry) - allowed)


def test_benchmark_and_main_read_the_zoo_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The benchmark reads Dreamer's settings and budgets from the zoo file; ``python -m sb3_dreamer`` uses the constructor
    defaults and a budget that agrees with the zoo entry of its env."""
    from sb3_dreamer.__main__ import DEFAULT_CONFIG

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # as when the script runs: its folder is on sys.path
    spec = importlib.util.spec_from_file_location("sample_efficiency", ROOT / "benchmarks" / "sample_efficiency.py")
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    for env_id in benchmark.GOALS:
        policy, budget, rest = benchmark.dreamer_entry(env_id)
        assert (policy, budget, rest) == (ENTRIES[env_id]["policy"], int(ENTRIES[env_id]["n_timesteps"]), {})
    assert DEFAULT_CONFIG["hyperparams"] == {}
    assert DEFAULT_CONFIG["n_timesteps"] == ENTRIES[DEFAULT_CONFIG["env"]]["n_timesteps"]


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_every_entry_constructs(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Build each entry's env and Dreamer through the zoo's own preprocessing (no training)."""
    monkeypatch.chdir(tmp_path)
    if "env_wrapper" in ENTRIES[name]:
        _write_pendulum_reference(tmp_path / "references" / "pendulum_source.npz")
    env_id = "MountainCar-v0" if name == "default" else name  # an env without an entry gets default:
    manager = ExperimentManager(argparse.Namespace(), "dreamer", env_id, str(tmp_path / "logs"), config=str(CONFIG), verbose=0)
    hyperparams, _ = manager.read_hyperparameters()
    hyperparams, manager.env_wrapper, _, manager.vec_env_wrapper = manager._preprocess_hyperparams(hyperparams)
    env = manager.create_envs(manager.n_envs, no_log=True)
    hyperparams = manager._preprocess_action_noise(hyperparams, {}, env)
    model = Dreamer(env=env, seed=0, device="cpu", **hyperparams)
    assert model.n_envs == env.num_envs
    env.close()


def test_zoo_config_with_rewards_computed_at_sampling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``reward_at_sampling: true`` and ``callback: sb3_dreamer.alignment.SampledRewardCallback`` in a zoo YAML: the
    training env's rewards come from Dreamer's buffer; the zoo's evaluation env (the same wrapper, nothing attached)
    computes them per step, with a warning."""
    monkeypatch.chdir(tmp_path)
    _write_pendulum_reference(tmp_path / "ref.npz")
    config = tmp_path / "conf.yml"
    config.write_text(
        "sb3_dreamer/PendulumTarget-v0:\n  n_timesteps: !!float 300\n  policy: MlpPolicy\n  env_wrapper:\n"
        "    - sb3_dreamer.alignment.DTWRewardWrapper:\n        reference: ref.npz\n        reward_at_sampling: true\n"
        "  callback:\n    - sb3_dreamer.alignment.SampledRewardCallback\n"
    )
    manager = ExperimentManager(argparse.Namespace(), "dreamer", "sb3_dreamer/PendulumTarget-v0", str(tmp_path / "logs"),
                                config=str(config), verbose=0)  # fmt: skip
    hyperparams, _ = manager.read_hyperparameters()
    hyperparams, manager.env_wrapper, callbacks, manager.vec_env_wrapper = manager._preprocess_hyperparams(hyperparams)
    env, eval_env = manager.create_envs(1, no_log=True), manager.create_envs(1, eval_env=True, no_log=True)
    model = Dreamer(env=env, seed=0, device="cpu", **{**hyperparams, **tiny(learning_starts=100)})
    model.learn(150, callback=callbacks)
    wrapper, eval_wrapper = env.envs[0], eval_env.envs[0]
    assert wrapper.reward_at_sampling and wrapper.sampler_attached and not eval_wrapper.sampler_attached
    assert np.abs(model.replay_buffer.rewards).max() > 0.0  # computed at sampling; the env returned 0.0
    with pytest.warns(UserWarning, match="computes the reward per step"):
        eval_env.reset()
        _, reward, *_ = eval_env.step(np.zeros((1, 1), dtype=np.float32))
    assert reward[0] != 0.0
    env.close()
    eval_env.close()


# The sb3-dreamer command -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``sb3-dreamer train`` with the default config and tiny overrides; returns the log folder."""
    folder = tmp_path_factory.mktemp("zoo")
    args = ["train", "--algo", "dreamer", "--env", "CartPole-v1", "-n", "300", "-f", "logs", "--seed", "0"]
    result = run_script(
        *args, "--num-threads", "1", "--eval-freq", "150", "--eval-episodes", "1", "-params", *TINY_PARAMS, cwd=folder
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Loading hyperparameters from: {cli.default_config_path()}" in result.stdout
    return folder / "logs"


def test_train_writes_the_zoo_layout(trained: Path) -> None:
    run = trained / "dreamer" / "CartPole-v1_1"
    assert (run / "CartPole-v1.zip").is_file() and (run / "0.monitor.csv").is_file()
    assert (run / "evaluations.npz").is_file()
    config = yaml.unsafe_load((run / "CartPole-v1" / "config.yml").read_text())  # the zoo dumps an OrderedDict
    assert config["batch_length"] == 8 and config["n_timesteps"] == 2.0e4
    assert yaml.unsafe_load((run / "CartPole-v1" / "args.yml").read_text())["algo"] == "dreamer"
    model = Dreamer.load(run / "CartPole-v1.zip")
    assert model.batch_length == 8 and model.num_timesteps == 300


def test_enjoy_replays(trained: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["enjoy", "--env", "CartPole-v1", "-f", str(trained), "--no-render", "-n", "50", "--num-threads", "1"]
    assert cli.main(args) == 0
    assert "Mean reward" in capsys.readouterr().out


def test_plot_train_writes_png(trained: Path, tmp_path: Path) -> None:
    output = tmp_path / "curve.png"
    assert (
        cli.main(["plot_train", "-a", "dreamer", "-e", "CartPole-v1", "-f", str(trained), "-w", "1", "-o", str(output)]) == 0
    )
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tuning_with_two_workers(tmp_path: Path) -> None:
    """Two processes share one journal file: N = 2 x 2 trials in total, each evaluated by TrialEvalCallback."""
    config = tmp_path / "tiny.yml"
    config.write_text("CartPole-v1:\n  n_timesteps: 40.0\n  policy: MlpPolicy\n  batch_size: 2\n  learning_starts: 16\n")
    common = ["train", "--env", "CartPole-v1", "-conf", str(config), "-optimize", "--n-trials", "2", "--study-name", "s"]
    common += ["--storage", str(tmp_path / "study.log"), "--n-evaluations", "2", "--eval-episodes", "1"]
    common += [
        "--n-startup-trials",
        "1",
        "--pruner",
        "median",
        "--num-threads",
        "1",
        "--no-optim-plots",
        "-uuid",
        "-f",
        "logs",
    ]
    workers = [
        subprocess.Popen([str(SCRIPT), *common, "--seed", str(seed)], cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, text=True)
        for seed in (1, 2)
    ]
    outputs = [worker.communicate(timeout=SUBPROCESS_TIMEOUT)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    assert all("Pruner: median" in output for output in outputs)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "study.log")))
    trials = optuna.load_study(study_name="s", storage=storage).trials
    assert len(trials) == 4
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    assert all(trial.state in finished and trial.intermediate_values for trial in trials)
    assert all(trial.params["model_size"] in ("xs", "size1m") and "gamma" in trial.user_attrs for trial in trials)


# Clear errors ------------------------------------------------------------------------------------------------------


def test_bad_yaml_key_exits_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "bad.yml"
    config.write_text("CartPole-v1:\n  n_timesteps: 100.0\n  policy: MlpPolicy\n  lerning_rate: 0.001\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sb3_dreamer_plugins",
            "train",
            "--algo",
            "dreamer",
            "--env",
            "CartPole-v1",
            "-conf",
            str(config),
        ],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "'lerning_rate'" in result.stderr and str(config) in result.stderr and "'learning_rate'" in result.stderr


@pytest.mark.parametrize(
    "args, expected",
    [
        (["train", "--env", "CartPol-v1"], ["unknown environment id 'CartPol-v1'", "CartPole-v1", "sb3_dreamer/"]),
        (["enjoy", "--env", "Nope-v0", "-f", "logs"], ["unknown environment id 'Nope-v0'", "sb3_dreamer/PendulumTarget-v0"]),
        (["train", "--env", "mypkg:MyEnv-v0"], ["give the id alone (--env MyEnv-v0)", "--gym-packages mypkg"]),
        (["train", "--env", "CartPole-v1", "-params", "seed:3"], ["--hyperparams: seed is set by the zoo", "--seed"]),
        (["train", "--env", "CartPole-v1", "-params", "normalize:True"], ["normalize must be false"]),
        (["train", "--env", "CartPole-v1", "-params", "policy_kwargs:dict(modelsize='xs')"], ["'modelsize'", "'model_size'"]),
        (["train", "--env", "CartPole-v1", "-optimize", "--storage", "foo://x"], ["unknown database backend 'foo'"]),
        (["enjoy", "--env", "CartPole-v1"], ["no dreamer runs in rl-trained-agents/dreamer"]),
        (["tune"], ["unknown script 'tune'"]),
        (["train", "-n", "abc"], ["cannot parse the arguments", "invalid int value: 'abc'"]),
    ],
)
def test_clear_errors(args: list[str], expected: list[str], capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    assert cli.main(args) == 2
    error = capsys.readouterr().err
    assert error.startswith("sb3-dreamer ") and len(error.strip().splitlines()) == 1
    for text in expected:
        assert text in error


def test_float_written_as_string_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "floats.yml"
    config.write_text("CartPole-v1:\n  n_timesteps: 1e4\n  policy: MlpPolicy\n")
    assert cli.main(["train", "--env", "CartPole-v1", "-conf", str(config)]) == 2
    assert "n_timesteps: 1e4 is read by PyYAML as the string" in capsys.readouterr().err


@pytest.mark.parametrize(
    "url, driver", [("postgresql+psycopg2://user:secret@db/optuna", "psycopg2"), ("mysql+pymysql://u@db/o", "pymysql")]
)
def test_missing_storage_backend(
    url: str, driver: str, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, driver, None)  # the driver behaves as not installed, installed or not
    assert cli.main(["train", "--env", "CartPole-v1", "-optimize", "--storage", url, "--study-name", "s"]) == 2
    error = capsys.readouterr().err
    assert f"driver '{driver}' is not installed" in error and "secret" not in error and "study.log" in error


@pytest.fixture
def log_folder(tmp_path: Path) -> Path:
    """A log folder of train, faked: Pendulum-v1_1 with the final and the best model, CartPole-v1_2 with a checkpoint
    only, and Acrobot-v1.zip in the algorithm folder itself (the layout of --exp-id -1)."""
    runs = tmp_path / "logs" / "dreamer"
    for model in ("Pendulum-v1_1/Pendulum-v1.zip", "Pendulum-v1_1/best_model.zip", "CartPole-v1_2/rl_model_100_steps.zip"):
        (runs / model).parent.mkdir(parents=True, exist_ok=True)
        (runs / model).write_bytes(b"")
    (runs / "Acrobot-v1.zip").write_bytes(b"")
    return tmp_path / "logs"


@pytest.mark.parametrize(
    "args, expected",
    [
        (
            ["--env", "MountainCar-v0"],
            ["MountainCar-v0 has no run in {runs}", "CartPole-v1 (2), Pendulum-v1 (1)", "train --env MountainCar-v0 -f"],
        ),
        (["--env", "Pendulum-v1", "--exp-id", "3"], ["--exp-id 3: no folder {runs}/Pendulum-v1_3", "{runs}: 1 (--exp-id 0"]),
        (["--env", "CartPole-v1"], ["{runs}/CartPole-v1_2/CartPole-v1.zip not found", "--load-checkpoint 100"]),
        (["--env", "CartPole-v1", "--load-best"], ["--load-best: {runs}/CartPole-v1_2/best_model.zip not found"]),
        (["--env", "Pendulum-v1", "--load-last-checkpoint"], ["--load-last-checkpoint: ", "(no option), --load-best"]),
    ],
)
def test_enjoy_without_model_exits_with_one_line(
    args: list[str], expected: list[str], log_folder: Path, capsys: pytest.CaptureFixture
) -> None:
    assert cli.main(["enjoy", *args, "-f", str(log_folder), "--no-render"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("sb3-dreamer enjoy: error: ") and len(error.strip().splitlines()) == 1
    for text in expected:
        assert text.format(runs=log_folder / "dreamer") in error


@pytest.mark.parametrize(
    "env_id, exp_id, load_best, load_checkpoint, load_last_checkpoint, found",
    [
        ("Pendulum-v1", 0, False, None, False, True),
        ("Pendulum-v1", 1, True, None, False, True),
        ("Pendulum-v1", 0, False, None, True, False),
        ("CartPole-v1", 0, False, None, False, False),
        ("CartPole-v1", 0, False, 100, False, True),
        ("CartPole-v1", 2, False, None, True, True),
        ("CartPole-v1", 2, False, 50, False, False),
        ("CartPole-v1", 1, False, None, False, False),
        ("Acrobot-v1", -1, False, None, False, True),
        ("Acrobot-v1", 0, False, None, False, True),  # no Acrobot-v1_<N>: the zoo looks in the algorithm folder
        ("MountainCar-v0", 0, False, None, False, False),
    ],
)
def test_enjoy_check_agrees_with_the_zoo(
    env_id: str,
    exp_id: int,
    load_best: bool,
    load_checkpoint: int | None,
    load_last_checkpoint: bool,
    found: bool,
    log_folder: Path,
) -> None:
    """cli.check_model accepts exactly what rl_zoo3.utils.get_model_path finds."""
    options = argparse.Namespace(
        exp_id=exp_id, load_best=load_best, load_checkpoint=load_checkpoint, load_last_checkpoint=load_last_checkpoint
    )
    zoo_args = (exp_id, str(log_folder), "dreamer", EnvironmentName(env_id), load_best, load_checkpoint, load_last_checkpoint)
    if found:
        get_model_path(*zoo_args)
        cli.check_model(options, str(log_folder), "dreamer", env_id)
    else:
        with pytest.raises((AssertionError, ValueError)):
            get_model_path(*zoo_args)
        with pytest.raises(cli.UsageError):
            cli.check_model(options, str(log_folder), "dreamer", env_id)


def test_plot_train_with_fewer_episodes_than_the_window(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    writer = ResultsWriter(str(tmp_path / "logs" / "dreamer" / "CartPole-v1_1" / "0"), header={"t_start": 0.0})
    for episode in range(63):
        writer.write_row({"r": float(episode), "l": 10 + episode, "t": 0.1 * episode})
    writer.close()
    output = tmp_path / "curve.png"
    args = ["plot_train", "-a", "dreamer", "-e", "CartPole-v1", "-f", str(tmp_path / "logs")]
    for extra in (["-o", str(output)], []):  # saving or showing the figure
        assert cli.main([*args, *extra]) == 2
        captured = capsys.readouterr()
        assert "Saved" not in captured.out and len(captured.err.strip().splitlines()) == 1
        assert captured.err.startswith("sb3-dreamer plot_train: error: ")
        for text in ("at most 63 episodes", "window -w 100", "pass e.g. -w 6"):
            assert text in captured.err
    assert not output.exists()
    plt.close("all")  # the zoo draws into the open figure of its title, if any
    assert cli.main([*args, "-w", "6", "-o", str(output)]) == 0  # the suggested window draws the curve
    assert len(plt.gcf().axes[0].lines) == 1 and output.is_file()
    plt.close("all")


def test_help_is_plain_text(capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["--help"]) == 0
    help_text = capsys.readouterr().out
    assert "``" not in help_text and ":mod:" not in help_text
    for text in ("train", "enjoy", "plot_train", "all_plots", "plot_from_file", "sb3-dreamer <script> -h"):
        assert text in help_text
    assert "train and enjoy use --algo dreamer" in help_text and f"\n  {cli.default_config_path()}\n" in help_text
    assert cli.main([]) == 2
    assert capsys.readouterr().err == help_text


@pytest.mark.parametrize(
    "script, expected",
    [("train", ["train --algo dreamer reads {config}", "unless -conf/--conf-file"]), ("enjoy", ["-f must be the log folder"])],
)
def test_script_help_names_the_defaults(script: str, expected: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([script, "--env", "CartPol-v1", "-h"])  # help, as argparse gives it, despite the unknown env id
    assert exit_info.value.code == 0
    output = capsys.readouterr().out
    assert output.startswith("sb3-dreamer: --algo defaults to dreamer") and f"usage: sb3-dreamer {script}" in output
    for text in expected:
        assert text.format(config=cli.default_config_path()) in output


# Helpers -----------------------------------------------------------------------------------------------------------


def _tiny() -> dict[str, Any]:
    return {key: value for key, value in tiny().items() if key != "train_freq"}


def _write_pendulum_reference(path: Path) -> None:
    from sb3_dreamer.alignment import record_trajectories

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    dataset = record_trajectories(
        lambda obs: rng.uniform(-2.0, 2.0, (1,)).astype(np.float32), "sb3_dreamer/PendulumSource-v0", 2, seed=0
    )
    dataset.save(path)
