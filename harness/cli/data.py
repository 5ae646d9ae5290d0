"""`harness data prepare` and `harness data curate` (logic: harness.data.prepare,
harness.train.curate)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from ..errors import HarnessError
from ..train.curate import CurateConfig
from .console import console, split_list

PANEL = "Data"
_CURATE = CurateConfig()   # `harness data curate` shows its defaults


# --- data ------------------------------------------------------------------------------
def data_prepare(
    raw_dir: Optional[Path] = typer.Option(None, "--raw-dir", help="Folder with the raw files "
                                           "(e.g. ../shared/data)."),
    output: Path = typer.Option(None, "--output", help="Output folder [default: "
                                "data/prepared]."),
    task: Optional[List[str]] = typer.Option(None, "--task", help="Only these tasks "
                                             "(repeat or comma-separate)."),
    hub: Optional[str] = typer.Option(None, "--hub", help="A hub dataset id (online only)."),
    source: Optional[List[Path]] = typer.Option(None, "--from", help="Your own product_review "
                                                "file, CSV or JSON lines (repeatable); needs "
                                                "--map."),
    mapping: Optional[List[str]] = typer.Option(None, "--map", help="Where each field is in "
                                                "--from rows: title=COLUMN,review=COLUMN,... "
                                                "(dotted keys for nested JSON, e.g. "
                                                "review=reviews.text)."),
    out_alias: Optional[Path] = typer.Option(None, "--out", hidden=True),
):
    """Convert raw public files (or your own, with --from and --map) into task JSONL splits
    and print counts per source and split. Nothing is replaced unless every task succeeds."""
    from ..data import data_dir
    from ..data.generic import parse_map
    from ..data.prepare import prepare

    if raw_dir is None and hub is None and not source:
        raise HarnessError("give --raw-dir DIR, --from FILE --map ... and/or --hub DATASET_ID")
    if source and not mapping:
        raise HarnessError("--from needs --map (e.g. --map title=name,review=review_text)")
    if mapping and not source:
        raise HarnessError("--map applies to --from FILE; give the file")
    custom = [(p, parse_map(mapping)) for p in source or []]
    out = output or out_alias or data_dir()
    task = split_list(task)
    for rep in prepare(raw_dir, out, task or None, hub=hub, custom=custom):
        t = Table(title=f"{rep['task']} → {out / rep['task']}")
        t.add_column("source")
        splits = list(next(iter(rep["counts"].values())).keys())
        for s in splits:
            t.add_column(s, justify="right")
        for src, counts in rep["counts"].items():
            t.add_row(src, *(str(counts.get(s, 0)) for s in splits),
                      style="bold" if src == "total" else None)
        console.print(t)
        if rep.get("skipped"):
            st = Table(title="skipped rows")
            st.add_column("reason")
            st.add_column("rows", justify="right")
            for reason, n in sorted(rep["skipped"].items(), key=lambda kv: -kv[1]):
                st.add_row(reason, str(n))
            console.print(st)


def data_curate(
    data: Optional[str] = typer.Option(None, "--data", help="Prepared data directory "
                                       "(default: data/prepared, else the demo set)."),
    output: Optional[Path] = typer.Option(None, "--output", help="Output folder (default: "
                                          "data/curated); `harness train --data` takes it."),
    per_product: int = typer.Option(_CURATE.per_product, "--per-product",
                                    help="Reviews kept per product at most, best first."),
    min_words: int = typer.Option(_CURATE.min_words, "--min-words"),
    min_facts: int = typer.Option(_CURATE.min_facts, "--min-facts", help="Attribute "
                                  "mentions + supported claims a review needs."),
    template_min_products: int = typer.Option(
        _CURATE.template_min_products, "--template-min-products",
        help="An n-gram in reviews of this many products is a template."),
    generic_share: float = typer.Option(_CURATE.generic_share, "--generic-share",
                                        help="Template share that makes a review generic."),
    min_examples: int = typer.Option(_CURATE.min_examples, "--min-examples",
                                     help="Fewer kept reviews than this is an error."),
    out_alias: Optional[Path] = typer.Option(None, "--out", hidden=True),
):
    """Curate the product_review train split: every real review of every train product
    scored (length, attribute mentions, claim check, generic templates), the best kept as
    training examples; validation and test copied unchanged (harness.train.curate)."""
    from ..train.curate import curate, print_report

    out = output or out_alias
    rep = curate(data=data, out=str(out) if out else None, per_product=per_product,
                 min_words=min_words, min_facts=min_facts,
                 template_min_products=template_min_products, generic_share=generic_share,
                 min_examples=min_examples)
    print_report(rep, console)
