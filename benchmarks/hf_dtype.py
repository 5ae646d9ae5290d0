"""transformers backend in float32 (the default: the GGUF dequantized as it is) against bfloat16
(`--model-args hf:dtype=bfloat16`), side by side in one run: the product_review generation
path (lm-eval's generate_until with the task's generation kwargs, the default batch) on the
same real test prompts. On a CPU with AMX (this machine: amx_bf16 in /proc/cpuinfo) torch runs
bfloat16 matrix products on it; this script measures what that buys in generation, and what
it changes in the texts.

For each model both dtypes are loaded once; the dtypes alternate within each repeat (best wall
time kept), so background load hits both alike. Per dtype: wall seconds for all prompts
(prefill included), generated tokens per second over that wall time; and how many bfloat16
texts differ from the float32 ones, with the median number of leading words they share.

    .venv/bin/python benchmarks/hf_dtype.py [--models smollm2-135m-instruct,gemma3-270m]
        [--prompts 32] [--repeat 1] [--batch 32] [--data PREPARED_DIR]

Writes results/bench/hf_dtype.json and prints a table.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.models import set_offline_defaults  # noqa: E402

set_offline_defaults()
DTYPES = ("float32", "bfloat16")


def shared_words(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a.split(), b.split()):
        if x != y:
            break
        n += 1
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="smollm2-135m-instruct,gemma3-270m")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--batch", type=int, default=None, help="default: the backend's default")
    ap.add_argument("--data", default=None, help="prepared data dir (default: data/prepared)")
    ap.add_argument("--out", default=str(ROOT / "results" / "bench" / "hf_dtype.json"))
    args = ap.parse_args()

    from rich.console import Console
    from rich.table import Table

    from batch_sizes import review_requests, timed_generation   # benchmarks/, beside this
    from harness.backends.decoding import GENERATION_BATCH
    from harness.backends.hf import TimedHFLM
    from harness.files import write_json
    from harness.tasks.records import read_records

    data = args.data or str(ROOT / "data" / "prepared")
    recs = read_records("product_review", "test", data)[:args.prompts]
    batch = args.batch or GENERATION_BATCH["hf"]
    rows = []
    for model in args.models.split(","):
        lms = {d: TimedHFLM(model=model, batch_size=batch, dtype=d) for d in DTYPES}
        reqs = review_requests(lms["float32"], recs)
        best: dict[str, dict] = {}
        for rep in range(args.repeat):
            for d in DTYPES:
                run = timed_generation(lms[d], reqs)
                if d not in best or run["wall_s"] < best[d]["wall_s"]:
                    best[d] = run
                print(f"[{rep + 1}/{args.repeat}] {model} {d}: {run['wall_s']:.1f} s, "
                      f"{run['tokens_per_s']:.1f} tok/s", flush=True)
        f32, b16 = best["float32"]["texts"], best["bfloat16"]["texts"]
        differ = [i for i, (a, b) in enumerate(zip(f32, b16)) if a != b]
        for d in DTYPES:
            rows.append({"model": model, "dtype": d, "batch": batch,
                         "wall_s": round(best[d]["wall_s"], 2),
                         "generated_tokens": best[d]["generated_tokens"],
                         "tokens_per_s": round(best[d]["tokens_per_s"], 2),
                         "texts_differ_from_float32": len(differ) if d != "float32" else 0,
                         "median_shared_leading_words_of_differing": (
                             statistics.median(shared_words(f32[i], b16[i]) for i in differ)
                             if differ and d != "float32" else None),
                         "texts": best[d]["texts"]})
        del lms
    out = {"prompts": len(recs), "batch": batch, "repeat": args.repeat, "rows": rows,
           "threads": os.cpu_count(), "machine": platform.machine(),
           "amx_bf16": "amx_bf16" in Path("/proc/cpuinfo").read_text(errors="ignore")
           if Path("/proc/cpuinfo").exists() else None,
           "loadavg_1min_after": os.getloadavg()[0]}
    write_json(args.out, out)

    t = Table(title=f"transformers float32 vs bfloat16: {len(recs)} real product_review "
                    f"prompts, batch {batch}, best of {args.repeat}")
    for c in ("model", "dtype", "wall s", "tok/s", "texts ≠ float32", "shared leading words"):
        t.add_column(c)
    for r in rows:
        base = next(x for x in rows if x["model"] == r["model"])
        shared = r["median_shared_leading_words_of_differing"]
        t.add_row(r["model"], r["dtype"], f"{r['wall_s']:.1f}",
                  f"{r['tokens_per_s']:.1f} ({r['tokens_per_s'] / base['tokens_per_s']:.2f}×)",
                  f"{r['texts_differ_from_float32']} of {len(recs)}",
                  "" if shared is None else f"median {shared:g}")
    Console().print(t)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
