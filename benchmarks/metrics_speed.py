"""Scoring speed of the product_review metrics on CPU: N real reviews (default 500) scored the
way `harness score` does (chunks of 64: claims, reference-LM bits per byte, MiniLM
embeddings), model load excluded. Goal: 500 reviews in under 2 minutes.

The texts are real reviews of the prepared data (../shared/data), each cut to its first 70
words (~96 tokens, the generation limit of the task), with their product records.

    .venv/bin/python benchmarks/metrics_speed.py [--n 500] [--reference gemma3-270m]
                                                  [--raw-dir ../shared/data]

Writes results/bench/metrics_speed.json and prints a table. The 1-minute load average is
recorded before and after: other processes on the machine slow every number here down.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness.models import set_offline_defaults  # noqa: E402

set_offline_defaults()

from harness.files import write_json  # noqa: E402
from harness.paths import RESULTS_DIR, SHARED_DATA  # noqa: E402

GOAL_S = 120.0
MAX_WORDS = 70
CHUNK = 64


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--reference", default=None, help="fluency reference LM "
                    "[default: gemma3-270m, the reference when SmolLM2 is under test]")
    ap.add_argument("--raw-dir", type=Path, default=SHARED_DATA)
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "bench" / "metrics_speed.json")
    args = ap.parse_args()

    from rich.console import Console
    from rich.table import Table

    from harness.data.prepare import prepare
    from harness.metrics import SCORERS, score_reviews
    from harness.metrics.catalogue import register_catalogue
    from harness.metrics.config import ScoringConfig, reference_for
    from harness.tasks.records import read_records

    console = Console()
    if not (args.raw_dir / "amazon_in" / "amazon.csv").exists():
        console.print(f"[red]raw data not found at {args.raw_dir}[/]")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        prepare(args.raw_dir, Path(tmp), ["product_review"])
        records = [r for s in ("test", "validation", "train")
                   for r in read_records("product_review", s, tmp)]
    records = records[:args.n]
    texts = [" ".join(r["review"].split()[:MAX_WORDS]) for r in records]
    reference = args.reference or reference_for(None)
    load_before = os.getloadavg()[0]

    t = time.perf_counter()   # model load and catalogue: excluded from the goal
    register_catalogue(records, "benchmark records")
    cfg = ScoringConfig(fluency_reference=reference)
    score_reviews(records[:2], ["Warm up the scorers.", "Once."], cfg)
    load_s = time.perf_counter() - t

    timings = {}
    for name in SCORERS:
        if name == "nli":
            continue
        part = ScoringConfig(fluency_reference=reference, scorers=(name,))
        t = time.perf_counter()
        for i in range(0, len(texts), CHUNK):
            score_reviews(records[i:i + CHUNK], texts[i:i + CHUNK], part)
        timings[name] = time.perf_counter() - t
    t = time.perf_counter()
    out = []
    for i in range(0, len(texts), CHUNK):
        out += score_reviews(records[i:i + CHUNK], texts[i:i + CHUNK], cfg)
    total = time.perf_counter() - t
    load_after = os.getloadavg()[0]

    from harness.backends.reference import reference_lm
    n_tokens = sum(len(reference_lm(reference)._tokens(x)[0]) - 1 for x in texts)
    result = {"n_reviews": len(texts), "reference_lm": reference, "total_s": total,
              "goal_s": GOAL_S, "within_goal": total < GOAL_S, "load_s": load_s,
              "per_scorer_s": timings, "reference_tokens": n_tokens,
              "reference_tokens_per_s": n_tokens / timings["fluency"],
              "reviews_per_s": len(texts) / total, "loadavg_1min_before": load_before,
              "loadavg_1min_after": load_after, "cpus": os.cpu_count(),
              "machine": platform.processor() or platform.machine()}
    write_json(args.out, result)
    tab = Table(title=f"scoring {len(texts)} reviews (reference LM {reference}, "
                      f"load excluded: {load_s:.1f} s)")
    tab.add_column("part")
    tab.add_column("seconds", justify="right")
    for k, v in timings.items():
        tab.add_row(k, f"{v:.1f}")
    tab.add_row("all (one pass)", f"{total:.1f}", style="bold")
    console.print(tab)
    console.print(f"{n_tokens} reference-LM tokens, {result['reference_tokens_per_s']:.0f} tok/s; "
                  f"load average {load_before:.1f} → {load_after:.1f} on {os.cpu_count()} CPUs; "
                  f"goal < {GOAL_S:.0f} s: {'met' if result['within_goal'] else 'NOT met'}"
                  f"\n→ {args.out}", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
