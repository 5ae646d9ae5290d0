"""Data-parallel lm-eval on CPU: `accelerate launch --multi_gpu --num_processes 2 -m harness.cli
eval --model hf ...` (torchrun, gloo) splits the demo documents over the two processes (rank 0
runs 2 of 3, rank 1 the third plus lm-eval's padding request) and rank 0 writes the results:
the same samples and the same metrics as one process. The model is a tiny random Llama (hidden
64, 2 layers) with SmolLM2's real tokenizer in HF format, so the test spends its time on the
two launches, not on loading 135M weights from GGUF; the scorers (fluency reference LM,
sentence embeddings) are the real ones."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from _train_models import build_tiny

ROOT = Path(__file__).resolve().parents[1]
# float metrics: the sentence-embedding scorer embeds each process's texts as one batch, so a
# cosine can move in the 7th digit (measured 6e-8 relative on relevance_reference)
REL = 1e-5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _eval_args(model: Path, out: Path) -> list[str]:
    return ["-m", "harness.cli", "eval", "--model", "hf", "--model_args",
            f"pretrained={model}", "--tasks", "product_review", "--limit", "3",
            "--metadata", '{"data": "demo"}', "--gen_kwargs", "max_gen_toks=12",
            "--batch_size", "1", "--apply_chat_template", "--output_path", str(out),
            "--log_samples"]


def _read(out: Path) -> tuple[dict, list[dict]]:
    results = json.loads(next(out.rglob("results_*.json")).read_text())
    samples = [json.loads(x) for x in next(out.rglob("samples_*.jsonl")).read_text()
               .splitlines()]
    return results, samples


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from transformers import AutoTokenizer

    from harness.models import resolve_hf

    root = tmp_path_factory.mktemp("dp")
    pretrained, gguf = resolve_hf("smollm2-135m-instruct")
    model = build_tiny(root / "llama", "llama",
                       AutoTokenizer.from_pretrained(pretrained, gguf_file=gguf))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, *_eval_args(model, root / "one")], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
         "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
         "--main_process_port", str(_free_port()), *_eval_args(model, root / "two")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    return _read(root / "one"), _read(root / "two")


def test_two_processes_split_the_documents(runs):
    (r1, s1), (r2, s2) = runs
    # rank 0's own share: 2 of the 3 documents (the throughput record is rank 0's)
    assert r1["throughput"]["requests"] == 3 and r2["throughput"]["requests"] == 2
    assert r1["n-samples"] == r2["n-samples"]
    assert sorted(s["doc_id"] for s in s2) == [s["doc_id"] for s in s1] == [0, 1, 2]
    assert [s["doc_id"] for s in s2] == [0, 2, 1]    # rank 0's, then rank 1's, gathered


def test_two_processes_give_the_one_process_metrics(runs):
    (r1, s1), (r2, s2) = runs
    by_doc = {s["doc_id"]: s for s in s2}
    for a in s1:   # greedy texts and every per-document metric
        b = by_doc[a["doc_id"]]
        assert a["filtered_resps"] == b["filtered_resps"], a["doc_id"]
        assert a["metrics"] == b["metrics"]
        for m in a["metrics"]:
            assert b[m] == pytest.approx(a[m], rel=REL, abs=1e-9) \
                if isinstance(a[m], float) else b[m] == a[m], (a["doc_id"], m)
    m1, m2 = r1["results"]["product_review"], r2["results"]["product_review"]
    assert set(m1) == set(m2) and len(m1) > 20
    for k, v in m1.items():
        if isinstance(v, float):
            assert m2[k] == pytest.approx(v, rel=REL, abs=1e-9), k
        else:
            assert m2[k] == v, k
