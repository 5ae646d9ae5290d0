"""lm-eval's transformers backend (HFLM) with throughput timing: `--model harness-hf`.

`harness eval --model hf` uses this class, so transformers runs get the same `throughput` record
as llama.cpp runs. Arguments are HFLM's own (pretrained=, gguf_file=, peft=, dtype=, ...), plus
`model=NAME` to take weights from the registry. Time to first token is taken at the first call
of a logits processor, i.e. right after the prefill forward pass.
"""
from __future__ import annotations

import time

import torch
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM
from transformers import LogitsProcessor, LogitsProcessorList

from ..models import resolve_hf
from .throughput import METER


class _FirstTokenClock(LogitsProcessor):
    def __init__(self):
        self.t_first = None

    def __call__(self, input_ids, scores):
        if self.t_first is None:
            self.t_first = time.perf_counter()
        return scores


@register_model("harness-hf")
class TimedHFLM(HFLM):
    def __init__(self, pretrained=None, model: str | None = None, gguf_file: str | None = None,
                 **kwargs):
        t0 = time.perf_counter()
        if pretrained is None:
            pretrained, gguf = resolve_hf(model or "smollm2-135m-instruct")
            gguf_file = gguf_file or gguf
        if gguf_file:
            kwargs["gguf_file"] = gguf_file
        kwargs.setdefault("dtype", "float32")
        kwargs.setdefault("device", "cuda" if torch.cuda.is_available() else "cpu")
        super().__init__(pretrained=pretrained, **kwargs)
        METER.load_s += time.perf_counter() - t0

    def _model_generate(self, context, max_length, stop, **generation_kwargs):
        clock = _FirstTokenClock()
        procs = generation_kwargs.pop("logits_processor", None) or LogitsProcessorList()
        procs.append(clock)
        t0 = time.perf_counter()
        out = super()._model_generate(context, max_length, stop, logits_processor=procs,
                                      **generation_kwargs)
        total = time.perf_counter() - t0
        pad = self.tokenizer.pad_token_id
        gen = out[:, context.shape[1]:]
        n_prompt = int((context != pad).sum()) if pad is not None else context.numel()
        n_gen = int((gen != pad).sum()) if pad is not None else gen.numel()
        rows = context.shape[0]
        ttft = (clock.t_first or time.perf_counter()) - t0
        METER.add(n_prompt, ttft, max(n_gen, rows), total, requests=rows)
        return out
