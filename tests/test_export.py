"""GGUF export on tiny random Llama / Mistral / Gemma 3 models: real transformers models and PEFT
adapters (2 layers, hidden size 64, SmolLM2's tokenizer) run against real llama.cpp. Checks the
writer/reader mirrors, logit parity with transformers, LoRA-on-base = merged, and bad input."""
from __future__ import annotations

import json

import pytest

from _export_models import make_adapter, smollm_tokenizer, tiny_model, write_training_json
from harness.export.to_gguf import (Candidate, export, lora_pairs, read_adapter, review_prompts,
                                    verify)
from harness.backends.gguf_reader import read_gguf, scan_gguf
from harness.export.gguf_file import (arch_of, from_gguf_layout, hf_tensor_shapes, read_lora_gguf,
                                      read_model_gguf, write_lora_gguf, write_model_gguf)
from harness.errors import HarnessError

KINDS = ("llama", "mistral", "gemma3")
VERIFY = dict(verify_prompts=3, verify_tokens=8, data="demo", threads=1)


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory):
    return smollm_tokenizer(tmp_path_factory.mktemp("smollm2-tokenizer"))


@pytest.fixture(scope="session")
def tiny(tmp_path_factory, tokenizer_dir):
    made = {}

    def get(kind: str):
        if kind not in made:
            made[kind] = tiny_model(kind, tmp_path_factory.mktemp(f"tiny-{kind}"), tokenizer_dir)
        return made[kind]
    return get


@pytest.fixture(scope="session")
def base_export(tiny, tmp_path_factory):
    """Each tiny base model exported as F16 and Q8_0 with --verify (once per session)."""
    done = {}

    def get(kind: str):
        if kind not in done:
            out = tmp_path_factory.mktemp(f"gguf-{kind}")
            done[kind] = export(None, "gguf", ["f16", "q8_0"], base=str(tiny(kind)), out=out,
                                **VERIFY)
        return done[kind]
    return get


def _load(path):
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(path).eval()


# --- writer / reader mirrors ---------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_model_gguf_round_trip_is_exact(kind, tiny, tmp_path):
    """F32 written, read back into HF names and layout: every tensor identical. Llama q/k rows
    are really permuted in the file (llama.cpp's rope layout), gemma norms really shifted."""
    # (parity with llama.cpp itself is test_base_export_matches_transformers)
    import numpy as np

    model = _load(tiny(kind))
    state = model.state_dict()
    path = write_model_gguf(tmp_path / "m.gguf", model.config, state, tokenizer=tiny(kind),
                            name=f"tiny-{kind}", dtype="f32")
    back = read_model_gguf(path, model.config)
    tied = model.config.tie_word_embeddings
    expected = {k for k in state if not (k == "lm_head.weight" and tied)}
    assert set(back) == expected
    for k in expected:  # exact, except gemma's norms: (w + 1) - 1 rounds in float32
        np.testing.assert_allclose(back[k], state[k].numpy(), rtol=0,
                                   atol=1e-7 if "norm" in k and kind == "gemma3" else 0, err_msg=k)
    raw = read_gguf(path)
    hf_q = state["model.layers.0.self_attn.q_proj.weight"].numpy()
    hf_norm = state["model.layers.0.input_layernorm.weight"].numpy()
    q, norm = raw.array("blk.0.attn_q.weight"), raw.array("blk.0.attn_norm.weight")
    assert (not np.array_equal(q, hf_q)) == (kind != "gemma3")
    assert np.allclose(norm, hf_norm + 1.0) == (kind == "gemma3")


def test_lora_gguf_round_trip_and_scale_folding(tiny, tmp_path):
    """Uniform rank/alpha: alpha stored, B as PEFT has it (in llama.cpp's row order). A
    rank_pattern/alpha_pattern adapter: PEFT's per-module scale folded into B, alpha 0."""
    import numpy as np
    from safetensors.torch import load_file

    model = _load(tiny("llama"))
    cfg, arch = model.config, arch_of(model.config)
    for name, kw in {"uniform": {}, "patterns": dict(rank_pattern={"q_proj": 4},
                                                     alpha_pattern={"down_proj": 4})}.items():
        ad = make_adapter(model, tmp_path / name, **kw)
        pairs = lora_pairs(read_adapter(ad, str(tiny("llama"))), hf_tensor_shapes(cfg))
        lora = read_lora_gguf(write_lora_gguf(tmp_path / f"{name}.gguf", cfg, pairs, name=name))
        assert lora.arch == "llama" and len(lora.tensors) == 2 * 7
        assert lora.alpha == (16.0 if name == "uniform" else 0.0)
        w = load_file(ad / "adapter_model.safetensors")
        for layer in range(2):
            for hf, g, r, alpha in (("self_attn.q_proj", "attn_q", 4 if kw else 8, 16),
                                    ("mlp.down_proj", "ffn_down", 8, 4 if kw else 16)):
                key = f"base_model.model.model.layers.{layer}.{hf}"
                a, b = lora.tensors[f"blk.{layer}.{g}.weight"]
                np.testing.assert_array_equal(a, w[f"{key}.lora_A.weight"].numpy())
                b_hf = from_gguf_layout(f"blk.{layer}.{g}.weight", b, arch, cfg)
                fold = 1.0 if name == "uniform" else alpha / r
                np.testing.assert_allclose(b_hf, w[f"{key}.lora_B.weight"].numpy() * fold,
                                           rtol=1e-6)
                assert lora.scale(f"blk.{layer}.{g}.weight") == (alpha / r if name == "uniform"
                                                                 else 1.0)


# --- parity with transformers --------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_base_export_matches_transformers(kind, base_export, tmp_path):
    res = base_export(kind)
    rows = res.verify["rows"]
    assert set(rows) == {"f16", "q8_0"}
    assert rows["f16"]["top1_agreement"] >= 0.99 and rows["f16"]["mean_kl"] < 1e-3, rows
    # random tiny models have flat distributions with near-ties, so Q8_0's top-1 moves around
    # (0.79-0.96 measured); its KL stays small
    assert rows["q8_0"]["top1_agreement"] >= 0.5 and rows["q8_0"]["mean_kl"] < 0.01, rows
    assert rows["f16"]["positions"] >= 3
    record = json.loads((res.files["f16"].parent / "export.json").read_text())
    assert set(record["files"]) == {p.name for p in res.files.values()}
    f16 = record["files"][res.files["f16"].name]
    assert f16["architecture"] == ("gemma3" if kind == "gemma3" else "llama")
    assert f16["verify"] == rows["f16"] and record["last_verify"]["rows"] == rows
    info = scan_gguf(res.files["q8_0"])
    assert info.kv["general.file_type"] == 7 and "tokenizer.chat_template" in info.kv


@pytest.mark.parametrize("kind", KINDS)
def test_lora_on_base_matches_merged(kind, tiny, base_export, tmp_path):
    """The LoRA GGUF on the exported F16 base gives transformers' merged-model distributions;
    the base alone does not (so the adapter is really applied). Llama uses per-module
    rank/alpha patterns (scale folded into B)."""
    base_f16 = base_export(kind).files["f16"]
    kw = dict(rank_pattern={"v_proj": 4}, alpha_pattern={"up_proj": 8}) if kind == "llama" else {}
    ad, merged = make_adapter(_load(tiny(kind)), tmp_path / f"adapter-{kind}", merge=True,
                              scale=0.3, **kw)
    res = export(ad, "gguf-lora", base=str(base_f16), out=tmp_path / "out")
    rows = verify(merged, [Candidate("lora", base_f16, res.files["lora"]),
                           Candidate("base alone", base_f16)], review_prompts(3, "demo"),
                  n_tokens=8, n_threads=1)["rows"]
    lora, alone = rows["lora"], rows["base alone"]
    # the same distribution at every position; a random tiny model has near-tied top tokens
    # that F16 rounding may flip (mistral, seed 0: one position of 24, max KL 5e-5)
    assert lora["max_kl"] < 1e-3 and lora["top1_agreement"] >= 0.95, rows
    assert alone["mean_kl"] > 100 * max(lora["mean_kl"], 1e-6), rows


def test_merged_export_through_peft_merge(tiny, tmp_path, no_network):
    """The library's own path: read the adapter (base from training.json), load, merge, write."""
    ad = make_adapter(_load(tiny("llama")), tmp_path / "adapter", scale=0.3)
    write_training_json(ad, str(tiny("llama")))
    cfg = json.loads((ad / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "/nonexistent/elsewhere"  # training.json wins
    (ad / "adapter_config.json").write_text(json.dumps(cfg))
    res = export(ad, "gguf", ["f16"], **VERIFY)
    assert res.files["f16"] == ad / "gguf" / "adapter.f16.gguf"
    assert res.verify["rows"]["f16"]["top1_agreement"] >= 0.99
    assert no_network == []


# --- bad input -----------------------------------------------------------------------------
def test_truncated_and_corrupt_gguf_are_clear_errors(base_export, tmp_path):
    from harness.backends.llama_cpp import open_llama
    from harness.export.generate import open_model

    good = base_export("llama").files["f16"]
    data = good.read_bytes()
    cases = {"truncated.gguf": (data[: len(data) // 2], "truncated GGUF"),
             "header.gguf": (data[:4] + bytes(range(256)) * 4, "corrupt or truncated"),
             "junk.gguf": (b"not a model at all" * 10, "bad magic")}
    for name, (content, msg) in cases.items():
        p = tmp_path / name
        p.write_bytes(content)
        with pytest.raises(HarnessError, match=msg):
            scan_gguf(p)
        with pytest.raises(HarnessError):
            open_model(str(p))
    with pytest.raises(HarnessError, match="llama.cpp could not load"):
        open_llama(tmp_path / "truncated.gguf")  # llama.cpp's own check, no crash
    with pytest.raises(HarnessError, match="not a LoRA adapter"):
        open_model(str(good), lora=good)


def test_adapter_for_another_base_is_rejected(tiny, base_export, tmp_path):
    ad = make_adapter(_load(tiny("llama")), tmp_path / "adapter")
    other = base_export("gemma3").files["f16"]  # same module names, other shapes
    with pytest.raises(HarnessError, match="trained for another base"):
        export(ad, "gguf-lora", base=str(other), out=tmp_path / "out")
    with pytest.raises(HarnessError, match="trained for another base"):
        export(ad, "gguf", ["f16"], base=str(tiny("gemma3")), out=tmp_path / "out")
    assert not list((tmp_path / "out").glob("*.gguf"))


def test_unsupported_architecture(tokenizer_dir, tmp_path):
    qwen = tiny_model("qwen2", tmp_path / "tiny-qwen2", tokenizer_dir)
    with pytest.raises(HarnessError, match="unsupported architecture 'qwen2'"):
        export(None, "gguf", ["f16"], base=str(qwen), out=tmp_path / "out")


def test_failed_export_leaves_no_file(tiny, base_export, tmp_path):
    truncated = tmp_path / "bad.gguf"
    truncated.write_bytes(base_export("llama").files["f16"].read_bytes()[:100000])
    out = tmp_path / "out"
    with pytest.raises(HarnessError, match="truncated"):
        export(None, "gguf", ["f16", "q8_0"], base=str(tiny("llama")), out=out,
               tokenizer_from=truncated)
    assert not out.exists()  # no .gguf, no temporary, no export.json, no empty folder
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(HarnessError, match="not writable|cannot create"):
        export(None, "gguf", ["f16"], base=str(tiny("llama")), out=blocker / "sub")


def test_adapters_llama_cpp_cannot_carry(tiny, tmp_path):
    model = _load(tiny("llama"))
    dora = make_adapter(model, tmp_path / "dora", use_dora=True)
    shapes = hf_tensor_shapes(model.config)
    with pytest.raises(HarnessError, match="DoRA"):
        lora_pairs(read_adapter(dora, str(tiny("llama"))), shapes)
    with pytest.raises(HarnessError, match="no GGUF to apply a LoRA to"):
        export(dora, "gguf-lora", base=str(tiny("llama")), out=tmp_path / "o")
    full = make_adapter(model, tmp_path / "full", modules_to_save=["lm_head"])
    with pytest.raises(HarnessError, match="modules_to_save"):
        lora_pairs(read_adapter(full, str(tiny("llama"))), shapes)
    with pytest.raises(HarnessError, match="not a PEFT adapter"):
        export(tmp_path, "gguf-lora")
    with pytest.raises(HarnessError, match="unknown quantization"):
        export(dora, "gguf", ["q3_k"])


# --- products in (harness generate) ----------------------------------------------------------
def test_parse_products_formats_and_errors():
    from harness.export.generate import parse_products, review_stop, task_generation_kwargs

    one = {"title": "Kettle", "brand": "K"}
    assert parse_products(json.dumps(one)) == [("0", one)]
    assert parse_products(json.dumps({"id": "p1", "product": one})) == [("p1", one)]
    assert [i for i, _ in parse_products(json.dumps([one, {"id": "x", "product": one}]))] == \
        ["0", "x"]
    assert len(parse_products(json.dumps(one) + "\n\n" + json.dumps(one) + "\n")) == 2
    with pytest.raises(HarnessError, match=r"batch.jsonl:2: malformed JSON"):
        parse_products(json.dumps(one) + "\n{oops\n", "batch.jsonl")
    with pytest.raises(HarnessError, match=r"p.json\[1\]: product field title: required"):
        parse_products(json.dumps([one, {"brand": "x"}]), "p.json")
    with pytest.raises(HarnessError, match="empty input"):
        parse_products("  \n")
    from harness.backends.llama_cpp import StopScanner

    scan = StopScanner(None, ["Product:", "<end_of_turn>"])  # streaming holds back what a
    for text, stable in (("Product", ""), ("Great kettle, boils fast", "Great kettle")):
        scan.text = text                                      # stop string may still claim
        assert scan.stable() == stable
    stops = review_stop()  # the task YAML's own stop strings, read without its !function tags
    assert stops and all(isinstance(x, str) and x for x in stops)
    assert int(task_generation_kwargs()["max_gen_toks"]) > 0


# --- CLI and the model registry -------------------------------------------------------------
def test_cli_export_base_only_with_verify_table(tiny, tmp_path):
    from typer.testing import CliRunner

    from harness.cli import app

    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["export", str(tiny("llama")), "--base-only", "--format",
                                   "gguf", "--quant", "q8_0", "--out", str(out), "--verify",
                                   "--verify-prompts", "2", "--verify-tokens", "4", "--data",
                                   "demo", "--threads", "1"], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "top-1" in res.output and "f16 (intermediate)" in res.output
    assert [p.name for p in out.glob("*.gguf")] == [f"{tiny('llama').name}.q8_0.gguf"]
    bad = CliRunner().invoke(app, ["export", str(tmp_path), "--format", "gguf-lora"])
    assert isinstance(bad.exception, HarnessError)  # harness.cli.main prints it in one line


def test_base_only_registry_model_lands_where_resolve_gguf_looks(tiny, tmp_path, monkeypatch):
    """A registry model whose HF weights are given (HARNESS_HF_<NAME>) exported with
    --base-only goes to cache/models/<name>.q4_k_m.gguf, which resolve_gguf then finds."""
    from harness import models

    monkeypatch.setenv("HARNESS_HF_LLAMA2_7B_CHAT", str(tiny("llama")))
    monkeypatch.setattr(models, "CACHE_DIR", tmp_path / "cache")
    with pytest.raises(models.ModelUnavailable):
        models.resolve_gguf("llama2-7b-chat")
    res = export(None, "gguf", ["q4_k_m"], base="llama2-7b-chat")
    assert res.files["q4_k_m"] == tmp_path / "cache" / "models" / "llama2-7b-chat.q4_k_m.gguf"
    assert models.resolve_gguf("llama2-7b-chat") == res.files["q4_k_m"]
    assert res.record["files"]["llama2-7b-chat.q4_k_m.gguf"]["base_model"] == "llama2-7b-chat"


@pytest.mark.slow
def test_real_gemma3_270m_base_export_matches_transformers(tmp_path):
    """The bundled Gemma-3-270M (Q4_K_M GGUF, dequantized by transformers) written back as
    F16: llama.cpp's gemma3 graph on it against transformers."""
    res = export(None, "gguf", ["f16"], base="gemma3-270m", out=tmp_path, verify_prompts=2,
                 verify_tokens=8, threads=1)
    row = res.verify["rows"]["f16"]
    assert row["top1_agreement"] >= 0.99 and row["mean_kl"] < 0.01, row
