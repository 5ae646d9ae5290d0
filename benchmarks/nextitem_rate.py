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
    the prefill rate that is.

    .venv/bin/python benchmarks/nextitem_rate.py [--docs 20] [--repeat 3] [--goal-s 180]

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
    ap.add_argument("--data", type=Path,
                    default=ROOT / "data" / "prepared" / "product_nextitem" / "test.jsonl")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "bench" / "nextitem_rate.json")
    args = ap.parse_args()
    if not args.data.is_file():
        sys.exit(f"{args.data}: no prepared nextitem test split (harness data prepare); "
                 "this benchmark reads real documents")

    from harness.models import set_offline_defaults
    set_offline_defaults()
    from harness.backends.llama_cpp import LlamaCppLM
    from harness.backends.llama_scoring import decode_view
    from harness.files import write_json
    from harness.tasks.nextitem import nextitem_prompt

    lm = LlamaCppLM(model=args.model)
    recs = [json.loads(line) for line in args.data.read_text(encoding="utf-8").splitlines()
            if line.strip()][:args.docs]
    docs = []
    for r in recs:
        text = lm.apply_chat_template([{"role": "user", "content": nextitem_prompt(r["history"])}])
        ctx = lm.prompt_tokens(text)      # lm-eval's pair encoding, BOS as the backend adds it
        conts = [lm.tok_encode(text + " " + c)[len(lm.tok_encode(text)):] for c in r["candidates"]]
        docs.append((ctx, [c for c in conts if c]))
    ctx_tok = sum(len(c) for c, _ in docs)
    cand_tok = sum(len(x) - 1 for _, cs in docs for x in cs)
    per_doc = (ctx_tok + cand_tok) / len(docs)

    scorer = lm._group_scorer()
    scorer.score(*docs[0])                      # warm up the multi-sequence graphs
    best_scorer = float("inf")
    for _ in range(args.repeat):
        t = time.perf_counter()
        for ctx, conts in docs:
            scorer.score(ctx, conts)
        best_scorer = min(best_scorer, time.perf_counter() - t)

    # one sequence of a document's length from an empty cache, on the scorer's own context
    import llama_cpp
    n = min(int(round(per_doc)), scorer.n_ctx)
    flat = [t for ctx, conts in docs for t in ctx + [x for c in conts for x in c[:-1]]][:n]
    n_ctx_part = min(int(round(ctx_tok / len(docs))), n)

    def prefill(all_logits: bool) -> float:
        best = float("inf")
        for _ in range(args.repeat):
            llama_cpp.llama_memory_clear(scorer.mem, True)
            t = time.perf_counter()
            for i in range(0, n, scorer.n_batch):
                chunk = flat[i:i + scorer.n_batch]
                decode_view(scorer.ctx, scorer.batch,
                            [(tok, i + p, 0, (i + p == n - 1) or (all_logits and i + p >= n_ctx_part))
                             for p, tok in enumerate(chunk)], scorer.n_vocab)
            best = min(best, time.perf_counter() - t)
        return n / best

    rate_last, rate_rows = prefill(False), prefill(True)
    scorer_rate = (ctx_tok + cand_tok) / best_scorer
    needed = per_doc * args.goal_docs / args.goal_s
    out = {
        "model": args.model, "docs": len(docs), "repeat": args.repeat,
        "tokens_per_doc": {"context": ctx_tok / len(docs), "candidates": cand_tok / len(docs),
                           "total": per_doc},
        "scorer": {"s_per_doc": best_scorer / len(docs), "tokens_per_s": scorer_rate,
                   f"projected_s_for_{args.goal_docs}_docs": best_scorer / len(docs) * args.goal_docs},
        "prefill_one_sequence": {"tokens": n, "tokens_per_s_logits_at_last": rate_last,
                                 "tokens_per_s_logits_at_candidate_tokens": rate_rows},
        "needed": {"goal": f"{args.goal_docs} docs in {args.goal_s:.0f} s",
                   "tokens_per_s": needed, "times_prefill_rate": needed / rate_last},
        "threads": os.cpu_count(), "machine": platform.machine(),
        "loadavg_1min_after": os.getloadavg()[0],
    }
    write_json(args.out, out)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
