"""Generation batch size per backend, measured: the product_review generation path (lm-eval's
generate_until with the task's generation kwargs: greedy, 96 tokens, stop strings, the
anti-loop rule) on the same real test prompts at several batch sizes, in one run. Issue #12 asks
that the default batch (harness.backends.decoding.GENERATION_BATCH) be what measures best here.

For each backend and model one model is loaded; the sizes alternate within each repeat (best
wall time kept), so background load hits every size alike. Per size: wall seconds for all
prompts (prefill included), generated tokens per second over that wall time, and how many
texts differ from those of the first size (llama.cpp: should be 0 where batched and
one-at-a-time kernels agree, README; transformers: fp32 ties under left padding may flip).

    .venv/bin/python benchmarks/batch_sizes.py [--backends llama-cpp,hf]
        [--models smollm2-135m-instruct,gemma3-270m] [--sizes 8,16,32] [--prompts 32]
        [--repeat 1] [--data PREPARED_DIR]

Writes results/bench/batch_sizes.json and prints a table.
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


def load(backend: str, model: str, size: int):
    if backend == "llama-cpp":
        from harness.backends.llama_cpp import LlamaCppLM
        return LlamaCppLM(model=model, batch_size=size)
    from harness.backends.hf import TimedHFLM
    return TimedHFLM(model=model, batch_size=size)


def set_batch(lm, size: int) -> None:
    if hasattr(lm, "batch_size_per_gpu"):     # HFLM
        lm.batch_size_per_gpu = size
    else:                                      # LlamaCppLM: a new BatchDecoder of that size
        lm.batch_size, lm._batcher = size, None


def review_requests(lm, recs: list[dict]) -> list:
    """lm-eval generate_until requests for the records' product_review prompts, with the task's
    generation kwargs, in the model's own prompt format."""
    from lm_eval.api.instance import Instance

    from harness.export.generate import review_context, task_generation_kwargs
    from harness.tasks.review import review_example

    kwargs = {k: v for k, v in task_generation_kwargs().items() if v is not None}
    return [Instance("generate_until", {}, (review_context(lm, review_example(r)[0]),
                                            dict(kwargs)), i) for i, r in enumerate(recs)]


def timed_generation(lm, reqs: list) -> dict:
    """One generate_until pass: wall seconds (prefill included), generated tokens, tokens per
    wall second and the texts."""
    from harness.backends.throughput import METER

    METER.reset()
    t0 = time.perf_counter()
    texts = lm.generate_until(reqs, disable_tqdm=True)
    wall = time.perf_counter() - t0
    n = METER.summary()["generated_tokens"]
    return {"wall_s": wall, "generated_tokens": n, "tokens_per_s": n / wall, "texts": texts}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default="llama-cpp,hf")
    ap.add_argument("--models", default="smollm2-135m-instruct,gemma3-270m")
    ap.add_argument("--sizes", default="8,16,32")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--data", default=None, help="prepared data dir (default: data/prepared)")
    ap.add_argument("--out", default=str(ROOT / "results" / "bench" / "batch_sizes.json"))
    args = ap.parse_args()

    from rich.console import Console
    from rich.table import Table

    from harness.backends.decoding import GENERATION_BATCH
    from harness.files import write_json
    from harness.tasks.records import read_records

    data = args.data or str(ROOT / "data" / "prepared")
    recs = read_records("product_review", "test", data)[:args.prompts]
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for backend in args.backends.split(","):
        for model in args.models.split(","):
            lm = load(backend, model, sizes[0])
            reqs = review_requests(lm, recs)
            best: dict[int, dict] = {}
            for rep in range(args.repeat):
                for size in sizes:
                    set_batch(lm, size)
                    run = timed_generation(lm, reqs)
                    if size not in best or run["wall_s"] < best[size]["wall_s"]:
                        best[size] = run
                    print(f"[{rep + 1}/{args.repeat}] {backend} {model} batch {size}: "
                          f"{run['wall_s']:.1f} s, {run['tokens_per_s']:.1f} tok/s", flush=True)
            first = best[sizes[0]]["texts"]
            for size in sizes:
                b = best[size]
                rows.append({"backend": backend, "model": model, "batch": size,
                             "default": size == GENERATION_BATCH.get(backend, 1),
                             "wall_s": round(b["wall_s"], 2),
                             "generated_tokens": b["generated_tokens"],
                             "tokens_per_s": round(b["tokens_per_s"], 2),
                             "texts_differ_from_first_size": sum(
                                 a != c for a, c in zip(first, b["texts"]))})
            del lm
    out = {"prompts": len(recs), "sizes": sizes, "repeat": args.repeat, "rows": rows,
           "threads": os.cpu_count(), "machine": platform.machine(),
           "loadavg_1min_after": os.getloadavg()[0]}
    write_json(args.out, out)

    t = Table(title=f"generation batch sizes: {len(recs)} real product_review prompts, "
                    f"best of {args.repeat}; ratios to batch {sizes[0]}")
    for c in ("backend", "model", "batch", "wall s", "tok/s", f"texts ≠ batch {sizes[0]}"):
        t.add_column(c)
    for r in rows:
        base = next(x for x in rows if x["backend"] == r["backend"] and x["model"] == r["model"])
        t.add_row(r["backend"], r["model"], f"{r['batch']}{' (default)' if r['default'] else ''}",
                  f"{r['wall_s']:.1f}", f"{r['tokens_per_s']:.1f} "
                  f"({r['tokens_per_s'] / base['tokens_per_s']:.2f}×)",
                  str(r["texts_differ_from_first_size"]))
    Console().print(t)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
