"""Paired bootstrap for the difference between two runs scored on the same documents."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def paired_bootstrap(base: Sequence[float], tuned: Sequence[float], n_boot: int = 2000,
                     seed: int = 0, ci: float = 0.95) -> dict:
    """Mean of (tuned - base) with a percentile bootstrap CI over documents.

    Returns {"diff", "lo", "hi", "n", "p_value"}; p_value is the two-sided bootstrap p for
    "no difference": twice the share of resampled mean differences on the other side of 0
    (capped at 1; 1/n_boot resolution). Raises ValueError when the lengths differ, a value is
    not finite, or there are no documents."""
    b = np.asarray(base, dtype=float)
    t = np.asarray(tuned, dtype=float)
    if b.shape != t.shape or b.ndim != 1:
        raise ValueError(f"paired_bootstrap: base and tuned differ in length "
                         f"({b.size} vs {t.size}); they must score the same documents")
    if b.size == 0:
        raise ValueError("paired_bootstrap: no documents")
    if not (np.isfinite(b).all() and np.isfinite(t).all()):
        raise ValueError("paired_bootstrap: values must be finite numbers")
    if not 0 < ci < 1:
        raise ValueError(f"paired_bootstrap: ci must be in (0, 1), got {ci}")
    d = t - b
    n = d.size
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    means = d[idx].mean(axis=1)
    alpha = (1 - ci) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    diff = float(d.mean())
    if np.all(d == d[0]):   # no variation: the difference is exact
        p = 1.0 if diff == 0 else 0.0
    else:
        p = float(min(1.0, 2 * min((means <= 0).mean(), (means >= 0).mean())))
    return {"diff": diff, "lo": float(lo), "hi": float(hi), "n": int(n), "p_value": p}
