"""`harness train`: LoRA / QLoRA adapters (the logic is harness.train.recipe.train). Every
option's default is TrainConfig's (shown in the help, never repeated here): an option not
given on the command line is not passed on."""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Optional

import typer

from ..train.config import PRESETS, TrainConfig

PANEL = "Train"
_DEFAULTS = TrainConfig()
TRAIN_FIELDS = {f.name for f in fields(TrainConfig)}


def _opt(name: str, *flags: str, help: str | None = None):
    """An option whose default is TrainConfig's: None here, the dataclass value in the help."""
    default = getattr(_DEFAULTS, name)
    shown = "" if default is None else f"[default: {default}]"
    return typer.Option(None, *flags, help=" ".join(filter(None, (help, shown))) or None,
                        show_default=False)


def _flag(name: str, *flags: str, help: str | None = None):
    """An on/off flag; its default is TrainConfig's."""
    return typer.Option(getattr(_DEFAULTS, name), *flags, help=help)


def _describe(values: dict) -> str:
    """A preset's settings as the help shows them: 'data=demo, max_steps=16, ...'."""
    return ", ".join(f"{k}={v}" for k, v in values.items())


def train_cmd(
    ctx: typer.Context,
    model: Optional[str] = _opt("model", "--model", help="Registry name (`harness models`), HF "
                                "model directory or .gguf file."),
    task: Optional[str] = _opt("task", "--task", help="Task whose prompt builder makes the "
                               "training text (the same text the eval sends)."),
    method: Optional[str] = _opt("method", "--method", help="lora | qlora | auto (qlora on "
                                 "CUDA, bf16 lora on CPU; qlora on CPU needs the qlora-cpu "
                                 "extra)."),
    data: Optional[str] = _opt("data", "--data", help="Prepared data directory (or a curated "
                               "one: `harness data curate`), or 'demo' (default: "
                               "data/prepared, else demo)."),
    output: Optional[Path] = _opt("output", "--output", help="Adapter directory (default: "
                                  "adapters/MODEL-TASK-METHOD)."),
    epochs: Optional[float] = _opt("epochs", "--epochs", help="Passes over the train split."),
    max_steps: Optional[int] = _opt("max_steps", "--max-steps", help="Optimizer steps "
                                    "(overrides --epochs)."),
    batch_size: Optional[int] = _opt("batch_size", "--batch-size", help="Sequences per "
                                     "micro-batch."),
    grad_accum: Optional[int] = _opt("grad_accum", "--grad-accum", help="Micro-batches per "
                                     "step (batch = batch size × grad accum × processes)."),
    lr: Optional[float] = _opt("lr", "--lr", help="Peak learning rate (warmup + cosine)."),
    warmup_ratio: Optional[float] = _opt("warmup_ratio", "--warmup-ratio", help="Warmup share."),
    weight_decay: Optional[float] = _opt("weight_decay", "--weight-decay"),
    lora_r: Optional[int] = _opt("lora_r", "--lora-r", help="LoRA rank."),
    lora_alpha: Optional[int] = _opt("lora_alpha", "--lora-alpha", help="LoRA alpha."),
    lora_dropout: Optional[float] = _opt("lora_dropout", "--lora-dropout", help="LoRA dropout."),
    target_modules: Optional[str] = _opt("target_modules", "--target-modules",
                                         help="'all-linear' or q_proj,v_proj,..."),
    max_seq_len: Optional[int] = _opt("max_seq_len", "--max-seq-len", help="Tokens per "
                                      "example."),
    eval_every: Optional[int] = _opt("eval_every", "--eval-every", help="Steps between "
                                     "validation losses (default: ~5 per run)."),
    eval_examples: Optional[int] = _opt("eval_examples", "--eval-examples",
                                        help="Validation records."),
    patience: Optional[int] = _opt("patience", "--patience", help="Early stop after this "
                                   "many evaluations without a gain (0: never)."),
    save_every: Optional[int] = _opt("save_every", "--save-every", help="Steps between "
                                     "checkpoints (default: --eval-every)."),
    seed: Optional[int] = _opt("seed", "--seed"),
    dtype: Optional[str] = _opt("dtype", "--dtype", help="auto | bfloat16 | float32."),
    engine: Optional[str] = _opt("engine", "--engine", help="auto | unsloth | transformers."),
    threads: Optional[int] = _opt("threads", "--threads", help="torch CPU threads."),
    resume: bool = _flag("resume", "--resume", help="Continue from the last checkpoint in "
                         "--output."),
    overwrite: bool = _flag("overwrite", "--overwrite", help="Replace an existing adapter in "
                            "--output."),
    progress: bool = _flag("progress", "--progress/--quiet", help="Progress bar and log."),
    mask_unsupported: bool = _flag(
        "mask_unsupported", "--mask-unsupported/--no-mask-unsupported", help="product_review: "
        "no loss on target sentences with a claim the product JSON does not support."),
    preset: Optional[str] = typer.Option(None, "--preset", help="Named settings: "
                                         + "; ".join(f"'{name}' ({_describe(values)})"
                                                     for name, values in PRESETS.items())
                                         + ". Flags given on the command line win."),
):
    """Train a LoRA/QLoRA adapter (PEFT format) on a task's train split, with validation
    loss, early stopping (best adapter kept), atomic checkpoints and --resume.

    harness train --model smollm2-135m-instruct --task product_review --epochs 1
    """
    from click.core import ParameterSource
    from rich.console import Console

    from ..train.recipe import train

    # only what the command line gives: TrainConfig (under the preset, if any) has the rest
    given = {k: v for k, v in ctx.params.items() if k in TRAIN_FIELDS and v is not None
             and ctx.get_parameter_source(k) != ParameterSource.DEFAULT}
    if given.get("output") is not None:
        given["output"] = str(given["output"])
    rec = train(preset=preset, **given)
    Console().print(
        f"[bold]adapter[/] {rec['output']}  validation loss {rec['initial_val_loss']} → "
        f"{rec['best_val_loss']:.4f} (step {rec['best_step']}/{rec['steps']}), "
        f"{rec['tokens_per_second']} tok/s, peak RSS {rec['peak_rss_mb']:.0f} MB, "
        f"{rec['wall_s']:.0f} s", highlight=False)
