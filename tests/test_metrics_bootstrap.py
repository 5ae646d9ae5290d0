"""Paired bootstrap CIs: the API the compare report calls."""
from __future__ import annotations

import numpy as np
import pytest

from harness.metrics.bootstrap import paired_bootstrap


def test_lengths_must_match():
    with pytest.raises(ValueError, match="differ in length"):
        paired_bootstrap([1.0, 2.0], [1.0])


def test_rejects_empty_and_nan():
    with pytest.raises(ValueError):
        paired_bootstrap([], [])
    with pytest.raises(ValueError):
        paired_bootstrap([1.0, float("nan")], [1.0, 2.0])


def test_identical_runs_have_no_difference():
    x = [0.1, 0.5, 0.2, 0.9]
    r = paired_bootstrap(x, x)
    assert r == {"diff": 0.0, "lo": 0.0, "hi": 0.0, "n": 4, "p_value": 1.0}


def test_clear_improvement_excludes_zero():
    rng = np.random.default_rng(1)
    base = rng.normal(0.5, 0.1, 200)
    tuned = base + 0.05 + rng.normal(0, 0.02, 200)
    r = paired_bootstrap(base, tuned, n_boot=2000, seed=0)
    assert r["diff"] == pytest.approx(float(np.mean(tuned - base)))
    assert 0 < r["lo"] < r["diff"] < r["hi"]
    assert r["p_value"] < 0.01 and r["n"] == 200


def test_noise_only_ci_covers_zero():
    rng = np.random.default_rng(2)
    base = rng.normal(0.5, 0.1, 100)
    tuned = base + rng.normal(0, 0.05, 100)
    r = paired_bootstrap(base, tuned)
    assert r["lo"] < 0 < r["hi"] and r["p_value"] > 0.05


def test_pairing_matters():
    # a constant +0.01 shift hidden in large between-document variance: paired => significant
    base = np.linspace(0, 10, 50)
    r = paired_bootstrap(base, base + 0.01 + np.tile([0.001, -0.001], 25))
    assert r["lo"] > 0


def test_deterministic_for_a_seed_and_ci_width():
    rng = np.random.default_rng(3)
    a, b = rng.random(60), rng.random(60)
    assert paired_bootstrap(a, b, seed=7) == paired_bootstrap(a, b, seed=7)
    wide, narrow = paired_bootstrap(a, b, ci=0.99), paired_bootstrap(a, b, ci=0.8)
    assert wide["hi"] - wide["lo"] > narrow["hi"] - narrow["lo"]
