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



def bootstrap_ci(statistic, columns: Sequence[Sequence[float]], n_boot: int = 2000,
                 seed: int = 0, ci: float = 0.95) -> dict:
    """A statistic of per-document columns with a percentile bootstrap CI over documents
    (documents resampled with replacement, as in paired_bootstrap; the columns stay aligned).

    `statistic(*arrays)` reduces over the last axis (the documents): it is called once with
    1-d columns for the value, and once with (n_boot, n) resampled columns, returning n_boot
    values (nan where undefined on a resample: those are skipped). Returns {"value", "lo",
    "hi", "n"}: value/lo/hi None when the statistic is undefined on the data itself; the
    interval is widened to contain the value if a skewed resample distribution misses it."""
    cols = [np.asarray(c, dtype=float) for c in columns]
    if not cols or any(c.shape != cols[0].shape or c.ndim != 1 for c in cols):
        raise ValueError("bootstrap_ci: columns must be 1-d and of equal length")
    if not 0 < ci < 1:
        raise ValueError(f"bootstrap_ci: ci must be in (0, 1), got {ci}")
    n = int(cols[0].size)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = float(statistic(*cols)) if n else float("nan")
        if not np.isfinite(value):
            return {"value": None, "lo": None, "hi": None, "n": n}
        idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
        stats = np.asarray(statistic(*(c[idx] for c in cols)), dtype=float).reshape(-1)
    stats = stats[np.isfinite(stats)]
    if not stats.size:
        return {"value": value, "lo": value, "hi": value, "n": n}
    alpha = (1 - ci) / 2
    lo, hi = np.quantile(stats, [alpha, 1 - alpha])
    return {"value": value, "lo": float(min(lo, value)), "hi": float(max(hi, value)), "n": n}


def mean_ci(values: Sequence[float], n_boot: int = 1000, seed: int = 0,
            ci: float = 0.95) -> tuple[float, float]:
    """(lo, hi) of the mean of `values`, percentile bootstrap over them; nan with fewer than 2."""
    if len(values) < 2:
        return (float("nan"),) * 2
    r = bootstrap_ci(lambda v: v.mean(axis=-1), [values], n_boot=n_boot, seed=seed, ci=ci)
    return r["lo"], r["hi"]
