"""The reward-free DTW transfer pipeline end to end, and its stages (``train_source``, ``train_target``) with their
checkpoints, with tiny settings."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch as th
from stable_baselines3 import SAC

from sb3_dreamer import Dreamer, TrajectoryDataset
from sb3_dreamer.alignment import SampledRewardReplayBuffer
from sb3_dreamer.common.usage import UsageError
from sb3_dreamer.transfer import TransferConfig, run_dtw_transfer, train_source, train_target
from sb3_dreamer.transfer.__main__ import main
from tests.conftest import CutOff, CutOffAt, tiny

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
    # The files and keys of the pipeline before it was split into stages: nothing more, nothing less.
    assert sorted(path.name for path in tmp_path.iterdir()) == ["reference.npz", "results.json", "source.zip", "target.zip"]
    assert set(results) == {"config", "random", "source_zero_shot", "target_dtw", "source_on_source"}
    assert results["config"] == json.loads(json.dumps(dataclasses.asdict(config)))
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


def stage_config(**fields) -> TransferConfig:
    wrapper_kwargs = dict(pretrain_steps=5, refit_steps=5, refit_interval=100)
    settings = dict(source_steps=40, target_steps=300, n_reference_episodes=1, init_from_source=True, eval_episodes=1)
    return TransferConfig(dreamer_kwargs=TINY, wrapper_kwargs=wrapper_kwargs, **{**settings, **fields})


def test_target_stage_cut_off_after_a_checkpoint_resumes_from_it(tmp_path) -> None:
    config = stage_config()
    source = train_source(config, tmp_path, eval_freq=20, checkpoint_freq=20)
    assert [point["step"] for point in source.curve] == [20, 40] and not source.resumed
    source_time = (tmp_path / "source.zip").stat().st_mtime_ns
    again = train_source(config, tmp_path, eval_freq=20, checkpoint_freq=20)  # cut off after the stage, before storing
    assert again.resumed and again.curve == source.curve and again.model.num_timesteps == source.model.num_timesteps
    assert (tmp_path / "reference.npz").read_bytes() == Path(source.reference_path).read_bytes()
    assert (tmp_path / "source.zip").stat().st_mtime_ns > source_time  # saved again, from the finished checkpoint
    again.remove_checkpoint()
    assert not (tmp_path / "checkpoints" / "source").exists()  # removed once the caller has stored its results
    stage = dict(learning_starts=20, eval_freq=100, checkpoint_freq=100, wrapper_state_file="wrapper.npz")
    with pytest.raises(CutOff):
        train_target(config, tmp_path, callback=[CutOffAt(250)], **stage)
    assert (tmp_path / "checkpoints" / "target" / "wrapper.npz").exists()  # the reward wrapper is checkpointed

    resumed = train_target(config, tmp_path, **stage)
    assert resumed.resumed and [point["step"] for point in resumed.curve] == [100, 200, 300]
    assert all("learned_mean" in point for point in resumed.curve)
    assert 300 <= resumed.model.num_timesteps < 300 + TINY["train_freq"]
    assert resumed.model.learning_starts == 20  # the override of the source's value, kept by the checkpoint
    # The checkpoint of step 200 held the first (200-step) episode; the episode cut off at 250 is lost.
    assert resumed.dtw["episodes"] == 1 and resumed.dtw["labels_stored"] == 200
    assert resumed.wrapper_kwargs["reference"] == str(tmp_path / "reference.npz")
    assert (tmp_path / "target.zip").exists() and (tmp_path / "wrapper.npz").exists()
    no_step = CutOffAt(resumed.model.num_timesteps + 1)  # raises if the finished stage took one more step
    finished = train_target(config, tmp_path, callback=[no_step], **stage)
    assert finished.curve == resumed.curve and finished.model.num_timesteps == resumed.model.num_timesteps
    assert finished.dtw == resumed.dtw
    finished.remove_checkpoint()
    assert not (tmp_path / "checkpoints" / "target").exists()


def test_target_stage_trains_sac_on_the_true_reward(tmp_path) -> None:
    config = stage_config(target_steps=60)
    stage = train_target(
        config, tmp_path, algo="sac", reward="oracle", algo_kwargs=dict(learning_starts=20, batch_size=8), eval_freq=30
    )
    assert isinstance(stage.model, SAC) and stage.wrapper_kwargs == {} and stage.dtw == {}
    assert [point["step"] for point in stage.curve] == [30, 60] and (tmp_path / "target.zip").exists()


def test_pipeline_with_checkpoints_resumes_its_target_and_keeps_the_source(tmp_path, capsys) -> None:
    config = stage_config()
    train_source(config, tmp_path)
    with pytest.raises(CutOff):
        train_target(config, tmp_path, checkpoint_freq=100, callback=[CutOffAt(250)])
    reference = (tmp_path / "reference.npz").read_bytes()
    source_time = (tmp_path / "source.zip").stat().st_mtime_ns

    capsys.readouterr()
    results = run_dtw_transfer(config, tmp_path, checkpoint_freq=100)
    assert f"resumed from {tmp_path / 'checkpoints' / 'target'} at step 200" in capsys.readouterr().out
    assert (tmp_path / "reference.npz").read_bytes() == reference  # the wrapper in the checkpoint was fitted to it
    assert (tmp_path / "source.zip").stat().st_mtime_ns == source_time  # the finished source is not trained again
    assert sorted(path.name for path in tmp_path.iterdir()) == ["reference.npz", "results.json", "source.zip", "target.zip"]
    assert set(results) == {"config", "random", "source_zero_shot", "target_dtw", "source_on_source"}


def test_cli_run_cut_off_before_the_targets_first_checkpoint_keeps_the_finished_source(tmp_path, capsys) -> None:
    config = stage_config(target_steps=60)
    source = train_source(config, tmp_path, checkpoint_freq=100)  # as run_dtw_transfer leaves it when cut off later
    reference = (tmp_path / "reference.npz").read_bytes()
    capsys.readouterr()
    wrapper_kwargs = json.dumps(config.wrapper_kwargs)
    settings = ["--source-steps", "40", "--target-steps", "60", "--n-reference-episodes", "1", "--eval-episodes", "1"]
    options = ["--init-from-source", "--dreamer-kwargs", json.dumps(TINY), "--wrapper-kwargs", wrapper_kwargs]
    assert main([*settings, *options, "--checkpoint-freq", "100", "--out", str(tmp_path)]) == 0  # the same command again
    assert (
        f"resumed from {tmp_path / 'checkpoints' / 'source'} at step {source.model.num_timesteps}" in capsys.readouterr().out
    )
    assert (tmp_path / "reference.npz").read_bytes() == reference  # the same source, not trained again
    assert not (tmp_path / "checkpoints").exists()


def test_target_stage_relabels_the_replay_buffer_after_each_refit(tmp_path) -> None:
    config = stage_config(target_steps=200)  # one 200-step Pendulum episode: one refit (refit_interval 100)
    train_source(config, tmp_path)
    sac = dict(learning_starts=20, batch_size=8)
    stage = train_target(config, tmp_path, algo="sac", algo_kwargs=sac, relabel=True)
    assert stage.dtw["refits"] == 1 and stage.dtw["relabels"] == 1
    buffer = stage.model.replay_buffer
    rewarder = stage.model.get_env().envs[0].rewarder
    np.testing.assert_allclose(buffer.rewards[:200, 0], rewarder.predict(buffer.next_observations[:200, 0]), rtol=1e-5)
    with pytest.raises(UsageError, match="relabel=True needs reward='dtw'"):
        train_target(config, tmp_path, algo="sac", reward="oracle", relabel=True)


def test_target_stage_computes_rewards_at_sampling_and_resumes(tmp_path) -> None:
    config = stage_config(target_steps=300)  # a refit after the first 200-step episode (refit_interval 100)
    train_source(config, tmp_path)
    stage = dict(algo="sac", algo_kwargs=dict(learning_starts=20, batch_size=8), reward_at_sampling=True,
                 checkpoint_freq=200)  # fmt: skip
    with pytest.raises(CutOff):
        train_target(config, tmp_path, callback=[CutOffAt(250)], **stage)
    resumed = train_target(config, tmp_path, **stage)  # the checkpoint's buffer gets the restored wrapper's model
    assert resumed.resumed and resumed.wrapper_kwargs["reward_at_sampling"] and resumed.dtw["refits"] == 1
    wrapper = resumed.model.get_env().envs[0]
    assert isinstance(resumed.model.replay_buffer, SampledRewardReplayBuffer) and wrapper.sampler_attached
    batch = resumed.model.replay_buffer.sample(32)
    np.testing.assert_allclose(batch.rewards.numpy()[:, 0], wrapper.rewarder.predict(batch.next_observations.numpy()),
                               rtol=1e-5)  # fmt: skip
    with pytest.raises(UsageError, match="reward_at_sampling=True needs reward='dtw' and relabel=False"):
        train_target(config, tmp_path, algo="sac", relabel=True, reward_at_sampling=True)


def test_target_stage_names_a_missing_source_model(tmp_path) -> None:
    config = stage_config(target_steps=10)  # init_from_source=True
    with pytest.raises(UsageError, match=r"the source model .*nowhere\.zip does not exist"):
        train_target(config, tmp_path, source_path=tmp_path / "nowhere.zip")


def test_target_from_source_takes_the_runs_dreamer_kwargs(tmp_path) -> None:
    config = stage_config(target_steps=8)  # init_from_source=True; fewer steps than learning_starts: no update
    source = train_source(config, tmp_path).model
    settings = dataclasses.replace(config, dreamer_kwargs=tiny(train_freq=5, actor_entropy=0.01))
    target = train_target(settings, tmp_path).model
    assert (target.train_freq.frequency, target.actor_entropy) == (5, 0.01)  # the run's settings, not the source's
    assert (source.train_freq.frequency, source.actor_entropy) == (TINY["train_freq"], 3e-4)
    for name, weight in source.policy.state_dict().items():  # and the source's weights
        assert th.equal(weight, target.policy.state_dict()[name]), name
    other_sizes = dataclasses.replace(config, dreamer_kwargs=tiny(policy_kwargs=dict(model_size="xs")))
    with pytest.raises(UsageError, match=r"--dreamer-kwargs: cannot build Dreamer .*policy kwargs"):
        train_target(other_sizes, tmp_path)
