"""`harness compare`, `harness report` and `harness demo` (the README's main job)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer

from ..compare.plan import DEFAULT_BATCH_SIZE, CompareConfig
from .console import console

PANEL = "Compare"
_CFG = CompareConfig()   # every option's default is CompareConfig's, shown in the help


def _default(name: str) -> str:
    value = getattr(_CFG, name)
    return f"[default: {', '.join(value) if isinstance(value, (list, tuple)) else value}]"


def _progress_runner(console):
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    prog = Progress(TextColumn("[bold]compare"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                    TextColumn("{task.description}"), console=console, transient=False)
    state = {"task": None}

    def cb(i, n, cell):
        if state["task"] is None:
            prog.start()
            state["task"] = prog.add_task("", total=n)
        prog.update(state["task"], completed=i, description=cell.label if cell else "done")
        if cell is None:
            prog.stop()
    return cb


def run_compare(console, **given) -> Path:
    """Run and render a comparison. `given`: CompareConfig fields; None (an option not given)
    leaves a field at CompareConfig's default."""
    from ..compare.executors import parse_ray_resources
    from ..compare.plan import CompareConfig, batch_sizes
    from ..compare.render import render
    from ..compare.run import compare

    given = {k: v for k, v in given.items() if v is not None}
    for name in ("tasks", "backends"):
        if name in given:
            given[name] = [x.strip() for x in given[name].split(",") if x.strip()]
    if "batch_size" in given:
        given["batch_size"] = batch_sizes(given["batch_size"])
    if "output" in given:
        given["output"] = str(given["output"])
    if "model_args" in given:
        given["model_args"] = _parse_backend_args(given["model_args"])
    if "ray_resources" in given:
        given["ray_resources"] = parse_ray_resources(given["ray_resources"]) or None
    cfg = CompareConfig(**given)
    t0 = time.perf_counter()
    run = compare(cfg, progress=_progress_runner(console))
    render(run, console=console)
    console.print(f"[bold]wrote[/] {run}/summary.csv, summary.json, report.md, report.html "
                  f"({time.perf_counter() - t0:.0f} s)")
    return run


def failed_cells(run: Path) -> list[dict]:
    from ..files import read_json

    return [c for c in read_json(Path(run) / "run.json").get("cells", [])
            if c.get("status") == "failed"]


def exit_if_failed(run: Path) -> None:
    """Print each failed cell of a run with its reason (stderr, one line each) and exit 1."""
    from .console import err
    from ..compare.plan import Cell

    failed = failed_cells(run)
    for c in failed:
        label = Cell(**{k: c.get(k) for k in ("model", "variant", "backend", "task",
                                                "adapter")}).label
        err.print(f"failed: {label}: {c.get('reason') or 'no reason recorded'}",
                  style="red", markup=False, highlight=False, soft_wrap=True)
    if failed:
        err.print(f"{len(failed)} cell(s) failed; their rows in {run}/report.md show no numbers",
                  markup=False, highlight=False, soft_wrap=True)
        raise SystemExit(1)


def _parse_backend_args(items) -> dict:
    """["hf:parallelize=True,max_length=4096", "vllm:tensor_parallel_size=4"] ->
    {"hf": {...}, "vllm": {...}}"""
    from ..evaluate.runner import parse_model_args
    from ..errors import HarnessError

    out: dict = {}
    for item in items or []:
        if ":" not in item:
            raise HarnessError(f"--model-args {item!r}: expected BACKEND:key=value,...")
        backend, rest = item.split(":", 1)
        out.setdefault(backend, {}).update(parse_model_args(rest))
    return out


def compare_cmd(
    models: Optional[List[str]] = typer.Option(None, help="'all' or registry names (repeat or "
                                               "comma-separate). " + _default("models")),
    tasks: Optional[List[str]] = typer.Option(None, help="Task names (repeat or "
                                              "comma-separate). " + _default("tasks")),
    backends: Optional[List[str]] = typer.Option(None, help="llama-cpp, hf (and vllm on GPU "
                                                 "machines); repeat or comma-separate. "
                                                 + _default("backends")),
    limit: Optional[int] = typer.Option(None, help="Documents per task (first N of test)."),
    data: Optional[str] = typer.Option(None, help="'demo', a prepared-data directory, or "
                                       "default: prepared data if present, else demo."),
    output: Optional[Path] = typer.Option(None, help="Run directory (default results/compare-TIME)."),
    resume: bool = typer.Option(_CFG.resume, help="Reuse finished cells of an interrupted run."),
    threads: Optional[int] = typer.Option(None, "--threads", help="llama.cpp threads "
                                          "(default: all cores)."),
    gen_kwargs: Optional[str] = typer.Option(None, help="lm-eval gen_kwargs override, "
                                             "e.g. max_gen_toks=64."),
    model_args: Optional[List[str]] = typer.Option(
        None, "--model-args", help="Extra lm-eval model_args per backend, passed through: "
        "'hf:parallelize=True' or 'vllm:tensor_parallel_size=4' (repeatable)."),
    merged_quant: Optional[List[str]] = typer.Option(
        None, help="Merged exports of each adapter to score on llama.cpp besides the LoRA GGUF: "
        "q4_k_m, q8_0, f16 (repeat or comma-separate) or none. " + _default("merged_quant")),
    batch_size: Optional[str] = typer.Option(
        None, help="Generation batch: N for every backend, or BACKEND:N,... (default "
        + ",".join(f"{b}:{n}" for b, n in DEFAULT_BATCH_SIZE.items()) + ", others 1)."),
    reuse_models: Optional[bool] = typer.Option(
        None, "--reuse-models/--no-reuse-models", help="Load each model once per run and "
        "switch adapters on it, or load a model for every cell (default: "
        + ("reuse" if _CFG.reuse_models else "no reuse") + ")."),
    executor: Optional[str] = typer.Option(None, help="Who runs the cells: in-process "
                                           "(here, one after another) or ray (a Ray task per "
                                           "cell; pip install -e '.[ray]'). "
                                           + _default("executor")),
    address: Optional[str] = typer.Option(None, help="--executor ray: the cluster's "
                                          "HOST:PORT (default: a local Ray on this "
                                          "machine)."),
    ray_resources: Optional[List[str]] = typer.Option(
        None, "--ray-resources", help="--executor ray: a task's resources per backend, "
        "e.g. 'hf:num_gpus=1,num_cpus=4' (repeatable; default llama-cpp/hf 1 CPU "
        "(llama-cpp: --threads), vllm 1 GPU)."),
    n_threads: Optional[int] = typer.Option(None, "--n-threads", hidden=True),
    model_args_alias: Optional[List[str]] = typer.Option(None, "--model_args", hidden=True),
):
    """Base vs tuned models on every backend: metrics, throughput, bootstrap CIs, report.
    Data, adapters and model files are checked before anything loads; exit code 1 when a
    cell failed (each failed cell's reason is printed)."""
    from .console import split_list

    def joined(values):   # None: the option was not given
        return ",".join(split_list(values)) if values else None

    run = run_compare(console, models=joined(models), tasks=joined(tasks),
                      backends=joined(backends), limit=limit, data=data, output=output,
                      resume=resume, n_threads=threads or n_threads, gen_kwargs=gen_kwargs,
                      model_args=(model_args or []) + (model_args_alias or []) or None,
                      merged_quant=joined(merged_quant), batch_size=batch_size,
                      reuse_models=reuse_models, executor=executor, address=address,
                      ray_resources=ray_resources)
    exit_if_failed(run)

def report_cmd(run: Path = typer.Argument(..., help="A compare run directory.")):
    """Re-render summary, plots and report.md/html of a run from its saved results."""
    from ..compare.render import render

    render(run, console=console)
    console.print(f"[bold]wrote[/] {run}/summary.csv, summary.json, report.md, report.html")

def demo_cmd(
    output: Path = typer.Option(Path("results/demo"), help="Run directory."),
    max_steps: Optional[int] = typer.Option(None, help="Training steps per missing demo "
                                            "adapter (default: the train preset 'demo')."),
    models: Optional[List[str]] = typer.Option(None, help="'all' or registry names (repeat or "
                                               "comma-separate). " + _default("models")),
    backends: Optional[List[str]] = typer.Option(None, help="Backends (repeat or "
                                                 "comma-separate). " + _default("backends")),
    limit: Optional[int] = typer.Option(None, help="Test products per cell (default: all 8)."),
    resume: bool = typer.Option(True, help="Reuse finished cells."),
):
    """The main job on the embedded default: train missing demo adapters for the bundled
    models on part of the demo set, then compare base and tuned on both backends on the
    held-out demo products (harness.compare.demo). Exit code 1 when a cell failed."""
    from ..compare.demo import demo

    from .console import split_list

    out = demo(output=output, max_steps=max_steps, limit=limit,
               models=",".join(split_list(models)) if models else _CFG.models,
               backends=",".join(split_list(backends)) if backends else None,
               resume=resume,
               log=lambda m: console.print(f"[bold]{m}[/]"),
               progress=_progress_runner(console), console=console)
    console.print(f"[bold]wrote[/] {out['run']}/report.md, report.html, summary.csv; "
                  f"demo wall time {out['wall_s']:.0f} s (training {out['train_s']:.0f} s)")
    exit_if_failed(out["run"])
