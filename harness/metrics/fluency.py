"""Fluency: bits per byte under a reference LM that is not the model under test, repetition
(distinct-2, repeated 3-gram rate) and flags for degenerate output (empty, cut off
mid-sentence, prompt or JSON echoed back, decoding loop).

The reference LM (harness.backends.reference) is a bundled GGUF run by transformers (default;
bfloat16 on CPUs with AMX) or llama.cpp (HARNESS_REFERENCE_ENGINE=llama-cpp); it is loaded once
per process, reference name and engine (`reference_lm`); each scored text records the engine
(`fluency_engine`).

    bits_per_byte  = -sum(log2 p(token | BOS, earlier tokens)) / UTF-8 bytes of the text
    end_bits       = -log2 p(a sentence ends here): the reference LM's probability that the
                     next token is sentence-final punctuation, a newline or EOS; 0 when the
                     text already ends with terminal punctuation. High when it stops
                     mid-sentence ("... and the").
"""
from __future__ import annotations

import re
from difflib import SequenceMatcher

from ..backends.reference import LMScore, reference_lm
from .text import distinct_n, repeated_ngram_rate, tokens

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
    engine = None
    if reference:
        lm = reference_lm(reference)
        lm_scores, engine = lm.score(texts), lm.engine
    out = []
    for rec, text, lm_score in zip(records, texts, lm_scores):
        prompt = review_prompt(rec["product"]) if rec.get("product") else None
        f = fluency_features(text, lm_score, prompt)
        if lm_score is not None:
            f["fluency_engine"] = engine    # bits differ a little between engines
        out.append(f)
    return out
