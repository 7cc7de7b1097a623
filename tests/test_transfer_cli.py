"""``python -m sb3_dreamer.transfer``: its help text and its one-line usage errors (nothing is trained here)."""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.classic_control.pendulum import PendulumEnv

from sb3_dreamer import Dreamer
from sb3_dreamer.common.usage import UsageError
from sb3_dreamer.transfer import TransferConfig
from sb3_dreamer.transfer.__main__ import DEFAULT_OUT, PROG, _parser, config_from_args, main
from sb3_dreamer.transfer.dtw_pipeline import check_config
from tests.conftest import tiny

OPTIONS = {
    "--source-env": TransferConfig.source_env,
    "--target-env": TransferConfig.target_env,
    "--source-steps": TransferConfig.source_steps,
    "--target-steps": TransferConfig.target_steps,
    "--source-model": None,
    "--n-reference-episodes": TransferConfig.n_reference_episodes,
    "--label-mode": TransferConfig.label_mode,
    "--init-from-source": False,
    "--dreamer-kwargs": {},
    "--wrapper-kwargs": {},
    "--eval-episodes": TransferConfig.eval_episodes,
    "--seed": TransferConfig.seed,
    "--checkpoint-freq": None,
    "--out": DEFAULT_OUT,
}


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of ``main(argv)``, whether it returns or exits through argparse."""
    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_help_documents_every_option_with_its_default(capsys) -> None:
    code, out, _ = run_main(capsys, "--help")
    assert code == 0
    description, options = out.split("\noptions:\n")
    # One entry per option: "  --name METAVAR  help text (default: ...)", wrapped over several lines.
    entries = {entry.split()[0]: " ".join(entry.split()) for entry in re.split(r"\n  (?=-)", "\n" + options)[1:]}
    assert set(entries) == {"-h,", *OPTIONS}
    for option, default in OPTIONS.items():
        help_text = entries[option].split(None, 1)[1]
        assert len(help_text) > 40, f"{option} has no help text: {help_text!r}"
        assert help_text.endswith(f"(default: {default})"), f"{option} does not show its default {default!r}: {help_text}"
    text = " ".join(description.split())
    for words in ("source.zip", "reference.npz", "target.zip", "results.json", "zero-shot", "minutes", "Quick check"):
        assert words in text, words


def test_quick_example_of_the_help_is_valid_and_small(capsys) -> None:
    _, out, _ = run_main(capsys, "--help")
    command = " ".join(out.split("\noptions:")[0].split("Quick check")[1].split(":", 1)[1].replace("\\\n", " ").split())
    argv = [arg.strip("'") for arg in re.findall(r"'[^']*'|\S+", command.split(PROG, 1)[1])]
    args = _parser().parse_args(argv)
    check_config(config_from_args(args))
    assert args.source_steps + args.target_steps <= 3000 and args.out != DEFAULT_OUT


#: Cheap settings put before each failing invocation: without the checks, the run fails within seconds instead of
#: training for hours (and writes into tmp_path, not the working directory).
TINY_RUN = ["--source-steps", "2", "--target-steps", "2", "--n-reference-episodes", "1", "--eval-episodes", "1"]
TINY_DREAMER = json.dumps(tiny(learning_starts=1))


@pytest.fixture
def usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Callable[..., str]:
    """Run the command with ``argv`` after :data:`TINY_RUN`: it must fail with one line, exit status 2, no output.

    :return: a function ``argv -> the error line``
    """

    def run(*argv: str) -> str:
        out_dir = tmp_path / "run"
        code, out, err = run_main(capsys, *TINY_RUN, "--dreamer-kwargs", TINY_DREAMER, "--out", str(out_dir), *argv)
        assert code == 2, (out, err)
        assert out == "" and "Traceback" not in err and not out_dir.exists()
        lines = err.strip().splitlines()
        assert len(lines) == 1 or lines[0].startswith("usage:"), err  # argparse's own errors start with the usage
        assert lines[-1].startswith(f"{PROG}: error: "), err
        return lines[-1]

    return run


@pytest.mark.parametrize("option", ["--dreamer-kwargs", "--wrapper-kwargs"])
def test_bad_json_is_one_line(usage_error, option: str) -> None:
    message = usage_error(option, "{train_freq: 2}")
    assert option in message and "not valid JSON" in message and "double quotes" in message


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        (
            "--dreamer-kwargs",
            '{"train_frequency": 2}',
            "'train_frequency' (did you mean 'train_freq'?): not a Dreamer argument",
        ),
        (
            "--wrapper-kwargs",
            '{"max_label_costs": 1}',
            "'max_label_costs' (did you mean 'max_label_cost'?): not a DTWRewardWrapper",
        ),
        (  # the wrapper's own argument is known too
            "--wrapper-kwargs",
            '{"backgrund": true}',
            "'backgrund' (did you mean 'background'?): not a DTWRewardWrapper",
        ),
    ],
)
def test_unknown_argument_is_one_line(usage_error, option: str, value: str, expected: str) -> None:
    assert f"{option}: unknown key {expected}" in usage_error(option, value)


@pytest.mark.parametrize(
    ("option", "value", "set_by"),
    [("--wrapper-kwargs", '{"label_mode": "tracking"}', "--label-mode"), ("--dreamer-kwargs", '{"seed": 3}', "--seed")],
)
def test_argument_set_by_an_option_is_one_line(usage_error, option: str, value: str, set_by: str) -> None:
    key = next(iter(json.loads(value)))
    assert f"{option}: {key!r} cannot be given here, it is set by {set_by}" in usage_error(option, value)


@pytest.mark.parametrize("option", ["--source-env", "--target-env"])
def test_unknown_env_id_is_one_line(usage_error, option: str) -> None:
    message = usage_error(option, "sb3_dreamer/PendulumSorce-v0")
    assert "unknown environment id 'sb3_dreamer/PendulumSorce-v0'" in message
    assert "did you mean sb3_dreamer/PendulumSource-v0" in message


@pytest.mark.parametrize("option", ["--source-steps", "--target-steps", "--n-reference-episodes", "--eval-episodes"])
@pytest.mark.parametrize("value", ["0", "-5"])
def test_non_positive_count_is_one_line(usage_error, option: str, value: str) -> None:
    assert f"{option} must be a positive integer, got {value}" in usage_error(option, value)


def test_envs_with_other_observation_shapes_are_one_line(usage_error) -> None:
    message = usage_error("--target-env", "sb3_dreamer/CartPoleTarget-v0")
    assert "--source-env sb3_dreamer/PendulumSource-v0 observes shape (3,)" in message
    assert "--target-env sb3_dreamer/CartPoleTarget-v0 observes shape (4,)" in message


def test_envs_with_other_action_spaces_are_one_line(usage_error) -> None:
    message = usage_error("--source-env", "MountainCarContinuous-v0", "--target-env", "MountainCar-v0")
    assert "action space Box(-1.0, 1.0, (1,), float32), --target-env MountainCar-v0 has Discrete(3)" in message


def wide_pendulum() -> gym.Env:
    """Pendulum whose angular velocity bound is 16 instead of 8: same shapes, another observation space."""
    env = PendulumEnv()
    env.observation_space = gym.spaces.Box(np.float32([-1, -1, -16]), np.float32([1, 1, 16]))
    return gym.wrappers.TimeLimit(env, 200)


def test_init_from_source_needs_equal_spaces(usage_error) -> None:
    gym.register("TestWidePendulum-v0", entry_point=wide_pendulum)
    try:
        check_config(TransferConfig(target_env="TestWidePendulum-v0"))  # passes without --init-from-source
        message = usage_error("--target-env", "TestWidePendulum-v0", "--init-from-source")
    finally:
        del gym.registry["TestWidePendulum-v0"]
    # SB3's load refuses it too (check_for_correct_spaces), but only after the source training.
    assert "--init-from-source loads the source model on the target env, which SB3 allows only with equal spaces" in message


def test_missing_source_model_is_one_line(usage_error, tmp_path) -> None:
    missing = tmp_path / "nothing.zip"
    message = usage_error("--source-model", str(missing))
    assert f"--source-model {str(missing)!r}: no such file" in message


@pytest.mark.parametrize("kind", ["text", "zip", "ppo"])
def test_source_model_that_is_not_a_dreamer_zip_is_one_line(usage_error, tmp_path, kind: str) -> None:
    path = tmp_path / "model.zip"
    if kind == "text":
        path.write_text("not a model\n")
        expected = "not a zip archive, so not a model saved by Dreamer.save"
    elif kind == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("readme.txt", "hello")
        expected = "not a model saved by Dreamer.save (no readable SB3 'data' entry"
    else:
        from stable_baselines3 import PPO

        PPO("MlpPolicy", "sb3_dreamer/PendulumSource-v0", n_steps=64, batch_size=64, device="cpu").save(path)
        expected = "saved by another algorithm (policy ActorCriticPolicy), not by Dreamer"
    assert f"--source-model {str(path)!r}: {expected}" in usage_error("--source-model", str(path))


def test_source_model_of_another_env_is_one_line(usage_error, tmp_path) -> None:
    Dreamer("MlpPolicy", "CartPole-v1", device="cpu", **tiny()).save(tmp_path / "cartpole")
    # ".zip" is appended to a path that does not exist, as Dreamer.load does.
    message = usage_error("--source-model", str(tmp_path / "cartpole"))
    assert "cartpole.zip" in message and "trained with observation space Box" in message
    assert "(4,)" in message and "but --source-env has Box" in message and "(3,)" in message


def test_dreamer_argument_with_a_bad_value_is_one_line(usage_error) -> None:
    message = usage_error("--dreamer-kwargs", '{"actor_grad": "backprop"}')
    assert "--dreamer-kwargs: cannot build Dreamer on sb3_dreamer/PendulumSource-v0" in message
    assert "actor_grad must be 'auto', 'reinforce' or 'dynamics', got 'backprop'" in message


def test_check_config_rejects_an_unknown_label_mode() -> None:
    # The command line never gets here (argparse's choices), a TransferConfig built in Python does.
    with pytest.raises(UsageError, match="--label-mode: unknown mode 'trackin', choose one of source_reward, "):
        check_config(TransferConfig(label_mode="trackin"))


def test_non_positive_checkpoint_freq_is_one_line(usage_error) -> None:
    assert "--checkpoint-freq must be a positive integer, got 0" in usage_error("--checkpoint-freq", "0")
