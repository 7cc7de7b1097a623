"""The reward-free DTW transfer pipeline end to end, with tiny settings."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sb3_dreamer import Dreamer, TrajectoryDataset
from sb3_dreamer.transfer import TransferConfig, run_dtw_transfer
from sb3_dreamer.transfer.__main__ import main
from tests.conftest import tiny

TINY = tiny(train_freq=8)


@pytest.mark.parametrize("init_from_source", [False, True])
def test_pipeline_writes_models_reference_and_results(tmp_path, init_from_source) -> None:
    config = TransferConfig(
        source_steps=40,
        target_steps=220,  # one full 200-step episode, so one alignment and label refit happen
        n_reference_episodes=1,
        init_from_source=init_from_source,
        dreamer_kwargs=TINY,
        wrapper_kwargs=dict(pretrain_steps=5, refit_steps=5, refit_interval=100),
        eval_episodes=1,
    )
    results = run_dtw_transfer(config, tmp_path)
    for name in ("source.zip", "reference.npz", "target.zip", "results.json"):
        assert (tmp_path / name).exists(), name
    assert TrajectoryDataset.load(tmp_path / "reference.npz").n_episodes == 1
    target = Dreamer.load(tmp_path / "target.zip")
    assert 220 <= target.num_timesteps < 220 + TINY["train_freq"]  # SB3 collects whole train_freq rounds
    for key in ("random", "source_zero_shot", "target_dtw", "source_on_source"):
        mean, std = results[key]
        assert -2000.0 < mean <= 0.0 and std >= 0.0  # Pendulum returns are negative
    assert json.loads((tmp_path / "results.json").read_text())["config"]["init_from_source"] is init_from_source


def test_cli_reuses_a_source_model(tmp_path, capsys) -> None:
    source = Dreamer("MlpPolicy", "sb3_dreamer/PendulumSource-v0", seed=0, **TINY).learn(20)
    source.save(tmp_path / "src.zip")
    code = main(
        [
            "--source-model",
            str(tmp_path / "src.zip"),
            "--target-steps",
            "30",
            "--n-reference-episodes",
            "1",
            "--eval-episodes",
            "1",
            "--dreamer-kwargs",
            json.dumps(TINY),
            "--out",
            str(tmp_path / "run"),
        ]
    )
    assert code == 0
    assert "target_dtw" in capsys.readouterr().out
    loaded = Dreamer.load(tmp_path / "run" / "source.zip")
    obs = np.zeros((1, 3), np.float32)
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], source.predict(obs, deterministic=True)[0])
