"""`harness` commands of the metrics stage: `harness score RESULTS_DIR` and
`harness metrics validate`. The logic lives in harness.metrics.rescore / .validate."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

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


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else ("" if v is None else str(v))


def score_cmd(
    results_dir: Path = typer.Argument(..., help="A results folder (searched recursively for "
                                       "samples_product_review*.jsonl) or one samples file."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write scores here (mirrors the "
                                       "folders) instead of next to each samples file."),
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
):
    """(Re)score saved product_review samples in this process: hallucination, fluency and
    relevance per sample and per run → scores_*.jsonl / scores_*.json."""
    from ..metrics.rescore import count_samples, rescore

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
    raw_dir: Optional[Path] = typer.Option(None, "--raw-dir", help="Raw data folder "
                                           "(e.g. ../shared/data); prepared in a temp folder."),
    data: Optional[Path] = typer.Option(None, "--data", help="An already prepared folder "
                                        "instead of --raw-dir."),
    out: Path = typer.Option(..., "--out", help="Folder for validation.json."),
    seed: int = typer.Option(0, "--seed"),
    n_fluency: int = typer.Option(200, "--n-fluency", help="Real reviews in the fluency test "
                                  "(each with 3 perturbed versions)."),
    n_relevance: int = typer.Option(500, "--n-relevance", help="Own-vs-other review pairs."),
    fluency_reference: Optional[str] = typer.Option(None, "--fluency-reference",
                                                    help="Reference LM [default: gemma3-270m]."),
    only: Optional[str] = typer.Option(None, "--only", help="Comma-separated subset of "
                                       "hallucination,fluency,relevance."),
):
    """Prove the metrics on planted cases from real reviews (fixed seed): injected wrong
    facts, clean reviews, perturbed texts, own vs other-category reviews. Writes
    validation.json; exit code 1 when a threshold is missed."""
    from ..io import write_json
    from ..metrics.validate import THRESHOLDS, load_records, run_validation

    records = load_records(raw_dir, data)
    parts = tuple(p.strip() for p in only.split(",")) if only else \
        ("hallucination", "fluency", "relevance")
    with _progress() as prog:
        tasks: dict = {}

        def progress(part, k, total):
            if part not in tasks:
                tasks[part] = prog.add_task(part, total=total)
            prog.advance(tasks[part], k)

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


def register(app) -> None:
    app.command("score", rich_help_panel="Evaluate")(score_cmd)
    metrics_app = typer.Typer(help="Validate the review metrics on planted cases.",
                              no_args_is_help=True)
    metrics_app.command("validate")(validate_cmd)
    app.add_typer(metrics_app, name="metrics", rich_help_panel=PANEL)
