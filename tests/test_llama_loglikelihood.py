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


def test_prefix_reuse_matches_fresh_scoring(lm):
    together = lm.loglikelihood(_inst([(CTX, c) for c in CHOICES]), disable_tqdm=True)
    scorer = lm._scoring_llm()
    for c, (ll, greedy) in zip(CHOICES, together):
        scorer.n_tokens = 0                         # forget the cached prefix
        fresh, fresh_greedy = lm.loglikelihood(_inst([(CTX, c)]), disable_tqdm=True)[0]
        assert ll == pytest.approx(fresh, abs=2e-3) and greedy == fresh_greedy
    assert len({round(ll, 3) for ll, _ in together}) == len(CHOICES)
    assert all(ll < 0 for ll, _ in together)


def test_one_token_answer_needs_no_decode(lm):
    scorer = lm._scoring_llm()
    ctx_toks = lm.prompt_tokens(CTX)
    one = [c for c in CHOICES if len(lm.tok_encode(CTX + c)) == len(lm.tok_encode(CTX)) + 1]
    assert one, "no one-token choice to test with"
    lm.loglikelihood(_inst([(CTX, CHOICES[2])]), disable_tqdm=True)   # evaluates the context
    calls = []
    real_eval = scorer.eval
    scorer.eval = lambda toks: (calls.append(len(toks)), real_eval(toks))
    try:
        ll = lm.loglikelihood(_inst([(CTX, one[0])]), disable_tqdm=True)[0][0]
    finally:
        del scorer.eval
    assert calls == []
    scorer.n_tokens = 0
    assert ll == pytest.approx(lm.loglikelihood(_inst([(CTX, one[0])]), disable_tqdm=True)[0][0],
                               abs=2e-3)
    assert list(scorer.input_ids[: len(ctx_toks)]) == ctx_toks


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
