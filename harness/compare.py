"""`harness compare`: base vs tuned models, on every backend and task, in one resumable run.

    compare(models="all", tasks=["product_review"], backends=["llama-cpp", "hf"], limit=5,
            data="demo", output="results/RUN", resume=False)

A run is a grid of cells (model × variant × backend × task), plus for product_review one cell
that scores the human reference reviews (model=reference, variant=human, backend "-", no
model run; see run_reference_cell). Each finished cell is a folder
`RUN/cells/<key>/` holding lm-eval's results.json and samples file; <key> hashes
(model, adapter content, backend, task, data file content, limit), so `resume=True` reruns only
what is missing and a changed adapter or data set never reuses a stale cell. Rendering
(tables, plots, report.md/html) lives in harness/report.py and reads only saved files.

Cells that run on the same weights (base and tuned of a model on one backend; the adapter is
switched with set_adapter) share one loaded model (`reuse_models`); they run one after another
and the model is freed after the last of them. Each cell records its wall time, the seconds
spent scoring (`metric_s`) and its own peak RSS (`cell_peak_rss_mb`).

Who runs the cells is an executor (harness.executors.EXECUTORS): "in-process" (default,
run_in_process: here, in run order) or "ray" (`executor="ray", address=...`: a Ray task per
cell); both go through attempt_cell and leave the run folder alike.
"""
from __future__ import annotations

import gc
import hashlib
import json
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .decoding import GENERATION_BATCH
from .io import HarnessError, read_json, sha256_file, write_json
from .models import availability, get_spec, registry
from .paths import ADAPTERS_DIR, RESULTS_DIR

BACKENDS = ("llama-cpp", "hf", "vllm")  # vllm: GPU clusters only (not installed here)
DEFAULT_TASKS = ("product_review",)
# Generation batch per backend (requests decoded together); backends not named here: 1.
DEFAULT_BATCH_SIZE = GENERATION_BATCH
# Backends whose LM switches adapters on a loaded model, and the model_arg naming the adapter.
ADAPTER_ARG = {"llama-cpp": "lora_path", "hf": "peft"}


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
    load_s: float | None = None           # model load in this cell (0: a loaded model reused)
    metric_s: float | None = None         # scoring: lm-eval filters + process_results
    cell_peak_rss_mb: float | None = None
    rss_scope: str = ""                   # "cell"; "process" where the peak cannot be reset

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


def cell_key(cell: Cell, data_hash: str, limit: int | None,
             gen_kwargs: str | None = None, batch_size: int | str | None = None) -> str:
    """A cell's cache key. gen_kwargs (e.g. the anti-loop setting) changes the outputs, so it is
    part of the key: a run with other decoding never reuses these cells (None keeps old keys).
    So is a generation batch above 1: batched greedy texts can part from one-at-a-time ones at
    near-tied logits (llama.cpp LoRA / Q5_0 cells, README); batch 1 keeps the old keys."""
    adapter_hash = ""
    if cell.adapter:
        f = Path(cell.adapter) / "adapter_model.safetensors"
        adapter_hash = sha256_file(f)[:16] if f.exists() else "missing"
    parts = [cell.model, cell.variant, adapter_hash, cell.backend, cell.task, data_hash, limit]
    if gen_kwargs and cell.backend != NO_BACKEND:
        parts.append(gen_kwargs)
    if batch_size not in (None, 1, "1") and cell.backend != NO_BACKEND:
        parts.append(f"batch_size={batch_size}")
    raw = json.dumps(parts, sort_keys=True)
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


def lm_key(cell: Cell) -> tuple:
    """Cells with one key run on one loaded model: base and tuned (adapter applied at run
    time) of a model on a backend; each merged export is a model of its own."""
    merged = cell.variant.startswith("tuned-merged-")
    return (cell.backend, cell.model, cell.variant if merged else "",
            cell.adapter if merged else "")


def run_order(cells: list[Cell]) -> list[Cell]:
    """The cells in plan order, except that all cells of one loaded model run together, and
    all of one model on one backend (its merged exports after the adapter cells)."""
    first: dict[tuple, int] = {}
    for i, c in enumerate(cells):
        first.setdefault((c.backend, c.model), i)
        first.setdefault(lm_key(c), i)
    return sorted(cells, key=lambda c: (first[(c.backend, c.model)], first[lm_key(c)]))


class ModelCache:
    """The models of a run. With reuse, one LM per lm_key, kept until keep_only() drops it,
    and the cell's adapter switched on it (set_adapter; None for base); without, a fresh LM
    per cell with the adapter in its model_args. `loads` lists every model load."""

    def __init__(self, reuse: bool = True):
        self.reuse = reuse
        self.models: dict[tuple, object] = {}
        self.loads: list[dict] = []

    def lm(self, cell: Cell, model: str, args: dict, batch_size):
        from .evaluate import load_lm

        key = lm_key(cell)
        adapter_arg = ADAPTER_ARG.get(cell.backend)
        reuse = self.reuse and adapter_arg is not None
        lm = self.models.get(key) if reuse else None
        if lm is None:
            t0 = time.perf_counter()
            lm = load_lm(model, {k: v for k, v in args.items() if k != adapter_arg}
                         if reuse else args, batch_size)
            self.loads.append({"key": list(key), "cell": cell.key,
                               "load_s": round(time.perf_counter() - t0, 2)})
            if reuse:
                self.models[key] = lm
        if reuse:
            lm.set_adapter(args.get(adapter_arg))
        return lm

    def keep_only(self, keys: set) -> None:
        """Free the models no later cell needs (and collect what a finished cell dropped)."""
        for k in [k for k in self.models if k not in keys]:
            del self.models[k]
        gc.collect()


def reset_peak_rss() -> str:
    """Reset the kernel's peak-RSS counter of this process (Linux: VmHWM via clear_refs).
    Returns the scope of the next peak_rss_mb(): "cell", or "process" (the peak so far of the
    whole process) where the counter cannot be reset."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return "cell"
    except OSError:
        return "process"


def peak_rss_mb() -> float:
    """Peak RSS since reset_peak_rss() (VmHWM); the process peak where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    from .backends.throughput import peak_rss_mb as process_peak
    return round(process_peak(), 1)


def run_cell(cell: Cell, out_dir: Path, *, limit, data, n_threads=None, seed=0,
             gen_kwargs: str | None = None, model_args: dict | None = None,
             batch_size: int | str = 1, models: ModelCache | None = None) -> None:
    """Run one cell and save its results. `models` holds the run's loaded models (default:
    a fresh load for this cell); batch_size is the backend's generation batch (a batch_size
    in model_args wins)."""
    if cell.backend == NO_BACKEND:   # the human reference row: no model to run
        return run_reference_cell(cell, out_dir, limit=limit, data=data)
    from .evaluate import evaluate

    models = models or ModelCache(reuse=False)
    model, args = _model_args(cell, n_threads, (model_args or {}).get(cell.backend))
    # time and memory from here: the adapter's GGUF export (made once per adapter) is not in them
    cell.rss_scope = reset_peak_rss()
    t0 = time.perf_counter()
    batch_size = args.pop("batch_size", batch_size)
    n_loads = len(models.loads)
    lm = models.lm(cell, model, args, batch_size)
    cell.load_s = sum(x["load_s"] for x in models.loads[n_loads:])
    res = evaluate(lm, args, [cell.task], limit=limit, log_samples=True,
                   metadata={"data": data} if data else None, seed=seed, gen_kwargs=gen_kwargs,
                   batch_size=batch_size, model_name=model,
                   model_under_test=cell.model)  # the fluency reference LM must differ
    del lm
    cell.wall_s = round(time.perf_counter() - t0, 2)
    cell.metric_s = res["throughput"].get("metric_s")
    cell.cell_peak_rss_mb = peak_rss_mb()
    res["harness_cell"] = asdict(cell)
    from .evaluate import save_results
    save_results(res, out_dir)  # atomic per file; results.json last marks the cell done


# --- the human reference row ---------------------------------------------------------------

NO_BACKEND = "-"
# Tasks whose references are reviews, scored by harness.metrics.score_reviews: they get a row
# model=reference, variant=human (ranked and label tasks have no text reference to score).
REFERENCE_ROW_TASKS = ("product_review",)


def reference_cells(tasks) -> list[Cell]:
    return [Cell("reference", "human", NO_BACKEND, t) for t in tasks if t in REFERENCE_ROW_TASKS]


def run_reference_cell(cell: Cell, out_dir: Path, *, limit, data) -> None:
    """Score the reference reviews of the test documents a model cell sees (the first `limit`,
    in order, as lm-eval takes them) with the task's metrics, under the default fluency
    reference LM. Written like a model cell (results.json + samples_<task>.jsonl, lm-eval's
    layout); the metrics that compare a text with its own reference are None."""
    from dataclasses import replace

    from .evaluate import save_results
    from .metrics import REFERENCE_BASED, score_reviews
    from .metrics import config as mconfig
    from .metrics.aggregate import aggregate
    from .metrics.catalogue import register_task_data
    from .tasks_registry import read_records

    t0 = time.perf_counter()
    records = read_records(cell.task, "test", data)
    n_total = len(records)
    records = records[:limit] if limit else records
    register_task_data(data)        # the catalogue lm-eval's load_dataset registers
    scoring = replace(mconfig.current(), model_under_test=None)
    texts = [(r.get("review") or "").strip() for r in records]
    scored = score_reviews(records, texts, scoring)
    reference_lm = mconfig.reference_for(None, scoring.fluency_reference)
    samples = []
    for i, (rec, text, metrics) in enumerate(zip(records, texts, scored)):
        metrics.update({k: None for k in REFERENCE_BASED})
        if metrics.get("bits_per_byte") is not None:
            metrics["fluency_reference"] = reference_lm
        samples.append({"doc_id": i, "doc": {"id": str(rec.get("id", i)), "record": json.dumps(
            rec, ensure_ascii=False, sort_keys=True)}, "target": " " + text, "arguments": [],
            "resps": [[text]], "filtered_resps": [text], "filter": "none",
            "metrics": list(metrics), **metrics})
    figures = aggregate(scored)     # numeric keys only; the None ones drop out
    figures.pop("n")
    task_res = {"alias": cell.task, **{f"{k},none": v for k, v in figures.items()},
                **{f"{k},none": None for k in REFERENCE_BASED}}
    if any("fluency_reference" in m for m in scored):
        task_res["fluency_reference,none"] = reference_lm
    cell.wall_s = round(time.perf_counter() - t0, 2)
    save_results({"results": {cell.task: task_res},
                  "configs": {cell.task: {"metadata": {"data": str(data) if data else None}}},
                  "config": {"model": "reference", "model_args": None, "limit": limit},
                  "n-samples": {cell.task: {"original": n_total, "effective": len(samples)}},
                  "throughput": {}, "harness_cell": asdict(cell),
                  "samples": {cell.task: samples}}, out_dir)


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
    # backend -> generation batch; an int (or "N", "llama-cpp:8,hf:4") sets it as parse says
    batch_size: dict | int | str = field(default_factory=lambda: dict(DEFAULT_BATCH_SIZE))
    reuse_models: bool = True        # one loaded model per backend and weights for the run
    adapters_dir: str | None = None  # where tuned adapters are found (None: ADAPTERS_DIR)
    # who runs the cells: "in-process" (here, one after another) or "ray" (a Ray task each;
    # harness.executors). address: the Ray cluster (None: a local one on this machine);
    # ray_resources: backend -> {"num_cpus": N, "num_gpus": M} over harness.executors' table.
    executor: str = "in-process"
    address: str | None = None
    ray_resources: dict | None = None


def batch_sizes(value: dict | int | str | None) -> dict:
    """Generation batch per backend: a dict as it is; N -> every backend N;
    "llama-cpp:8,hf:4" -> those two (the others keep DEFAULT_BATCH_SIZE); None -> defaults."""
    out = dict(DEFAULT_BATCH_SIZE)
    if isinstance(value, dict) or value is None:
        out.update(value or {})
    elif ":" not in str(value):
        out = {b: _positive(value, "--batch-size") for b in BACKENDS}
    else:
        for item in str(value).split(","):
            backend, _, n = item.partition(":")
            if backend.strip() not in BACKENDS:
                raise HarnessError(f"--batch-size {item!r}: unknown backend {backend.strip()!r}; "
                                   f"choose from {', '.join(BACKENDS)}")
            out[backend.strip()] = _positive(n, "--batch-size")
    return out


def cell_batch(cell: Cell, model_args: dict | None, batch: dict) -> int | str:
    """The generation batch a cell runs with: a batch_size in its backend's model_args wins over
    the run's per-backend batch (run_cell applies the same rule)."""
    extra = (model_args or {}).get(cell.backend) or {}
    return extra.get("batch_size", batch.get(cell.backend, 1))


def _positive(value, what: str) -> int:
    try:
        n = int(str(value).strip())
    except ValueError:
        n = 0
    if n < 1:
        raise HarnessError(f"{what} {value!r}: expected a positive integer "
                           f"(or BACKEND:N,... e.g. llama-cpp:8,hf:4)")
    return n


def preflight(cfg: CompareConfig, cells: list[Cell]) -> None:
    """What the cells need, checked before any model loads or any file is written. Every task
    known, every split of its data there and valid (harness.schema), each backend installed:
    else one HarnessError, nothing runs. Each adapter readable, each llama.cpp model file a
    readable GGUF: else the cells that need it are failed with the reason and not run."""
    import importlib.util

    from .data import SPLITS
    from .tasks_registry import read_records, task_names

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
    from .export import read_adapter
    from .gguf_io import scan_gguf
    from .models import resolve_gguf

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


def attempt_cell(c: Cell, out: Path, cfg: CompareConfig, batch: dict,
                 models: ModelCache) -> None:
    """Run one cell and set its status: done, or failed with the reason (a traceback in
    cells/<key>/error.txt for an unexpected error); one broken cell never stops the run."""
    try:
        run_cell(c, out / "cells" / c.key, limit=cfg.limit, data=cfg.data,
                 n_threads=cfg.n_threads, seed=cfg.seed, gen_kwargs=cfg.gen_kwargs,
                 model_args=cfg.model_args, batch_size=cell_batch(c, None, batch),
                 models=models)
        c.status = "done"
    except HarnessError as e:
        c.status, c.reason = "failed", str(e)
    except Exception as e:  # one broken cell must not lose the others
        c.status, c.reason = "failed", f"{type(e).__name__}: {e}"
        (out / "cells" / c.key).mkdir(parents=True, exist_ok=True)
        (out / "cells" / c.key / "error.txt").write_text(traceback.format_exc())


def run_in_process(cfg: CompareConfig, out: Path, todo: list[Cell], batch: dict, state: dict,
                   save, progress=None) -> None:
    """The default executor: the cells here, one after another in run order, sharing loaded
    models (ModelCache); run.json saved after each."""
    models = ModelCache(reuse=cfg.reuse_models)
    state["model_loads"] = models.loads
    for i, c in enumerate(todo):
        if progress:
            progress(i, len(todo), c)
        if c.status == "cached":
            continue
        attempt_cell(c, out, cfg, batch, models)
        models.keep_only({lm_key(x) for x in todo[i + 1:] if x.status == "pending"})
        save()


def compare(cfg: CompareConfig | None = None, progress=None, **kw) -> Path:
    """Run (or resume) a comparison; returns the run directory. Rendering is done by
    harness.report.render(run_dir) afterwards (the CLI does both)."""
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
                         cell_batch(c, cfg.model_args, batch))
    from .executors import EXECUTORS, check_executor
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
