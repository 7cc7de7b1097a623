"""Wall-clock time per phase of a loop, for the ``train/time_<phase>`` metrics and ``benchmarks/speed.py``."""

from __future__ import annotations

import time


class PhaseTimer:
    """Accumulate the time between consecutive :meth:`lap` calls under the name of the phase that just ended.

    ``timer.lap("replay")`` after sampling, ``timer.lap("world_model")`` after the world-model step, and so on: each
    call charges the time since the previous call (or since :meth:`restart`) to the given phase. On a CPU every op has
    finished when it returns, so these are the phases' real costs (on a GPU they would need synchronising).
    """

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self._last = time.perf_counter()

    def restart(self) -> None:
        """Start timing the next phase from now (time since the last lap is charged to no phase)."""
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        """Charge the time since the last lap to ``phase``.

        :param phase: name of the phase that just ended
        """
        now = time.perf_counter()
        self.totals[phase] = self.totals.get(phase, 0.0) + now - self._last
        self._last = now
