"""Check dtaidistance's C ``warping_paths_fast`` against its pure-Python ``warping_paths`` with a Sakoe-Chiba window.

Found 2026-11-26 (dtaidistance 2.5.1): for some (T, R, window) the C matrix differs from the Python one, e.g. T = R = 200
with window 100, the setting of every Pendulum alignment in ``DTWRewardWrapper`` (200-step episodes, default window
100). Aligning a sequence with itself then gives an infinite last cell, the open end picks reference step 198 and the
path leaves the diagonal after step 100. ``sb3_dreamer.alignment.dtw._warping_paths`` works around it (65a16bf);
this script shows the bug in dtaidistance itself.

Run: ``python benchmarks/dtaidistance_window_check.py`` (prints the mismatching settings; ~20 min, the Python
reference is slow at 1000 x 1000).
"""

import dtaidistance
import numpy as np
from dtaidistance import dtw_ndim


def mismatch(target_len: int, reference_len: int, window: int, rng: np.random.Generator) -> bool:
    target, reference = rng.normal(size=(target_len, 2)), rng.normal(size=(reference_len, 2))
    _, python = dtw_ndim.warping_paths(target, reference, window=window, psi_neg=False)
    _, fast = dtw_ndim.warping_paths_fast(target, reference, window=window, psi_neg=False)
    return not np.allclose(np.nan_to_num(python, posinf=1e300), np.nan_to_num(fast, posinf=1e300))


def main() -> None:
    rng = np.random.default_rng(0)
    print(f"dtaidistance {dtaidistance.__version__}")
    same = rng.normal(size=(200, 3))
    _, fast = dtw_ndim.warping_paths_fast(same, same, window=100, psi_neg=False)
    print(f"a 200-step sequence with itself, window 100: C last cell {fast[-1, -1]} (0 expected)")
    for target_len, reference_len in ((60, 60), (100, 100), (200, 200), (200, 150), (150, 200), (100, 180)):
        bad = [w for w in range(1, max(target_len, reference_len) + 2) if mismatch(target_len, reference_len, w, rng)]
        print(f"T={target_len} R={reference_len}: C differs from Python for windows {bad if bad else 'none'}")
    for target_len, reference_len in ((1000, 1000), (1000, 700), (700, 1000)):  # Hopper-sized, a few windows only
        bad = [w for w in (50, 100, 350, 500, 501) if mismatch(target_len, reference_len, w, rng)]
        print(f"T={target_len} R={reference_len}: C differs from Python for windows {bad if bad else 'none'}")


if __name__ == "__main__":
    main()
