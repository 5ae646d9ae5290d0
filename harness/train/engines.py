"""Engines: load the base model (transformers, or Unsloth on CUDA; QLoRA = bitsandbytes nf4)
and attach LoRA."""
from __future__ import annotations

import warnings
from importlib.util import find_spec
from typing import Any, Callable

import torch

from ..backends.dequantized import dequantized_dir, hf_source, unmark_gguf
from .config import Inputs, TrainConfig

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


# ==== 5. engines: load the base model and attach LoRA ========================================

def torch_dtype(name: str, device_type: str):
    if name == "auto":
        if device_type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16   # CPU: bf16 LoRA measured fastest (benchmarks/train_speed.py)
    return getattr(torch, name)


def gguf_kwargs(gguf_file: str | None) -> dict:
    """from_pretrained arguments for a GGUF file: always the dequantized dense model (with
    the `kernels` package installed transformers would keep the blocks packed, and packed
    layers cannot be trained)."""
    if not gguf_file:
        return {}
    from transformers import GgufConfig
    return {"gguf_file": gguf_file, "quantization_config": GgufConfig(dequantize=True)}


def quantize_linear_4bit(model, compute_dtype, device="cpu", skip=("lm_head",)) -> int:
    """Replace every nn.Linear (but the output layer) by a bitsandbytes nf4 Linear4bit
    (QLoRA). On CPU the avx512-bf16 weight packing is turned off: it kicks in on the first
    no-grad forward (a validation pass) and afterwards the layer passes no gradient to its
    input, so every LoRA below it gets a wrong gradient. Returns the number of layers."""
    import bitsandbytes as bnb

    todo = [(name, mod) for name, mod in model.named_modules()
            if type(mod) is torch.nn.Linear and name.rsplit(".", 1)[-1] not in skip]
    for name, lin in todo:
        q = bnb.nn.Linear4bit(lin.in_features, lin.out_features, bias=lin.bias is not None,
                              compute_dtype=compute_dtype, quant_type="nf4",
                              compress_statistics=True, device="meta")
        q.weight = bnb.nn.Params4bit(lin.weight.data.to(compute_dtype), requires_grad=False,
                                     quant_type="nf4", compress_statistics=True, module=q)
        if lin.bias is not None:
            q.bias = torch.nn.Parameter(lin.bias.data.to(compute_dtype), requires_grad=False)
        q = q.to(device)          # quantizes
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, q)
    disable_cpu_packing(model)
    model.is_loaded_in_4bit = True   # peft then wraps these layers with its bnb LoRA layer
    return len(todo)


def disable_cpu_packing(model) -> None:
    if find_spec("bitsandbytes") is None:
        return
    import bitsandbytes as bnb
    for m in model.modules():
        if isinstance(m, bnb.nn.Linear4bit):
            m.support_avx512bf16_for_cpu = False


def lora_config(cfg: TrainConfig):
    from peft import LoraConfig
    targets = cfg.target_modules if cfg.target_modules == "all-linear" else \
        [t.strip() for t in cfg.target_modules.split(",") if t.strip()]
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets, bias="none", task_type="CAUSAL_LM")


def load_tokenizer(source: tuple[str, str | None]):
    from transformers import AutoTokenizer
    pretrained, gguf = hf_source(*source)    # a GGUF: its dequantized copy (harness.backends)
    tok = AutoTokenizer.from_pretrained(pretrained, **({"gguf_file": gguf} if gguf else {}))
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    return tok


def load_transformers(cfg: TrainConfig, inp: Inputs, device, dtype):
    """transformers + peft, any device. QLoRA: bitsandbytes nf4 at load time for an HF
    directory on CUDA, else (GGUF, CPU) the dequantized weights are quantized in place."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    pretrained, gguf = hf_source(*inp.model_source)
    kwargs: dict[str, Any] = {"dtype": dtype, **gguf_kwargs(gguf)}
    quantize = inp.method == "qlora"
    if quantize and device.type == "cuda" and not gguf:
        from transformers import BitsAndBytesConfig
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype)
        kwargs["device_map"] = {"": device}
    model = AutoModelForCausalLM.from_pretrained(pretrained, **kwargs)
    if gguf:
        unmark_gguf(model)
    if not getattr(model, "is_loaded_in_4bit", False):   # not quantized at load time
        model.to(device)
        if quantize:
            quantize_linear_4bit(model, dtype, device)
    if gradient_checkpointing(cfg, device):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    torch.manual_seed(cfg.seed)   # the LoRA init
    with warnings.catch_warnings():   # peft asks a deprecated transformers attribute
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing",
                                category=FutureWarning)
        # LoRA weights in the compute dtype (see MasterWeights), not peft's float32 default
        peft_model = get_peft_model(model, lora_config(cfg), autocast_adapter_dtype=False)
    disable_cpu_packing(peft_model)
    return peft_model


def load_unsloth(cfg: TrainConfig, inp: Inputs, device, dtype):
    """Unsloth's FastLanguageModel (CUDA only; not verified on a GPU in this repo's CI)."""
    from unsloth import FastLanguageModel  # resolve_engine made sure CUDA is there

    pretrained = inp.model_source[0] if inp.model_source[1] is None else \
        str(dequantized_dir(*inp.model_source))
    model, _ = FastLanguageModel.from_pretrained(
        model_name=pretrained, max_seq_length=cfg.max_seq_len, dtype=dtype,
        load_in_4bit=inp.method == "qlora")
    targets = LORA_TARGETS if cfg.target_modules == "all-linear" else \
        [t.strip() for t in cfg.target_modules.split(",") if t.strip()]
    return FastLanguageModel.get_peft_model(
        model, r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
        target_modules=targets, bias="none", random_state=cfg.seed,
        use_gradient_checkpointing="unsloth" if gradient_checkpointing(cfg, device) else False)


ENGINES: dict[str, Callable] = {"transformers": load_transformers, "unsloth": load_unsloth}


def gradient_checkpointing(cfg: TrainConfig, device) -> bool:
    return cfg.gradient_checkpointing if cfg.gradient_checkpointing is not None \
        else device.type == "cuda"
