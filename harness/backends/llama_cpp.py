"""In-process llama.cpp backend for lm-eval (`--model llama-cpp`), through llama-cpp-python.

    --model_args model=NAME_OR_GGUF,n_threads=2,n_ctx=2048,n_gpu_layers=0,lora_path=FILE,seed=0

Implements generate_until (greedy or sampled, stop strings, EOS), loglikelihood and
loglikelihood_rolling, and lm-eval's chat-template hooks with the template stored in the GGUF.
Every generation request is timed into harness.backends.throughput.METER.
"""
from __future__ import annotations

import atexit
import os
import time
import weakref
from pathlib import Path
from typing import Callable

import numpy as np
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from tqdm import tqdm

from ..io import HarnessError
from ..models import resolve_gguf
from .throughput import METER


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
    with open(model_path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise HarnessError(f"{model_path}: not a GGUF file (bad magic)")
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


@register_model("llama-cpp", "llamacpp")
class LlamaCppLM(TemplateLM):
    def __init__(self, model: str = "smollm2-135m-instruct", n_ctx: int = 2048,
                 n_threads: int | None = None, n_gpu_layers: int = 0, lora_path: str | None = None,
                 seed: int = 0, max_gen_toks: int = 256, batch_size=1, **kwargs):
        super().__init__()
        t0 = time.perf_counter()
        self.model_path = resolve_gguf(str(model))
        self.lora_path = lora_path or None
        self._kw = dict(n_ctx=int(n_ctx), n_threads=int(n_threads) if n_threads else None,
                        n_gpu_layers=int(n_gpu_layers), lora_path=self.lora_path, seed=int(seed))
        self.llm = open_llama(self.model_path, **self._kw)
        self._scorer = None  # a second context with logits_all, made on first loglikelihood
        self._grouper = None  # a multi-sequence context for multiple choice (llama_scoring)
        self.max_gen_toks = int(max_gen_toks)
        # end-of-generation tokens: EOS, and the chat template's end-of-turn (e.g. <|im_end|>)
        import llama_cpp
        vocab = llama_cpp.llama_model_get_vocab(self.llm._model.model)
        self.eog = {i for i in range(self.llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, i)}
        self.n_ctx = int(n_ctx)
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
    def generate_one(self, context: str, until: list[str], max_gen_toks: int,
                     temperature: float = 0.0, seed: int | None = None,
                     on_text: Callable[[str], None] | None = None) -> str:
        """One completion. on_text, when given, receives the text as it is generated (pieces
        that together make exactly the returned text)."""
        prompt = self.prompt_tokens(context)
        budget = self.n_ctx - max_gen_toks
        if len(prompt) > budget:  # keep the end of the prompt, as lm-eval's HF backend does
            prompt = prompt[-budget:]
        scanner = StopScanner(self.llm, until)
        self.llm.reset()  # no prefix reuse: every request pays its full prefill, as in HF
        if seed is not None:
            self.llm.set_seed(seed)
        t0 = time.perf_counter()
        ttft, n, sent = None, 0, ""
        for tok in self.llm.generate(prompt, temp=float(temperature), top_k=0 if not temperature
                                     else 40, top_p=1.0, min_p=0.0, repeat_penalty=1.0, reset=True):
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

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        out = []
        for req in tqdm(requests, disable=disable_tqdm, desc="llama.cpp generate"):
            context, gen_kwargs = req.args
            kw = dict(gen_kwargs or {})
            until = kw.get("until") or []
            if isinstance(until, str):
                until = [until]
            max_toks = int(kw.get("max_gen_toks", self.max_gen_toks))
            temp = float(kw.get("temperature", 0.0)) if kw.get("do_sample", False) else 0.0
            text = self.generate_one(context, until, max_toks, temp)
            out.append(text)
            self.cache_hook.add_partial("generate_until", (context, gen_kwargs), text)
        return out

    # --- scoring -----------------------------------------------------------------------
    def _scoring_llm(self):
        if self._scorer is None:  # mmap: the weights are shared with self.llm
            self._scorer = open_llama(self.model_path, **self._kw, logits_all=True)
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
                                        lora_adapter=getattr(self.llm, "_lora_adapter", None),
                                        lora_scale=getattr(self.llm, "lora_scale", 1.0))
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
            if all(conts) and self._group_scorer().fits(ctx, conts):
                res = self._group_scorer().score(ctx, conts)
            else:
                res = [self.score_tokens(ctx + c, len(c)) for c in conts]
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
