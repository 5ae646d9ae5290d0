"""Stock `lm_eval --tasks product_review ...` (no --include_path) works after `make setup`,
which registers tasks/ with the installed lm-eval (harness/evaluate/lm_eval_tasks.py: one `include:`
stub per task YAML in lm-eval's own task folder). Checked in fresh processes started outside
the repository, the way a user runs lm_eval."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.models import OFFLINE_ENV
from harness.evaluate.lm_eval_tasks import include_path, register, registered, stub_dir
from harness.paths import TASKS_DIR
from harness.tasks.records import read_records

ENV = {**os.environ, **OFFLINE_ENV}
OUR_TASKS = {"product_review", "product_department", "product_department_gen", "product_aisle",
             "product_aisle_gen", "product_nextitem", "product_nextitem_gift_cards",
             "product_nextitem_scientific"}


def test_set_up_registered_every_task_file_and_harness_stops_adding_include_path():
    assert registered(), "tasks/ is not registered with lm-eval: run `make setup`"
    stubs = sorted(stub_dir().glob("*.yaml"))
    assert len(stubs) == len(list(TASKS_DIR.glob("*/*.yaml")))
    for s in stubs:   # product_review__product_review.yaml -> tasks/product_review/...
        target = TASKS_DIR.resolve() / s.name.replace("__", "/")
        assert s.read_text().splitlines()[-1] == f"include: {target}" and target.is_file()
    assert register() == stubs   # idempotent: the same files, unchanged
    assert include_path() is None   # lm-eval would otherwise index each task twice


def test_stock_task_manager_lists_and_loads_our_tasks(tmp_path):
    """What `lm_eval --tasks product_review` does before it loads a model: a default
    TaskManager (lm-eval's own task tree, no include_path) indexes and builds the task."""
    code = """if True:
        import json
        from lm_eval.tasks import TaskManager
        tm = TaskManager(metadata={"data": "demo"})
        task = tm.load(["product_review"])["tasks"]["product_review"]
        docs = list(task.test_docs())
        print(json.dumps({"tasks": [t for t in tm.all_tasks if t.startswith("product_")],
                          "yaml": str(tm.task_index["product_review"].yaml_path),
                          "n": len(docs), "prompt": task.doc_to_text(docs[0])}))"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                       env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert OUR_TASKS <= set(out["tasks"])
    assert Path(out["yaml"]).parent == stub_dir()
    assert out["n"] == len(read_records("product_review", "test", "demo"))
    assert out["prompt"].startswith("Write a short customer review")


@pytest.mark.slow
def test_lm_eval_tasks_product_review_verbatim(tmp_path):
    """The design's own words, `lm_eval --tasks product_review`, with stock lm-eval's hf model
    on the bundled SmolLM2 GGUF, one document, from a folder outside the repository."""
    from harness.models import resolve_hf

    pretrained, gguf = resolve_hf("smollm2-135m-instruct")
    cmd = [str(Path(sys.executable).parent / "lm_eval"), "--tasks", "product_review",
           "--model", "hf", "--model_args",
           f"pretrained={pretrained},gguf_file={gguf},dtype=float32", "--limit", "1",
           "--gen_kwargs", "max_gen_toks=16", "--output_path", str(tmp_path / "out")]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=ENV, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    [res_file] = (tmp_path / "out").rglob("results_*.json")
    res = json.loads(res_file.read_text())
    assert res["n-samples"]["product_review"]["effective"] == 1
    assert "rouge_l,none" in res["results"]["product_review"]
