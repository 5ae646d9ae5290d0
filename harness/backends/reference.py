"""The reference LM of the fluency metric: a GGUF that scores texts (the log-probability of
every token) in llama.cpp, the model under test never (harness.metrics.fluency picks it).
Several texts are scored in one decode call (one sequence id each, so they never attend to
each other; the decode itself is llama_scoring.decode_view, the loglikelihood backend's); the
model loads once per process and reference name (`reference_lm`, cached)."""
from __future__ import annotations

import math
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
BATCH_TOKENS = 512        # tokens per decode call (several texts)
BATCH_SEQS = 16


@dataclass
class LMScore:
    bits: float           # total bits of the scored tokens
    n_bytes: int          # UTF-8 bytes those tokens cover
    end_bits: float | None  # None when the text was cut to MAX_TOKENS
    n_tokens: int

    @property
    def bits_per_byte(self) -> float:
        return self.bits / self.n_bytes if self.n_bytes else float("nan")


class ReferenceLM:
    """A GGUF model that scores texts (log-probabilities of every token) with llama.cpp."""

    def __init__(self, name_or_path: str, n_threads: int | None = None):
        import os

        from llama_cpp import _internals as internals
        from llama_cpp import llama_cpp
        from llama_cpp._logger import set_verbose

        set_verbose(False)

        from ..models import resolve_gguf

        path = Path(resolve_gguf(name_or_path))
        check_magic(path)
        self.name = name_or_path
        self.path = path
        self._ll = llama_cpp
        mparams = llama_cpp.llama_model_default_params()
        mparams.n_gpu_layers = 0
        try:
            self.model = internals.LlamaModel(path_model=str(path), params=mparams,
                                              verbose=False)
        except ValueError as e:
            raise HarnessError(f"{path}: llama.cpp could not load it ({e})") from e
        cparams = llama_cpp.llama_context_default_params()
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

    def _decode(self, seqs: list[list[int]]) -> np.ndarray:
        """Logits of every position of every sequence (one sequence id each), one decode; a
        view of llama.cpp's buffer (decode_view)."""
        self.ctx.kv_cache_clear()
        return decode_view(self.ctx, self.batch, [(tok, pos, sid, True)
                                                  for sid, toks in enumerate(seqs)
                                                  for pos, tok in enumerate(toks)], self.n_vocab)

    def score(self, texts: list[str]) -> list[LMScore | None]:
        """Scores in input order; None for empty texts. Deterministic for a given list."""
        prepared = [self._tokens(t) if t.strip() else None for t in texts]
        out: list[LMScore | None] = [None] * len(texts)
        order = [i for i, p in enumerate(prepared) if p is not None]
        group: list[int] = []

        def flush():
            if not group:
                return
            seqs = [prepared[i][0] for i in group]
            logits = self._decode(seqs)
            row = 0
            for i, toks in zip(group, seqs):
                lg = logits[row:row + len(toks)]
                row += len(toks)
                _, n_bytes, truncated = prepared[i]
                picked = lg[np.arange(len(toks) - 1), toks[1:]].astype(np.float64)
                ends = None if truncated else lg[-1, self.end_ids].astype(np.float64)
                _, lse = lse_rows(lg)                     # overwrites lg
                tok_lp = picked - lse[:-1]
                end_lp = None
                if ends is not None:
                    m = ends.max()
                    end_lp = float(m + np.log(np.exp(ends - m).sum()) - lse[-1])
                out[i] = LMScore(bits=float(-tok_lp.sum() / LN2), n_bytes=n_bytes,
                                 end_bits=None if end_lp is None else -end_lp / LN2,
                                 n_tokens=len(toks) - 1)
            group.clear()

        used = 0
        for i in order:
            n = len(prepared[i][0])
            if group and (used + n > BATCH_TOKENS or len(group) >= BATCH_SEQS):
                flush()
                used = 0
            group.append(i)
            used += n
        flush()
        return out


@lru_cache(maxsize=2)
def reference_lm(name_or_path: str) -> ReferenceLM:
    """Loaded once per process and reference name."""
    return ReferenceLM(name_or_path)
