"""Ranking metrics of the next-item task: one target among scored candidates.

Ties are broken by candidate position (candidates are stored in a seeded random order), so a
scorer that gives every candidate the same score lands on a random rank, not the best one."""
from __future__ import annotations

import math

CUTOFFS = (1, 5, 10)


def rank_of(scores, label: int) -> int:
    """1-based rank of candidate `label` when sorted by score, high first; ties by position."""
    s = scores[label]
    return 1 + sum(1 for i, x in enumerate(scores) if x > s or (x == s and i < label))


def ranking_metrics(rank: int) -> dict[str, float]:
    out = {f"hit@{k}": float(rank <= k) for k in CUTOFFS}
    out["ndcg@10"] = 1.0 / math.log2(rank + 1) if rank <= 10 else 0.0
    out["mrr"] = 1.0 / rank
    return out


METRICS = tuple(ranking_metrics(1))
