"""Run-level figures from per-sample metric dicts: the same functions lm-eval uses through
tasks/product_review/utils.py and `harness score` uses directly, so both report one number."""
from __future__ import annotations

import math
from typing import Callable, Iterable


def mean(values: Iterable) -> float | None:
    xs = [float(v) for v in values if isinstance(v, (int, float)) and not
          (isinstance(v, float) and math.isnan(v))]
    return sum(xs) / len(xs) if xs else None


def pooled_hallucination_rate(per_sample_claims: Iterable) -> float:
    """Unsupported (incl. contradicted) claims / claims, pooled over all reviews."""
    n = bad = 0
    for claims in per_sample_claims:
        for c in claims or []:
            n += 1
            bad += c.get("status") != "supported"
    return bad / n if n else 0.0


# metric -> aggregation; anything else numeric: mean. The per-sample value of
# `hallucination_claims` is the claim list; its run figure (here and in lm-eval's results) is
# the pooled hallucination rate, unsupported claims / claims.
AGGREGATIONS: dict[str, Callable] = {"hallucination_claims": pooled_hallucination_rate}


def aggregate(samples: list[dict]) -> dict:
    """{metric: run figure} plus n."""
    keys = sorted({k for s in samples for k in s})
    out = {}
    for k in keys:
        vals = [s[k] for s in samples if k in s]
        fn = AGGREGATIONS.get(k)
        if fn is not None:
            out[k] = fn(vals)
        elif any(isinstance(v, (int, float)) for v in vals):
            out[k] = mean(vals)
    out["n"] = len(samples)
    return out
