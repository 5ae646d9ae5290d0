"""lm-eval's transformers backend (HFLM) with throughput timing: `--model harness-hf`.

`harness eval --model hf` uses this class, so transformers runs get the same `throughput` record
as llama.cpp runs. Arguments are HFLM's own (pretrained=, gguf_file=, peft=, dtype=,
batch_size=, ...), plus `model=NAME` to take weights from the registry.

- Batches: HFLM left-pads each batch; the meter counts the real tokens of every row (prompt
  without padding, generated tokens up to the row's end-of-sequence token or stop string) and
  gives every request of a batch the batch's prefill time as its time to first token, taken at
  the first call of a logits processor, i.e. right after the prefill forward pass.
- Anti-loop rule (harness.backends.decoding): `no_repeat_ngram_generated: N` in the generation kwargs
  becomes a GeneratedNoRepeatNGram logits processor. Stock `lm_eval --model hf` passes every
  generation kwarg to `model.generate`, which rejects unknown ones; the task YAML therefore also
  names `generate_no_loop` as transformers' `custom_generate` callable, which takes the key out
  of generate()'s kwargs and applies the same processor.
- Adapters: `set_adapter(dir | None)` switches PEFT adapters on the loaded base model.
- Loglikelihood ranking with prefix reuse: consecutive requests with the same context (the
  choices of one multiple-choice document, as lm-eval sends them) run the context once; the
  continuations then run packed into one row after its KV cache, each masked to the context
  and itself (`_score_group`). HFLM runs each (context, continuation) pair on its own: a
  product_nextitem document is ~5,000 tokens that way and ~790 this way. Requests too long for
  the model's window go through HFLM's own path (it keeps their end), as do contexts longer
  than a sliding-window layer's cache.
- Over-long prompts: a product prompt longer than the room lm-eval leaves for it loses product
  JSON fields, then features (harness.prompts.fit_review_context), never the instruction or the
  chat template, with a warning; HFLM would cut it from the front. Other contexts keep HFLM's
  rule (their end is kept).
"""
from __future__ import annotations

import copy
import logging
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM
from transformers import LogitsProcessor, LogitsProcessorList

from .decoding import GEN_KEY, banned_next, pop_setting
from .dequantized import hf_source
from ..errors import HarnessError
from ..models import DEFAULT_MODEL, resolve_hf
from .throughput import METER

log = logging.getLogger("harness.hf")

RANK_CHUNK_TOKENS = 1024       # continuation tokens per forward pass of _score_group
RANK_CHUNK_LOGITS = 1 << 27    # and at most this many logits (512 MB of float32)


class _FirstTokenClock(LogitsProcessor):
    def __init__(self):
        self.t_first = None

    def __call__(self, input_ids, scores):
        if self.t_first is None:
            self.t_first = time.perf_counter()
        return scores


class GeneratedNoRepeatNGram(LogitsProcessor):
    """Sets to -inf the score of every token that would complete an n-gram already present in
    its row's generated tokens (harness.backends.decoding.banned_next). The first `prompt_len` columns
    of input_ids are the prompt (with left padding: the padded width) and are not looked at."""

    def __init__(self, n: int, prompt_len: int):
        self.n, self.prompt_len = n, prompt_len

    def __call__(self, input_ids, scores):
        rows = [(i, banned_next(gen, self.n))
                for i, gen in enumerate(input_ids[:, self.prompt_len:].tolist())]
        if any(b for _, b in rows):
            scores = scores.clone()
            for i, banned in rows:
                if banned:
                    scores[i, list(banned)] = -float("inf")
        return scores


class _NoLoopGenerate:
    """transformers' `custom_generate` callable: the usual decoding method of the generation
    config, with GeneratedNoRepeatNGram added when `no_repeat_ngram_generated` > 0 (generate()
    hands this callable the keyword arguments its signature names, so the key never reaches
    the model's kwargs validation). One module-level instance, `generate_no_loop`; copies are
    the instance itself, so lm-eval still batches requests whose kwargs hold it together."""

    def __call__(self, model, input_ids, logits_processor, stopping_criteria, generation_config,
                 no_repeat_ngram_generated=0, **model_kwargs):
        from transformers.generation.utils import GENERATION_MODES_MAPPING

        mode = generation_config.get_generation_mode()
        method = GENERATION_MODES_MAPPING.get(mode, "")
        if not method.startswith("_"):
            raise HarnessError(f"generation_kwargs custom_generate: {self!r} does not support "
                               f"{mode.value} decoding")
        n = pop_setting({GEN_KEY: no_repeat_ngram_generated})
        if n:
            logits_processor.append(GeneratedNoRepeatNGram(n, input_ids.shape[1]))
        return getattr(type(model), method)(
            model, input_ids, logits_processor=logits_processor,
            stopping_criteria=stopping_criteria, generation_config=generation_config,
            **model_kwargs)

    def __repr__(self):
        return "harness.backends.hf.generate_no_loop"

    def __deepcopy__(self, memo):
        return self

    def __reduce__(self):
        return "generate_no_loop"


generate_no_loop = _NoLoopGenerate()


@register_model("harness-hf")
class TimedHFLM(HFLM):
    def __init__(self, pretrained=None, model: str | None = None, gguf_file: str | None = None,
                 **kwargs):
        t0 = time.perf_counter()
        if pretrained is None:
            pretrained, gguf = resolve_hf(model or DEFAULT_MODEL)
            gguf_file = gguf_file or gguf
        pretrained, gguf_file = hf_source(pretrained, gguf_file)   # a GGUF: dequantized once
        if gguf_file:
            kwargs["gguf_file"] = gguf_file
        kwargs.setdefault("dtype", "float32")
        # log-probabilities in float32 whatever the weights' dtype: a bfloat16 log-softmax over
        # a 49k-262k vocabulary keeps ~3 significant digits per token
        kwargs.setdefault("softmax_dtype", "float32")
        kwargs.setdefault("device", "cuda" if torch.cuda.is_available() else "cpu")
        super().__init__(pretrained=pretrained, **kwargs)
        # adapter directory -> PEFT adapter name; HFLM names the one given as peft= "default"
        self._adapters = {str(Path(self.peft).resolve()): "default"} if self.peft else {}
        METER.load_s += time.perf_counter() - t0

    def tok_batch_encode(self, strings, padding_side="left", left_truncate_len=None,
                         truncation=False):
        if left_truncate_len:
            strings = [self._fit_product_prompt(s, left_truncate_len) for s in strings]
        return super().tok_batch_encode(strings, padding_side=padding_side,
                                        left_truncate_len=left_truncate_len,
                                        truncation=truncation)

    def _fit_product_prompt(self, context: str, budget: int) -> str:
        from ..prompts import fit_review_context, trim_note

        def n_tokens(text: str) -> int:
            return len(self.tok_encode(text, add_special_tokens=self.add_bos_token))

        if "\nProduct: " not in context or n_tokens(context) <= budget:
            return context
        fitted, dropped = fit_review_context(context, lambda t: n_tokens(t) <= budget,
                                             where=f"prompt ({budget} tokens fit)")
        log.warning("prompt trimmed to fit max_length %d: dropped %s", self.max_length,
                    trim_note(dropped))
        return fitted

    def set_adapter(self, peft_dir: str | Path | None) -> None:
        """Run with the PEFT adapter in `peft_dir`, or with the bare base model for None. The
        base weights stay loaded: the model is wrapped with PEFT once, every adapter is loaded
        once by name, None disables the adapter layers."""
        from peft import PeftModel

        if peft_dir is None:
            if isinstance(self._model, PeftModel):
                self._model.base_model.disable_adapter_layers()
            self.peft = None
            return
        path = Path(peft_dir).resolve()
        if not (path / "adapter_config.json").is_file():
            raise HarnessError(f"{peft_dir}: not a PEFT adapter directory "
                               f"(no adapter_config.json)")
        name = self._adapters.get(str(path))
        if name is None:
            name = f"adapter_{len(self._adapters)}"
            if isinstance(self._model, PeftModel):
                self._model.load_adapter(str(path), adapter_name=name)
            else:
                self._model = PeftModel.from_pretrained(self._model, str(path), adapter_name=name)
            self._model.eval()
            self._adapters[str(path)] = name
        self._model.set_adapter(name, inference_mode=True)
        self._model.base_model.enable_adapter_layers()
        self.peft = str(path)

    def _model_generate(self, context, max_length, stop, **generation_kwargs):
        n = pop_setting(generation_kwargs)
        if generation_kwargs.get("custom_generate") is generate_no_loop:
            del generation_kwargs["custom_generate"]  # its rule is applied here
        clock = _FirstTokenClock()
        procs = LogitsProcessorList([clock])
        procs.extend(generation_kwargs.pop("logits_processor", None) or [])
        if n:
            procs.append(GeneratedNoRepeatNGram(n, context.shape[1]))
        mask = generation_kwargs.get("attention_mask")
        t0 = time.perf_counter()
        out = super()._model_generate(context, max_length, stop, logits_processor=procs,
                                      **generation_kwargs)
        total = time.perf_counter() - t0
        n_prompt = int(mask.sum()) if mask is not None else int(context.numel())
        n_gen = sum(max(k, 1) for k in self._generated_lengths(out[:, context.shape[1]:], stop))
        ttft = (clock.t_first or time.perf_counter()) - t0
        METER.add(n_prompt, ttft, n_gen, total, requests=context.shape[0])
        return out

    def _generated_lengths(self, gen: torch.Tensor, stop: list[str]) -> list[int]:
        """Tokens each row really generated: those before its first end-of-sequence token (not
        counted, as in the llama.cpp backend), through the token that completes a stop string.
        The rest is padding, or tokens made while other rows of the batch went on."""
        eos = self.model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, list) else [eos]) | {self.tokenizer.eos_token_id}
        stop = [s for s in stop if s]

        def stopped(ids):
            text = self.tokenizer.decode(ids, skip_special_tokens=False)
            return any(s in text for s in stop)

        out = []
        for row in gen.tolist():
            k = next((i for i, t in enumerate(row) if t in eos), len(row))
            if stop and k and stopped(row[:k]):
                lo, hi = 1, k  # the shortest prefix holding a stop string
                while lo < hi:
                    mid = (lo + hi) // 2
                    lo, hi = (lo, mid) if stopped(row[:mid]) else (mid + 1, hi)
                k = lo
            out.append(k)
        return out

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs=None):
        """Consecutive requests with the same context are scored together (_score_group);
        the throughput record counts the tokens run per document beside the naive count."""
        if self.backend != "causal":
            return super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)
        from tqdm import tqdm

        out: list = [None] * len(requests)
        groups: list[tuple[list[int], list[int]]] = []   # (context, request indices)
        for i, (_, context_enc, _) in enumerate(requests):
            ctx = list(context_enc)
            if groups and groups[-1][0] == ctx:
                groups[-1][1].append(i)
            else:
                groups.append((ctx, [i]))
        bar = tqdm(total=len(requests), disable=disable_tqdm or self.rank != 0,
                   desc="transformers loglikelihood")
        for ctx, idx in groups:
            conts = [list(requests[i][2]) for i in idx]
            naive = sum(len(ctx) + len(c) - 1 for c in conts)   # each pair on its own
            if (ctx and all(conts) and len(ctx) + max(map(len, conts)) - 1 <= self.max_length
                    and self._packable(len(ctx))):
                res = self._score_group(ctx, conts)
                METER.add_ranking(1, len(ctx) + sum(len(c) - 1 for c in conts), naive)
                for i, r in zip(idx, res):
                    if requests[i][0] is not None:
                        self.cache_hook.add_partial("loglikelihood", requests[i][0], r)
            else:   # HFLM's path: it cuts from the left and feeds the cache hook itself
                res = super()._loglikelihood_tokens([requests[i] for i in idx], True, override_bs)
                METER.add_ranking(1, naive, naive)
            for i, r in zip(idx, res):
                out[i] = r
            bar.update(len(idx))
        bar.close()
        return out

    def _layer_types(self) -> set[str]:
        return set(getattr(self.model.config, "layer_types", None) or ["full_attention"])

    def _packable(self, ctx_len: int) -> bool:
        """Whether _score_group can run this model: full-attention layers, or sliding-window
        layers whose cache still holds the whole context (transformers keeps the last
        sliding_window - 1 tokens)."""
        types = self._layer_types()
        if not types <= {"full_attention", "sliding_attention"}:
            return False
        return ("sliding_attention" not in types
                or ctx_len <= self.model.config.sliding_window - 1)

    def _packed_masks(self, ctx_len: int, lens: list[int]):
        """Position ids and attention mask(s) of continuations packed into one row after a
        cached context of ctx_len tokens: each token sees the context and the earlier tokens
        of its own continuation, at the positions it would have alone. An additive float mask
        (eager and sdpa attention both take it); a dict by layer type for models with
        sliding-window layers, whose keys stay within sliding_window positions."""
        L = ctx_len
        pos = torch.cat([torch.arange(L, L + n) for n in lens])
        own = torch.block_diag(*[torch.ones(n, n, dtype=torch.bool).tril() for n in lens])
        seen = torch.cat([torch.ones(len(pos), L, dtype=torch.bool), own], dim=1)
        key_pos = torch.cat([torch.arange(L), pos])
        dtype = self.model.dtype

        def additive(m):
            return torch.zeros(m.shape, dtype=dtype).masked_fill(
                ~m, torch.finfo(dtype).min)[None, None].to(self.device)

        types = self._layer_types()
        if types == {"full_attention"}:
            return pos, additive(seen)
        near = pos[:, None] - key_pos[None, :] < self.model.config.sliding_window
        return pos, {t: additive(seen & near if t == "sliding_attention" else seen)
                     for t in types}

    @torch.no_grad()
    def _score_group(self, ctx: list[int], conts: list[list[int]]) -> list[tuple[float, bool]]:
        """(loglikelihood, is greedy) of each continuation after ctx: one forward pass of the
        context (its last row predicts every first token), then the continuations packed
        back to back into one row on a copy of its KV cache, with a mask that keeps each to
        the context and itself (no padding, no per-continuation copy of the cache; llama.cpp's
        GroupScorer does the same with sequence ids), RANK_CHUNK_TOKENS at a time. The last
        token of a continuation is scored, never fed. Log-softmax in HFLM's softmax_dtype, as
        its own path does."""
        dev, L = self.device, len(ctx)
        out = self.model(torch.tensor([ctx], device=dev), use_cache=True, logits_to_keep=1)
        past = out.past_key_values
        last = F.log_softmax(out.logits[0, -1], dim=-1, dtype=self.softmax_dtype)
        top = int(last.argmax())
        res = [(float(last[c[0]]), top == c[0]) for c in conts]
        budget = max(1, min(RANK_CHUNK_TOKENS, RANK_CHUNK_LOGITS // out.logits.shape[-1]))
        pending = [i for i, c in enumerate(conts) if len(c) > 1]
        while pending:
            take, n = [], 0
            for i in pending:
                if take and n + len(conts[i]) - 1 > budget:
                    break
                take.append(i)
                n += len(conts[i]) - 1
            pending = pending[len(take):]
            lens = [len(conts[i]) - 1 for i in take]
            pos, mask = self._packed_masks(L, lens)
            fed = torch.tensor([[t for i in take for t in conts[i][:-1]]], device=dev)
            target = torch.tensor([t for i in take for t in conts[i][1:]], device=dev)
            cache = copy.deepcopy(past) if pending else past   # a forward pass extends it
            logits = self.model(fed, past_key_values=cache, position_ids=pos[None].to(dev),
                                attention_mask=mask, use_cache=True).logits[0]
            lp = F.log_softmax(logits, dim=-1, dtype=self.softmax_dtype)
            picked = lp.gather(1, target[:, None])[:, 0]
            hit = lp.argmax(-1) == target
            at = 0
            for i, k in zip(take, lens):
                ll, greedy = res[i]
                res[i] = (ll + float(picked[at:at + k].sum()),
                          greedy and bool(hit[at:at + k].all()))
                at += k
        return res
