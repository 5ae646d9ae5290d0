"""In-process llama.cpp backend for lm-eval (`--model llama-cpp`), through llama-cpp-python.

    --model_args model=NAME_OR_GGUF,n_threads=2,n_ctx=2048,n_gpu_layers=0,lora_path=FILE,seed=0,
                 batch_size=8

Implements generate_until (greedy or sampled, stop strings, EOS), loglikelihood and
loglikelihood_rolling, and lm-eval's chat-template hooks with the template stored in the GGUF.
Greedy requests are decoded `batch_size` at a time on one context (BatchDecoder: continuous
batching, each sequence with its own KV cache of n_ctx cells; batch_size=1: one at a time,
as Llama.generate does); sampled ones one at a time. `no_repeat_ngram_generated: N` in a request's
generation kwargs bans repeating an N-gram of the generated tokens (harness.backends.decoding).
`set_adapter(path)` switches LoRA adapters on the loaded model. Every generation request is
timed into harness.backends.throughput.METER.
"""
from __future__ import annotations

import atexit
import logging
import os
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from tqdm import tqdm

from .gguf_reader import check_magic
from .decoding import GENERATION_BATCH, banned_next, pop_setting
from ..errors import HarnessError
from ..models import DEFAULT_MODEL, resolve_gguf
from .llama_scoring import decode_rows, set_lora
from .throughput import METER

log = logging.getLogger("harness.llama_cpp")
DEFAULT_BATCH_SIZE = GENERATION_BATCH["llama-cpp"]   # greedy requests decoded together


def _bool(v) -> bool:
    return str(v).lower() in ("1", "true", "yes")


def open_llama(model_path: str | Path, *, n_ctx: int = 2048, n_threads: int | None = None,
               n_gpu_layers: int = 0, lora_path: str | None = None, seed: int = 0,
               logits_all: bool = False, n_batch: int = 512, warmup: bool = True):
    """Load a GGUF with llama-cpp-python; a bad file is a HarnessError naming it."""
    from llama_cpp import Llama

    model_path = Path(model_path)
    if not model_path.is_file():
        raise HarnessError(f"{model_path}: GGUF file not found")
    check_magic(model_path)
    if lora_path and not Path(lora_path).is_file():
        raise HarnessError(f"{lora_path}: LoRA adapter file not found")
    try:
        llm = Llama(model_path=str(model_path), n_ctx=n_ctx, n_batch=n_batch,
                    n_threads=n_threads or os.cpu_count(),
                    n_threads_batch=n_threads or os.cpu_count(),  # prefill: same threads
                    n_gpu_layers=n_gpu_layers,
                    lora_path=lora_path, seed=seed, logits_all=logits_all, verbose=False)
    except (ValueError, RuntimeError) as e:
        what = f"{lora_path} on {model_path}" if lora_path else str(model_path)
        raise HarnessError(f"{what}: llama.cpp could not load it ({e}); the file may be "
                           f"truncated/corrupt or the adapter made for another base model") from e
    # Close before interpreter shutdown (llama-cpp-python's __del__ fails once globals are gone).
    ref = weakref.ref(llm)
    atexit.register(lambda: ref() is not None and ref().close())
    if warmup:
        # The first batched decode of a context sets up its compute graph (seconds); do it at
        # load time so time-to-first-token measures steady-state prefill.
        toks = llm.tokenize(b"Warm up the prompt path of this model once.", add_bos=False)
        llm.eval(toks[:16])
        llm.eval(toks[:1])
        llm.reset()
    return llm


def gguf_chat_template(llm) -> str | None:
    return llm.metadata.get("tokenizer.chat_template")


def render_chat(llm, messages: list[dict], add_generation_prompt: bool = True) -> str:
    """Apply the chat template stored in the GGUF (jinja2, as llama.cpp's server does)."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = gguf_chat_template(llm)
    if not template:
        raise HarnessError("this GGUF has no chat template (tokenizer.chat_template); "
                           "run it as a base model without --apply_chat_template")
    vocab_tok = lambda i: llm.detokenize([i], special=True).decode("utf-8", "ignore") if i >= 0 else ""
    fmt = Jinja2ChatFormatter(template=template, eos_token=vocab_tok(llm.token_eos()),
                              bos_token=vocab_tok(llm.token_bos()),
                              add_generation_prompt=add_generation_prompt)
    return fmt(messages=messages).prompt


class StopScanner:
    """Incremental detokenization with stop strings; returns the text before the first stop."""

    def __init__(self, llm, until: list[str]):
        self.llm, self.until = llm, [u for u in until if u]
        self.tokens: list[int] = []
        self.text = ""

    def push(self, token: int) -> bool:
        """Add a token; True when a stop string has appeared."""
        self.tokens.append(token)
        self.text = self.llm.detokenize(self.tokens).decode("utf-8", errors="ignore")
        return any(u in self.text for u in self.until)

    def result(self) -> str:
        text = self.text
        for u in self.until:
            i = text.find(u)
            if i != -1:
                text = text[:i]
        return text

    def stable(self) -> str:
        """The text so far that no stop string can still cut (for streaming)."""
        hold = max((len(u) for u in self.until), default=1) - 1
        return self.text[: max(0, len(self.text) - hold)]


def _batch_size(value) -> int:
    import llama_cpp

    top = llama_cpp.llama_max_parallel_sequences()
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if not 1 <= n <= top:
        raise HarnessError(f"model_args batch_size: {value!r} must be an integer from 1 to {top}")
    return n


@dataclass
class GenJob:
    """One greedy request for BatchDecoder: prompt tokens (already fitted to the window),
    stop strings, token budget, anti-loop N (0 = off)."""
    prompt: list[int]
    until: list[str]
    max_tokens: int
    no_repeat: int = 0


@dataclass
class _Seq:
    index: int                     # which job
    job: GenJob
    slot: int                      # llama.cpp sequence id
    scanner: StopScanner
    started: float = 0.0           # when its prefill started
    ttft: float = 0.0
    generated: list[int] = field(default_factory=list)
    row: np.ndarray | None = None  # logits for its next token

    def pick(self, eog: set[int]) -> bool:
        """Choose the next token from `row` (argmax over the tokens the anti-loop rule allows);
        True when the sequence is finished (end-of-generation, stop string, budget)."""
        row = self.row
        if self.job.no_repeat and (bad := banned_next(self.generated, self.job.no_repeat)):
            row[list(bad)] = -np.inf
        tok = int(np.argmax(row))
        if tok in eog:
            return True
        self.generated.append(tok)
        return self.scanner.push(tok) or len(self.generated) >= self.job.max_tokens


class BatchDecoder:
    """Greedy decoding of many requests side by side on one llama.cpp context.

    n_seq sequences, each with its own KV stream of n_ctx cells (kv_unified off): a sequence's
    cells sit where a one-sequence context puts them. The prompts' shared start (chat template,
    system prompt, instruction: at least MIN_PREFIX tokens common to all jobs of a run) is
    decoded once into one more stream and copied into each sequence's stream before the rest of
    its prompt (llama_memory_seq_cp across streams copies the cells). New prompts are prefilled
    together, up to n_batch tokens per llama_decode; then each step is one llama_decode of one
    token per active sequence. When a sequence finishes, its cells are freed
    (llama_memory_seq_rm) and the next request starts in its slot (continuous batching).

    Same texts as one request at a time when the model's matmuls take the same kernel for one
    token and for several. The set-up builds llama.cpp without llamafile's tinyBLAS
    (-DGGML_LLAMAFILE=OFF, Makefile), which a default build uses for F32/F16/Q8_0/Q5_0/Q4_0
    weights only for two or more tokens (ggml's vec_dot for one): with it a LoRA's F32 tensors
    and gemma3-270m's Q5_0 layers gave other sums, and texts that part at near-ties. Weights
    that llama.cpp repacks for its multi-token kernels (Q4_0, Q4_K, IQ4_NL: gemma3-270m's
    Q4_K_M) still take another kernel for several tokens (tests/test_llama_batch.py measures
    and prints how often texts part)."""

    MIN_PREFIX = 16   # shared prompt tokens worth a decode of their own and a stream copy each

    def __init__(self, llm, n_seq: int, n_ctx: int, eog: set[int], adapter=None):
        import llama_cpp
        from llama_cpp import _internals as internals

        self._lc = llama_cpp
        params = llama_cpp.llama_context_params.from_buffer_copy(llm.context_params)
        params.n_ctx = n_ctx * (n_seq + 1)
        params.n_seq_max = n_seq + 1            # the last stream holds the shared prefix
        params.kv_unified = False
        self.ctx = internals.LlamaContext(model=llm._model, params=params, verbose=False)
        self.n_batch = max(int(params.n_batch), n_seq)
        self.batch = internals.LlamaBatch(n_tokens=self.n_batch, embd=0, n_seq_max=1,
                                          verbose=False)
        self.mem = llama_cpp.llama_get_memory(self.ctx.ctx)
        self.llm, self.n_seq, self.eog, self.n_vocab = llm, n_seq, eog, llm.n_vocab()
        self.prefix_seq = n_seq
        # warm up (the first decodes of a context set up its compute graphs): a short prompt,
        # then one token for every sequence
        toks = llm.tokenize(b"Warm up the prompt path of this model once.", add_bos=False)[:16]
        decode_rows(self.ctx, self.batch, [(t, p, 0, False) for p, t in enumerate(toks)],
                    self.n_vocab)
        decode_rows(self.ctx, self.batch, [(toks[0], len(toks) if s == 0 else 0, s, True)
                                           for s in range(n_seq)], self.n_vocab)
        self.set_adapter(adapter)
        self.decodes = 0   # llama_decode calls so far (tests read it)
        self.moves = 0     # sequences moved to a lower slot (_compact)

    def set_adapter(self, adapter) -> None:
        set_lora(self.ctx.ctx, adapter)
        self._lc.llama_memory_clear(self.mem, True)

    def _decode(self, items: list[tuple[int, int, int, bool]]) -> np.ndarray:
        self.decodes += 1
        return decode_rows(self.ctx, self.batch, items, self.n_vocab)

    @classmethod
    def shared_prefix(cls, jobs: list[GenJob]) -> int:
        """How many first prompt tokens all jobs share (each keeps at least its last token to
        decode itself: its logits row); 0 when under MIN_PREFIX or for a single job."""
        if len(jobs) < 2:
            return 0
        first, n = jobs[0].prompt, min(len(j.prompt) for j in jobs) - 1
        for j in jobs[1:]:
            n = next((k for k in range(n) if j.prompt[k] != first[k]), n)
        return n if n >= cls.MIN_PREFIX else 0

    def _decode_prefix(self, tokens: list[int]) -> None:
        for c in range(0, len(tokens), self.n_batch):
            self._decode([(t, p, self.prefix_seq, False)
                          for p, t in enumerate(tokens[c:c + self.n_batch], c)])

    def _prefill(self, seqs: list[_Seq], skip: int = 0) -> None:
        """Decode the prompts of seqs after their first `skip` tokens (the shared prefix, copied
        from its stream), several per llama_decode (up to n_batch tokens); each gets its logits
        row, and its time to first token: from the start of the decode holding its first decoded
        prompt token to the end of the one holding its last."""
        items, owner, first = [], [], set()
        for s in seqs:
            if skip:
                self._lc.llama_memory_seq_cp(self.mem, self.prefix_seq, s.slot, -1, -1)
            n = len(s.job.prompt)
            first.add(len(items))
            items += [(t, p, s.slot, p == n - 1)
                      for p, t in enumerate(s.job.prompt[skip:], skip)]
            owner += [s] * (n - skip)
        for c in range(0, len(items), self.n_batch):
            t0 = time.perf_counter()
            chunk = range(c, min(c + self.n_batch, len(items)))
            for i in chunk:
                if i in first:
                    owner[i].started = t0
            rows = iter(self._decode([items[i] for i in chunk]))
            t1 = time.perf_counter()
            for i in chunk:
                if items[i][3]:
                    owner[i].row, owner[i].ttft = next(rows), t1 - owner[i].started

    def _compact(self, active: list[_Seq]) -> None:
        """Move the sequences in the highest slots into free lower ones, so that the active
        slots are 0..k-1: llama.cpp decodes consecutive sequence ids in one ubatch, a set with
        gaps in several. The KV stream is copied cell for cell (same layout, same numbers)."""
        free = sorted(set(range(self.n_seq)) - {s.slot for s in active})
        for s in sorted(active, key=lambda s: -s.slot):
            if not free or free[0] > s.slot:
                break
            lo = free.pop(0)
            self._lc.llama_memory_seq_cp(self.mem, s.slot, lo, -1, -1)
            self._lc.llama_memory_seq_rm(self.mem, s.slot, -1, -1)
            s.slot = lo
            self.moves += 1

    def run(self, jobs: list[GenJob], on_done: Callable[[int, str], None] | None = None
            ) -> list[tuple[str, list[int]]]:
        """(text, generated tokens) of each job, in order; on_done(index, text) as each
        finishes."""
        lc = self._lc
        lc.llama_memory_clear(self.mem, True)
        out: list = [None] * len(jobs)
        todo = deque(enumerate(jobs))
        active: list[_Seq] = []
        t_start, prefill_s, most, ttfts, n_gen = time.perf_counter(), 0.0, 0, [], 0
        skip = self.shared_prefix(jobs)
        if skip:
            self._decode_prefix(jobs[0].prompt[:skip])
            prefill_s += time.perf_counter() - t_start
        while todo or active:
            new = []
            for slot in sorted(set(range(self.n_seq)) - {s.slot for s in active}):
                if not todo:
                    break
                i, job = todo.popleft()
                new.append(_Seq(i, job, slot, StopScanner(self.llm, job.until)))
            if new:
                t0 = time.perf_counter()
                self._prefill(new, skip)
                prefill_s += time.perf_counter() - t0
                active += new
            most = max(most, len(active))
            going = []
            for s in active:
                if not s.pick(self.eog):
                    going.append(s)
                    continue
                lc.llama_memory_seq_rm(self.mem, s.slot, -1, -1)
                text = s.scanner.result()
                out[s.index] = (text, s.generated)
                ttfts.append(s.ttft)
                n_gen += max(len(s.generated), 1)
                if on_done:
                    on_done(s.index, text)
            active = going
            if not todo:
                self._compact(active)
            active.sort(key=lambda s: s.slot)
            if active:
                rows = self._decode([(s.generated[-1], len(s.job.prompt) + len(s.generated) - 1,
                                      s.slot, True) for s in active])
                for s, row in zip(active, rows):
                    s.row = row
        wall = time.perf_counter() - t_start
        METER.add_concurrent(sum(len(j.prompt) for j in jobs), ttfts, n_gen, prefill_s,
                             wall - prefill_s, most)
        METER.prompt_tokens_reused += skip * (len(jobs) - 1)
        return out


@register_model("llama-cpp", "llamacpp")
class LlamaCppLM(TemplateLM):
    def __init__(self, model: str = DEFAULT_MODEL, n_ctx: int = 2048,
                 n_threads: int | None = None, n_gpu_layers: int = 0, lora_path: str | None = None,
                 seed: int = 0, max_gen_toks: int = 256, batch_size: int = DEFAULT_BATCH_SIZE,
                 **kwargs):
        super().__init__()
        t0 = time.perf_counter()
        self.batch_size = _batch_size(batch_size)
        self.model_path = resolve_gguf(str(model))
        self._kw = dict(n_ctx=int(n_ctx), n_threads=int(n_threads) if n_threads else None,
                        n_gpu_layers=int(n_gpu_layers), seed=int(seed))
        self.seed = int(seed)
        self.llm = open_llama(self.model_path, **self._kw)
        self._scorer = None  # a second context with logits_all, made on first loglikelihood
        self._grouper = None  # a multi-sequence context for multiple choice (llama_scoring)
        self._batcher = None  # BatchDecoder for greedy generation, made on first use
        self._adapters: dict[tuple[int, str], object] = {}  # (id(model), path) -> adapter
        self.lora_path: str | None = None
        self.max_gen_toks = int(max_gen_toks)
        # end-of-generation tokens: EOS, and the chat template's end-of-turn (e.g. <|im_end|>)
        import llama_cpp
        vocab = llama_cpp.llama_model_get_vocab(self.llm._model.model)
        self.eog = {i for i in range(self.llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, i)}
        self.n_ctx = int(n_ctx)
        METER.load_s += time.perf_counter() - t0
        self.set_adapter(lora_path or None)

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict, additional_config: dict | None = None):
        """lm-eval's constructor path. `batch_size` in model_args wins over lm-eval's own
        --batch_size, which counts only when it is a number above 1 (its default is 1)."""
        args = dict(arg_dict)
        extra = {k: v for k, v in (additional_config or {}).items() if v is not None}
        top = extra.pop("batch_size", None)
        if "batch_size" not in args and str(top).isdigit() and int(top) > 1:
            args["batch_size"] = int(top)
        return cls(**args, **{k: v for k, v in extra.items() if k not in args})

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None):
        from lm_eval.utils import simple_parse_args_string

        return cls.create_from_arg_obj(simple_parse_args_string(arg_string), additional_config)

    # --- LoRA adapters -----------------------------------------------------------------
    def _adapter(self, llm, path: str | None):
        """The adapter at `path` loaded for llm's model (once; llama.cpp frees it with the
        model), or None."""
        if path is None:
            return None
        key = (id(llm._model), path)
        if key not in self._adapters:
            import llama_cpp

            adapter = llama_cpp.llama_adapter_lora_init(llm._model.model, path.encode("utf-8"))
            if not adapter:
                raise HarnessError(f"{path} on {self.model_path}: llama.cpp could not load it; "
                                   f"the file may be truncated/corrupt or the adapter made for "
                                   f"another base model")
            self._adapters[key] = adapter
        return self._adapters[key]

    def set_adapter(self, lora_path: str | os.PathLike | None) -> None:
        """Run with the LoRA GGUF at lora_path on top of the loaded base model (None: the base
        alone), on every context of this model: generation, scoring, multiple choice, batches.
        Each file is loaded once and kept, so switching back and forth reloads nothing. Cached
        state (KV cells, scored prefixes) is dropped: nothing computed under the previous
        adapter is reused."""
        t0 = time.perf_counter()
        path = str(lora_path) if lora_path else None
        if path and not Path(path).is_file():
            raise HarnessError(f"{path}: LoRA adapter file not found")
        for llm in filter(None, (self.llm, self._scorer)):
            set_lora(llm._ctx.ctx, self._adapter(llm, path))
            llm.reset()
            llm._ctx.kv_cache_clear()
        for other in filter(None, (self._grouper, self._batcher)):
            other.set_adapter(self._adapter(self.llm, path))
        self.lora_path = path
        METER.load_s += time.perf_counter() - t0

    # --- tokenization ------------------------------------------------------------------
    @property
    def eot_token_id(self) -> int:
        return self.llm.token_eos()

    @property
    def prefix_token_id(self) -> int:
        bos = self.llm.token_bos()
        return bos if bos >= 0 else self.eot_token_id

    def _add_bos(self) -> bool:
        return bool(self.llm._model.add_bos_token())

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        # special=True: chat-template markers such as <|im_start|> become their tokens
        return self.llm.tokenize(string.encode("utf-8"), add_bos=False, special=True)

    def prompt_tokens(self, context: str) -> list[int]:
        toks = self.tok_encode(context)
        bos = self.llm.token_bos()
        if self._add_bos() and bos >= 0 and (not toks or toks[0] != bos):
            toks = [bos] + toks
        return toks

    # --- chat template -----------------------------------------------------------------
    @property
    def tokenizer_name(self) -> str:
        return self.model_path.name

    def chat_template(self, chat_template: bool | str = False) -> str:
        return (gguf_chat_template(self.llm) or "") if chat_template else ""

    def apply_chat_template(self, chat_history: list[dict], add_generation_prompt: bool = True) -> str:
        return render_chat(self.llm, chat_history, add_generation_prompt)

    # --- generation --------------------------------------------------------------------
    def fit_prompt(self, context: str, max_gen_toks: int) -> list[int]:
        """The prompt's tokens, at most n_ctx - max_gen_toks of them; an empty prompt is the
        prefix token. A product prompt that is too long loses product JSON fields, then
        features (harness.prompts.fit_review_context), never the instruction or the chat
        template, with a warning; HarnessError when even its title does not fit. Another
        task's over-long context keeps its end (as lm-eval's HF backend does), with a warning."""
        from ..prompts import fit_review_context, trim_note

        prompt = self.prompt_tokens(context) or [self.prefix_token_id]
        budget = max(self.n_ctx - max_gen_toks, 1)
        if len(prompt) <= budget:
            return prompt
        if "\nProduct: " not in context:
            log.warning("prompt of %d tokens > %d (n_ctx %d - max_gen_toks %d): its start is cut",
                        len(prompt), budget, self.n_ctx, max_gen_toks)
            return prompt[-budget:]
        context, dropped = fit_review_context(
            context, lambda t: len(self.prompt_tokens(t)) <= budget,
            where=f"prompt ({len(prompt)} tokens, {budget} fit beside {max_gen_toks} to generate)")
        log.warning("prompt trimmed to fit n_ctx %d: dropped %s", self.n_ctx, trim_note(dropped))
        return self.prompt_tokens(context)

    def generate_one(self, context: str, until: list[str], max_gen_toks: int,
                     temperature: float = 0.0, seed: int | None = None,
                     on_text: Callable[[str], None] | None = None,
                     no_repeat_ngram: int = 0) -> str:
        """One completion. on_text, when given, receives the text as it is generated (pieces
        that together make exactly the returned text). no_repeat_ngram > 0: never complete an
        n-gram already in the generated tokens (greedy: argmax over the other tokens)."""
        prompt = self.fit_prompt(context, max_gen_toks)
        scanner = StopScanner(self.llm, until)
        self.llm.reset()  # no prefix reuse: every request pays its full prefill, as in HF
        if seed is not None:
            self.llm.set_seed(seed)
        procs = None
        if no_repeat_ngram > 0:
            from llama_cpp import LogitsProcessorList

            def ban(_ids, logits):   # runs in the sampler, before greedy / top-k
                if bad := banned_next(scanner.tokens, no_repeat_ngram):
                    logits[list(bad)] = -np.inf
                return logits
            procs = LogitsProcessorList([ban])
        t0 = time.perf_counter()
        ttft, n, sent = None, 0, ""
        for tok in self.llm.generate(prompt, temp=float(temperature), top_k=0 if not temperature
                                     else 40, top_p=1.0, min_p=0.0, repeat_penalty=1.0, reset=True,
                                     logits_processor=procs):
            if ttft is None:
                ttft = time.perf_counter() - t0
            if tok in self.eog:
                break
            n += 1
            stop = scanner.push(tok) or n >= max_gen_toks
            if on_text and not stop and len(piece := scanner.stable()) > len(sent):
                on_text(piece[len(sent):])
                sent = piece
            if stop:
                break
        total = time.perf_counter() - t0
        METER.add(len(prompt), ttft or total, max(n, 1), total)
        text = scanner.result()
        if on_text and len(text) > len(sent):
            on_text(text[len(sent):])
        return text

    def _batch_decoder(self) -> BatchDecoder:
        if self._batcher is None:
            t0 = time.perf_counter()
            self._batcher = BatchDecoder(self.llm, self.batch_size, self.n_ctx, self.eog,
                                         self._adapter(self.llm, self.lora_path))
            METER.load_s += time.perf_counter() - t0
        return self._batcher

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy requests go through BatchDecoder when batch_size > 1, sampled ones (do_sample
        with temperature > 0) through generate_one, one at a time, each seeded with `seed`."""
        jobs = []
        for req in requests:
            context, gen_kwargs = req.args
            kw = dict(gen_kwargs or {})
            no_repeat = pop_setting(kw)
            until = kw.get("until") or []
            if isinstance(until, str):
                until = [until]
            max_toks = int(kw.get("max_gen_toks", self.max_gen_toks))
            temp = float(kw.get("temperature", 0.0)) if kw.get("do_sample", False) else 0.0
            jobs.append((context, list(until), max_toks, temp, no_repeat))
        out: list[str | None] = [None] * len(jobs)
        bar = tqdm(total=len(jobs), disable=disable_tqdm, desc="llama.cpp generate")

        def done(i: int, text: str) -> None:
            out[i] = text
            self.cache_hook.add_partial("generate_until", requests[i].args, text)
            bar.update(1)

        with METER.phase():
            greedy = [i for i, j in enumerate(jobs) if j[3] == 0.0]
            if self.batch_size > 1 and len(greedy) > 1:
                batch = [GenJob(self.fit_prompt(c, m), u, m, n)
                         for c, u, m, _, n in (jobs[i] for i in greedy)]
                self._batch_decoder().run(batch, on_done=lambda k, text: done(greedy[k], text))
            for i, (context, until, max_toks, temp, no_repeat) in enumerate(jobs):
                if out[i] is None:
                    done(i, self.generate_one(context, until, max_toks, temp,
                                              seed=self.seed if temp else None,
                                              no_repeat_ngram=no_repeat))
        bar.close()
        return out

    # --- scoring -----------------------------------------------------------------------
    def _scoring_llm(self):
        if self._scorer is None:  # mmap: the weights are shared with self.llm
            self._scorer = open_llama(self.model_path, **self._kw, logits_all=True)
            set_lora(self._scorer._ctx.ctx, self._adapter(self._scorer, self.lora_path))
        return self._scorer

    def score_tokens(self, tokens: list[int], cont_len: int) -> tuple[float, bool]:
        """Sum of log-probs of the last cont_len tokens given the ones before; and whether each
        was the argmax. Reuses the evaluated prefix of the previous call (multiple choice).

        Row i of llm.scores holds the logits after tokens[:i+1]; rows of the shared prefix stay
        valid, so only tokens[common:-1] are evaluated: the last token is scored, never fed
        (a one-token answer after an already evaluated context costs no decode at all)."""
        llm = self._scoring_llm()
        tokens = tokens[-self.n_ctx:]
        cont_len = min(cont_len, len(tokens) - 1)
        common = 0
        for a, b in zip(llm.input_ids[: llm.n_tokens], tokens):
            if a != b:
                break
            common += 1
        start = len(tokens) - cont_len - 1  # logits row that predicts the first scored token
        need = len(tokens) - 1              # rows start .. need-1 are read
        common = min(common, need)
        llm.n_tokens = common
        if common < need:
            llm.eval(tokens[common:need])
        logits = np.asarray(llm.scores[start:need], dtype=np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        target = np.asarray(tokens[len(tokens) - cont_len:])
        ll = float(logp[np.arange(cont_len), target].sum())
        greedy = bool((logp.argmax(axis=1) == target).all())
        return ll, greedy

    def _group_scorer(self):
        if self._grouper is None:
            from .llama_scoring import GroupScorer
            self._grouper = GroupScorer(self.llm, n_ctx=self.n_ctx,
                                        lora_adapter=self._adapter(self.llm, self.lora_path))
        return self._grouper

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs):
        """Consecutive requests with the same context (the choices of one multiple-choice
        document, as lm-eval sends them) are scored together by GroupScorer: one decode of the
        context, one batch for all continuations. Requests too long for the context window go
        through score_tokens, which keeps the end of the text."""
        out = [None] * len(requests)
        groups: list[tuple[list[int], list[int]]] = []   # (context, request indices)
        for i, (_, context_enc, continuation_enc) in enumerate(requests):
            ctx = list(context_enc)
            if not ctx or ctx[0] != self.prefix_token_id and self._add_bos():
                ctx = [self.prefix_token_id] + ctx
            if groups and groups[-1][0] == ctx:
                groups[-1][1].append(i)
            else:
                groups.append((ctx, [i]))
        bar = tqdm(total=len(requests), disable=disable_tqdm, desc="llama.cpp loglikelihood")
        for ctx, idx in groups:
            conts = [list(requests[i][2]) for i in idx]
            naive = sum(len(ctx) + len(c) - 1 for c in conts)   # each pair on its own
            if all(conts) and self._group_scorer().fits(ctx, conts):
                res = self._group_scorer().score(ctx, conts)
                METER.add_ranking(1, len(ctx) + sum(len(c) - 1 for c in conts), naive)
            else:
                res = [self.score_tokens(ctx + c, len(c)) for c in conts]
                METER.add_ranking(1, naive, naive)   # upper bound: score_tokens reuses a prefix
            for i, r in zip(idx, res):
                out[i] = r
                if requests[i][0] is not None:
                    self.cache_hook.add_partial("loglikelihood", requests[i][0], r)
            bar.update(len(idx))
        bar.close()
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

        out = []
        for (string,) in tqdm([r.args for r in requests], disable=disable_tqdm,
                              desc="llama.cpp rolling"):
            windows = map(make_disjoint_window, get_rolling_token_windows(
                token_list=self.tok_encode(string), prefix_token=self.prefix_token_id,
                max_seq_len=self.n_ctx - 1, context_len=1))
            total = 0.0
            for ctx, cont in windows:
                total += self.score_tokens(list(ctx) + list(cont), len(cont))[0]
            out.append(total)
        return out
