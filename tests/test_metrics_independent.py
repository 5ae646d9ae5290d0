"""Planted cases written by hand, independently of the metric's word lists and templates
(issue #13, item 3): a fictional product, sentences a reviewer or a model could write about it
(paraphrased numbers, spelled-out numbers, unit variants, "half the price", another maker's
name), and control sentences that must NOT be flagged (the true value restated in other units,
another product the reviewer owns, an app or a shop named, a usage period).

Nothing here is generated from harness/metrics/lexicon.py: the brand names are invented (so no
brand list can know them) and the sentences were written from the product card below. A case
the metric gets wrong today is a strict xfail with the reason, so that a fix shows up."""
from __future__ import annotations

import pytest

from harness.metrics.hallucination import check_claims

# An invented product: no list of the metric names "Quillon" or "Brevora".
KETTLE = {
    "title": "Quillon Aerobrew 1.2 L Cordless Electric Kettle, 1350 W, Stainless Steel Body",
    "brand": "Quillon",
    "category": ["Home & Kitchen", "Small Appliances", "Kettles"],
    "price": {"amount": 1899.0, "currency": "INR", "list_price": 2999.0,
              "discount_percent": 37.0},
    "rating": 4.1, "rating_count": 812,
    "features": ["1.2 litre capacity, enough for 5 cups",
                 "1350 watt concealed element",
                 "Auto shut-off and boil-dry protection",
                 "2 year manufacturer warranty",
                 "Cord length 75 cm, 360 degree swivel base"],
}


def flags(text: str) -> list[tuple[str, str]]:
    """(span text, status) of every claim the metric does not call supported."""
    return [(text[s:e], c["status"]) for c in check_claims(KETTLE, text)
            if c["status"] != "supported" for s, e in c["spans"]]


def flagged(text: str, fragment: str) -> bool:
    return any(fragment.lower() in span.lower() or span.lower() in fragment.lower()
               for span, _ in flags(text))


# (sentence, the fragment that states something the card contradicts or never says)
WRONG = [
    ("It holds two litres, plenty for the whole family.", "two litres"),
    ("A three-year warranty is generous for this price.", "three-year"),
    ("It pulls 2000 watts, which explains how fast it is.", "2000 watts"),
    ("Nice that it is available in many colours.", "many colours"),
    ("The cord is a good 1.5 metres long.", "1.5 metres"),
    ("Paid Rs 3,499 for it last week.", "3,499"),
    ("I got it for half the price on a sale.", "half the price"),
    ("This Brevora kettle boils quickly.", "Brevora"),
    ("It weighs about 3 kg empty.", "3 kg"),
    ("Makes tea for eight cups in one go.", "eight cups"),
    ("It is compatible with my induction hob.", "induction"),
]

# Sentences that restate the card or talk about something else: no flag at all.
RIGHT = [
    "It holds 1,200 ml, which is five cups of tea.",
    "The 0.75 m cord reaches the socket easily.",
    "A 1350W kettle from Quillon, and it shows.",
    "Two years of warranty from the maker.",
    "It is far better than the Brevora one it replaced.",
    "I ordered it through the Swiggy app.",
    "Been using it for 3 months now, no complaints.",
    "My old Zantix kettle took twice as long.",
    "Bought two of them, one for my parents.",
    "It switches itself off when the water boils.",
]

KNOWN_GAPS = {
    "It is compatible with my induction hob.":
        "'hob' / 'induction' are not device words of the compatibility extractor",
}


def _case(text, *rest):
    reason = KNOWN_GAPS.get(text)
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(text, *rest, marks=marks, id=text[:40])


@pytest.mark.parametrize("text,fragment", [_case(t, f) for t, f in WRONG])
def test_wrong_or_unstated_fact_is_flagged(text, fragment):
    assert flagged(text, fragment), flags(text)


@pytest.mark.parametrize("text", [_case(t) for t in RIGHT])
def test_control_sentence_is_not_flagged(text):
    assert flags(text) == []


def test_brand_found_by_shape_not_by_a_list():
    """Names no list holds: a capitalised name between 'this' / 'the' and the product's own noun
    is its maker; the product's own brand is supported, another one contradicted; the same
    name on another kind of thing, or in a comparison, is not a claim about the product."""
    from harness.metrics import lexicon as lx
    assert not any(lx.brand_key(b) in ("brevora", "quillon", "zantix")
                   for b in lx.known_brands())
    own = check_claims(KETTLE, "This Quillon kettle looks smart.")
    assert [(c["kind"], c["status"]) for c in own] == [("brand", "supported")]
    other = check_claims(KETTLE, "The Brevora kettle I got is great.")
    assert [(c["kind"], c["text"], c["status"]) for c in other] == \
        [("brand", "Brevora", "contradicted")]
    assert check_claims(KETTLE, "I keep it next to the Brevora toaster.") == []
    assert check_claims(KETTLE, "It is better than the Brevora kettle.") == []
    # English words in that place are not names ("this Electric kettle", "the Steel kettle")
    assert [c["kind"] for c in check_claims(KETTLE, "This Electric kettle works.")] == []


def test_parts_in_free_words_use_the_catalogue_vocabulary(monkeypatch):
    """'comes with X' / 'no X' where X is a word the catalogue's listings use for a part: checked
    against the card's words (the vocabulary is set here by hand; in a run it is counted from
    the registered catalogue)."""
    from harness.metrics import lexicon as lx
    monkeypatch.setattr(lx, "part_words", lambda: frozenset({"thermometer", "base", "filter"}))
    text = "The kettle comes with a built-in thermometer display."
    assert flags(text) == [("thermometer", "unsupported")]
    assert flags("There is no swivel base, sadly.") == [("base", "contradicted")]
    assert flags("It has no filter.") == [("filter", "unsupported")]
    assert flags("Swivel base not supported on mine.") == [("base", "contradicted")]
    # the reviewer's own usage, and experience nouns, are not parts
    assert flags("I used it without a filter for a month.") == []
    assert flags("No problems so far.") == []
