"""``python -m sb3_dreamer``: the README's first command, with tiny settings."""

from __future__ import annotations

import contextlib
import inspect
import json

import pytest

import sb3_dreamer.__main__
from sb3_dreamer import Dreamer
from sb3_dreamer.__main__ import DEFAULT_CONFIG, main
from tests.conftest import tiny


def test_main_trains_saves_and_evaluates(tmp_path, capsys) -> None:
    path = tmp_path / "model.zip"
    overrides = tiny(train_freq=8)
    code = main(["-n", "40", "--save-path", str(path), "--hyperparams", json.dumps(overrides), "--eval-episodes", "1"])
    assert code == 0
    out = capsys.readouterr().out
    assert "Deterministic evaluation over 1 episodes" in out
    model = Dreamer.load(path)
    assert model.num_timesteps == 40
    assert model.policy.model_size == "debug"
    # The constructor defaults reach the model unless overridden.
    assert model.imagination_starts == inspect.signature(Dreamer).parameters["imagination_starts"].default == 256
    assert DEFAULT_CONFIG["hyperparams"] == {}  # one place per setting: the constructor
    assert model.observation_space.shape == (3,)  # Pendulum-v1, the default env


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--env", "CartPol-v1"], "unknown environment id 'CartPol-v1'; did you mean CartPole-v1"),
        (["--hyperparams", '{"trian_freq": 4}'], "--hyperparams: unknown key 'trian_freq' (did you mean 'train_freq'?)"),
        (["--hyperparams", "{'train_freq': 4}"], "argument --hyperparams: not valid JSON"),
        (["--hyperparams", "[1, 2]"], "argument --hyperparams: expected a JSON object"),
        (["--hyperparams", '{"batch_size": -3}'], "cannot build Dreamer on Pendulum-v1"),
        (["-n", "0"], "-n/--n-timesteps must be positive, got 0"),
        (["-n", "10", "--quick"], "not allowed with argument"),
        (["--env", "no_such_module_xyz:Env-v0"], "cannot import module 'no_such_module_xyz'"),
    ],
)
def test_mistakes_are_one_line_errors(argv: list[str], message: str, capsys) -> None:
    with contextlib.suppress(SystemExit):
        main(argv)
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("python -m sb3_dreamer: error:")]
    assert len(lines) == 1, err


def test_exit_status_of_a_mistake_is_2(capsys) -> None:
    assert main(["--env", "CartPol-v1"]) == 2
    with pytest.raises(SystemExit) as exit_info:  # argparse's own errors exit with 2 as well
        main(["--hyperparams", "{bad"])
    assert exit_info.value.code == 2


def test_help_shows_defaults_and_duration(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "(default: Pendulum-v1)" in out and "(default: 10000)" in out and "--quick" in out
    assert "minutes" in out  # how long the default run takes


def test_quick_sets_the_step_count(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(sb3_dreamer.__main__, "QUICK_TIMESTEPS", 48)  # the wiring, not the real 2000 steps
    path = tmp_path / "quick.zip"
    overrides = tiny(train_freq=16)
    code = main(["--quick", "--save-path", str(path), "--hyperparams", json.dumps(overrides), "--eval-episodes", "0"])
    assert code == 0
    assert Dreamer.load(path).num_timesteps == 48
    # Output is not a terminal under pytest: progress comes as lines.
    assert "step 48/48 (100 %)" in capsys.readouterr().out


def test_stop_at_ends_training_at_the_first_evaluation_that_reaches_it(tmp_path, capsys) -> None:
    path = tmp_path / "stop.zip"
    overrides = tiny(learning_starts=1000)
    argv = ["--env", "CartPole-v1", "-n", "400", "--stop-at", "5", "--eval-freq", "100", "--eval-episodes", "1"]
    code = main([*argv, "--save-path", str(path), "--hyperparams", json.dumps(overrides)])
    assert code == 0
    assert Dreamer.load(path).num_timesteps == 100  # any CartPole episode lasts >= 8 steps > 5: stops at the first check
    assert "Stopping training" in capsys.readouterr().out
    unreachable = ["--env", "CartPole-v1", "-n", "400", "--stop-at", "1e9", "--eval-freq", "100", "--eval-episodes", "1"]
    main([*unreachable, "--save-path", str(path), "--hyperparams", json.dumps(overrides)])
    assert Dreamer.load(path).num_timesteps == 400  # an unreachable goal: all the steps


def test_default_goal_only_on_the_default_env() -> None:
    parser = sb3_dreamer.__main__._parser()
    goal = sb3_dreamer.__main__._goal_callback
    default = goal(parser.parse_args([]))
    assert default is not None and default.callback_on_new_best.reward_threshold == DEFAULT_CONFIG["stop_at"] == -200
    assert default.eval_freq == DEFAULT_CONFIG["eval_freq"] and default.n_eval_episodes == 5
    assert goal(parser.parse_args(["--no-stop"])) is None
    assert goal(parser.parse_args(["--env", "CartPole-v1"])) is None
    assert goal(parser.parse_args(["--env", "CartPole-v1", "--stop-at", "475"])).callback_on_new_best.reward_threshold == 475
    assert goal(parser.parse_args(["--eval-episodes", "0"])) is None  # the default goal needs evaluations: none, no error


def test_explicit_stop_at_without_evaluations_is_a_one_line_error(capsys) -> None:
    assert main(["--stop-at", "-150", "--eval-episodes", "0"]) == 2
    err = capsys.readouterr().err
    assert "--stop-at needs periodic evaluations" in err and "Traceback" not in err


def test_module_colon_env_id_imports_the_module(tmp_path, monkeypatch, capsys) -> None:
    """gymnasium's ``module:EnvId``: the module registers the env on import, as ``gymnasium.make`` does it."""
    import gymnasium as gym

    env_id = "TmpRegisteredPendulum-v0"
    (tmp_path / "tmp_env_package.py").write_text(
        "import gymnasium as gym\n"
        f"gym.register({env_id!r}, entry_point='gymnasium.envs.classic_control.pendulum:PendulumEnv', max_episode_steps=200)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert env_id not in gym.registry
    path = tmp_path / "model.zip"
    argv = ["--env", f"tmp_env_package:{env_id}", "-n", "20", "--save-path", str(path), "--eval-episodes", "0"]
    try:
        assert main([*argv, "--hyperparams", json.dumps(tiny(train_freq=8))]) == 0
        assert Dreamer.load(path).observation_space.shape == (3,)
    finally:
        gym.registry.pop(env_id, None)
