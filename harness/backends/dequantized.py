"""A GGUF model dequantized once for transformers, kept as an HF directory under the cache.

transformers loads a GGUF by dequantizing every tensor in Python and converting the GGUF
vocabulary into a fast tokenizer, on every load: 15.6 s for SmolLM2-135M and 39.6 s for
gemma3-270m (262k-token vocabulary) here, against 1.7 s and 4.0 s from the cached directory
(benchmarks/hf_load.py), in every compare cell, fluency reference LM, training run and test
that loads one. The first load writes the result (float32 safetensors + tokenizer files) to
`CACHE_DIR/dequantized/<gguf stem>-<key>/`; later loads read that directory. The key is the
GGUF's SHA-256 and the transformers version, so a changed file or another converter gets a
directory of its own. Same weights, same tokenizer, same chat template
(tests/test_dequantized_cache.py checks logits and token ids against the GGUF load).

`HARNESS_DEQUANTIZED_CACHE=0` turns it off (every load from the GGUF, as transformers does).
"""
from __future__ import annotations

import hashlib
import os
import shutil
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from ..errors import HarnessError
from ..files import sha256_file
from ..paths import CACHE_DIR

ENV = "HARNESS_DEQUANTIZED_CACHE"


def enabled() -> bool:
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


@lru_cache(maxsize=16)
def _content_key(path: str, size: int, mtime_ns: int) -> str:
    """The GGUF's SHA-256 with the transformers version, hashed once per process and file
    version (a trainer or compare process loads the same GGUF several times)."""
    import transformers

    ident = f"{sha256_file(path)}|transformers {transformers.__version__}"
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def cache_dir(gguf: Path) -> Path:
    """Where the dequantized copy of this GGUF lives: keyed by the file's content and the
    transformers version that converts it."""
    st = gguf.stat()
    key = _content_key(str(gguf.resolve()), st.st_size, st.st_mtime_ns)
    return CACHE_DIR / "dequantized" / f"{gguf.stem}-{key}"


def unmark_gguf(model) -> None:
    """A model loaded from a GGUF comes back dequantized but flagged as quantized by the GGUF
    quantizer, which makes Trainer and peft refuse to train it and save_pretrained refuse to
    save it; clear the flags (harness.train.engines uses it too)."""
    model.hf_quantizer = None
    model.is_quantized = False
    if getattr(model, "quantization_method", None) is not None:
        model.quantization_method = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


@contextmanager
def quiet_transformers():
    """transformers without its warnings and progress bars for a helper load (no "Loading
    weights" / "Writing model shards" bars, no "packed GGUF kernels prefer float32": there are
    none for this CPU, the weights are dequantized); its own GGUF dequantization bar is plain
    tqdm and stays. The previous settings come back afterwards."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _build(pretrained: str, gguf_file: str, out: Path) -> None:
    """Load from the GGUF once and save as an HF directory; written to a temporary sibling and
    renamed, so an interrupted build leaves no half directory behind."""
    with quiet_transformers():
        _load_and_save(pretrained, gguf_file, out)


def _load_and_save(pretrained: str, gguf_file: str, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(pretrained, gguf_file=gguf_file)
        model = AutoModelForCausalLM.from_pretrained(pretrained, gguf_file=gguf_file,
                                                     dtype=torch.float32)
    except (OSError, ValueError) as e:
        raise HarnessError(f"{Path(pretrained) / gguf_file}: transformers could not load it "
                           f"({e})") from e
    unmark_gguf(model)                 # dense float32 now: saved as plain safetensors
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        os.replace(tmp, out)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (out / "config.json").is_file():   # another process finished first: fine
            raise


def dequantized_dir(pretrained: str, gguf_file: str) -> Path:
    """The dequantized copy of a GGUF (built on first use), whatever HARNESS_DEQUANTIZED_CACHE
    says: for engines that cannot read a GGUF at all (Unsloth)."""
    src = Path(pretrained) / gguf_file
    if not src.is_file():
        raise HarnessError(f"{src}: GGUF file not found")
    out = cache_dir(src)
    if not (out / "config.json").is_file():
        _build(pretrained, gguf_file, out)
    return out


def hf_source(pretrained: str, gguf_file: str | None) -> tuple[str, str | None]:
    """(pretrained, gguf_file) to give from_pretrained: for a GGUF, the dequantized directory
    and no gguf_file; anything else, or the cache turned off, as given."""
    if not gguf_file or not enabled():
        return pretrained, gguf_file
    return str(dequantized_dir(pretrained, gguf_file)), None
