"""SB3-style logs: stdout, CSV and TensorBoard keys; image previews for image observations."""

from __future__ import annotations

import csv
import glob

import numpy as np
from stable_baselines3.common.logger import configure

from sb3_dreamer import Dreamer
from tests.conftest import ImageEnv, tiny


def test_csv_and_stdout_keys(tmp_path, capsys, pendulum) -> None:
    model = Dreamer("MlpPolicy", pendulum, verbose=1, **tiny(learning_starts=100))
    model.set_logger(configure(str(tmp_path), ["stdout", "csv"]))
    model.learn(400, log_interval=1)
    with open(tmp_path / "progress.csv") as handle:
        rows = list(csv.DictReader(handle))
    keys = set(rows[-1])
    expected = {
        "rollout/ep_rew_mean",
        "time/fps",
        "train/world_model_loss",
        "train/dyn_loss",
        "train/rep_loss",
        "train/rew_loss",
        "train/cont_loss",
        "train/rec_loss",
        "train/actor_loss",
        "train/critic_loss",
        "train/entropy",
        "train/return_scale",
        "train/imagined_continue_min",
        "train/imagined_continue_mean",
        "train/imagined_value",
        "train/advantage_std",
        "train/learning_rate",
    }
    assert expected <= keys, expected - keys
    assert np.isfinite(float(rows[-1]["train/world_model_loss"]))
    assert 0.0 <= float(rows[-1]["train/imagined_continue_min"]) <= float(rows[-1]["train/imagined_continue_mean"]) <= 1.0
    assert np.isfinite(float(rows[-1]["train/imagined_value"]))
    assert float(rows[-1]["train/advantage_std"]) > 0.0
    assert "ep_rew_mean" in capsys.readouterr().out


def test_tensorboard_with_open_loop_images(tmp_path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = Dreamer("CnnPolicy", ImageEnv((16, 16, 3)), tensorboard_log=str(tmp_path), log_image_interval=5, **tiny())
    model.learn(60, log_interval=1)
    runs = glob.glob(str(tmp_path / "Dreamer_1"))
    assert runs, list(tmp_path.iterdir())
    events = EventAccumulator(runs[0], size_guidance={"images": 0})
    events.Reload()
    assert "train/world_model_loss" in events.Tags()["scalars"]
    assert "train/open_loop_obs" in events.Tags()["images"]


def test_phase_times_add_up_to_the_update_time(pendulum) -> None:
    model = Dreamer("MlpPolicy", pendulum, **tiny(learning_starts=100))
    model.set_logger(configure(None, []))
    model.learn(100)
    model.learning_starts = 0
    logged: dict[str, float] = {}
    model.logger.record = lambda key, value, exclude=None: logged.__setitem__(key, value)
    model.train(5, model.batch_size)
    phases = ("replay", "world_model", "imagination", "losses", "actor", "critic")
    times = [logged[f"train/time_{phase}"] for phase in phases]
    assert all(seconds > 0.0 for seconds in times)
    # Metric bookkeeping between updates is the only time outside the phases.
    per_update = 1.0 / logged["train/updates_per_second"]
    assert 0.5 * per_update < sum(times) <= per_update
