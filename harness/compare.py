"""`harness compare`: base vs tuned models, on every backend and task, in one resumable run.

    compare(models="all", tasks=["product_review"], backends=["llama-cpp", "hf"], limit=5,
            data="demo", output="results/RUN", resume=False)

A run is a grid of cells (model × variant × backend × task). Each finished cell is a folder
`RUN/cells/<key>/` holding lm-eval's results.json and samples file; <key> hashes
(model, adapter content, backend, task, data file content, limit), so `resume=True` reruns only
what is missing and a changed adapter or data set never reuses a stale cell. Rendering
(tables, plots, report.md/html) lives in harness/report.py and reads only saved files.
"""
from __future__ import annotations

import hashlib
import json
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .io import HarnessError, read_json, sha256_file, write_json
from .models import availability, get_spec, registry
from .paths import ADAPTERS_DIR, RESULTS_DIR

BACKENDS = ("llama-cpp", "hf", "vllm")  # vllm: GPU clusters only (not installed here)
DEFAULT_TASKS = ("product_review",)


@dataclass
class Cell:
    model: str
    variant: str                # "base" | "tuned" | "tuned-merged-q4_k_m"
    backend: str
    task: str
    adapter: str | None = None  # adapter directory (tuned variants)
    status: str = "pending"     # pending | done | cached | unavailable | failed
    reason: str = ""
    key: str = ""
    wall_s: float | None = None

    @property
    def label(self) -> str:
        name = self.variant if not self.adapter else f"{self.variant} ({Path(self.adapter).name})"
        return f"{self.model} · {name} · {self.backend} · {self.task}"


# --- planning ------------------------------------------------------------------------------

def find_adapters(model: str, task: str, adapters_dir: Path = ADAPTERS_DIR) -> list[Path]:
    """Adapters whose training.json names this base model and task."""
    found = []
    if not adapters_dir.is_dir():
        return found
    for tj in sorted(adapters_dir.glob("*/training.json")):
        try:
            meta = read_json(tj)
        except HarnessError:
            continue
        if meta.get("base_model") == model and meta.get("task") == task and \
                (tj.parent / "adapter_model.safetensors").exists():
            found.append(tj.parent)
    return found


def data_fingerprint(task: str, data) -> str:
    from .data import resolve_data_file
    try:
        path = resolve_data_file(task, "test", data)
    except HarnessError:
        return "missing"
    return sha256_file(path)[:16] if path.exists() else "missing"


def cell_key(cell: Cell, data_hash: str, limit: int | None) -> str:
    adapter_hash = ""
    if cell.adapter:
        f = Path(cell.adapter) / "adapter_model.safetensors"
        adapter_hash = sha256_file(f)[:16] if f.exists() else "missing"
    raw = json.dumps([cell.model, cell.variant, adapter_hash, cell.backend, cell.task,
                      data_hash, limit], sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def merged_quants(merged_quant: str | list[str] | None) -> list[str]:
    """"q4_k_m,q8_0" -> ["q4_k_m", "q8_0"]; None, "" or "none" -> [] (no merged cells)."""
    from .gguf_io import QUANTS

    items = merged_quant.split(",") if isinstance(merged_quant, str) else merged_quant or []
    quants = [q.strip().lower() for q in items if q.strip() and q.strip().lower() != "none"]
    if (bad := [q for q in quants if q not in QUANTS]):
        raise HarnessError(f"--merged-quant: unknown quantization {bad[0]!r}; choose from "
                           f"{', '.join(QUANTS)} (comma-separated), or none")
    return list(dict.fromkeys(quants))


def plan(models: str | list[str], tasks, backends, adapters_dir: Path = ADAPTERS_DIR,
         merged_quant: str | list[str] | None = "q4_k_m") -> list[Cell]:
    """Cells of a run. merged_quant: the merged exports scored on llama.cpp beside the LoRA
    GGUF ("q4_k_m", "q4_k_m,q8_0", ... or None)."""
    names = list(registry()) if models in ("all", ["all"]) else \
        [m.strip() for m in (models.split(",") if isinstance(models, str) else models)]
    for b in backends:
        if b not in BACKENDS:
            raise HarnessError(f"unknown backend {b!r}; choose from {', '.join(BACKENDS)}")
    quants = merged_quants(merged_quant)
    cells = []
    for name in names:
        get_spec(name)  # unknown names fail here, before any compute
        ok, why = availability(name)
        for task in tasks:
            for backend in backends:
                if not ok:
                    cells.append(Cell(name, "base", backend, task, status="unavailable",
                                      reason=why))
                    continue
                cells.append(Cell(name, "base", backend, task))
                for ad in find_adapters(name, task, adapters_dir):
                    cells.append(Cell(name, "tuned", backend, task, adapter=str(ad)))
                    if backend == "llama-cpp":
                        cells += [Cell(name, f"tuned-merged-{q}", backend, task,
                                       adapter=str(ad)) for q in quants]
    return cells


# --- running one cell ----------------------------------------------------------------------

def _model_args(cell: Cell, n_threads: int | None,
                extra: dict | None = None) -> tuple[str, dict]:
    """lm-eval model name and model_args of a cell. Tuned llama.cpp cells need the adapter in
    GGUF: exported once (cached next to the adapter) by harness.export. `extra` model_args pass
    through to every cell (e.g. parallelize=True for hf on several GPUs)."""
    extra = dict(extra or {})
    if cell.backend == "hf":
        args = {"model": cell.model, **extra}
        if cell.adapter:
            args["peft"] = cell.adapter
        return "hf", args
    if cell.backend == "vllm":
        from .models import resolve_hf
        pretrained, gguf = resolve_hf(cell.model)
        if gguf:
            raise HarnessError(f"{cell.model}: vllm needs HF-format weights "
                               f"(HARNESS_HF_{cell.model.upper().replace('-', '_')})")
        args = {"pretrained": pretrained, **extra}
        if cell.adapter:
            args.update(enable_lora=True, lora_local_path=cell.adapter)
        return "vllm", args
    args = {"model": cell.model, "n_ctx": 2048, **extra}
    if n_threads:
        args["n_threads"] = n_threads
    if cell.variant == "tuned":
        args["lora_path"] = str(exported_gguf(cell.adapter, "gguf-lora"))
    elif cell.variant.startswith("tuned-merged-"):
        args["model"] = str(exported_gguf(cell.adapter, "gguf",
                                          cell.variant.split("tuned-merged-", 1)[1]))
    return "llama-cpp", args


def exported_gguf(adapter_dir: str, fmt: str, quant: str | None = None) -> Path:
    """The adapter's GGUF export (LoRA GGUF or merged+quantized), made once and reused while
    it is newer than the adapter weights."""
    from .export import export, output_paths, read_adapter, resolve_base

    adapter = read_adapter(adapter_dir)
    label = "lora" if fmt == "gguf-lora" else quant
    path = output_paths(fmt, [quant] if quant else [], None, adapter,
                        resolve_base(adapter.base))[label]
    weights = Path(adapter_dir) / "adapter_model.safetensors"
    if path.exists() and path.stat().st_mtime >= weights.stat().st_mtime:
        return path
    return export(adapter_dir, fmt, [quant] if quant else ["q4_k_m"]).files[label]


def run_cell(cell: Cell, out_dir: Path, *, limit, data, n_threads=None, seed=0,
             gen_kwargs: str | None = None, model_args: dict | None = None) -> None:
    from .evaluate import evaluate

    model, args = _model_args(cell, n_threads, (model_args or {}).get(cell.backend))
    t0 = time.perf_counter()
    res = evaluate(model, args, [cell.task], limit=limit, log_samples=True,
                   metadata={"data": data} if data else None, seed=seed, gen_kwargs=gen_kwargs,
                   model_under_test=cell.model)  # the fluency reference LM must differ
    cell.wall_s = round(time.perf_counter() - t0, 2)
    res["harness_cell"] = asdict(cell)
    from .evaluate import save_results
    save_results(res, out_dir)  # atomic per file; results.json last marks the cell done


# --- the run -------------------------------------------------------------------------------

@dataclass
class CompareConfig:
    models: str | list[str] = "all"
    tasks: list[str] = field(default_factory=lambda: list(DEFAULT_TASKS))
    backends: list[str] = field(default_factory=lambda: list(BACKENDS))
    limit: int | None = None
    data: str | None = None          # None: prepared data else demo; "demo"; or a directory
    output: str | None = None
    resume: bool = False
    n_threads: int | None = None
    seed: int = 0
    merged_quant: str | None = "q4_k_m"   # merged exports to score too: "q4_k_m,q8_0", None
    gen_kwargs: str | None = None
    model_args: dict | None = None   # backend -> extra lm-eval model_args (pass-through)


def compare(cfg: CompareConfig | None = None, progress=None, **kw) -> Path:
    """Run (or resume) a comparison; returns the run directory. Rendering is done by
    harness.report.render(run_dir) afterwards (the CLI does both)."""
    cfg = cfg or CompareConfig(**kw)
    out = Path(cfg.output) if cfg.output else RESULTS_DIR / time.strftime("compare-%Y%m%d-%H%M%S")
    manifest = out / "run.json"
    if manifest.exists() and not cfg.resume:
        prev = read_json(manifest)
        if prev.get("status") != "finished":
            raise HarnessError(f"{out}: an unfinished run is there; add --resume to continue it "
                               f"or choose another --output")
    cells = plan(cfg.models, cfg.tasks, cfg.backends, merged_quant=cfg.merged_quant)
    data_hashes = {t: data_fingerprint(t, cfg.data) for t in cfg.tasks}
    for c in cells:
        c.key = cell_key(c, data_hashes[c.task], cfg.limit)
    state = {"config": asdict(cfg), "status": "running", "started": time.time(),
             "cells": [asdict(c) for c in cells]}
    write_json(manifest, state)

    todo = [c for c in cells if c.status == "pending"]
    for c in todo:
        if cfg.resume and (out / "cells" / c.key / "results.json").exists():
            c.status = "cached"
    for i, c in enumerate(todo):
        if progress:
            progress(i, len(todo), c)
        if c.status == "cached":
            continue
        try:
            run_cell(c, out / "cells" / c.key, limit=cfg.limit, data=cfg.data,
                     n_threads=cfg.n_threads, seed=cfg.seed, gen_kwargs=cfg.gen_kwargs,
                     model_args=cfg.model_args)
            c.status = "done"
        except HarnessError as e:
            c.status, c.reason = "failed", str(e)
        except Exception as e:  # one broken cell must not lose the others
            c.status, c.reason = "failed", f"{type(e).__name__}: {e}"
            (out / "cells" / c.key).mkdir(parents=True, exist_ok=True)
            (out / "cells" / c.key / "error.txt").write_text(traceback.format_exc())
        state["cells"] = [asdict(x) for x in cells]
        write_json(manifest, state)
    if progress:
        progress(len(todo), len(todo), None)
    state.update(status="finished", finished=time.time(),
                 wall_s=round(time.time() - state["started"], 1))
    write_json(manifest, state)
    return out
