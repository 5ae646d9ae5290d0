"""The human reference row of `harness compare`: the test products' reference reviews scored
as one more cell (model=reference, variant=human, backend "-"), shown in every report file,
and tuned models placed toward / away from it."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from harness.metrics import REFERENCE_BASED, score_review
from harness.tasks.review import register_task_data
from harness.metrics.config import DEFAULT_REFERENCE, reference_for

HALLUCINATION = ("hallucination_rate", "contradiction", "claims_found", "unsupported",
                 "contradicted", "hallucination_claims")
FILLED = ("hallucination_rate", "contradiction", "bits_per_byte", "fluency_score", "distinct_2",
          "length_words", "attribute_coverage", "relevance_product", "degenerate")
SHIFT_METRICS = ("bits_per_byte", "fluency_score", "distinct_2", "length_words",
                 "attribute_coverage")


def _compare(out: Path, adapters: Path, models: str, **kw) -> Path:
    """`harness compare` + `harness report` through the Python API, 3 demo products on
    llama.cpp, short generations, adapters only from `adapters`."""
    from harness.compare.plan import CompareConfig
    from harness.compare.run import compare
    from harness.compare.render import render

    adapters.mkdir(exist_ok=True)
    run = compare(CompareConfig(models=models, tasks=["product_review"],
                                backends=["llama-cpp"], limit=3, data="demo",
                                gen_kwargs="max_gen_toks=24", output=str(out),
                                adapters_dir=str(adapters), **kw))
    render(run)
    return run


def _md_table(md: str, task: str) -> list[dict]:
    """The rows of a task's main table in report.md, as dicts of the cell strings."""
    lines = md.split(f"## {task}\n", 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| model |"))
    cols = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(cols, (c.strip() for c in line.strip("|").split("|")))))
    return rows


def _samples(run: Path, model: str) -> list[dict]:
    state = json.loads((run / "run.json").read_text())
    key = next(c["key"] for c in state["cells"] if c["model"] == model)
    return [json.loads(line) for line in
            (run / "cells" / key / "samples_product_review.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def gemma_run(tmp_path_factory):
    """gemma3-270m base on llama.cpp: its fluency reference LM is SmolLM2, so the reference
    row, scored after it in the same process, must switch back to the default reference LM."""
    tmp = tmp_path_factory.mktemp("refrow")
    return _compare(tmp / "run", tmp / "adapters", "gemma3-270m"), tmp


def test_reference_row_in_every_report_file(gemma_run):
    out, _ = gemma_run
    df = pd.read_csv(out / "summary.csv", keep_default_na=False, na_values=[""])
    ref = df[df["model"] == "reference"]
    assert len(ref) == 1
    ref = ref.iloc[0]
    assert (ref["variant"], ref["backend"], ref["status"], ref["n"]) == ("human", "-", "done", 3)
    for k in REFERENCE_BASED:                     # a text against its own reference: empty
        assert math.isnan(ref[k]), k
    for k in FILLED:
        assert not math.isnan(ref[k]), k
    gemma = df[df["model"] == "gemma3-270m"].iloc[0]
    for k in REFERENCE_BASED:                     # the model row has them, PARENT included
        assert not math.isnan(gemma[k]), k

    summary = json.loads((out / "summary.json").read_text())
    row = next(r for r in summary["rows"] if r["model"] == "reference")
    assert row["variant"] == "human" and not any(k in row for k in REFERENCE_BASED)

    md = (out / "report.md").read_text()
    table = {r["model"]: r for r in _md_table(md, "product_review")}
    assert table["reference"]["variant"] == "human" and table["reference"]["backend"] == "-"
    for k in REFERENCE_BASED:
        assert table["reference"][k] == "" and table["gemma3-270m"][k] != "", k
    for k in FILLED:
        assert table["reference"][k] != "", k
    assert "human reference reviews" in md
    html = (out / "report.html").read_text()
    assert "<td>reference</td><td>human</td>" in html.replace("\n", "")


def test_reference_row_scores_the_references_like_score_review(gemma_run):
    """Per sample: the hallucination figures are those of score_review(record, reference); the
    text is the reference review; bits per byte is under the default reference LM although
    the model before it in the process was Gemma (whose reference LM is SmolLM2)."""
    out, _ = gemma_run
    register_task_data("demo")            # the catalogue (brand lexicon) the run scored with
    samples = _samples(out, "reference")
    assert [s["doc_id"] for s in samples] == [0, 1, 2]
    gemma = _samples(out, "gemma3-270m")
    assert [s["doc"]["id"] for s in samples] == [s["doc"]["id"] for s in gemma]
    for s in samples:
        record = json.loads(s["doc"]["record"])
        assert s["filtered_resps"] == [record["review"].strip()]
        expected = score_review(record, record["review"].strip())
        assert {k: s[k] for k in HALLUCINATION} == {k: expected[k] for k in HALLUCINATION}
        assert all(s[k] is None for k in REFERENCE_BASED)
        assert s["fluency_reference"] == DEFAULT_REFERENCE
    assert gemma[0]["fluency_reference"] == reference_for("gemma3-270m") != DEFAULT_REFERENCE


def test_reference_row_is_cached_on_resume_and_only_for_review_tasks(gemma_run):
    from harness.compare.plan import reference_cells

    out, tmp = gemma_run
    state = json.loads((out / "run.json").read_text())
    key = next(c["key"] for c in state["cells"] if c["model"] == "reference")
    res = out / "cells" / key / "results.json"
    mtime = res.stat().st_mtime_ns
    _compare(out, tmp / "adapters", "gemma3-270m", resume=True)
    assert res.stat().st_mtime_ns == mtime, "the reference cell was rescored"
    state = json.loads((out / "run.json").read_text())
    assert {c["model"]: c["status"] for c in state["cells"]} == {
        "gemma3-270m": "cached", "reference": "cached"}
    assert [(c.model, c.variant, c.backend, c.task) for c in reference_cells(
        ["product_department", "product_review", "product_nextitem"])] == [
        ("reference", "human", "-", "product_review")]


@pytest.mark.slow
def test_tuned_model_moves_toward_or_away_from_the_reference(tmp_path):
    """SmolLM2 base and a (random, untrained) LoRA adapter on llama.cpp: the report says for
    each fluency, length and coverage metric whether tuned is nearer the reference row's mean
    than base, consistent with the means in summary.csv."""
    from test_compare import make_adapter

    make_adapter(tmp_path / "adapters" / "smollm2-test", seed=1)
    out = _compare(tmp_path / "run", tmp_path / "adapters", "smollm2-135m-instruct",
                   merged_quant=None)
    df = pd.read_csv(out / "summary.csv").set_index("variant")
    assert set(df.index) == {"base", "tuned", "human"}
    shifts = json.loads((out / "summary.json").read_text())["reference_shift"]
    assert sorted(s["metric"] for s in shifts) == sorted(SHIFT_METRICS)
    md = (out / "report.md").read_text()
    assert "### Toward or away from the human reference" in md
    section = md.split("### Toward or away from the human reference", 1)[1].split("###")[0]
    for s in shifts:
        ref, base, tuned = (df.loc[v, s["metric"]] for v in ("human", "base", "tuned"))
        assert (s["reference"], s["base"], s["tuned"]) == pytest.approx((ref, base, tuned))
        want = "toward" if abs(tuned - ref) < abs(base - ref) else \
            "away from" if abs(tuned - ref) > abs(base - ref) else "unchanged"
        assert s["moved"] == want, s
        line = next(line for line in section.splitlines()
                    if line.startswith(f"| smollm2-135m-instruct | tuned | llama-cpp | "
                                       f"{s['metric']} |"))
        assert (f"{want} the human reference" if want != "unchanged" else "unchanged") in line
