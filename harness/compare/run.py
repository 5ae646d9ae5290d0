"""`harness compare`: base vs tuned models, on every backend and task, in one resumable run.

    compare(models="all", tasks=["product_review"], backends=["llama-cpp", "hf"], limit=5,
            data="demo", output="results/RUN", resume=False)

A run is a grid of cells (model × variant × backend × task), plus for product_review one cell
that scores the human reference reviews (model=reference, variant=human, backend "-", no
model run; see run_reference_cell). Each finished cell is a folder
`RUN/cells/<key>/` holding lm-eval's results.json and samples file; <key> hashes
(model, adapter content, backend, task, data file content, limit), so `resume=True` reruns only
what is missing and a changed adapter or data set never reuses a stale cell. Rendering
(tables, plots, report.md/html: harness/compare/render.py, with summary.py, stats.py and
plots.py) reads only saved files.

Cells that run on the same weights (base and tuned of a model on one backend; the adapter is
switched with set_adapter) share one loaded model (`reuse_models`); they run one after another
and the model is freed after the last of them. Each cell records its wall time, the seconds
spent scoring (`metric_s`) and its own peak RSS (`cell_peak_rss_mb`).

Who runs the cells is an executor (harness.compare.executors.EXECUTORS): "in-process" (default,
run_in_process: here, in run order) or "ray" (`executor="ray", address=...`: a Ray task per
cell); both go through attempt_cell and leave the run folder alike.
"""
from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from ..errors import HarnessError
from ..files import read_json, write_json
from ..paths import ADAPTERS_DIR, RESULTS_DIR
from .executors import EXECUTORS, check_executor
from .plan import (NO_BACKEND, Cell, CompareConfig, batch_sizes, cell_batch, cell_key,
                   data_fingerprint, plan, reference_cells, run_order)

def preflight(cfg: CompareConfig, cells: list[Cell]) -> None:
    """What the cells need, checked before any model loads or any file is written. Every task
    known, every split of its data there and valid (harness.data.schema), each backend installed:
    else one HarnessError, nothing runs. Each adapter readable, each llama.cpp model file a
    readable GGUF: else the cells that need it are failed with the reason and not run."""
    import importlib.util

    from ..data import SPLITS
    from ..tasks.records import read_records, task_names

    if cfg.limit is not None and int(cfg.limit) < 1:
        raise HarnessError(f"--limit {cfg.limit}: expected 1 or more documents")
    bad = [p for p in (cfg.gen_kwargs or "").split(",") if p.strip() and "=" not in p]
    if bad:
        raise HarnessError(f"--gen-kwargs {cfg.gen_kwargs!r}: {bad[0]!r} is not key=value "
                           f"(e.g. max_gen_toks=64)")
    known = task_names()
    for task in cfg.tasks:
        if task not in known:
            raise HarnessError(f"unknown task {task!r}; known: {', '.join(known)}")
        for split in SPLITS:
            read_records(known[task], split, cfg.data)
    for b in cfg.backends:
        module = {"llama-cpp": "llama_cpp", "hf": "transformers", "vllm": "vllm"}.get(b)
        if module and importlib.util.find_spec(module) is None:
            raise HarnessError(f"backend {b!r}: the {module} package is not installed here")
    from ..export.to_gguf import read_adapter
    from ..backends.gguf_reader import scan_gguf
    from ..models import resolve_gguf

    problems: dict[tuple, str] = {}
    for c in cells:
        if c.status != "pending" or c.backend == NO_BACKEND:
            continue
        for what, check in ((("adapter", c.adapter), lambda: read_adapter(c.adapter)),
                            (("gguf", c.model), lambda: scan_gguf(resolve_gguf(c.model)))):
            if (what[0] == "adapter" and not c.adapter) or \
                    (what[0] == "gguf" and c.backend != "llama-cpp"):
                continue
            if what not in problems:
                try:
                    check()
                    problems[what] = ""
                except HarnessError as e:
                    problems[what] = str(e)
            if problems[what]:
                c.status, c.reason = "failed", f"not run: {problems[what]}"
                break


def compare(cfg: CompareConfig | None = None, progress=None, **kw) -> Path:
    """Run (or resume) a comparison; returns the run directory. Rendering is done by
    harness.compare.render.render(run_dir) afterwards (the CLI does both)."""
    cfg = cfg or CompareConfig(**kw)
    batch = batch_sizes(cfg.batch_size)
    out = Path(cfg.output) if cfg.output else RESULTS_DIR / time.strftime("compare-%Y%m%d-%H%M%S")
    manifest = out / "run.json"
    if manifest.exists() and not cfg.resume:
        prev = read_json(manifest)
        if prev.get("status") != "finished":
            raise HarnessError(f"{out}: an unfinished run is there; add --resume to continue it "
                               f"or choose another --output")
    cells = plan(cfg.models, cfg.tasks, cfg.backends, merged_quant=cfg.merged_quant,
                 adapters_dir=Path(cfg.adapters_dir) if cfg.adapters_dir else ADAPTERS_DIR) + \
        reference_cells(cfg.tasks)
    preflight(cfg, cells)
    data_hashes = {t: data_fingerprint(t, cfg.data) for t in cfg.tasks}
    for c in cells:
        c.key = cell_key(c, data_hashes[c.task], cfg.limit, cfg.gen_kwargs,
                         cell_batch(c, cfg.model_args, batch), cfg.model_args)
    execute = check_executor(cfg)     # unknown executor / no Ray / dead address: nothing written
    state = {"config": asdict(cfg), "status": "running", "started": time.time(),
             "cells": [asdict(c) for c in cells]}
    write_json(manifest, state)

    todo = run_order([c for c in cells if c.status == "pending"])
    for c in todo:
        if cfg.resume and (out / "cells" / c.key / "results.json").exists():
            c.status = "cached"

    def save() -> None:   # run.json as it stands, after each finished cell
        state["cells"] = [asdict(x) for x in cells]
        write_json(manifest, state)

    EXECUTORS[execute](cfg, out, todo, batch, state, save, progress)
    if progress:
        progress(len(todo), len(todo), None)
    state.update(status="finished", finished=time.time(), cells=[asdict(x) for x in cells],
                 wall_s=round(time.time() - state["started"], 1))
    write_json(manifest, state)
    return out
