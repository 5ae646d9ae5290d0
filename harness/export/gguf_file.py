"""GGUF files for llama.cpp, written and read with gguf-py: the model GGUF (hyperparameters,
tensors in llama.cpp's layout, tokenizer, special tokens, chat template) and the LoRA adapter
GGUF, each writer with the reader that mirrors it (the generic reader and the header check are
harness.backends.gguf_reader); quantization by llama.cpp itself (llama-cpp-python's llama_model_quantize).

Everything that ties transformers' names and layouts to llama.cpp's is here, in one place:
ARCHS (model_type -> GGUF architecture, hyperparameters, q/k row permutation, norm shift),
tensor_names (gguf-py's TensorNameMap) and to_gguf_layout / from_gguf_layout.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import gguf
import numpy as np

from ..backends.gguf_reader import GGUFFile, GGUFTensor, read_gguf, scan_gguf  # noqa: F401
from ..errors import HarnessError
from ..files import atomic_path

# --- constants -------------------------------------------------------------------------------
# Output type -> llama_ftype (llama.h; gguf.LlamaFileType mirrors it). The gguf writer emits
# f32/f16 itself; the others are made from the F16 file by llama.cpp's quantizer.
QUANTS: dict[str, gguf.LlamaFileType] = {
    "f32": gguf.LlamaFileType.ALL_F32,
    "f16": gguf.LlamaFileType.MOSTLY_F16,
    "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    "q4_k_m": gguf.LlamaFileType.MOSTLY_Q4_K_M,
}
WRITTEN_TYPES = {"f32": np.float32, "f16": np.float16}  # 2-D tensors; 1-D ones are always F32
LORA_TYPES = {"f32": np.float32, "f16": np.float16}
# BPE pre-tokenizers llama.cpp knows, by the hash of the token ids of PRETOKENIZER_PROBE
# (the scheme of llama.cpp's convert_hf_to_gguf.py, so the hashes are the same).
PRETOKENIZER_PROBE = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis "
    "concatenated) ✅ 🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 "
    "កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ ------======= нещо на Български "
    "''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you sure? 'M not "
    "sure I'll make it, 'D you like some tea? We'Ve a'lL")
PRETOKENIZERS = {
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",
    "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2",
}


# --- architectures: hyperparameters and tensor layout ----------------------------------------
def _rope(cfg, layer_type: str | None = None) -> dict:
    """Rope parameters of a transformers config (v5 `rope_parameters`, or v4 attributes)."""
    rp = dict(getattr(cfg, "rope_parameters", None) or {})
    if layer_type and isinstance(rp.get(layer_type), dict):
        rp = dict(rp[layer_type])
    rp.setdefault("rope_theta", getattr(cfg, "rope_theta", 10000.0))
    if getattr(cfg, "rope_scaling", None) and "rope_type" not in rp:
        rp.update(cfg.rope_scaling)
    rp.setdefault("rope_type", rp.get("type", "default"))
    return rp


def _rope_scaling(rp: dict) -> dict:
    kind = rp["rope_type"]
    if kind == "default":
        return {}
    if kind == "linear":
        return {"add_rope_scaling_type": gguf.RopeScalingType.LINEAR,
                "add_rope_scaling_factor": float(rp["factor"])}
    raise HarnessError(f"rope scaling {kind!r} is not supported by the GGUF exporter "
                       f"(supported: default, linear)")


def _head_dim(cfg) -> int:
    return getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads


def _common_hparams(cfg) -> dict:
    return {
        "add_vocab_size": cfg.vocab_size,
        "add_context_length": cfg.max_position_embeddings,
        "add_embedding_length": cfg.hidden_size,
        "add_block_count": cfg.num_hidden_layers,
        "add_feed_forward_length": cfg.intermediate_size,
        "add_head_count": cfg.num_attention_heads,
        "add_head_count_kv": cfg.num_key_value_heads,
        "add_layer_norm_rms_eps": float(cfg.rms_norm_eps),
    }


def llama_hparams(cfg) -> dict:
    """Llama, Mistral, CodeLlama/StructLM: GGUFWriter method -> value."""
    rp, hd = _rope(cfg), _head_dim(cfg)
    hp = {**_common_hparams(cfg), "add_rope_dimension_count": hd,
          "add_rope_freq_base": float(rp["rope_theta"]), **_rope_scaling(rp)}
    if hd != cfg.hidden_size // cfg.num_attention_heads:
        hp.update(add_key_length=hd, add_value_length=hd)
    return hp


GEMMA3_SWA_PATTERN = 6  # llama.cpp's gemma3: every 6th layer is global, the others sliding


def gemma3_hparams(cfg) -> dict:
    hd = _head_dim(cfg)
    if getattr(cfg, "query_pre_attn_scalar", hd) != hd:
        raise HarnessError(f"gemma3: query_pre_attn_scalar={cfg.query_pre_attn_scalar} != "
                           f"head_dim={hd} is not supported by llama.cpp's gemma3 graph")
    if any(getattr(cfg, k, None) for k in ("final_logit_softcapping", "attn_logit_softcapping")):
        raise HarnessError("gemma3: logit soft-capping is not supported by the GGUF exporter")
    expected = ["sliding_attention" if (i + 1) % GEMMA3_SWA_PATTERN else "full_attention"
                for i in range(cfg.num_hidden_layers)]
    if list(getattr(cfg, "layer_types", None) or expected) != expected:
        raise HarnessError("gemma3: layer_types differ from llama.cpp's fixed pattern "
                           f"(one global layer in {GEMMA3_SWA_PATTERN})")
    full, local = _rope(cfg, "full_attention"), _rope(cfg, "sliding_attention")
    return {**_common_hparams(cfg), "add_key_length": hd, "add_value_length": hd,
            "add_rope_freq_base": float(full["rope_theta"]),
            "add_rope_freq_base_swa": float(local["rope_theta"]),
            "add_sliding_window": int(cfg.sliding_window), **_rope_scaling(full)}


@dataclass(frozen=True)
class Arch:
    gguf_arch: gguf.MODEL_ARCH
    hparams: Callable[[Any], dict]
    permute_qk: bool = False   # llama.cpp's LLAMA rope rotates adjacent pairs, HF rotates halves
    norm_shift: float = 0.0    # gemma: llama.cpp stores RMSNorm weights as 1 + w

    @property
    def name(self) -> str:
        return gguf.MODEL_ARCH_NAMES[self.gguf_arch]


# transformers model_type -> how it is written. Mistral is llama.cpp's "llama" architecture.
ARCHS: dict[str, Arch] = {
    "llama": Arch(gguf.MODEL_ARCH.LLAMA, llama_hparams, permute_qk=True),
    "mistral": Arch(gguf.MODEL_ARCH.LLAMA, llama_hparams, permute_qk=True),
    "gemma3_text": Arch(gguf.MODEL_ARCH.GEMMA3, gemma3_hparams, norm_shift=1.0),
}


def arch_of(cfg) -> Arch:
    try:
        return ARCHS[cfg.model_type]
    except KeyError:
        raise HarnessError(f"unsupported architecture {cfg.model_type!r} for GGUF export "
                           f"(supported: {', '.join(ARCHS)})") from None


def hf_tensor_shapes(cfg) -> dict[str, tuple[int, ...]]:
    """Every tensor of the transformers model of `cfg`, built on the meta device (no memory)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def tensor_names(cfg, hf_names: Iterable[str]) -> dict[str, str]:
    """HF tensor name -> llama.cpp tensor name (gguf-py's TensorNameMap), tied lm_head left out."""
    arch = arch_of(cfg)
    name_map = gguf.get_tensor_name_map(arch.gguf_arch, cfg.num_hidden_layers)
    out = {}
    for hf in hf_names:
        if hf == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        name = name_map.get_name(hf, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise HarnessError(f"tensor {hf!r} has no llama.cpp name in the {arch.name} "
                               f"architecture; this model variant is not supported")
        out[hf] = name
    return out


def _qk_heads(gguf_name: str, arch: Arch, cfg) -> int | None:
    if not arch.permute_qk:
        return None
    if ".attn_q." in gguf_name:
        return cfg.num_attention_heads
    if ".attn_k." in gguf_name:
        return cfg.num_key_value_heads
    return None


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF rows (per head: first half, second half) -> llama.cpp rows (interleaved pairs)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2) \
        .reshape(w.shape)


def _unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2) \
        .reshape(w.shape)


def to_gguf_layout(gguf_name: str, w: np.ndarray, arch: Arch, cfg) -> np.ndarray:
    """One HF tensor (or the lora_B of one) in llama.cpp's layout. Mirror: from_gguf_layout."""
    if (heads := _qk_heads(gguf_name, arch, cfg)):
        w = _permute(w, heads)
    if arch.norm_shift and gguf_name.endswith("norm.weight"):
        w = w + arch.norm_shift
    return w


def from_gguf_layout(gguf_name: str, w: np.ndarray, arch: Arch, cfg) -> np.ndarray:
    if (heads := _qk_heads(gguf_name, arch, cfg)):
        w = _unpermute(w, heads)
    if arch.norm_shift and gguf_name.endswith("norm.weight"):
        w = w - arch.norm_shift
    return w


# --- tokenizer metadata --------------------------------------------------------------------------
def _copy_tokenizer_from_gguf(w: gguf.GGUFWriter, path: Path, vocab_size: int) -> str:
    src = read_gguf(path)
    n_tokens = len(src.kv.get("tokenizer.ggml.tokens") or [])
    if n_tokens != vocab_size:
        raise HarnessError(f"{path}: its tokenizer has {n_tokens} tokens, the model "
                           f"{vocab_size}; take the tokenizer from a GGUF of the same model")
    for key in [k for k in src.kv if k.startswith("tokenizer.")]:
        w.add_key_value(key, src.kv[key], *src.types[key])
    return f"copied from {path.name}"


def _bpe_pre(tokenizer, where: Path) -> str:
    from hashlib import sha256

    digest = sha256(str(tokenizer.encode(PRETOKENIZER_PROBE)).encode()).hexdigest()
    try:
        return PRETOKENIZERS[digest]
    except KeyError:
        raise HarnessError(f"{where}: BPE pre-tokenizer not recognised (hash {digest[:12]}); "
                           f"give --tokenizer-from a GGUF of the same model family") from None


def _tokenizer_from_hf_dir(w: gguf.GGUFWriter, path: Path, vocab_size: int) -> str:
    """GPT-2 style BPE (tokenizer.json) through transformers; SentencePiece through gguf-py."""
    tj = path / "tokenizer.json"
    model = json.loads(tj.read_text(encoding="utf-8"))["model"] if tj.is_file() else {}
    if model.get("type") == "BPE" and not model.get("byte_fallback", False):
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        reverse = {i: t for t, i in tok.get_vocab().items()}
        added = tok.get_added_vocab()
        tokens, types = [], []
        for i in range(vocab_size):
            t = reverse.get(i)
            if t is None:
                tokens.append(f"[PAD{i}]")
                types.append(gguf.TokenType.UNUSED)
            elif t in added and tok.added_tokens_decoder[i].special:
                tokens.append(t)
                types.append(gguf.TokenType.CONTROL)
            else:
                tokens.append(t)
                types.append(gguf.TokenType.USER_DEFINED if t in added else gguf.TokenType.NORMAL)
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(_bpe_pre(tok, path))
        w.add_token_list(tokens)
        w.add_token_types(types)
        gguf.SpecialVocab(path, load_merges=True, n_vocab=vocab_size).add_to_gguf(w, quiet=True)
        return "gpt2 BPE from tokenizer.json"
    if (path / "tokenizer.model").is_file():
        try:
            vocab = gguf.vocab.SentencePieceVocab(path)
        except RuntimeError as e:  # sentencepiece not installed
            raise HarnessError(f"{path}: a SentencePiece tokenizer needs the `sentencepiece` "
                               f"package (pip install sentencepiece), or give --tokenizer-from "
                               f"a GGUF of the same model") from e
        tokens, scores, types = zip(*vocab.all_tokens())
        w.add_tokenizer_model("llama")
        w.add_tokenizer_pre("default")
        w.add_token_list(list(tokens))
        w.add_token_scores(list(scores))
        w.add_token_types(list(types))
        gguf.SpecialVocab(path, n_vocab=len(tokens)).add_to_gguf(w, quiet=True)
        return "sentencepiece from tokenizer.model"
    raise HarnessError(f"{path}: no usable tokenizer (tokenizer.json with GPT-2 BPE, or "
                       f"tokenizer.model); give --tokenizer-from a GGUF of the same model")


def add_tokenizer(w: gguf.GGUFWriter, source: Path, vocab_size: int) -> str:
    """Tokenizer, special tokens and chat template from a GGUF (copied) or an HF directory."""
    source = Path(source)
    if source.suffix == ".gguf":
        return _copy_tokenizer_from_gguf(w, source, vocab_size)
    return _tokenizer_from_hf_dir(w, source, vocab_size)


def _finish(w: gguf.GGUFWriter) -> None:
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file(progress=False)
    w.close()


# --- model GGUF: writer and reader ---------------------------------------------------------------
def write_model_gguf(path: str | os.PathLike, cfg, state_dict: dict, *, tokenizer: Path,
                     name: str, dtype: str = "f16",
                     on_tensor: Callable[[], None] | None = None) -> Path:
    """A transformers state dict (HF names and layout) as a llama.cpp model GGUF, atomically."""
    if dtype not in WRITTEN_TYPES:
        raise HarnessError(f"the GGUF writer emits {', '.join(WRITTEN_TYPES)}; "
                           f"quantize to get {dtype}")
    arch = arch_of(cfg)
    names = tensor_names(cfg, state_dict)
    with atomic_path(path) as tmp:
        w = gguf.GGUFWriter(tmp, arch.name)
        w.add_type(gguf.GGUFType.MODEL)
        w.add_name(name)
        for method, value in arch.hparams(cfg).items():
            getattr(w, method)(value)
        w.add_file_type(int(QUANTS[dtype]))
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
        add_tokenizer(w, tokenizer, cfg.vocab_size)
        for hf, gname in names.items():
            a = to_gguf_layout(gname, state_dict[hf].detach().float().cpu().numpy(), arch, cfg)
            w.add_tensor(gname, a.astype(WRITTEN_TYPES[dtype] if a.ndim > 1 else np.float32))
            if on_tensor:
                on_tensor()
        _finish(w)
    return Path(path)


def read_model_gguf(path: str | os.PathLike, cfg) -> dict[str, np.ndarray]:
    """Mirror of write_model_gguf: HF names and layout, float32 (quantized tensors dequantized)."""
    arch = arch_of(cfg)
    to_hf = {g: hf for hf, g in tensor_names(cfg, hf_tensor_shapes(cfg)).items()}
    src, out = read_gguf(path, arrays=False), {}
    for name in src.tensors:
        if name not in to_hf:
            raise HarnessError(f"{path}: tensor {name} is not part of a {cfg.model_type} model")
        out[to_hf[name]] = from_gguf_layout(name, src.array(name), arch, cfg)
    return out


# --- LoRA GGUF: writer and reader ----------------------------------------------------------------
@dataclass
class LoraGGUF:
    arch: str
    alpha: float
    tensors: dict[str, tuple[np.ndarray, np.ndarray]]  # base GGUF name -> (A (r,in), B (out,r))

    def scale(self, name: str) -> float:
        """llama.cpp's scale of one pair: alpha / rank, or 1 when alpha is 0."""
        return self.alpha / self.tensors[name][0].shape[0] if self.alpha else 1.0


def write_lora_gguf(path: str | os.PathLike, cfg, pairs: dict[str, tuple], *, name: str,
                    base_gguf: Path | None = None, dtype: str = "f32") -> Path:
    """LoRA pairs {HF weight name: (A (r, in), B (out, r), PEFT scale)} as a llama.cpp LoRA
    adapter GGUF (general.type=adapter, adapter.type=lora, adapter.lora.alpha; tensors
    <base tensor>.lora_a [in, r] and .lora_b [r, out]). With base_gguf, every pair is checked
    against the base's tensor shapes first, as llama.cpp will."""
    arch = arch_of(cfg)
    names = tensor_names(cfg, pairs)
    if (lost := sorted(set(pairs) - set(names))):  # lm_head of a tied model
        raise HarnessError(f"{name}: LoRA on {lost[0]}, which llama.cpp shares with the token "
                           f"embeddings (tied); use --format gguf (merged)")
    ranks = {a.shape[0] for a, _, _ in pairs.values()}
    scales = {s for _, _, s in pairs.values()}
    # One alpha for the file when every module has the same rank and scale (the usual case);
    # otherwise the PEFT scale is folded into B and alpha = 0 (llama.cpp then uses scale 1).
    uniform = len(ranks) == 1 and len(scales) == 1
    alpha = float(next(iter(scales)) * next(iter(ranks))) if uniform else 0.0
    if base_gguf is not None:
        base_shapes = {k: t.ne for k, t in scan_gguf(base_gguf).tensors.items()}
        for hf, g in names.items():
            a, b, _ = pairs[hf]
            if base_shapes.get(g) != (a.shape[1], b.shape[0]):
                raise HarnessError(f"{name}: {hf} -> {g} {(a.shape[1], b.shape[0])} does not "
                                   f"match {base_gguf.name} ({base_shapes.get(g)}); the "
                                   f"adapter was trained for another base model")
    with atomic_path(path) as tmp:
        w = gguf.GGUFWriter(tmp, arch.name)
        w.add_type(gguf.GGUFType.ADAPTER)
        w.add_name(name)
        w.add_string(gguf.Keys.Adapter.TYPE, "lora")
        w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        for hf, g in names.items():
            a, b, s = pairs[hf]
            b = to_gguf_layout(g, b, arch, cfg) * (1.0 if uniform else s)
            w.add_tensor(g + ".lora_a", a.astype(LORA_TYPES[dtype]))
            w.add_tensor(g + ".lora_b", b.astype(LORA_TYPES[dtype]))
        _finish(w)
    return Path(path)


def read_lora_gguf(path: str | os.PathLike) -> LoraGGUF:
    """Mirror of write_lora_gguf (tensors stay in llama.cpp's layout)."""
    src = read_gguf(path, arrays=False)
    kv = src.kv
    if kv.get("general.type") != "adapter" or kv.get(gguf.Keys.Adapter.TYPE) != "lora":
        raise HarnessError(f"{path}: not a llama.cpp LoRA adapter GGUF "
                           f"(general.type={kv.get('general.type')!r})")
    tensors: dict[str, dict] = {}
    for name in src.tensors:
        base, _, part = name.rpartition(".")
        tensors.setdefault(base, {})[part] = src.array(name)
    return LoraGGUF(kv["general.architecture"], float(kv.get(gguf.Keys.Adapter.LORA_ALPHA, 0.0)),
                    {k: (v["lora_a"], v["lora_b"]) for k, v in tensors.items()})


# --- quantization (llama.cpp in-process) -------------------------------------------------------
def quantize(src: Path, dst: Path, quant: str, threads: int | None = None) -> Path:
    """llama.cpp's quantizer on an F16/F32 GGUF, written atomically to dst."""
    import ctypes

    import llama_cpp
    from llama_cpp import _logger
    from llama_cpp._utils import suppress_stdout_stderr

    if quant not in QUANTS:
        raise HarnessError(f"unknown quantization {quant!r}; choose from {', '.join(QUANTS)}")
    _logger.set_verbose(False)  # llama.cpp logs every tensor otherwise
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = int(QUANTS[quant])
    params.nthread = threads or os.cpu_count() or 1
    with atomic_path(dst) as tmp:
        with suppress_stdout_stderr(disable=False):  # one warning line per tensor otherwise
            rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(),
                                                ctypes.byref(params))
        if rc != 0:
            raise HarnessError(f"llama.cpp could not quantize {src} to {quant} (code {rc})")
    return Path(dst)
