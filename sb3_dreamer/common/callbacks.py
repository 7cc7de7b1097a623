"""SB3 callbacks used by :class:`~sb3_dreamer.Dreamer` and usable with any SB3 algorithm.

- :class:`TrueRewardCallback` logs the true episode return of a reward-free or relabelled env
  (``info["original_reward"]``) beside the return of the reward the agent is trained on.
- :class:`TaskReturnCallback` logs each task's episode return on a multi-task env (``info["task"]``, set by
  :class:`~sb3_dreamer.transfer.MultiTaskVecEnv`).
- :class:`LogProgressCallback` prints a progress line (steps, steps/s, ETA) every few seconds, for output that goes to
  a file, where a progress bar does not draw.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from typing import TextIO

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

#: Key of the task name in ``info``, set by :class:`~sb3_dreamer.transfer.MultiTaskVecEnv`.
TASK_KEY = "task"

#: Key of the true per-step reward in ``info``, set by :class:`~sb3_dreamer.envs.RewardFree` and the DTW wrappers.
ORIGINAL_REWARD_KEY = "original_reward"
#: ``info`` key of an episode's learned return, set at its end by DTW wrappers whose steps return placeholders
LEARNED_RETURN_KEY = "learned_episode_return"


class TrueRewardCallback(BaseCallback):
    """Log ``rollout/ep_true_rew_mean`` and ``rollout/ep_learned_rew_mean`` when the env reports its true reward.

    Wrappers that replace the reward (``RewardFree``, ``DTWRewardWrapper``, ``VecDTWRewardWrapper``) keep the true
    per-step reward in ``info["original_reward"]``. Where ``Monitor`` sits relative to them decides what SB3's
    ``rollout/ep_rew_mean`` shows (above the DTW wrapper: the learned reward; below it: the true one, or 0.0 under
    ``RewardFree``), so this callback names both sums itself:

    - ``rollout/ep_true_rew_mean``: mean over the last ``stats_window_size`` episodes of the summed
      ``info["original_reward"]``, the task's real return (for reporting only: the agent never sees it);
    - ``rollout/ep_learned_rew_mean``: the same episodes' summed reward as returned by ``env.step``, the reward the
      agent is trained on (or ``info["learned_episode_return"]`` at the episode's end where the wrapper set it: with
      ``reward_at_sampling=True`` the steps return placeholders and the learner computes the rewards).

    Nothing is logged for envs whose infos carry no ``original_reward``. :class:`~sb3_dreamer.Dreamer` adds this
    callback itself; pass it to ``learn(callback=...)`` of other algorithms, e.g. SAC on a DTW reward.

    :param stats_window_size: episodes averaged (default: the model's ``stats_window_size``, 100 in SB3)
    :param verbose: SB3 verbosity
    """

    def __init__(self, stats_window_size: int | None = None, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.stats_window_size = stats_window_size
        self.true_returns: deque[float] = deque()
        self.learned_returns: deque[float] = deque()
        self._true_sum = np.zeros(0)
        self._learned_sum = np.zeros(0)

    def _init_callback(self) -> None:
        window = self.stats_window_size or getattr(self.model, "_stats_window_size", 100)
        self.true_returns = deque(self.true_returns, maxlen=window)
        self.learned_returns = deque(self.learned_returns, maxlen=window)
        n_envs = self.training_env.num_envs
        self._true_sum = np.zeros(n_envs)
        self._learned_sum = np.zeros(n_envs)

    def _on_step(self) -> bool:
        infos, rewards, dones = self.locals["infos"], self.locals["rewards"], self.locals["dones"]
        ended = False
        for index, info in enumerate(infos):
            if ORIGINAL_REWARD_KEY not in info:
                continue
            self._true_sum[index] += float(info[ORIGINAL_REWARD_KEY])
            self._learned_sum[index] += float(rewards[index])
            if dones[index]:
                self.true_returns.append(float(self._true_sum[index]))
                self.learned_returns.append(float(info.get(LEARNED_RETURN_KEY, self._learned_sum[index])))
                self._true_sum[index] = self._learned_sum[index] = 0.0
                ended = True
        if ended:
            self.logger.record("rollout/ep_true_rew_mean", float(np.mean(self.true_returns)))
            self.logger.record("rollout/ep_learned_rew_mean", float(np.mean(self.learned_returns)))
        return True


class TaskReturnCallback(BaseCallback):
    """Log ``rollout/<task>/ep_rew_mean`` and ``rollout/<task>/ep_len_mean`` on a multi-task env.

    Reads the task name from ``info["task"]`` and the episode's return and length from ``info["episode"]`` (SB3's
    ``Monitor``, which :class:`~sb3_dreamer.transfer.MultiTaskVecEnv` puts below its padding, so returns are each task's
    own). Nothing is logged for envs whose infos carry no task. :class:`~sb3_dreamer.Dreamer` adds this callback
    itself; pass it to ``learn(callback=...)`` of other algorithms.

    :param stats_window_size: episodes averaged per task (default: the model's ``stats_window_size``, 100 in SB3)
    :param verbose: SB3 verbosity
    """

    def __init__(self, stats_window_size: int | None = None, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.stats_window_size = stats_window_size
        self.returns: dict[str, deque[float]] = {}
        self.lengths: dict[str, deque[int]] = {}

    def _on_step(self) -> bool:
        window = self.stats_window_size or getattr(self.model, "_stats_window_size", 100)
        for info in self.locals["infos"]:
            task = info.get(TASK_KEY)
            if task is None or "episode" not in info:
                continue
            self.returns.setdefault(task, deque(maxlen=window)).append(float(info["episode"]["r"]))
            self.lengths.setdefault(task, deque(maxlen=window)).append(int(info["episode"]["l"]))
            self.logger.record(f"rollout/{task}/ep_rew_mean", float(np.mean(self.returns[task])))
            self.logger.record(f"rollout/{task}/ep_len_mean", float(np.mean(self.lengths[task])))
        return True


class LogProgressCallback(BaseCallback):
    """Print ``step N/T (p %), S steps/s, ETA ...`` every ``interval`` seconds and once at the end.

    :meth:`sb3_dreamer.Dreamer.learn` uses it in place of SB3's progress bar when ``progress_bar=True`` and standard
    output is not a terminal (a log file, a pipe, a CI job), where a progress bar shows nothing until the end.

    :param interval: seconds between two lines
    :param stream: where to print (default: ``sys.stdout`` at the time of printing)
    :param verbose: SB3 verbosity
    """

    def __init__(self, interval: float = 10.0, stream: TextIO | None = None, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.interval = interval
        self.stream = stream
        self._start_time = self._last_print = 0.0
        self._last_step = 0
        self._rate = 0.0
        self._total = 0

    def _on_training_start(self) -> None:
        self._start_time = self._last_print = time.monotonic()
        self._last_step = self.num_timesteps
        # learn() has set _total_timesteps to the final count (it includes steps of earlier learn() calls).
        self._total = int(self.model._total_timesteps)

    def _on_step(self) -> bool:
        now = time.monotonic()
        if now - self._last_print >= self.interval:
            self._print(now)
        return True

    def _on_training_end(self) -> None:
        self._print(time.monotonic())

    def _print(self, now: float) -> None:
        # The rate since the last line, not since the start: the first steps (random actions, no updates) are much
        # faster than the rest and would make the ETA far too short.
        if self.num_timesteps > self._last_step:
            self._rate = (self.num_timesteps - self._last_step) / max(now - self._last_print, 1e-9)
        rate = self._rate
        total = max(self._total, self.num_timesteps)
        if total == self.num_timesteps:
            remaining = 0.0
        else:
            remaining = (total - self.num_timesteps) / rate if rate > 0 else float("inf")
        percent = 100.0 * self.num_timesteps / total if total else 100.0
        print(
            f"step {self.num_timesteps}/{total} ({percent:.0f} %), {rate:.1f} steps/s, "
            f"elapsed {_duration(now - self._start_time)}, ETA {_duration(remaining)}",
            file=self.stream or sys.stdout,
            flush=True,
        )
        self._last_print, self._last_step = now, self.num_timesteps


def _duration(seconds: float) -> str:
    """``1h02m``, ``3m05s`` or ``42s``."""
    if not np.isfinite(seconds):
        return "unknown"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
