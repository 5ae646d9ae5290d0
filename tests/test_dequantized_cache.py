"""The dequantized-GGUF cache (harness.backends.dequantized): a bundled GGUF loaded once through
transformers and saved as an HF directory gives the same model and tokenizer as loading the
GGUF itself, on the real bundled SmolLM2."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from harness.backends import dequantized
from harness.errors import HarnessError
from harness.models import DEFAULT_MODEL, resolve_hf

TEXTS = ["The kettle boils 1.7 litres in four minutes and switches itself off.",
         "Sturdy laptop cooling pad, two fans, blue LEDs; quiet enough for night work!"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setattr(dequantized, "CACHE_DIR", tmp_path)
    monkeypatch.delenv(dequantized.ENV, raising=False)
    return tmp_path


def _load(pretrained, gguf):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    kw = {"gguf_file": gguf} if gguf else {}
    tok = AutoTokenizer.from_pretrained(pretrained, **kw)
    model = AutoModelForCausalLM.from_pretrained(pretrained, dtype=torch.float32, **kw).eval()
    return tok, model


def test_cached_directory_is_the_same_model(cache):
    pretrained, gguf = resolve_hf(DEFAULT_MODEL)
    assert gguf, "the bundled default model loads from its GGUF"
    src, none = dequantized.hf_source(pretrained, gguf)
    assert none is None and (cache / "dequantized") in Path(src).parents
    tok_g, model_g = _load(pretrained, gguf)
    tok_c, model_c = _load(src, None)
    for text in TEXTS:
        assert tok_c(text)["input_ids"] == tok_g(text)["input_ids"]
    chat = [{"role": "user", "content": TEXTS[0]}]
    assert tok_g.chat_template, "SmolLM2's GGUF has a chat template"
    assert tok_c.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == \
        tok_g.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert (tok_c.eos_token, tok_c.bos_token) == (tok_g.eos_token, tok_g.bos_token)
    batch = tok_g(TEXTS[0], return_tensors="pt")
    with torch.inference_mode():
        a = model_g(**batch).logits
        b = model_c(**batch).logits
    assert torch.equal(a, b)

    # a second call reuses the directory; the file changing gives another one
    stamp = (cache / "dequantized").stat().st_mtime_ns, os.listdir(cache / "dequantized")
    assert dequantized.hf_source(pretrained, gguf) == (src, None)
    assert ((cache / "dequantized").stat().st_mtime_ns, os.listdir(cache / "dequantized")) == stamp
    copy = cache / "copy.gguf"           # the key follows the file's content
    copy.write_bytes((Path(pretrained) / gguf).read_bytes())
    key = Path(src).name.rsplit("-", 1)[1]
    assert dequantized.cache_dir(copy).name == f"copy-{key}"
    with copy.open("ab") as fh:
        fh.write(b"\0")
    assert dequantized.cache_dir(copy).name != f"copy-{key}"
    assert not [p for p in (cache / "dequantized").iterdir() if ".tmp-" in p.name]


def test_cache_off_and_bad_input(cache, monkeypatch, tmp_path):
    pretrained, gguf = resolve_hf(DEFAULT_MODEL)
    monkeypatch.setenv(dequantized.ENV, "0")
    assert dequantized.hf_source(pretrained, gguf) == (pretrained, gguf)
    assert dequantized.hf_source("some/hf-dir", None) == ("some/hf-dir", None)
    monkeypatch.setenv(dequantized.ENV, "1")
    with pytest.raises(HarnessError, match="missing.gguf: GGUF file not found"):
        dequantized.hf_source(str(tmp_path), "missing.gguf")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(HarnessError, match="bad.gguf: transformers could not load it"):
        dequantized.hf_source(str(tmp_path), "bad.gguf")
    assert not (cache / "dequantized").exists() or not any((cache / "dequantized").iterdir())
