"""The reference LM of the fluency metric: a model that scores texts (the log-probability of
every token), never the model under test (harness.metrics.fluency picks it). Two engines, one
vocabulary: texts are tokenized by llama.cpp from the GGUF (vocab only), so both engines score
the same tokens and the same sentence-end set; only the forward pass differs.

    ENGINES["torch"]      transformers on the same GGUF dequantized, bfloat16 where the CPU
                          has AMX (or on CUDA), float32 elsewhere; texts padded in batches of
                          similar length. The default: 5.78x llama.cpp's speed here
                          (benchmarks/reference_engines.py, README "Metrics").
    ENGINES["llama-cpp"]  llama.cpp on the GGUF as it is (quantized matmuls): several texts in
                          one decode, one sequence id each (llama_scoring.decode_view).

Which engine: `reference_lm(name, engine)`, else HARNESS_REFERENCE_ENGINE, else DEFAULT_ENGINE.
The model loads once per process, reference name and engine (`reference_lm`, cached)."""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import HarnessError
from .gguf_reader import check_magic
from .llama_scoring import decode_view, lse_rows

LN2 = math.log(2)
# A token that ends a sentence: terminal punctuation, optionally with quotes / brackets /
# white space around it.
SENTENCE_END_PIECE = re.compile(r"\s*[.!?…。！？]+[\"'”’)\]]*\s*")
MAX_TOKENS = 256          # longer texts: bits per byte over their first 256 tokens
BATCH_TOKENS = 512        # tokens per decode call / forward pass (several texts)
BATCH_SEQS = 16
DEFAULT_ENGINE = "torch"
ENGINE_ENV = "HARNESS_REFERENCE_ENGINE"


@dataclass
class LMScore:
    bits: float           # total bits of the scored tokens
    n_bytes: int          # UTF-8 bytes those tokens cover
    end_bits: float | None  # None when the text was cut to MAX_TOKENS
    n_tokens: int

    @property
    def bits_per_byte(self) -> float:
        return self.bits / self.n_bytes if self.n_bytes else float("nan")


def _llama_model(path: Path, vocab_only: bool):
    from llama_cpp import _internals as internals
    from llama_cpp import llama_cpp
    from llama_cpp._logger import set_verbose

    set_verbose(False)
    mparams = llama_cpp.llama_model_default_params()
    mparams.n_gpu_layers = 0
    mparams.vocab_only = vocab_only
    try:
        return internals.LlamaModel(path_model=str(path), params=mparams, verbose=False)
    except ValueError as e:
        raise HarnessError(f"{path}: llama.cpp could not load it ({e})") from e


class ReferenceLM:
    """What both engines share: the GGUF's vocabulary (llama.cpp tokenizer), the sentence-end
    tokens, and the bits of a text from its tokens' log-probabilities. An engine implements
    `_logprobs(seqs, want_end)`: per sequence, the log-probability of every token after the
    first and, where wanted, of a sentence end after the last."""

    engine = ""

    def __init__(self, name_or_path: str, vocab_only: bool = True):
        from llama_cpp import llama_cpp

        from ..models import resolve_gguf

        path = Path(resolve_gguf(name_or_path))
        check_magic(path)
        self.name = name_or_path
        self.path = path
        self._ll = llama_cpp
        self.model = _llama_model(path, vocab_only)
        self.n_vocab = self.model.n_vocab()
        self.add_bos = True
        self.end_ids = self._sentence_end_ids()

    def _sentence_end_ids(self) -> np.ndarray:
        """Tokens that end a sentence or the text: EOS / end-of-turn, newlines, and every
        token made of sentence-final punctuation ('.', '!', '?', '...', '."', '!!' ...)."""
        ends = {self.model.token_eos(), self.model.token_eot()}
        for s in ("\n", "\n\n", "<end_of_turn>", "<|im_end|>", "<|endoftext|>"):
            t = self.model.tokenize(s.encode(), add_bos=False, special=True)
            if len(t) == 1:
                ends.add(t[0])
        ends |= set(self._punctuation_ids())
        return np.array(sorted(i for i in ends if 0 <= i < self.n_vocab), dtype=np.int64)

    def _punctuation_ids(self) -> list[int]:
        """Scanning a 262k vocabulary takes seconds: cached on disk per GGUF file."""
        import json

        from ..files import write_json
        from ..paths import CACHE_DIR
        st = self.path.stat()
        key = f"{self.path.name}-{st.st_size}-{int(st.st_mtime)}"
        cache = CACHE_DIR / "metrics" / f"sentence_end_ids-{key}.json"
        if cache.is_file():
            try:
                return [int(i) for i in json.loads(cache.read_text())]
            except (ValueError, OSError):
                pass
        ids = [i for i in range(self.n_vocab)
               if SENTENCE_END_PIECE.fullmatch(self._piece(i).decode("utf-8", "ignore"))]
        try:
            write_json(cache, ids)
        except (OSError, HarnessError):
            pass
        return ids

    def _piece(self, token: int) -> bytes:
        import ctypes
        buf = ctypes.create_string_buffer(64)
        n = self._ll.llama_token_to_piece(self.model.vocab, token, buf, 64, 0, False)
        return buf.raw[:max(n, 0)]

    def _tokens(self, text: str) -> tuple[list[int], int, bool]:
        """(tokens with BOS, bytes covered, truncated?)"""
        toks = self.model.tokenize(text.encode("utf-8"), add_bos=self.add_bos, special=False)
        if not toks or (self.add_bos and toks[0] != self.model.token_bos()):
            toks = [self.model.token_bos()] + toks
        if len(toks) <= MAX_TOKENS:
            return toks, len(text.encode("utf-8")), False
        toks = toks[:MAX_TOKENS]
        covered = b"".join(self._piece(t) for t in toks[1:])
        return toks, len(covered), True

    def _logprobs(self, seqs: list[list[int]], want_end: list[bool]
                  ) -> list[tuple[np.ndarray, float | None]]:
        raise NotImplementedError

    def score(self, texts: list[str]) -> list[LMScore | None]:
        """Scores in input order; None for empty texts. Deterministic for a given list."""
        prepared = [self._tokens(t) if t.strip() else None for t in texts]
        order = [i for i, p in enumerate(prepared) if p is not None]
        got = self._logprobs([prepared[i][0] for i in order],
                             [not prepared[i][2] for i in order])
        out: list[LMScore | None] = [None] * len(texts)
        for i, (tok_lp, end_lp) in zip(order, got):
            toks, n_bytes, _ = prepared[i]
            out[i] = LMScore(bits=float(-tok_lp.sum() / LN2), n_bytes=n_bytes,
                             end_bits=None if end_lp is None else -end_lp / LN2,
                             n_tokens=len(toks) - 1)
        return out


class LlamaReferenceLM(ReferenceLM):
    """llama.cpp on the GGUF as it is: texts in input order, as many per decode as fit in
    BATCH_TOKENS / BATCH_SEQS, one sequence id each, so they never attend to each other."""

    engine = "llama-cpp"

    def __init__(self, name_or_path: str, n_threads: int | None = None):
        from llama_cpp import _internals as internals

        super().__init__(name_or_path, vocab_only=False)
        ll = self._ll
        cparams = ll.llama_context_default_params()
        cparams.n_ctx = BATCH_TOKENS
        cparams.n_batch = BATCH_TOKENS
        cparams.n_ubatch = BATCH_TOKENS
        cparams.n_seq_max = BATCH_SEQS
        cparams.kv_unified = True
        cparams.no_perf = True
        threads = n_threads or os.cpu_count() or 1
        cparams.n_threads = threads
        cparams.n_threads_batch = threads
        self.ctx = internals.LlamaContext(model=self.model, params=cparams, verbose=False)
        self.batch = internals.LlamaBatch(n_tokens=BATCH_TOKENS, embd=0, n_seq_max=BATCH_SEQS,
                                          verbose=False)

    def _decode(self, seqs: list[list[int]]) -> np.ndarray:
        """Logits of every position of every sequence (one sequence id each), one decode; a
        view of llama.cpp's buffer (decode_view)."""
        self.ctx.kv_cache_clear()
        return decode_view(self.ctx, self.batch, [(tok, pos, sid, True)
                                                  for sid, toks in enumerate(seqs)
                                                  for pos, tok in enumerate(toks)], self.n_vocab)

    def _logprobs(self, seqs, want_end):
        out = []
        group: list[int] = []

        def flush():
            if not group:
                return
            logits = self._decode([seqs[k] for k in group])
            row = 0
            for k in group:
                toks = seqs[k]
                lg = logits[row:row + len(toks)]
                row += len(toks)
                picked = lg[np.arange(len(toks) - 1), toks[1:]].astype(np.float64)
                ends = lg[-1, self.end_ids].astype(np.float64) if want_end[k] else None
                _, lse = lse_rows(lg)                     # overwrites lg
                end_lp = None
                if ends is not None:
                    m = ends.max()
                    end_lp = float(m + np.log(np.exp(ends - m).sum()) - lse[-1])
                out.append((picked - lse[:-1], end_lp))
            group.clear()

        used = 0
        for k, toks in enumerate(seqs):
            if group and (used + len(toks) > BATCH_TOKENS or len(group) >= BATCH_SEQS):
                flush()
                used = 0
            group.append(k)
            used += len(toks)
        flush()
        return out


def auto_dtype() -> str:
    """bfloat16 where matrix products in it are fast (CUDA; a CPU with AMX-BF16: the reference
    scored 2.1x faster than in float32 here, benchmarks/reference_engines.py), float32
    elsewhere."""
    import torch

    if torch.cuda.is_available():
        return "bfloat16"
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="ignore")
    except OSError:
        return "float32"
    return "bfloat16" if re.search(r"\bamx_bf16\b", flags) else "float32"


class TorchReferenceLM(ReferenceLM):
    """transformers on the same GGUF, dequantized (the tokens are llama.cpp's: same ids, the
    vocabulary is the GGUF's). Texts sorted by length and padded on the right in batches of at
    most BATCH_SEQS texts and BATCH_TOKENS padded tokens; log-softmax in float32, sums in
    float64."""

    def __init__(self, name_or_path: str, dtype: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM

        from ..models import resolve_hf
        from .dequantized import hf_source, quiet_transformers

        super().__init__(name_or_path, vocab_only=True)
        self.dtype = dtype or auto_dtype()
        self.engine = f"torch-{self.dtype}"
        self._torch = torch

        pretrained, gguf = hf_source(*resolve_hf(name_or_path))
        try:   # a metric's helper model loads quietly
            with quiet_transformers():
                self.lm = AutoModelForCausalLM.from_pretrained(
                    pretrained, gguf_file=gguf, dtype=getattr(torch, self.dtype)).eval()
        except (OSError, ValueError) as e:
            raise HarnessError(f"{self.path}: transformers could not load it ({e})") from e
        self.lm.to("cuda" if torch.cuda.is_available() else "cpu")
        self._end = torch.as_tensor(self.end_ids, device=self.lm.device)

    def _logprobs(self, seqs, want_end):
        torch = self._torch
        dev = self.lm.device
        order = sorted(range(len(seqs)), key=lambda k: len(seqs[k]))
        out: list = [None] * len(seqs)
        start = 0
        while start < len(order):
            stop = start + 1       # longest last: a group's padded size is its last length
            while stop < len(order) and stop - start < BATCH_SEQS and \
                    len(seqs[order[stop]]) * (stop - start + 1) <= BATCH_TOKENS:
                stop += 1
            group = order[start:stop]
            width = len(seqs[group[-1]])
            ids = torch.zeros(len(group), width, dtype=torch.long)
            mask = torch.zeros(len(group), width, dtype=torch.long)
            for j, k in enumerate(group):
                ids[j, :len(seqs[k])] = torch.as_tensor(seqs[k])
                mask[j, :len(seqs[k])] = 1
            with torch.inference_mode():
                logits = self.lm(input_ids=ids.to(dev), attention_mask=mask.to(dev)).logits
                for j, k in enumerate(group):
                    n = len(seqs[k])
                    lg = logits[j, :n].float()
                    lse = torch.logsumexp(lg, dim=-1)
                    tgt = torch.as_tensor(seqs[k][1:], device=dev)
                    picked = lg[torch.arange(n - 1, device=dev), tgt] - lse[:-1]
                    end_lp = None
                    if want_end[k]:
                        end_lp = float(torch.logsumexp(lg[-1, self._end], 0) - lse[-1])
                    out[k] = (picked.double().cpu().numpy(), end_lp)
            start = stop
        return out


# engine name -> class; reference_lm() picks one
ENGINES = {"torch": TorchReferenceLM, "llama-cpp": LlamaReferenceLM}


@lru_cache(maxsize=4)
def _load(name_or_path: str, engine: str) -> ReferenceLM:
    return ENGINES[engine](name_or_path)


def reference_lm(name_or_path: str, engine: str | None = None) -> ReferenceLM:
    """Loaded once per process, reference name and engine (the argument, else
    HARNESS_REFERENCE_ENGINE, else DEFAULT_ENGINE)."""
    engine = engine or os.environ.get(ENGINE_ENV) or DEFAULT_ENGINE
    if engine not in ENGINES:
        raise HarnessError(f"reference LM engine {engine!r} (argument or {ENGINE_ENV}): "
                           f"choose from {', '.join(ENGINES)}")
    return _load(name_or_path, engine)
