"""The compare report, part 2: tuned − base with paired bootstrap CIs, the verdict per tuned
variant, the most changed documents, and where tuned models sit against the human reference."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .summary import (PRIMARY, REFERENCE_MODEL, REFERENCE_VARIANT, TOWARD_REFERENCE, directions,
                      higher_is_better, _metrics_of, _per_sample)


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
