"""Backend throughput, in one run on the same prompts and the same model (SmolLM2-135M-Instruct):

  1. raw llama-cpp-python (Llama.create_completion, streaming)     - the reference
  2. our lm-eval llama.cpp backend (harness.backends.llama_cpp)     - goal: >= 0.95x of (1)
  3. our transformers backend (lm-eval HFLM + timing, fp32 dequantized from the same GGUF)

Generation tokens/s = (tokens generated - 1) / (time after the first token), per request,
summed over requests; greedy; no stop strings; the same max tokens. Requests of (1) and (2)
alternate so background load hits both alike.

    .venv/bin/python benchmarks/backends.py [--prompts 8] [--max-tokens 64] [--threads N]

Writes results/bench/backends.json and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness.models import DEFAULT_MODEL, set_offline_defaults  # noqa: E402

set_offline_defaults()

from harness.backends.llama_cpp import LlamaCppLM, open_llama  # noqa: E402
from harness.backends.throughput import METER  # noqa: E402
from harness.files import write_json  # noqa: E402
from harness.models import resolve_gguf  # noqa: E402
from harness.paths import RESULTS_DIR, SHARED_DATA  # noqa: E402
from harness.prompts import review_prompt  # noqa: E402
from harness.tasks.records import read_records  # noqa: E402


def raw_request(llm, prompt: str, max_tokens: int) -> tuple[int, float, float]:
    llm.reset()
    t0 = time.perf_counter()
    first, n = None, 0
    for _chunk in llm.create_completion(prompt, max_tokens=max_tokens, temperature=0.0,
                                        top_k=1, repeat_penalty=1.0, stream=True):
        if first is None:
            first = time.perf_counter()
        n += 1
    return n, first - t0, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--out", default=str(RESULTS_DIR / "bench" / "backends.json"))
    args = ap.parse_args()

    data = "demo"
    if (SHARED_DATA / "amazon_in").exists():
        from harness.data import data_dir
        data = data_dir() if (data_dir() / "product_review" / "test.jsonl").exists() else "demo"
    recs = read_records("product_review", "test", data)[: args.prompts]

    ours = LlamaCppLM(model=args.model, n_ctx=2048, n_threads=args.threads)
    prompts = [ours.apply_chat_template([{"role": "user", "content": review_prompt(r["product"])}])
               for r in recs]
    raw = open_llama(resolve_gguf(args.model), n_ctx=2048, n_threads=args.threads)
    # `raw` gets the chat-formatted text too; llama-cpp-python adds BOS as the GGUF says.

    raw_tot = {"gen": 0, "decode_s": 0.0, "ttft": 0.0}
    METER.reset()
    for i, p in enumerate(prompts):
        order = (0, 1) if i % 2 == 0 else (1, 0)
        for which in order:
            if which == 0:
                n, ttft, total = raw_request(raw, p, args.max_tokens)
                if n > 1:
                    raw_tot["gen"] += n - 1
                    raw_tot["decode_s"] += total - ttft
                raw_tot["ttft"] += ttft
            else:
                ours.generate_one(p, [], args.max_tokens)
    ours_tp = METER.summary()
    raw_gen = raw_tot["gen"] / raw_tot["decode_s"]

    from harness.backends.hf import TimedHFLM

    class Req:
        def __init__(self, c):
            self.args = (c, {"until": [], "max_gen_toks": args.max_tokens, "do_sample": False})

    hf = TimedHFLM(model=args.model, batch_size=1)
    METER.reset()
    hf.generate_until([Req(p) for p in prompts], disable_tqdm=True)
    hf_tp = METER.summary()

    result = {
        "command": "python benchmarks/backends.py " + " ".join(sys.argv[1:]),
        "model": args.model, "prompts": len(prompts), "max_tokens": args.max_tokens,
        "threads": args.threads or os.cpu_count(), "machine": platform.machine(),
        "cpus": os.cpu_count(), "data": str(data),
        "raw_llama_cpp": {"generation_tokens_per_second": round(raw_gen, 2),
                          "time_to_first_token_s": round(raw_tot["ttft"] / len(prompts), 4)},
        "ours_llama_cpp": ours_tp, "ours_hf_fp32": hf_tp,
        "ratio_ours_vs_raw": round(ours_tp["generation_tokens_per_second"] / raw_gen, 3),
        "ratio_llama_cpp_vs_hf": round(ours_tp["generation_tokens_per_second"]
                                       / hf_tp["generation_tokens_per_second"], 2),
    }
    write_json(args.out, result)
    from rich.console import Console
    from rich.table import Table
    t = Table(title=f"generation throughput, {args.model}, {len(prompts)} prompts × "
                    f"{args.max_tokens} tokens, {result['threads']} threads")
    for c in ("backend", "gen tokens/s", "prompt tokens/s", "TTFT s", "vs raw"):
        t.add_column(c)
    t.add_row("raw llama-cpp-python", f"{raw_gen:.1f}", "",
              f"{result['raw_llama_cpp']['time_to_first_token_s']:.3f}", "1.00")
    t.add_row("ours: llama-cpp", f"{ours_tp['generation_tokens_per_second']:.1f}",
              f"{ours_tp['prompt_tokens_per_second']:.0f}", f"{ours_tp['time_to_first_token_s']:.3f}",
              f"{result['ratio_ours_vs_raw']:.3f}")
    t.add_row("ours: hf (fp32)", f"{hf_tp['generation_tokens_per_second']:.1f}",
              f"{hf_tp['prompt_tokens_per_second']:.0f}", f"{hf_tp['time_to_first_token_s']:.3f}",
              f"{hf_tp['generation_tokens_per_second'] / raw_gen:.3f}")
    Console().print(t)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
