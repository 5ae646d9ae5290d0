"""`harness eval` (lm-eval with our backends and tasks) and `harness models` (the registry)."""
from __future__ import annotations

import typer
from rich.table import Table

from .console import console

PANEL = "Evaluate"


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
    from ..evaluate.runner import run_cli

    run_cli(list(ctx.args))


def models_cmd():
    """List the model registry and whether each model's weights are here."""
    from ..models import availability, registry

    t = Table(title="model registry (harness/models.toml)")
    for c in ("name", "chat", "family", "available", "description / how to enable"):
        t.add_column(c)
    for name, spec in registry().items():
        ok, why = availability(name)
        t.add_row(name, "yes" if spec.chat else "no", spec.family,
                  "[green]yes[/]" if ok else "[red]no[/]", spec.description if ok else why)
    console.print(t)
