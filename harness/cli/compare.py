"""`harness compare`, `harness report` and `harness demo` (the README's main job)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer

from ..compare.plan import DEFAULT_BATCH_SIZE, CompareConfig
from .console import console

PANEL = "Compare"


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


def run_compare(models: str, tasks: str, backends: str, limit: Optional[int], data: Optional[str],
                output: Optional[Path], resume: bool, n_threads: Optional[int], console,
                gen_kwargs: Optional[str] = None, model_args: Optional[list] = None,
                merged_quant: Optional[str] = "q4_k_m", batch_size: Optional[str] = None,
                reuse_models: Optional[bool] = None, executor: str = "in-process",
                address: Optional[str] = None, ray_resources: Optional[list] = None) -> Path:
    from ..compare.plan import CompareConfig, batch_sizes
    from ..compare.run import compare
    from ..compare.executors import parse_ray_resources
    from ..compare.report import render

    # None: CompareConfig's default
    optional = {k: v for k, v in (("batch_size", batch_sizes(batch_size) if batch_size else None),
                                  ("reuse_models", reuse_models)) if v is not None}
    cfg = CompareConfig(models=models, tasks=[t.strip() for t in tasks.split(",") if t.strip()],
                        backends=[b.strip() for b in backends.split(",") if b.strip()],
                        limit=limit, data=data, output=str(output) if output else None,
                        resume=resume, n_threads=n_threads, gen_kwargs=gen_kwargs,
                        model_args=_parse_backend_args(model_args),
                        merged_quant=merged_quant, executor=executor, address=address,
                        ray_resources=parse_ray_resources(ray_resources) or None, **optional)
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
    models: List[str] = typer.Option(["all"], help="'all' or registry names (repeat or "
                                     "comma-separate)."),
    tasks: List[str] = typer.Option(["product_review"], help="Task names (repeat or "
                                    "comma-separate)."),
    backends: List[str] = typer.Option(["llama-cpp", "hf"], help="llama-cpp, hf (and vllm "
                                       "on GPU machines); repeat or comma-separate."),
    limit: Optional[int] = typer.Option(None, help="Documents per task (first N of test)."),
    data: Optional[str] = typer.Option(None, help="'demo', a prepared-data directory, or "
                                       "default: prepared data if present, else demo."),
    output: Optional[Path] = typer.Option(None, help="Run directory (default results/compare-TIME)."),
    resume: bool = typer.Option(False, help="Reuse finished cells of an interrupted run."),
    threads: Optional[int] = typer.Option(None, "--threads", help="llama.cpp threads "
                                          "(default: all cores)."),
    gen_kwargs: Optional[str] = typer.Option(None, help="lm-eval gen_kwargs override, "
                                             "e.g. max_gen_toks=64."),
    model_args: Optional[List[str]] = typer.Option(
        None, "--model-args", help="Extra lm-eval model_args per backend, passed through: "
        "'hf:parallelize=True' or 'vllm:tensor_parallel_size=4' (repeatable)."),
    merged_quant: List[str] = typer.Option(["q4_k_m"], help="Merged exports of each "
                                           "adapter to score on llama.cpp besides the LoRA "
                                           "GGUF: q4_k_m, q8_0, f16 (repeat or "
                                           "comma-separate) or none."),
    batch_size: Optional[str] = typer.Option(
        None, help="Generation batch: N for every backend, or BACKEND:N,... (default "
        + ",".join(f"{b}:{n}" for b, n in DEFAULT_BATCH_SIZE.items()) + ", others 1)."),
    reuse_models: Optional[bool] = typer.Option(
        None, "--reuse-models/--no-reuse-models", help="Load each model once per run and "
        "switch adapters on it, or load a model for every cell (default: "
        + ("reuse" if CompareConfig.reuse_models else "no reuse") + ")."),
    executor: str = typer.Option("in-process", help="Who runs the cells: in-process "
                                 "(here, one after another) or ray (a Ray task per cell; "
                                 "pip install -e '.[ray]')."),
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

    run = run_compare(",".join(split_list(models)), ",".join(split_list(tasks)),
                      ",".join(split_list(backends)), limit, data, output, resume,
                      threads or n_threads, console, gen_kwargs,
                      (model_args or []) + (model_args_alias or []),
                      ",".join(split_list(merged_quant)), batch_size, reuse_models,
                      executor, address, ray_resources)
    exit_if_failed(run)

def report_cmd(run: Path = typer.Argument(..., help="A compare run directory.")):
    """Re-render summary, plots and report.md/html of a run from its saved results."""
    from ..compare.report import render

    render(run, console=console)
    console.print(f"[bold]wrote[/] {run}/summary.csv, summary.json, report.md, report.html")

def demo_cmd(
    output: Path = typer.Option(Path("results/demo"), help="Run directory."),
    max_steps: Optional[int] = typer.Option(None, help="Training steps per missing demo "
                                            "adapter (default: the train preset 'demo')."),
    models: List[str] = typer.Option(["all"], help="'all' or registry names (repeat or "
                                     "comma-separate)."),
    backends: List[str] = typer.Option(["llama-cpp", "hf"], help="Backends (repeat or "
                                       "comma-separate)."),
    limit: Optional[int] = typer.Option(None, help="Test products per cell (default: all 8)."),
    resume: bool = typer.Option(True, help="Reuse finished cells."),
):
    """The main job on the embedded default: train missing demo adapters for the bundled
    models on part of the demo set, then compare base and tuned on both backends on the
    held-out demo products (harness.compare.demo). Exit code 1 when a cell failed."""
    from ..compare.demo import demo

    from .console import split_list

    out = demo(output=output, max_steps=max_steps, limit=limit,
               models=",".join(split_list(models)), backends=",".join(split_list(backends)),
               resume=resume,
               log=lambda m: console.print(f"[bold]{m}[/]"),
               progress=_progress_runner(console), console=console)
    console.print(f"[bold]wrote[/] {out['run']}/report.md, report.html, summary.csv; "
                  f"demo wall time {out['wall_s']:.0f} s (training {out['train_s']:.0f} s)")
    exit_if_failed(out["run"])
