"""Resumable runs (``sb3_dreamer.common.ResumableRun``: a run cut off after a checkpoint resumes from it with its learning
curve, replay buffer and DTW reward-wrapper state), the seeded evaluation curve (``EvalCurve``), and the benchmarks'
helpers (``benchmarks/common.py``: the MinAtar DQN baseline, the job scheduler)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.monitor import Monitor

import sb3_dreamer.envs  # noqa: F401  (registers the sb3_dreamer/... ids)
from sb3_dreamer import Dreamer
from sb3_dreamer.alignment import DTWRewardWrapper, record_trajectories
from sb3_dreamer.common import EvalCurve, ResumableRun
from tests.conftest import CutOff, CutOffAt, tiny

th.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
TINY = tiny(train_freq=8, buffer_size=1000)
TARGET = "sb3_dreamer/PendulumTarget-v0"


@pytest.fixture(scope="module")
def common():
    spec = importlib.util.spec_from_file_location("benchmark_common", ROOT / "benchmarks" / "common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def transfer(monkeypatch):
    """``benchmarks/transfer.py`` as a module, its folder on ``sys.path`` as when it runs."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("benchmark_transfer", ROOT / "benchmarks" / "transfer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> str:
    def swing(obs: np.ndarray) -> np.ndarray:
        return np.array([2.0 * np.sign(obs[2] if abs(obs[2]) > 1e-3 else 1.0)], dtype=np.float32)

    return record_trajectories(swing, "sb3_dreamer/PendulumSource-v0", n_episodes=2, seed=0).save(
        tmp_path_factory.mktemp("ref") / "reference.npz"
    )


def make_run(reference: str, directory: Path):
    wrapper_kwargs = dict(reference=reference, seed=0, pretrain_steps=5, refit_steps=5, refit_interval=100)
    env = make_vec_env(TARGET, seed=0, wrapper_class=DTWRewardWrapper, wrapper_kwargs=wrapper_kwargs)
    curve = EvalCurve(Monitor(gym.make(TARGET)), 100, 1, "test")
    return env, curve, ResumableRun(directory, 300, curve, env.envs[0])


def test_cut_off_run_resumes_from_its_last_checkpoint(reference: str, tmp_path) -> None:
    directory = tmp_path / "checkpoints" / "run_0"
    env, curve, checkpoint = make_run(reference, directory)
    assert checkpoint.restore(lambda path: Dreamer.load(path, env=env)) is None  # nothing saved yet
    model = Dreamer("MlpPolicy", env, seed=0, **TINY)
    with pytest.raises(CutOff):
        model.learn(600, callback=[curve, checkpoint, CutOffAt(450)])
    assert env.envs[0].rewarder.n_episodes == 2 and len(curve.curve) == 4  # state at the cut-off ...

    env, curve, checkpoint = make_run(reference, directory)
    restored = checkpoint.restore(lambda path: Dreamer.load(path, env=env))
    # ... but the checkpoint of step 300 is what comes back: one finished episode, three evaluations.
    assert restored.num_timesteps == 300 and [point["step"] for point in curve.curve] == [100, 200, 300]
    assert env.envs[0].rewarder.n_episodes == 1 and len(env.envs[0].rewarder.label_data[1]) == 200
    assert restored.replay_buffer.size() >= 300
    restored.learn(600 - restored.num_timesteps, callback=[curve, checkpoint], reset_num_timesteps=False)
    assert 600 <= restored.num_timesteps < 600 + TINY["train_freq"]  # SB3 collects whole train_freq rounds
    assert [point["step"] for point in curve.curve] == [100, 200, 300, 400, 500, 600]
    assert env.envs[0].rewarder.n_episodes == 2  # the episode cut off at 450 is lost: 300-500 is the second

    # Killed between the two renames of save(): the previous checkpoint (".old") is used.
    os.replace(directory, directory.with_name(directory.name + ".old"))
    env, curve, checkpoint = make_run(reference, directory)
    assert checkpoint.restore(lambda path: Dreamer.load(path, env=env)).num_timesteps == 600  # the last checkpoint
    checkpoint.remove()
    assert not any(directory.parent.iterdir())


class ConstantPolicy:
    """Stands for a trained model in ``evaluate_policy``: the same action everywhere."""

    def predict(self, obs, state=None, episode_start=None, deterministic=True):
        return np.full((len(obs), 1), 0.5, dtype=np.float32), None


def evaluate_once(seed: int, learned_reward) -> dict:
    curve = EvalCurve(Monitor(gym.make(TARGET)), 100, 2, "test", learned_reward=learned_reward, seed=seed)
    curve.model, curve.num_timesteps = ConstantPolicy(), 100
    curve._on_step()
    return curve.curve[0]


def test_eval_curve_is_seeded_and_sums_the_learned_reward() -> None:
    first, second = evaluate_once(7, lambda obs: 1.0), evaluate_once(7, lambda obs: 1.0)
    assert (first["mean"], first["std"]) == (second["mean"], second["std"])  # same initial states
    assert first["learned_mean"] == 200.0  # one per step of the two 200-step episodes, not mixed with a third

    # The learned return of each evaluation episode, replayed by hand: the first reset seeds, evaluate_policy's resets
    # continue the stream.
    point = evaluate_once(7, lambda obs: float(obs[0]))
    env = gym.make(TARGET)
    env.reset(seed=7)
    sums, true_returns = [], []
    for _ in range(2):
        env.reset()
        total, true_total, done = 0.0, 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(np.array([0.5], dtype=np.float32))
            total, true_total, done = total + float(obs[0]), true_total + float(reward), terminated or truncated
        sums.append(total)
        true_returns.append(true_total)
    assert point["mean"] == pytest.approx(np.mean(true_returns))
    assert point["learned_mean"] == pytest.approx(np.mean(sums), rel=1e-5)


def test_minatar_dqn_baseline_reads_a_10x10_frame(common) -> None:
    """rl-zoo has no MinAtar DQN entry: the baseline takes its ``atari`` entry without the Atari wrappers, the MinAtar
    paper's replay start and network, and learns (its loss changes the Q-network) on MinAtar's boolean frames."""
    from stable_baselines3 import DQN

    policy, hyperparams = common.baseline_hyperparams("dqn", "MinAtar/Breakout-v1")
    assert "env_wrapper" not in hyperparams and "frame_stack" not in hyperparams
    assert hyperparams["learning_starts"] == common.MINATAR_LEARNING_STARTS
    hyperparams.update(learning_starts=50, buffer_size=500, batch_size=8, train_freq=1)
    model = DQN(policy, "MinAtar/Breakout-v1", seed=0, **hyperparams)
    assert isinstance(model.q_net.features_extractor, common.MinAtarCNN)
    before = [param.detach().clone() for param in model.q_net.parameters()]
    model.learn(100)
    assert any(not th.equal(old, new) for old, new in zip(before, model.q_net.parameters(), strict=True))
    obs, _ = gym.make("MinAtar/Breakout-v1").reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert model.action_space.contains(int(action))


def test_multisource_schedule_runs_dependencies_first_and_skips_after_failures() -> None:
    spec = importlib.util.spec_from_file_location("multisource", ROOT / "benchmarks" / "multisource.py")
    multisource = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(multisource)
    jobs = multisource.jobs_of(0)
    assert jobs["target-scratch_0"] == [] and jobs["target-ufs_0"] == ["multitask_0"]
    assert jobs["target-meta_0"][0] == "multitask_0" and len(jobs["target-meta_0"]) == 3
    order: list[str] = []

    def launch(name: str) -> int:
        order.append(name)
        return 1 if name == "metasource-Pendulum_0" else 0

    spec = importlib.util.spec_from_file_location("common", ROOT / "benchmarks" / "common.py")
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    codes = common.schedule(jobs, set(), launch, n_jobs=2)
    assert all(order.index(dep) < order.index(name) for name in order for dep in jobs[name])
    assert "target-meta_0" not in order and "target-fractional0.2_0" in order  # meta needs the failed source
    assert sorted(codes) == [0] * (len(order) - 1) + [1]


HELPERS = {"common", "transfer_pairs"}  # imported by the scripts, not run
SCRIPTS = sorted(path for path in (ROOT / "benchmarks").glob("*.py") if path.stem not in HELPERS)


@pytest.mark.parametrize("script", SCRIPTS, ids=[path.stem for path in SCRIPTS])
def test_benchmark_scripts_import(script: Path, monkeypatch) -> None:
    """Every benchmark script imports (a script that imports a removed name fails here, not in a user's run)."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # the scripts run with their folder on sys.path
    spec = importlib.util.spec_from_file_location(f"benchmark_{script.stem}", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(getattr(module, "main", None)), f"{script.name} has no main()"


def test_transfer_table_normalises_by_the_ratio_of_means_and_checks_the_goal(transfer, tmp_path: Path, monkeypatch) -> None:
    """``benchmarks/transfer.py``'s table: score = (mean R - mean random) / (mean oracle - mean random) over the seeds,
    per-seed scores beside it, and the goal line of issue 19 against the reference-only control."""
    import json

    def curve(value: float) -> list[dict[str, float]]:
        return [dict(step=1, mean=value - 50.0), dict(step=2, mean=value)]

    finals = {
        "dreamer_oracle": (100.0, 300.0),
        "dreamer_dtw_source_reward": (100.0, 200.0),
        "dreamer_reference_only": (10.0, 20.0),
    }
    # While a table runs: no goal line before an oracle exists, no margin from one seed (it has no spread).
    source = dict(seed=0, curve=curve(50.0), random=[0.0, 1.0], source_zero_shot=[0.0, 1.0])
    (tmp_path / "source_0.json").write_text(json.dumps(source))
    for variant in ("dreamer_dtw_source_reward", "dreamer_reference_only", "dreamer_oracle"):
        assert "Goal (issue 19)" not in transfer.summarise("toy", tmp_path)  # the oracle comes last
        (tmp_path / f"{variant}_0.json").write_text(json.dumps(dict(variant=variant, seed=0, curve=curve(100.0))))
    table = transfer.summarise("toy", tmp_path)
    assert "Goal (issue 19)" in table and "minus dreamer_reference_only" not in table
    for seed in (0, 1):
        source = dict(seed=seed, curve=curve(50.0), random=[0.0, 1.0], source_zero_shot=[float(seed * 40), 1.0])
        (tmp_path / f"source_{seed}.json").write_text(json.dumps(source))
        for variant, values in finals.items():
            run = dict(variant=variant, seed=seed, curve=curve(values[seed]))
            (tmp_path / f"{variant}_{seed}.json").write_text(json.dumps(run))
    # A DTW run of a seed the control lacks (no source, no oracle): not part of the margin or the ratio of means.
    (tmp_path / "dreamer_dtw_source_reward_2.json").write_text(
        json.dumps(dict(variant="dreamer_dtw_source_reward", seed=2, curve=curve(5000.0)))
    )
    table = transfer.summarise("toy", tmp_path)
    row = next(line for line in table.splitlines() if line.startswith("| dreamer_dtw_source_reward |"))
    assert "| 0.75 (seeds 0, 1 only) | 1.00, 0.67 |" in row  # ratio of means 150 / 200, not the mean of per-seed ratios (0.83)
    assert "zero-shot 0.10 of the oracle (≤ 0.5: a pair of the goal)" in table
    assert "dreamer_dtw_source_reward: 0.75 of the oracle (< 0.8); minus dreamer_reference_only: +135.0" in table
    assert "vs seed spread (larger std) 50.0: beats it." in table
    summary = json.loads((tmp_path / "summary.json").read_text())
    dtw = next(row for row in summary["last_1"] if row["variant"] == "dreamer_dtw_source_reward")
    assert dtw["ratio_of_means"] == pytest.approx(0.75) and dtw["scores"] == pytest.approx([1.0, 2 / 3])
    # A second reference (SAC from scratch on the true reward), read over its own seeds: DTW 150 / 300, zero-shot 20 / 300.
    for seed, value in ((0, 200.0), (1, 400.0)):
        run = dict(variant="sac_oracle", seed=seed, curve=curve(value))
        (tmp_path / f"sac_oracle_{seed}.json").write_text(json.dumps(run))
    table = transfer.summarise("toy", tmp_path)
    assert "Against sac_oracle (seeds 0, 1): zero-shot 0.07." in table
    assert "dreamer_dtw_source_reward: 0.75 of the oracle (< 0.8), 0.50 of sac_oracle; minus" in table
    # A pair that says how to read task progress from the references: a seed whose source did not learn is named.
    from sb3_dreamer.alignment import TrajectoryDataset

    for seed, speed in ((0, 1.0), (1, 0.05)):
        obs = np.zeros((4, 2), np.float32)
        obs[:, 1] = speed * 0.5
        TrajectoryDataset(obs, obs, np.zeros((4, 1), np.float32), np.zeros(4), np.array([4]), np.array([False])).save(
            tmp_path / f"reference_{seed}.npz"
        )
    progress = dict(name="speed", how="obs[1] / 0.5", index=1, scale=2.0, unit="m/s", minimum=0.2, failed="stands")
    monkeypatch.setitem(transfer.PAIRS, "toy", dict(source_progress=progress))
    table = transfer.summarise("toy", tmp_path)
    assert "Source speed in its reference episodes (obs[1] / 0.5): seed 0: 1.00 m/s, seed 1: 0.05 m/s." in table
    assert "Below 0.2 m/s, the source stands: seed 1; its scores say little about transfer." in table
    # A DTW variant from scratch is compared with the control from scratch (and not listed without it).
    for seed, value in ((0, 60.0), (1, 80.0)):
        run = dict(variant="dreamer_dtw_source_reward_scratch", seed=seed, curve=curve(value))
        (tmp_path / f"dreamer_dtw_source_reward_scratch_{seed}.json").write_text(json.dumps(run))
    assert "dreamer_dtw_source_reward_scratch: " not in transfer.summarise("toy", tmp_path)
    for seed, value in ((0, 70.0), (1, 130.0)):
        run = dict(variant="dreamer_reference_only_scratch", seed=seed, curve=curve(value))
        (tmp_path / f"dreamer_reference_only_scratch_{seed}.json").write_text(json.dumps(run))
    table = transfer.summarise("toy", tmp_path)
    assert "minus dreamer_reference_only_scratch: -30.0 vs seed spread (larger std) 30.0: does not beat" in table


def test_transfer_scratch_oracle_starts_from_scratch_and_the_oracle_from_the_source(
    transfer, tmp_path: Path, monkeypatch
) -> None:
    """``*_scratch`` variants build a fresh Dreamer with its own warm-up; ``dreamer_oracle`` fine-tunes the source."""
    import sb3_dreamer.transfer

    calls = []

    class Stop(Exception):
        pass

    def train_target(config, out, **kwargs):  # records what run_target asks the library for
        calls.append((config.init_from_source, kwargs["learning_starts"], kwargs["reward"], kwargs["reward_at_sampling"]))
        raise Stop

    monkeypatch.setattr(sb3_dreamer.transfer, "train_target", train_target)
    variants = (
        "dreamer_oracle_scratch",
        "dreamer_oracle",
        "dreamer_dtw_source_reward_scratch",
        "sac_dtw_source_reward_sampled",
    )
    for variant in variants:
        with pytest.raises(Stop):
            transfer.run_target("pendulum", variant, 0, tmp_path, 1, 100)
    warm_up = transfer.PAIRS["pendulum"]["target_learning_starts"]
    assert calls == [
        (False, None, "oracle", False),
        (True, warm_up, "oracle", False),
        (False, None, "dtw", False),
        (False, None, "dtw", True),  # SAC (from scratch); its rewards computed at sampling
    ]
    assert transfer.reward_setting("sac_dtw_source_reward_sampled") == ("source_reward", {})
    assert transfer._control_of("sac_dtw_source_reward_sampled") == "sac_reference_only"
    assert transfer.reward_setting("dreamer_reference_only_scratch") == transfer.DTW_CONTROLS["dreamer_reference_only"]
    mode, extra = transfer.reward_setting("dreamer_reference_only_refit500_scratch")
    assert (mode, extra) == ("source_reward", dict(dtw_labels=False, refit_interval=500))
    assert transfer.reward_setting("dreamer_dtw_source_reward_refit500") == ("source_reward", dict(refit_interval=500))
    assert transfer._control_of("dreamer_dtw_source_reward_refit500_scratch") == "dreamer_reference_only_refit500_scratch"
    assert transfer._control_of("dreamer_dtw_source_reward_split_relabel") == "dreamer_reference_only"
    assert transfer._control_of("sac_dtw_source_reward") == "sac_reference_only"
    (tmp_path / "source_0.json").write_text("{}")
    scratch = ["dreamer_oracle_scratch", "dreamer_reference_only_scratch"]
    assert not transfer.needs_run(tmp_path, "source", 0, scratch)  # no source model needed
    assert transfer.needs_run(tmp_path, "source", 0, ["dreamer_reference_only"])


def test_transfer_reruns_a_source_stage_whose_model_is_gone_only_while_targets_need_it(transfer, tmp_path: Path) -> None:
    """``benchmarks/transfer.py`` on a checkout whose git-ignored ``source_<seed>.zip`` is missing (another machine)."""
    variants = ["dreamer_oracle", "dreamer_reference_only"]
    assert transfer.needs_run(tmp_path, "source", 0, variants)  # nothing yet
    (tmp_path / "source_0.json").write_text("{}")
    (tmp_path / "dreamer_oracle_0.json").write_text("{}")
    assert transfer.needs_run(tmp_path, "source", 0, variants)  # the control still needs the model
    assert not transfer.needs_run(tmp_path, "dreamer_oracle", 0, variants)
    assert transfer.needs_run(tmp_path, "dreamer_reference_only", 0, variants)
    assert not transfer.needs_run(tmp_path, "source", 0, variants[:1])  # every target done: the JSON suffices
    assert not transfer.needs_run(tmp_path, "source", 0, ["dreamer_oracle", "sac_oracle"])  # SAC starts from scratch
    (tmp_path / "source_0.zip").write_bytes(b"model")
    assert not transfer.needs_run(tmp_path, "source", 0, variants)


def test_final_reward_fidelity_restores_each_runs_reward_model_and_the_pre_fit(
    reference: str, tmp_path: Path, monkeypatch
) -> None:
    """``benchmarks/final_reward_fidelity.py`` scores the reward model a run saved (not a fresh one) beside the pre-fit."""
    import json
    import shutil

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("benchmark_frf", ROOT / "benchmarks" / "final_reward_fidelity.py")
    fidelity = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fidelity)
    shutil.copy(reference, tmp_path / "reference_0.npz")
    kwargs = dict(reference="/elsewhere/reference_0.npz", label_mode="source_reward", seed=0, pretrain_steps=5)
    trained = DTWRewardWrapper(gym.make(TARGET), reference, label_mode="source_reward", seed=0, pretrain_steps=5)
    trained.reset(seed=0)
    observations = np.stack([trained.step(trained.action_space.sample())[0] for _ in range(50)])
    trained.rewarder.model.fit(observations, np.linspace(-5.0, 5.0, 50), budget_seconds=None, max_steps=20)
    (tmp_path / "final").mkdir()
    trained.save_state(tmp_path / "final" / "dreamer_dtw_source_reward_0_wrapper.npz")
    (tmp_path / "dreamer_dtw_source_reward_0.json").write_text(json.dumps(dict(wrapper_kwargs=kwargs)))
    # A variant without its run JSON (still running) is left out.
    trained.save_state(tmp_path / "final" / "dreamer_reference_only_0_wrapper.npz")
    models = fidelity.reward_models(tmp_path, TARGET, 0, ["dreamer_dtw_source_reward", "dreamer_reference_only"])
    assert sorted(models) == ["dreamer_dtw_source_reward", fidelity.PRE_FIT]
    restored = models["dreamer_dtw_source_reward"].rewarder.predict(observations)
    np.testing.assert_allclose(restored, trained.rewarder.predict(observations), rtol=1e-5)
    assert not np.allclose(models[fidelity.PRE_FIT].rewarder.predict(observations), restored, rtol=1e-3)
