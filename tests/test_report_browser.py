"""report.html opened in a real headless Chromium (Debian's chromium + chromium-driver, which
`make setup` installs; selenium from the dev extra): no console errors, every image loaded,
the verdict, key-metric and full tables present in that order; the full-page screenshot is
saved with the run (report.png beside report.html)."""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.compare.render import render

import _browser
from _report_runs import make_run


def _check_in_browser(run: Path) -> dict:
    assert _browser.missing() is None, _browser.missing()
    seen = _browser.inspect(run / "report.html", run / "report.png")
    assert seen["console"] == [], seen["console"]
    pngs = sorted(p.stem for p in run.glob("*.png") if p.name != "report.png")
    assert sorted(i["alt"] for i in seen["images"]) == pngs and pngs
    assert all(i["complete"] and i["width"] > 0 for i in seen["images"]), seen["images"]
    h2 = [text for tag, text in seen["headings"] if tag == "h2"]
    assert h2[:3] == ["Verdict", "Key metrics", "product_review"], h2
    key, full = seen["tables"][0], seen["tables"][1]
    assert key[:4] == ["model", "variant", "backend", "n"] and len(key) <= 10
    assert full[:6] == ["model", "variant", "adapter", "backend", "task", "status"]
    assert len(full) > len(key)
    shot = (run / "report.png").read_bytes()
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 10_000
    return seen


def test_report_html_in_headless_chromium(tmp_path):
    """The report of a written run (tests/_report_runs.py): base vs tuned, a failed cell,
    unavailable models, the human reference row, every plot."""
    run = make_run(tmp_path / "run")
    render(run)
    seen = _check_in_browser(run)
    assert "Tuned minus base (paired bootstrap 95% CI, same documents)" in \
        [text for _, text in seen["headings"]]
    assert {"Unavailable models", "Failed cells", "Plots"} <= {t for _, t in seen["headings"]}


@pytest.mark.slow
def test_report_html_of_a_real_compare_run_in_headless_chromium(tmp_path):
    """A real `harness compare`: SmolLM2 base and a (random, untrained) LoRA adapter on
    llama.cpp, 3 demo products, 24-token generations, one unavailable 7B model."""
    from test_compare import make_adapter
    from test_reference_row import _compare   # compare + render, 3 demo products, llama.cpp

    make_adapter(tmp_path / "adapters" / "smollm2-test", seed=1)
    run = _compare(tmp_path / "run", tmp_path / "adapters",
                   "smollm2-135m-instruct,llama2-7b-chat", merged_quant=None)
    _check_in_browser(run)
    md = (run / "report.md").read_text()
    assert "- **tuned** (`smollm2-test`) vs base, llama-cpp, product_review, 3 documents:" in md
    assert md.count("HARNESS_HF_LLAMA2_7B_CHAT=") == 1
