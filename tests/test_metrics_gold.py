"""`harness metrics validate --gold`: the scoring of the metrics against a gold set labelled by
reading (harness/metrics/validation/gold.py).

The first tests check the arithmetic on gold items written here by hand (fictional products
and reviews, not taken from the metric's word lists or templates) with hand-made metric claims:
span-overlap matching, precision / recall / F1, review-level false flags, Cohen's kappa against
values computed by hand, the stable dev/test halves, the within-category pairing and the error
lines. The last ones run the validation on a fixed subset of the committed gold files and the
prepared real data, and hold each figure to its acceptance value minus its CI half-width."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.metrics.validation import gold as g
from harness.paths import ROOT

# --- hand-made products, reviews and labels --------------------------------------------------

PACK = {"title": "Kestrel Trailhead 28L Hiking Daypack with Laptop Sleeve (Slate Grey)",
        "brand": "Kestrel", "category": ["Sports", "Outdoor", "Backpacks"],
        "price": {"amount": 2499.0, "currency": "INR", "list_price": 3999.0,
                  "discount_percent": 38.0},
        "features": ["28 litre main compartment", "Padded sleeve fits 15.6 inch laptops",
                     "Two mesh side pockets for bottles"]}
PACK_REVIEW = ("Bought this Kestrel pack for 2,499 and the 40 litre space swallows a weekend "
               "of gear. The sleeve takes my 15.6 inch notebook, and it has a rain cover too.")
#               brand 12-19 sup; price 33-38 sup; 40 litre 47-55 contra; 15.6 inch 106-115 sup;
#               rain cover 140-150 unsup


def span(text: str, part: str, nth: int = 0) -> tuple[int, int]:
    i = -1
    for _ in range(nth + 1):
        i = text.index(part, i + 1)
    return i, i + len(part)


def claim(text, part, label, kind, nth=0):
    s, e = span(text, part, nth)
    return {"start": s, "end": e, "span": text[s:e], "label": label, "kind": kind,
            "field": None, "note": ""}


def mclaim(text, part, status, kind="quantity", nth=0, more=()):
    """A metric claim as check_claims returns it (only the keys the scoring reads)."""
    s, e = span(text, part, nth)
    spans = [[s, e]] + [list(span(text, p, n)) for p, n in more]
    return {"kind": kind, "attribute": kind, "value": part, "text": part, "start": s, "end": e,
            "status": status, "evidence": "hand-made", "spans": spans}


PACK_GOLD = [claim(PACK_REVIEW, "Kestrel", "supported", "brand"),
             claim(PACK_REVIEW, "2,499", "supported", "price"),
             claim(PACK_REVIEW, "40 litre", "contradicted", "quantity"),
             claim(PACK_REVIEW, "15.6 inch", "supported", "quantity"),
             claim(PACK_REVIEW, "rain cover", "unsupported", "feature")]


def test_spans_of_the_hand_made_review():
    assert [c["span"] for c in PACK_GOLD] == ["Kestrel", "2,499", "40 litre", "15.6 inch",
                                              "rain cover"]
    assert all(PACK_REVIEW[c["start"]:c["end"]] == c["span"] for c in PACK_GOLD)


def test_overlap_matching_and_prf():
    metric = [mclaim(PACK_REVIEW, "40 litre", "contradicted"),        # on a gold bad claim
              mclaim(PACK_REVIEW, "15.6 inch", "unsupported"),        # gold says supported
              mclaim(PACK_REVIEW, "2,499", "supported", "price")]     # not a flag
    m = g.match_claims(PACK_GOLD, metric, PACK_REVIEW)
    assert m.n_bad == 2 and m.bad_hit == [True, False]                # rain cover missed
    assert len(m.flags) == 2 and m.flag_ok == [True, False]
    assert m.flag_kind == ["quantity", "quantity"]
    assert m.gold_status == ["none", "supported", "contradicted", "unsupported", "none"]
    p, r, f = g.prf(m.flag_ok, [1] * len(m.flags), m.bad_hit, [1] * m.n_bad)
    assert (float(p), float(r), float(f)) == (0.5, 0.5, 0.5)


def test_partial_overlap_counts_touching_does_not():
    # the metric's span "40" inside the gold "40 litre" overlaps; a span ending where the gold
    # span starts does not
    s, e = span(PACK_REVIEW, "40 litre")
    inside = {"kind": "quantity", "status": "unsupported", "start": s, "end": s + 2,
              "spans": [[s, s + 2]]}
    before = {"kind": "count", "status": "unsupported", "start": s - 4, "end": s,
              "spans": [[s - 4, s]]}
    m = g.match_claims(PACK_GOLD, [inside, before], PACK_REVIEW)
    assert m.flag_ok == [True, False] and m.bad_hit == [True, False]
    assert g.overlaps((0, 5), (4, 9)) and not g.overlaps((0, 5), (5, 9))


def test_every_span_of_a_repeated_metric_claim_is_a_flag():
    text = "The red lamp is lovely. A red shade suits the desk. Red again."
    gold = [claim(text, "red", "contradicted", "colour"),
            claim(text, "red", "contradicted", "colour", nth=1)]
    metric = [mclaim(text, "red", "contradicted", "colour", more=[("red", 1), ("Red", 0)])]
    m = g.match_claims(gold, metric, text)
    assert len(m.flags) == 3
    # the third mention ("Red again") is unlabelled: a repeat of a labelled bad claim by text
    assert m.flag_ok == [True, True, True] and m.bad_hit == [True, True]
    m = g.match_claims(gold, metric)             # without the text: the repeat is a false flag
    assert m.flag_ok == [True, True, False]


def test_prf_edge_cases():
    p, r, f = g.prf([], [], [0, 0], [1, 1])            # no flag at all
    assert np.isnan(p) and r == 0 and f == 0
    p, r, f = g.prf([0], [2], [], [])                 # flags but no gold bad claim
    assert p == 0 and np.isnan(r) and np.isnan(f)
    # pooled over reviews, not averaged per review: 3 of 4 flags right, 3 of 6 bad claims found
    p, r, f = g.prf([2, 1, 0], [2, 1, 1], [2, 1, 0], [2, 2, 2])
    assert (p, r) == (0.75, 0.5) and f == pytest.approx(0.6)
    # one call scores many resamples (the bootstrap): the last axis is the reviews
    p, r, f = g.prf(np.array([[1, 0], [1, 1]]), np.ones((2, 2)), np.array([[1, 0], [1, 1]]),
                    np.ones((2, 2)))
    assert list(f) == [0.5, 1.0]


def _item(text, claims, pid="kestrel:TRAIL28", kind="real", fluency=None, labeller="pass1",
          iid=None):
    return g.GoldItem(id=iid or f"test:{pid}:{abs(hash(text)) % 1000}", kind=kind,
                      split="test", product_id=pid, text=text, claims=claims, fluency=fluency,
                      labeller=labeller)


def test_figures_pool_reviews_and_count_false_flags_on_clean_reviews():
    clean_text = "Comfortable straps and the side pockets hold two bottles."
    clean_gold = [claim(clean_text, "two bottles", "supported", "count")]
    clean2 = "My old bag from another shop was heavier."
    items = [_item(PACK_REVIEW, PACK_GOLD), _item(clean_text, clean_gold),
             _item(clean2, [])]
    matches = [g.match_claims(PACK_GOLD, [mclaim(PACK_REVIEW, "40 litre", "contradicted")]),
               g.match_claims(clean_gold, [mclaim(clean_text, "two", "contradicted", "count")]),
               g.match_claims([], [])]
    h = g.hallucination_figures(items, matches)
    c = h["claims"]
    assert (c["precision"]["value"], c["recall"]["value"]) == (0.5, 0.5)
    assert c["gold_bad_claims"] == 2 and c["metric_flags"] == 2
    assert h["reviews_without_bad_claim"] == 2
    assert h["false_flag_rate"]["value"] == 0.5 and h["false_flag_rate"]["n"] == 2
    assert h["by_kind"]["count"]["false_flag_rate"]["value"] == 0.5
    assert h["by_kind"]["feature"]["recall"]["value"] == 0.0
    assert h["by_kind"]["quantity"]["f1"]["value"] == 1.0
    for f in (c["precision"], c["recall"], c["f1"], h["false_flag_rate"]):
        assert f["lo"] <= f["value"] <= f["hi"]
    assert h["gold_label_vs_metric_status"]["supported"]["contradicted"] == 1


def test_bootstrap_ci_is_deterministic_and_brackets_the_mean():
    from harness.metrics.bootstrap import bootstrap_ci
    x = [1, 0, 1, 1, 0, 1, 1, 1, 0, 1]
    a = bootstrap_ci(lambda v: v.mean(axis=-1), [x])
    assert a == bootstrap_ci(lambda v: v.mean(axis=-1), [x])
    assert a["value"] == 0.7 and a["lo"] < 0.7 < a["hi"] and a["n"] == 10
    assert bootstrap_ci(lambda v: v.mean(axis=-1), [[]])["value"] is None


# --- agreement -----------------------------------------------------------------------------

def test_cohen_kappa_by_hand():
    a = [1, 1, 1, 0, 0, 0, 1, 0, 1, 0]
    b = [1, 1, 0, 0, 0, 1, 1, 0, 1, 0]
    # table: both 1 = 4, a only = 1, b only = 1, both 0 = 4; po = 0.8, pe = .5*.5 + .5*.5 = .5
    assert g.cohen_kappa(a, b) == pytest.approx(0.6)
    assert g._binary_kappa(np.array(a), np.array(b)) == pytest.approx(0.6)
    assert g.cohen_kappa(a, a) == 1.0
    assert np.isnan(g.cohen_kappa([1, 1], [1, 1]))          # one label throughout: undefined


def test_character_level_kappa_by_hand():
    text = "Red kettle, 2 litres."                           # 21 characters
    p1 = [claim(text, "Red", "supported", "colour"),
          claim(text, "2 litres", "contradicted", "quantity")]
    p2 = [claim(text, "Red", "supported", "colour"),
          claim(text, "2 litres", "unsupported", "quantity")]
    assert g.char_labels(text, p1).count("none") == 10
    one = _item(text, p1, pid="lumo:KETTLE1", iid="i1")
    two = _item(text, p2, pid="lumo:KETTLE1", iid="i1", labeller="pass2")
    ag = g.agreement([(one, two)])
    # po = 13/21; marginals none 10, supported 3, contradicted 8 | none 10, supported 3,
    # unsupported 8 -> pe = (10*10 + 3*3) / 21^2 = 109/441; kappa = (273-109)/(441-109)
    assert ag["char_kappa"]["value"] == pytest.approx(164 / 332)
    assert ag["char_table"]["contradicted"]["unsupported"] == 8
    # review level: both passes say "has a bad claim"
    assert ag["review_table"] == {"both bad": 1, "first only": 0, "second only": 0,
                                  "neither": 0}


def test_review_kappa_over_items():
    t_bad = "The lamp is 40 cm tall."
    t_ok = "Nice warm light."
    bad = [claim(t_bad, "40 cm", "contradicted", "quantity")]
    pairs = []
    # pass 1 / pass 2 has-bad: (1,1) x4, (1,0), (0,1), (0,0) x4  -> kappa 0.6 as above
    for n, (x, y) in enumerate([(1, 1)] * 4 + [(1, 0), (0, 1)] + [(0, 0)] * 4):
        a = _item(t_bad if x else t_ok, bad if x else [], iid=f"i{n}")
        b = _item(a.text, (bad if y else []) if x else
                  ([claim(t_ok, "warm", "unsupported", "feature")] if y else []),
                  iid=f"i{n}", labeller="pass2")
        pairs.append((a, b))
    ag = g.agreement(pairs)
    assert ag["items"] == 10 and ag["review_kappa"]["value"] == pytest.approx(0.6)
    assert ag["review_kappa"]["lo"] <= 0.6 <= ag["review_kappa"]["hi"]


def test_primary_labels_come_from_pass1():
    one = _item(PACK_REVIEW, PACK_GOLD, iid="x", labeller="pass2")
    two = _item(PACK_REVIEW, PACK_GOLD[:2], iid="x", labeller="pass1")
    three = _item("Only once.", [], iid="y", labeller="pass2")
    primary, pairs = g.primary_and_second([one, two, three])
    assert [(p.id, p.labeller) for p in primary] == [("x", "pass1"), ("y", "pass2")]
    assert [(a.labeller, b.labeller) for a, b in pairs] == [("pass1", "pass2")]
    same = _item(PACK_REVIEW, PACK_GOLD, iid="x", labeller="pass2")
    assert len(g.primary_and_second([one, same])[0]) == 1       # a line given twice
    one.where, other = "a.jsonl:1", _item(PACK_REVIEW, [], iid="x", labeller="pass2")
    other.where = "a.jsonl:7"
    with pytest.raises(HarnessError, match="labelled again"):
        g.primary_and_second([one, other])
    other.where = "b.jsonl:1"                   # another file: a second pass of the same id
    primary, pairs = g.primary_and_second([one, other])
    assert primary == [one] and pairs == [(one, other)]


# --- halves ----------------------------------------------------------------------------------

def test_halves_are_stable_and_balanced():
    # pinned: a change of the hash would silently move items between dev and test
    assert [g.half_of(p) for p in ("kestrel:TRAIL28", "kestrel:PEAK40", "lumo:KETTLE1",
                                   "lumo:KETTLE2")] == ["dev", "test", "dev", "test"]
    ids = [f"shop:{i:05d}" for i in range(400)]
    assert [g.half_of(p) for p in ids] == [g.half_of(p) for p in ids]
    share = sum(g.half_of(p) == "test" for p in ids) / len(ids)
    assert 0.4 < share < 0.6
    # independent of the data split (which hashes the same ids): the products of the
    # validation and test splits fall in both halves
    from harness.data import split_of
    held_out = [p for p in (f"shop:{i:05d}" for i in range(4000)) if split_of(p) != "train"]
    assert 0.4 < sum(g.half_of(p) == "test" for p in held_out) / len(held_out) < 0.6


# --- reading gold files, joining products ----------------------------------------------------

def _record(pid, product, reviews):
    return {"id": pid, "source": "handmade", "product": product, "review": reviews[0],
            "reviews": [{"text": t, "title": ""} for t in reviews]}


KETTLE = {"title": "Lumo Brew 1.7 L Electric Kettle, 1500 W, Auto Shut-off", "brand": "Lumo",
          "category": ["Home", "Kitchen", "Kettles"], "price": {"amount": 1299.0,
                                                                "currency": "INR"},
          "features": ["1.7 litre capacity", "1500 watt element", "Auto shut-off when dry"]}
KETTLE2 = {**KETTLE, "title": "Lumo Brew Mini 0.8 L Travel Kettle", "features": ["0.8 litre"]}
LAMP = {"title": "Orla Arc Desk Lamp", "brand": "Orla", "category": ["Home", "Lighting"],
        "features": ["Warm white LED"]}
RECORDS = [_record("kestrel:TRAIL28", PACK, [PACK_REVIEW, "Straps are comfy on long walks."]),
           _record("kestrel:PEAK40", {**PACK, "title": "Kestrel Peak 40L Trekking Pack"},
                   ["Carried it up three passes without a complaint."]),
           _record("lumo:KETTLE1", KETTLE, ["Boils water for four cups in no time."]),
           _record("lumo:KETTLE2", KETTLE2, ["Small enough for my suitcase."]),
           _record("lumo:KETTLE3", {**KETTLE, "title": "Lumo Brew 1.7 L Kettle (Blue)"},
                   ["Boils water for four cups in no time."]),          # a variant: same review
           _record("orla:LAMP7", LAMP, ["Lovely soft light at night."])]


def _gold_row(pid, index, text, claims, kind="real", fluency=None, labeller="pass1"):
    return {"id": f"test:{pid}:{index}", "kind": kind, "split": "test", "product_id": pid,
            "review_index": index if kind == "real" else None, "source": None, "text": text,
            "claims": claims, "fluency": fluency, "labeller": labeller}


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_read_gold_names_the_bad_line(tmp_path):
    bad = dict(PACK_GOLD[2], span="41 litre")
    f = _write(tmp_path / "g.jsonl", [_gold_row("kestrel:TRAIL28", 0, PACK_REVIEW, PACK_GOLD),
                                      _gold_row("kestrel:TRAIL28", 0, PACK_REVIEW, [bad])])
    with pytest.raises(HarnessError, match=r"g\.jsonl:2: claims\[0\] span '41 litre'"):
        g.read_gold([f])
    f = _write(tmp_path / "h.jsonl", [_gold_row("kestrel:TRAIL28", 0, PACK_REVIEW,
                                                [dict(PACK_GOLD[0], label="true")])])
    with pytest.raises(HarnessError, match=r"h\.jsonl:1: .*label 'true'"):
        g.read_gold([f])


def test_missing_product_is_one_error(tmp_path):
    f = _write(tmp_path / "g.jsonl", [_gold_row("nowhere:X1", 0, "Fine.", [])])
    with pytest.raises(HarnessError, match=r"g\.jsonl:1: product nowhere:X1 .* not in the "
                                           r"prepared data"):
        g.run_gold([f], RECORDS, parts=("hallucination",))


def test_text_mismatch_is_reported():
    items = [_item(PACK_REVIEW, [], pid="kestrel:TRAIL28"), _item("Not this text.", [],
                                                                  pid="lumo:KETTLE1")]
    items[0].review_index = 0
    items[1].review_index = 0
    assert g.text_mismatches(items, {r["id"]: r for r in RECORDS}) == [items[1].id]


def test_within_category_pairs():
    by_id = {r["id"]: r for r in RECORDS}
    pool = g._pool(RECORDS)
    # the only other backpack: same leaf
    rec, text, level = g.other_review(_item(PACK_REVIEW, []), pool, by_id)
    assert (rec["id"], level) == ("kestrel:PEAK40", "leaf")
    # KETTLE3 shares a review with KETTLE1 (a variant listed twice): KETTLE2 is chosen
    rec, _, level = g.other_review(_item("Hot in a minute.", [], pid="lumo:KETTLE1"), pool,
                                   by_id)
    assert (rec["id"], level) == ("lumo:KETTLE2", "leaf")
    # no other lamp: the deepest shared level (Home), noted
    rec, _, level = g.other_review(_item("Soft light.", [], pid="orla:LAMP7"), pool, by_id)
    assert rec["id"].startswith("lumo:") and level == "depth 1 of 2"
    # stable
    assert g.other_review(_item("Soft light.", [], pid="orla:LAMP7"), pool, by_id)[0] is rec


def _reader(item_id, other, other_text, choice):
    return {"id": item_id, "other_product": other, "reader": choice,
            "other_review_sha256": g.sha256_text(other_text), "confidence": "high",
            "reason": "hand-made", "labeller": "test"}


def test_reader_labels_are_read_apart_and_joined_to_their_own_pair(tmp_path):
    """Reader labels sit in gold files beside gold items; a label counts only for the pair it
    was made on (same other product and review), and the figures are counted by hand."""
    rows = [{"id": f"r{i}", "other_product": "o", "other_review": "other text", "win": win}
            for i, win in enumerate([True, False, True, False, True])]
    labels = {"r0": _reader("r0", "o", "other text", "own"),
              "r1": _reader("r1", "o", "other text", "own"),
              "r2": _reader("r2", "o", "other text", "either"),
              "r3": _reader("r3", "o", "another text", "own"),        # made on another pair
              "r4": _reader("r4", "o", "other text", "other")}
    f = _write(tmp_path / "g.jsonl", [_gold_row("kestrel:TRAIL28", 0, PACK_REVIEW, PACK_GOLD)]
               + list(labels.values()))
    items, reader = g.read_gold_and_reader([f])
    assert len(items) == 1 and set(reader) == set(labels)
    fig = g.reader_figures(rows, reader)
    assert (fig["labelled"], fig["stale"], fig["unlabelled"]) == (4, 1, 0)
    assert fig["choices"] == {"own": 2, "other": 1, "either": 1}
    assert fig["reader_accuracy_decided"]["value"] == pytest.approx(2 / 3)   # r0 r1 own, r4 not
    assert fig["metric_accuracy_decided"]["value"] == pytest.approx(2 / 3)   # r0 r4 won, r1 lost
    assert fig["metric_accuracy_reader_right"]["value"] == pytest.approx(1 / 2)
    assert fig["metric_accuracy_either"]["value"] == 1.0
    bad = _write(tmp_path / "b.jsonl", [dict(labels["r0"], reader="A")])
    with pytest.raises(HarnessError, match=r"b\.jsonl:1: reader 'A' is not one of"):
        g.read_gold([bad])


def test_run_gold_end_to_end_on_hand_made_items(tmp_path):
    """The real metric on hand-made items: the report's shape, the halves and the agreement
    (no claim about the metric's quality here)."""
    rows = [_gold_row("kestrel:TRAIL28", 0, PACK_REVIEW, PACK_GOLD),
            _gold_row("kestrel:PEAK40", 0, RECORDS[1]["reviews"][0]["text"], []),
            _gold_row("lumo:KETTLE1", 0, RECORDS[2]["reviews"][0]["text"],
                      [claim(RECORDS[2]["reviews"][0]["text"], "four cups", "unsupported",
                             "quantity")]),
            _gold_row("lumo:KETTLE2", 0, "Small enough for my suitcase.", [])]
    second = [dict(rows[0], labeller="pass2", claims=PACK_GOLD[:3])]
    f1 = _write(tmp_path / "pass1.jsonl", rows)
    f2 = _write(tmp_path / "pass2.jsonl", second)
    runs = {h: g.run_gold([f1, f2], RECORDS, half=h, parts=("hallucination", "agreement"))
            for h in ("dev", "test", "all")}
    assert runs["all"].report["items"]["in_half"] == 4
    assert runs["dev"].report["items"]["in_half"] + runs["test"].report["items"]["in_half"] == 4
    assert runs["all"].report["items"]["doubly_labelled"] == 1
    rep = runs["all"].report
    assert rep["text_mismatches"] == []
    assert rep["hallucination"]["claims"]["gold_bad_claims"] == 3
    assert rep["agreement"]["items"] == 1
    assert rep["agreement"]["review_table"]["both bad"] == 1
    # the error analysis is always the dev half's
    errs = runs["test"].errors
    assert errs["half"] == "dev" and errs == runs["all"].errors
    dev_ids = {r["id"] for r in rows if g.half_of(r["product_id"]) == "dev"}
    for e in errs["hallucination"]["worst_misses"] + errs["hallucination"]["worst_false_flags"]:
        assert e["id"] in dev_ids
        assert e["span_text"] == e["text"][e["span"][0]:e["span"][1]]
    assert set(rep["acceptance"]) <= set(g.ACCEPTANCE)


def test_cli_missing_product_is_one_error_line(tmp_path):
    from tests._cli import run_cli
    data = tmp_path / "prepared" / "product_review"
    data.mkdir(parents=True)
    for split in ("train", "validation", "test"):
        _write(data / f"{split}.jsonl", RECORDS)
    f = _write(tmp_path / "g.jsonl", [_gold_row("nowhere:X1", 0, "Fine.", [])])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = run_cli(["metrics", "validate", "--gold", str(f), "--data", str(tmp_path / "prepared"),
                   "--only", "hallucination"], env, timeout=300)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "product nowhere:X1" in lines[0] and "g.jsonl:1" in lines[0]


def test_cli_writes_report_and_error_analysis(tmp_path):
    from tests._cli import run_cli
    data = tmp_path / "prepared" / "product_review"
    data.mkdir(parents=True)
    for split in ("train", "validation", "test"):
        _write(data / f"{split}.jsonl", RECORDS)
    rows = [_gold_row("kestrel:TRAIL28", 0, PACK_REVIEW, PACK_GOLD),
            _gold_row("lumo:KETTLE2", 0, "Small enough for my suitcase.", [])]
    f1 = _write(tmp_path / "a.jsonl", rows[:1])
    f2 = _write(tmp_path / "b.jsonl", rows[1:])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = run_cli(["metrics", "validate", "--gold", str(f1), str(f2), "--data",
                   str(tmp_path / "prepared"), "--only", "hallucination", "--half", "all",
                   "--output", str(tmp_path / "out"), "--errors", str(tmp_path / "errors.json")],
                  env, timeout=300)
    assert res.returncode in (0, 1), res.stdout + res.stderr     # 1: below acceptance
    rep = json.loads((tmp_path / "out" / "gold_validation.json").read_text())
    assert rep["items"]["in_half"] == 2 and rep["half"] == "all"
    assert rep["hallucination"]["claims"]["gold_bad_claims"] == 2
    errs = json.loads((tmp_path / "errors.json").read_text())
    assert errs["half"] == "dev" and "worst_misses" in errs["hallucination"]


# --- the committed gold set on the real data ---------------------------------------------------

GOLD_DIR = ROOT / "tests" / "data"
GOLD_REAL = ("gold_reviews_validation.jsonl", "gold_reviews_test.jsonl")
GOLD_SECOND = ("gold_reviews_pass2_validation.jsonl", "gold_reviews_pass2_test.jsonl")
GOLD_READER = ("gold_relevance_reader.jsonl",)
GOLD_GENERATED = tuple(sorted(p.name for p in GOLD_DIR.glob("gold_generated_*.jsonl")))


@pytest.fixture(scope="module")
def gold_records(request):
    """The prepared product_review records the gold set was labelled on: the project's prepared
    data, else prepared now from ../shared/data (skips when neither is on this machine)."""
    from harness.data import data_dir
    root = data_dir()
    if not all((root / "product_review" / f"{s}.jsonl").exists()
               for s in ("train", "validation", "test")):
        root = request.getfixturevalue("prepared_dir")    # skips without ../shared/data
    return g.load_prepared(root)


def _gold_files(names) -> list:
    return [GOLD_DIR / n for n in names if (GOLD_DIR / n).exists()]


# The fixed subset: the test half of the committed gold files (the figures README reports).
# A figure that does not meet its acceptance value (minus its CI half-width) today is a known
# shortfall: a strict xfail with the measured figure (README says so, with the error analysis);
# when a metric fix lifts it, the xfail turns into a failure and the mark is removed. The
# thresholds are issue #13's, never loosened.
KNOWN_SHORTFALLS: dict[str, str] = {
    "claim_f1": "measured 0.537 [0.433, 0.631] on 2026-12-05 (305 test-half reviews with the "
                "gold_generated_D items, 128 gold bad claims; precision 0.740, recall 0.422; "
                "2026-12-04 without them: 0.491): most missed bad claims are unlisted features "
                "and product types in free words that no extractor reads",
    "relevance_accuracy": "measured 0.569 [0.491, 0.641] on 2026-12-05 with the other-brand "
                          "term (167 within-leaf pairs; 0.521 before it): a reader told only "
                          "111 of the 167 pairs apart (0.892 right on those, so ~0.76 over all "
                          "pairs), the metric 0.622 on those 111",
}


# A strict xfail cannot see a shortfall get worse (any failure is the expected one), so each
# known shortfall also has a plain test: it stays at or above the lower bound of the 95% CI it
# was measured with (the same code on the same items gives the same figure: a drop below that
# bound is a regression of the metric, not noise).
SHORTFALL_FLOORS: dict[str, float] = {"claim_f1": 0.433, "relevance_accuracy": 0.491}


def _figure(name):
    marks = [pytest.mark.xfail(strict=True, reason=KNOWN_SHORTFALLS[name])] \
        if name in KNOWN_SHORTFALLS else []
    return pytest.param(name, marks=marks, id=name)


def _not_worse(report, name):
    a = report["acceptance"].get(name)
    assert a is not None, f"{name}: no figure (no gold items for it)"
    assert a["value"] >= SHORTFALL_FLOORS[name], (
        f"{name} = {a['value']:.3f} fell below {SHORTFALL_FLOORS[name]}, the lower CI bound of "
        f"the figure README reports ({KNOWN_SHORTFALLS[name].split(' on ')[0]})")


def _holds(report, name):
    a = report["acceptance"].get(name)
    assert a is not None, f"{name}: no figure (no gold items for it)"
    bound = (f"{a['threshold']} - {a['ci_half_width']:.3f}" if a["op"] == ">=" else
             f"{a['threshold']} + {a['ci_half_width']:.3f}")
    assert a["within_ci"], (f"{name} = {a['value']:.3f} [{a['lo']:.3f}, {a['hi']:.3f}] "
                            f"(n={a['n']} reviews / pairs), wanted {a['op']} {bound}")


def _run(gold_records, files, parts):
    if not _gold_files(GOLD_REAL):
        pytest.skip(f"no committed gold files ({', '.join(GOLD_REAL)}) in {GOLD_DIR}")
    return g.run_gold(files, gold_records, half="test", parts=parts, error_analysis=False).report


@pytest.fixture(scope="module")
def gold_text_report(gold_records):
    return _run(gold_records, _gold_files(GOLD_REAL + GOLD_SECOND + GOLD_GENERATED),
                ("hallucination", "agreement"))


@pytest.mark.parametrize("name", [_figure("claim_f1"), _figure("false_flag_rate")])
def test_gold_hallucination_figures(gold_text_report, name):
    rep = gold_text_report
    assert rep["text_mismatches"] == [], "gold texts differ from the prepared reviews"
    assert rep["hallucination"]["reviews"] >= 100
    _holds(rep, name)


def test_gold_claim_f1_not_worse(gold_text_report):
    _not_worse(gold_text_report, "claim_f1")


def test_gold_agreement_is_reported(gold_text_report):
    ag = gold_text_report["agreement"]
    if not _gold_files(GOLD_SECOND):
        pytest.skip("no second-pass gold files")
    assert ag["items"] >= 30 and ag["review_kappa"]["value"] is not None
    assert ag["char_kappa"]["value"] is not None


@pytest.fixture(scope="module")
def gold_relevance_report(gold_records):
    return _run(gold_records, _gold_files(GOLD_REAL + GOLD_READER), ("relevance",))


@pytest.mark.slow
def test_gold_relevance_not_worse(gold_relevance_report):
    _not_worse(gold_relevance_report, "relevance_accuracy")


@pytest.mark.slow
@pytest.mark.parametrize("name", [_figure("relevance_accuracy")])
def test_gold_relevance_figure(gold_relevance_report, name):
    rep = gold_relevance_report
    assert rep["relevance"]["pairs"] >= 100
    if _gold_files(GOLD_READER):     # the reader labels were made on these very pairs
        r = rep["relevance"]["reader"]
        assert r["labelled"] == rep["relevance"]["pairs"] and r["stale"] == 0
    _holds(rep, name)


@pytest.mark.parametrize("name", [_figure("fluency_accuracy")])   # ~55 s: in the fast suite
def test_gold_fluency_figure(gold_records, name):
    files = _gold_files(GOLD_GENERATED)
    if not files:
        pytest.skip(f"no generated gold files (gold_generated_*.jsonl) in {GOLD_DIR}")
    rep = _run(gold_records, _gold_files(GOLD_REAL) + files, ("fluency",))
    _holds(rep, name)
