"""Anti-loop decoding over the generated tokens only: one rule, applied alike by every backend.

transformers' `no_repeat_ngram_size` and `repetition_penalty` count the prompt of a decoder-only
model, so they penalise copying the product's own facts (its brand, its "8 GB"). This rule looks
at the tokens the model has generated in this answer and nothing else:

    no_repeat_ngram_generated: N   (a task's generation_kwargs; 0 or absent = off)

a token that would complete an N-gram already present in the generated tokens is banned for the
next step. Greedy decoding stays greedy: the argmax is taken over the tokens not banned.
The llama.cpp backend applies it to each sequence's logits row; the transformers backend through
a LogitsProcessor that slices the prompt off (harness.backends.hf).
"""
from __future__ import annotations

GEN_KEY = "no_repeat_ngram_generated"
# Greedy requests decoded together per backend (llama.cpp: BatchDecoder; transformers: lm-eval's
# batch_size with left padding). Backends not named: 1. Chosen by benchmarks/batch_sizes.py
# (README, "Compare"): transformers' aggregate rate still rises from 16 to 32 (1.36x and 1.72x
# batch 8's), llama.cpp's hardly past 8 (its cells are bound by prefill), where gemma3-270m's
# texts part from batch 8's more often the larger the batch.
GENERATION_BATCH = {"llama-cpp": 8, "hf": 32}


def pop_setting(gen_kwargs: dict) -> int:
    """Remove the anti-loop key from a gen_kwargs dict (backends must not pass it on) and
    return N (0 = off)."""
    v = gen_kwargs.pop(GEN_KEY, 0)
    try:
        n = int(v or 0)
    except (TypeError, ValueError):
        from ..errors import HarnessError
        raise HarnessError(f"generation_kwargs {GEN_KEY}: {v!r} is not an integer") from None
    if n < 0:
        from ..errors import HarnessError
        raise HarnessError(f"generation_kwargs {GEN_KEY}: {n} must be >= 0")
    return n


def banned_next(generated: list[int], n: int) -> set[int]:
    """Tokens that would complete an n-gram already present in `generated` (the prompt is not
    part of `generated`). n <= 0: nothing banned; n == 1: every generated token."""
    if n <= 0 or len(generated) < n - 1:
        return set()
    if n == 1:
        return set(generated)
    prefix = tuple(generated[len(generated) - (n - 1):])
    out = set()
    for i in range(len(generated) - n + 1):
        if tuple(generated[i:i + n - 1]) == prefix:
            out.add(generated[i + n - 1])
    return out
