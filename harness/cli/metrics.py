"""`harness` commands of the metrics stage: `harness score RESULTS_DIR` and
`harness metrics validate`. The logic lives in harness.evaluate.rescore and harness.metrics.validation."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console()
PANEL = "Metrics"
SHOWN = ("hallucination_rate", "hallucination_claims", "contradiction", "claims_found",
         "bits_per_byte", "fluency_score", "distinct_2", "repeated_3gram_rate", "degenerate",
         "relevance_product", "relevance_reference", "attribute_coverage", "rouge_l",
         "nli_unsupported_rate")


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=True)


def _part_bars(prog: Progress):
    """progress(part, advance, total): one bar per part of a validation."""
    tasks: dict = {}

    def progress(part, k, total):
        if part not in tasks:
            tasks[part] = prog.add_task(part, total=total)
        prog.advance(tasks[part], k)
    return progress


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else ("" if v is None else str(v))


def score_cmd(
    results_dir: Path = typer.Argument(..., help="A results folder (searched recursively for "
                                       "samples_product_review*.jsonl) or one samples file."),
    out: Optional[Path] = typer.Option(None, "--output", help="Write scores here (mirrors "
                                       "the folders) instead of next to each samples file."),
    model_under_test: Optional[str] = typer.Option(
        None, "--model-under-test", help="Registry name / path of the evaluated model "
        "[default: from the results JSON]; picks the fluency reference LM."),
    fluency_reference: Optional[str] = typer.Option(
        None, "--fluency-reference", help="Reference LM for bits per byte (name, GGUF path, "
        "or 'none') [default: the bundled model other than the one under test]."),
    nli_model: Optional[str] = typer.Option(None, "--nli-model",
                                            help="Local NLI model directory (optional tier)."),
    scorers: Optional[str] = typer.Option(None, "--scorers", help="Comma-separated subset "
                                          "of: hallucination,fluency,relevance,nli."),
    out_alias: Optional[Path] = typer.Option(None, "--out", hidden=True),
):
    """(Re)score saved product_review samples in this process: hallucination, fluency and
    relevance per sample and per run → scores_*.jsonl / scores_*.json."""
    from ..evaluate.rescore import count_samples, rescore

    out = out or out_alias
    total = count_samples(results_dir)
    overrides = {"model_under_test": model_under_test, "fluency_reference": fluency_reference,
                 "nli_model": nli_model, "scorers": scorers}
    with _progress() as prog:
        task = prog.add_task("scoring", total=total)
        summaries = rescore(results_dir, out, overrides, lambda k: prog.advance(task, k))
    t = Table(title="product_review scores (run figures)")
    t.add_column("metric")
    for i, _ in enumerate(summaries):
        t.add_column(f"run {i + 1}", justify="right")
    keys = [k for k in SHOWN if any(k in s["aggregate"] for s in summaries)]
    for k in ["n"] + keys:
        t.add_row(k, *(_fmt(s["aggregate"].get(k)) for s in summaries))
    console.print(t)
    for i, s in enumerate(summaries, 1):
        c = s["config"]
        console.print(f"run {i}: {s['samples_file']}\n  fluency reference: "
                      f"{c['fluency_reference']}; model under test: {c['model_under_test']}\n"
                      f"  → {', '.join(s['files'])}", highlight=False)


def validate_cmd(
    extra_gold: Optional[List[Path]] = typer.Argument(
        None, metavar="FILE", show_default=False,
        help="More gold files (with --gold: `--gold a.jsonl b.jsonl`)."),
    gold: Optional[List[Path]] = typer.Option(
        None, "--gold", help="Gold JSONL file(s) labelled by reading (tests/data/gold_*.jsonl): "
        "claim-level precision / recall / F1, review-level false flags, fluency flags, "
        "within-category relevance, inter-annotator kappa, with bootstrap 95% CIs, on the "
        "test half; writes gold_validation.json; exit code 1 when an acceptance value is "
        "missed."),
    raw_dir: Optional[Path] = typer.Option(None, "--raw-dir", help="Raw data folder "
                                           "(e.g. ../shared/data); prepared in a temp folder."),
    data: Optional[Path] = typer.Option(None, "--data", help="An already prepared folder "
                                        "instead of --raw-dir (with --gold: default the "
                                        "project's prepared data)."),
    out: Optional[Path] = typer.Option(None, "--output", help="Folder for validation.json "
                                       "(gold_validation.json with --gold)."),
    seed: int = typer.Option(0, "--seed"),
    n_fluency: int = typer.Option(200, "--n-fluency", help="Real reviews in the fluency test "
                                  "(each with 3 perturbed versions)."),
    n_relevance: int = typer.Option(500, "--n-relevance", help="Own-vs-other review pairs."),
    fluency_reference: Optional[str] = typer.Option(
        None, "--fluency-reference", help="Reference LM (default: gemma3-270m; with --gold: "
        "the bundled model other than the one that wrote the review)."),
    only: Optional[str] = typer.Option(None, "--only", help="Comma-separated subset of "
                                       "hallucination,fluency,relevance (with --gold also "
                                       "agreement)."),
    half: str = typer.Option("test", "--half", help="With --gold: the half reported "
                             "(dev|test|all; by a stable hash of product_id)."),
    errors: Optional[Path] = typer.Option(None, "--errors", help="With --gold: write the error "
                                          "analysis of the development half here (JSON)."),
    out_alias: Optional[Path] = typer.Option(None, "--out", hidden=True),
):
    """Prove the metrics on planted cases from real reviews (fixed seed): injected wrong
    facts, clean reviews, perturbed texts, own vs other-category reviews. Writes
    validation.json; exit code 1 when a threshold is missed.

    With --gold FILE ...: against a gold set labelled by reading (see --gold)."""
    from ..errors import HarnessError
    from ..files import write_json

    out = out or out_alias
    if extra_gold and not gold:
        raise HarnessError(f"unexpected argument(s) {' '.join(map(str, extra_gold))} "
                           f"(gold files go after --gold)")
    if gold:
        return _validate_gold(list(gold) + list(extra_gold or []), raw_dir, data, out,
                              fluency_reference, only, half, errors)
    if out is None:
        raise HarnessError("give --output DIR (the folder for validation.json)")
    from ..metrics.validation.validate import THRESHOLDS, load_records, run_validation

    records = load_records(raw_dir, data)
    parts = tuple(p.strip() for p in only.split(",")) if only else \
        ("hallucination", "fluency", "relevance")
    with _progress() as prog:
        progress = _part_bars(prog)
        report = run_validation(records, seed=seed, n_fluency=n_fluency,
                                n_relevance=n_relevance, reference=fluency_reference,
                                parts=parts, progress=progress)
    path = write_json(Path(out) / "validation.json", report)
    _print_report(report)
    console.print(f"→ {path}", highlight=False)
    failed = [k for k, ok in report["passed"].items() if not ok]
    if failed:
        wanted = ", ".join(f"{k} {THRESHOLDS[k][0]} {THRESHOLDS[k][1]}" for k in failed)
        console.print(f"[bold red]below threshold:[/] {wanted}")
        raise typer.Exit(1)


def _validate_gold(files, raw_dir, data, out, fluency_reference, only, half, errors_path):
    from ..errors import HarnessError
    from ..files import write_json
    from ..metrics.validation.gold import PARTS, run_gold
    from ..metrics.validation.validate import load_records

    if raw_dir is not None and data is not None:
        raise HarnessError("give --raw-dir or --data, not both")
    records = load_records(raw_dir, None) if raw_dir is not None else None
    parts = tuple(p.strip() for p in only.split(",")) if only else PARTS
    with _progress() as prog:
        progress = _part_bars(prog)
        run = run_gold(files, records, data=data, half=half, parts=parts,
                       fluency_reference=fluency_reference,
                       error_analysis=errors_path is not None, progress=progress)
    report = run.report
    _print_gold(report)
    if out is not None:
        console.print(f"→ {write_json(Path(out) / 'gold_validation.json', report)}",
                      highlight=False)
    if errors_path is not None:
        console.print(f"error analysis (dev half) → {write_json(errors_path, run.errors)}",
                      highlight=False)
    missed = [k for k, a in report["acceptance"].items() if not a["met"]]
    if missed:
        console.print("[bold red]below acceptance:[/] " + ", ".join(
            f"{k} {report['acceptance'][k]['value']:.3f} (wanted {report['acceptance'][k]['op']} "
            f"{report['acceptance'][k]['threshold']})" for k in missed), highlight=False)
        raise typer.Exit(1)


def _ci(f: dict | None) -> str:
    if not f or f.get("value") is None:
        return "–"
    return f"{f['value']:.3f} [{f['lo']:.3f}, {f['hi']:.3f}]"


def _v(f: dict | None) -> str:
    return "–" if not f or f.get("value") is None else f"{f['value']:.3f}"


def _print_gold(report: dict) -> None:
    items = report["items"]
    console.print(f"gold set: {items['all']} items ({items['halves']}); reported half "
                  f"[bold]{report['half']}[/]: {items['in_half']} items {items['by_kind']}",
                  highlight=False)
    acc = report.get("acceptance", {})
    t = Table(title=f"metrics vs gold labels ({report['half']} half; 95% bootstrap CIs)")
    for c in ("figure", "n", "value [95% CI]", "acceptance", "met"):
        t.add_column(c, justify="left" if c == "figure" else "right")

    def row(name, f, key=None, n=None):
        a = acc.get(key) if key else None
        met = "" if not a else ("[green]yes[/]" if a["met"] else "[red]no[/]")
        t.add_row(name, str(n if n is not None else (f or {}).get("n", "")), _ci(f),
                  f"{a['op']} {a['threshold']}" if a else "", met)

    h = report.get("hallucination")
    if h:
        c = h["claims"]
        row("claim precision (flags on gold bad claims)", c["precision"], n=c["metric_flags"])
        row("claim recall (gold bad claims flagged)", c["recall"], n=c["gold_bad_claims"])
        row("claim F1 (unsupported + contradicted)", c["f1"], "claim_f1", n=c["gold_bad_claims"])
        row("review false-flag rate (no gold bad claim)", h["false_flag_rate"], "false_flag_rate")
    if report.get("fluency"):
        row("fluency flag accuracy (generated)", report["fluency"]["accuracy"],
            "fluency_accuracy")
    if report.get("relevance"):
        row("relevance: own > same-leaf other review", report["relevance"]["accuracy"],
            "relevance_accuracy")
        rd = report["relevance"].get("reader")
        if rd:
            row("  a reader picks the own review (pairs it could tell)",
                rd["reader_accuracy_decided"])
            row("  relevance on the pairs the reader could tell", rd["metric_accuracy_decided"])
            row("  relevance where the reader could not (either)", rd["metric_accuracy_either"])
    ag = report.get("agreement") or {}
    if ag.get("review_kappa"):
        row("agreement: kappa, review has bad claim", ag["review_kappa"])
        row("agreement: kappa, per character", ag["char_kappa"], n=ag["items"])
    console.print(t)
    if h and h.get("by_kind"):
        t = Table(title="per claim kind (gold kind; a flag on no gold claim: its metric "
                        "kind; CIs in the JSON)")
        for c in ("kind", "gold bad", "flags", "precision", "recall", "F1", "false flags"):
            t.add_column(c, justify="left" if c == "kind" else "right")
        for k, v in list(h["by_kind"].items()) + [
                (f"({ik} reviews)", v) for ik, v in h.get("by_item_kind", {}).items()]:
            t.add_row(k, str(v["gold_bad_claims"]), str(v["metric_flags"]),
                      *(_v(v[x]) for x in ("precision", "recall", "f1", "false_flag_rate")))
        console.print(t)
    if report.get("relevance", {}).get("fallback"):
        console.print(f"relevance pairs below the leaf level: {report['relevance']['fallback']}",
                      highlight=False)


def _print_report(report: dict) -> None:
    if "hallucination_by_kind" in report:
        t = Table(title="hallucination: injected wrong facts (hit = that claim flagged)")
        for c in ("kind", "n", "hit rate"):
            t.add_column(c, justify="right" if c != "kind" else "left")
        for k, v in report["hallucination_by_kind"].items():
            t.add_row(k, str(v["n"]), _fmt(v["hit_rate"]), style=None if "/" in k else "bold")
        t.add_row("all", str(report["hallucination_cases"]),
                  _fmt(report["hallucination_recall"]), style="bold green")
        console.print(t)
        t = Table(title="hallucination: unmodified real reviews")
        for c in ("set", "reviews", "claims", "false-flag rate"):
            t.add_column(c, justify="right" if c != "set" else "left")
        t.add_row("clean (restate JSON facts)", str(report["clean_reviews"]),
                  str(report["clean_claims_checked"]),
                  _fmt(report["hallucination_false_flag_rate"]), style="bold green")
        t.add_row("all real reviews (no threshold)", str(report["all_real_reviews"]), "",
                  _fmt(report["all_real_reviews_flagged_rate"]))
        console.print(t)
    if "fluency_by_kind" in report:
        t = Table(title=f"fluency: real vs perturbed (reference {report['fluency_reference']})")
        for c in ("perturbation", "pairs", "real ranked better"):
            t.add_column(c, justify="right" if c != "perturbation" else "left")
        for k, v in report["fluency_by_kind"].items():
            t.add_row(k, str(v["n"]), _fmt(v["hit_rate"]))
        t.add_row("all", str(report["fluency_pairs"]), _fmt(report["fluency_rank_accuracy"]),
                  style="bold green")
        console.print(t)
    if "relevance_by_source" in report:
        t = Table(title="relevance: own review vs another category's review")
        for c in ("source", "pairs", "own ranked higher"):
            t.add_column(c, justify="right" if c != "source" else "left")
        for k, v in report["relevance_by_source"].items():
            t.add_row(k, str(v["n"]), _fmt(v["hit_rate"]))
        t.add_row("all", str(report["relevance_pairs"]), _fmt(report["relevance_rank_accuracy"]),
                  style="bold green")
        console.print(t)
