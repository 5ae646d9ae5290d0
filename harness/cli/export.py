"""`harness` commands of the export stage: `harness export` (adapter or base model -> GGUF)
and `harness generate` (offline reviews with llama.cpp). The logic is in harness.export.to_gguf
and harness.export.generate."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..models import DEFAULT_MODEL

PANEL = "Export"
console = Console()
err = Console(stderr=True)


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def print_verify(v: dict) -> None:
    t = Table(title=f"GGUF vs {v['reference']}: {v['prompts']} prompts, "
                    f"≤{v['tokens_per_prompt']} generated tokens each",
              caption="top-1: same argmax as transformers at each generated position; "
                      "KL(transformers‖GGUF) in nats; greedy: share of prompts whose greedy "
                      "continuation is identical; n: scored positions")
    t.add_column("setup", no_wrap=True)
    for c in ("size", "top-1", "KL mean", "KL max", "greedy", "n"):
        t.add_column(c, justify="right", no_wrap=True)
    for label, r in v["rows"].items():
        t.add_row(label, _mb(r["size_bytes"]), f"{r['top1_agreement']:.2%}",
                  f"{r['mean_kl']:.5f}", f"{r['max_kl']:.4f}", f"{r['greedy_same']:.0%}",
                  str(r["positions"]))
    console.print(t)
    for pair, same in (v.get("greedy_pairs") or {}).items():
        console.print(f"greedy continuation identical, {pair}: {same:.0%} of prompts")


def export_cmd(
    adapter: str = typer.Argument(..., help="PEFT adapter folder (with --base-only: the "
                                  "base model, a registry name or HF folder)."),
    fmt: str = typer.Option("gguf-lora", "--format",
                            help="gguf-lora (llama.cpp LoRA for the base GGUF) or gguf "
                                 "(merged model)."),
    quant: List[str] = typer.Option(["q4_k_m"], "--quant", help="For --format gguf: f16, "
                                    "q8_0, q4_k_m (or f32); repeat or comma-separate "
                                    "for several."),
    output: Optional[Path] = typer.Option(None, "--output", help="Output folder or .gguf "
                                          "file [default: ADAPTER/gguf, or cache/models "
                                          "with --base-only]."),
    base: Optional[str] = typer.Option(None, "--base", help="Base model (registry name, HF "
                                       "folder or GGUF) instead of the adapter's own."),
    base_only: bool = typer.Option(False, "--base-only", help="Export the base model "
                                   "named by ADAPTER, no adapter."),
    verify: bool = typer.Option(False, "--verify", help="Compare next-token distributions "
                                "with transformers on real product_review prompts."),
    verify_prompts: int = typer.Option(8, "--verify-prompts", help="Prompts for --verify."),
    verify_tokens: int = typer.Option(32, "--verify-tokens",
                                      help="Generated positions per prompt for --verify."),
    data: Optional[str] = typer.Option(None, "--data", help="Prompts from this prepared "
                                       "data folder / JSONL / 'demo' [default: "
                                       "prepared test split, else demo]."),
    tokenizer_from: Optional[Path] = typer.Option(None, "--tokenizer-from", help="Copy the "
                                                  "tokenizer metadata from this GGUF."),
    load_dtype: str = typer.Option("float32", "--load-dtype", help="dtype to load and "
                                   "merge in (bfloat16 halves the RAM of 7B models)."),
    lora_type: str = typer.Option("f32", "--lora-type", help="LoRA tensor type: f32 or f16."),
    threads: Optional[int] = typer.Option(None, "--threads", help="llama.cpp threads "
                                          "[default: all cores]."),
    out_alias: Optional[Path] = typer.Option(None, "--out", hidden=True),
):
    """Export a LoRA adapter (or a base model) to GGUF for llama.cpp, offline.

    harness export adapters/NAME --format gguf-lora
    harness export adapters/NAME --format gguf --quant q8_0 --quant q4_k_m --verify
    harness export --base-only smollm2-135m-instruct --format gguf --quant f16"""
    from .console import split_list
    from ..export.to_gguf import export

    res = export(None if base_only else adapter, fmt, split_list(quant),
                 base=adapter if base_only else base, out=output or out_alias,
                 verify_prompts=verify_prompts if verify else 0, data=data,
                 verify_tokens=verify_tokens, tokenizer_from=tokenizer_from,
                 load_dtype=load_dtype, lora_dtype=lora_type, threads=threads,
                 show_progress=True)
    first = next(iter(res.record["files"].values()))
    t = Table(title=f"exported ({first['architecture']}, base {first['base_model']})")
    for c in ("type", "file", "size"):
        t.add_column(c, justify="right" if c == "size" else "left")
    for label, p in res.files.items():
        t.add_row(label, str(p), _mb(p.stat().st_size))
    console.print(t)
    if res.verify:
        print_verify(res.verify)
    folder = next(iter(res.files.values())).parent
    console.print(f"record: {folder / 'export.json'}")

def generate_cmd(
    model: str = typer.Option(DEFAULT_MODEL, "--model", help="GGUF file or registry name."),
    lora: Optional[Path] = typer.Option(None, "--lora", help="LoRA adapter GGUF on top."),
    product: Optional[str] = typer.Option(None, "--product", help="product.json, a JSONL "
                                          "batch, or - for stdin [default: stdin]."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="[default: the "
                                             "task's max_gen_toks]"),
    temperature: float = typer.Option(0.0, "--temperature", help="0 = greedy."),
    seed: int = typer.Option(0, "--seed"),
    threads: Optional[int] = typer.Option(None, "--threads", help="llama.cpp threads "
                                          "[default: all cores]."),
    output: Optional[Path] = typer.Option(None, "--output", help="Also write the reviews "
                                          "as JSONL here, each as soon as it is done; "
                                          "rerun with the same file to resume."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start --output afresh "
                                   "instead of resuming it."),
    out_alias: Optional[Path] = typer.Option(None, "--out", hidden=True),
):
    """Write reviews for products with a GGUF model offline, streamed, with throughput."""
    from ..backends.throughput import METER
    from ..export.generate import (ReviewLog, check_settings, generate_reviews, open_model,
                                   read_products)

    out = output or out_alias
    check_settings(max_tokens, temperature)
    products = read_products(product)   # every product checked before the model loads
    log = None
    if out is not None:
        log = ReviewLog(out, {"model": model, "lora": str(lora) if lora else None,
                              "max_tokens": max_tokens, "temperature": temperature,
                              "seed": seed}, overwrite=overwrite)
        if log.done:
            console.print(f"[dim]resuming {out}: {len(log.done)} reviews already there[/]")
        products = [(pid, p) for pid, p in products if pid not in log.done]
    METER.reset()
    lm = open_model(model, lora, n_threads=threads, seed=seed)
    started: set[str] = set()

    def stream(pid: str, piece: str) -> None:
        if pid not in started:
            started.add(pid)
            console.print(f"[bold]{pid}[/] ", end="", markup=True, highlight=False)
        console.print(piece, end="", markup=False, highlight=False, soft_wrap=True)

    def warn(msg: str) -> None:
        err.print(f"warning: {msg}", style="yellow", markup=False, highlight=False)

    for r in generate_reviews(model, products, lora=lora, max_tokens=max_tokens,
                              temperature=temperature, seed=seed, lm=lm, on_text=stream,
                              on_warning=warn):
        if log is not None:
            log.add(r)
        if r["id"] not in started:
            console.print(f"[bold]{r['id']}[/] [dim](empty review: a stop string came "
                          f"first)[/]", end="")
        console.print()
        console.print(f"[dim]   {r['generated_tokens']} tokens, "
                      f"{r['generation_tokens_per_second'] or 0:.1f} tok/s generation, "
                      f"{r['prompt_tokens_per_second'] or 0:.1f} tok/s prompt[/]")
    s = METER.summary()
    t = Table(title=f"{Path(str(lm.model_path)).name}" + (f" + {lora.name}" if lora else ""))
    t.add_column("throughput")
    t.add_column("value", justify="right")
    for k in ("requests", "generated_tokens", "generation_tokens_per_second",
              "prompt_tokens_per_second", "time_to_first_token_s", "load_s", "peak_rss_mb"):
        t.add_row(k, str(s[k]))
    console.print(t)
    if out is not None:
        console.print(f"reviews: {out}", markup=False)
