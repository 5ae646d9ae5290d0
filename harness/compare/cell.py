"""Running one cell of a `harness compare` run: its lm-eval model and arguments, the models
loaded for the run (ModelCache), the cell's time and memory, the human reference row, and
attempt_cell (a failed cell never stops the run)."""
from __future__ import annotations

import gc
import json
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from ..errors import HarnessError
from .plan import ADAPTER_ARG, NO_BACKEND, Cell, CompareConfig, cell_batch, lm_key

# --- running one cell ----------------------------------------------------------------------

def _model_args(cell: Cell, n_threads: int | None,
                extra: dict | None = None) -> tuple[str, dict]:
    """lm-eval model name and model_args of a cell. Tuned llama.cpp cells need the adapter in
    GGUF: exported once (cached next to the adapter) by harness.export. `extra` model_args pass
    through to every cell (e.g. parallelize=True for hf on several GPUs)."""
    from ..export.to_gguf import ensure_exported

    extra = dict(extra or {})
    if cell.backend == "hf":
        args = {"model": cell.model, **extra}
        if cell.adapter:
            args["peft"] = cell.adapter
        return "hf", args
    if cell.backend == "vllm":
        from ..models import resolve_hf
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
        args["lora_path"] = str(ensure_exported(cell.adapter, "gguf-lora"))
    elif cell.variant.startswith("tuned-merged-"):
        args["model"] = str(ensure_exported(cell.adapter, "gguf",
                                          cell.variant.split("tuned-merged-", 1)[1]))
    return "llama-cpp", args


class ModelCache:
    """The models of a run. With reuse, one LM per lm_key, kept until keep_only() drops it,
    and the cell's adapter switched on it (set_adapter; None for base); without, a fresh LM
    per cell with the adapter in its model_args. `loads` lists every model load."""

    def __init__(self, reuse: bool = True):
        self.reuse = reuse
        self.models: dict[tuple, object] = {}
        self.loads: list[dict] = []

    def lm(self, cell: Cell, model: str, args: dict, batch_size):
        from ..evaluate.runner import load_lm

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
    from ..backends.throughput import peak_rss_mb as process_peak
    return round(process_peak(), 1)


def run_cell(cell: Cell, out_dir: Path, *, limit, data, n_threads=None, seed=0,
             gen_kwargs: str | None = None, model_args: dict | None = None,
             batch_size: int | str = 1, models: ModelCache | None = None) -> None:
    """Run one cell and save its results. `models` holds the run's loaded models (default:
    a fresh load for this cell); batch_size is the backend's generation batch (a batch_size
    in model_args wins)."""
    if cell.backend == NO_BACKEND:   # the human reference row: no model to run
        return run_reference_cell(cell, out_dir, limit=limit, data=data)
    from ..evaluate.runner import evaluate

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
    from ..evaluate.runner import save_results
    save_results(res, out_dir)  # atomic per file; results.json last marks the cell done


def run_reference_cell(cell: Cell, out_dir: Path, *, limit, data) -> None:
    """Score the reference reviews of the test documents a model cell sees (the first `limit`,
    in order, as lm-eval takes them) with the task's metrics, under the default fluency
    reference LM. Written like a model cell (results.json + samples_<task>.jsonl, lm-eval's
    layout); the metrics that compare a text with its own reference are None."""
    from dataclasses import replace

    from ..evaluate.runner import save_results
    from ..metrics import REFERENCE_BASED, score_reviews
    from ..metrics import config as mconfig
    from ..metrics.aggregate import aggregate
    from ..tasks.review import register_task_data
    from ..tasks.records import read_records

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
        task_res["fluency_engine,none"] = next(m["fluency_engine"] for m in scored
                                               if "fluency_engine" in m)
    cell.wall_s = round(time.perf_counter() - t0, 2)
    save_results({"results": {cell.task: task_res},
                  "configs": {cell.task: {"metadata": {"data": str(data) if data else None}}},
                  "config": {"model": "reference", "model_args": None, "limit": limit},
                  "n-samples": {cell.task: {"original": n_total, "effective": len(samples)}},
                  "throughput": {}, "harness_cell": asdict(cell),
                  "samples": {cell.task: samples}}, out_dir)


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


