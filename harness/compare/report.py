"""Report stage: a finished (or partial) compare run directory -> summary.csv/json, stats,
PNG plots, report.md, a self-contained report.html and Rich tables. Reads saved files only, so
`harness report RUN` re-renders without running a model."""
from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

import numpy as np

from ..errors import HarnessError
from ..files import read_json, read_jsonl, write_json, write_text
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


# --- statistics ----------------------------------------------------------------------------

def comparisons(cells: list[dict], n_boot: int = 2000, seed: int = 0) -> list[dict]:
    """Tuned minus base, per metric, on the same documents, with paired bootstrap 95% CIs."""
    base = {(c["model"], c["backend"], c["task"]): c for c in cells
            if c["variant"] == "base" and c.get("samples")}
    dirs = directions(cells)
    out = []
    for c in cells:
        if c["variant"] == "base" or not c.get("samples"):
            continue
        b = base.get((c["model"], c["backend"], c["task"]))
        if b is None:
            continue
        from ..metrics.bootstrap import paired_bootstrap
        for metric in sorted(set(_metrics_of(c)) & set(_metrics_of(b))):
            xb, xt = _per_sample(b, metric), _per_sample(c, metric)
            ids = sorted(set(xb) & set(xt))
            if len(ids) < 2:
                continue
            st = paired_bootstrap([xb[i] for i in ids], [xt[i] for i in ids], n_boot=n_boot,
                                  seed=seed)
            out.append({"model": c["model"], "variant": c["variant"],
                        "adapter": Path(c["adapter"]).name if c.get("adapter") else "",
                        "backend": c["backend"], "task": c["task"], "metric": metric,
                        "base": float(np.mean([xb[i] for i in ids])),
                        "tuned": float(np.mean([xt[i] for i in ids])),
                        "diff": st["diff"], "lo": st["lo"], "hi": st["hi"],
                        "p_value": st.get("p_value"), "n": len(ids),
                        "better": _better(higher_is_better(metric, dirs), st)})
    return out


def _better(higher: bool | None, st: dict) -> str:
    """The paired-bootstrap verdict in words: better / worse when the CI excludes zero and the
    metric has a direction, higher / lower when it has none."""
    if st["lo"] > 0:
        return "higher" if higher is None else "better" if higher else "worse"
    if st["hi"] < 0:
        return "lower" if higher is None else "worse" if higher else "better"
    return "no significant change"


def _primary(task: str, metrics: set[str]) -> str | None:
    for m in PRIMARY.get(task, ()):
        if m in metrics:
            return m
    return sorted(metrics)[0] if metrics else None


def sample_diffs(cells: list[dict], k: int = 3) -> list[dict]:
    """Per tuned cell: the k most improved and k most regressed documents on the primary metric,
    with the base and tuned outputs side by side."""
    base = {(c["model"], c["backend"], c["task"]): c for c in cells
            if c["variant"] == "base" and c.get("samples")}
    dirs = directions(cells)
    out = []
    for c in cells:
        b = base.get((c["model"], c["backend"], c["task"]))
        if c["variant"] == "base" or not c.get("samples") or b is None:
            continue
        # the first metric (task's primary ones first) on which some document changed
        present = set(_metrics_of(c)) & set(_metrics_of(b))
        order = [m for m in PRIMARY.get(c["task"], ()) if m in present] + sorted(present)
        for metric in order:
            xb, xt = _per_sample(b, metric), _per_sample(c, metric)
            if any(xt[i] != xb[i] for i in set(xb) & set(xt)):
                break
        else:
            continue
        sign = -1.0 if higher_is_better(metric, dirs) is False else 1.0
        bs = {s["doc_id"]: s for s in b["samples"]}
        ts = {s["doc_id"]: s for s in c["samples"]}
        diffs = sorted(((sign * (xt[i] - xb[i]), i) for i in set(xb) & set(xt)))
        pick = [("regressed", d, i) for d, i in diffs[:k] if d < 0] + \
               [("improved", d, i) for d, i in reversed(diffs[-k:]) if d > 0]
        for kind, d, i in pick:
            out.append({"model": c["model"], "variant": c["variant"], "backend": c["backend"],
                        "task": c["task"], "metric": metric, "kind": kind, "doc_id": i,
                        "product": _title(bs[i]), "base_value": xb[i], "tuned_value": xt[i],
                        "base_output": _resp(bs[i]), "tuned_output": _resp(ts[i])})
    return out


def _is_reference(cell_or_row: dict) -> bool:
    return cell_or_row.get("model") == REFERENCE_MODEL and \
        cell_or_row.get("variant") == REFERENCE_VARIANT


def reference_shift(cells: list[dict], comps: list[dict]) -> list[dict]:
    """Per tuned cell and TOWARD_REFERENCE metric: base, tuned and human-reference means on the
    documents all three scored, and whether tuned is nearer the reference mean than base
    ("toward"), farther ("away from") or as near ("unchanged"); `ci` is the tuned − base paired
    bootstrap verdict from comparisons()."""
    refs = {c["task"]: c for c in cells if _is_reference(c) and c.get("samples")}
    base = {(c["model"], c["backend"], c["task"]): c for c in cells
            if c["variant"] == "base" and c.get("samples")}
    verdicts = {(c["model"], c["variant"], c["adapter"], c["backend"], c["task"], c["metric"]):
                c for c in comps}
    out = []
    for c in cells:
        ref, b = refs.get(c["task"]), base.get((c["model"], c["backend"], c["task"]))
        if ref is None or b is None or c is b or _is_reference(c) or not c.get("samples"):
            continue
        adapter = Path(c["adapter"]).name if c.get("adapter") else ""
        for metric in TOWARD_REFERENCE:
            xr, xb, xt = (_per_sample(x, metric) for x in (ref, b, c))
            ids = sorted(set(xr) & set(xb) & set(xt))
            if not ids:
                continue
            mr, mb, mt = (float(np.mean([x[i] for i in ids])) for x in (xr, xb, xt))
            db, dt = abs(mb - mr), abs(mt - mr)
            moved = "unchanged" if math.isclose(db, dt, abs_tol=1e-12) else \
                "toward" if dt < db else "away from"
            comp = verdicts.get((c["model"], c["variant"], adapter, c["backend"], c["task"],
                                 metric))
            out.append({"model": c["model"], "variant": c["variant"], "adapter": adapter,
                        "backend": c["backend"], "task": c["task"], "metric": metric,
                        "reference": mr, "base": mb, "tuned": mt, "n": len(ids),
                        "moved": moved, "ci": (f"[{comp['lo']:+.4g}, {comp['hi']:+.4g}]"
                                               if comp else ""),
                        "significant": bool(comp) and (comp["lo"] > 0 or comp["hi"] < 0)})
    return out


def _title(sample: dict) -> str:
    doc = sample.get("doc", {})
    try:
        rec = json.loads(doc["record"]) if "record" in doc else doc
        return rec.get("product", {}).get("title") or rec.get("title") or str(rec.get("id", ""))
    except (ValueError, TypeError):
        return ""


def _resp(sample: dict) -> str:
    """The generated text; for a loglikelihood-ranked document (multiple choice, next item)
    the top-ranked choice by raw loglikelihood and the gold one, not a bare number."""
    choices = [a[1] for a in sample.get("arguments") or []
               if isinstance(a, (list, tuple)) and len(a) == 2]
    lls = [r[0] if isinstance(r, (list, tuple)) else r for r in sample.get("resps") or []]
    lls = [x[0] if isinstance(x, (list, tuple)) else x for x in lls]
    if len(choices) > 1 and len(lls) == len(choices):
        try:
            lls = [float(x) for x in lls]
        except (TypeError, ValueError):
            lls = []
        if lls:
            top = max(range(len(lls)), key=lls.__getitem__)
            gold = sample.get("target")
            rank = 1 + sum(x > lls[gold] for x in lls) if isinstance(gold, int) and \
                0 <= gold < len(lls) else None
            text = f"top choice {choices[top].strip()!r}"
            if rank is not None:
                text += f"; gold {choices[gold].strip()!r} ranked {rank} of {len(lls)}"
            return text + " (raw loglikelihood)"
    r = sample.get("filtered_resps") or sample.get("resps") or [""]
    while isinstance(r, list) and r:
        r = r[0]
    return str(r) if not isinstance(r, list) else ""


# --- plots ---------------------------------------------------------------------------------

def _bootstrap_mean_ci(values: list[float], n_boot: int = 1000, seed: int = 0):
    if len(values) < 2:
        return (float("nan"),) * 2
    rng = np.random.default_rng(seed)
    v = np.asarray(values)
    means = v[rng.integers(0, len(v), size=(n_boot, len(v)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def plots(cells: list[dict], rows: list[dict], out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    dirs = directions(cells)
    done = [c for c in cells if c.get("samples")]
    for task in sorted({c["task"] for c in done}):
        tc = [c for c in done if c["task"] == task]
        common = set.intersection(*[set(_metrics_of(c)) for c in tc if not _is_reference(c)]
                                  or [set()])
        metrics = [m for m in KEY_METRICS.get(task, ()) if m in common] or sorted(common)[:8]
        if not metrics:
            continue
        ncol = min(4, len(metrics))
        nrow = math.ceil(len(metrics) / ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(3.4 * ncol, 3.6 * nrow), squeeze=False)
        for ax in axes.flat[len(metrics):]:
            ax.set_visible(False)
        labels = [f"{SHORT.get(c['model'], c['model'])}\n{SHORT.get(c['variant'], c['variant'])}"
                  f"\n{c['backend']}" for c in tc]
        for ax, m in zip(axes.flat, metrics):
            means, errs = [], [[], []]
            for c in tc:
                vals = list(_per_sample(c, m).values())
                mu = float(np.mean(vals)) if vals else float("nan")
                lo, hi = _bootstrap_mean_ci(vals)
                means.append(mu)
                errs[0].append(max(mu - lo, 0) if not math.isnan(lo) else 0)
                errs[1].append(max(hi - mu, 0) if not math.isnan(hi) else 0)
            ax.bar(range(len(tc)), means, yerr=errs, capsize=3,
                   color=["#999999" if _is_reference(c) else "#4c72b0" if c["variant"] == "base"
                          else "#dd8452" for c in tc])
            ax.set_title(m + (" (lower better)" if higher_is_better(m, dirs) is False else ""),
                         fontsize=9)
            ax.set_xticks(range(len(tc)), labels, fontsize=6, rotation=60, ha="right")
        fig.suptitle(f"{task}: mean per metric, 95% bootstrap CI (blue base, orange tuned, "
                     f"grey human reference)", fontsize=10)
        fig.tight_layout()
        p = out / f"metrics_{task}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        made.append(p)

        # quality vs generation speed
        prim = _primary(task, set(metrics))
        pts = [(r.get("generation_tokens_per_second"), r.get(prim), r) for r in rows
               if r["task"] == task and r.get("status") in ("done", "cached")]
        pts = [p_ for p_ in pts if p_[0] and p_[1] is not None]
        if pts and prim:
            fig, ax = plt.subplots(figsize=(6, 4))
            for x, y, r in pts:
                ax.scatter(x, y, marker="o" if r["backend"] == "llama-cpp" else "s",
                           color="#4c72b0" if r["variant"] == "base" else "#dd8452")
                ax.annotate(f"{r['model']} {r['variant']} {r['backend']}", (x, y), fontsize=6)
            ax.set_xlabel("generation tokens/s (CPU)")
            ax.set_ylabel(prim + (" (lower better)" if higher_is_better(prim, dirs) is False
                                  else ""))
            ax.set_title(f"{task}: quality vs speed (circle llama.cpp, square transformers)",
                         fontsize=9)
            fig.tight_layout()
            p = out / f"quality_vs_speed_{task}.png"
            fig.savefig(p, dpi=110)
            plt.close(fig)
            made.append(p)

    # hallucination by claim kind (per-claim detail kept in the samples by the metric)
    kinds: dict[str, dict[str, list[int]]] = {}
    for c in done:
        if c["task"] != "product_review":
            continue
        label = f"{c['model']} {c['variant']} {c['backend']}"
        for s in c["samples"]:
            for claim in _claims(s):
                k = claim.get("kind", "other")
                tot = kinds.setdefault(label, {}).setdefault(k, [0, 0])
                tot[0] += 1
                tot[1] += claim.get("status") in ("unsupported", "contradicted")
    if kinds:
        all_kinds = sorted({k for v in kinds.values() for k in v})
        fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(all_kinds)), 4))
        w = 0.8 / max(len(kinds), 1)
        for j, (label, per) in enumerate(sorted(kinds.items())):
            rates = [per.get(k, [0, 0])[1] / per[k][0] if per.get(k, [0])[0] else 0
                     for k in all_kinds]
            ax.bar(np.arange(len(all_kinds)) + j * w, rates, w, label=label)
        ax.set_xticks(np.arange(len(all_kinds)) + 0.4 - w / 2, all_kinds, rotation=30,
                      fontsize=7, ha="right")
        ax.set_ylabel("unsupported or contradicted / claims")
        ax.set_title("product_review: hallucination by claim kind", fontsize=9)
        ax.legend(fontsize=6)
        fig.tight_layout()
        p = out / "hallucination_by_kind.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        made.append(p)
    return made


def _claims(sample: dict) -> list[dict]:
    for key in ("hallucination_claims", "claims"):
        v = sample.get(key)
        if isinstance(v, str):
            try:
                v = json.loads(v)
            except ValueError:
                v = None
        if isinstance(v, list):
            return [c for c in v if isinstance(c, dict)]
    return []


# --- rendering -----------------------------------------------------------------------------

def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _table_cols(rows: list[dict]) -> list[str]:
    metric_cols = sorted({k for r in rows for k, v in r.items()
                          if k not in ID_COLS and k not in THROUGHPUT and k not in
                          ("cell_wall_s", "key", *CELL_COLS) and isinstance(v, (int, float))})
    return ["model", "variant", "adapter", "backend", "task", "status", "n", *metric_cols,
            "prompt_tokens_per_second", "generation_tokens_per_second",
            "aggregate_generation_tokens_per_second", "time_to_first_token_s", "peak_rss_mb",
            "cell_peak_rss_mb", "cell_wall_s", "metric_s"]


def _best(rows: list[dict], col: str, dirs: dict[str, bool]):
    vals = [r.get(col) for r in rows if isinstance(r.get(col), (int, float))
            and not r["model"].startswith("baseline:") and not _is_reference(r)]
    higher = higher_is_better(col, dirs)
    if len(vals) < 2 or higher is None or col in ("n", "cell_wall_s", *CELL_COLS):
        return None
    return max(vals) if higher else min(vals)


def _is_llm(row: dict) -> bool:
    return not row["model"].startswith("baseline:") and not _is_reference(row)


def verdicts(rows: list[dict], comps: list[dict]) -> list[dict]:
    """Per tuned variant, backend and task: tuned against its base in words, from
    comparisons(). A metric is improved / regressed only when its paired bootstrap 95% CI
    excludes zero, in the direction the results' higher_is_better gives it; `overall` judges
    the task's primary metrics (PRIMARY): better, worse, mixed or no significant difference."""
    groups: dict[tuple, list[dict]] = {}
    for c in comps:
        groups.setdefault((c["model"], c["variant"], c["adapter"], c["backend"], c["task"]),
                          []).append(c)
    by_row = {(r["model"], r["variant"], r.get("adapter") or "", r["backend"], r["task"]): r
              for r in rows}
    out = []
    for (model, variant, adapter, backend, task), cs in groups.items():
        present = {c["metric"] for c in cs}
        prim = [m for m in PRIMARY.get(task, ()) if m in present]
        rank = {m: i for i, m in enumerate(prim)}
        cs = sorted(cs, key=lambda c: (rank.get(c["metric"], len(rank)), c["metric"]))
        kinds = {k: [c["metric"] for c in cs if c["better"] in v] for k, v in (
            ("improved", ("better",)), ("regressed", ("worse",)),
            ("changed", ("higher", "lower")), ("unchanged", ("no significant change",)))}
        up, down = set(kinds["improved"]) & set(prim), set(kinds["regressed"]) & set(prim)
        overall = "mixed" if up and down else "better" if up else "worse" if down else \
            "no significant difference"
        base_row = by_row.get((model, "base", "", backend, task), {})
        tuned_row = by_row.get((model, variant, adapter, backend, task), {})
        out.append({"model": model, "variant": variant, "adapter": adapter, "backend": backend,
                    "task": task, "n": max(c["n"] for c in cs), "overall": overall,
                    "primary": prim, **kinds,
                    "speed": {k: [base_row.get(k), tuned_row.get(k)]
                              for k in ("generation_tokens_per_second", "peak_rss_mb")}})
    return out


def _comp_words(c: dict) -> str:
    return (f"{c['metric']} {c['base']:.3g} → {c['tuned']:.3g} ({c['diff']:+.3g}, "
            f"95% CI [{c['lo']:+.3g}, {c['hi']:+.3g}])")


def _same_words(c: dict) -> str:
    if c["lo"] == c["hi"] == 0:
        return f"{c['metric']} (the same on every document)"
    return f"{c['metric']} ({c['diff']:+.3g}, 95% CI [{c['lo']:+.3g}, {c['hi']:+.3g}])"


def _verdict_md(rows: list[dict], comps: list[dict], verdict: list[dict]) -> list[str]:
    by_key = {(c["model"], c["variant"], c["adapter"], c["backend"], c["task"], c["metric"]): c
              for c in comps}
    prim = {t: ", ".join(PRIMARY[t]) for t in sorted({v["task"] for v in verdict})
            if t in PRIMARY}
    lines = ["## Verdict", ""]
    if verdict:
        lines += ["Each tuned model against its base model on the same test documents "
                  "(tuned − base, paired bootstrap 95% CI). A metric counts as improved or "
                  "regressed only when its CI excludes zero, in the direction the results' "
                  "`higher_is_better` gives it; the overall word judges the task's primary "
                  "metrics (" + "; ".join(f"{t}: {m}" for t, m in prim.items()) + ").", ""]
    models = list(dict.fromkeys(r["model"] for r in rows if _is_llm(r)))
    for model in models:
        mine = [v for v in verdict if v["model"] == model]
        mrows = [r for r in rows if r["model"] == model]
        if all(r.get("status") == "unavailable" for r in mrows):
            continue
        lines += [f"### {model}", ""]
        if not mine:
            tuned = [r for r in mrows if r["variant"] != "base"]
            lines += ["- no verdict: " + (
                "its tuned cells have no result to compare (failed or no per-document "
                "samples)" if tuned else "base only, no tuned variant in this run") + ".", ""]
            continue
        for v in mine:
            key = (v["model"], v["variant"], v["adapter"], v["backend"], v["task"])
            words = {k: [_comp_words(by_key[(*key, m)]) for m in v[k]]
                     for k in ("improved", "regressed", "changed")}
            lines.append(f"- **{v['variant']}**" + (f" (`{v['adapter']}`)" if v["adapter"]
                                                     else "") +
                         f" vs base, {v['backend']}, {v['task']}, {v['n']} documents: "
                         f"**{v['overall']}** on the primary metrics.")
            lines += [f"  - {label}: " + "; ".join(words[k]) + "." for k, label in (
                ("improved", "improved"), ("regressed", "regressed"),
                ("changed", "changed (no better direction)")) if words[k]]
            same_p = [m for m in v["unchanged"] if m in v["primary"]]
            rest = len(v["unchanged"]) - len(same_p)
            if v["unchanged"]:
                lines.append("  - no significant change: " + "; ".join(
                    _same_words(by_key[(*key, m)]) for m in same_p) +
                    (" and " if same_p and rest else "") +
                    (f"{rest} other metric{'s' * (rest != 1)}" if rest else "") + ".")
            (gb, gt), (mb, mt) = (v["speed"][k] for k in ("generation_tokens_per_second",
                                                          "peak_rss_mb"))
            if gb is not None and gt is not None:
                lines.append(f"  - speed: {gb:.3g} → {gt:.3g} generated tokens/s"
                             + (f", peak RSS {mb:.0f} → {mt:.0f} MB" if mb and mt else "")
                             + " (one measurement each, no CI).")
            if v["n"] < 10:
                lines.append(f"  - only {v['n']} documents: the CIs are wide; read this as a "
                             f"smoke test, not a measurement.")
        lines.append("")
    un = sorted({r["model"] for r in rows if r.get("status") == "unavailable"} -
                {r["model"] for r in rows if r.get("status") != "unavailable"})
    if un:
        lines += [f"Not run: {', '.join(un)} (no weights here; how to enable them is under "
                  f"\"Unavailable models\" below).", ""]
    failed = [r for r in rows if r.get("status") == "failed"]
    if failed:
        lines += [f"{len(failed)} cell{'s' * (len(failed) != 1)} failed (reasons under "
                  f"\"Failed cells\" below): no numbers from them.", ""]
    return lines


def _key_cols(task: str, tr: list[dict]) -> list[str]:
    present = {k for r in tr for k, v in r.items() if isinstance(v, (int, float))}
    metrics = [m for m in KEY_TABLE.get(task, PRIMARY.get(task, ())) if m in present]
    if not metrics:
        metrics = [c for c in _table_cols(tr) if c in present and c not in THROUGHPUT
                   and c not in ("n", "cell_wall_s", *CELL_COLS)][:5]
    speed = next(([k] for k in KEY_SPEED if k in present), [])
    return ["model", "variant", "backend", "n", *metrics, *speed]


def _table_md(tr: list[dict], cols: list[str], dirs: dict[str, bool], arrows=False) -> list[str]:
    """A Markdown table; `arrows` (the key table): ↓ on lower-is-better columns, short
    throughput names."""
    head = [(SHORT.get(c, c) if c in THROUGHPUT else c) +
            (" ↓" if higher_is_better(c, dirs) is False else "") if arrows else c for c in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(cols)]
    best = {c: _best(tr, c, dirs) for c in cols}
    for r in tr:
        cells = []
        for c in cols:
            s = _fmt(r.get(c))
            if s and _is_llm(r) and best[c] is not None and r.get(c) == best[c]:
                s = f"**{s}**"
            cells.append(s.replace("|", "\\|"))
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def markdown(state: dict, rows, comps, diffs, pngs, shifts=(), dirs=None,
             verdict=None) -> str:
    """report.md: the verdict first, then a key-metric table per task, then per task the full
    table and the statistics; unavailable models (each once), failed cells, plots."""
    dirs = dirs or {}
    verdict = verdicts(rows, comps) if verdict is None else verdict
    cfg = state.get("config", {})
    tasks = sorted({r["task"] for r in rows})
    lines = ["# Comparison report", "",
             f"Command: `harness compare --models {_models_arg(cfg)} --tasks "
             f"{','.join(cfg.get('tasks', []))} --backends {','.join(cfg.get('backends', []))}"
             + (f" --limit {cfg['limit']}" if cfg.get("limit") else "")
             + (f" --data {cfg['data']}" if cfg.get("data") else "") + "`", "",
             f"Wall time of this invocation: {state.get('wall_s', 'unfinished')} s (a resumed "
             f"run counts only the cells it ran); model time of all cells: "
             f"{sum(r.get('cell_wall_s') or 0 for r in rows):.1f} s. Throughput is measured on "
             f"this machine's CPU.", ""]
    lines += _verdict_md(rows, comps, verdict)
    lines += ["## Key metrics", "",
              "Per task: its primary metrics and speed (↓ lower is better; bold = best in "
              "column among the LLM rows). Every metric is in the full tables further down.",
              ""]
    for task in tasks:
        tr = [r for r in rows if r["task"] == task and r.get("status") in ("done", "cached")]
        if tr:
            lines += [f"### {task}: key metrics", ""] + _table_md(tr, _key_cols(task, tr), dirs,
                                                                  arrows=True)
    for task in tasks:
        tr = [r for r in rows if r["task"] == task]
        cols = [c for c in _table_cols(tr) if any(r.get(c) not in (None, "") for r in tr)]
        lines += [f"## {task}", "", "All metrics (bold = best in column among the LLM rows; "
                  "directions from the results' higher_is_better).", ""]
        lines += _table_md(tr, cols, dirs)
        if any(_is_reference(r) for r in tr):
            lines += [f"Row `{REFERENCE_MODEL} · {REFERENCE_VARIANT}`: the human reference "
                      f"reviews of the same products, scored with the same metrics (no model, "
                      f"no backend); the metrics that compare a text with its own reference "
                      f"(rouge_l, relevance_reference, parent_*) are empty for it.", ""]
        tc = [c for c in comps if c["task"] == task]
        if tc:
            lines += ["### Tuned minus base (paired bootstrap 95% CI, same documents)", "",
                      "| model | variant | backend | metric | base | tuned | diff | 95% CI | verdict |",
                      "|---|---|---|---|---|---|---|---|---|"]
            for c in tc:
                lines.append(f"| {c['model']} | {c['variant']} | {c['backend']} | {c['metric']} | "
                             f"{c['base']:.4g} | {c['tuned']:.4g} | {c['diff']:+.4g} | "
                             f"[{c['lo']:+.4g}, {c['hi']:+.4g}] | {c['better']} |")
            lines.append("")
        ts = [x for x in shifts if x["task"] == task]
        if ts:
            lines += ["### Toward or away from the human reference", "",
                      "Is each tuned model's mean nearer the human reference row's mean than "
                      "its base model's (same documents)? CI: tuned − base, paired bootstrap "
                      "95%.", "",
                      "| model | variant | backend | metric | reference | base | tuned | moved | "
                      "tuned − base 95% CI |", "|---|---|---|---|---|---|---|---|---|"]
            for x in ts:
                moved = "unchanged" if x["moved"] == "unchanged" else \
                    f"{x['moved']} the human reference" + \
                    ("" if x["significant"] else " (not significant)")
                lines.append(f"| {x['model']} | {x['variant']} | {x['backend']} | {x['metric']} | "
                             f"{x['reference']:.4g} | {x['base']:.4g} | {x['tuned']:.4g} | "
                             f"{moved} | {x['ci']} |")
            lines.append("")
        td = [d for d in diffs if d["task"] == task]
        if td:
            lines += ["### Per-sample differences (most improved and most regressed)", ""]
            for d in td:
                lines += [f"- **{d['kind']}** ({d['model']} {d['variant']} {d['backend']}, "
                          f"{d['metric']} {d['base_value']:.3g} → {d['tuned_value']:.3g}): "
                          f"*{d['product'][:120]}*",
                          f"  - base: {d['base_output'][:400]!r}",
                          f"  - tuned: {d['tuned_output'][:400]!r}"]
            lines.append("")
    lines += _unavailable_md(rows)
    failed = [r for r in rows if r.get("status") == "failed"]
    if failed:
        lines += ["## Failed cells", ""] + [f"- {r['model']} {r['variant']} {r['backend']} "
                                             f"{r['task']}: {r['reason']}" for r in failed] + [""]
    lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in pngs] + [""]
    return "\n".join(lines)


def _unavailable_md(rows: list[dict]) -> list[str]:
    """Each unavailable model once, with the backends it is missing on and how to enable it."""
    un: dict[str, dict[str, list[str]]] = {}
    for r in rows:
        if r.get("status") == "unavailable":
            backends = un.setdefault(r["model"], {}).setdefault(r.get("reason") or "", [])
            if r["backend"] not in backends:
                backends.append(r["backend"])
    if not un:
        return []
    lines = ["## Unavailable models", ""]
    for model, reasons in sorted(un.items()):
        for why, backends in reasons.items():
            lines.append(f"- `{model}` ({', '.join(backends)}): {why}")
    return lines + [""]


def _models_arg(cfg: dict) -> str:
    m = cfg.get("models", "all")
    return m if isinstance(m, str) else ",".join(m)


def html_report(md_rows_html: str, pngs: list[Path], title: str) -> str:
    imgs = "".join(
        f'<figure><img alt="{p.stem}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}"><figcaption>{p.stem}</figcaption></figure>'
        for p in pngs)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}}
table{{border-collapse:collapse;font-size:12px;margin:1em 0}}td,th{{border:1px solid #ccc;
padding:3px 6px}}th{{background:#eee}}td b{{color:#0a6}}img{{max-width:100%}}
code{{background:#f4f4f4}}.tw{{overflow-x:auto}}figure{{margin:1em 0}}</style></head><body>
{md_rows_html}{imgs}
</body></html>"""


def _md_to_html(md: str) -> str:
    """Just enough Markdown for our own report: headings, tables, lists, bold, code."""
    import re

    out, in_table, seen = [], False, {}
    for line in md.splitlines():
        esc = html.escape(line)
        esc = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", esc)
        esc = re.sub(r"`(.+?)`", r"<code>\1</code>", esc)
        esc = re.sub(r"\*(.+?)\*", r"<i>\1</i>", esc)
        if line.startswith("|"):
            cells = [c.strip() for c in esc.strip("|").split("|")]
            if set(line.replace("|", "").strip()) <= {"-"}:
                continue
            if not in_table:
                out.append("<div class='tw'><table><tr>" +
                           "".join(f"<th>{c}</th>" for c in cells) + "</tr>")
                in_table = True
            else:
                out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
            continue
        if in_table:
            out.append("</table></div>")
            in_table = False
        if line.startswith("!["):
            continue  # images are embedded separately
        m = re.match(r"^(#+) (.*)", esc)
        if m:
            slug = re.sub(r"[^a-z0-9]+", "-", re.sub(r"<[^>]+>", "", m.group(2)).lower())
            slug = slug.strip("-") or "section"
            seen[slug] = seen.get(slug, 0) + 1   # ids stay unique: "-2", "-3" on repeats
            slug += f"-{seen[slug]}" if seen[slug] > 1 else ""
            out.append(f"<h{len(m.group(1))} id='{slug}'>{m.group(2)}</h{len(m.group(1))}>")
        elif line.strip().startswith("- "):
            out.append(f"<div style='margin-left:{(len(line) - len(line.lstrip())) * 8}px'>• "
                       f"{esc.strip()[2:]}</div>")
        elif esc.strip():
            out.append(f"<p>{esc}</p>")
    if in_table:
        out.append("</table></div>")
    return "\n".join(out)


def render(run: Path, console=None) -> dict:
    """Write summary.csv/json, stats.json, plots, report.md and report.html for a run."""
    import pandas as pd

    run = Path(run)
    state, cells = load_run(run)
    rows = summary_rows(cells)
    cfg = state.get("config", {})
    rows += baseline_rows(sorted({c["task"] for c in cells} - {"product_review"}),
                          cfg.get("data"))
    comps = comparisons(cells)
    diffs = sample_diffs(cells)
    shifts = reference_shift(cells, comps)
    dirs = directions(cells)
    verdict = verdicts(rows, comps)
    df = pd.DataFrame(rows)
    from ..files import atomic_path
    with atomic_path(run / "summary.csv") as tmp:
        df.to_csv(tmp, index=False)
    write_json(run / "summary.json", {"rows": rows, "comparisons": comps, "sample_diffs": diffs,
                                      "reference_shift": shifts, "verdicts": verdict,
                                      "higher_is_better": dirs, "config": cfg,
                                      "wall_s": state.get("wall_s")})
    pngs = plots(cells, rows, run)
    md = markdown(state, rows, comps, diffs, pngs, shifts, dirs, verdict)
    write_text(run / "report.md", md)
    write_text(run / "report.html", html_report(_md_to_html(md), pngs, f"harness compare {run.name}"))
    if console is not None:
        print_tables(rows, comps, console, dirs)
    return {"rows": rows, "comparisons": comps, "plots": pngs, "dir": run}


def print_tables(rows, comps, console, dirs=None) -> None:
    """The terminal's view: per task the key metrics of the rows that ran, tuned − base on
    them, then each unavailable model once and one verdict line per tuned variant."""
    from rich.table import Table

    dirs = dirs or {}
    for task in sorted({r["task"] for r in rows}):
        tr = [r for r in rows if r["task"] == task and r.get("status") != "unavailable"]
        if not tr:
            continue
        present = {k for r in tr for k, v in r.items() if isinstance(v, (int, float))}
        metrics = [m for m in KEY_METRICS.get(task, ()) if m in present] or \
            [c for c in _table_cols(tr)[7:-7] if c in present][:6]
        cols = ["model", "variant", "backend", "status", "n", *metrics,
                "generation_tokens_per_second", "prompt_tokens_per_second",
                "time_to_first_token_s", "peak_rss_mb"]
        t = Table(title=f"{task}", show_lines=False, pad_edge=False)
        for c in cols:
            t.add_column(SHORT.get(c, c), overflow="fold",
                         justify="right" if c not in ("model", "variant", "backend", "status")
                         else "left")
        for r in tr:
            vals = []
            for c in cols:
                s = SHORT.get(_fmt(r.get(c)), _fmt(r.get(c)))
                if s and _best(tr, c, dirs) is not None and r.get(c) == _best(tr, c, dirs):
                    s = f"[bold green]{s}[/]"
                vals.append(s)
            t.add_row(*vals)
        console.print(t)
        tc = [c for c in comps if c["task"] == task and c["metric"] in (metrics or [c["metric"]])]
        if tc:
            ct = Table(title=f"{task}: tuned − base (paired bootstrap 95% CI)")
            for c in ("model", "variant", "backend", "metric", "diff", "95% CI", "verdict"):
                ct.add_column(c)
            for c in tc:
                color = {"better": "green", "worse": "red"}.get(c["better"], "white")
                ct.add_row(SHORT.get(c["model"], c["model"]), SHORT.get(c["variant"], c["variant"]),
                           c["backend"], c["metric"], f"{c['diff']:+.4g}",
                           f"[{c['lo']:+.4g}, {c['hi']:+.4g}]", f"[{color}]{c['better']}[/]")
            console.print(ct)
    from rich.text import Text

    for line in _unavailable_md(rows)[2:-1]:   # no markup: reasons hold square brackets
        console.print(Text.assemble(("unavailable ", "yellow"), line[2:]), soft_wrap=True)
    for v in verdicts(rows, comps):
        color = {"better": "green", "worse": "red", "mixed": "yellow"}.get(v["overall"], "white")
        console.print(Text.assemble(
            ("verdict ", "bold"), f"{v['model']} {v['variant']} vs base, {v['backend']}, "
            f"{v['task']} (n={v['n']}): ", (v["overall"], color),
            *(f"; {k} {', '.join(v[k])}" for k in ("improved", "regressed") if v[k])),
            soft_wrap=True)
