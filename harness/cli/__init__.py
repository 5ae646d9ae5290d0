"""`harness` command line: a thin typer layer over the Python API of each stage.

COMMANDS below is the one list of commands, each with its help panel; the functions live in
one module per group (data, evaluate, baseline, metrics, train, export, compare). Each command
imports its stage lazily, so `harness --help` is fast and a stage's heavy dependencies load
only when it runs. A HarnessError prints as one red line, exit code 2.
"""
from __future__ import annotations

import sys

import typer
from rich.text import Text

from ..errors import HarnessError
from . import baseline, compare, data, evaluate, export, metrics, train
from .console import PASSTHROUGH, err

app = typer.Typer(help="Benchmark harness for LLMs that write product reviews: "
                       "data → tasks → backends → metrics → report.",
                  rich_markup_mode="rich", no_args_is_help=True, pretty_exceptions_enable=False)

# (group, command name, function, help panel, click context settings); group None: top level
COMMANDS = [
    ("data", "prepare", data.data_prepare, None, None),
    ("data", "curate", data.data_curate, None, None),
    (None, "eval", evaluate.eval_cmd, "Evaluate", PASSTHROUGH),
    (None, "models", evaluate.models_cmd, "Evaluate", None),
    (None, "score", metrics.score_cmd, "Evaluate", None),
    ("metrics", "validate", metrics.validate_cmd, None, None),
    (None, "train", train.train_cmd, "Train", None),
    (None, "export", export.export_cmd, "Export", None),
    (None, "generate", export.generate_cmd, "Export", None),
    (None, "baseline", baseline.baseline_cmd, "Evaluate", None),
    (None, "compare", compare.compare_cmd, "Compare", None),
    (None, "report", compare.report_cmd, "Compare", None),
    (None, "demo", compare.demo_cmd, "Compare", None),
]
# group -> (help, panel of the group in `harness --help`)
GROUPS = {
    "data": ("Prepare task data from raw public files.", "Data"),
    "metrics": ("Validate the review metrics on planted cases.", "Metrics"),
}

groups = {name: typer.Typer(help=help_, no_args_is_help=True) for name, (help_, _) in GROUPS.items()}
for name, (_, panel) in GROUPS.items():
    app.add_typer(groups[name], name=name, rich_help_panel=panel)
for group, name, fn, panel, settings in COMMANDS:
    target = app if group is None else groups[group]
    target.command(name, rich_help_panel=panel, context_settings=settings)(fn)
data_app = groups["data"]


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
