"""Tiny random Llama / Mistral / Gemma-3 models for the trainer tests (hidden 64, 2 layers),
saved with SmolLM2's real tokenizer (read from its bundled GGUF), so that the whole recipe
(chat template, prompt builder, loss masking, PEFT files) runs in seconds."""
from __future__ import annotations

from pathlib import Path

import torch


def build_tiny(out: Path, arch: str, tokenizer) -> Path:
    from transformers import (Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig,
                              LlamaForCausalLM, MistralConfig, MistralForCausalLM)

    common = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=2048, tie_word_embeddings=True,
                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                  pad_token_id=tokenizer.pad_token_id)
    archs = {
        "llama": lambda: LlamaForCausalLM(LlamaConfig(**common)),
        "mistral": lambda: MistralForCausalLM(MistralConfig(sliding_window=None, **common)),
        # softcapping set on purpose: the trainer's loss must apply it like the model does
        "gemma3": lambda: Gemma3ForCausalLM(Gemma3TextConfig(
            head_dim=16, final_logit_softcapping=30.0, query_pre_attn_scalar=16,
            sliding_window=64, **common)),
    }
    torch.manual_seed(0)
    model = archs[arch]()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
