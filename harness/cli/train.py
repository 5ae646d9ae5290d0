"""`harness train`: LoRA / QLoRA adapters (the logic is harness.train.train)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

PANEL = "Train"


def train_cmd(
    ctx: typer.Context,
    model: str = typer.Option("smollm2-135m-instruct", "--model", help="Registry name "
                              "(`harness models`), HF model directory or .gguf file."),
    task: str = typer.Option("product_review", "--task", help="Task whose prompt builder "
                             "makes the training text (the same text the eval sends)."),
    method: str = typer.Option("auto", "--method", help="lora | qlora | auto (qlora on "
                               "CUDA, bf16 lora on CPU; qlora on CPU needs "
                               "the qlora-cpu extra)."),
    data: Optional[str] = typer.Option(None, "--data", help="Prepared data directory "
                                       "(or a curated one: `harness data curate`), "
                                       "or 'demo' (default: data/prepared, else demo)."),
    output: Optional[Path] = typer.Option(None, "--output", help="Adapter directory "
                                          "(default: adapters/MODEL-TASK-METHOD)."),
    epochs: float = typer.Option(1.0, "--epochs", help="Passes over the train split."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Optimizer steps "
                                            "(overrides --epochs)."),
    batch_size: int = typer.Option(4, "--batch-size", help="Sequences per micro-batch."),
    grad_accum: int = typer.Option(2, "--grad-accum", help="Micro-batches per step "
                                   "(batch = batch size × grad accum × processes)."),
    lr: float = typer.Option(2e-4, "--lr", help="Peak learning rate (warmup + cosine)."),
    warmup_ratio: float = typer.Option(0.05, "--warmup-ratio", help="Warmup share."),
    weight_decay: float = typer.Option(0.0, "--weight-decay"),
    lora_r: int = typer.Option(16, "--lora-r", help="LoRA rank."),
    lora_alpha: int = typer.Option(32, "--lora-alpha", help="LoRA alpha."),
    lora_dropout: float = typer.Option(0.05, "--lora-dropout", help="LoRA dropout."),
    target_modules: str = typer.Option("all-linear", "--target-modules",
                                       help="'all-linear' or q_proj,v_proj,..."),
    max_seq_len: int = typer.Option(1024, "--max-seq-len", help="Tokens per example."),
    eval_every: Optional[int] = typer.Option(None, "--eval-every", help="Steps between "
                                             "validation losses (default: ~5 per run)."),
    eval_examples: int = typer.Option(128, "--eval-examples", help="Validation records."),
    patience: int = typer.Option(3, "--patience", help="Early stop after this many "
                                 "evaluations without a gain (0: never)."),
    save_every: Optional[int] = typer.Option(None, "--save-every", help="Steps between "
                                             "checkpoints (default: --eval-every)."),
    seed: int = typer.Option(0, "--seed"),
    dtype: str = typer.Option("auto", "--dtype", help="auto | bfloat16 | float32."),
    engine: str = typer.Option("auto", "--engine", help="auto | unsloth | transformers."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last "
                                "checkpoint in --output."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing "
                                   "adapter in --output."),
    progress: bool = typer.Option(True, "--progress/--quiet", help="Progress bar and log."),
    mask_unsupported: bool = typer.Option(
        True, "--mask-unsupported/--no-mask-unsupported", help="product_review: no loss "
        "on target sentences with a claim the product JSON does not support."),
    preset: Optional[str] = typer.Option(None, "--preset", help="Named settings, e.g. "
                                         "'demo' (demo set, 8 steps); flags given on the "
                                         "command line win."),
):
    """Train a LoRA/QLoRA adapter (PEFT format) on a task's train split, with validation
    loss, early stopping (best adapter kept), atomic checkpoints and --resume.

    harness train --model smollm2-135m-instruct --task product_review --epochs 1
    """
    from click.core import ParameterSource
    from rich.console import Console

    from ..train.recipe import train

    given = dict(model=model, task=task, method=method, data=data,
                 output=str(output) if output else None, epochs=epochs,
                 max_steps=max_steps, batch_size=batch_size, grad_accum=grad_accum,
                 lr=lr, warmup_ratio=warmup_ratio, weight_decay=weight_decay,
                 lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                 target_modules=target_modules, max_seq_len=max_seq_len,
                 eval_every=eval_every, eval_examples=eval_examples, patience=patience,
                 save_every=save_every, seed=seed, dtype=dtype, engine=engine,
                 threads=threads, resume=resume, overwrite=overwrite, progress=progress,
                 mask_unsupported=mask_unsupported)
    if preset:   # a preset fills what the command line leaves at its default
        given = {k: v for k, v in given.items()
                 if ctx.get_parameter_source(k) != ParameterSource.DEFAULT}
    rec = train(preset=preset, **given)
    Console().print(
        f"[bold]adapter[/] {rec['output']}  validation loss {rec['initial_val_loss']} → "
        f"{rec['best_val_loss']:.4f} (step {rec['best_step']}/{rec['steps']}), "
        f"{rec['tokens_per_second']} tok/s, peak RSS {rec['peak_rss_mb']:.0f} MB, "
        f"{rec['wall_s']:.0f} s", highlight=False)
