"""Bad input gives one clear error line (file, line, field), never a traceback or a silently
wrong result, and nothing already done is lost (issue #16). The inputs tried and the behaviour
now are listed in README "Known issues" (bad input table).

Everything runs the real code: the CLI in a subprocess, the bundled SmolLM2 GGUF for generate
(a few tokens per product)."""
from __future__ import annotations

import json
import os

import pytest

from harness.models import OFFLINE_ENV
from harness.errors import HarnessError
from harness.data.schema import validate_product, validate_record

from _cli import run_cli

ENV = {**os.environ, "OMP_NUM_THREADS": "1", **OFFLINE_ENV}


def one_error_line(res, *needles):
    """exit 2, stderr one `error: ...` line holding every needle, no traceback."""
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    assert "Traceback" not in res.stderr, res.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr[-2000:]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


# --- the product schema --------------------------------------------------------------------

@pytest.mark.parametrize("product, field", [
    ({"title": "Mug", "features": ["Ceramic", None]}, "features[1]"),
    ({"title": "Mug", "price": [1, 2, 3]}, "price"),
    ({"title": "Mug", "price": {"amount": "cheap"}}, "price.amount"),
    ({"title": "Mug", "price": {"amount": True}}, "price.amount"),
    ({"title": "Mug", "rating": 7}, "rating"),
    ({"title": "Mug", "rating": float("nan")}, "rating"),
    ({"title": "Mug", "category": ["Kitchen", 3]}, "category[1]"),
    ({"title": "Mug", "details": {"Weight": [1]}}, "details.Weight"),
    ({"title": "Mug", "details": "heavy"}, "details"),
    ({"title": "Mug", "brand": 5}, "brand"),
    ({"title": ""}, "title"),
    ({"title": None}, "title"),
    ({"brand": "Acme"}, "title"),
])
def test_wrong_types_are_one_error_naming_file_line_and_field(product, field):
    with pytest.raises(HarnessError) as e:
        validate_product(product, "products.jsonl:3")
    msg = str(e.value)
    assert msg.startswith(f"products.jsonl:3: product field {field}:"), msg
    assert "\n" not in msg


def test_safe_coercions():
    got = validate_product({"title": " Kettle ", "features": "Boils fast",
                            "category": "Kitchen > Cookware", "price": 12,
                            "rating": "4.5", "rating_count": "12",
                            "details": {"Weight": 210, "Volume": 1.5}, "sku": "X1"}, "p")
    assert got == {"title": "Kettle", "features": ["Boils fast"],   # not characters
                   "category": ["Kitchen", "Cookware"], "price": {"amount": 12.0},
                   "rating": 4.5, "rating_count": 12,
                   "details": {"Weight": "210", "Volume": "1.5"}, "sku": "X1"}


def test_demo_records_pass_unchanged():
    from harness.files import read_jsonl
    from harness.paths import TASKS_DIR

    for rec in read_jsonl(TASKS_DIR / "product_review" / "demo.jsonl"):
        assert validate_record(rec, "demo", "product_review") == rec


def test_task_loading_names_file_line_and_field(tmp_path):
    from harness.tasks.records import read_records

    good = json.loads((__import__("harness.paths").paths.TASKS_DIR / "product_review" /
                       "demo.jsonl").read_text().splitlines()[0])
    bad = {**good, "product": {**good["product"], "category": {"a": 1}}}
    (tmp_path / "test.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(HarnessError, match=r"test.jsonl:2: product field category: "):
        read_records("product_review", "test", str(tmp_path))


# --- harness generate ------------------------------------------------------------------------

def test_generate_rejects_badly_typed_products_before_loading_a_model(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"id": "a", "title": "Kettle"}) + "\n" +
                 json.dumps({"id": "b", "title": "Mug", "features": ["Ceramic", None]}) + "\n")
    res = run_cli(["generate", "--product", str(f), "--model", "/nonexistent.gguf"], ENV)
    one_error_line(res, f"{f}:2", "features[1]", "null")


def test_generate_record_whose_product_is_not_an_object_names_it(tmp_path):
    from harness.export.generate import parse_products

    with pytest.raises(HarnessError, match=r'p.json\[1\]: .*got "product" integer'):
        parse_products(json.dumps([{"title": "A"}, {"product": 5}]), "p.json")


def test_generate_string_fields_are_not_split_into_characters():
    from harness.export.generate import parse_products
    from harness.prompts import review_prompt

    [(_, p)] = parse_products(json.dumps({"title": "Pan", "features": "Non-stick",
                                          "category": "Kitchen"}), "x")
    prompt = review_prompt(p)
    assert '"features": ["Non-stick"]' in prompt and '"category": "Kitchen"' in prompt
    assert "K > i" not in prompt


@pytest.fixture(scope="module")
def smol_lm():
    from harness.export.generate import open_model
    return open_model("smollm2-135m-instruct", n_ctx=512, n_threads=1)


def test_long_prompt_is_trimmed_never_cut_from_the_front(smol_lm):
    from harness.export.generate import generate_reviews, review_context
    from harness.prompts import REVIEW_INSTRUCTION, fit_review_prompt

    product = {"title": "Steel Water Bottle 1 L",
               "features": [f"Feature number {i} " + "keeps water cold " * 8 for i in range(6)],
               "details": {f"Detail {i}": "a long value " * 20 for i in range(10)}}
    warnings: list[str] = []
    [row] = generate_reviews("smollm2-135m-instruct", [("p1", product)], max_tokens=4,
                             lm=smol_lm, on_warning=warnings.append)
    assert row["trimmed"][0] == "details" and row["prompt_tokens"] <= 512 - 4
    assert len(warnings) == 1 and "dropped details" in warnings[0]
    ctx, dropped = fit_review_prompt(product, lambda t: len(smol_lm.prompt_tokens(t)) <= 508,
                                     render=lambda p: review_context(smol_lm, p))
    assert ctx.startswith("<|im_start|>") and REVIEW_INSTRUCTION in ctx
    assert "Steel Water Bottle 1 L" in ctx and dropped == row["trimmed"]


def test_title_too_long_for_the_context_is_an_error(smol_lm):
    from harness.export.generate import generate_reviews

    with pytest.raises(HarnessError, match="product big: the prompt does not fit"):
        list(generate_reviews("m", [("big", {"title": "Kettle " * 2000})], max_tokens=4,
                              lm=smol_lm))


def test_llama_cpp_backend_trims_the_product_not_the_template(smol_lm):
    """The lm-eval path (harness eval / compare) fits an over-long product prompt the same
    way: the chat template and the instruction stay, product fields go; other contexts keep
    their end."""
    from harness.export.generate import review_context
    from harness.prompts import REVIEW_INSTRUCTION, review_prompt

    product = {"title": "Steel Water Bottle 1 L", "brand": "Acme",
               "features": [f"Feature number {i} " + "keeps water cold " * 8 for i in range(6)],
               "details": {f"Detail {i}": "a long value " * 20 for i in range(10)}}
    ctx = review_context(smol_lm, review_prompt(product))
    assert len(smol_lm.prompt_tokens(ctx)) > 512 - 64
    toks = smol_lm.fit_prompt(ctx, 64)
    text = smol_lm.llm.detokenize(toks).decode("utf-8", "replace")
    full = smol_lm.prompt_tokens(ctx)
    assert len(toks) <= 512 - 64
    assert toks[:8] == full[:8] and toks[-8:] == full[-8:]   # template start and end kept
    assert text.lstrip().startswith("system\n") and REVIEW_INSTRUCTION in text
    assert "Steel Water Bottle 1 L" in text and "Detail 0" not in text
    plain = "word " * 2000
    assert smol_lm.fit_prompt(plain, 64) == smol_lm.prompt_tokens(plain)[-(512 - 64):]
    with pytest.raises(HarnessError, match="prompt"):
        smol_lm.fit_prompt(review_context(smol_lm, review_prompt({"title": "Kettle " * 2000})),
                           64)


def test_trim_on_a_rendered_context_for_backends():
    from harness.prompts import fit_review_context, review_prompt

    ctx = "<s>[INST] " + review_prompt({"title": "Mug", "brand": "Acme",
                                        "features": ["a" * 50, "b" * 50]}) + " [/INST]"
    out, dropped = fit_review_context(ctx, lambda t: len(t) <= len(ctx) - 60)
    assert dropped == ["brand", "features[1]"] and out.startswith("<s>[INST] Write")
    assert out.endswith("Review: [/INST]")


def test_generate_out_is_written_as_it_goes_and_resumes(tmp_path):
    products = tmp_path / "p.jsonl"
    ok = [{"id": f"p{i}", "title": f"Kettle model {i}"} for i in range(2)]
    products.write_text("".join(json.dumps(p) + "\n" for p in
                                ok + [{"id": "huge", "title": "Kettle " * 3000}]))
    out = tmp_path / "reviews.jsonl"
    args = ["generate", "--product", str(products), "--output", str(out), "--max-tokens", "4",
            "--threads", "1"]
    one_error_line(run_cli(args, ENV), "product huge", "does not fit")
    kept = [json.loads(ln) for ln in out.read_text().splitlines()]
    assert [r["id"] for r in kept] == ["p0", "p1"]          # not lost with the bad product
    products.write_text("".join(json.dumps(p) + "\n" for p in ok + [{"id": "p2",
                                                                     "title": "Mug"}]))
    res = run_cli(args, ENV)
    assert res.returncode == 0, res.stderr
    assert "2 reviews already there" in " ".join(res.stdout.split())
    rows = [json.loads(ln) for ln in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["p0", "p1", "p2"] and rows[:2] == kept
    other = run_cli([*args, "--seed", "3", "--temperature", "0.5"], ENV)
    one_error_line(other, str(out), "other settings", "--overwrite")


# --- harness compare / report ----------------------------------------------------------------

def test_compare_checks_data_before_loading_anything(tmp_path):
    res = run_cli(["compare", "--data", str(tmp_path / "nonexistent"), "--models",
                   "smollm2-135m-instruct", "--output", str(tmp_path / "run")], ENV)
    one_error_line(res, str(tmp_path / "nonexistent"), "harness data prepare")
    assert not (tmp_path / "run").exists()       # nothing written, nothing loaded


def test_compare_unknown_task_is_one_line(tmp_path):
    res = run_cli(["compare", "--tasks", "product_reviw", "--models", "smollm2-135m-instruct",
                   "--output", str(tmp_path / "run")], ENV)
    one_error_line(res, "unknown task 'product_reviw'", "product_review")


@pytest.fixture(scope="module")
def failed_run(tmp_path_factory):
    """A compare run whose one model cell fails (a corrupt GGUF): checked before it loads."""
    tmp = tmp_path_factory.mktemp("failed-run")
    (tmp / "bad.gguf").write_bytes(b"GGUFjunk")
    out = tmp / "run"
    res = run_cli(["compare", "--models", "smollm2-135m-instruct", "--backends", "llama-cpp",
                   "--tasks", "product_department", "--data", "demo", "--limit", "1",
                   "--output", str(out)],
                  {**ENV, "HARNESS_GGUF_SMOLLM2_135M_INSTRUCT": str(tmp / "bad.gguf")})
    return out, res


def test_compare_exits_nonzero_printing_each_failed_cell(failed_run):
    out, res = failed_run
    assert res.returncode == 1, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    line = next(ln for ln in res.stderr.splitlines() if ln.startswith("failed: "))
    assert "smollm2-135m-instruct · base · llama-cpp · product_department" in line
    assert "bad.gguf: corrupt or truncated GGUF header" in line
    state = json.loads((out / "run.json").read_text())
    assert [c["status"] for c in state["cells"]] == ["failed"]


def test_report_never_shows_a_failed_cells_stale_numbers(failed_run):
    import pandas as pd

    out, _ = failed_run
    [cell] = json.loads((out / "run.json").read_text())["cells"]
    stale = out / "cells" / cell["key"] / "results.json"    # left by an earlier run
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text(json.dumps({"results": {"product_department": {"acc,none": 0.987}},
                                 "throughput": {}}))
    res = run_cli(["report", str(out)], ENV)
    assert res.returncode == 0, res.stderr[-2000:]
    df = pd.read_csv(out / "summary.csv")
    row = df[df["model"] == "smollm2-135m-instruct"].iloc[0]
    assert row["status"] == "failed"
    assert "acc" not in df.columns or pd.isna(row["acc"])
    assert "0.987" not in (out / "report.md").read_text()


def test_report_of_a_manifest_without_cells_is_one_line(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"status": "finished"}))
    one_error_line(run_cli(["report", str(tmp_path)], ENV), "run.json", "cells")


# --- harness eval ------------------------------------------------------------------------------

@pytest.mark.parametrize("args, needles", [
    ([], ["give --tasks", "lm_eval run --help"]),
    (["--model", "llama-cpp", "--model_args", "model=BAD", "--tasks", "product_review"],
     ["BAD", "not a GGUF file"]),
    (["--model", "llama-cpp", "--model_args", "model=smollm2-135m-instruct", "--tasks",
      "product_reviw"], ["product_reviw", "product_review"]),
    (["--model", "llama-cpp", "--model_args", "model=smollm2-135m-instruct", "--tasks",
      "product_review", "--metadata", "{data: demo}"], ["--metadata", "JSON object"]),
    (["--model", "llama-cpp", "--model-args", "model=smollm2-135m-instruct,oops", "--tasks",
      "product_review"], ["--model_args", "'oops' is not key=value"]),
    (["--model", "llama-cpp", "--model_args", "model=smollm2-135m-instruct", "--tasks",
      "product_review", "--limit", "0"], ["--limit 0", "above 0"]),
    (["--model", "lama-cpp", "--tasks", "product_review"], ["--model lama-cpp", "llama-cpp"]),
])
def test_eval_mistakes_are_one_line(tmp_path, args, needles):
    bad = tmp_path / "renamed.gguf"
    bad.write_bytes(b"PK\x03\x04 a zip file, renamed")
    args = [f"model={bad}" if a == "model=BAD" else a for a in args]
    one_error_line(run_cli(["eval", *args], ENV), *[str(bad) if n == "BAD" else n
                                                    for n in needles])


# --- harness export ----------------------------------------------------------------------------

def test_export_adapter_config_not_an_object_is_one_line(tmp_path):
    (tmp_path / "adapter_config.json").write_text("[1, 2]")
    (tmp_path / "adapter_model.safetensors").write_bytes(b"x")
    one_error_line(run_cli(["export", str(tmp_path)], ENV), "adapter_config.json",
                   "expected a JSON object")


def test_failed_export_leaves_no_empty_folder(tmp_path):
    ad = tmp_path / "ad"
    ad.mkdir()
    (ad / "adapter_config.json").write_text(json.dumps({
        "base_model_name_or_path": "smollm2-135m-instruct", "peft_type": "LORA", "r": 8,
        "lora_alpha": 16, "target_modules": ["q_proj"]}))
    (ad / "adapter_model.safetensors").write_bytes(b"junk")
    one_error_line(run_cli(["export", str(ad), "--format", "gguf-lora"], ENV),
                   "adapter_model.safetensors")
    assert sorted(p.name for p in ad.iterdir()) == ["adapter_config.json",
                                                    "adapter_model.safetensors"]


# --- the command line itself -------------------------------------------------------------------

def _commands():
    import typer.main

    from harness.cli import app

    def walk(cmd, path):
        yield path, cmd
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, path + [name])
    return list(walk(typer.main.get_command(app), []))


def test_help_texts_keep_their_square_brackets():
    """Rich markup must not eat "[default: ...]" (or any bracketed text) in --help."""
    import re

    from typer.testing import CliRunner

    from harness.cli import app

    runner, checked = CliRunner(), 0
    for path, cmd in _commands():
        texts = [p.help for p in cmd.params if getattr(p, "help", None) and "[" in p.help]
        if not texts:
            continue
        out = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "300"}).output
        flat = " ".join(re.sub(r"[│╭╮╰╯─]", " ", out).split())
        for t in texts:
            for part in re.findall(r"\\?\[[^\]]*\]", t):
                assert part.lstrip("\\") in flat, (path, part)
                checked += 1
    assert checked >= 8


def test_error_lines_keep_square_brackets(tmp_path):
    """A HarnessError is printed as text: "pip install -e '.[qlora-cpu]'" stays whole."""
    res = run_cli(["generate", "--product", str(tmp_path / "[missing].json")], ENV)
    one_error_line(res, f"{tmp_path / '[missing].json'}: cannot read")


@pytest.mark.parametrize("path, new, old", [
    (["data", "prepare"], "--output", "--out"), (["data", "curate"], "--output", "--out"),
    (["export"], "--output", "--out"), (["generate"], "--output", "--out"),
    (["compare"], "--threads", "--n-threads"), (["compare"], "--model-args", "--model_args"),
    (["score"], "--output", "--out"), (["metrics", "validate"], "--output", "--out"),
])
def test_consistent_flags_with_old_spellings_hidden(path, new, old):
    cmd = dict((tuple(p), c) for p, c in _commands())[tuple(path)]
    opts = {o: p for p in cmd.params for o in p.opts}
    assert new in opts and not getattr(opts[new], "hidden", False)
    assert old in opts and opts[old].hidden


def test_list_options_take_repeats_and_commas_alike():
    from harness.cli.console import split_list

    assert split_list(["a,b", "c", " d , "]) == ["a", "b", "c", "d"] == split_list("a,b,c,d")
    for path, name in ((["compare"], "models"), (["compare"], "tasks"),
                       (["compare"], "backends"), (["compare"], "merged_quant"),
                       (["export"], "quant"), (["data", "prepare"], "task"),
                       (["demo"], "models"), (["demo"], "backends")):
        cmd = dict((tuple(p), c) for p, c in _commands())[tuple(path)]
        assert next(p for p in cmd.params if p.name == name).multiple, (path, name)


@pytest.mark.parametrize("args, needles", [
    (["generate", "--product", "P", "--max-tokens", "-5"], ["--max-tokens -5", "1 or more"]),
    (["generate", "--product", "P", "--temperature", "-1"], ["--temperature -1.0"]),
    (["compare", "--limit", "0", "--models", "smollm2-135m-instruct", "--data", "demo"],
     ["--limit 0"]),
    (["compare", "--gen-kwargs", "garbage", "--models", "smollm2-135m-instruct", "--data",
      "demo"], ["--gen-kwargs 'garbage'", "not key=value"]),
])
def test_out_of_range_settings_are_one_line_not_a_silent_run(tmp_path, args, needles):
    p = tmp_path / "p.json"
    p.write_text(json.dumps({"title": "Kettle"}))
    args = [str(p) if a == "P" else a for a in args] + (
        ["--output", str(tmp_path / "run")] if args[0] == "compare" else [])
    one_error_line(run_cli(args, ENV), *needles)
    assert not (tmp_path / "run").exists()


def test_generate_output_is_untouched_until_a_review_is_done(tmp_path):
    from harness.export.generate import ReviewLog

    out = tmp_path / "reviews.jsonl"
    out.write_text('{"id": "a", "review": "old", "settings": {"model": "m"}}\n{"id": "b", "re')
    before = out.read_text()
    log = ReviewLog(out, {"model": "m"})                 # resume: the torn line is not kept
    assert list(log.done) == ["a"] and out.read_text() == before
    ReviewLog(out, {"model": "other"}, overwrite=True)    # nothing done: nothing replaced
    assert out.read_text() == before
    log.add({"id": "c", "review": "new"})
    assert [json.loads(ln)["id"] for ln in out.read_text().splitlines()] == ["a", "c"]
    res = run_cli(["generate", "--product", str(tmp_path / "p.json"), "--output",
                   str(tmp_path / "new.jsonl")], ENV)
    assert res.returncode == 2 and not (tmp_path / "new.jsonl").exists()
