"""report.md / report.html a reader can decide from: a verdict section first (per model, tuned
vs base: which metrics improved or regressed, with CIs, in words), then a key-metric table per
task (at most 10 columns: the task's primary metrics and speed), then the full tables; each
unavailable model's how-to-enable message once; metric directions from the results'
higher_is_better. Rendered from a run directory the test writes (tests/_report_runs.py)."""
from __future__ import annotations

import json

from harness.compare.render import render

from _report_runs import N, make_run


def _section(md: str, heading: str) -> str:
    """The text under a `## ` heading, up to the next one."""
    return md.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]


def _table(text: str) -> tuple[list[str], list[dict]]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    cols = [c.strip() for c in lines[0].strip("|").split("|")]
    return cols, [dict(zip(cols, (c.strip() for c in line.strip("|").split("|"))))
                  for line in lines[2:]]


def _bullet(text: str, start: str) -> str:
    return next(line for line in text.splitlines() if line.lstrip().startswith(start))


def test_report_opens_with_a_verdict_then_key_metrics_then_the_full_table(tmp_path):
    run = make_run(tmp_path / "run")
    render(run)
    md = (run / "report.md").read_text()
    heads = [line for line in md.splitlines() if line.startswith("## ")]
    assert heads[:3] == ["## Verdict", "## Key metrics", "## product_review"], heads

    verdict = _section(md, "## Verdict")
    # SmolLM2 tuned: rouge_l up (primary, better), hallucination_rate up (primary, worse)
    head = _bullet(verdict, "- **tuned**")
    assert head == (f"- **tuned** (`smollm2-test`) vs base, llama-cpp, product_review, {N} "
                    f"documents: **mixed** on the primary metrics.")
    improved = _bullet(verdict, "- improved:")
    assert improved.split(":", 1)[1].strip().startswith("rouge_l ") and "95% CI [+" in improved
    assert "hallucination_rate" in _bullet(verdict, "- regressed:")
    assert "length_words" in _bullet(verdict, "- changed (no better direction):")
    same = _bullet(verdict, "- no significant change:")
    assert "relevance_product (" in same and "95% CI [-" in same
    assert "bits_per_byte (the same on every document)" in same
    assert "40 → 38 generated tokens/s" in _bullet(verdict, "- speed:")
    # gemma3-270m's tuned cell failed: no verdict, said so; the unavailable models once
    gemma = verdict.split("### gemma3-270m", 1)[1]
    assert "no verdict: its tuned cells have no result" in gemma
    assert "Not run: llama2-7b-chat, mistral-7b-instruct" in verdict
    assert "1 cell failed" in verdict

    summary = json.loads((run / "summary.json").read_text())
    [v] = summary["verdicts"]
    assert (v["model"], v["overall"], v["improved"], v["regressed"]) == (
        "smollm2-135m-instruct", "mixed", ["rouge_l"], ["hallucination_rate"])
    assert summary["higher_is_better"]["rouge_l"] is True


def test_key_table_is_short_and_unavailable_models_are_listed_once(tmp_path):
    from rich.console import Console

    run = make_run(tmp_path / "run")
    console = Console(record=True, width=400)
    render(run, console=console)
    term = console.export_text()
    assert term.count("HARNESS_HF_LLAMA2_7B_CHAT=") == 1
    assert "verdict smollm2-135m-instruct tuned vs base, llama-cpp, product_review (n=12): " \
           "mixed; improved rouge_l; regressed hallucination_rate" in term
    md = (run / "report.md").read_text()
    cols, rows = _table(_section(md, "## Key metrics"))
    assert cols == ["model", "variant", "backend", "n", "hallucination_rate ↓",
                    "relevance_product", "rouge_l", "bits_per_byte ↓", "degenerate ↓",
                    "gen t/s"]
    assert [(r["model"], r["variant"]) for r in rows] == [
        ("smollm2-135m-instruct", "base"), ("smollm2-135m-instruct", "tuned"),
        ("gemma3-270m", "base"), ("reference", "human")]   # ran only: no n/a, no failed rows
    tuned = rows[1]
    assert tuned["rouge_l"].startswith("**") and not tuned["hallucination_rate ↓"].startswith("**")
    # full table: every row, unavailable ones without their message; each message once
    full_cols, full = _table(_section(md, "## product_review"))
    assert len(full_cols) > 10
    assert {r["status"] for r in full if r["model"].endswith("7b-chat")} == {"unavailable"}
    for m in ("LLAMA2_7B_CHAT", "MISTRAL_7B_INSTRUCT"):
        assert md.count(f"HARNESS_HF_{m}=") == 1, m
    un = _section(md, "## Unavailable models")
    assert "- `llama2-7b-chat` (llama-cpp, hf): llama2-7b-chat: weights not found" in un
    assert "## Failed cells" in md and "RuntimeError: out of memory" in md
    html = (run / "report.html").read_text()
    assert html.index("id='verdict'") < html.index("id='key-metrics'") < \
        html.index("id='product_review'".replace("_", "-"))


def test_directions_come_from_the_results_higher_is_better(tmp_path):
    """Flip rouge_l and hallucination_rate in the results' higher_is_better: the same numbers
    now read the other way round, in the verdict, the key table's arrows and its bold."""
    run = make_run(tmp_path / "run", hib={"rouge_l": False, "hallucination_rate": True})
    render(run)
    md = (run / "report.md").read_text()
    verdict = _section(md, "## Verdict")
    assert "rouge_l" in _bullet(verdict, "- regressed:")
    assert "hallucination_rate" in _bullet(verdict, "- improved:")
    cols, rows = _table(_section(md, "## Key metrics"))
    assert "rouge_l ↓" in cols and "hallucination_rate" in cols
    assert rows[1]["hallucination_rate"].startswith("**")
    # length_words: lm-eval needs a bool (true in the YAML), but a length has no better way
    assert "length_words" in _bullet(verdict, "- changed (no better direction):")
