"""The compare report, part 4: summary.csv/json, report.md, a self-contained report.html and
the terminal's Rich tables, from a run directory (saved files only: `harness report RUN`
re-renders without running a model)."""
from __future__ import annotations

import base64
import html
import math
from pathlib import Path


from ..files import write_json, write_text
from .plots import plots
from .stats import comparisons, _is_llm, _is_reference, reference_shift, sample_diffs, verdicts
from .summary import (CELL_COLS, ID_COLS, KEY_METRICS, KEY_SPEED, KEY_TABLE, PRIMARY,
                      REFERENCE_MODEL, REFERENCE_VARIANT, SHORT, THROUGHPUT, baseline_rows,
                      directions, higher_is_better, load_run, summary_rows)


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
