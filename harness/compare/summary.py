"""The compare report, part 1: a run directory -> its cells and summary rows (one per cell),
each metric's direction (the results' higher_is_better) and the report's tables of metrics."""
from __future__ import annotations

import math
from pathlib import Path


from ..errors import HarnessError
from ..files import read_json, read_jsonl
from ..tasks import PRIMARY_METRICS

THROUGHPUT = ("prompt_tokens_per_second", "generation_tokens_per_second",
              "aggregate_generation_tokens_per_second", "time_to_first_token_s", "wall_s",
              "peak_rss_mb", "loglikelihood_tokens_per_doc",
              "loglikelihood_naive_tokens_per_doc")
ID_COLS = ("model", "variant", "adapter", "backend", "task", "status", "reason", "n")
CELL_COLS = ("metric_s", "cell_peak_rss_mb")   # per cell, from harness_cell
# The metrics each task is judged by (verdict, per-sample diffs, plots): harness.tasks.
PRIMARY = PRIMARY_METRICS
# Columns of the terminal table (the files keep every metric); every name is one the task's
# YAML lists (tests/test_settings.py).
_CLASSIFY_KEYS = ("acc", "acc_norm", "macro_f1")
_CLASSIFY_GEN_KEYS = ("acc", "macro_f1", "invalid")
KEY_METRICS = {"product_review": ("hallucination_rate", "contradiction", "bits_per_byte",
                                  "relevance_product", "attribute_coverage", "rouge_l",
                                  "parent_f1", "distinct_2", "degenerate"),
               "product_department": _CLASSIFY_KEYS, "product_department_gen": _CLASSIFY_GEN_KEYS,
               "product_aisle": _CLASSIFY_KEYS, "product_aisle_gen": _CLASSIFY_GEN_KEYS,
               "product_nextitem": ("hit@1", "hit@10", "ndcg@10", "mrr")}
# The key-metric table at the top of report.md / report.html (at most ~10 columns): the task's
# own primary metrics, then its speed (KEY_SPEED: the first throughput column any row has).
KEY_TABLE = {"product_review": ("hallucination_rate", "relevance_product", "rouge_l",
                                "bits_per_byte", "degenerate"),
             "product_department": ("acc", "macro_f1"), "product_department_gen": ("acc", "macro_f1"),
             "product_aisle": ("acc", "macro_f1"), "product_aisle_gen": ("acc", "macro_f1"),
             "product_nextitem": ("hit@1", "hit@10", "mrr")}
KEY_SPEED = ("generation_tokens_per_second", "prompt_tokens_per_second")
SHORT = {"prompt_tokens_per_second": "prompt t/s", "generation_tokens_per_second": "gen t/s",
         "time_to_first_token_s": "TTFT s", "peak_rss_mb": "RSS MB", "hallucination_rate": "halluc",
         "contradiction": "contra", "bits_per_byte": "bpb", "relevance_product": "rel prod",
         "attribute_coverage": "attr cov", "rouge_l": "rougeL", "parent_f1": "PARENT F1",
         "distinct_2": "dist2",
         "degenerate": "degen", "smollm2-135m-instruct": "smollm2-135m", "llama2-7b-chat": "llama2-7b",
         "mistral-7b-instruct": "mistral-7b", "tuned-merged-q4_k_m": "tuned-q4km",
         "tuned-merged-q8_0": "tuned-q8", "tuned-merged-f16": "tuned-f16"}
# Which way is better comes from the results: lm-eval writes each task's `higher_is_better`
# (from the task YAML's metric_list) into every results.json; directions() collects them.
# Counts and lengths have no better direction (lm-eval still needs a bool for them): a diff is
# reported as higher / lower. The run's own resource columns are not lm-eval metrics:
# *_per_second is higher-better, the times and memory below lower-better.
NEUTRAL = {"claims_found", "length_words", "end_bits", "cell_wall_s"}
RESOURCE_LOWER = {"time_to_first_token_s", "peak_rss_mb", "wall_s", "cell_peak_rss_mb",
                  "metric_s"}
# The human reference row (harness.compare.run_reference_cell): the reference reviews scored
# as a cell. Tuned models are placed against its mean on these metrics (fluency, length,
# coverage): did tuning move them toward the human reference or away from it?
REFERENCE_MODEL, REFERENCE_VARIANT = "reference", "human"
TOWARD_REFERENCE = ("bits_per_byte", "fluency_score", "distinct_2", "length_words",
                    "attribute_coverage")


# --- loading -------------------------------------------------------------------------------

def load_run(run: Path) -> tuple[dict, list[dict]]:
    """The run's manifest and its cells with their saved results. A cell that failed in this
    run shows as failed with its reason and no numbers, even when its folder still holds a
    results.json from an earlier run (same key); a cell still pending shows the results
    written during this run only (the manifest is saved after the cell's results)."""
    run = Path(run)
    manifest = run / "run.json"
    if not manifest.exists():
        raise HarnessError(f"{run}: not a compare run (no run.json)")
    state = read_json(manifest)
    if not isinstance(state, dict) or not isinstance(state.get("cells"), list):
        raise HarnessError(f"{manifest}: not a compare run manifest (no \"cells\" list)")
    cells = []
    for i, c in enumerate(state["cells"]):
        if not isinstance(c, dict) or not {"key", "task", "status"} <= set(c):
            raise HarnessError(f"{manifest}: cells[{i}] has no key, task or status")
        cdir = run / "cells" / str(c["key"])
        res_file = cdir / "results.json"
        c = dict(c)
        fresh = res_file.exists() and (c["status"] in ("done", "cached") or (
            c["status"] == "pending"
            and res_file.stat().st_mtime >= float(state.get("started") or 0)))
        if fresh:
            c["results"] = read_json(res_file)
            sf = cdir / f"samples_{c['task']}.jsonl"
            c["samples"] = list(read_jsonl(sf)) if sf.exists() else []
            if c["status"] == "pending":
                c["status"] = "done"
            if c.get("wall_s") is None:   # a cached cell: its time is in its own results
                c["wall_s"] = c["results"].get("harness_cell", {}).get("wall_s")
        cells.append(c)
    return state, cells


def _metrics_of(cell: dict) -> dict:
    res = cell.get("results", {}).get("results", {}).get(cell["task"], {})
    out = {}
    for k, v in res.items():
        if "," not in k or "stderr" in k or not isinstance(v, (int, float)):
            continue
        out[k.split(",")[0]] = float(v)
    return out


def directions(cells: list[dict]) -> dict[str, bool]:
    """metric -> higher is better, as lm-eval wrote it into each cell's results
    (`higher_is_better`, per task, from the task YAML)."""
    out: dict[str, bool] = {}
    for c in cells:
        hib = (c.get("results") or {}).get("higher_is_better") or {}
        for m, v in (hib.get(c["task"]) or {}).items():
            if isinstance(v, bool):
                out.setdefault(m, v)
    return out


def higher_is_better(metric: str, dirs: dict[str, bool]) -> bool | None:
    """True / False, or None when the metric has no better direction (counts, lengths) or
    none is known."""
    if metric in NEUTRAL:
        return None
    if metric in dirs:
        return dirs[metric]
    if metric.endswith("_per_second"):
        return True
    return False if metric in RESOURCE_LOWER else None


def _per_sample(cell: dict, metric: str) -> dict:
    """doc_id -> per-sample value of a metric."""
    out = {}
    for s in cell.get("samples", []):
        v = s.get(metric)
        if isinstance(v, bool):
            v = float(v)
        if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)):
            out[s["doc_id"]] = float(v)
    return out


def summary_rows(cells: list[dict]) -> list[dict]:
    rows = []
    for c in cells:
        row = {k: c.get(k) for k in ID_COLS if k != "n"}
        row["adapter"] = Path(c["adapter"]).name if c.get("adapter") else ""
        row["n"] = len(c.get("samples", [])) or None
        row.update(_metrics_of(c))
        tp = c.get("results", {}).get("throughput", {})
        for k in THROUGHPUT:
            row[k] = tp.get(k)
        row["cell_wall_s"] = c.get("wall_s")
        hc = c.get("results", {}).get("harness_cell", {})
        for k in CELL_COLS:   # scoring seconds and the cell's own peak RSS (harness.compare)
            row[k] = c.get(k) if c.get(k) is not None else hc.get(k)
        row["key"] = c.get("key")
        rows.append(row)
    return rows


def baseline_rows(tasks: list[str], data) -> list[dict]:
    """Classical baselines of the classification / recommendation tasks, as extra rows."""
    try:
        from ..tasks.baselines import baseline_scores
    except ImportError:
        return []
    rows = []
    for task in tasks:
        try:
            scores = baseline_scores(task, data)
        except (HarnessError, KeyError, ValueError):
            continue
        for name, metrics in (scores or {}).items():
            rows.append({"model": f"baseline:{name}", "variant": "baseline", "adapter": "",
                         "backend": "sklearn/python", "task": task, "status": "done",
                         "reason": "", **metrics})
    return rows
