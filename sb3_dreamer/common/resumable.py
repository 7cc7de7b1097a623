"""Resumable training runs: a learning curve on a seeded evaluation env (:class:`EvalCurve`) and checkpoints that let a
run cut off by a session limit or a reboot continue where it stopped (:class:`ResumableRun`).

Used by the benchmark scripts (``benchmarks/``), so that published numbers come from code users can run: pass both as
callbacks to ``learn``, and call :meth:`ResumableRun.restore` before building a new model.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy


class _LearnedReturn(gym.Wrapper):
    """Sum ``learned_reward(obs)`` over each episode beside the env's own reward (which passes through unchanged).

    ``returns`` collects one sum per finished episode. Used to see what a DTW-trained agent's reward model says about the
    episodes it is evaluated on, beside their true return (the two can differ in scale: source-reward labels are in
    the source's units).
    """

    def __init__(self, env: gym.Env, learned_reward: Callable[[np.ndarray], float]) -> None:
        super().__init__(env)
        self.learned_reward = learned_reward
        self.returns: list[float] = []
        self._sum = 0.0

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        self._sum = 0.0
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._sum += float(self.learned_reward(np.asarray(obs, dtype=np.float32).reshape(-1)))
        if terminated or truncated:
            self.returns.append(self._sum)
        return obs, reward, terminated, truncated, info


class EvalCurve(BaseCallback):
    """Evaluate the deterministic policy every ``eval_freq`` env steps on ``eval_env``; the points go to ``curve``.

    Each point: ``step``, ``mean``, ``std`` of the episode returns and ``train_seconds`` (wall time since the
    callback was created, minus the time spent evaluating); with ``learned_reward`` also ``learned_mean``, the mean
    over the same episodes of the sum of ``learned_reward(obs)`` (a reward model's return, for diagnosis only).

    :param eval_env: evaluation env (wrapped in Monitor by the caller, so returns are the env's own reward)
    :param eval_freq: env steps between evaluations (counted in ``num_timesteps``)
    :param eval_episodes: episodes per evaluation
    :param label: prefix of the progress line printed after each evaluation
    :param stop_at: stop training at the first evaluation whose mean return reaches this value (None: never)
    :param learned_reward: reward of one observation under a learned reward model (called at evaluation time, so the
        model's current state is used), or None
    :param seed: seed of ``eval_env``'s first reset (later evaluations continue its random stream, so a seeded run
        evaluates on the same initial states every time it is repeated); None leaves the env unseeded
    """

    def __init__(
        self,
        eval_env: gym.Env,
        eval_freq: int,
        eval_episodes: int,
        label: str,
        stop_at: float | None = None,
        learned_reward: Callable[[np.ndarray], float] | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if seed is not None:
            eval_env.reset(seed=seed)  # evaluate_policy's resets pass no seed, so the stream continues from here
        self.probe = None if learned_reward is None else _LearnedReturn(eval_env, learned_reward)
        self.eval_env = eval_env if self.probe is None else self.probe
        self.eval_freq, self.eval_episodes, self.label = eval_freq, eval_episodes, label
        self.stop_at = stop_at
        self.curve: list[dict[str, float]] = []
        self.start = time.perf_counter()
        self.eval_seconds = 0.0

    def _on_step(self) -> bool:
        if self.num_timesteps % self.eval_freq == 0:
            tick = time.perf_counter()
            train_seconds = tick - self.start - self.eval_seconds  # evaluations before this one excluded
            if self.probe is not None:
                self.probe.returns.clear()
            mean, std = evaluate_policy(self.model, self.eval_env, n_eval_episodes=self.eval_episodes, deterministic=True)
            self.eval_seconds += time.perf_counter() - tick
            point = dict(step=self.num_timesteps, mean=float(mean), std=float(std), train_seconds=train_seconds)
            message = f"{self.label}: step {self.num_timesteps} return {mean:.1f} +/- {std:.1f}"
            if self.probe is not None:
                point["learned_mean"] = float(np.mean(self.probe.returns[: self.eval_episodes]))
                message += f" (learned reward model: {point['learned_mean']:.1f})"
            self.curve.append(point)
            print(message, flush=True)
            return self.stop_at is None or mean < self.stop_at
        return True


class ResumableRun(BaseCallback):
    """Checkpoint a benchmark run every ``save_freq`` env steps so that a run cut off (a session limit, a reboot)
    continues where it stopped instead of starting over.

    A checkpoint is a directory with the model (``model.zip``), its replay buffer (``buffer.pkl``), the state of a DTW
    reward wrapper if one is given (``wrapper.npz``) and ``progress.json`` (the learning curve so far and the time
    spent). It is written to ``<directory>.tmp`` and then renamed over ``directory``, so a run killed while saving
    keeps the previous checkpoint. The run is not bitwise identical to an uninterrupted one (the env restarts its
    episode, and the RNG streams restart from the loaded state).

    :param directory: checkpoint directory
    :param save_freq: env steps between checkpoints (counted in ``num_timesteps``)
    :param curve: the run's :class:`EvalCurve` (its points are saved and restored)
    :param wrapper: a wrapper with ``save_state`` / ``load_state`` (the DTW reward wrapper), or None
    """

    def __init__(self, directory: Path, save_freq: int, curve: EvalCurve, wrapper: Any = None) -> None:
        super().__init__()
        self.directory, self.save_freq, self.curve, self.wrapper = Path(directory), save_freq, curve, wrapper

    def _on_step(self) -> bool:
        if self.num_timesteps % self.save_freq == 0:
            self.save()
        return True

    def save(self) -> None:
        """Write a checkpoint of the current state."""
        tmp = _sibling(self.directory, ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        self.model.save(tmp / "model.zip")
        self.model.save_replay_buffer(tmp / "buffer.pkl")
        if self.wrapper is not None:
            self.wrapper.save_state(tmp / "wrapper.npz")
        progress = dict(
            num_timesteps=self.num_timesteps,
            curve=self.curve.curve,
            elapsed=time.perf_counter() - self.curve.start,
            eval_seconds=self.curve.eval_seconds,
        )
        (tmp / "progress.json").write_text(json.dumps(progress))
        old = _sibling(self.directory, ".old")
        if self.directory.exists():
            os.replace(self.directory, old)
        os.replace(tmp, self.directory)
        shutil.rmtree(old, ignore_errors=True)

    def restore(self, load_model: Any) -> Any:
        """Load the last checkpoint, if any, into a new model and restore the curve and the wrapper.

        :param load_model: ``load_model(path)`` returns the algorithm loaded from ``path`` with the run's env
        :return: the restored model, or None if there is no checkpoint
        """
        directory = self.directory
        if not (directory / "progress.json").exists():
            old = _sibling(self.directory, ".old")  # killed between the two renames of save()
            if not (old / "progress.json").exists():
                return None
            directory = old
        progress = json.loads((directory / "progress.json").read_text())
        model = load_model(directory / "model.zip")
        if model.num_timesteps != progress["num_timesteps"]:
            raise ValueError(
                f"checkpoint {directory} is inconsistent: model at {model.num_timesteps} steps, progress at "
                f"{progress['num_timesteps']}"
            )
        model.load_replay_buffer(directory / "buffer.pkl")
        if self.wrapper is not None:
            self.wrapper.load_state(directory / "wrapper.npz")
        self.curve.curve = progress["curve"]
        self.curve.start = time.perf_counter() - progress["elapsed"]
        self.curve.eval_seconds = progress["eval_seconds"]
        print(f"{self.curve.label}: resumed from {directory} at step {model.num_timesteps}", flush=True)
        return model

    def remove(self) -> None:
        """Delete the checkpoint (after the run has written its result)."""
        self.remove_at(self.directory)

    @staticmethod
    def exists_at(directory: Path) -> bool:
        """Whether :meth:`restore` would find a checkpoint in ``directory`` (or in its ``.old`` sibling)."""
        return any((_sibling(directory, suffix) / "progress.json").exists() for suffix in ("", ".old"))

    @staticmethod
    def remove_at(directory: Path) -> None:
        """Delete the checkpoint kept in ``directory`` (and its ``.tmp``/``.old`` siblings), if any."""
        for suffix in ("", ".tmp", ".old"):
            shutil.rmtree(_sibling(directory, suffix), ignore_errors=True)


def _sibling(directory: Path, suffix: str) -> Path:
    """``directory`` with ``suffix`` appended to its name (the ``.tmp`` and ``.old`` folders of a checkpoint)."""
    return directory.with_name(directory.name + suffix)
