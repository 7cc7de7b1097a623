"""``python -m sb3_dreamer``: the README's first command, with tiny settings."""

from __future__ import annotations

import json

from sb3_dreamer import Dreamer
from sb3_dreamer.__main__ import DEFAULT_CONFIG, main


def test_main_trains_saves_and_evaluates(tmp_path, capsys) -> None:
    path = tmp_path / "model.zip"
    overrides = dict(policy_kwargs=dict(model_size="debug"), batch_size=2, batch_length=8, learning_starts=16, train_freq=8)
    code = main(["-n", "40", "--save-path", str(path), "--hyperparams", json.dumps(overrides), "--eval-episodes", "1"])
    assert code == 0
    out = capsys.readouterr().out
    assert "Deterministic evaluation over 1 episodes" in out
    model = Dreamer.load(path)
    assert model.num_timesteps == 40
    assert model.policy.model_size == "debug"
    # The embedded defaults reach the model unless overridden.
    assert model.imagination_starts == DEFAULT_CONFIG["hyperparams"]["imagination_starts"]
    assert model.observation_space.shape == (3,)  # Pendulum-v1, the default env
