"""`harness compare` with one loaded model per backend and weights (adapters switched on it)
gives the same texts as loading a model for every cell; every cell records its scoring time
and its own peak RSS."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from test_compare import make_adapter

from harness.compare.plan import CompareConfig, lm_key, plan, run_order
from harness.compare.run import compare
from harness.compare.render import render

MODEL = "smollm2-135m-instruct"


def _texts(run: Path) -> dict:
    """cell key -> the generated texts of its documents, in document order."""
    state = json.loads((run / "run.json").read_text())
    out = {}
    for c in state["cells"]:
        if c["backend"] == "-":
            continue
        rows = [json.loads(line) for line in
                (run / "cells" / c["key"] / f"samples_{c['task']}.jsonl").read_text().splitlines()]
        adapter = Path(c["adapter"]).name if c["adapter"] else ""
        out[c["key"]] = (c["variant"], adapter, c["backend"],
                         [r["filtered_resps"][0] for r in sorted(rows, key=lambda r: r["doc_id"])])
    return out


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    """Two seeded test adapters on SmolLM2 (each changes the outputs, differently)."""
    root = tmp_path_factory.mktemp("adapters")
    make_adapter(root / "a-seed0", seed=0)
    make_adapter(root / "b-seed2", seed=2)
    return root


@pytest.mark.slow   # ~10 min on 2 busy cores; base + 2 tuned cells, twice, 3 documents each
@pytest.mark.parametrize("backend", ["llama-cpp", "hf"])
def test_reused_models_give_the_texts_of_one_load_per_cell(tmp_path, adapters, backend):
    runs = {}
    for reuse in (False, True):
        runs[reuse] = compare(CompareConfig(
            models=MODEL, backends=[backend], limit=3, data="demo",
            gen_kwargs="max_gen_toks=24", merged_quant=None, adapters_dir=str(adapters),
            reuse_models=reuse, output=str(tmp_path / f"run-reuse-{reuse}")))
        render(runs[reuse])

    seq, reused = _texts(runs[False]), _texts(runs[True])
    assert len(seq) == 3 and seq.keys() == reused.keys()   # base + 2 tuned
    for key, (variant, adapter, _, texts) in seq.items():
        assert reused[key][3] == texts, (variant, adapter)
    # the adapters change the outputs, so equal texts mean each cell ran its own adapter
    by_variant = {(v, a): t for v, a, _, t in seq.values()}
    assert by_variant[("tuned", "a-seed0")] != by_variant[("base", "")]
    assert by_variant[("tuned", "b-seed2")] != by_variant[("tuned", "a-seed0")]

    # the model is loaded once with reuse, once per cell without
    for reuse, expected in ((True, 1), (False, 3)):
        loads = json.loads((runs[reuse] / "run.json").read_text())["model_loads"]
        assert len(loads) == expected and {x["key"][0] for x in loads} == {backend}, loads
    state = json.loads((runs[True] / "run.json").read_text())
    loaded = [c for c in state["cells"] if c["backend"] != "-" and c["load_s"] > 0]
    assert [c["variant"] for c in loaded] == ["base"]   # the other cells reused its model

    for run in runs.values():
        df = pd.read_csv(run / "summary.csv")
        rows = df[df["backend"] == backend]
        assert len(rows) == 3 and (rows["status"] == "done").all()
        assert ((rows["metric_s"] > 0) & (rows["metric_s"] < rows["cell_wall_s"])).all()
        assert (rows["cell_peak_rss_mb"] > 100).all()
        state = json.loads((run / "run.json").read_text())
        assert {c["rss_scope"] for c in state["cells"] if c["backend"] == backend} == {"cell"}


def test_cells_of_one_loaded_model_run_together(tmp_path):
    """Two tasks on two backends: the plan interleaves the backends; the run order puts the
    cells of each loaded model together, a model's merged exports after its adapter cells."""
    for name, task in (("ad", "product_review"), ("ad2", "product_department")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "adapter_model.safetensors").write_bytes(b"")   # never read here
        (tmp_path / name / "training.json").write_text(json.dumps({"base_model": MODEL,
                                                                   "task": task}))
    cells = plan(MODEL, ["product_review", "product_department"], ["llama-cpp", "hf"], tmp_path,
                 "q4_k_m")
    order = [(c.backend, c.variant, c.task) for c in run_order(cells)]
    assert order == [
        ("llama-cpp", "base", "product_review"), ("llama-cpp", "tuned", "product_review"),
        ("llama-cpp", "base", "product_department"),
        ("llama-cpp", "tuned", "product_department"),
        ("llama-cpp", "tuned-merged-q4_k_m", "product_review"),
        ("llama-cpp", "tuned-merged-q4_k_m", "product_department"),
        ("hf", "base", "product_review"), ("hf", "tuned", "product_review"),
        ("hf", "base", "product_department"), ("hf", "tuned", "product_department")]
    at: dict = {}
    for i, c in enumerate(run_order(cells)):
        at.setdefault(lm_key(c), []).append(i)
    assert len(at) == 4    # llama.cpp base+tuned, two merged exports, hf base+tuned
    assert all(ix == list(range(ix[0], ix[-1] + 1)) for ix in at.values())


def test_batch_size_option_parses_per_backend_and_rejects_bad_values():
    from harness.compare.plan import DEFAULT_BATCH_SIZE, batch_sizes
    from harness.errors import HarnessError

    assert batch_sizes(None) == DEFAULT_BATCH_SIZE
    assert batch_sizes("1") == {"llama-cpp": 1, "hf": 1, "vllm": 1}
    assert batch_sizes("hf:4") == {**DEFAULT_BATCH_SIZE, "hf": 4}
    with pytest.raises(HarnessError, match="--batch-size 'tpu:4': unknown backend 'tpu'"):
        batch_sizes("tpu:4")
    with pytest.raises(HarnessError, match="expected a positive integer"):
        batch_sizes("hf:0")
