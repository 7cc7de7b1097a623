"""The one per-dimension scaling rule shared by the DTW alignment and the reward model.

Both standardise observations as ``(x - mean) / scale`` with ``scale = observation_scale(std, mean)``: the alignment
with the reference statistics (:func:`~sb3_dreamer.alignment.dtw.reference_statistics`), the reward model with its
input statistics (:class:`~sb3_dreamer.alignment.reward_model.RewardModel`), so a dimension gets the same scale in
both. This module imports numpy only.
"""

import numpy as np

#: Absolute threshold: a dimension whose standard deviation is below it is treated as constant.
MIN_STD = 1e-6
#: Relative threshold: a dimension whose standard deviation is below this fraction of ``|mean|`` is treated as constant
#: (float32 round-off of a constant value of magnitude m gives a spread of about 1e-7 m).
RELATIVE_MIN_STD = 1e-5


def observation_scale(std: np.ndarray, mean: np.ndarray | None = None) -> np.ndarray:
    """Per-dimension divisor used to standardise observations: the standard deviation, or 1 for a (near-)constant one.

    Rule: ``scale = std`` where ``std >= max(MIN_STD, RELATIVE_MIN_STD * |mean|)``, else ``scale = 1.0`` (the dimension
    is left in its raw units). A constant dimension therefore never amplifies a small deviation of the target: an
    offset of 0.001 in a dimension that was constant in the reference moves the standardised value by 0.001, where a
    floor such as ``sqrt(var + 1e-8) = 1e-4`` would move it by 10.

    :param std: ``(dim,)`` standard deviations (non-negative)
    :param mean: ``(dim,)`` means, for the relative threshold; None applies the absolute threshold only
    :return: ``(dim,)`` float64 scales, all > 0
    """
    std = np.asarray(std, dtype=np.float64)
    threshold = np.full_like(std, MIN_STD)
    if mean is not None:
        threshold = np.maximum(threshold, RELATIVE_MIN_STD * np.abs(np.asarray(mean, dtype=np.float64)))
    return np.where(std >= threshold, std, 1.0)
