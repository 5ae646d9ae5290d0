"""SmolLM2-135M-Instruct in four formats, one run: Q4_K_M, Q8_0, F16 GGUF (llama.cpp) and the
transformers fp32 model. For each: file size, load time, peak RSS, prompt and generation
tokens/s on real product_review prompts (greedy, the same prompts and token budget).

    .venv/bin/python benchmarks/export_formats.py [--prompts 8] [--max-tokens 64] [--threads 2]
        [--adapter adapters/NAME] [--out results/export_formats.json]

The GGUFs are exported in-process first (`harness export --base-only smollm2-135m-instruct
--format gguf --quant f16 --quant q8_0 --quant q4_k_m`, or the merged --adapter), into a
temporary folder. Each format then runs in its own subprocess, so its peak RSS and load time
are its own. Goal of the export issue: Q4_K_M generation >= 5x transformers fp32 on CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from harness.models import DEFAULT_MODEL  # noqa: E402

NAME = DEFAULT_MODEL
FORMATS = ("q4_k_m", "q8_0", "f16", "transformers-fp32")


def peak_rss_mb() -> float:
    """This process's own high-water RSS (VmHWM). ru_maxrss would not do: Linux carries it
    over exec from the parent, which held the transformers model while exporting."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    from harness.backends.throughput import peak_rss_mb as ru_maxrss_mb
    return ru_maxrss_mb()


def run_gguf(path: str, prompts: list[str], max_tokens: int, threads: int) -> dict:
    from harness.backends.llama_cpp import LlamaCppLM
    from harness.backends.throughput import METER
    from harness.export.generate import review_context

    t0 = time.perf_counter()
    lm = LlamaCppLM(model=path, n_threads=threads, max_gen_toks=max_tokens)
    load_s = time.perf_counter() - t0
    METER.reset()
    for p in prompts:  # no stop strings: every format writes up to max_tokens (or its EOS)
        lm.generate_one(review_context(lm, p), [], max_tokens)
    return {**METER.summary(), "load_s": round(load_s, 3), "peak_rss_mb": peak_rss_mb(),
            "size_bytes": Path(path).stat().st_size}


def run_transformers(token_ids: list[list[int]], eog: list[int], max_tokens: int,
                     threads: int, adapter: str | None) -> dict:
    import torch
    from transformers import LogitsProcessorList

    from harness.backends.hf import _FirstTokenClock
    from harness.backends.throughput import METER
    from harness.export.to_gguf import load_model, read_adapter, resolve_base

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    ad = read_adapter(adapter) if adapter else None
    model = load_model(resolve_base(ad.base if ad else NAME), ad, "float32")
    load_s = time.perf_counter() - t0
    METER.reset()
    with torch.no_grad():
        for toks in token_ids:  # llama.cpp's tokens of the same chat-formatted prompts
            ids = torch.tensor([toks])
            clock = _FirstTokenClock()
            t = time.perf_counter()
            out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                 max_new_tokens=max_tokens, eos_token_id=eog,
                                 pad_token_id=eog[0], logits_processor=LogitsProcessorList([clock]))
            total = time.perf_counter() - t
            METER.add(ids.shape[1], (clock.t_first or time.perf_counter()) - t,
                      out.shape[1] - ids.shape[1], total)
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    return {**METER.summary(), "load_s": round(load_s, 3), "peak_rss_mb": peak_rss_mb(),
            "size_bytes": size, "size_note": "fp32 weights in memory"}


def prompt_tokens(gguf: Path, prompts: list[str]) -> dict:
    """Chat-formatted prompts as llama.cpp tokens, for the transformers run."""
    from harness.backends.llama_cpp import LlamaCppLM
    from harness.export.generate import review_context

    lm = LlamaCppLM(model=str(gguf), n_threads=1)
    return {"tokens": [lm.prompt_tokens(review_context(lm, p)) for p in prompts],
            "eog": sorted(lm.eog)}


def child(args) -> None:
    from harness.export.to_gguf import review_prompts

    if args.one == "transformers-fp32":
        toks = json.loads(Path(args.tokens).read_text())
        res = run_transformers(toks["tokens"], toks["eog"], args.max_tokens, args.threads,
                               args.adapter)
    else:
        res = run_gguf(args.gguf, review_prompts(args.prompts, args.data), args.max_tokens,
                       args.threads)
    print("RESULT " + json.dumps(res))


def export_ggufs(folder: Path, adapter: str | None) -> dict[str, Path]:
    from harness.export.to_gguf import export

    quants = ["f16", "q8_0", "q4_k_m"]
    if adapter:
        res = export(adapter, "gguf", quants, out=folder, show_progress=True)
    else:
        res = export(None, "gguf", quants, base=NAME, out=folder, show_progress=True)
    return res.files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--adapter", default=None, help="benchmark this adapter merged")
    ap.add_argument("--data", default=None, help="prompts: prepared data folder or 'demo'")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "export_formats.json")
    ap.add_argument("--one", choices=FORMATS, help=argparse.SUPPRESS)
    ap.add_argument("--gguf", help=argparse.SUPPRESS)
    ap.add_argument("--tokens", help=argparse.SUPPRESS)
    args = ap.parse_args()
    from harness.models import OFFLINE_ENV
    os.environ.update(OFFLINE_ENV)   # each format's child process inherits it
    if args.one:
        return child(args)

    from rich.console import Console
    from rich.table import Table

    from harness.files import write_json

    console = Console()
    results = {}
    with tempfile.TemporaryDirectory(prefix="export-bench-") as tmp:
        t0 = time.perf_counter()
        files = export_ggufs(Path(tmp), args.adapter)
        export_s = time.perf_counter() - t0
        from harness.export.to_gguf import review_prompts
        tokens = Path(tmp) / "tokens.json"
        tokens.write_text(json.dumps(prompt_tokens(files["q4_k_m"],
                                                   review_prompts(args.prompts, args.data))))
        for fmt in FORMATS:
            cmd = [sys.executable, __file__, "--one", fmt, "--prompts", str(args.prompts),
                   "--max-tokens", str(args.max_tokens), "--threads", str(args.threads)]
            cmd += ["--gguf", str(files[fmt])] if fmt in files else ["--tokens", str(tokens)]
            cmd += ["--adapter", args.adapter] if args.adapter else []
            cmd += ["--data", args.data] if args.data else []
            console.print(f"[dim]running {fmt} …[/]")
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                sys.exit(f"{fmt} failed:\n{proc.stderr[-3000:]}")
            results[fmt] = json.loads(line[len("RESULT "):])
    base = results["transformers-fp32"]["generation_tokens_per_second"]
    t = Table(title=f"SmolLM2-135M-Instruct{' + ' + args.adapter if args.adapter else ''}: "
                    f"{args.prompts} prompts × ≤{args.max_tokens} tokens, {args.threads} threads")
    for c in ("format", "size MB", "load s", "peak RSS MB", "prompt tok/s", "gen tok/s",
              "gen vs fp32"):
        t.add_column(c, justify="left" if c == "format" else "right", no_wrap=c == "format")
    for fmt, r in results.items():
        gen = r["generation_tokens_per_second"]
        speedup = round(gen / base, 2) if gen and base else None
        r["generation_speedup_vs_transformers_fp32"] = speedup
        t.add_row(fmt, f"{r['size_bytes'] / 1e6:.1f}", f"{r['load_s']:.2f}",
                  f"{r['peak_rss_mb']:.0f}", f"{r['prompt_tokens_per_second'] or 0:.1f}",
                  f"{gen or 0:.1f}", f"{r['generation_speedup_vs_transformers_fp32'] or 0:.1f}×")
    console.print(t)
    cmd = "benchmarks/export_formats.py " + " ".join(sys.argv[1:])
    load = os.getloadavg()
    write_json(args.out, {"command": cmd.strip(), "model": NAME, "adapter": args.adapter,
                          "prompts": args.prompts, "max_tokens": args.max_tokens,
                          "threads": args.threads, "export_s": round(export_s, 1),
                          "load_average_at_end": [round(x, 2) for x in load],
                          "results": results})
    console.print(f"written {args.out} (load average {load[0]:.1f} — other processes on the "
                  f"machine slow every format)")


if __name__ == "__main__":
    main()
