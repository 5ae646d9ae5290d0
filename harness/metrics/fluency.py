"""Fluency: bits per byte under a reference LM that is not the model under test, repetition
(distinct-2, repeated 3-gram rate) and flags for degenerate output (empty, cut off
mid-sentence, prompt or JSON echoed back, decoding loop).

The reference LM runs in llama.cpp (llama-cpp-python) over a bundled GGUF. Several texts are
scored in one decode call (one sequence id each, so they never attend to each other); the
model loads once per process (`reference_lm`, cached).

    bits_per_byte  = -sum(log2 p(token | BOS, earlier tokens)) / UTF-8 bytes of the text
    end_bits       = -log2 p(a sentence ends here): the reference LM's probability that the
                     next token is sentence-final punctuation, a newline or EOS; 0 when the
                     text already ends with terminal punctuation. High when it stops
                     mid-sentence ("... and the").
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from difflib import SequenceMatcher
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import HarnessError
from .text import distinct_n, repeated_ngram_rate, tokens

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

        from ..backends.gguf_reader import check_magic
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
        self.ctx.kv_cache_clear()
        self.batch.reset()
        for sid, toks in enumerate(seqs):
            self.batch.add_sequence(toks, sid, True)
        self.ctx.decode(self.batch)
        n = sum(len(s) for s in seqs)
        ptr = self._ll.llama_get_logits(self.ctx.ctx)
        return np.ctypeslib.as_array(ptr, shape=(n, self.n_vocab))

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
                lg = logits[row:row + len(toks)].astype(np.float64)
                row += len(toks)
                mx = lg.max(axis=1, keepdims=True)
                lse = np.log(np.exp(lg - mx).sum(axis=1)) + mx[:, 0]
                tok_lp = lg[np.arange(len(toks) - 1), toks[1:]] - lse[:-1]
                _, n_bytes, truncated = prepared[i]
                end_lp = None
                if not truncated:
                    end_lp = float(np.log(np.exp(lg[-1, self.end_ids] - mx[-1, 0]).sum())
                                   + mx[-1, 0] - lse[-1])
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


# --- degenerate output ---------------------------------------------------------------------
TERMINAL = re.compile(r"[.!?…)\]\"'”’*]\s*$|[\U0001F300-\U0001FAFF\u2600-\u27BF]\s*$")
# A text that stops on one of these words (or a comma, colon, dash) stops mid-sentence.
DANGLING = {"a", "an", "the", "and", "or", "but", "with", "of", "to", "for", "in", "on", "at",
            "by", "from", "is", "are", "was", "were", "be", "it's", "its", "my", "this", "that",
            "very", "so", "as", "than", "which", "who", "if", "because", "while", "also", "not",
            "can", "will", "would", "should", "has", "have", "had", "i", "we", "you", "your",
            "their", "our", "into", "about", "like", "when", "after", "before", "more", "most",
            "really", "quite", "too", "just", "only", "even", "much"}
ECHO_MARKERS = re.compile(r"\{\s*\"|\"\s*:\s*[\[{\"\d]|\"(?:title|brand|category|price|"
                          r"features|details|rating)\"|^\s*product\s*:|write a short customer "
                          r"review|only mention facts", re.I)
# end_bits above this, with no terminal punctuation: the reference LM does not expect the text
# to end here.
CUTOFF_END_BITS = 8.0
LOOP_REPEATED_3GRAM = 0.25


def is_cut_off(text: str, end_bits: float | None) -> bool:
    t = text.rstrip()
    if not t or TERMINAL.search(t):
        return False
    if re.search(r"[,:;\-–(]$", t):
        return True
    words = tokens(t)
    if words and words[-1] in DANGLING:
        return True
    return end_bits is not None and end_bits > CUTOFF_END_BITS


def is_echo(text: str, prompt: str | None) -> bool:
    if ECHO_MARKERS.search(text):
        return True
    if not prompt or len(text) < 30:
        return False
    m = SequenceMatcher(None, text.lower(), prompt.lower(), autojunk=False).find_longest_match(
        0, len(text), 0, len(prompt))
    return m.size >= max(30, 0.6 * len(text.strip()))


def is_loop(text: str) -> bool:
    return repeated_ngram_rate(text, 3) >= LOOP_REPEATED_3GRAM or \
        re.search(r"\b(\w+)(?:\W+\1\b){3,}", text, re.I) is not None


def end_bits_of(text: str, lm: LMScore | None) -> float | None:
    if TERMINAL.search(text.rstrip()):
        return 0.0
    return lm.end_bits if lm is not None else None


def fluency_features(text: str, lm: LMScore | None, prompt: str | None) -> dict:
    empty = not re.search(r"\w", text)
    end = end_bits_of(text, lm) if not empty else None
    flags = {"degenerate_empty": float(empty),
             "degenerate_cutoff": float(not empty and is_cut_off(text, end)),
             "degenerate_echo": float(not empty and is_echo(text, prompt)),
             "degenerate_loop": float(not empty and is_loop(text))}
    out = {"distinct_2": distinct_n(text, 2), "repeated_3gram_rate": repeated_ngram_rate(text, 3),
           "length_words": float(len(tokens(text))),
           "degenerate": float(any(flags.values())), **flags}
    if lm is not None and lm.n_bytes:
        out["bits_per_byte"] = lm.bits_per_byte
        if end is not None:
            out["end_bits"] = end
        out["fluency_score"] = fluency_score(out)
    elif empty:
        out["fluency_score"] = fluency_score(out)
    return out


# fluency_score: one number to rank texts by (higher is better): minus bits per byte, minus
# a repetition penalty (a loop lowers bits per byte), minus a share of the bits it costs the
# reference LM to end a sentence where the text stops, minus a penalty for echoed prompts.
REPETITION_PENALTY = 4.0
END_WEIGHT = 0.1
ECHO_PENALTY = 2.0
EMPTY_SCORE = -10.0


def fluency_score(f: dict) -> float:
    if f.get("degenerate_empty"):
        return EMPTY_SCORE
    return (-f.get("bits_per_byte", 0.0) - REPETITION_PENALTY * f["repeated_3gram_rate"]
            - END_WEIGHT * (f.get("end_bits") or 0.0) - ECHO_PENALTY * f["degenerate_echo"])


def fluency_scorer(records: list[dict], texts: list[str], reference: str | None) -> list[dict]:
    """Per-text fluency dicts; `reference` None skips bits per byte."""
    from ..prompts import review_prompt

    lm_scores: list[LMScore | None] = [None] * len(texts)
    if reference:
        lm_scores = reference_lm(reference).score(texts)
    out = []
    for rec, text, lm in zip(records, texts, lm_scores):
        prompt = review_prompt(rec["product"]) if rec.get("product") else None
        out.append(fluency_features(text, lm, prompt))
    return out
