"""A compare run directory written directly (run.json, cells/<key>/results.json and samples),
in the format harness.compare saves, with per-document values chosen by the test: the report
renders from saved files only, so this exercises every report path in a second, without a
model. The run: SmolLM2 base and tuned on llama-cpp (12 documents), gemma3-270m base only,
two 7B models unavailable on both backends, one failed cell and the human reference row."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TASK = "product_review"
N = 12
# As lm-eval writes them from tasks/product_review/product_review.yaml (a subset).
HIGHER_IS_BETTER = {"hallucination_rate": False, "relevance_product": True, "rouge_l": True,
                    "bits_per_byte": False, "degenerate": False, "length_words": True,
                    "distinct_2": True}
REASON = ("{m}: weights not found. Provide them with HARNESS_HF_{M}=/path/to/hf-model-dir "
          "(transformers) and/or HARNESS_GGUF_{M}=/path/to/model.gguf (llama.cpp)")


def _values(seed: int, **shift) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = {"hallucination_rate": rng.uniform(0.1, 0.3, N), "relevance_product":
            rng.uniform(0.4, 0.6, N), "rouge_l": rng.uniform(0.1, 0.2, N),
            "bits_per_byte": rng.uniform(1.4, 1.6, N), "degenerate": np.zeros(N),
            "length_words": rng.uniform(20, 30, N), "distinct_2": rng.uniform(0.8, 0.9, N)}
    return {k: v + shift.get(k, 0.0) for k, v in base.items()}


def _cell(run: Path, key: str, meta: dict, values: dict | None, hib: dict, gen_tps=None):
    cell = {"key": key, "task": TASK, "adapter": None, "reason": "", "wall_s": None,
            "metric_s": None, "cell_peak_rss_mb": None, **meta}
    if values is None:
        return cell
    d = run / "cells" / key
    d.mkdir(parents=True)
    with (d / f"samples_{TASK}.jsonl").open("w") as f:
        for i in range(N):
            rec = {"id": f"demo:{i:03d}", "product": {"title": f"Product {i}"}}
            f.write(json.dumps({"doc_id": i, "doc": {"id": rec["id"], "record": json.dumps(rec)},
                                "resps": [[f"review {i} by {key}"]],
                                "filtered_resps": [f"review {i} by {key}"],
                                **{m: float(v[i]) for m, v in values.items()}}) + "\n")
    res = {"results": {TASK: {f"{m},none": float(np.mean(v)) for m, v in values.items()}},
           "higher_is_better": {TASK: {m: hib[m] for m in values}},
           "throughput": {"generation_tokens_per_second": gen_tps,
                          "prompt_tokens_per_second": 10 * gen_tps, "time_to_first_token_s": 0.5,
                          "wall_s": 20.0, "peak_rss_mb": 900.0} if gen_tps else {},
           "harness_cell": {"wall_s": 21.0, "metric_s": 1.0, "cell_peak_rss_mb": 900.0}}
    (d / "results.json").write_text(json.dumps(res))
    cell["wall_s"] = 21.0
    return cell


def make_run(run: Path, hib: dict | None = None) -> Path:
    """The run described above; `hib` overrides the results' higher_is_better."""
    hib = {**HIGHER_IS_BETTER, **(hib or {})}
    run.mkdir(parents=True)
    llm = {"variant": "base", "backend": "llama-cpp", "status": "done"}
    cells = [
        _cell(run, "smol-base", {**llm, "model": "smollm2-135m-instruct"}, _values(0), hib, 40.0),
        # tuned: rouge_l up, hallucination up, longer; relevance the same up to noise
        _cell(run, "smol-tuned", {**llm, "model": "smollm2-135m-instruct", "variant": "tuned",
                                  "adapter": "/adapters/smollm2-test"},
              _values(0, rouge_l=0.1, hallucination_rate=0.2, length_words=15.0) | {
                  "relevance_product": _values(0)["relevance_product"]
                  + np.random.default_rng(9).normal(0, 0.01, N)}, hib, 38.0),
        _cell(run, "gemma-base", {**llm, "model": "gemma3-270m"}, _values(1), hib, 20.0),
        _cell(run, "gemma-tuned-hf", {**llm, "model": "gemma3-270m", "variant": "tuned",
                                      "backend": "hf", "adapter": "/adapters/gemma-test",
                                      "status": "failed",
                                      "reason": "RuntimeError: out of memory"}, None, hib),
        _cell(run, "reference", {**llm, "model": "reference", "variant": "human",
                                 "backend": "-"}, _values(2), hib),
    ]
    for m in ("llama2-7b-chat", "mistral-7b-instruct"):
        for backend in ("llama-cpp", "hf"):
            cells.append(_cell(run, f"{m}-{backend}", {
                **llm, "model": m, "backend": backend, "status": "unavailable",
                "reason": REASON.format(m=m, M=m.upper().replace("-", "_"))}, None, hib))
    (run / "run.json").write_text(json.dumps({
        "config": {"models": "all", "tasks": [TASK], "backends": ["llama-cpp", "hf"],
                   "limit": N, "data": "demo"},
        "status": "finished", "started": 0, "wall_s": 60.0, "cells": cells}))
    return run
