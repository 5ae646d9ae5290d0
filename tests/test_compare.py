"""`harness compare`: the grid of cells, unavailable 7B rows, base vs tuned with CIs, the
report files, and resuming an interrupted run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from _cli import run_cli
from _export_models import make_adapter as make_random_adapter, write_training_json

from harness.paths import ROOT

ALL_MODELS = {"smollm2-135m-instruct", "gemma3-270m", "llama2-7b-chat", "mistral-7b-instruct",
              "structlm-7b"}


def make_adapter(dest: Path, seed: int = 0) -> Path:
    """A real PEFT LoRA adapter on SmolLM2 (not trained: seeded random lora_B, so it changes
    outputs), with the training.json that compare uses to find adapters."""
    make_random_adapter("smollm2-135m-instruct", dest, seed, r=4, alpha=8, scale=0.02,
                        targets=["q_proj", "v_proj"])
    write_training_json(dest, "smollm2-135m-instruct", task="product_review", method="lora",
                        note="test adapter, not trained")
    return dest


@pytest.fixture
def env(tmp_path):
    e = dict(os.environ)
    e["HARNESS_ADAPTERS_DIR"] = str(tmp_path / "adapters")
    (tmp_path / "adapters").mkdir()
    return e


def test_compare_all_models_base_only(tmp_path, env):
    out = tmp_path / "run"
    r = run_cli(["compare", "--models", "all", "--limit", "2", "--data", "demo", "--backends",
                 "llama-cpp", "--gen-kwargs", "max_gen_toks=24", "--output", str(out)], env)
    assert r.returncode == 0, r.stderr[-3000:]
    df = pd.read_csv(out / "summary.csv")
    assert set(df["model"]) == ALL_MODELS | {"reference"}   # + the human reference row
    avail = df[(df["status"] == "done") & (df["model"] != "reference")]
    assert set(avail["model"]) == {"smollm2-135m-instruct", "gemma3-270m"}
    un = df[df["status"] == "unavailable"]
    assert set(un["model"]) == {"llama2-7b-chat", "mistral-7b-instruct", "structlm-7b"}
    assert un["reason"].str.contains("HARNESS_HF_").all()
    for col in ("generation_tokens_per_second", "prompt_tokens_per_second",
                "time_to_first_token_s", "peak_rss_mb", "rouge_l"):
        assert avail[col].notna().all() and (avail[col] >= 0).all(), col
    assert (out / "report.md").read_text().count("unavailable") >= 3
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html
    assert len(list(out.glob("*.png"))) >= 2
    # `harness report` re-renders from saved files without a model
    (out / "report.md").unlink()
    r2 = run_cli(["report", str(out)], env, timeout=300)
    assert r2.returncode == 0, r2.stderr[-2000:]
    assert (out / "report.md").exists()


def test_compare_base_vs_tuned_with_ci_and_sample_diffs(tmp_path, env):
    make_adapter(Path(env["HARNESS_ADAPTERS_DIR"]) / "smollm2-test")
    out = tmp_path / "run"
    r = run_cli(["compare", "--models", "smollm2-135m-instruct", "--limit", "4", "--data", "demo",
                 "--backends", "hf", "--gen-kwargs", "max_gen_toks=24", "--output", str(out)], env)
    assert r.returncode == 0, r.stderr[-3000:]
    df = pd.read_csv(out / "summary.csv")
    assert set(df["variant"]) == {"base", "tuned", "human"}
    summary = json.loads((out / "summary.json").read_text())
    comps = [c for c in summary["comparisons"] if c["metric"] == "rouge_l"]
    assert comps and comps[0]["lo"] <= comps[0]["diff"] <= comps[0]["hi"]
    assert comps[0]["n"] == 4
    md = (out / "report.md").read_text()
    assert "Tuned minus base" in md and "95% CI" in md
    assert "Per-sample differences" in md and "base:" in md and "tuned:" in md


def test_compare_resume_reuses_finished_cells(tmp_path, env):
    out = tmp_path / "run"
    args = ["compare", "--models", "smollm2-135m-instruct,gemma3-270m", "--limit", "2",
            "--data", "demo", "--backends", "llama-cpp", "--gen-kwargs", "max_gen_toks=16",
            "--output", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", *args], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 900
    first = None
    while time.time() < deadline and first is None:
        done = list((out / "cells").glob("*/results.json")) if (out / "cells").exists() else []
        first = done[0] if done else None
        time.sleep(0.5)
    assert first is not None, "no cell finished"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = json.loads((out / "run.json").read_text())
    assert state["status"] == "running"
    mtime = first.stat().st_mtime_ns
    # without --resume an unfinished run is refused, not overwritten
    r = run_cli(args, env)
    assert r.returncode == 2 and "--resume" in r.stderr
    r = run_cli(args + ["--resume"], env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert first.stat().st_mtime_ns == mtime, "a finished cell was rerun"
    state = json.loads((out / "run.json").read_text())
    statuses = [c["status"] for c in state["cells"]]
    assert "cached" in statuses and statuses.count("done") + statuses.count("cached") == 3
    assert state["status"] == "finished"


def test_per_sample_output_of_a_ranked_document_names_the_choices():
    """Multiple-choice / ranking samples (lm-eval's loglikelihood layout) show the top choice
    and the gold one's rank, not a bare loglikelihood; generated text stays as it is."""
    from harness.compare.stats import _resp

    ctx = "Which department?\nProduct: Golden Monkey\nDepartment:"
    sample = {"arguments": [[ctx, " alcohol"], [ctx, " snacks"], [ctx, " beverages"]],
              "resps": [[[-4.9, False]], [[-1.2, True]], [[-3.0, False]]],
              "target": 0}
    assert _resp(sample) == ("top choice 'snacks'; gold 'alcohol' ranked 3 of 3 "
                             "(raw loglikelihood)")
    assert _resp({"arguments": [["Write a review", {"until": []}]],
                  "resps": [["Great tea."]], "filtered_resps": ["Great tea."]}) == "Great tea."


def test_merged_quant_option_plans_one_cell_per_export_and_rejects_unknown_ones(tmp_path):
    from harness.compare.plan import plan
    from harness.errors import HarnessError

    adapter = tmp_path / "ad"
    adapter.mkdir()
    (adapter / "training.json").write_text(json.dumps(
        {"base_model": "smollm2-135m-instruct", "task": "product_review"}))
    (adapter / "adapter_model.safetensors").write_bytes(b"")   # planning never reads it

    def variants(merged_quant):
        return [(c.variant, c.backend) for c in plan(
            "smollm2-135m-instruct", ["product_review"], ["llama-cpp", "hf"], tmp_path,
            merged_quant)]
    assert variants("q4_k_m,q8_0") == [
        ("base", "llama-cpp"), ("tuned", "llama-cpp"), ("tuned-merged-q4_k_m", "llama-cpp"),
        ("tuned-merged-q8_0", "llama-cpp"), ("base", "hf"), ("tuned", "hf")]
    assert variants("none") == variants(None) == [
        ("base", "llama-cpp"), ("tuned", "llama-cpp"), ("base", "hf"), ("tuned", "hf")]
    with pytest.raises(HarnessError, match="--merged-quant: unknown quantization 'q5'"):
        variants("q4_k_m,q5")


def test_cell_key_depends_on_gen_kwargs():
    """Cells run with other decoding settings (e.g. anti-loop off) never reuse cached cells."""
    from harness.compare.plan import Cell, cell_key

    c = Cell("smollm2-135m-instruct", "base", "llama-cpp", "product_review")
    plain = cell_key(c, "abc", 5)
    assert cell_key(c, "abc", 5, None) == plain
    off = cell_key(c, "abc", 5, "no_repeat_ngram_generated=0")
    assert off != plain and off != cell_key(c, "abc", 5, "no_repeat_ngram_generated=3")


def test_cell_key_depends_on_batch_size():
    """Batched greedy texts can part from one-at-a-time ones at near-ties, so a run with another
    generation batch never reuses cached cells; a batch_size in model_args is the one used."""
    from harness.compare.plan import DEFAULT_BATCH_SIZE, Cell, cell_batch, cell_key

    c = Cell("smollm2-135m-instruct", "base", "llama-cpp", "product_review")
    assert cell_key(c, "abc", 5, None, 1) == cell_key(c, "abc", 5)
    assert cell_key(c, "abc", 5, None, 8) != cell_key(c, "abc", 5, None, 4)
    assert cell_batch(c, None, DEFAULT_BATCH_SIZE) == DEFAULT_BATCH_SIZE["llama-cpp"]
    assert cell_batch(c, {"llama-cpp": {"batch_size": 2}}, DEFAULT_BATCH_SIZE) == 2
    ref = Cell("reference", "human", "-", "product_review")
    assert cell_key(ref, "abc", 5, None, 8) == cell_key(ref, "abc", 5)


def test_cell_key_depends_on_the_backends_model_args():
    """`--model-args hf:dtype=bfloat16` gives other numbers than the fp32 default: a --resume run
    with it never reuses the fp32 cells; another backend's model_args leave a cell's key alone."""
    from harness.compare.plan import Cell, cell_key

    hf = Cell("smollm2-135m-instruct", "base", "hf", "product_review")
    llama = Cell("smollm2-135m-instruct", "base", "llama-cpp", "product_review")
    bf16 = {"hf": {"dtype": "bfloat16"}}
    assert cell_key(hf, "abc", 5, None, 32, bf16) != cell_key(hf, "abc", 5, None, 32)
    assert cell_key(hf, "abc", 5, None, 32, {}) == cell_key(hf, "abc", 5, None, 32)
    assert cell_key(llama, "abc", 5, None, 8, bf16) == cell_key(llama, "abc", 5, None, 8)
    assert cell_key(hf, "abc", 5, None, 32, {"hf": {"batch_size": 32}}) == \
        cell_key(hf, "abc", 5, None, 32)
