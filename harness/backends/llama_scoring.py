"""Loglikelihoods of many continuations of one context in a few llama.cpp decodes.

A multiple-choice document asks for the loglikelihood of every choice after the same context.
One request at a time costs a decode per choice (and under CPU contention the fixed cost of a
decode dominates: 20 department names were 20 decodes of 1-3 tokens). Here the context is
decoded once into sequence 0 of a unified KV cache, tagged as the prefix of sequences 1..k
(llama_memory_seq_cp: no recompute), and every continuation goes through in one batch on its
own sequence. The last token of a continuation is scored, never fed, so one-token choices cost
nothing beyond the context.

    scorer = GroupScorer(llm, n_ctx=2048)
    scorer.score(context_tokens, [cont_tokens, ...]) -> [(loglikelihood, is_greedy), ...]
"""
from __future__ import annotations

import ctypes

import numpy as np

MAX_SEQS = 64          # sequences side by side in the KV cache (seq 0 holds the context)


def lse_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row max, log-sum-exp in float64) of each row of float32 logits. `rows` is scratch
    (overwritten): exp in float32 after subtracting the row max, sums in float64. A nextitem
    document has ~530 rows of the full vocabulary and the fluency reference (gemma3-270m)
    a 262k-wide row per token: float64 copies of them cost more than llama_decode did (issue
    #12). tests/test_llama_loglikelihood.py checks the values against a float64 path."""
    top = rows.max(axis=1)
    rows -= top[:, None]
    np.exp(rows, out=rows)
    return top, top.astype(np.float64) + np.log(rows.sum(axis=1, dtype=np.float64))


def _logprob_rows(rows: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log p(target) and whether target is the argmax, for each row of float32 logits; `rows`
    is scratch (lse_rows)."""
    picked = rows[np.arange(len(targets)), targets].astype(np.float64)
    top, lse = lse_rows(rows)
    return picked - lse, picked >= top


def set_lora(ctx, adapter=None, scale: float = 1.0) -> None:
    """Put one LoRA adapter (from llama_adapter_lora_init) on a llama_context, or none."""
    import llama_cpp

    if adapter is None:
        rc = llama_cpp.llama_set_adapters_lora(ctx, None, 0, None)
    else:
        rc = llama_cpp.llama_set_adapters_lora(
            ctx, (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter), 1,
            (ctypes.c_float * 1)(scale))
    if rc:
        raise RuntimeError("llama.cpp could not set the LoRA adapter on a context")


def decode_view(ctx, batch, items: list[tuple[int, int, int, bool]], n_vocab: int) -> np.ndarray:
    """One llama_decode of items (token, position, sequence, want logits) on an
    internals.LlamaContext with an internals.LlamaBatch; returns the wanted logit rows, in item
    order, as a view of llama.cpp's own output buffer: no copy (copying ~530 rows of 49k or
    262k floats cost as much as the decode), valid until the next decode on ctx, and free to be
    overwritten (lse_rows uses it as scratch)."""
    import llama_cpp

    b = batch.batch
    b.n_tokens = len(items)
    n_out = 0
    for i, (tok, pos, seq, logits) in enumerate(items):
        b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = tok, pos, 1, logits
        b.seq_id[i][0] = seq
        n_out += bool(logits)
    ctx.decode(batch)
    if not n_out:
        return np.empty((0, n_vocab), dtype=np.float32)
    # llama_get_logits: the output rows of the last decode, in batch order (llama.h)
    return np.ctypeslib.as_array(llama_cpp.llama_get_logits(ctx.ctx), shape=(n_out, n_vocab))


def decode_rows(ctx, batch, items: list[tuple[int, int, int, bool]], n_vocab: int) -> np.ndarray:
    """decode_view, copied (the rows outlive the next decode)."""
    return decode_view(ctx, batch, items, n_vocab).copy()


class GroupScorer:
    def __init__(self, llm, n_ctx: int, n_batch: int = 512, lora_adapter=None,
                 lora_scale: float = 1.0):
        import llama_cpp
        from llama_cpp import _internals as internals

        self._lc = llama_cpp
        params = llama_cpp.llama_context_params.from_buffer_copy(llm.context_params)
        params.n_ctx = n_ctx
        params.n_batch = params.n_ubatch = n_batch
        params.n_seq_max = MAX_SEQS
        params.kv_unified = True
        self.ctx = internals.LlamaContext(model=llm._model, params=params, verbose=False)
        if lora_adapter is not None:
            set_lora(self.ctx.ctx, lora_adapter, lora_scale)
        self.batch = internals.LlamaBatch(n_tokens=n_batch, embd=0, n_seq_max=MAX_SEQS,
                                          verbose=False)
        self.mem = llama_cpp.llama_get_memory(self.ctx.ctx)
        self.n_ctx, self.n_batch, self.n_vocab = n_ctx, n_batch, llm.n_vocab()
        self.decodes = 0   # llama_decode calls so far (tests and profiling read it)

    def set_adapter(self, adapter=None, scale: float = 1.0) -> None:
        set_lora(self.ctx.ctx, adapter, scale)

    def fits(self, context: list[int], conts: list[list[int]]) -> bool:
        return len(context) + max(len(c) for c in conts) - 1 <= self.n_ctx

    def _decode(self, items: list[tuple[int, int, int, bool]]) -> np.ndarray:
        """items: (token, position, sequence, want logits); returns the wanted logit rows (a
        view, valid until the next decode)."""
        self.decodes += 1
        return decode_view(self.ctx, self.batch, items, self.n_vocab)

    def _chunks(self, items: list[tuple[int, int, int, bool]]):
        for i in range(0, len(items), self.n_batch):
            yield self._decode(items[i:i + self.n_batch])

    def _last_row(self, items: list[tuple[int, int, int, bool]]) -> np.ndarray:
        """Decode items (a context whose last token wants logits); a copy of that row."""
        for rows in self._chunks(items):
            pass
        return rows[-1:].copy()

    def _logprobs(self, items: list[tuple[int, int, int, bool]],
                  targets: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Decode items (every one wants logits): log p(target) and is-argmax per item, computed
        on each decode's own output buffer."""
        lps, oks, at = [], [], 0
        for rows in self._chunks(items):
            lp, ok = _logprob_rows(rows, np.asarray(targets[at:at + len(rows)]))
            lps.append(lp)
            oks.append(ok)
            at += len(rows)
        return np.concatenate(lps), np.concatenate(oks)

    def score(self, context: list[int], conts: list[list[int]]) -> list[tuple[float, bool]]:
        lc, L = self._lc, len(context)
        lc.llama_memory_clear(self.mem, True)
        items = [(t, p, 0, p == L - 1) for p, t in enumerate(context)]
        last = self._last_row(items)                        # predicts every first token
        first_lp, first_ok = _logprob_rows(np.repeat(last, len(conts), axis=0),
                                           np.array([c[0] for c in conts]))   # (a copy)
        results: list[tuple[float, bool]] = [(float(a), bool(b))
                                             for a, b in zip(first_lp, first_ok)]
        pending = [i for i, c in enumerate(conts) if len(c) > 1]
        while pending:
            take, cells = [], 0
            for i in pending:   # as many continuations as the cache and the sequences allow
                if len(take) == MAX_SEQS - 1 or cells + len(conts[i]) - 1 > self.n_ctx - L:
                    break
                take.append(i)
                cells += len(conts[i]) - 1
            items, targets = [], []
            for seq, i in enumerate(take, 1):
                lc.llama_memory_seq_cp(self.mem, 0, seq, 0, L)
                c = conts[i]
                items += [(t, L + j, seq, True) for j, t in enumerate(c[:-1])]
                targets += c[1:]
            lp, ok = self._logprobs(items, targets)
            at = 0
            for i in take:
                n = len(conts[i]) - 1
                ll, greedy = results[i]
                results[i] = (ll + float(lp[at:at + n].sum()), greedy and bool(ok[at:at + n].all()))
                at += n
            for seq in range(1, len(take) + 1):
                lc.llama_memory_seq_rm(self.mem, seq, -1, -1)
            pending = pending[len(take):]
        return results
