"""How fast the product_nextitem scorer pushes tokens through the model, against the rate this
CPU prefills the same model at, in one run (issue #12's 3-min goal for 200 documents).

A nextitem document is a history prompt plus 20 candidate titles (token counts: its output); the
llama.cpp backend (GroupScorer) decodes the prompt once and all candidates together, with a
full-vocabulary logit row for every candidate token. This script, on the first --docs real test
documents, with the backend's own tokenization (chat template included):

  - scorer: seconds per document and tokens per second through GroupScorer.score;
  - prefill: tokens per second of one sequence of the same length (the prompt followed by the
    candidates' tokens) decoded from an empty cache, logits at the last token only and at
    every candidate token, best of --repeat;
  - needed: the tokens per second 200 documents in --goal-s seconds ask for, and how many times
    the prefill rate that is;
  - transformers: the same for the transformers backend (harness-hf, the GGUF dequantized to
    float32) on the same documents, with its own tokenization: its scorer (_score_group: the
    prompt once, the candidates packed into one row) and one forward pass of a document's
    length; and the ratio of the two scorers' seconds per document, measured side by side.

    .venv/bin/python benchmarks/nextitem_rate.py [--docs 20] [--repeat 3] [--goal-s 180]
                                                 [--backends llama-cpp,hf]

Writes results/bench/nextitem_rate.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.models import DEFAULT_MODEL  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--goal-s", type=float, default=180.0, help="seconds for --goal-docs")
    ap.add_argument("--goal-docs", type=int, default=200)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--backends", default="llama-cpp,hf")
    ap.add_argument("--data", type=Path,
                    default=ROOT / "data" / "prepared" / "product_nextitem" / "test.jsonl")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "bench" / "nextitem_rate.json")
    args = ap.parse_args()
    if not args.data.is_file():
        sys.exit(f"{args.data}: no prepared nextitem test split (harness data prepare); "
                 "this benchmark reads real documents")

    from harness.models import set_offline_defaults
    set_offline_defaults()
    from harness.files import write_json

    recs = [json.loads(line) for line in args.data.read_text(encoding="utf-8").splitlines()
            if line.strip()][:args.docs]
    backends = args.backends.split(",")
    out = {"model": args.model, "docs": len(recs), "repeat": args.repeat}
    if "llama-cpp" in backends:
        out.update(llama_cpp_rates(args, recs))
    if "hf" in backends:
        out["transformers"] = hf_rates(args, recs)
        if "scorer" in out:
            out["transformers_scorer_speedup"] = (out["scorer"]["s_per_doc"]
                                                  / out["transformers"]["scorer"]["s_per_doc"])
    out.update({"threads": os.cpu_count(), "machine": platform.machine(),
                "loadavg_1min_after": os.getloadavg()[0]})
    write_json(args.out, out)
    print(json.dumps(out, indent=1))


def best_of(repeat: int, run) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t)
    return best


def rates(args, docs, score, forward, max_tokens: int) -> dict:
    """docs: (context tokens, [continuation tokens]) per document; score(ctx, conts) runs the
    backend's scorer on one; forward(tokens, from_row) runs one sequence from an empty cache
    with logits at the last token (from_row None) or at every row from from_row on."""
    ctx_tok = sum(len(c) for c, _ in docs)
    cand_tok = sum(len(x) - 1 for _, cs in docs for x in cs)
    per_doc = (ctx_tok + cand_tok) / len(docs)
    score(*docs[0])                                   # warm up
    best = best_of(args.repeat, lambda: [score(ctx, conts) for ctx, conts in docs])
    # one sequence of a document's length: the contexts' and candidates' tokens in a row
    n = min(int(round(per_doc)), max_tokens)
    flat = [t for ctx, conts in docs for t in ctx + [x for c in conts for x in c[:-1]]][:n]
    n_ctx_part = min(int(round(ctx_tok / len(docs))), n)
    rate_last = n / best_of(args.repeat, lambda: forward(flat, None))
    rate_rows = n / best_of(args.repeat, lambda: forward(flat, n_ctx_part))
    needed = per_doc * args.goal_docs / args.goal_s
    return {
        "tokens_per_doc": {"context": ctx_tok / len(docs), "candidates": cand_tok / len(docs),
                           "total": per_doc},
        "scorer": {"s_per_doc": best / len(docs), "tokens_per_s": per_doc * len(docs) / best,
                   f"projected_s_for_{args.goal_docs}_docs": best / len(docs) * args.goal_docs},
        "prefill_one_sequence": {"tokens": n, "tokens_per_s_logits_at_last": rate_last,
                                 "tokens_per_s_logits_at_candidate_tokens": rate_rows},
        "needed": {"goal": f"{args.goal_docs} docs in {args.goal_s:.0f} s",
                   "tokens_per_s": needed, "times_prefill_rate": needed / rate_last,
                   "times_rate_with_candidate_logits": needed / rate_rows},
    }


def llama_cpp_rates(args, recs) -> dict:
    import llama_cpp

    from harness.backends.llama_cpp import LlamaCppLM
    from harness.backends.llama_scoring import decode_view
    from harness.export.generate import review_context
    from harness.tasks.nextitem import nextitem_prompt

    lm = LlamaCppLM(model=args.model)
    docs = []
    for r in recs:
        text = review_context(lm, nextitem_prompt(r["history"]))
        ctx = lm.prompt_tokens(text)      # lm-eval's pair encoding, BOS as the backend adds it
        conts = [lm.tok_encode(text + " " + c)[len(lm.tok_encode(text)):] for c in r["candidates"]]
        docs.append((ctx, [c for c in conts if c]))
    scorer = lm._group_scorer()

    def forward(flat, from_row):          # on the scorer's own context
        n = len(flat)
        llama_cpp.llama_memory_clear(scorer.mem, True)
        for i in range(0, n, scorer.n_batch):
            decode_view(scorer.ctx, scorer.batch,
                        [(tok, i + p, 0, i + p == n - 1 or (from_row is not None
                                                            and i + p >= from_row))
                         for p, tok in enumerate(flat[i:i + scorer.n_batch])], scorer.n_vocab)

    return rates(args, docs, scorer.score, forward, scorer.n_ctx)


def hf_rates(args, recs) -> dict:
    import torch

    from harness.backends.hf import TimedHFLM
    from harness.export.generate import review_context
    from harness.tasks.nextitem import nextitem_prompt

    lm = TimedHFLM(model=args.model, batch_size=1)
    docs = []
    for r in recs:
        text = review_context(lm, nextitem_prompt(r["history"]))
        pairs = [lm._encode_pair(text, " " + c) for c in r["candidates"]]   # lm-eval's encoding
        docs.append((pairs[0][0], [c for _, c in pairs if c]))

    @torch.no_grad()
    def forward(flat, from_row):
        lm.model(torch.tensor([flat]), logits_to_keep=1 if from_row is None
                 else len(flat) - from_row)

    return {**rates(args, docs, lm._score_group, forward, lm.max_length),
            "torch_threads": torch.get_num_threads()}


if __name__ == "__main__":
    main()
