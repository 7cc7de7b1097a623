"""Helpers shared by the benchmark scripts: rl-zoo's tuned hyperparameters and a learning-curve callback.

The scripts run as ``python benchmarks/<name>.py``, which puts this folder on ``sys.path``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import gymnasium as gym
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy


def zoo_hyperparams(algo: str, env_id: str) -> tuple[dict[str, Any], int]:
    """Hyperparameters of rl_zoo3's tuned entry for ``env_id`` (constructor kwargs) and its ``n_timesteps``.

    Read from the installed rl_zoo3 package's ``hyperparams/<algo>.yml``, not copied.
    """
    import rl_zoo3
    import yaml

    path = Path(rl_zoo3.__file__).parent / "hyperparams" / f"{algo}.yml"
    entry = dict(yaml.safe_load(path.read_text())[env_id])
    n_timesteps = int(float(entry.pop("n_timesteps")))
    entry.pop("policy", None)
    if isinstance(entry.get("policy_kwargs"), str):
        entry["policy_kwargs"] = eval(entry["policy_kwargs"])  # the zoo's own convention for this key
    for key in ("learning_rate", "buffer_size", "learning_starts", "batch_size", "train_freq", "gradient_steps"):
        if isinstance(entry.get(key), str):
            entry[key] = float(entry[key])
    return entry, n_timesteps


def jsonable(value: Any) -> Any:
    """``value`` with every non-JSON leaf replaced by its ``repr``."""
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    return value if isinstance(value, int | float | str | bool | type(None)) else repr(value)


class EvalCurve(BaseCallback):
    """Evaluate the deterministic policy every ``eval_freq`` env steps on ``eval_env``; the points go to ``curve``.

    Each point: ``step``, ``mean``, ``std`` of the episode returns and ``train_seconds`` (wall time since the
    callback was created, minus the time spent evaluating).

    :param eval_env: evaluation env (wrapped in Monitor by the caller, so returns are the env's own reward)
    :param eval_freq: env steps between evaluations (counted in ``num_timesteps``)
    :param eval_episodes: episodes per evaluation
    :param label: prefix of the progress line printed after each evaluation
    :param stop_at: stop training at the first evaluation whose mean return reaches this value (None: never)
    """

    def __init__(
        self, eval_env: gym.Env, eval_freq: int, eval_episodes: int, label: str, stop_at: float | None = None
    ) -> None:
        super().__init__()
        self.eval_env, self.eval_freq, self.eval_episodes, self.label = eval_env, eval_freq, eval_episodes, label
        self.stop_at = stop_at
        self.curve: list[dict[str, float]] = []
        self.start = time.perf_counter()
        self.eval_seconds = 0.0

    def _on_step(self) -> bool:
        if self.num_timesteps % self.eval_freq == 0:
            tick = time.perf_counter()
            train_seconds = tick - self.start - self.eval_seconds  # evaluations before this one excluded
            mean, std = evaluate_policy(self.model, self.eval_env, n_eval_episodes=self.eval_episodes, deterministic=True)
            self.eval_seconds += time.perf_counter() - tick
            self.curve.append(dict(step=self.num_timesteps, mean=float(mean), std=float(std), train_seconds=train_seconds))
            print(f"{self.label}: step {self.num_timesteps} return {mean:.1f} +/- {std:.1f}", flush=True)
            return self.stop_at is None or mean < self.stop_at
        return True
