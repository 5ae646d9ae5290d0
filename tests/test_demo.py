"""`harness demo`: the README's main command, on one bundled model and one backend to stay
fast (the full demo is timed in README)."""
from __future__ import annotations

import json
import os

import pandas as pd
from _cli import run_cli


def ids(path):
    return {json.loads(line)["id"] for line in path.read_text().splitlines() if line.strip()}


def test_demo_trains_on_some_products_and_scores_base_and_tuned_on_the_others(tmp_path):
    env = dict(os.environ, HARNESS_ADAPTERS_DIR=str(tmp_path / "adapters"))
    out = tmp_path / "demo"
    r = run_cli(["demo", "--output", str(out), "--models", "smollm2-135m-instruct",
                 "--backends", "llama-cpp", "--max-steps", "4", "--limit", "3"], env)
    assert r.returncode == 0, r.stderr[-3000:]
    data = out / "data" / "product_review"
    train, val, test = (ids(data / f"{s}.jsonl") for s in ("train", "validation", "test"))
    assert (len(train), len(val), len(test)) == (12, 4, 8)
    assert not (train & test) and not (train & val) and not (val & test)

    adapter = tmp_path / "adapters" / "smollm2-135m-instruct-product_review-demo"
    info = json.loads((adapter / "training.json").read_text())
    assert info["split_sizes"]["train"] == 12 and len(info["train_loss"]) == 4
    assert info["best_val_loss"] < info["initial_val_loss"]

    df = pd.read_csv(out / "summary.csv")
    llm = df[df["model"] == "smollm2-135m-instruct"].set_index("variant")
    assert set(llm.index) == {"base", "tuned", "tuned-merged-q4_k_m"}
    assert (llm["status"] == "done").all() and (llm["n"] == 3).all()
    scored = {json.loads(line)["doc"]["id"] for line in next(
        (out / "cells").glob("*/samples_product_review.jsonl")).read_text().splitlines()}
    assert scored <= test, "the demo scored products it trained on"
    assert (out / "report.md").exists() and (out / "report.html").exists()
    assert "demo wall time" in r.stdout

    # a second run finds the adapter and every cell: nothing is trained or run again
    r2 = run_cli(["demo", "--output", str(out), "--models", "smollm2-135m-instruct",
                  "--backends", "llama-cpp", "--limit", "3"], env)
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert "training demo adapter" not in r2.stdout
    assert json.loads((adapter / "training.json").read_text()) == info
