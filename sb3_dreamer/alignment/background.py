"""A :class:`~sb3_dreamer.alignment.rewarder.DTWRewarder` whose episode-end work runs in a worker process.

The stepping process keeps only the per-step reward (:class:`~sb3_dreamer.alignment.reward_model.Predictor`, a numpy
copy of the reward model); alignment, labelling and refits (methods.md, section C1) run in a worker process that holds
the ``DTWRewarder``. They cannot run in a thread of the stepping process: dtaidistance's compiled DTW holds the GIL,
and so does most of a small torch refit.

Timing, fixed so that runs are reproducible (independent of how fast the worker is): the episode that ends at episode
end ``k`` is sent to the worker; its result (labels stored, refit, new predictor) is applied at episode end ``k + 1``,
waiting for the worker if it is not done. Rewards therefore use the model of one refit later than the in-process
rewarder does, and the report returned by :meth:`BackgroundRewarder.end_episode` (and the wrappers' episode-end
``info``) describes the *previous* episode (``EpisodeReport.episode`` names it). The cost is not removed, it moves to
another core: the worker's CPU seconds are in :attr:`BackgroundRewarder.worker_seconds`.

The worker is started with the ``spawn`` method (safe with torch's threads), so a script that builds the wrapper must
guard its entry point with ``if __name__ == "__main__":``; it uses one torch thread (its results equal the in-process
rewarder's bit for bit when that one runs with one thread too) and stops with :meth:`close`, when the rewarder is
garbage-collected, or when this process exits.
"""

import builtins
import multiprocessing
import os
import signal
import time
import traceback
import warnings
import weakref
from collections import deque
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from sb3_dreamer.alignment.dataset import TrajectoryDataset
from sb3_dreamer.alignment.dtw import validate_sequence
from sb3_dreamer.alignment.reward_model import FitResult, Predictor
from sb3_dreamer.alignment.rewarder import (
    DTWRewarder,
    EpisodeReport,
    check_episode_finite,
    load_reference,
    reference_fingerprint,
)

#: Settings of the worker's ``DTWRewarder`` mirrored on :class:`BackgroundRewarder` (read-only there).
MIRRORED = (
    "label_mode",
    "window",
    "open_end",
    "coarse_stride",
    "refit_steps",
    "refit_budget_seconds",
    "refit_interval",
    "max_label_data",
    "max_label_cost",
    "anchor_reference",
    "dtw_labels",
    "cost_scale",
    "strict",
)
_PREFIX = "background."
_STARTUP_SECONDS = 300.0


def _serve(conn: Connection, reference: TrajectoryDataset, kwargs: dict[str, Any]) -> None:
    """Worker loop: build the rewarder, then answer ``episode``, ``get_state``, ``set_state`` and ``close`` messages."""
    import torch as th

    # Ctrl-C reaches the whole process group: the parent handles it and stops the worker (no second traceback here).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    th.set_num_threads(1)
    try:
        rewarder = DTWRewarder(reference, **kwargs)
        settings = {name: getattr(rewarder, name) for name in MIRRORED}
        conn.send(("ok", (rewarder.model.predictor, settings)))
    except Exception as error:  # reported to the parent, which raises it
        conn.send(("error", (type(error).__name__, str(error), traceback.format_exc())))
        return
    while True:
        try:
            kind, payload = conn.recv()
        except EOFError:  # the parent is gone
            return
        if kind == "close":
            return
        cpu_start = time.process_time()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                if kind == "episode":
                    report = rewarder.end_episode(payload)
                    predictor = rewarder.model.predictor if report is not None and report.fit is not None else None
                    answer: Any = (report, predictor, rewarder.n_labels)
                elif kind == "get_state":
                    answer = rewarder.get_state()
                else:  # set_state
                    rewarder.set_state(payload)
                    answer = (rewarder.model.predictor, rewarder.n_labels)
            messages = [(str(w.message), w.category.__name__) for w in caught]
            conn.send(("ok", (answer, messages, time.process_time() - cpu_start)))
        except Exception as error:
            conn.send(("error", (type(error).__name__, str(error), traceback.format_exc())))


def _shutdown(conn: Connection, process: multiprocessing.process.BaseProcess) -> None:
    try:
        conn.send(("close", None))
    except (OSError, ValueError):
        pass
    process.join(timeout=5)
    if process.is_alive():
        process.terminate()
    conn.close()


class BackgroundRewarder:
    """:class:`DTWRewarder` with alignment, labels and refits in a worker process (see the module docstring).

    Same interface as :class:`DTWRewarder` for the wrappers (``predict``, ``end_episode``, ``get_state``,
    ``set_state``, counters and settings); states are interchangeable with it. Pass ``background=True`` to
    :class:`~sb3_dreamer.alignment.DTWRewardWrapper` or :class:`~sb3_dreamer.alignment.VecDTWRewardWrapper`.

    :param reference: reference episodes (dataset or ``.npz`` path)
    :param rewarder_kwargs: the settings of :class:`DTWRewarder`, documented there
    :raises ValueError: (or the worker's error type) if the worker cannot build the rewarder from these settings
    """

    def __init__(self, reference: "TrajectoryDataset | str | os.PathLike", **rewarder_kwargs: Any) -> None:
        if multiprocessing.current_process().daemon:
            raise ValueError(
                "background=True starts a worker process, which a daemonic process (e.g. a SubprocVecEnv worker) cannot "
                "do: wrap the VecEnv with VecDTWRewardWrapper(venv, reference, background=True) instead, or pass "
                "background=False"
            )
        self.reference = load_reference(reference)
        self.reference_fingerprint = reference_fingerprint(self.reference)
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(child, self.reference, rewarder_kwargs), daemon=True, name="sb3_dreamer-dtw-rewarder"
        )
        self._process.start()
        child.close()
        self._finalizer = weakref.finalize(self, _shutdown, self._conn, self._process)
        self.predictor: Predictor
        self.predictor, settings = self._receive(timeout=_STARTUP_SECONDS)
        for name, value in settings.items():
            setattr(self, name, value)
        # Counters as DTWRewarder's: episodes sent and skipped are counted here, refits and labels when applied.
        self.n_episodes = self.skipped_episodes = self.n_refits = self.n_truncated_refits = self.n_labels = 0
        #: CPU seconds the worker spent on episodes, states and their messages (not the startup)
        self.worker_seconds = 0.0
        self._in_flight: deque[int] = deque()  # episode indices sent, whose answer is not received yet
        self._received: tuple[int, Any] | None = None  # (episode index, answer) received, not applied yet

    @property
    def obs_dim(self) -> int:
        """Observation dimension of the reference."""
        return self.reference.obs_dim

    def _receive(self, timeout: float | None = None) -> Any:
        if not self._conn.poll(timeout):
            raise RuntimeError(f"the DTW rewarder worker did not answer within {timeout} s")
        try:
            status, payload = self._conn.recv()
        except EOFError:
            raise RuntimeError(f"the DTW rewarder worker process stopped (exit code {self._process.exitcode})") from None
        if status == "error":
            name, message, trace = payload
            error_type = {"ValueError": ValueError, "TypeError": TypeError}.get(name)
            if error_type is not None:
                raise error_type(message)
            raise RuntimeError(f"the DTW rewarder worker failed:\n{trace}")
        return payload

    def _request(self, kind: str, payload: Any) -> Any:
        self.wait()
        self._conn.send((kind, payload))
        answer, messages, seconds = self._receive()
        self.worker_seconds += seconds
        self._warn(messages)
        return answer

    def wait(self) -> None:
        """Wait for the worker to finish the episode in flight and receive its answer; it is applied at the next
        episode end as usual (so calling this changes no result; the benchmarks use it to count the worker's time)."""
        while self._in_flight:
            episode = self._in_flight.popleft()
            answer, messages, seconds = self._receive()
            self.worker_seconds += seconds
            self._warn(messages)
            self._received = (episode, answer)

    @staticmethod
    def _warn(messages: list[tuple[str, str]]) -> None:
        for message, category in messages:
            warnings.warn(f"DTW rewarder worker: {message}", getattr(builtins, category, UserWarning), stacklevel=4)

    def _apply(self) -> EpisodeReport | None:
        """Apply the received answer of the previous episode: predictor, counters; return its report."""
        self.wait()
        if self._received is None:
            return None
        episode, (report, predictor, n_labels) = self._received
        self._received = None
        self.n_labels = n_labels
        if predictor is not None:
            self.predictor = predictor
            self.n_refits += 1
            self.n_truncated_refits += bool(report.fit.truncated)
        return report._replace(episode=episode)

    def predict(self, obs: np.ndarray) -> np.ndarray:
        """Learned reward of observations returned by ``step`` (:meth:`DTWRewarder.predict`), with the model of the
        last applied result."""
        return self.predictor.predict(obs)

    non_finite_observation = DTWRewarder.non_finite_observation

    def skip_episode(self) -> None:
        """Count a finished episode whose labels are skipped (it had a non-finite observation); nothing is sent."""
        self.skipped_episodes += 1

    def end_episode(self, observations: np.ndarray) -> EpisodeReport | None:
        """Send a finished episode to the worker and apply the previous episode's result.

        Checks are made here, before sending: a malformed sequence raises, a non-finite episode follows the
        ``strict`` policy of :meth:`DTWRewarder.end_episode` (skipped: the pending result stays pending).

        :param observations: ``(T, obs_dim)`` observations returned by the episode's steps
        :return: the report of the previous episode sent (``episode`` names it), None if there is none
        """
        array = np.asarray(observations, dtype=np.float64)
        index = self.n_episodes + self.skipped_episodes
        if not check_episode_finite(array, index, self.strict):
            self.skip_episode()
            return None
        obs = validate_sequence(array, "episode observations", self.obs_dim).astype(np.float32)
        report = self._apply()
        self._conn.send(("episode", obs))
        self._in_flight.append(index)
        self.n_episodes += 1
        return report

    def get_state(self) -> dict[str, np.ndarray]:
        """The worker's :meth:`DTWRewarder.get_state` (with the episode in flight processed), plus the predictor in use
        and the result not yet applied, so that a restored run continues exactly.

        :return: flat dict of arrays
        """
        state = self._request("get_state", None)
        state["skipped_episodes"] = np.asarray(self.skipped_episodes, dtype=np.int64)  # counted here, never sent
        for key, value in self.predictor.arrays().items():
            state[f"{_PREFIX}predictor.{key}"] = value
        state[f"{_PREFIX}applied"] = np.asarray([self.n_refits, self.n_truncated_refits, self.n_labels], dtype=np.int64)
        if self._received is not None:
            episode, (report, predictor, n_labels) = self._received
            fit = report.fit
            state[f"{_PREFIX}pending"] = np.asarray(
                [episode, n_labels, fit is not None, fit is not None and fit.truncated], dtype=np.int64
            )
            if predictor is not None:
                for key, value in predictor.arrays().items():
                    state[f"{_PREFIX}pending_predictor.{key}"] = value
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore a state of :meth:`get_state` or of :meth:`DTWRewarder.get_state` (then the worker's model is used
        from the next step on and nothing is pending).

        :param state: dict of arrays
        :raises ValueError: as :meth:`DTWRewarder.set_state`
        """
        worker_state = {key: value for key, value in state.items() if not key.startswith(_PREFIX)}
        predictor, n_labels = self._request("set_state", worker_state)
        self._received = None
        counters = np.asarray(worker_state["counters"]).tolist()
        self.n_episodes = int(counters[1])
        self.skipped_episodes = int(state.get("skipped_episodes", 0))
        self.n_refits, self.n_truncated_refits, self.n_labels = int(counters[2]), int(counters[3]), n_labels
        if f"{_PREFIX}applied" not in state:
            self.predictor = predictor
            return
        self.predictor = Predictor.from_arrays(_sub(state, f"{_PREFIX}predictor."))
        self.n_refits, self.n_truncated_refits, self.n_labels = (int(v) for v in state[f"{_PREFIX}applied"])
        if f"{_PREFIX}pending" in state:
            episode, pending_labels, refitted, truncated = (int(v) for v in state[f"{_PREFIX}pending"])
            pending = Predictor.from_arrays(_sub(state, f"{_PREFIX}pending_predictor.")) if refitted else None
            # The pending episode's labels and alignment are not saved: its report after a restore carries no alignment.
            fit = FitResult(0, float("nan"), 0.0, bool(truncated)) if refitted else None  # only ``truncated`` is kept
            self._received = (episode, (EpisodeReport(np.zeros(0), None, fit, np.zeros(0, bool)), pending, pending_labels))

    def close(self) -> None:
        """Stop the worker process (idempotent)."""
        self._finalizer()


def _sub(state: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
