"""The transformers backend (harness-hf) on SmolLM2 (its GGUF dequantized to fp32): batched
generation against batch 1 and the meter's token counts, the anti-loop rule on generated tokens
only (TimedHFLM, and stock generate() through custom_generate), switching PEFT adapters on one
loaded model."""
from __future__ import annotations

import copy
import time

import pytest
import torch
from lm_eval.api.instance import Instance

from harness.backends.throughput import METER
from harness.backends.decoding import GEN_KEY
from harness.paths import SHARED_DATA

from _export_models import make_adapter as make_random_adapter

N_TOK = 32
LOOP_PROMPT = "I love it. I love it. I love it. I love it."  # SmolLM2 repeats it greedily


@pytest.fixture(scope="module")
def lm():
    from harness.backends.hf import TimedHFLM
    return TimedHFLM(model="smollm2-135m-instruct", batch_size=1)


@pytest.fixture(scope="module")
def contexts(request, lm):
    """16 real review prompts (prepared data when the raw data is here, else the demo set),
    through SmolLM2's chat template."""
    from harness.prompts import review_prompt
    from harness.tasks.records import read_records

    data = request.getfixturevalue("prepared_dir") \
        if (SHARED_DATA / "amazon_in" / "amazon.csv").exists() else "demo"
    recs = read_records("product_review", "test", data)[:16]
    assert len(recs) == 16
    return [lm.apply_chat_template([{"role": "user", "content": review_prompt(r["product"])}])
            for r in recs]


def generate(lm, contexts, batch_size, n_tok=N_TOK, **gen_kwargs):
    from harness.export.generate import review_stop

    lm.batch_size_per_gpu = batch_size
    kw = {"until": review_stop(), "max_gen_toks": n_tok, "do_sample": False, **gen_kwargs}
    reqs = [Instance("generate_until", {}, (c, dict(kw)), i) for i, c in enumerate(contexts)]
    return lm.generate_until(reqs, disable_tqdm=True)


def generate_ids(lm, texts: list[str], n_tok: int, **gen_kwargs) -> list[list[int]]:
    """Token ids generated for left-padded `texts` through TimedHFLM._model_generate, each
    row cut at its first end-of-sequence token."""
    ids, mask = lm.tok_batch_encode(texts)
    out = lm._model_generate(ids, ids.shape[1] + n_tok, [], attention_mask=mask,
                             do_sample=False, **gen_kwargs)
    return [cut_eos(lm, row) for row in out[:, ids.shape[1]:].tolist()]


def cut_eos(lm, row):
    eos = lm.tokenizer.eos_token_id
    return row[:row.index(eos)] if eos in row else row


def ngrams(tokens, n=4):
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def repeated_ngrams(tokens, n=4) -> int:
    grams = ngrams(tokens, n)
    return len(grams) - len(set(grams))


@pytest.mark.slow
def test_batched_generation_matches_batch_1(lm, contexts):
    """16 real prompts, 32 greedy tokens, at batch 1, 8 and 16 in one process: how many texts
    differ from batch 1 (fp32 ties under left padding may flip a few), the meter's counts
    (padding and the tokens a row makes after its stop are not counted) and the speed ratio."""
    runs = {}
    for bs in (1, 8, 16):
        METER.reset()
        t0 = time.perf_counter()
        texts = generate(lm, contexts, bs)
        runs[bs] = (texts, time.perf_counter() - t0, METER.summary())
    base, t1, m1 = runs[1]
    assert all(t.strip() for t in base)
    # batch 1 has no padding: the meter's prompt tokens are the prompts' own lengths
    assert m1["prompt_tokens"] == sum(len(lm.tok_encode(c)) for c in contexts)
    lines = []
    for bs in (8, 16):
        texts, secs, m = runs[bs]
        differ = [i for i, (a, b) in enumerate(zip(base, texts)) if a != b]
        lines.append(f"batch {bs}: {len(differ)}/16 texts differ from batch 1 {differ}, "
                     f"{t1 / secs:.2f}x batch 1's speed ({secs:.1f} s vs {t1:.1f} s), "
                     f"{m['generation_tokens_per_second']} vs "
                     f"{m1['generation_tokens_per_second']} gen tok/s")
        assert len(differ) <= 2, (bs, differ, [(base[i], texts[i]) for i in differ])
        assert m["requests"] == 16 and m["prompt_tokens"] == m1["prompt_tokens"]
        if not differ:  # same texts -> the same real generated tokens, whatever the padding
            assert m["generated_tokens"] == m1["generated_tokens"]
        assert m["time_to_first_token_s"] > 0 and m["generation_tokens_per_second"] > 0
    print("\n" + "\n".join(lines))


@pytest.mark.slow
def test_evaluate_passes_batch_size_to_hf_backend(tmp_path):
    from harness.evaluate.runner import evaluate

    res = evaluate("hf", "model=smollm2-135m-instruct", ["product_review"], limit=4,
                   batch_size=4, metadata={"data": "demo"}, gen_kwargs="max_gen_toks=12")
    assert res["config"]["model"] == "harness-hf"
    assert res["config"]["batch_size"] == 4
    t = res["throughput"]
    assert t["requests"] == 4 and 0 < t["generated_tokens"] <= 4 * 12
    assert all(s["resps"][0][0].strip() for s in res["samples"]["product_review"])


def test_generated_ngram_processor_ignores_prompt_and_padding():
    from harness.backends.hf import GeneratedNoRepeatNGram

    pad = 0
    # row 0: left-padded prompt [5 6 7] + generated [7 8 9 7 8]; row 1: prompt holds 1 2 3
    # (never banned), generated [1 2 4 1 2]
    ids = torch.tensor([[pad, pad, 5, 6, 7, 7, 8, 9, 7, 8],
                        [1, 2, 3, 1, 2, 1, 2, 4, 1, 2]])
    scores = torch.zeros(2, 12)
    out = GeneratedNoRepeatNGram(3, prompt_len=5)(ids, scores.clone())
    assert torch.isinf(out[0]).nonzero().flatten().tolist() == [9]
    assert torch.isinf(out[1]).nonzero().flatten().tolist() == [4]
    assert torch.equal(GeneratedNoRepeatNGram(3, prompt_len=8)(ids, scores.clone()), scores)


def test_anti_loop_rule_breaks_a_greedy_loop(lm):
    """Without the rule SmolLM2 repeats the prompt's sentence; with it, no generated 4-gram
    comes twice, greedy decoding is unchanged up to the first repeat, the prompt's own 4-grams
    may still be copied, and stock generate() with custom_generate gives the same tokens."""
    from harness.backends.hf import generate_no_loop

    n_tok = 40
    [plain] = generate_ids(lm, [LOOP_PROMPT], n_tok)
    [ruled] = generate_ids(lm, [LOOP_PROMPT], n_tok, **{GEN_KEY: 4})
    assert repeated_ngrams(plain) >= 10, lm.tok_decode(plain)
    assert repeated_ngrams(ruled) == 0, lm.tok_decode(ruled)
    first_repeat = next(i + 3 for i, g in enumerate(ngrams(plain)) if g in ngrams(plain)[:i])
    assert ruled[:first_repeat] == plain[:first_repeat]
    assert ruled[first_repeat] != plain[first_repeat]
    prompt_grams = set(ngrams(lm.tok_encode(LOOP_PROMPT)))
    assert prompt_grams & set(ngrams(ruled)), "the prompt's 4-grams must stay allowed"

    ids = torch.tensor([lm.tok_encode(LOOP_PROMPT)])
    stock = lm.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n_tok,
                              do_sample=False, pad_token_id=lm.tokenizer.pad_token_id,
                              custom_generate=generate_no_loop, **{GEN_KEY: 4})
    assert cut_eos(lm, stock[0, ids.shape[1]:].tolist()) == ruled
    # transformers' own no_repeat_ngram_size counts the prompt: it cannot even copy it once
    own = lm.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n_tok,
                            do_sample=False, pad_token_id=lm.tokenizer.pad_token_id,
                            no_repeat_ngram_size=4)
    assert not prompt_grams & set(ngrams(own[0, ids.shape[1]:].tolist()))


def test_stock_hflm_applies_the_rule_through_custom_generate(lm):
    """lm-eval's own HFLM passes every generation kwarg to generate(): the key alone is
    rejected by transformers; with the task YAML's custom_generate it is applied, with the
    same text as TimedHFLM."""
    from lm_eval.models.huggingface import HFLM

    from harness.backends.hf import generate_no_loop

    stock = HFLM(pretrained=lm.model, tokenizer=lm.tokenizer, batch_size=1)
    kw = {"until": [], "max_gen_toks": 40, "do_sample": False, GEN_KEY: 4}

    def run(model, **extra):
        req = Instance("generate_until", {}, (LOOP_PROMPT, {**kw, **extra}), 0)
        return model.generate_until([req], disable_tqdm=True)[0]

    with pytest.raises(ValueError, match=GEN_KEY):
        run(stock)
    ruled = run(stock, custom_generate=generate_no_loop)
    assert ruled == run(lm, custom_generate=generate_no_loop) == run(lm)
    assert ruled != run(lm, **{GEN_KEY: 0})


def test_anti_loop_rule_in_a_left_padded_batch(lm, contexts):
    """The rule slices off the padded prompt width: the looping prompt, padded next to a long
    product prompt, gets the same tokens as alone, and no row repeats a generated 4-gram."""
    [alone] = generate_ids(lm, [LOOP_PROMPT], 40, **{GEN_KEY: 4})
    rows = generate_ids(lm, [LOOP_PROMPT, contexts[0]], 40, **{GEN_KEY: 4})
    assert rows[0] == alone
    assert all(repeated_ngrams(r) == 0 for r in rows)
    from harness.errors import HarnessError
    with pytest.raises(HarnessError, match=GEN_KEY):
        generate_ids(lm, [LOOP_PROMPT], 4, **{GEN_KEY: -1})


def make_adapter(base_model, dest, seed):
    """A real (untrained) PEFT LoRA adapter on a copy of SmolLM2: lora_B set to small seeded
    random values, large enough to change greedy outputs of real prompts."""
    return str(make_random_adapter(copy.deepcopy(base_model), dest, seed, r=4, alpha=8,
                                   scale=0.1, targets=["q_proj", "v_proj"]))


def test_set_adapter_matches_fresh_loads(lm, contexts, tmp_path):
    """Adapter A, B, A again, then none, on one loaded base: the same greedy texts (one batch
    of 4) as a fresh load with peft=A and the fresh base load; the base weights are never
    reloaded."""
    from peft import PeftModel

    from harness.backends.hf import TimedHFLM
    from harness.errors import HarnessError

    ctxs = contexts[:4]
    assert not isinstance(lm._model, PeftModel), "this test needs the bare base model"
    a = make_adapter(lm._model, tmp_path / "a", 0)
    b = make_adapter(lm._model, tmp_path / "b", 1)
    weight = lm._model.get_output_embeddings().weight
    base = generate(lm, ctxs, 4, n_tok=24)

    outs = {}
    for step, adapter in enumerate([a, b, a, None]):
        lm.set_adapter(adapter)
        outs[step] = generate(lm, ctxs, 4, n_tok=24)
    assert lm._model.get_output_embeddings().weight is weight  # same base tensors
    assert outs[0] != base and outs[1] != outs[0], (base, outs)
    assert outs[2] == outs[0] and outs[3] == base, (base, outs)
    with pytest.raises(HarnessError, match="adapter_config.json"):
        lm.set_adapter(tmp_path)

    fresh = TimedHFLM(model="smollm2-135m-instruct", batch_size=1, peft=a)
    assert generate(fresh, ctxs, 4, n_tok=24) == outs[0]


def test_over_long_product_prompt_loses_product_fields_not_the_template(lm):
    """HFLM cuts an over-long context from the front (chat template and instruction lost);
    TimedHFLM trims the product JSON first, as the llama.cpp backend and `generate` do."""
    from harness.prompts import REVIEW_INSTRUCTION, review_prompt

    product = {"title": "Steel Water Bottle 1 L", "brand": "Acme",
               "features": [f"Feature number {i} " + "keeps water cold " * 8 for i in range(6)],
               "details": {f"Detail {i}": "a long value " * 20 for i in range(10)}}
    ctx = lm.apply_chat_template([{"role": "user", "content": review_prompt(product)}])
    full = lm.tok_encode(ctx)
    budget = len(full) - 100
    ids, _ = lm.tok_batch_encode([ctx], left_truncate_len=budget)
    ids = ids[0].tolist()
    text = lm.tok_decode(ids, skip_special_tokens=False)
    assert len(ids) <= budget and ids[:8] == full[:8] and ids[-8:] == full[-8:]
    assert REVIEW_INSTRUCTION in text and "Steel Water Bottle 1 L" in text
    assert "Detail 9" not in text
    plain = "word " * 400   # not a product prompt: HFLM's own rule, the end is kept
    ids, _ = lm.tok_batch_encode([plain], left_truncate_len=100)
    assert ids.shape[1] == 100
