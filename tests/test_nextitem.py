"""product_nextitem: sequence preparation from the real Amazon files and from hand-made bad
ones, candidate sampling, ranking metrics, baselines, and an lm-eval run on the real SmolLM2
through llama.cpp."""
from __future__ import annotations

import json
import time

import pytest

from harness.data import SPLITS
from harness.data.nextitem import prepare_nextitem, trim_title, unisrec_title
from harness.data.prepare import prepare
from harness.errors import HarnessError
from harness.files import read_jsonl
from harness.metrics.ranking import rank_of, ranking_metrics
from harness.paths import TASKS_DIR
from harness.tasks import build_example

SCI, GIFT = "amazon2018_scientific", "amazon2018_gift_cards"


@pytest.fixture(scope="module")
def sequences(shared_data):
    for sub in (SCI, GIFT):
        if not (shared_data / sub).is_dir():
            pytest.skip(f"{shared_data / sub} not found")
    return shared_data


@pytest.fixture(scope="module")
def prepared_nextitem(sequences, tmp_path_factory):
    out = tmp_path_factory.mktemp("nextitem")
    t0 = time.perf_counter()
    report = prepare(sequences, out, ["product_nextitem"])[0]
    return out, report, time.perf_counter() - t0


def test_real_sequences(prepared_nextitem, sequences):
    out, report, seconds = prepared_nextitem
    assert seconds < 30
    counts = {k.split(" ")[0]: v for k, v in report["counts"].items()}
    assert counts[SCI] == {"train": 8442, "validation": 8442, "test": 8442}  # every user
    assert counts[GIFT] == {"train": 458, "validation": 458, "test": 458}
    assert report["skipped"] == {"repeated item of a user (first kept)": 7}
    text = {}
    for line in (sequences / SCI / "Scientific.text").read_text().splitlines()[1:]:
        asin, body = line.split("\t")
        text[asin] = trim_title(unisrec_title(body))
    test = list(read_jsonl(out / "product_nextitem" / "test.jsonl"))
    valid = {r["id"]: r for r in read_jsonl(out / "product_nextitem" / "validation.jsonl")}
    for r in test:
        assert len(r["candidates"]) == 20 and r["candidates"][r["label"]] == r["target"]
        assert len({c.lower() for c in r["candidates"]}) == 20        # no repeated title
        assert not set(r["candidate_ids"]) - {r["target_id"]} & set(r["history_ids"])
        assert 1 <= len(r["history"]) <= 10
        if r["source"] == SCI:
            assert r["target"] == text[r["target_id"]]
            assert r["history"] == [text[i] for i in r["history_ids"][-10:]]
        v = valid[r["id"]]          # leave-one-out: validation is one step earlier
        if len(r["history_ids"]) < 50:
            assert v["history_ids"] + [v["target_id"]] == r["history_ids"]
    # the target sits at every position about equally often (seeded shuffle)
    positions = [r["label"] for r in test]
    assert max(positions.count(i) for i in range(20)) < 2 * len(test) / 20
    assert {r["source"] for r in test[:200]} == {SCI, GIFT}    # --limit reads a mix


def test_gift_card_sequences_follow_review_time(prepared_nextitem, sequences):
    out, _, _ = prepared_nextitem
    events = {}
    for line in (sequences / GIFT / "Gift_Cards_5.json").read_text().splitlines():
        r = json.loads(line)
        events.setdefault(r["reviewerID"], []).append((r["unixReviewTime"], r["asin"]))
    rec = next(r for r in read_jsonl(out / "product_nextitem" / "test.jsonl")
               if r["source"] == GIFT and len(r["history_ids"]) >= 5)
    seq = []
    for _, asin in sorted(events[rec["user"]]):
        if asin not in seq:
            seq.append(asin)
    assert rec["history_ids"] + [rec["target_id"]] == seq


def test_negatives_are_configurable_and_seeded(sequences, tmp_path):
    a = prepare_nextitem(sequences / GIFT, tmp_path / "a", negatives=4)
    prepare_nextitem(sequences / GIFT, tmp_path / "b", negatives=4)
    assert a["negatives"] == 4
    ta = (tmp_path / "a" / "product_nextitem" / "test.jsonl").read_bytes()
    assert ta == (tmp_path / "b" / "product_nextitem" / "test.jsonl").read_bytes()
    assert all(len(r["candidates"]) == 5
               for r in read_jsonl(tmp_path / "a" / "product_nextitem" / "test.jsonl"))
    prepare_nextitem(sequences / GIFT, tmp_path / "c", negatives=4, seed=1)
    assert ta != (tmp_path / "c" / "product_nextitem" / "test.jsonl").read_bytes()


def _unisrec(d, text, inter):
    d.mkdir(parents=True)
    (d / "X.text").write_text("item_id:token\ttext:token_seq\n" + text)
    (d / "X.item2index").write_text("A1\t0\nA2\t1\nA3\t2\nA4\t3\nA5\t4\nA6\t5\nbroken\n")
    for split, rows in inter.items():
        (d / f"X.{split}.inter").write_text("user_id:token\titem_id_list:token_seq\titem_id:token\n"
                                            + rows)


def test_bad_input_is_counted(tmp_path):
    raw = tmp_path / "raw"
    titles = "".join(f"A{i}\tWidget {i}. Industrial & Scientific Tools. Acme. \n" for i in range(1, 6))
    _unisrec(raw / "sci", titles, {           # A6 has no text
        "train": "0\t0\t1\n0\t0 1\t2\n1\t0\t5\n",
        "valid": "0\t0 1 2\t3\n1\t0 5\t1\n2\t9\t1\n",
        "test": "0\t0 1 2 3\t4\n1\t5\t0\nbad row\n"})
    gift = raw / "gift"
    gift.mkdir()
    (gift / "meta_Gifts.json").write_text("".join(
        json.dumps({"asin": a, "title": f"Gift card {a}"}) + "\n" for a in "BCDEFGH"))
    reviews = [("u1", "B", 1), ("u1", "C", 2), ("u1", "B", 3), ("u1", "D", 4),  # B repeated
               ("u2", "C", 1), ("u2", "E", 2), ("u3", "Z", 5)]
    (gift / "Gifts_5.json").write_text("".join(
        json.dumps({"reviewerID": u, "asin": a, "unixReviewTime": t}) + "\n"
        for u, a, t in reviews) + json.dumps({"asin": "B"}) + "\n{broken\n")
    rep = prepare_nextitem(raw, tmp_path / "out", negatives=2)
    assert rep["skipped"] == {
        "malformed .item2index row": 1, "malformed .inter row": 1, "unknown item index": 1,
        "item missing from the text file (target)": 2,    # sci train of user 1; gift u3's Z
        "item missing from the text file (history)": 2,   # sci valid and test of user 1
        "history too short": 6,     # sci test of user 1 (A6 only); gift u1 train, u2, u3
        "too few items to sample negatives": 2,           # sci user 0 has bought them all
        "repeated item of a user (first kept)": 1,
        "review without reviewerID/asin/unixReviewTime": 1, "malformed JSON line": 1,
    }
    recs = [r for s in SPLITS for r in read_jsonl(tmp_path / "out" / "product_nextitem" / f"{s}.jsonl")]
    u1 = next(r for r in recs if r["id"] == "gift:u1" and r["target_id"] == "D")
    assert u1["history"] == ["Gift card B", "Gift card C"] and len(u1["candidates"]) == 3
    with pytest.raises(HarnessError, match="no product_nextitem source"):
        prepare_nextitem(tmp_path / "out", tmp_path / "out2")


def test_ranking_metrics_and_ties():
    assert rank_of([0.1, 0.9, 0.5], 2) == 2
    assert rank_of([0, 0, 0, 0], 3) == 4          # ties go by position: no free wins
    assert ranking_metrics(1) == {"hit@1": 1, "hit@5": 1, "hit@10": 1, "ndcg@10": 1, "mrr": 1}
    m = ranking_metrics(3)
    assert m["hit@1"] == 0 and m["hit@5"] == 1 and m["ndcg@10"] == pytest.approx(0.5)
    assert ranking_metrics(11)["ndcg@10"] == 0 and ranking_metrics(11)["mrr"] == 1 / 11


def test_demo_set_prompt():
    rows = list(read_jsonl(TASKS_DIR / "product_nextitem" / "demo.jsonl"))
    assert 10 <= len(rows) <= 40 and all(r["source"].startswith("demo") for r in rows)
    prompt, target = build_example("product_nextitem", rows[0])
    assert prompt.index(rows[0]["history"][0]) < prompt.index(rows[0]["history"][-1])
    assert target == " " + rows[0]["target"] and rows[0]["target"] not in prompt


def test_baselines_on_real_test_split(prepared_nextitem):
    from harness.tasks.baselines import run_baselines

    out, _, _ = prepared_nextitem
    rep = run_baselines("product_nextitem_scientific", str(out))
    assert rep.n == 8442 and rep.skipped == {}
    s = rep.scores
    assert s["random"]["hit@10"] == pytest.approx(0.5, abs=0.03)   # 10 of 20 candidates
    assert s["random"]["hit@1"] == pytest.approx(0.05, abs=0.01)
    for m in ("hit@1", "hit@10", "ndcg@10", "mrr"):
        assert s["cooccurrence"][m] > s["popularity"][m] > s["random"][m]
    first = run_baselines("product_nextitem", str(out), limit=200)   # lm-eval's --limit 200
    assert first.n == 200 and first.scores != run_baselines("product_nextitem", str(out)).scores


def test_lm_eval_ranking_on_llama_cpp(tmp_path):
    from harness.evaluate.runner import evaluate

    res = evaluate("llama-cpp", "model=smollm2-135m-instruct", ["product_nextitem"], limit=2,
                   metadata={"data": "demo"})
    r = res["results"]["product_nextitem"]
    for m in ("hit@1", "hit@5", "hit@10", "ndcg@10", "mrr", "mrr_raw"):
        assert 0 <= r[f"{m},none"] <= 1
    assert r["hit@5,none"] == 1.0            # 5 candidates: always within the top 5
    assert all(len(s["resps"]) == 5 for s in res["samples"]["product_nextitem"])


def test_lm_eval_ranking_on_transformers():
    """The same through lm-eval's transformers path (harness-hf): a document's five candidates
    scored after one pass of its context (TimedHFLM._score_group), not five."""
    from harness.evaluate.runner import evaluate

    res = evaluate("hf", "model=smollm2-135m-instruct", ["product_nextitem"], limit=2,
                   metadata={"data": "demo"})
    r = res["results"]["product_nextitem"]
    assert r["hit@5,none"] == 1.0 and 0 <= r["mrr,none"] <= 1
    t = res["throughput"]
    assert t["loglikelihood_docs"] == 2
    assert t["loglikelihood_tokens_per_doc"] < t["loglikelihood_naive_tokens_per_doc"] / 2

