"""The loglikelihood path of the llama.cpp backend on the real SmolLM2 GGUF: prefix reuse gives
the numbers of a fresh evaluation, one-token answers cost no decode, and the values agree with
the transformers backend on the same weights."""
from __future__ import annotations

import pytest
from lm_eval.api.instance import Instance

CTX = "Which department of a grocery store sells this product?\n\nProduct: Gala Apples\nDepartment:"
CHOICES = [" produce", " household", " dairy eggs", " frozen", " personal care"]


def _inst(pairs):
    return [Instance("loglikelihood", {}, p, i) for i, p in enumerate(pairs)]


@pytest.fixture(scope="module")
def lm():
    from harness.backends.llama_cpp import LlamaCppLM

    return LlamaCppLM(model="smollm2-135m-instruct", n_ctx=512)


def test_grouped_scoring_matches_one_at_a_time(lm):
    """The choices of a document go through GroupScorer (one context decode, one batch); each
    must equal scoring it alone from an empty cache with score_tokens."""
    together = lm.loglikelihood(_inst([(CTX, c) for c in CHOICES]), disable_tqdm=True)
    scorer = lm._scoring_llm()
    ctx = lm.prompt_tokens(CTX)
    for c, (ll, greedy) in zip(CHOICES, together):
        cont = lm.tok_encode(CTX + c)[len(lm.tok_encode(CTX)):]
        scorer.n_tokens = 0                         # forget any cached prefix
        fresh, fresh_greedy = lm.score_tokens(ctx + cont, len(cont))
        assert ll == pytest.approx(fresh, abs=2e-3) and greedy == fresh_greedy
    assert len({round(ll, 3) for ll, _ in together}) == len(CHOICES)
    assert all(ll < 0 for ll, _ in together)


def test_decodes_per_document(lm):
    """One decode for the context and one for all multi-token continuations together; a
    document whose choices are all one token long needs the context decode only."""
    g = lm._group_scorer()
    other = CTX.replace("Gala Apples", "Dish Soap")
    one = [c for c in CHOICES if len(lm.tok_encode(other + c)) == len(lm.tok_encode(other)) + 1]
    assert one and len(one) < len(CHOICES), "need one-token and longer choices"
    before = g.decodes
    lm.loglikelihood(_inst([(CTX, c) for c in CHOICES] + [(other, c) for c in one]),
                     disable_tqdm=True)
    assert g.decodes - before == 2 + 1


def test_tokens_per_document_against_the_naive_count(lm):
    """The throughput record counts the tokens run per document (the context once, then each
    continuation) beside what scoring every pair on its own would run."""
    from harness.backends.throughput import METER

    METER.reset()
    lm.loglikelihood(_inst([(CTX, c) for c in CHOICES]), disable_tqdm=True)
    ctx = [lm.prefix_token_id] + lm.tok_encode(CTX) if lm._add_bos() else lm.tok_encode(CTX)
    conts = [lm.tok_encode(CTX + c)[len(lm.tok_encode(CTX)):] for c in CHOICES]
    s = METER.summary()
    assert s["loglikelihood_docs"] == 1
    assert s["loglikelihood_tokens_per_doc"] == len(ctx) + sum(len(c) - 1 for c in conts)
    assert s["loglikelihood_naive_tokens_per_doc"] == sum(len(ctx) + len(c) - 1 for c in conts)
    assert s["loglikelihood_tokens_per_doc"] < s["loglikelihood_naive_tokens_per_doc"] / 3


def test_long_requests_fall_back_and_keep_the_end(lm):
    """Longer than the window (n_ctx=512): scored by score_tokens on the last 512 tokens, the
    same number the grouped path gives for exactly those tokens."""
    long_ctx = " ".join(["word"] * 700)
    (ll, _), = lm.loglikelihood(_inst([(long_ctx, " word")]), disable_tqdm=True)
    window = (lm.prompt_tokens(long_ctx) + lm.tok_encode(" word"))[-512:]
    (ref, _), = lm._group_scorer().score(window[:-1], [window[-1:]])
    assert ll < 0 and ll == pytest.approx(ref, abs=2e-3)


def test_greedy_flag(lm):
    (ll, greedy), (ll2, greedy2) = lm.loglikelihood(
        _inst([("The capital of France is", " Paris"), ("The capital of France is", " Zebra")]),
        disable_tqdm=True)
    assert greedy and not greedy2 and ll > ll2


@pytest.mark.slow
def test_agrees_with_transformers_backend(lm):
    from harness.backends.hf import TimedHFLM

    pairs = [(CTX, c) for c in CHOICES[:3]] + [("The capital of France is", " Paris"),
                                               ("", "Hello world, this is a test.")]
    ours = lm.loglikelihood(_inst(pairs), disable_tqdm=True)
    hf = TimedHFLM(model="smollm2-135m-instruct", device="cpu", batch_size=1)
    theirs = hf.loglikelihood(_inst(pairs), disable_tqdm=True)
    for (a, ga), (b, gb) in zip(ours, theirs):
        assert a == pytest.approx(b, abs=0.25) and ga == gb
