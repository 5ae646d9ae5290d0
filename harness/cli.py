"""`harness` command line: a thin typer layer over the Python API of each stage.

Each command imports its stage lazily, so `harness --help` is fast and a stage's heavy
dependencies load only when it runs. A HarnessError prints as one red line, exit code 2.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .data.curate import CurateConfig
from .io import HarnessError

app = typer.Typer(help="Benchmark harness for LLMs that write product reviews: "
                       "data → tasks → backends → metrics → report.",
                  rich_markup_mode="rich", no_args_is_help=True, pretty_exceptions_enable=False)
data_app = typer.Typer(help="Prepare task data from raw public files.", no_args_is_help=True)
app.add_typer(data_app, name="data", rich_help_panel="Data")
console = Console(stderr=False)
err = Console(stderr=True)

PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


def split_list(values) -> list[str]:
    """A list option given either way: repeated (--task a --task b), comma-separated
    (--task a,b) or both -> ["a", "b"]."""
    if values is None:
        return []
    items = [values] if isinstance(values, str) else values
    return [p.strip() for v in items for p in str(v).split(",") if p.strip()]
_CURATE = CurateConfig()   # `harness data curate` shows its defaults


# --- data ------------------------------------------------------------------------------
@data_app.command("prepare")
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
    from .data import data_dir
    from .data.generic import parse_map
    from .data.prepare import prepare

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


@data_app.command("curate")
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
    training examples; validation and test copied unchanged (harness.data.curate)."""
    from .data.curate import curate, print_report

    out = output or out_alias
    rep = curate(data=data, out=str(out) if out else None, per_product=per_product,
                 min_words=min_words, min_facts=min_facts,
                 template_min_products=template_min_products, generic_share=generic_share,
                 min_examples=min_examples)
    print_report(rep, console)


# --- eval ------------------------------------------------------------------------------
@app.command("eval", context_settings=PASSTHROUGH, rich_help_panel="Evaluate")
def eval_cmd(ctx: typer.Context):
    """Run lm-eval with our backends and tasks. Takes lm-eval's own flags, e.g.

    harness eval --model llama-cpp --model_args model=smollm2-135m-instruct
    --tasks product_review --limit 20 --output_path DIR --log_samples

    --model hf uses lm-eval's transformers backend with throughput timing; `model=NAME` takes
    weights from the registry. Chat templates are applied for instruct models
    (--no_chat_template to turn off). Results JSON gets a `throughput` object.

    Every other flag is lm-eval's own, passed through: see `.venv/bin/lm_eval run --help`.
    The other commands' spellings work too: --model-args, --output (for --output_path),
    --threads N (llama.cpp threads)."""
    from .evaluate import run_cli

    run_cli(list(ctx.args))


@app.command("models", rich_help_panel="Evaluate")
def models_cmd():
    """List the model registry and whether each model's weights are here."""
    from .models import availability, registry

    t = Table(title="model registry (harness/models.toml)")
    for c in ("name", "chat", "family", "available", "description / how to enable"):
        t.add_column(c)
    for name, spec in registry().items():
        ok, why = availability(name)
        t.add_row(name, "yes" if spec.chat else "no", spec.family,
                  "[green]yes[/]" if ok else "[red]no[/]", spec.description if ok else why)
    console.print(t)


def _register_stage_commands() -> None:
    from importlib import import_module
    from .commands import STAGE_MODULES

    for name in STAGE_MODULES:
        import_module(f"harness.commands.{name}").register(app)


_register_stage_commands()


def _keep_brackets(*apps: typer.Typer) -> None:
    """Option and argument help is text, not rich markup: escape its square brackets so that
    "[default: ...]" and "'.[qlora-cpu]'" show as written (rich would take them for tags)."""
    import inspect
    import re

    from typer.models import ParameterInfo

    for a in apps:
        for cmd in a.registered_commands:
            for param in inspect.signature(cmd.callback).parameters.values():
                info = param.default
                if isinstance(info, ParameterInfo) and info.help and "[" in info.help:
                    info.help = re.sub(r"(?<!\\)\[", r"\\[", info.help)


_keep_brackets(app, data_app)


def main() -> None:
    try:
        app()
    except HarnessError as e:
        # the message is text, not markup: "pip install '.[qlora-cpu]'" keeps its brackets
        err.print(Text.assemble(("error:", "bold red"), " ", str(e)), highlight=False,
                  soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        sys.exit(130)


if __name__ == "__main__":
    main()
