"""The loglikelihood path of the transformers backend (harness-hf) with prefix reuse: the choices
of a document share one forward pass of their context, then run packed into one row after its
KV cache, each masked to the context and itself. The values must equal HFLM's own path (every
pair on its own) to 1e-4, on SmolLM2 (its GGUF dequantized to fp32) and on gemma3-270m
(sliding-window layers, 262k vocabulary)."""
from __future__ import annotations

import pytest
from lm_eval.api.instance import Instance

from harness.backends.throughput import METER

from _export_models import make_adapter


def _demo(n: int) -> list[dict]:
    from harness.tasks.records import read_records
    return read_records("product_nextitem", "test", "demo")[:n]


def _docs(lm, n: int):
    """(context, continuation) pairs of n product_nextitem documents (the demo set: the
    identity is a property of the model and the cache, not of the data), as the task sends
    them: the history (chat-templated where the model has a template), then each candidate
    title after a space."""
    from harness.export.generate import review_context
    from harness.tasks.nextitem import nextitem_prompt

    pairs = []
    for r in _demo(n):
        ctx = review_context(lm, nextitem_prompt(r["history"]))   # gemma3-270m has no template
        pairs += [(ctx, " " + c) for c in r["candidates"]]
    return pairs


def _inst(pairs):
    return [Instance("loglikelihood", {}, p, i) for i, p in enumerate(pairs)]


def _naive(lm, pairs):
    """HFLM's own path: each (context, continuation) pair run on its own."""
    from lm_eval.models.huggingface import HFLM

    reqs = [((c, x), *(lm._encode_pair(c, x) if c else   # lm-eval's rule for no context
                       ([lm.prefix_token_id], lm.tok_encode(x))))
            for c, x in pairs]
    return HFLM._loglikelihood_tokens(lm, reqs, disable_tqdm=True)


def _check(lm, pairs):
    METER.reset()
    ours = lm.loglikelihood(_inst(pairs), disable_tqdm=True)
    s = METER.summary()
    theirs = _naive(lm, pairs)
    for (a, ga), (b, gb) in zip(ours, theirs, strict=True):
        assert a == pytest.approx(b, abs=1e-4) and ga == gb
    assert len({round(a, 3) for a, _ in ours}) > len(ours) // 2   # not one value for all
    return s


@pytest.fixture(scope="module")
def smollm2():
    from harness.backends.hf import TimedHFLM
    return TimedHFLM(model="smollm2-135m-instruct", batch_size=1)


def test_prefix_reuse_equals_hflm_path(smollm2):
    """Four nextitem documents (20 pairs) plus a one-token choice and an empty context (lm-eval
    then scores after the prefix token): equal to HFLM's path; the record counts each context
    once."""
    pairs = _docs(smollm2, 4)
    s = _check(smollm2, pairs + [("The capital of France is", " Paris"),
                                 ("The capital of France is", " Zebra"), ("", "Hello world.")])
    assert s["loglikelihood_docs"] == 4 + 2
    assert s["loglikelihood_tokens_per_doc"] < s["loglikelihood_naive_tokens_per_doc"] / 2


def test_greedy_flag(smollm2):
    (ll, greedy), (ll2, greedy2) = smollm2.loglikelihood(
        _inst([("The capital of France is", " Paris"), ("The capital of France is", " Zebra")]),
        disable_tqdm=True)
    assert greedy and not greedy2 and ll > ll2


def test_chunks_of_continuations(smollm2, monkeypatch):
    """Continuations split over several forward passes (a chunk budget of a few tokens) give
    the same values as one pass."""
    import harness.backends.hf as hf

    pairs = _docs(smollm2, 2)
    whole = smollm2.loglikelihood(_inst(pairs), disable_tqdm=True)
    monkeypatch.setattr(hf, "RANK_CHUNK_TOKENS", 8)
    split = smollm2.loglikelihood(_inst(pairs), disable_tqdm=True)
    for (a, ga), (b, gb) in zip(whole, split, strict=True):
        assert a == pytest.approx(b, abs=1e-4) and ga == gb


def test_prefix_reuse_under_a_peft_adapter(tmp_path):
    """A tuned cell runs through PEFT: the same identity with a random LoRA on every
    projection (a model of its own: the adapter wraps the model it is put on)."""
    from harness.backends.hf import TimedHFLM

    lm = TimedHFLM(model="smollm2-135m-instruct", batch_size=1)
    lm.set_adapter(make_adapter("smollm2-135m-instruct", tmp_path / "lora", seed=3))
    pairs = _docs(lm, 2)
    _check(lm, pairs)
    lm.set_adapter(None)
    bare = lm.loglikelihood(_inst(pairs), disable_tqdm=True)
    lm.set_adapter(tmp_path / "lora")
    tuned = lm.loglikelihood(_inst(pairs), disable_tqdm=True)
    assert max(abs(a - b) for (a, _), (b, _) in zip(bare, tuned)) > 1e-2   # it changes them


def test_too_long_falls_back_to_hflm(smollm2):
    """A context longer than the window goes through HFLM's path (it keeps the end)."""
    long_ctx = " ".join(["word"] * (smollm2.max_length + 50))
    METER.reset()
    (ll, _), = smollm2.loglikelihood(_inst([(long_ctx, " word")]), disable_tqdm=True)
    (ref, _), = _naive(smollm2, [(long_ctx, " word")])
    assert ll == ref
    s = METER.summary()
    assert s["loglikelihood_tokens_per_doc"] == s["loglikelihood_naive_tokens_per_doc"]


@pytest.fixture(scope="module")
def gemma3():
    from harness.backends.hf import TimedHFLM
    return TimedHFLM(model="gemma3-270m", batch_size=1)


@pytest.mark.slow
def test_prefix_reuse_on_gemma3(gemma3):
    _check(gemma3, _docs(gemma3, 3))


@pytest.mark.slow
def test_gemma3_sliding_window(gemma3):
    """gemma3-270m's sliding-window layers see the last 512 positions. A context just inside
    the cache those layers keep (511 tokens), with continuations running past position 512:
    the packed mask must hide the keys a sliding layer no longer sees, as HFLM's path does. A
    longer context goes through HFLM's path."""
    history = " ".join(r["history"][-1] for r in _demo(16))
    ids = gemma3.tok_encode(history * 8)
    window = gemma3.model.config.sliding_window
    conts = [" " + c for r in _demo(2) for c in r["candidates"]]
    for cut in range(window, 0, -1):   # the longest context the sliding layers keep whole
        ctx = gemma3.tok_decode(ids[:cut])
        n_ctx = len(gemma3._encode_pair(ctx, conts[0])[0])
        if n_ctx <= window - 1:
            break
    pairs = [(ctx, c) for c in conts]
    n_cont = max(len(gemma3._encode_pair(ctx, c)[1]) for c in conts)
    # the case under test: the whole context cached, the last fed token window positions on
    assert n_ctx <= window - 1 and n_ctx + n_cont - 2 >= window, (n_ctx, n_cont)
    s = _check(gemma3, pairs)
    assert s["loglikelihood_tokens_per_doc"] < s["loglikelihood_naive_tokens_per_doc"]
    long_ctx = gemma3.tok_decode(ids[:window + 20])
    s = _check(gemma3, [(long_ctx, c) for c in conts[:3]])
    assert s["loglikelihood_tokens_per_doc"] == s["loglikelihood_naive_tokens_per_doc"]
