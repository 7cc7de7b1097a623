"""The core install: ``import sb3_dreamer`` needs only core packages, and missing extras are named, not tracebacks."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import pytest

from sb3_dreamer_plugins import launcher
from tests.conftest import SUBPROCESS_TIMEOUT


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)


def test_import_loads_no_extra() -> None:
    code = (
        "import sys, sb3_dreamer; from sb3_dreamer import Dreamer; "
        "print(sorted(m for m in ('rl_zoo3', 'optuna', 'pybullet', 'sb3_contrib', 'matplotlib', 'minatar') "
        "if m in sys.modules))"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_pyproject_core_dependencies_are_the_core() -> None:
    from pathlib import Path

    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    for extra_only in ("rl-zoo3", "pybullet", "minatar", "optuna", "tensorboard", "sb3-contrib"):
        assert extra_only not in core
    extras = project["optional-dependencies"]
    assert {"zoo", "bullet", "minatar", "tensorboard", "all", "tests"} <= set(extras)
    assert "sb3-dreamer[all]" in extras["tests"]  # the README's test command installs every extra


def test_bullet_pair_without_pybullet_names_the_extra() -> None:
    # sys.modules[name] = None makes that import fail as if the package were not installed.
    blocked = "sys.modules['pybullet_envs_gymnasium'] = sys.modules['pybullet_envs_gymnasium.gym_locomotion_envs'] = None"
    code = (
        f"import sys; {blocked}\n"
        "import gymnasium, sb3_dreamer\n"
        "try:\n    gymnasium.make('sb3_dreamer/HopperSource-v0')\nexcept ImportError as error:\n    print(error)"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert "pip install 'sb3-dreamer[bullet]'" in result.stdout


def test_command_without_zoo_extra_names_it(monkeypatch, capsys) -> None:
    real_find_spec = launcher.importlib.util.find_spec
    monkeypatch.setattr(
        launcher.importlib.util, "find_spec", lambda name, *args: None if name == "rl_zoo3" else real_find_spec(name, *args)
    )
    assert launcher.main(["train", "--env", "Pendulum-v1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sb3-dreamer: error: the rl-zoo command needs the zoo extra (rl-zoo3 not installed)")
    assert "pip install 'sb3-dreamer[zoo]'" in err


def test_command_with_zoo_extra_runs_the_cli(capsys) -> None:
    assert launcher.missing_zoo_packages() == []
    with pytest.raises(SystemExit):
        launcher.main(["train", "--help"])
    assert "--env" in capsys.readouterr().out
    assert "sb3_dreamer/PendulumTarget-v0" in gym.registry
