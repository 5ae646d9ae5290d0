"""`harness baseline`: the classical baselines of a task (logic in harness.tasks.baselines)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def baseline_cmd(
    task: str = typer.Option(..., "--task", help="product_department, product_aisle, "
                             "product_nextitem (or a variant of them)."),
    data: Optional[str] = typer.Option(None, "--data", help="Prepared data directory, a "
                                       "JSONL file, or 'demo' [default: data/prepared, "
                                       "else the demo set]."),
    split: str = typer.Option("test", "--split", help="Split to score."),
    source: Optional[str] = typer.Option(None, "--source", help="Only this source's "
                                         "records (e.g. amazon2018_gift_cards)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N records "
                                        "of the split (what lm-eval's --limit N scores)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the scores "
                                            "as JSON here."),
):
    """Score the classical baselines of a task with the LLMs' metrics, on the same split."""
    from rich.console import Console
    from rich.table import Table

    from ..tasks.baselines import run_baselines
    from ..files import write_json

    console = Console()
    with console.status(f"fitting and scoring the baselines of {task} …"):
        rep = run_baselines(task, data, split, source, limit)
    metrics = list(next(iter(rep.scores.values())))
    t = Table(title=f"{task} baselines — {rep.split}: {rep.n} records "
                    f"(train: {rep.n_train})" + (f", source {source}" if source else ""))
    t.add_column("baseline")
    for m in metrics:
        t.add_column(m, justify="right")
    for name, sc in rep.scores.items():
        t.add_row(name, *(f"{sc[m]:.4f}" for m in metrics))
    console.print(t)
    if rep.skipped:
        st = Table(title="records left out")
        st.add_column("reason")
        st.add_column("records", justify="right")
        for reason, n in sorted(rep.skipped.items(), key=lambda kv: -kv[1]):
            st.add_row(reason, str(n))
        console.print(st)
    if json_out:
        write_json(json_out, {"task": task, "split": rep.split, "n": rep.n,
                              "n_train": rep.n_train, "source": source, "limit": limit,
                              "scores": rep.scores, "skipped": rep.skipped})
