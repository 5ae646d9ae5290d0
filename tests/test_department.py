"""product_department / product_aisle: Instacart preparation (real files and hand-made bad
ones), label spaces, prompts, answer parsing, macro-F1, baselines, and lm-eval runs on the
real SmolLM2 through llama.cpp."""
from __future__ import annotations

import json
import random
import time
from collections import Counter

import pytest

from harness.data import SPLITS
from harness.data.prepare import prepare
from harness.errors import HarnessError
from harness.files import read_jsonl, write_jsonl
from harness.data.labels import load_label_space
from harness.metrics.classify import macro_f1, parse_choice
from harness.paths import TASKS_DIR
from harness.tasks import build_example

TASKS = ("product_department", "product_aisle")


@pytest.fixture(scope="module")
def instacart(shared_data):
    if not (shared_data / "instacart" / "products.csv").exists():
        pytest.skip(f"Instacart files not found under {shared_data / 'instacart'}")
    return shared_data


@pytest.fixture(scope="module")
def prepared_instacart(instacart, tmp_path_factory):
    out = tmp_path_factory.mktemp("instacart")
    t0 = time.perf_counter()
    reports = prepare(instacart, out, list(TASKS))
    return out, reports, time.perf_counter() - t0


def _rows(out, task, split):
    return list(read_jsonl(out / task / f"{split}.jsonl"))


def test_real_instacart_preparation(prepared_instacart):
    out, reports, seconds = prepared_instacart
    assert seconds < 30
    dep, aisle = reports
    assert dep["classes"] == 20 and aisle["classes"] == 133   # 21 / 134 minus "missing"
    assert dep["skipped"]["no label: department 'missing'"] == 1258
    assert dep["skipped"]["aisles.csv: aisle used by no product"] == 2
    assert dep["skipped"] == aisle["skipped"]
    assert sum(dep["counts"]["total"].values()) + sum(dep["skipped"].values()) - 2 == 49688
    labels = json.loads((out / "product_department" / "labels.json").read_text())["labels"]
    assert "missing" not in labels and "produce" in labels
    split_of = {}
    for split in SPLITS:
        rows = _rows(out, "product_department", split)
        for r in rows:
            assert r["id"] not in split_of
            split_of[r["id"]] = split
            assert r["label"] == r["department"] in labels and r["product"]["title"]
        # one split for both tasks: the same products in the same order
        assert [r["id"] for r in _rows(out, "product_aisle", split)] == [r["id"] for r in rows]
    # stratified: every department in test, each about 10% of its products
    test = Counter(r["label"] for r in _rows(out, "product_department", "test"))
    train = Counter(r["label"] for r in _rows(out, "product_department", "train"))
    assert set(test) == set(labels)
    for lab in labels:
        assert abs(test[lab] / (test[lab] + train[lab]) - 0.11) < 0.04, lab
    # hash order: the first 200 test records (what --limit 200 reads) mix the classes
    assert len({r["label"] for r in _rows(out, "product_department", "test")[:200]}) >= 15
    # the file's broken quote escaping is repaired
    titles = {r["product"]["title"] for s in SPLITS for r in _rows(out, "product_department", s)}
    assert '9.5" Glass Pie Dish' in titles and not any('\\"' in t for t in titles)


def test_preparation_is_deterministic(prepared_instacart, instacart, tmp_path):
    out, _, _ = prepared_instacart
    prepare(instacart, tmp_path, ["product_aisle"])
    for split in SPLITS:
        assert ((tmp_path / "product_aisle" / f"{split}.jsonl").read_bytes()
                == (out / "product_aisle" / f"{split}.jsonl").read_bytes())


def _instacart_files(root, products: str, aisles="1,fresh fruits\n2,soap\n3,missing\n",
                     departments="1,produce\n2,household\n3,missing\n"):
    d = root / "instacart"
    d.mkdir(parents=True)
    (d / "products.csv").write_text(products, encoding="utf-8")
    (d / "aisles.csv").write_text(aisles, encoding="utf-8")
    (d / "departments.csv").write_text(departments, encoding="utf-8")
    return root


def test_bad_rows_are_counted(tmp_path):
    raw = _instacart_files(tmp_path / "raw", (
        "product_id,product_name,aisle_id,department_id\n"      # a header row is fine
        "1,Gala Apples,1,1\n2,gala  apples,1,1\n"                # same name, same labels
        "3,Dish Soap,2,2\n4,Dish soap,1,1\n"                     # same name, other labels
        "5,Pears,9,1\n6,Plums,1,9\n7,Mystery Item,3,3\n"        # unknown ids, 'missing'
        "8,too,many,fields,here\n9,,1,1\n"
        '10,"""Easy Grab 9\\""""x13\\"""" Dish""",2,2\n'))
    rep = prepare(raw, tmp_path / "out", ["product_department"])[0]
    assert rep["skipped"] == {"duplicate name, same labels": 1,
                              "duplicate name, conflicting labels": 2,
                              "unknown aisle id": 1, "unknown department id": 1,
                              "no label: department 'missing'": 1,
                              "wrong number of fields": 1, "missing product id or name": 1}
    recs = [r for s in SPLITS for r in _rows(tmp_path / "out", "product_department", s)]
    assert sorted(r["product"]["title"] for r in recs) == ['Easy Grab 9"x13" Dish', "Gala Apples"]
    assert next(r for r in recs if r["label"] == "produce")["id"] == "instacart:1"  # lowest id


def test_unreadable_and_missing_files_are_clear_errors(tmp_path):
    raw = _instacart_files(tmp_path / "raw", "1,Apples,1,1\n")
    (raw / "instacart" / "products.csv").write_bytes(b"1,Apples,1,1\n2,\xff\xfe,1,1\n")
    with pytest.raises(HarnessError, match=r"products\.csv:\d+: not UTF-8"):
        prepare(raw, tmp_path / "out", ["product_department"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(HarnessError, match="no Instacart data found"):
        prepare(tmp_path / "empty", tmp_path / "out2", ["product_aisle"])


def test_demo_sets_and_label_spaces():
    for task in TASKS:
        rows = list(read_jsonl(TASKS_DIR / task / "demo.jsonl"))
        assert 20 <= len(rows) <= 40 and all(r["source"].startswith("demo") for r in rows)
        sid = load_label_space(TASKS_DIR / task / "demo_labels.json")
        assert all(r["label_space"] == sid for r in rows)
        labels = json.loads((TASKS_DIR / task / "demo_labels.json").read_text())["labels"]
        listed = ", ".join(labels)
        prompt, target = build_example(task, rows[0])
        assert rows[0]["product"]["title"] in prompt and target == " " + rows[0]["label"]
        assert listed not in prompt                           # multiple choice: no list
        gen_prompt, gen_target = build_example(task + "_gen", rows[0])
        assert listed in gen_prompt and gen_target == target  # generate: the list is shown


def test_edited_label_file_is_refused(tmp_path):
    body = json.loads((TASKS_DIR / "product_department" / "demo_labels.json").read_text())
    body["labels"][0] = "bread"
    (tmp_path / "labels.json").write_text(json.dumps(body))
    with pytest.raises(HarnessError, match="does not match its labels"):
        load_label_space(tmp_path / "labels.json")


def test_records_outside_the_label_space_are_left_out(tmp_path, caplog):
    from harness.tasks.category import load_classification

    demo = list(read_jsonl(TASKS_DIR / "product_department" / "demo.jsonl"))
    bad = [dict(demo[0], label="toys"), dict(demo[1], product={"title": " "})]
    for split in SPLITS:
        write_jsonl(tmp_path / "product_department" / f"{split}.jsonl", demo[2:6] + bad)
    (tmp_path / "product_department" / "labels.json").write_bytes(
        (TASKS_DIR / "product_department" / "demo_labels.json").read_bytes())
    with caplog.at_level("WARNING"):
        ds = load_classification("product_department_gen", str(tmp_path))
    assert len(ds["test"]) == 4
    assert "label not in the label space: 1" in caplog.text
    assert "no product title: 1" in caplog.text


def test_parse_choice_and_macro_f1():
    labels = ["dairy eggs", "frozen", "snacks", "eggs", "pets"]
    assert parse_choice(" Snacks.", labels) == "snacks"
    assert parse_choice("It belongs in Dairy Eggs, I think", labels) == "dairy eggs"
    assert parse_choice("frozen snacks", labels) == "frozen"       # the first one named
    assert parse_choice("Petalcrumb Cake Slices", labels) is None  # no whole-word class name
    from sklearn.metrics import f1_score

    rng = random.Random(0)
    gold = [rng.choice(labels) for _ in range(300)]
    pred = [g if rng.random() < 0.6 else rng.choice(labels) for g in gold]
    assert macro_f1(zip(gold, pred)) == pytest.approx(f1_score(gold, pred, average="macro"))
    # an unparsable answer (None) costs the gold class recall, and is no class of its own
    assert macro_f1([("a", "a"), ("b", None)]) == pytest.approx(0.5)


def test_baselines_on_demo():
    from harness.tasks.baselines import baseline_scores

    scores = baseline_scores("product_aisle_gen", "demo")
    rows = list(read_jsonl(TASKS_DIR / "product_aisle" / "demo.jsonl"))
    top = Counter(r["label"] for r in rows).most_common(1)[0][1]
    assert scores["majority"]["acc"] == pytest.approx(top / len(rows))
    assert set(scores["tfidf_logreg"]) == {"acc", "macro_f1"}


@pytest.mark.slow
def test_tfidf_baseline_on_real_split(prepared_instacart):
    from harness.tasks.baselines import run_baselines

    out, _, _ = prepared_instacart
    rep = run_baselines("product_department", str(out))
    assert rep.n == 4818 and rep.skipped == {}
    assert rep.scores["tfidf_logreg"]["acc"] > 0.8 > 0.2 > rep.scores["majority"]["acc"]


def test_lm_eval_multiple_choice_and_generate_on_llama_cpp(tmp_path):
    """Real SmolLM2 through llama.cpp: 9 loglikelihoods per doc, metrics in range."""
    from harness.evaluate.runner import evaluate

    res = evaluate("llama-cpp", "model=smollm2-135m-instruct",
                   ["product_department", "product_department_gen"], limit=2,
                   metadata={"data": "demo"}, output_path=tmp_path)
    mc = res["results"]["product_department"]
    assert 0 <= mc["acc,none"] <= 1 and 0 <= mc["macro_f1,none"] <= 1
    samples = res["samples"]["product_department"]
    assert len(samples) == 2 and all(len(s["resps"]) == 9 for s in samples)
    lls = [r[0][0] for r in samples[0]["resps"]]
    assert all(x < 0 for x in lls) and len(set(lls)) == 9
    gen = res["results"]["product_department_gen"]
    assert 0 <= gen["invalid,none"] <= 1
    assert gen["acc,none"] + gen["invalid,none"] <= 1


def test_department_adapter_trains_and_compare_scores_it_on_both_llama_cpp_variants(tmp_path):
    """The whole loop on a classification task: `harness train --task product_department`
    on the real SmolLM2, then `harness compare` finds the adapter and scores it on llama.cpp
    as a run-time LoRA GGUF and as the merged Q4_K_M. The demo set is train and test split
    at once, so the tuned model must beat the base one on it: if the adapter were not applied
    in llama.cpp's loglikelihood scoring, tuned would equal base."""
    import os

    import pandas as pd
    from _cli import run_cli

    env = dict(os.environ, HARNESS_ADAPTERS_DIR=str(tmp_path / "adapters"))
    adapter = tmp_path / "adapters" / "smol-department"

    def cli(*args):
        r = run_cli(args, env, timeout=1200)
        assert r.returncode == 0, r.stderr[-3000:]

    cli("train", "--model", "smollm2-135m-instruct", "--task", "product_department",
        "--data", "demo", "--max-steps", "12", "--batch-size", "8", "--grad-accum", "1",
        "--lr", "2e-3", "--eval-every", "6", "--output", str(adapter), "--quiet")
    info = json.loads((adapter / "training.json").read_text())
    assert info["task"] == "product_department"
    assert info["best_val_loss"] < info["initial_val_loss"] * 0.5, info["val_loss"]
    cli("compare", "--models", "smollm2-135m-instruct", "--tasks", "product_department",
        "--backends", "llama-cpp", "--data", "demo", "--merged-quant", "q4_k_m,q8_0",
        "--output", str(tmp_path / "run"))
    df = pd.read_csv(tmp_path / "run" / "summary.csv")
    assert "baseline" in set(df["variant"])       # TF-IDF + LR and majority rows beside them
    df = df[df["model"] == "smollm2-135m-instruct"].set_index("variant")
    assert set(df.index) == {"base", "tuned", "tuned-merged-q4_k_m", "tuned-merged-q8_0"}
    assert (df["status"] == "done").all() and (df["n"] == 24).all()
    for variant in ("tuned", "tuned-merged-q4_k_m", "tuned-merged-q8_0"):
        assert df.loc[variant, "acc"] > df.loc["base", "acc"] + 0.2, df["acc"]
