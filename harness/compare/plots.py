"""The compare report, part 3: PNG plots (metric bars with bootstrap CIs, quality against
speed, hallucination by claim kind)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..metrics.bootstrap import mean_ci
from .stats import _is_reference, _primary
from .summary import KEY_METRICS, SHORT, directions, higher_is_better, _metrics_of, _per_sample


# --- plots ---------------------------------------------------------------------------------

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
                lo, hi = mean_ci(vals)
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
