"""Claim extraction and normalisation on hand-written tricky cases (units, separators, ranges,
currency, context rules). The products below are invented for these tests."""
from __future__ import annotations

import pytest

from harness.metrics.claims import extract_claims
from harness.metrics.hallucination import check_claims, hallucination_scores
from harness.metrics.units import find_quantities, matches, parse_num

POWER_BANK = {
    "title": "Voltra PowerCell 10000 mAh Power Bank (Black, Pack of 2)",
    "brand": "Voltra", "category": ["Electronics", "Mobile Accessories", "Power Banks"],
    "price": {"amount": 1099.0, "currency": "INR", "list_price": 2499.0,
              "discount_percent": 56.0},
    "rating": 4.2, "rating_count": 24269,
    "features": ["18 W fast charging over USB-C", "Weighs 210 g", "1 year warranty",
                 "Battery backup up to 12 hours for a speaker",
                 "Cable length: 6 Feet (1.82 Meters)"],
    "details": {"Colour": "Black", "Material": "ABS Plastic"},
}


def statuses(product, text):
    return [(c["kind"], c["text"], c["status"]) for c in check_claims(product, text)]


def status_of(product, text, fragment):
    for c in check_claims(product, text):
        if fragment.lower() in c["text"].lower():
            return c["status"]
    return None


@pytest.mark.parametrize("s,v", [("1,099", 1099.0), ("1,00,000", 100000.0), ("24,269", 24269.0),
                                 ("1.5", 1.5), (".5", 0.5)])
def test_parse_num_separators(s, v):
    assert parse_num(s) == v


def test_parse_num_k_suffix():
    assert parse_num("1.5", "k") == 1500.0


@pytest.mark.parametrize("a,b", [("10000 mAh", "10 Ah"), ("10,000mAh", "10Ah"),
                                 ("6 ft", "1.82 m"), ("1.5L", "1500 ml"), ("2 kg", "2000 g"),
                                 ("55 inch", "139.7 cm"), ("1 year", "12 months"),
                                 ("10k mAh", "10000 mAh"), ("65W", "65 watts")])
def test_units_convert_to_the_same_amount(a, b):
    qa, qb = find_quantities(a)[0], find_quantities(b)[0]
    assert qa.dim == qb.dim
    assert matches(qa.lo, qa.hi, None, qb.lo, qb.hi)


@pytest.mark.parametrize("a,b", [("10000 mAh", "1000 mAh"), ("6 ft", "6 m"), ("1.5 L", "1.5 ml"),
                                 ("2 kg", "2 g")])
def test_units_different_amounts_do_not_match(a, b):
    qa, qb = find_quantities(a)[0], find_quantities(b)[0]
    assert not matches(qa.lo, qa.hi, None, qb.lo, qb.hi)


def test_range_and_bounds():
    q = find_quantities("about 10-12 hours")[0]
    assert (q.lo, q.hi, q.qualifier) == (10.0, 12.0, "approx")
    assert matches(q.lo, q.hi, q.qualifier, 12.0, 12.0)        # 12 h inside the stated range
    under = find_quantities("under 250 g")[0]
    assert under.qualifier == "lt" and matches(under.lo, under.hi, "lt", 210.0, 210.0)
    assert not matches(under.lo, under.hi, "lt", 300.0, 300.0)


@pytest.mark.parametrize("text", ["It weighs 5 g", "a 2 l jug"])
def test_ambiguous_single_letter_units_need_the_right_form(text):
    # "5 g" is a weight; "2 l" (lower-case, spaced) is too ambiguous to read as litres
    dims = [q.dim for q in find_quantities(text)]
    assert dims == (["weight"] if "weighs" in text else [])


def test_network_generations_are_not_weights():
    assert [q.dim for q in find_quantities("Supports 5G network and 4G LTE")] == []


@pytest.mark.parametrize("text", ["Got it for ₹1,099.", "Paid Rs. 1099/- only", "Rs1099",
                                  "INR 1,099", "1099 rupees well spent", "around ₹1.1k"])
def test_price_forms_match_the_price(text):
    assert status_of(POWER_BANK, text, "1") == "supported", text


def test_price_that_differs_is_contradicted_and_list_price_supported():
    assert status_of(POWER_BANK, "Bought it for ₹1,499.", "1,499") == "contradicted"
    assert status_of(POWER_BANK, "MRP is ₹2,499.", "2,499") == "supported"


def test_currency_mismatch_is_not_support():
    assert status_of(POWER_BANK, "Only $1099 for this!", "1099") == "contradicted"


def test_discount_percent_and_saving():
    assert status_of(POWER_BANK, "Got 56% off on it.", "56%") == "supported"
    assert status_of(POWER_BANK, "It was 70% off.", "70%") == "contradicted"
    assert status_of(POWER_BANK, "I saved ₹1,400 on it.", "1,400") == "supported"


def test_word_endings_are_not_currency():
    # "offers" ends in "rs": must not read "rs 1800" as a price
    kinds = [c.kind for c in extract_claims("It offers 1800 W of power.")[0]]
    assert kinds == ["quantity"]


def test_capacity_weight_power_warranty():
    text = ("The 10,000mAh cell (10 Ah) charges fast at 18W, weighs 0.21 kg, has a 12 month "
            "warranty and a 6 ft cable.")
    got = {t: s for k, t, s in statuses(POWER_BANK, text)}
    assert got["10,000mAh"] == got["18W"] == "supported"
    assert got["0.21 kg"] == got["12 month"] == got["6 ft"] == "supported"
    # "10,000mAh" and "10 Ah" state one fact: one claim with both mentions
    cap = [c for c in check_claims(POWER_BANK, text) if c["attribute"] == "charge"]
    assert len(cap) == 1 and cap[0]["mentions"] == 2 and len(cap[0]["spans"]) == 2


def test_changed_numbers_are_contradicted():
    text = "The 20000 mAh cell charges at 25 W, weighs 500 g and has a 3 year warranty."
    got = [s for k, t, s in statuses(POWER_BANK, text)]
    assert got == ["contradicted"] * 4


def test_usage_periods_are_not_claims():
    text = "I have been using it for 2 months. After 3 weeks of use it still works. 2 days ago."
    assert statuses(POWER_BANK, text) == []


def test_battery_range_claim():
    assert status_of(POWER_BANK, "Battery backup is 10-12 hours.", "hours") == "supported"
    assert status_of(POWER_BANK, "Battery backup is 30 hours.", "hours") == "contradicted"


def test_pack_counts():
    assert status_of(POWER_BANK, "Comes as a pack of two.", "pack of") == "supported"
    assert status_of(POWER_BANK, "A set of 3 is great.", "set of") == "contradicted"
    # how many the reviewer bought is not the pack size
    assert statuses(POWER_BANK, "I bought 3 pieces for my family.") == []
    multi = {"title": "Cafe Gift Cards, Multipack of 3", "category": ["Gift Cards"]}
    assert status_of(multi, "The 3 pack is handy.", "3 pack") == "supported"


def test_ratings_personal_vs_product():
    assert status_of(POWER_BANK, "It is rated 4.2 out of 5 on Amazon.", "4.2") == "supported"
    assert status_of(POWER_BANK, "Average rating of 3.1 stars.", "3.1") == "contradicted"
    assert statuses(POWER_BANK, "I give it 5 stars. 5/5 from me.") == []
    assert status_of(POWER_BANK, "Over 20,000 ratings!", "ratings") == "supported"


def test_colour_context():
    assert status_of(POWER_BANK, "The black finish looks good.", "black") == "supported"
    assert status_of(POWER_BANK, "Mine came in red.", "red") == "contradicted"
    # a colour naming something else is not a claim about the product
    assert statuses(POWER_BANK, "The blue light blinks. It looks good on my white table.") == []
    # ambiguous colour words need a colour context
    assert statuses(POWER_BANK, "Silver lining: it works.") == []
    assert status_of(POWER_BANK, "Mine came in silver colour.", "silver") == "contradicted"


def test_material_families():
    assert status_of(POWER_BANK, "Plastic body, but sturdy.", "plastic") == "supported"
    assert status_of(POWER_BANK, "The aluminium body is nice.", "aluminium") == "contradicted"


def test_features_negation_and_connector_family():
    assert status_of(POWER_BANK, "Fast charging works well.", "fast charging") == "supported"
    assert status_of(POWER_BANK, "It also has wireless charging.", "wireless") == "unsupported"
    assert status_of(POWER_BANK, "The Micro USB port is handy.", "micro usb") == "contradicted"
    assert statuses(POWER_BANK, "There is no wireless charging.") == []


def test_brands_own_other_and_other_device():
    assert status_of(POWER_BANK, "Voltra did a good job.", "voltra") == "supported"
    assert status_of(POWER_BANK, "This Samsung power bank is great.", "samsung") == \
        "contradicted"
    # the reviewer's own phone is not a claim about the product's brand; that the power bank
    # works with a phone is a compatibility claim (the JSON names no phone: unsupported)
    assert statuses(POWER_BANK, "Works well with my Samsung phone.") == [
        ("compatibility", "phone", "unsupported")]
    # shops are never another brand
    assert statuses(POWER_BANK, "Bought it on Amazon.") == []


def test_model_series_numbers():
    buds = {"title": "Sonique Rockerz 255 Pro Wireless Earbuds", "brand": "Sonique",
            "category": ["Electronics", "Headphones"]}
    assert status_of(buds, "The Rockerz 255 sounds good.", "rockerz") == "supported"
    assert status_of(buds, "The Rockerz 450 sounds good.", "rockerz") == "contradicted"


def test_versions():
    spk = {"title": "Tono Mini Speaker, Bluetooth 5.3, IPX5", "category": ["Speakers"]}
    assert status_of(spk, "Bluetooth 5.3 pairs fast.", "5.3") == "supported"
    assert status_of(spk, "Bluetooth 5.0 pairs fast.", "5.0") == "contradicted"
    assert status_of(spk, "It is IPX7 rated.", "ipx7") == "contradicted"


def test_review_level_scores_and_determinism():
    text = "The 20000 mAh Voltra power bank is black, costs ₹1,099 and has wireless charging."
    a = hallucination_scores(POWER_BANK, text)
    b = hallucination_scores(POWER_BANK, text)
    assert a == b
    assert a["claims_found"] == 5 and a["unsupported"] == 2 and a["contradicted"] == 1
    assert a["hallucination_rate"] == pytest.approx(2 / 5) and a["contradiction"] == 1.0
    kinds = {c["kind"]: c["status"] for c in a["hallucination_claims"]}
    assert kinds == {"quantity": "contradicted", "brand": "supported", "colour": "supported",
                     "price": "supported", "feature": "unsupported"}
    empty = hallucination_scores(POWER_BANK, "")
    assert empty["claims_found"] == 0 and empty["hallucination_rate"] == 0.0


# --- issue #13 fixes (found on the gold set's development half) -------------------------------

HUB = {"title": "Voltra 4-in-1 USB-C Hub for MacBook and Windows Laptops, 1920x1080 HDMI (Grey)",
       "brand": "Voltra", "category": ["Computers", "Accessories", "USB Hubs"],
       "features": ["4K and 1920x1080 output", "Works with laptops and tablets with USB-C",
                    "Aluminium body", "10 Y Warranty"]}


def test_compatibility_claims():
    assert statuses(HUB, "Works great with my tablet.") == [
        ("compatibility", "tablet", "supported")]
    # a device the title names is the product's own kind of use, not a claim to check
    assert statuses(HUB, "Works great with my laptop.") == []
    # a device the JSON never names; a specific one is not supported by the general word
    assert statuses(HUB, "Not compatible with my phone.") == [
        ("compatibility", "phone", "unsupported")]
    assert status_of(HUB, "Works with my iPad.", "ipad") == "unsupported"
    # denying a device the JSON names contradicts it
    assert status_of(HUB, "It does not work with tablets at all.", "tablets") == "contradicted"
    # no compatibility cue, or another thing named after the device: no claim
    assert statuses(HUB, "My laptop was slow before.") == []
    assert statuses(HUB, "I keep it in my laptop bag.") == []
    # "work" the noun is no cue ("from reading to late night work, and ... my phone")
    assert statuses(HUB, "Bright from reading to late night work, and it charges my phone.") == []


def test_brand_naming_another_device_is_not_a_brand_claim():
    assert statuses(POWER_BANK, "Tested it on my sister's MSI gf63 laptop.") == []
    assert statuses(POWER_BANK, "An accessory for an Apple product should be certified.") == []
    assert status_of(POWER_BANK, "This Samsung power bank is great.", "samsung") == \
        "contradicted"


def test_spec_list_reads_only_its_first_value():
    text = "The 126-inch 50-inch (70.5 mm) 1.25-inch (3.3 mm) 2.5-inch (6.4 mm)"
    tv = {"title": "Kodex 126 cm (50 inches) LED TV", "category": ["TVs"]}
    got = [(c["text"], c["status"]) for c in check_claims(tv, text)]
    assert got == [("126-inch", "contradicted")]


def test_purchase_offers_and_bare_percentages_are_not_listing_claims():
    assert statuses(POWER_BANK, "Got 10% discount from my HDFC debit card.") == []
    assert statuses(POWER_BANK, "Love getting 5% back with my card.") == []
    assert statuses(POWER_BANK, "It charged my phone to 80% in an hour.") == []
    assert status_of(POWER_BANK, "Bought it at 56% off.", "56%") == "supported"


def test_duration_takes_the_nearest_role_and_listing_units():
    text = "With a 10-year warranty and a 10-year battery life, it is fine."
    got = [(c["text"], c["attribute"], c["status"]) for c in check_claims(HUB, text)]
    assert got == [("10-year", "warranty", "supported"), ("10-year", "battery", "unsupported")]
    assert status_of(HUB, "A crisp 1080p picture.", "1080p") == "supported"


def test_size_words_and_colour_options():
    assert status_of(POWER_BANK, "It is lightweight and compact.", "lightweight") == "unsupported"
    light = {**POWER_BANK, "features": POWER_BANK["features"] + ["Light in weight"]}
    assert status_of(light, "It is lightweight.", "lightweight") == "supported"
    plain = {"title": "Voltra USB Hub", "category": ["USB Hubs"]}
    assert status_of(plain, "Available in various colours.", "colours") == "unsupported"
    assert status_of(HUB, "Available in various colours.", "colours") == "contradicted"
