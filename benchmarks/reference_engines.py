"""The fluency reference LM's engines side by side (harness.backends.reference.ENGINES): the
same real reviews scored by llama.cpp (the GGUF's quantized matmuls) and by transformers on the
dequantized GGUF (bfloat16 on a CPU with AMX, and float32), in one run, each engine loaded once.

Per engine: seconds and scored tokens per second (best of --repeat, engines alternating); the
speed ratio to llama.cpp; against llama.cpp's figures per text: bits-per-byte difference (mean
and largest absolute), end-bits difference, and how many texts land on the other side of the
cut-off flag's threshold (harness.metrics.fluency.CUTOFF_END_BITS).

    .venv/bin/python benchmarks/reference_engines.py [--n 500] [--repeat 1]
        [--reference gemma3-270m] [--engines llama-cpp,torch,torch-float32] [--data DIR]

Writes results/bench/reference_engines.json and prints a table.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.models import set_offline_defaults  # noqa: E402

set_offline_defaults()


def load(spec: str, reference: str):
    from harness.backends.reference import ENGINES, TorchReferenceLM
    if spec.startswith("torch-"):
        return TorchReferenceLM(reference, dtype=spec.split("-", 1)[1])
    return ENGINES[spec](reference)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=500,
                    help="real reviews (at most the validation split's 126)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--reference", default="gemma3-270m")
    ap.add_argument("--engines", default="llama-cpp,torch,torch-float32")
    ap.add_argument("--data", default=None, help="prepared data dir (default: data/prepared)")
    ap.add_argument("--out", default=str(ROOT / "results" / "bench" / "reference_engines.json"))
    args = ap.parse_args()

    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from harness.files import write_json
    from harness.metrics.fluency import CUTOFF_END_BITS
    from harness.tasks.records import read_records

    data = args.data or str(ROOT / "data" / "prepared")
    texts = [(r.get("review") or "").strip()
             for r in read_records("product_review", "validation", data)]
    texts = [t for t in texts if t][:args.n]
    specs = args.engines.split(",")
    lms = {s: load(s, args.reference) for s in specs}
    best: dict[str, dict] = {}
    for rep in range(args.repeat):
        for s in specs:
            t0 = time.perf_counter()
            scores = lms[s].score(texts)
            wall = time.perf_counter() - t0
            if s not in best or wall < best[s]["wall_s"]:
                best[s] = {"wall_s": wall, "scores": scores}
            print(f"[{rep + 1}/{args.repeat}] {s} ({lms[s].engine}): {wall:.1f} s", flush=True)
    n_tokens = sum(x.n_tokens for x in best[specs[0]]["scores"] if x)
    base = best[specs[0]]
    rows = []
    for s in specs:
        b = best[s]
        bpb = np.array([x.bits_per_byte - y.bits_per_byte
                        for x, y in zip(b["scores"], base["scores"]) if x and y])
        ends = [(x.end_bits, y.end_bits) for x, y in zip(b["scores"], base["scores"])
                if x and y and x.end_bits is not None and y.end_bits is not None]
        end = np.array([a - c for a, c in ends])
        rows.append({"engine": s, "name": lms[s].engine, "wall_s": round(b["wall_s"], 2),
                     "tokens_per_s": round(n_tokens / b["wall_s"], 1),
                     "speed_vs_first": round(base["wall_s"] / b["wall_s"], 2),
                     "bpb_diff_mean": float(bpb.mean()), "bpb_diff_max_abs":
                         float(np.abs(bpb).max()), "end_bits_diff_mean": float(end.mean()),
                     "end_bits_diff_max_abs": float(np.abs(end).max()),
                     "cutoff_side_flips": sum((a > CUTOFF_END_BITS) != (c > CUTOFF_END_BITS)
                                              for a, c in ends)})
    out = {"reference": args.reference, "texts": len(texts), "scored_tokens": n_tokens,
           "repeat": args.repeat, "rows": rows, "threads": os.cpu_count(),
           "machine": platform.machine(), "loadavg_1min_after": os.getloadavg()[0]}
    write_json(args.out, out)

    t = Table(title=f"fluency reference {args.reference}: {len(texts)} real reviews, "
                    f"{n_tokens} tokens, best of {args.repeat}; differences to {specs[0]}")
    for c in ("engine", "s", "tok/s", "speed", "bits/byte Δ mean / max", "end bits Δ mean / max",
              f"cut-off side flips (> {CUTOFF_END_BITS:g} bits)"):
        t.add_column(c)
    for r in rows:
        t.add_row(r["name"], f"{r['wall_s']:.1f}", f"{r['tokens_per_s']:.0f}",
                  f"{r['speed_vs_first']:.2f}×",
                  f"{r['bpb_diff_mean']:+.4f} / {r['bpb_diff_max_abs']:.4f}",
                  f"{r['end_bits_diff_mean']:+.3f} / {r['end_bits_diff_max_abs']:.3f}",
                  str(r["cutoff_side_flips"]))
    Console().print(t)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
