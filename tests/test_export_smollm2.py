"""GGUF export of a LoRA adapter on the real SmolLM2-135M-Instruct (the bundled Q4_1 GGUF,
loaded by transformers), run offline with llama.cpp: gguf-lora on the bundled base, merged F16 /
Q8_0 / Q4_K_M, parity with transformers on real product_review prompts, `harness generate`.

Prompts: the prepared test split when data/prepared exists, else the hand-written demo set.
The adapter is a PEFT LoRA with random non-zero lora_B (the trainer's adapters are made the
same way by PEFT; only their values differ)."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from _export_models import make_adapter, write_training_json
from harness.cli import app
from harness.export.to_gguf import Candidate, export, greedy_reviews, load_model, resolve_base
from harness.export.to_gguf import review_prompts
from harness.models import resolve_gguf

NAME = "smollm2-135m-instruct"
N_PROMPTS, N_TOKENS = 3, 12
THREADS = 1  # llama.cpp's spinning threads slow down badly when other processes share the cores


@pytest.fixture(scope="module")
def smol(tmp_path_factory):
    """(adapter dir, merged transformers model, LoRA export, merged export), both --verify'd."""
    root = tmp_path_factory.mktemp("smollm2-export")
    model = load_model(resolve_base(NAME))
    adapter, merged = make_adapter(model, root / "smol-lora", scale=0.02, merge=True,
                                   seed=1)  # arbitrary: the tests hold for any adapter
    write_training_json(adapter, NAME)
    verify = dict(verify_prompts=N_PROMPTS, verify_tokens=N_TOKENS, threads=THREADS)
    lora = export(adapter, "gguf-lora", model=merged, **verify)
    full = export(adapter, "gguf", ["f16", "q4_k_m"], model=merged, **verify)
    return adapter, merged, lora, full


def test_exports_land_next_to_the_adapter(smol):
    adapter, _, lora, full = smol
    assert lora.files["lora"] == adapter / "gguf" / "smol-lora-lora.gguf"
    assert {q: p.name for q, p in full.files.items()} == {
        "f16": "smol-lora.f16.gguf", "q4_k_m": "smol-lora.q4_k_m.gguf"}
    assert full.files["q4_k_m"].stat().st_size < 0.5 * full.files["f16"].stat().st_size
    record = json.loads((adapter / "gguf" / "export.json").read_text())
    files = record["files"]
    assert set(files) == {"smol-lora-lora.gguf", "smol-lora.f16.gguf", "smol-lora.q4_k_m.gguf"}
    for f in files.values():
        assert f["base_model"] == NAME and f["base_gguf"] == str(resolve_gguf(NAME))
        assert f["adapter"] == str(adapter) and "top1_agreement" in f["verify"]
    assert files["smol-lora-lora.gguf"]["format"] == "gguf-lora"


def test_f16_matches_transformers_and_q4_k_m_is_reported(smol):
    rows = smol[3].verify["rows"]
    assert rows["f16"]["top1_agreement"] >= 0.99, rows["f16"]
    assert rows["f16"]["mean_kl"] < 0.01, rows["f16"]
    q4 = rows["q4_k_m"]  # reported; sanity only
    assert 0.5 <= q4["top1_agreement"] <= 1.0 and rows["f16"]["mean_kl"] < q4["mean_kl"] < 1, q4
    assert all(r["positions"] >= N_PROMPTS for r in rows.values())


def test_lora_on_bundled_base_matches_merged_transformers(smol):
    """LoRA GGUF on the bundled Q4_1 base vs transformers (dequantized Q4_1 + merged LoRA):
    the only difference is llama.cpp's quantized matmuls on the base weights."""
    row = next(iter(smol[2].verify["rows"].values()))
    assert row["lora"] == str(smol[2].files["lora"])
    assert row["top1_agreement"] >= 0.9 and row["mean_kl"] < 0.1, row


def test_export_itself_is_offline(smol, tmp_path, no_network):
    """No llama.cpp checkout, no download: writing and quantizing happen in-process."""
    adapter, merged, _, _ = smol
    lora = export(adapter, "gguf-lora", out=tmp_path)
    full = export(adapter, "gguf", ["q4_k_m"], model=merged, out=tmp_path, threads=THREADS)
    assert lora.files["lora"].is_file() and full.files["q4_k_m"].is_file()
    assert not list(tmp_path.glob(".*"))  # the intermediate F16 is gone
    assert no_network == []


def _product_file(tmp_path, n=1):
    from harness.tasks.records import read_records
    rows = read_records("product_review", "test")[:n]
    p = tmp_path / ("products.jsonl" if n > 1 else "product.json")
    p.write_text("\n".join(json.dumps(r) for r in rows) if n > 1
                 else json.dumps(rows[0]["product"]))
    return p


def test_generate_offline_with_lora_and_q4_k_m(smol, tmp_path, no_network):
    """Acceptance: both exports load in llama-cpp-python and write reviews, no network. The
    adapter is random: a merged model may end its review at once on a product (it did on the
    demo product with seed 0, and with seed 1 after the llama.cpp build changed), so the test
    asserts what holds for any adapter: a row written with the tokens it generated, and the
    text streamed to the terminal is the text written."""
    _, _, lora, full = smol
    product = _product_file(tmp_path)
    runner = CliRunner()
    for i, args in enumerate((["--model", str(full.files["q4_k_m"])],
                              ["--model", NAME, "--lora", str(lora.files["lora"])])):
        out = tmp_path / f"reviews-{i}.jsonl"   # one file per model: --out resumes its own
        res = runner.invoke(app, ["generate", *args, "--product", str(product),
                                  "--max-tokens", "24", "--threads", "1", "--out", str(out)])
        assert res.exit_code == 0, res.output
        assert "generation_tokens_per_second" in res.output
        row = json.loads(out.read_text())
        assert row["generated_tokens"] >= 1 and isinstance(row["review"], str)
        assert row["review"].strip() in res.output  # streamed to the terminal
    assert no_network == []


def test_generate_batch_from_stdin_streams_the_same_text(smol, tmp_path):
    from harness.export.generate import generate_reviews, parse_products

    _, _, _, full = smol
    products = parse_products(_product_file(tmp_path, n=2).read_text())
    pieces: dict[str, list[str]] = {}
    rows = list(generate_reviews(str(full.files["q4_k_m"]), products, max_tokens=24,
                                 n_threads=1,
                                 on_text=lambda pid, t: pieces.setdefault(pid, []).append(t)))
    assert [r["id"] for r in rows] == [i for i, _ in products]
    for r in rows:
        assert "".join(pieces.get(r["id"], [])).strip() == r["review"]  # may be empty
    runner = CliRunner()
    res = runner.invoke(app, ["generate", "--model", str(full.files["q4_k_m"]),
                              "--max-tokens", "8", "--threads", "1"],
                        input=_product_file(tmp_path, n=2).read_text())
    assert res.exit_code == 0, res.output
    assert res.output.count("tok/s generation") == 2


@pytest.mark.slow
def test_q8_0_next_to_the_f16_intermediate(smol, tmp_path):
    adapter, merged, _, _ = smol
    q8 = export(adapter, "gguf", ["q8_0"], model=merged, out=tmp_path, verify_prompts=8,
                verify_tokens=16, threads=THREADS)
    rows = q8.verify["rows"]
    assert rows["f16 (intermediate)"]["top1_agreement"] >= 0.99, rows
    assert rows["q8_0"]["top1_agreement"] >= 0.9 and rows["q8_0"]["mean_kl"] < 0.05, rows


@pytest.mark.slow
def test_lora_and_merged_write_the_same_greedy_reviews(smol, tmp_path):
    """Acceptance 3 on 8 real products: full greedy reviews (task stop strings, 96 tokens).

    LoRA GGUF on the base exported as F16 vs the merged F16: the same numbers up to F16
    rounding of W + BA, so the reviews agree. LoRA on the bundled Q4_1 base vs merged F16 is
    measured and printed only: llama.cpp runs Q4_1 weights with 8-bit quantized activations,
    the merged file dequantized F16 weights; at ~98% top-1 agreement per token (see --verify)
    a 96-token review usually meets one near-tie where the two part."""
    adapter, _, lora, full = smol
    base_f16 = export(None, "gguf", ["f16"], base=NAME, out=tmp_path).files["f16"]
    prompts = review_prompts(8)
    merged = greedy_reviews(Candidate("f16", full.files["f16"]), prompts, n_threads=THREADS)
    on_f16 = greedy_reviews(Candidate("lora", base_f16, lora.files["lora"]), prompts,
                            n_threads=THREADS)
    on_q4_1 = greedy_reviews(Candidate("lora", resolve_gguf(NAME), lora.files["lora"]), prompts,
                             n_threads=THREADS)
    same_f16 = sum(x == y for x, y in zip(on_f16, merged))
    same_q4_1 = sum(x == y for x, y in zip(on_q4_1, merged))
    print(f"identical greedy reviews vs merged F16: LoRA on F16 base {same_f16}/8, "
          f"LoRA on bundled Q4_1 base {same_q4_1}/8")
    assert same_f16 >= 6
