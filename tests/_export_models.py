"""Small real models for the export tests: tiny random Llama / Mistral / Gemma 3 saved with
SmolLM2's tokenizer (loaded from its bundled GGUF), and PEFT LoRA adapters with random non-zero
lora_B so that the adapter really changes the outputs. Nothing here is mocked: these are
ordinary transformers models and PEFT adapters, only small."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def smollm_tokenizer(out: Path) -> Path:
    from transformers import AutoTokenizer

    from harness.models import resolve_hf

    d, f = resolve_hf("smollm2-135m-instruct")
    AutoTokenizer.from_pretrained(d, gguf_file=f).save_pretrained(out)
    return out


def tiny_model(kind: str, out: Path, tokenizer_dir: Path, seed: int = 0) -> Path:
    """A random 2-layer model of `kind` (llama | mistral | gemma3 | qwen2), hidden size 64."""
    import torch
    from transformers import (AutoModelForCausalLM, Gemma3TextConfig, LlamaConfig,
                              MistralConfig, Qwen2Config)

    common = dict(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                  bos_token_id=1, eos_token_id=2, pad_token_id=2,
                  initializer_range=0.2)  # peaked distributions: top-1 is a real test
    configs = {
        "llama": lambda: LlamaConfig(**common, tie_word_embeddings=True, rope_theta=10000.0),
        "mistral": lambda: MistralConfig(**common, tie_word_embeddings=False, sliding_window=None),
        "gemma3": lambda: Gemma3TextConfig(**common, head_dim=256, query_pre_attn_scalar=256,
                                           sliding_window=512, tie_word_embeddings=True),
        "qwen2": lambda: Qwen2Config(**common),
    }
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(configs[kind]())
    with torch.no_grad():  # random norms too, so the layout of every tensor is tested
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(out)
    for f in tokenizer_dir.iterdir():
        shutil.copy(f, out / f.name)
    return out


def make_adapter(model, out: Path, seed: int = 0, r: int = 8, alpha: int = 16,
                 scale: float = 0.05, merge: bool = False, targets: list[str] | None = None,
                 **lora_kw):
    """The one seeded random LoRA adapter maker (tests and benchmarks/compare_speed.py): a
    PEFT LoRA on `targets` (default every projection) of `model` (a transformers model, or a
    registry name: loaded in float32) with seeded random non-zero lora_B, so that it really
    changes the outputs; saved to `out`. Returns `out`, or with merge=True (out, the merged
    model); without merge the caller gets its base model back unchanged."""
    import torch
    from peft import LoraConfig, get_peft_model

    if isinstance(model, str):
        from transformers import AutoModelForCausalLM

        from harness.models import resolve_hf

        pretrained, gguf = resolve_hf(model)
        model = AutoModelForCausalLM.from_pretrained(pretrained, gguf_file=gguf,
                                                     dtype=torch.float32)
    cfg = LoraConfig(r=r, lora_alpha=alpha, target_modules=targets or LORA_TARGETS,
                     lora_dropout=0.0, task_type="CAUSAL_LM", **lora_kw)
    torch.manual_seed(seed)  # lora_A is initialised from the global RNG
    peft_model = get_peft_model(model, cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * scale)
    peft_model.save_pretrained(out)
    if merge:
        return out, peft_model.merge_and_unload().eval()
    peft_model.unload()
    return out


def write_training_json(adapter_dir: Path, base_model: str, **fields) -> None:
    """The training.json `harness compare` finds adapters by (base_model, task)."""
    (adapter_dir / "training.json").write_text(json.dumps({"base_model": base_model, **fields}))
