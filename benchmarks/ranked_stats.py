"""What a loglikelihood-ranked compare run (product_department, product_nextitem) looked like:
per cell, the most frequent top choice and the mean prompt / choice length in tokens.

    python benchmarks/ranked_stats.py results/measure/compare-department [--tokenizer MODEL]
"""
from __future__ import annotations

import argparse
import statistics
from collections import Counter
from pathlib import Path

from harness.compare.summary import load_run
from harness.models import DEFAULT_MODEL


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run", type=Path)
    ap.add_argument("--tokenizer", default=DEFAULT_MODEL,
                    help="registry model whose tokenizer counts the tokens")
    args = ap.parse_args()
    from transformers import AutoTokenizer

    from harness.models import resolve_hf

    pretrained, gguf = resolve_hf(args.tokenizer)
    tok = AutoTokenizer.from_pretrained(pretrained, gguf_file=gguf)
    _, cells = load_run(args.run)
    for c in cells:
        samples = c.get("samples") or []
        if not samples:
            continue
        tops, ctx, cont = Counter(), [], []
        for s in samples:
            lls = [r[0][0] for r in s["resps"]]
            tops[s["arguments"][lls.index(max(lls))][1].strip()] += 1
            ctx.append(len(tok(s["arguments"][0][0])["input_ids"]))
            cont += [len(tok(a[1])["input_ids"]) for a in s["arguments"]]
        top, n = tops.most_common(1)[0]
        print(f"{c['model']} {c['variant']}: top choice {top!r} {n} of {len(samples)}; "
              f"prompt {statistics.mean(ctx):.0f} tokens, choice {statistics.mean(cont):.1f} "
              f"tokens ({args.tokenizer} tokenizer)")


if __name__ == "__main__":
    main()
