"""One throughput record per run, filled by whichever backend runs the model.

Backends call `METER.add(...)` once per generation request; `harness eval` writes
`METER.summary()` into the results JSON as `throughput`:

    prompt_tokens_per_second     prompt tokens / prefill seconds (time to first token)
    generation_tokens_per_second generated tokens (after the first) / decode seconds
    time_to_first_token_s        mean over requests
    wall_s                       from backend start to summary (model load included)
    peak_rss_mb                  peak resident memory of the process
"""
from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass, field


def peak_rss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024 * 1024) if sys.platform == "darwin" else r / 1024


@dataclass
class Meter:
    started: float = field(default_factory=time.perf_counter)
    requests: int = 0
    prompt_tokens: int = 0
    prefill_s: float = 0.0
    gen_tokens: int = 0
    decode_s: float = 0.0
    ttft_sum: float = 0.0
    load_s: float = 0.0

    def reset(self) -> None:
        self.__init__()

    def add(self, prompt_tokens: int, ttft_s: float, gen_tokens: int, total_s: float,
            requests: int = 1) -> None:
        """One request (or one batch of `requests` run together): prompt tokens, time to first
        token, tokens generated (the first ones included) and the total time."""
        self.requests += requests
        self.prompt_tokens += prompt_tokens
        self.prefill_s += ttft_s
        self.ttft_sum += ttft_s * requests
        if gen_tokens > requests:
            self.gen_tokens += gen_tokens - requests
            self.decode_s += max(total_s - ttft_s, 1e-9)

    def summary(self) -> dict:
        def rate(n, s):
            return round(n / s, 3) if s > 0 and n > 0 else None
        return {
            "prompt_tokens_per_second": rate(self.prompt_tokens, self.prefill_s),
            "generation_tokens_per_second": rate(self.gen_tokens, self.decode_s),
            "time_to_first_token_s": round(self.ttft_sum / self.requests, 4) if self.requests else None,
            "wall_s": round(time.perf_counter() - self.started, 3),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "generated_tokens": self.gen_tokens + self.requests,
            "load_s": round(self.load_s, 3),
        }


METER = Meter()
