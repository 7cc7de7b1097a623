"""Dynamic-time-warping alignment of a target episode to reference episodes, and per-step labels from the path.

Layout: every sequence is a ``(time, dim)`` array of observations; a path is an ``(L, 2)`` integer array of
``(target_index, reference_index)`` pairs, monotone from ``(0, 0)`` to ``(T - 1, end_index)``.

The dynamic programme itself is dtaidistance's compiled C implementation (``dtw_ndim.warping_paths_fast``); the
backtrack follows ``dtw.best_path`` step for step (same moves, same tie-breaking) in a tighter loop, because the open
end starts it from a column dtaidistance's C path functions cannot be given. This module adds input checks,
normalisation with reference statistics, the open end with respect to the reference, the choice among several
references and the conversion of a path into per-step labels.

This module imports numpy, dtaidistance and :mod:`~sb3_dreamer.alignment.scaling` only (no gymnasium, no torch), so it
can be used on logged data offline.
"""

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
from dtaidistance import dtw, dtw_ndim

from sb3_dreamer.alignment.scaling import observation_scale

#: Label modes whose label is a function of the local alignment cost (they need no source rewards).
TRACKING_MODES = ("tracking", "tracking_exp")


class Alignment(NamedTuple):
    """Result of aligning one target episode to a set of reference episodes.

    :param path: ``(L, 2)`` int64 array of ``(target_index, reference_index)`` pairs, monotone, starting at ``(0, 0)``
        and ending at ``(T - 1, end_index)``
    :param distance: DTW distance of the path: square root of the accumulated squared Euclidean distance between
        normalised observations (dtaidistance's convention)
    :param reference_index: index of the chosen reference episode
    :param end_index: last reference step matched (``len(reference) - 1`` unless the open end chose a prefix)
    """

    path: np.ndarray
    distance: float
    reference_index: int
    end_index: int


class NormalisationStats(NamedTuple):
    """Per-dimension statistics used to normalise observations before alignment.

    :param mean: ``(dim,)`` mean of the reference observations
    :param std: ``(dim,)`` scale: the standard deviation, 1 for (near-)constant dimensions
        (:func:`~sb3_dreamer.alignment.scaling.observation_scale`)
    """

    mean: np.ndarray
    std: np.ndarray


def check_c_library() -> None:
    """Raise ``ImportError`` if dtaidistance's compiled C library is unavailable.

    The pure-Python fallback is 300-650 times slower (methods.md, section F), far too slow for episode-end alignment,
    so this package refuses to run without the C extension instead of silently falling back.

    :raises ImportError: when ``dtaidistance.dtw_cc`` could not be imported
    """
    if getattr(dtw, "dtw_cc", None) is None:
        raise ImportError(
            "dtaidistance's compiled C library (dtaidistance.dtw_cc) is not available. "
            "Reinstall dtaidistance from a binary wheel (pip install --force-reinstall dtaidistance) and run "
            "`from dtaidistance import dtw; dtw.try_import_c(verbose=True)` for the detailed import error."
        )


def validate_sequence(sequence: np.ndarray, name: str, dim: int | None = None) -> np.ndarray:
    """Check an observation sequence and return it as a C-contiguous float64 ``(time, dim)`` array.

    :param sequence: array of shape ``(time, dim)``; a 1-D array is read as ``(time, 1)``
    :param name: name used in error messages
    :param dim: expected feature dimension, if known
    :return: the validated float64 array
    :raises ValueError: on an empty sequence, wrong rank, wrong dimension, or non-finite values
    """
    array = np.asarray(sequence, dtype=np.float64)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise ValueError(f"{name} must be a (time, dim) array, got shape {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"{name} is empty: at least one time step is needed for alignment")
    if dim is not None and array.shape[1] != dim:
        raise ValueError(f"{name} has observation dim {array.shape[1]}, but the reference has dim {dim}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return np.ascontiguousarray(array)


def reference_statistics(references: Sequence[np.ndarray]) -> NormalisationStats:
    """Mean and scale of all reference observations (per dimension).

    The scale is :func:`~sb3_dreamer.alignment.scaling.observation_scale` of the standard deviation, the rule the
    reward model uses too: a (near-)constant dimension gets scale 1, so that a tiny deviation of the target in it does
    not turn into a huge cost.

    :param references: reference episodes, each ``(time, dim)``
    :return: the statistics
    """
    stacked = np.concatenate([validate_sequence(r, f"reference {k}") for k, r in enumerate(references)], axis=0)
    mean = stacked.mean(axis=0)
    return NormalisationStats(mean=mean, std=observation_scale(stacked.std(axis=0), mean))


def normalise(sequence: np.ndarray, stats: NormalisationStats | None) -> np.ndarray:
    """Standardise a sequence with reference statistics (identity when ``stats`` is None).

    :param sequence: ``(time, dim)`` float64 array
    :param stats: statistics from :func:`reference_statistics`
    :return: C-contiguous float64 array, as dtaidistance's C functions require
    """
    if stats is None:
        return np.ascontiguousarray(sequence, dtype=np.float64)
    return np.ascontiguousarray((sequence - stats.mean) / stats.std, dtype=np.float64)


def _c_band_is_wrong(n_rows: int, n_cols: int, window: int) -> bool:
    """Whether dtaidistance's C ``warping_paths`` (2.5.1) miscomputes the windowed matrix of these lengths.

    Its banded loop stores rows in a compact layout of width ``min(n_cols + 1, ldiff + 2 * window + 1)``. When that
    width is capped at ``n_cols + 1`` and some rows are still cut on the left by the band, the rows after the cut read
    their neighbours shifted by one column: for ``n_rows < n_cols`` whenever the cap applies, for ``n_rows >= n_cols``
    when ``ldiff + 2 * window == n_cols`` exactly (e.g. two 200-step sequences with window 100). The condition was
    derived from dtaidistance's ``dtw_wps_parts`` and agrees with a comparison against its pure-Python
    ``warping_paths`` on every length pair up to 21 x 21 and every window up to 24
    (``benchmarks/dtaidistance_window_check.py`` has the larger cases).

    :param n_rows: length of the first sequence
    :param n_cols: length of the second sequence
    :param window: Sakoe-Chiba window, 0 for none
    :return: True when the C result for these lengths must not be used
    """
    if window <= 0:
        return False
    ldiff = abs(n_rows - n_cols)
    window = min(window, max(n_rows, n_cols))
    capped = ldiff + 2 * window >= n_cols
    left_cut = window + max(0, n_rows - n_cols) < n_rows
    return capped and left_cut and (n_rows < n_cols or ldiff + 2 * window == n_cols)


def _warping_paths(target: np.ndarray, reference: np.ndarray, window: int | None) -> np.ndarray:
    """Accumulated-cost matrix of dtaidistance (C), shape ``(T + 1, R + 1)``, row and column 0 are padding.

    No ``psi`` relaxation is passed: the open end only changes which cell of the last row ends the path
    (:func:`_end_cost`), not the matrix (methods.md, section F).

    Works around a bug of dtaidistance 2.5.1's C implementation for some windowed length pairs
    (:func:`_c_band_is_wrong`) with two exact rewrites of the same dynamic programme: the matrix of the swapped pair
    is the transpose (the band ``-window - max(0, T - R) < j - i < window + max(0, R - T)`` is symmetric under the
    swap), and appending one step to both sequences leaves every cell of the original matrix unchanged (a cell
    depends only on cells above and left of it; the band keeps its shape because the length difference does).
    """
    window = window or 0
    n_target, n_reference = len(target), len(reference)
    if not _c_band_is_wrong(n_target, n_reference, window):
        return dtw_ndim.warping_paths_fast(target, reference, window=window, psi_neg=False)[1]
    if not _c_band_is_wrong(n_reference, n_target, window):
        return dtw_ndim.warping_paths_fast(reference, target, window=window, psi_neg=False)[1].T
    # Only T == R == 2 * window reaches this point; T + 1 == R + 1 is unaffected.
    target_padded = np.ascontiguousarray(np.concatenate([target, target[-1:]]))
    reference_padded = np.ascontiguousarray(np.concatenate([reference, reference[-1:]]))
    wps = dtw_ndim.warping_paths_fast(target_padded, reference_padded, window=window, psi_neg=False)[1]
    return wps[: n_target + 1, : n_reference + 1]


def best_path(wps: np.ndarray, row: int, col: int) -> np.ndarray:
    """Optimal warping path ending at ``wps[row, col]``: the backtrack of dtaidistance's ``dtw.best_path``.

    From ``(row, col)`` it moves to the smallest of the diagonal, upper and left neighbours, preferring them in that
    order on ties (``np.argmin`` order), until row or column 0 (the padding) is reached. Identical output to
    ``dtw.best_path(wps, row=row, col=col)`` for matrices without its ``-1`` markers (``psi_neg=False``), ~5x faster
    on a 1000 x 1000 matrix (it reads scalars with ``ndarray.item`` instead of calling ``np.argmin`` per step).

    :param wps: accumulated-cost matrix from ``warping_paths_fast``, row and column 0 are padding
    :param row: last row of the path in ``wps`` coordinates (``T`` for the whole target)
    :param col: last column of the path in ``wps`` coordinates (end index + 1)
    :return: ``(L, 2)`` int64 array of ``(target_index, reference_index)`` pairs from ``(0, 0)`` on
    """
    item = wps.item
    i, j = row, col
    path = [(i - 1, j - 1)]
    while i > 0 and j > 0:
        diagonal, up, left = item(i - 1, j - 1), item(i - 1, j), item(i, j - 1)
        if diagonal <= up and diagonal <= left:
            i, j = i - 1, j - 1
        elif up <= left:
            i -= 1
        else:
            j -= 1
        path.append((i - 1, j - 1))
    path.pop()
    path.reverse()
    return np.asarray(path, dtype=np.int64).reshape(-1, 2)


def _end_cost(wps: np.ndarray, open_end: bool) -> tuple[float, int]:
    """Best accumulated cost in the last row (open end) or the last cell, and its reference index."""
    end = int(np.argmin(wps[-1, 1:])) if open_end else wps.shape[1] - 2
    return float(wps[-1, end + 1]), end


def align(
    target: np.ndarray,
    references: Sequence[np.ndarray],
    window: int | None = None,
    open_end: bool = True,
    stats: NormalisationStats | None = None,
    coarse_stride: int = 1,
) -> Alignment:
    """Align a target episode to the best of several reference episodes with dependent multi-dimensional DTW.

    Local cost: squared Euclidean distance between normalised observations; steps (i-1, j-1), (i-1, j), (i, j-1);
    both sequences start together. With ``open_end`` the target may end anywhere in the reference (it may match a
    reference *prefix*, e.g. a shorter or failed episode), following open-end DTW (Tormene et al., 2009): the path ends
    at the smallest cell of the last row. The reference with the smallest distance is chosen, as OTR chooses the best
    of K demonstrations (Luo et al., ICLR 2023).

    :param target: target episode, ``(T, dim)``
    :param references: reference episodes, each ``(R_k, dim)``
    :param window: Sakoe-Chiba band in dtaidistance's convention: target step i may match reference step j when
        ``-window - max(0, T - R) < j - i < window + max(0, R - T)`` (the band widens by the length difference towards
        the longer sequence); None or 0 for no band. The band must be wide enough for the expected time warp (e.g. an
        action-repeat ratio k needs about ``(1 - 1/k) * T``), otherwise the best path is cut off.
    :param open_end: let the target end at any reference step instead of the last one
    :param stats: normalisation statistics (usually :func:`reference_statistics` of the references); None: raw values
    :param coarse_stride: with several references, rank them first by DTW on every ``coarse_stride``-th step (window
        scaled alike) and run the full-resolution alignment on the best-ranked one only, in the spirit of FastDTW's
        coarse pass (Salvador and Chan, 2007): about ``coarse_stride**2`` times cheaper per reference, but the choice
        may differ from the exact one when references are close. 1 (default) ranks at full resolution.
    :return: the alignment to the best reference
    :raises ValueError: on empty, non-finite or dimension-mismatched inputs, or if no path fits in the band
    """
    check_c_library()
    if len(references) == 0:
        raise ValueError("at least one reference episode is needed for alignment")
    if window is not None and window < 0:
        raise ValueError(f"window must be None or a non-negative int, got {window}")
    if coarse_stride < 1:
        raise ValueError(f"coarse_stride must be >= 1, got {coarse_stride}")
    dim = validate_sequence(references[0], "reference 0").shape[1]
    target_n = normalise(validate_sequence(target, "target", dim), stats)
    references_n = [normalise(validate_sequence(r, f"reference {k}", dim), stats) for k, r in enumerate(references)]
    candidates = list(range(len(references_n)))
    if coarse_stride > 1 and len(candidates) > 1:
        coarse_window = None if not window else -(-window // coarse_stride)
        coarse_target = np.ascontiguousarray(target_n[::coarse_stride])
        coarse_costs = [
            _end_cost(_warping_paths(coarse_target, np.ascontiguousarray(r[::coarse_stride]), coarse_window), open_end)[0]
            for r in references_n
        ]
        if np.isfinite(np.min(coarse_costs)):
            candidates = [int(np.argmin(coarse_costs))]
    best: tuple[float, int, int, np.ndarray] | None = None
    for k in candidates:
        wps = _warping_paths(target_n, references_n[k], window)
        distance, end = _end_cost(wps, open_end)
        if np.isfinite(distance) and (best is None or distance < best[0]):
            best = (distance, k, end, wps)
    if best is None:
        raise ValueError(f"no warping path fits in the Sakoe-Chiba band (window={window}); use a wider window or None")
    distance, k, end, wps = best
    path = best_path(wps, row=wps.shape[0] - 1, col=end + 1)
    return Alignment(path=path, distance=distance, reference_index=k, end_index=end)


def _check_path(path: np.ndarray, n_target: int) -> tuple[np.ndarray, np.ndarray]:
    path = np.asarray(path, dtype=np.int64)
    if path.ndim != 2 or path.shape[1] != 2 or path.shape[0] == 0:
        raise ValueError(f"path must be a non-empty (L, 2) array, got shape {path.shape}")
    rows, cols = path[:, 0], path[:, 1]
    if rows.min() < 0 or cols.min() < 0:
        raise ValueError("path contains negative indices")
    if rows.max() >= n_target or np.any(np.bincount(rows, minlength=n_target) == 0):
        raise ValueError(f"path must cover every target step 0..{n_target - 1} and no other")
    return rows, cols


def source_reward_labels(path: np.ndarray, n_target: int, source_rewards: np.ndarray) -> np.ndarray:
    """Reward of the aligned source step; the mean when a target step is matched to several source steps.

    r_tgt[i] = mean{ r_src[j] : (i, j) in path }. A target step matched to k source steps receives their mean, so a
    fast target (one target step for k source steps) gets a per-step reward on the source's per-step scale.

    :param path: ``(L, 2)`` alignment path
    :param n_target: number of target steps T
    :param source_rewards: rewards of the aligned reference episode, ``(R,)``
    :return: ``(T,)`` float64 labels
    """
    rows, cols = _check_path(path, n_target)
    rewards = np.asarray(source_rewards, dtype=np.float64)
    if cols.max() >= len(rewards):
        raise ValueError(f"path reaches reference step {cols.max()}, but only {len(rewards)} source rewards were given")
    sums = np.bincount(rows, weights=rewards[cols], minlength=n_target)
    return sums / np.bincount(rows, minlength=n_target)


def source_reward_split_labels(path: np.ndarray, n_target: int, source_rewards: np.ndarray) -> np.ndarray:
    """Telepath reward redistribution: each source step's reward is divided among the target steps matched to it.

    r_tgt[i] = sum_j r_src[j] * 1[(i, j) in path] / #{i' : (i', j) in path}
    (TroddenSpade/Telepath ``modules/cem.py``, methods.md section C step 3). The total over the matched source segment
    ``r_src[0 .. end_index]`` is preserved; e.g. one source step aligned to two target steps gives each half.

    :param path: ``(L, 2)`` alignment path
    :param n_target: number of target steps T
    :param source_rewards: rewards of the aligned reference episode, ``(R,)``
    :return: ``(T,)`` float64 labels
    """
    rows, cols = _check_path(path, n_target)
    rewards = np.asarray(source_rewards, dtype=np.float64)
    if cols.max() >= len(rewards):
        raise ValueError(f"path reaches reference step {cols.max()}, but only {len(rewards)} source rewards were given")
    column_counts = np.bincount(cols, minlength=len(rewards))
    return np.bincount(rows, weights=rewards[cols] / column_counts[cols], minlength=n_target)


def tracking_labels(path: np.ndarray, target: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Negative local alignment cost of each target step.

    r_tgt[i] = -mean{ ||x_i - y_j||^2 : (i, j) in path }, with x, y the *normalised* target and reference observations,
    i.e. the DTW reward of portal-cornell/orca ``seq_matching/baselines.py`` (methods.md, section C1). Always <= 0;
    0 means the target step lies exactly on the reference.

    :param path: ``(L, 2)`` alignment path
    :param target: normalised target episode, ``(T, dim)``
    :param reference: normalised reference episode, ``(R, dim)``
    :return: ``(T,)`` float64 labels
    """
    n_target = len(target)
    rows, cols = _check_path(path, n_target)
    costs = np.sum((np.asarray(target, np.float64)[rows] - np.asarray(reference, np.float64)[cols]) ** 2, axis=1)
    return -np.bincount(rows, weights=costs, minlength=n_target) / np.bincount(rows, minlength=n_target)


def tracking_exp_labels(path: np.ndarray, target: np.ndarray, reference: np.ndarray, cost_scale: float) -> np.ndarray:
    """Positive, bounded tracking labels: r_tgt[i] = exp(-c_i / cost_scale), c_i the cost of :func:`tracking_labels`.

    The exponential squashing of alignment-based imitation rewards (PWIL, Dadashi et al., ICLR 2021,
    r = alpha·exp(-beta·c); OTR, Luo et al., ICLR 2023, r = alpha·exp(beta·r_OT); methods.md, section C1) with
    alpha = 1 and beta = 1 / ``cost_scale``.
    Labels lie in (0, 1], 1 on the reference. Unlike the negative cost, a positive reward never makes ending an episode
    early (falling, in locomotion) the better choice.

    :param path: ``(L, 2)`` alignment path
    :param target: normalised target episode, ``(T, dim)``
    :param reference: normalised reference episode, ``(R, dim)``
    :param cost_scale: cost at which the label is 1/e, > 0
    :return: ``(T,)`` float64 labels
    """
    if not cost_scale > 0:
        raise ValueError(f"cost_scale must be > 0, got {cost_scale}")
    return np.exp(tracking_labels(path, target, reference) / cost_scale)


def label_episode(
    target: np.ndarray,
    references: Sequence[np.ndarray],
    reference_rewards: Sequence[np.ndarray] | None,
    mode: str = "source_reward",
    window: int | None = None,
    open_end: bool = True,
    stats: NormalisationStats | None = None,
    coarse_stride: int = 1,
    cost_scale: float = 1.0,
) -> tuple[np.ndarray, Alignment]:
    """Align a target episode and turn the path into one label per target step.

    :param target: target episode, ``(T, dim)``
    :param references: reference episodes, each ``(R_k, dim)``
    :param reference_rewards: rewards of each reference episode (needed by the ``source_reward*`` modes)
    :param mode: one of :data:`LABEL_MODES` (see the label functions)
    :param window: Sakoe-Chiba band, see :func:`align`
    :param open_end: see :func:`align`
    :param stats: normalisation statistics, see :func:`align`
    :param coarse_stride: reference pre-selection stride, see :func:`align`
    :param cost_scale: ``"tracking_exp"`` only, see :func:`tracking_exp_labels`
    :return: ``(labels (T,), alignment)``
    """
    if mode not in LABEL_MODES:
        raise ValueError(f"unknown label mode {mode!r}, expected one of {LABEL_MODES}")
    if mode not in TRACKING_MODES and reference_rewards is None:
        raise ValueError(f"label mode {mode!r} needs reference rewards")
    alignment = align(target, references, window=window, open_end=open_end, stats=stats, coarse_stride=coarse_stride)
    target_n = normalise(np.asarray(target, np.float64), stats)
    reference_n = normalise(np.asarray(references[alignment.reference_index], np.float64), stats)
    rewards = None if reference_rewards is None else reference_rewards[alignment.reference_index]
    return LABELLERS[mode](alignment.path, target_n, reference_n, rewards, cost_scale), alignment


#: The label modes, in one table: mode -> ``labeller(path, target, reference, reference_rewards, cost_scale)`` on the
#: normalised target and reference episodes (``reference_rewards`` None for the tracking modes).
LABELLERS: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray, Any, float], np.ndarray]] = {
    "source_reward": lambda path, target, reference, rewards, scale: source_reward_labels(path, len(target), rewards),
    "source_reward_split": lambda path, target, reference, rewards, scale: source_reward_split_labels(
        path, len(target), rewards
    ),
    "tracking": lambda path, target, reference, rewards, scale: tracking_labels(path, target, reference),
    "tracking_exp": lambda path, target, reference, rewards, scale: tracking_exp_labels(path, target, reference, scale),
}
#: Label modes (see :data:`LABELLERS` and the label functions).
LABEL_MODES = tuple(LABELLERS)
