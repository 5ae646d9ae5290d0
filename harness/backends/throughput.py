"""One throughput record per run, filled by whichever backend runs the model.

Backends report each generation request: `METER.add(...)` for requests run one after another
(or one transformers batch), `METER.add_concurrent(...)` for requests decoded side by side
(llama.cpp batching), whose own durations overlap and so are never summed. A backend wraps its
generation phase (e.g. one generate_until call) in `with METER.phase():`. `harness eval` writes
`METER.summary()` into the results JSON as `throughput`:

    prompt_tokens_per_second      prompt tokens / prefill wall seconds
    generation_tokens_per_second  tokens generated after each request's first / wall seconds of
                                  decode steps (all sequences decoded together: the batch rate)
    aggregate_generation_tokens_per_second
                                  all generated tokens / generation_wall_s: end to end, prefill
                                  and overheads included; the figure to compare batch sizes by
    generation_wall_s             wall seconds of the generation phases (requests timed outside
                                  any phase count their own total time)
    time_to_first_token_s         mean over requests of the time from the start of that
                                  request's prefill to its first token (under batching: its
                                  own prefill decode(s), not the time spent waiting for a slot)
    time_to_first_token_max_s     the largest of those
    max_concurrent_requests       the most requests decoded side by side
    wall_s                        from backend start to summary (model load included)
    peak_rss_mb                   peak resident memory of the process
    requests, prompt_tokens, generated_tokens, load_s (model and adapter loading)
    prompt_tokens_reused          prompt tokens not run through the model because the prompts'
                                  shared start was decoded once and copied to each sequence
                                  (llama.cpp batching); prompt_tokens counts them, so
                                  prompt_tokens_per_second is the effective rate

Loglikelihood ranking (multiple-choice documents; only when there were any):
    loglikelihood_docs            documents (one shared context, several continuations)
    loglikelihood_tokens_per_doc  tokens run through the model per document (the shared
                                  context once, each continuation after it from its KV state)
    loglikelihood_naive_tokens_per_doc
                                  what scoring each (context, continuation) pair on its own
                                  would run: every continuation's full text
"""
from __future__ import annotations

import resource
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field


def peak_rss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024 * 1024) if sys.platform == "darwin" else r / 1024


@dataclass
class Meter:
    started: float = field(default_factory=time.perf_counter)
    requests: int = 0
    prompt_tokens: int = 0
    prefill_s: float = 0.0        # wall seconds of prefill
    gen_tokens: int = 0           # generated tokens after each request's first
    decode_s: float = 0.0         # wall seconds of decode steps
    ttft_sum: float = 0.0
    ttft_max: float = 0.0
    load_s: float = 0.0
    phase_s: float = 0.0          # wall seconds inside phase()
    unphased_s: float = 0.0       # total time of add()ed requests timed outside any phase
    max_concurrent: int = 0
    ll_docs: int = 0              # loglikelihood documents (shared-context groups)
    ll_tokens: int = 0            # tokens run through the model for them
    ll_naive_tokens: int = 0      # tokens the pair-by-pair path would run
    prompt_tokens_reused: int = 0  # shared prompt prefix: decoded once, copied to the others
    _depth: int = 0

    def reset(self) -> None:
        self.__init__()

    def add(self, prompt_tokens: int, ttft_s: float, gen_tokens: int, total_s: float,
            requests: int = 1) -> None:
        """One request (or one batch of `requests` run together): prompt tokens, time to first
        token, tokens generated (the first ones included) and the total time."""
        self._count(prompt_tokens, [ttft_s] * requests, gen_tokens)
        self.max_concurrent = max(self.max_concurrent, requests)
        self.prefill_s += ttft_s
        if gen_tokens > requests:
            self.decode_s += max(total_s - ttft_s, 1e-9)
        if not self._depth:
            self.unphased_s += total_s

    def add_concurrent(self, prompt_tokens: int, ttfts: list[float], gen_tokens: int,
                       prefill_s: float, decode_s: float, concurrent: int) -> None:
        """Requests decoded side by side: their prompt tokens, each one's time to first token,
        all tokens generated (first ones included), the wall seconds spent in prefill decodes
        and in decode steps (each second counted once), and how many ran at most together."""
        self._count(prompt_tokens, ttfts, gen_tokens)
        self.max_concurrent = max(self.max_concurrent, concurrent)
        self.prefill_s += prefill_s
        self.decode_s += decode_s
        if not self._depth:
            self.unphased_s += prefill_s + decode_s

    def add_ranking(self, docs: int, tokens: int, naive_tokens: int) -> None:
        """Loglikelihood documents scored, the tokens run through the model for them, and the
        tokens scoring each (context, continuation) pair on its own would have run."""
        self.ll_docs += docs
        self.ll_tokens += tokens
        self.ll_naive_tokens += naive_tokens

    def _count(self, prompt_tokens: int, ttfts: list[float], gen_tokens: int) -> None:
        self.requests += len(ttfts)
        self.prompt_tokens += prompt_tokens
        self.ttft_sum += sum(ttfts)
        self.ttft_max = max([self.ttft_max, *ttfts])
        self.gen_tokens += max(gen_tokens - len(ttfts), 0)

    @contextmanager
    def phase(self):
        """Time a generation phase (nested phases count once)."""
        self._depth += 1
        t0 = time.perf_counter()
        try:
            yield self
        finally:
            self._depth -= 1
            if not self._depth:
                self.phase_s += time.perf_counter() - t0

    def summary(self) -> dict:
        def rate(n, s):
            return round(n / s, 3) if s > 0 and n > 0 else None
        generated = self.gen_tokens + self.requests
        gen_wall = self.phase_s + self.unphased_s
        return {
            "prompt_tokens_per_second": rate(self.prompt_tokens, self.prefill_s),
            "generation_tokens_per_second": rate(self.gen_tokens, self.decode_s),
            "aggregate_generation_tokens_per_second": rate(generated if self.requests else 0,
                                                           gen_wall),
            "generation_wall_s": round(gen_wall, 3),
            "time_to_first_token_s": round(self.ttft_sum / self.requests, 4) if self.requests else None,
            "time_to_first_token_max_s": round(self.ttft_max, 4) if self.requests else None,
            "max_concurrent_requests": self.max_concurrent,
            "wall_s": round(time.perf_counter() - self.started, 3),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "generated_tokens": generated,
            "load_s": round(self.load_s, 3),
            "prompt_tokens_reused": self.prompt_tokens_reused,
            **({"loglikelihood_docs": self.ll_docs,
                "loglikelihood_tokens_per_doc": round(self.ll_tokens / self.ll_docs, 1),
                "loglikelihood_naive_tokens_per_doc": round(self.ll_naive_tokens / self.ll_docs,
                                                            1)} if self.ll_docs else {}),
        }


METER = Meter()
