"""`harness compare` throughput: one grid run twice in one process, the sequential way (every
cell loads its model, generation batch 1) and the default (one loaded model per backend and
weights with adapters switched on it, batched generation, batched scoring).

Grid: SmolLM2-135M-Instruct and gemma3-270m, base + tuned (one product_review adapter each),
llama.cpp + transformers, product_review on the first 24 products of the real test split
(data/prepared; `harness data prepare` makes it), the task's own generation settings.
Goal: default at least 3x faster. Greedy texts must be identical on llama.cpp; for
transformers the number of differing texts is printed (batching pads prompts, which can move
fp32 logits).

    .venv/bin/python benchmarks/compare_speed.py [--limit 24] [--models a,b] [--backends ...]
                                                  [--adapters-dir DIR] [--keep DIR]
    .venv/bin/python benchmarks/compare_speed.py --diff RUN_A RUN_B
    .venv/bin/python benchmarks/compare_speed.py --breakdown RUN

--diff only compares two finished `harness compare` output folders: for each (model, variant,
backend) cell in both, how many generated texts differ (e.g. a rerun at another batch size).
--breakdown only reads one finished run: where each cell's wall time went, from the throughput
record the cell wrote (model load, prompt prefill = prompt tokens / prompt tokens per second as
the backend measured them, metric scoring, and the rest: generation and lm-eval's own work).

Adapters: the first product_review adapter of each model in --adapters-dir (default
adapters/); a model without one gets a seeded random LoRA adapter (not trained: r=4 on q/v,
lora_B ~ N(0, 0.02)) in a temporary folder. The output says which. Not timed (done first, for
both runs alike): LoRA GGUF exports, the fluency reference LMs and the embedder, reading the
GGUF files once, transformers' model code imports. The sequential run goes first; the
embedding cache is cleared before each run. Writes results/bench/compare_speed.json.
"""
from __future__ import annotations

import argparse
import json
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
from harness.paths import ADAPTERS_DIR, DATA_DIR, RESULTS_DIR  # noqa: E402

TASK = "product_review"
MODELS = "smollm2-135m-instruct,gemma3-270m"
GOAL = 3.0


def random_adapter(model: str, dest: Path, seed: int = 0) -> Path:
    """A real PEFT LoRA adapter on `model`, not trained: the tests' seeded random adapter
    (tests/_export_models.make_adapter), with the training.json compare reads."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from _export_models import make_adapter, write_training_json

    make_adapter(model, dest, seed, r=4, alpha=8, scale=0.02, targets=["q_proj", "v_proj"])
    write_training_json(dest, model, task=TASK, method="lora",
                        note=f"benchmarks/compare_speed.py: seeded random adapter (seed {seed}), "
                             f"not trained")
    return dest


def pick_adapters(models: list[str], source: Path, dest: Path, log) -> dict:
    """One adapter per model, linked into `dest` (the run's adapters_dir)."""
    from harness.compare.plan import find_adapters

    chosen = {}
    for m in models:
        found = find_adapters(m, TASK, source)
        if found:
            (dest / found[0].name).symlink_to(found[0].resolve(), target_is_directory=True)
            chosen[m] = {"adapter": str(found[0]), "kind": "found"}
            log(f"  {m}: adapter {found[0]}")
        else:
            random_adapter(m, dest / f"{m}-random-seed0")
            chosen[m] = {"adapter": str(dest / f"{m}-random-seed0"), "kind": "seeded random"}
            log(f"  {m}: no {TASK} adapter in {source}: a seeded random LoRA adapter "
                f"(not trained)")
    return chosen


def warm_up(models: list[str], adapters_dir: Path, backends: list[str]) -> None:
    """One-time costs both runs would otherwise pay unequally."""
    from harness.compare.plan import find_adapters
    from harness.export.to_gguf import ensure_exported
    from harness.metrics.config import reference_for
    from harness.backends.reference import reference_lm
    from harness.metrics.relevance import embedder
    from harness.models import resolve_gguf, resolve_hf

    files = []
    for m in models:
        files.append(resolve_gguf(m))
        if "hf" in backends:   # transformers imports its GGUF reader and model code once
            from transformers import AutoConfig, AutoModelForCausalLM
            pretrained, gguf = resolve_hf(m)
            AutoModelForCausalLM._model_mapping[type(AutoConfig.from_pretrained(
                pretrained, gguf_file=gguf))]
        if "llama-cpp" in backends:
            files += [ensure_exported(str(a), "gguf-lora") for a in find_adapters(m, TASK,
                                                                                adapters_dir)]
        reference_lm(reference_for(m))
    embedder()
    for f in files:   # into the page cache
        with open(f, "rb") as fh:
            while fh.read(1 << 24):
                pass


def texts_of(run: Path) -> dict:
    """(model, variant, backend) -> generated texts (before the task's filter), by doc."""
    state = json.loads((run / "run.json").read_text())
    out = {}
    for c in state["cells"]:
        f = run / "cells" / c["key"] / f"samples_{c['task']}.jsonl"
        if c["backend"] == "-" or not f.exists():
            continue
        rows = sorted((json.loads(x) for x in f.read_text().splitlines()),
                      key=lambda r: r["doc_id"])
        out[(c["model"], c["variant"], c["backend"])] = [r["resps"][0][0] for r in rows]
    return out


def cells_of(run: Path) -> dict:
    state = json.loads((run / "run.json").read_text())
    return {(c["model"], c["variant"], c["backend"]): c for c in state["cells"]
            if c["backend"] != "-"}


def breakdown(run: Path) -> list[dict]:
    """Per cell of a finished compare run: wall, load, prefill, metrics and the rest (s)."""
    state = json.loads((run / "run.json").read_text())
    rows = []
    for c in state["cells"]:
        f = run / "cells" / c["key"] / "results.json"
        if not f.exists():
            continue
        res = json.loads(f.read_text())
        tp, cell = res.get("throughput") or {}, res.get("harness_cell") or {}
        wall = float(cell.get("wall_s") or 0.0)
        load = float(cell.get("load_s") or 0.0)
        metric = float(cell.get("metric_s") or 0.0)
        pps = tp.get("prompt_tokens_per_second") or 0
        prefill = tp.get("prompt_tokens", 0) / pps if pps else 0.0
        rows.append({"cell": f"{c['model']} {c['variant']} {c['backend']}", "wall_s": wall,
                     "load_s": load, "prefill_s": prefill, "metric_s": metric,
                     "rest_s": wall - load - prefill - metric})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=24, help="test products per cell")
    ap.add_argument("--models", default=MODELS)
    ap.add_argument("--backends", default="llama-cpp,hf")
    ap.add_argument("--adapters-dir", type=Path, default=ADAPTERS_DIR)
    ap.add_argument("--keep", type=Path, default=None, help="keep both runs here "
                    "(default: a temporary folder)")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "bench" / "compare_speed.json")
    ap.add_argument("--diff", type=Path, nargs=2, metavar=("RUN_A", "RUN_B"),
                    help="only count differing texts between two compare output folders")
    ap.add_argument("--breakdown", type=Path, metavar="RUN",
                    help="only print where the cells of a compare output folder spent their time")
    args = ap.parse_args()
    if args.breakdown:
        rows = breakdown(args.breakdown)
        keys = ("wall_s", "load_s", "prefill_s", "metric_s", "rest_s")
        print(f"{'cell':<52}" + "".join(f"{k:>11}" for k in keys))
        for r in rows + [{"cell": "total", **{k: sum(r[k] for r in rows) for k in keys}}]:
            print(f"{r['cell']:<52}" + "".join(f"{r[k]:>11.1f}" for k in keys))
        return 0
    if args.diff:
        a, b = (texts_of(run) for run in args.diff)
        for k in sorted(a.keys() & b.keys()):
            print(" ".join(k), f"{sum(x != y for x, y in zip(a[k], b[k]))} of {len(a[k])} "
                  f"texts differ" + ("" if len(a[k]) == len(b[k]) else
                                     f" (documents: {len(a[k])} vs {len(b[k])})"))
        return 0

    from rich.console import Console
    from rich.table import Table

    from harness.compare.plan import CompareConfig, batch_sizes
    from harness.compare.run import compare
    from harness.metrics import relevance

    console = Console()
    log = lambda m: console.print(m, highlight=False)   # noqa: E731
    test = DATA_DIR / TASK / "test.jsonl"
    n_test = sum(1 for line in test.open() if line.strip()) if test.exists() else 0
    if not n_test:
        log(f"[red]no real test products: {test} is missing; run "
            f"`harness data prepare --raw-dir ../shared/data` first[/]")
        return 2
    if n_test < args.limit:
        log(f"[red]{test}: {n_test} real test products, --limit {args.limit} asks for more[/]")
        return 2
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]

    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        adapters = Path(tmp) / "adapters"
        adapters.mkdir()
        log(f"grid: {', '.join(models)} × base + tuned × {', '.join(backends)}, {TASK}, "
            f"first {args.limit} of {n_test} real test products ({test})")
        chosen = pick_adapters(models, args.adapters_dir, adapters, log)
        t = time.perf_counter()
        warm_up(models, adapters, backends)
        log(f"warm-up (not timed): {time.perf_counter() - t:.1f} s")

        common = dict(models=models, tasks=[TASK], backends=backends, limit=args.limit,
                      data=str(DATA_DIR), merged_quant=None, adapters_dir=str(adapters))
        arms = {"sequential": dict(reuse_models=False, batch_size=batch_sizes("1")),
                "default": {}}
        runs, wall, load_avg = {}, {}, {}
        for name, extra in arms.items():
            cfg = CompareConfig(**common, **extra, output=str(work / name))
            relevance._CACHE.clear()   # embeddings of products and references: each run pays
            load_avg[name] = [os.getloadavg()[0]]
            t = time.perf_counter()
            runs[name] = compare(cfg)
            wall[name] = time.perf_counter() - t
            load_avg[name].append(os.getloadavg()[0])
            log(f"{name}: {wall[name]:.1f} s (reuse_models={cfg.reuse_models}, "
                f"batch_size={batch_sizes(cfg.batch_size)})")

        seq_t, new_t = texts_of(runs["sequential"]), texts_of(runs["default"])
        seq_c, new_c = cells_of(runs["sequential"]), cells_of(runs["default"])
        tab = Table(title=f"compare, {args.limit} products per cell: sequential vs default")
        for col in ("model", "variant", "backend", "wall s seq", "wall s new", "metric s seq",
                    "metric s new", "peak RSS MB seq", "peak RSS MB new", "texts differ"):
            tab.add_column(col, justify="left" if col in ("model", "variant", "backend")
                           else "right")
        cells, differ = [], {b: [0, 0] for b in backends}
        for k, sc in seq_c.items():
            nc = new_c.get(k, {})
            a, b = seq_t.get(k), new_t.get(k)
            n_diff = sum(x != y for x, y in zip(a, b)) if a and b else None
            if n_diff is not None:
                differ[k[2]][0] += n_diff
                differ[k[2]][1] += len(a)
            cells.append({"model": k[0], "variant": k[1], "backend": k[2],
                          "status": [sc["status"], nc.get("status")],
                          "wall_s": [sc["wall_s"], nc.get("wall_s")],
                          "metric_s": [sc["metric_s"], nc.get("metric_s")],
                          "cell_peak_rss_mb": [sc["cell_peak_rss_mb"], nc.get("cell_peak_rss_mb")],
                          "texts_differ": n_diff, "n": len(a or [])})
            fmt = lambda v: "" if v is None else f"{v:.1f}"   # noqa: E731
            tab.add_row(k[0], k[1], k[2], fmt(sc["wall_s"]), fmt(nc.get("wall_s")),
                        fmt(sc["metric_s"]), fmt(nc.get("metric_s")),
                        fmt(sc["cell_peak_rss_mb"]), fmt(nc.get("cell_peak_rss_mb")),
                        "failed" if n_diff is None else f"{n_diff} of {len(a)}")
        console.print(tab)
        ratio = wall["sequential"] / wall["default"]
        failed = [c for c in cells if c["status"] != ["done", "done"]]
        loads = {n: len(json.loads((r / "run.json").read_text())["model_loads"])
                 for n, r in runs.items()}
        log(f"wall: sequential {wall['sequential']:.1f} s ({loads['sequential']} model loads), "
            f"default {wall['default']:.1f} s ({loads['default']} model loads): "
            f"[bold]{ratio:.2f}×[/] (goal ≥ {GOAL:.0f}×: "
            f"{'met' if ratio >= GOAL else 'NOT met'})")
        llama_ok = "llama-cpp" not in differ or differ["llama-cpp"][0] == 0
        for b, (n_diff, n) in differ.items():
            log(f"{b}: {n_diff} of {n} greedy texts differ between the two runs"
                + (" (must be 0)" if b == "llama-cpp" else ""))
        for c in failed:
            log(f"[red]failed cell[/] {c['model']} · {c['variant']} · {c['backend']}: "
                f"{c['status']}")
        result = {"grid": {"models": models, "backends": backends, "task": TASK,
                           "limit": args.limit, "data": str(test)},
                  "adapters": chosen, "wall_s": wall, "ratio": ratio, "goal": GOAL,
                  "goal_met": ratio >= GOAL, "model_loads": loads, "cells": cells,
                  "texts_differ": {b: {"differ": d, "of": n} for b, (d, n) in differ.items()},
                  "configs": {n: json.loads((r / "run.json").read_text())["config"]
                              for n, r in runs.items()},
                  "loadavg_1min_before_after": load_avg, "cpus": os.cpu_count(),
                  "machine": platform.processor() or platform.machine()}
        write_json(args.out, result)
        log(f"→ {args.out}" + (f"; runs in {work}" if args.keep else ""))
    return 0 if llama_ok and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
