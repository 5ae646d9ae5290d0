"""Hallucination: every checkable claim of a review checked against the product JSON.

A claim is `supported` (the JSON states it, after normalisation: units, separators, currency,
ranges, colour/material families), `contradicted` (the JSON states that attribute with another
value: "2 m" for a 1.2 m cable, "red" for a black product, another brand) or `unsupported`
(the JSON says nothing about it: an invented feature, a pack size for a single item).

Per review: claims_found, unsupported (incl. contradicted), contradicted, hallucination_rate
(unsupported / claims, 0 without claims), contradiction (1 if any), and the per-claim detail.
"""
from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache

from . import lexicon as lx
from .claims import (DEVICE_GROUPS, NOT_THE_DEVICE, Claim, _Spans, count_claims, extract_claims,
                     money_claims, noun_count_candidates, percent_claims, quantity_claims,
                     rating_claims, singular, version_claims)
from .units import matches

SUPPORTED, UNSUPPORTED, CONTRADICTED = "supported", "unsupported", "contradicted"
# Words after a number that are never a countable product part ("2 days", "5 stars").
NOT_COUNT_NOUNS = {"year", "month", "day", "week", "hour", "minute", "time", "star", "rs",
                   "rupee", "and", "or", "to", "of", "in", "x", "out", "for", "with", "the", "a",
                   "is", "are", "was", "more", "less", "percent", "pack", "piece", "pc", "unit",
                   "pair", "set", "off", "by", "on", "at"}


def _flat_lines(product: dict) -> list[tuple[str, str]]:
    """(field, line) pairs: everything the JSON says, as text."""
    lines = [("title", product.get("title", "")), ("brand", product.get("brand", ""))]
    lines += [("category", c) for c in product.get("category", [])]
    lines += [("feature", f) for f in product.get("features", [])]
    lines += [(f"details:{k}", f"{k}: {v}") for k, v in (product.get("details") or {}).items()]
    return [(f, t) for f, t in lines if t]


@dataclass
class Facts:
    text: str                                  # lower-cased flat text
    alnum: str                                 # only [a-z0-9]
    brand: str | None
    currency: str | None
    quantities: list[tuple[str, str, float, float, str]] = field(default_factory=list)
    money: list[tuple[float, float, str]] = field(default_factory=list)
    savings: list[float] = field(default_factory=list)
    discounts: list[float] = field(default_factory=list)
    percents: list[float] = field(default_factory=list)
    rating: float | None = None
    rating_count: int | None = None
    counts: dict = field(default_factory=lambda: defaultdict(set))
    noun_counts: dict = field(default_factory=lambda: defaultdict(set))
    versions: dict = field(default_factory=lambda: defaultdict(set))
    series: dict = field(default_factory=lambda: defaultdict(set))
    colours: set = field(default_factory=set)
    colour_attr: set = field(default_factory=set)
    materials: set = field(default_factory=set)
    material_attr: set = field(default_factory=set)
    features: set = field(default_factory=set)
    subject: set = field(default_factory=set)  # words naming the product (title, category)
    words: set = field(default_factory=set)    # every word of the JSON, singular


def _fmt(v: float) -> str:
    return f"{v:g}" if abs(v) < 1e6 else f"{v:.3g}"


def build_facts(product: dict) -> Facts:
    lines = _flat_lines(product)
    text = "\n".join(t for _, t in lines)
    price = product.get("price") or {}
    f = Facts(text=text.lower(), alnum=re.sub(r"[^a-z0-9]", "", text.lower()),
              brand=lx.brand_key(product["brand"]) if product.get("brand") else None,
              currency=price.get("currency"))
    for key in ("amount", "list_price"):
        if price.get(key) is not None:
            f.money.append((float(price[key]), float(price[key]), f"price.{key}={price[key]:g}"))
    if price.get("amount") is not None and price.get("list_price") is not None:
        f.savings.append(float(price["list_price"]) - float(price["amount"]))
        f.discounts.append(round(100 * (1 - price["amount"] / price["list_price"]), 1))
    if price.get("discount_percent") is not None:
        f.discounts.append(float(price["discount_percent"]))
    f.subject = {w.rstrip("s") for t in [product.get("title", "")] + product.get("category", [])
                 for w in re.findall(r"[a-z]{3,}", t.lower())}
    f.subject |= {w + "s" for w in f.subject}
    f.words = {singular(w) for w in re.findall(r"[a-z]{3,}", text.lower())}
    f.rating = product.get("rating")
    f.rating_count = product.get("rating_count")
    for fld, line in lines:
        # listings glue values to words ("performance.1.5m LONG", "... Gen -1.5m (Black)")
        line = re.sub(r"(?<=[A-Za-z])\.(?=\d)|(?<=\s)-(?=\d)", " ", line)
        # a resolution "1920x1080" states the "1080p" a review may give
        for m in re.finditer(r"(?<!\d)(\d{3,4})\s?[x×*]\s?(\d{3,4})(?!\d)", line):
            h = float(min(int(m.group(1)), int(m.group(2))))
            f.quantities.append(("resolution", "resolution", h, h, m.group(0)))
        spans, found = _Spans(), []
        for fn in (money_claims, percent_claims, rating_claims, version_claims):
            fn(line, spans, found)
        quantity_claims(line, spans, found, keep_roleless=True)
        count_claims(line, spans, found)
        for c in found:
            if c.kind == "quantity":
                f.quantities.append((c.attribute, c.extra["dimension"], c.value[0], c.value[1],
                                     c.text))
            elif c.kind == "price":
                f.money.append((c.value[0], c.value[1], c.text))
            elif c.kind == "discount" and c.attribute == "discount_percent":
                f.discounts.append(c.value)
            elif c.kind in ("percent",):
                f.percents.append(c.value)
            elif c.kind == "count":
                f.counts[c.attribute].add(c.value)
            elif c.kind == "version":
                f.versions[c.attribute].add(c.value)
        for c in noun_count_candidates(line, spans):
            for n in c.extra["nouns"]:
                if n not in NOT_COUNT_NOUNS:
                    f.noun_counts[n].add(c.value)
        if fld == "title":
            head = " ".join(line.split()[:6])
            for m in re.finditer(r"\b([A-Za-z][A-Za-z+]{2,})\s(\d{2,4}[A-Za-z]?)\b", head):
                if not re.search(r"\b(?:for|with|compatible)\b", head[:m.start()], re.I):
                    f.series[m.group(1).lower()].add(m.group(2).lower())
        is_colour_field = fld == "title" or re.match(r"details:.*colou?r", fld, re.I)
        is_material_field = fld == "title" or re.match(r"details:.*material", fld, re.I)
        for name, rx in _COLOUR_RX:
            if rx.search(line):
                f.colours.add(name)
                if is_colour_field:
                    f.colour_attr.add(name)
        for name, rx in _MATERIAL_RX:
            if rx.search(line):
                f.materials.add(name)
                if is_material_field:
                    f.material_attr.add(name)
        for name, rx in _FEATURE_RX:
            if rx.search(line):
                f.features.add(name)
    return f


_COLOUR_RX = lx.compile_alternatives({**lx.COLOURS, **lx.AMBIGUOUS_COLOURS})
_MATERIAL_RX = lx.compile_alternatives(lx.MATERIALS)
_FEATURE_RX = lx.compile_alternatives(lx.FEATURES)
COLOUR_FAMILY = {"navy": "blue", "maroon": "red", "violet": "purple", "lavender": "purple",
                 "indigo": "blue", "teal": "green", "turquoise": "blue", "cyan": "blue",
                 "magenta": "pink", "khaki": "beige", "mustard": "yellow", "charcoal": "grey",
                 "silver": "grey", "cream": "white", "ivory": "white", "rose": "pink",
                 "wine": "red", "olive": "green", "mint": "green", "coral": "orange",
                 "peach": "orange", "tan": "brown", "bronze": "brown", "champagne": "gold"}
GENERIC_MATERIALS = {"plastic", "metal", "fabric", "rubber", "wood"}


# --- checkers: claim, facts -> (status, evidence) ------------------------------------------

def _check_quantity(c: Claim, f: Facts):
    lo, hi = c.value
    same = [q for q in f.quantities if q[1] == c.extra["dimension"]
            and (c.extra["dimension"] != "duration" or q[0] in (c.attribute, "duration"))]
    for attr, _, flo, fhi, txt in same:
        if matches(lo, hi, c.qualifier, flo, fhi, c.extra.get("precision", 0.0)):
            return SUPPORTED, txt
    strict = [q for q in same if q[0] == c.attribute]
    if strict:
        return CONTRADICTED, "JSON: " + "; ".join(q[4] for q in strict[:3])
    return UNSUPPORTED, ""


def _check_price(c: Claim, f: Facts):
    lo, hi = c.value
    cur = c.extra.get("currency")
    if c.attribute == "saving":
        for s in f.savings:
            if matches(lo, hi, c.qualifier, s, s, c.extra.get("precision", 0.5)):
                return SUPPORTED, f"list price - price = {_fmt(s)}"
        return (CONTRADICTED, f"saving {_fmt(f.savings[0])}") if f.savings else (UNSUPPORTED, "")
    if not (cur and f.currency and cur != f.currency):
        for flo, fhi, txt in f.money:
            if matches(lo, hi, c.qualifier, flo, fhi, c.extra.get("precision", 0.5)):
                return SUPPORTED, txt
    if f.money:
        return CONTRADICTED, "JSON: " + "; ".join(
            f"{f.currency or ''} {_fmt(m[0])}".strip() for m in f.money[:3])
    return UNSUPPORTED, ""


def _check_discount(c: Claim, f: Facts):
    if c.attribute == "saving":
        return _check_price(c, f)
    for d in f.discounts:
        if matches(c.value, c.value, c.qualifier, d, d, 1.5):
            return SUPPORTED, f"discount {_fmt(d)}%"
    return (CONTRADICTED, f"discount {_fmt(f.discounts[0])}%") if f.discounts else \
        (UNSUPPORTED, "")


def _check_percent(c: Claim, f: Facts):
    """A bare percentage (no discount context) is checked only when the JSON states one: in
    real reviews one the JSON does not state is nearly always the reviewer's own figure
    ("charged 80% in 1 hr", "a 20% tip", "85-90% accurate"), not a claim of the listing."""
    for p in f.percents + f.discounts:
        if matches(c.value, c.value, c.qualifier, p, p, 0.5):
            return SUPPORTED, f"{_fmt(p)}%"
    return (UNSUPPORTED, "JSON: " + "/".join(f"{_fmt(p)}%" for p in f.percents[:3])) \
        if f.percents else None


def _check_rating(c: Claim, f: Facts):
    if f.rating is None:
        return UNSUPPORTED, ""
    ok = abs(c.value - f.rating) <= (0.05 if c.value != int(c.value) else 0.5)
    return (SUPPORTED if ok else CONTRADICTED), f"rating {f.rating:g}"


def _check_rating_count(c: Claim, f: Facts):
    if f.rating_count is None:
        return UNSUPPORTED, ""
    ok = matches(c.value, c.value, c.qualifier, f.rating_count, f.rating_count,
                 c.extra.get("precision", 0.5))
    return (SUPPORTED if ok else CONTRADICTED), f"rating_count {f.rating_count}"


def _check_count(c: Claim, f: Facts):
    if c.attribute == "noun_count":
        for n in c.extra["nouns"]:
            if n in f.noun_counts:
                vals = f.noun_counts[n]
                ok = c.value in vals
                return (SUPPORTED if ok else CONTRADICTED), \
                    f"{'/'.join(_fmt(v) for v in sorted(vals))} {n}"
        return None  # not checkable: the JSON counts no such thing
    vals = f.counts.get(c.attribute) or set()
    if c.value in vals:
        return SUPPORTED, f"{c.attribute} {_fmt(c.value)}"
    if vals:
        return CONTRADICTED, f"{c.attribute} {'/'.join(_fmt(v) for v in sorted(vals))}"
    if c.attribute == "pack" and c.value == 1:
        return SUPPORTED, "single item"
    return UNSUPPORTED, ""


def _check_version(c: Claim, f: Facts):
    vals = f.versions.get(c.attribute) or set()
    if c.value in vals:
        return SUPPORTED, f"{c.attribute} {c.value}"
    return (CONTRADICTED, f"{c.attribute} {'/'.join(map(str, sorted(vals, key=str)))}") if vals \
        else (UNSUPPORTED, "")


def _check_model(c: Claim, f: Facts):
    if c.attribute == "model_series":
        series = c.extra["series"]
        if series not in f.series:
            return None  # "under 500", "iPhone 13": not a model of this product's series
        if c.value in f.series[series] or re.sub(r"[^a-z0-9]", "", series + c.value) in f.alnum:
            return SUPPORTED, f"{series} {'/'.join(sorted(f.series[series]))}"
        return CONTRADICTED, f"{series} {'/'.join(sorted(f.series[series]))}"
    return (SUPPORTED, "in JSON text") if c.value in f.alnum else (UNSUPPORTED, "")


def _check_brand(c: Claim, f: Facts):
    key = c.value
    if (f.brand and (key == f.brand or key in f.brand or f.brand in key)) or key in f.alnum:
        return SUPPORTED, f"brand {f.brand}" if f.brand else "in JSON text"
    if c.extra.get("other_context"):
        return None  # "works with my Samsung", "better than boAt": not about this product
    return (CONTRADICTED, f"brand {f.brand}") if f.brand else (UNSUPPORTED, "")


def _check_colour(c: Claim, f: Facts):
    if c.attribute == "colour_options":   # "available in various colours"
        if len(f.colour_attr) >= 2 or re.search(r"colou?rs? (?:may vary|available)|"
                                                r"multi-?colou?r|assorted", f.text):
            return SUPPORTED, "colours: " + "/".join(sorted(f.colour_attr))
        return (CONTRADICTED, "colour " + "/".join(sorted(f.colour_attr))) if f.colour_attr \
            else (UNSUPPORTED, "")
    name = c.value
    fam = COLOUR_FAMILY.get(name, name)
    if name in f.colours or any(COLOUR_FAMILY.get(x, x) == fam for x in f.colours):
        return SUPPORTED, "colour in JSON"
    if f.colour_attr:
        return CONTRADICTED, "colour " + "/".join(sorted(f.colour_attr))
    return UNSUPPORTED, ""


def _check_material(c: Claim, f: Facts):
    name = c.value
    fam = lx.MATERIALS[name][1]
    if name in f.materials or (name in GENERIC_MATERIALS and
                               any(lx.MATERIALS[m][1] == fam for m in f.materials)):
        return SUPPORTED, "material in JSON"
    if f.material_attr:
        return CONTRADICTED, "material " + "/".join(sorted(f.material_attr))
    return UNSUPPORTED, ""


def _check_feature(c: Claim, f: Facts):
    if c.attribute == "part":   # a part / capability in free words
        named = c.value in f.words
        if c.extra.get("negated"):
            if named and re.search(r"\b(?:no|without|free of|zero|non)[- ](?:\w+[- ]){0,2}"
                                   + re.escape(c.value), f.text):
                return SUPPORTED, f"JSON: no {c.value}"   # "no fees" restated
        return _named(c, named)
    name = c.value
    if name in f.features:
        return SUPPORTED, "feature in JSON"
    fam = lx.FEATURES[name][1]
    rivals = [x for x in f.features if fam and lx.FEATURES[x][1] == fam]
    if rivals:
        return CONTRADICTED, "JSON: " + "/".join(sorted(rivals))
    return UNSUPPORTED, ""


_DEVICE_GROUP_RX = {g: re.compile(r"(?<![a-z])(?:" + rx + r")(?![a-z])" + NOT_THE_DEVICE, re.I)
                    for g, rx in DEVICE_GROUPS.items()}


# A general device word is supported by the JSON naming a specific one ("phone" by "iPhone");
# a specific one only by itself ("iPhone" is not supported by "smartphones").
DEVICE_SUPPORTED_BY = {"phone": ("phone", "iphone"), "tablet": ("tablet", "ipad"),
                       "laptop": ("laptop", "macbook")}


def _check_compatibility(c: Claim, f: Facts):
    """A device the JSON names (any word of its group) supports 'works with X'; a denial of a
    named device contradicts; a device the JSON never names is unsupported."""
    named = any(_DEVICE_GROUP_RX[g].search(f.text)
                for g in DEVICE_SUPPORTED_BY.get(c.value, (c.value,)))
    return _named(c, named)


def _named(c: Claim, named: bool):
    """Has / works with X: supported when the JSON names X; a denial ("no X", "does not work
    with X") of what the JSON names is contradicted; X never named: unsupported."""
    if not named:
        return UNSUPPORTED, ""
    return (CONTRADICTED if c.extra.get("negated") else SUPPORTED), f"JSON names {c.value}"


CHECKERS = {"quantity": _check_quantity, "price": _check_price, "discount": _check_discount,
            "compatibility": _check_compatibility, "percent": _check_percent,
            "rating": _check_rating,
            "rating_count": _check_rating_count, "count": _check_count,
            "version": _check_version, "model": _check_model, "brand": _check_brand,
            "colour": _check_colour, "material": _check_material, "feature": _check_feature}


@lru_cache(maxsize=4096)
def _facts_cached(product_json: str) -> Facts:
    return build_facts(json.loads(product_json))


def facts_of(product: dict) -> Facts:
    return _facts_cached(json.dumps(product, sort_keys=True, ensure_ascii=False))


def check_claims(product: dict, text: str) -> list[dict]:
    """Every checkable claim of `text` with status and evidence, in text order."""
    f = facts_of(product)
    claims, cands = extract_claims(text, f.subject, product.get("brand"))
    found = []
    for c in claims + cands:
        got = CHECKERS[c.kind](c, f)
        if got is None:
            continue
        status, evidence = got
        d = c.as_dict()
        d.pop("precision", None)
        d.pop("other_context", None)
        d.update(status=status, evidence=evidence)
        found.append(d)
    found.sort(key=lambda d: (d["start"], d["end"]))
    # A fact repeated ("wireless ... wireless ...") is one claim, with every mention's span.
    out: dict[str, dict] = {}
    for d in found:
        key = json.dumps([d["kind"], d["attribute"], d["value"], d["status"]], sort_keys=True)
        if key in out:
            out[key]["mentions"] += 1
            out[key]["spans"].append([d["start"], d["end"]])
        else:
            out[key] = {**d, "mentions": 1, "spans": [[d["start"], d["end"]]]}
    return list(out.values())


def hallucination_scores(product: dict, text: str) -> dict:
    claims = check_claims(product, text)
    n = len(claims)
    bad = sum(c["status"] != SUPPORTED for c in claims)
    contra = sum(c["status"] == CONTRADICTED for c in claims)
    return {"hallucination_rate": bad / n if n else 0.0,
            "contradiction": float(contra > 0),
            "claims_found": float(n), "unsupported": float(bad), "contradicted": float(contra),
            "hallucination_claims": claims}
