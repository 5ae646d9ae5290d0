"""Claim extraction: the checkable statements in a review, with spans.

Kinds: quantity (number + unit, incl. warranty / battery / charging durations), price,
discount, percent, rating, rating_count, count ("pack of 2", "12 pieces", "4 blades"),
version (Bluetooth 5.3, USB 3.0, IP67), model, brand, colour, material, feature.

Extractors run in a fixed order and a span taken by one is not re-read by a later one
("₹1,099" is a price, not a bare number; "65W" is a quantity, not a model code). Mentions that
state nothing about the product are skipped by context rules: personal ratings ("I give it 5
stars"), durations of use ("after 2 months"), other devices ("works with my Samsung"),
negations ("no Bluetooth"), colour words naming something else ("blue light").
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from . import lexicon as lx
from .lexicon import singular
from .units import NUM, NUMBER_WORD_RE, NUMBER_WORDS, QUALIFIERS, find_quantities, parse_num


@dataclass
class Claim:
    kind: str
    text: str
    start: int
    end: int
    attribute: str
    value: Any
    qualifier: str | None = None
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("extra")
        d.update(self.extra)
        if isinstance(d["value"], tuple):
            d["value"] = list(d["value"])
        return d


_QUAL = "|".join(f"(?P<q_{k}>{v})" for k, v in QUALIFIERS.items())


def _qual(m: re.Match) -> str | None:
    return next((k[2:] for k, v in m.groupdict().items() if k.startswith("q_") and v), None)


# --- context rules -------------------------------------------------------------------------
# Words before a brand/model naming the user's other device or a comparison.
OTHER_DEVICE_BEFORE = re.compile(
    r"(?:\bmy\b|\bour\b|\bwith (?:my|our|the|a|an|all|any|most)\b|\bfor (?:my|our|all|any|"
    r"most|an?|the)\b|\bthan\b|\bvs\.?|\bversus\b|\blike\b|\bunlike\b|\bcompared?\b|\bcompatible\b|"
    r"\bcompatibility\b|\bsupports?\b|\bworks?\b|\bworking\b|\binstead\b|\bprevious\b|\bold\b|"
    r"\bearlier\b|\bswitched\b|\breplac\w*|\bfrom an?\b|\bused\b|\bhad\b|\bcame\b|\bcoming\b|"
    r"\bupgrad\w*|\bmoved\b|\bshifted\b|\btried\b|\bother\b|\bsimilar\b|\bor\b|/)"
    r"[ \w'()-]{0,14}$", re.I)
OWN_PRODUCT_BEFORE = re.compile(r"(?:\bthis\b|\bthese\b|\bthe\b|\bits\b|\bby\b|"
                                r"\bmade by\b|\bbrand\b|\bbrand is\b)\s*$", re.I)
NEGATION_BEFORE = re.compile(r"(?:\bno\b|\bnot\b|\bwithout\b|n't\b|\bnever\b|\black(?:s|ing)?\b|"
                             r"\bmissing\b|\bneither\b|\bnor\b)(?:\s+\w+){0,2}\s*$", re.I)
PERSONAL_RATING = re.compile(r"\b(?:i|we|i'd|i'll|i'm|me|my|i would|we would)\b[^.!?]{0,30}"
                             r"\b(?:give|gave|giving|rate|rated|rating|would|review)\b|"
                             r"\bfrom me\b|\bmy (?:rating|score)\b|^\W*stars?\b|"
                             r"stars?\W{0,3}(?:reviews?|ratings?)\b", re.I)
RATING_CONTEXT = re.compile(r"\b(?:rated|rating|ratings|average|overall|customers?|reviews?|"
                            r"amazon|listed|shows?)\b", re.I)
DISCOUNT_CONTEXT = re.compile(r"\boff\b|discount|\bsale\b|\bdeal\b|\bsav(?:e|ed|ing)\b|"
                              r"cheaper|\boffer\b|\bmrp\b|price drop|\breduced\b", re.I)
PAYMENT_OFFER = re.compile(r"\bcash ?back\b|%\s*back\b|\bbank\b|\bdebit\b|\bcredit card|"
                           r"\bemi\b|\bcoupons?\b|\breward|\bpoints\b", re.I)
DURATION_ROLES = [  # first match wins; a duration without a role is a usage period, not a spec
    ("warranty", re.compile(r"warrant|guarant", re.I)),
    ("charging_time", re.compile(r"\b(?:charg\w*|recharg\w*)\b[^.!?]{0,25}\b(?:in|within|takes?|"
                                 r"took|only)\b|\bcharging time\b|\bfull(?:y)? charge", re.I)),
    ("battery", re.compile(r"batter|backup|back-up|playback|play ?time|talk ?time|standby|"
                           r"music time|\blasts\b|\blasted\b|\bwill last\b|\blast(?:s|ed)? "
                           r"(?:for|about|around|up ?to|nearly|almost)\b|runtime|run time|"
                           r"working time", re.I)),
    ("timer", re.compile(r"\btimer\b|shut ?off|auto[- ]?off|cut[- ]?off", re.I)),
]
USAGE_BEFORE = re.compile(r"(?:\b(?:from|since|for|in|over|during|within)\s+(?:the\s+)?"
                          r"(?:last|past|first|next|initial)|\bafter(?:\s+using)?(?:\s+it)?|"
                          r"\busing (?:it|this) (?:for|since))\s*$", re.I)
AGE_OR_USE = re.compile(r"^\s*(?:old|ago|back|later|before|of (?:use|usage|using)|now|since|"
                        r"review|usage|use|using|into)\b", re.I)

SENT_END = re.compile(r"[.!?;\n]")


def sentence_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    """Start/end of the sentence holding [start, end) ('.' between digits is not an end)."""
    s = start
    while s > 0:
        c = text[s - 1]
        if SENT_END.match(c) and not (c == "." and s - 2 >= 0 and text[s - 2].isdigit()
                                      and s < len(text) and text[s].isdigit()):
            break
        s -= 1
    e = end
    while e < len(text):
        c = text[e]
        if SENT_END.match(c) and not (c == "." and e > 0 and text[e - 1].isdigit()
                                      and e + 1 < len(text) and text[e + 1].isdigit()):
            break
        e += 1
    return s, e


def _window(text: str, start: int, end: int, before: int = 40, after: int = 25) -> str:
    s, e = sentence_bounds(text, start, end)
    return text[max(s, start - before):min(e, end + after)]


class _Spans:
    def __init__(self):
        self.taken: list[tuple[int, int]] = []

    def free(self, s: int, e: int) -> bool:
        return all(e <= a or s >= b for a, b in self.taken)

    def take(self, s: int, e: int) -> None:
        self.taken.append((s, e))


# --- extractors: each (text, spans, out) appends claims and takes spans ---------------------
CUR_PRE = (r"(?:₹|(?<![a-z])rs\.?|(?<![a-z])inr|\$|(?<![a-z])usd|us\$|£|€|(?<![a-z])eur|"
           r"(?<![a-z])gbp)")
CUR_POST = r"(?:rs\.?|rupees?|inr|/-|bucks|dollars?|usd|euros?)"
MONEY_RE = re.compile(
    rf"(?:(?:{_QUAL})\s*)?(?:(?P<cur1>{CUR_PRE})\s?(?P<a>{NUM})(?P<ak>k)?"
    rf"(?:\s*(?:-|to)\s*(?:{CUR_PRE})?\s?(?P<a2>{NUM})(?P<a2k>k)?)?|(?<![\w.])(?P<b>{NUM})"
    rf"(?P<bk>k)?\s?(?P<cur2>{CUR_POST})(?![a-z]))", re.I)
CURRENCY_OF = [(re.compile(r"₹|rs|inr|rupee", re.I), "INR"), (re.compile(r"\$|usd|dollar", re.I),
                                                              "USD"),
               (re.compile(r"£|gbp", re.I), "GBP"), (re.compile(r"€|eur", re.I), "EUR")]


def _currency(s: str) -> str | None:
    for rx, code in CURRENCY_OF:
        if rx.search(s):
            return code
    return None   # "bucks", "/-": any currency


def money_claims(text: str, spans: _Spans, out: list) -> None:
    for m in MONEY_RE.finditer(text):
        if not spans.free(m.start(), m.end()):
            continue
        if m.group("a"):
            lo = parse_num(m.group("a"), m.group("ak"))
            hi = parse_num(m.group("a2"), m.group("a2k")) if m.group("a2") else lo
            cur, digits = _currency(m.group("cur1")), m.group("a")
        else:
            lo = hi = parse_num(m.group("b"), m.group("bk"))
            cur, digits = _currency(m.group("cur2")), m.group("b")
        k = m.group("ak") or m.group("bk")
        prec = 500.0 if k else (0.5 if "." not in digits else 0.005)
        spans.take(m.start(), m.end())
        win = _window(text, m.start(), m.end())
        kind = "discount" if re.search(r"\bsav(?:e|ed|ing)\b|\boff\b|discount", win, re.I) \
            and re.search(r"\bsav(?:e|ed|ing)\b|\boff\b", text[m.end():m.end() + 12] +
                          text[max(0, m.start() - 10):m.start()], re.I) else "price"
        out.append(Claim(kind, m.group(0).strip(), m.start(), m.end(),
                         "saving" if kind == "discount" else "price", (lo, hi), _qual(m),
                         {"currency": cur, "precision": prec}))


PERCENT_RE = re.compile(rf"(?:(?:{_QUAL})\s*)?(?<![\w.])(?P<n>{NUM})\s?(?:%|percent\b|per cent\b)",
                        re.I)


def percent_claims(text: str, spans: _Spans, out: list) -> None:
    for m in PERCENT_RE.finditer(text):
        if not spans.free(m.start(), m.end()):
            continue
        spans.take(m.start(), m.end())
        v = parse_num(m.group("n"))
        if v == 100 or v > 100:  # "100% satisfied" is an intensifier, not a fact
            continue
        if PAYMENT_OFFER.search(_window(text, m.start(), m.end(), 30, 30)):
            continue  # a bank-card / cashback offer of the purchase, not the listing's discount
        disc = bool(DISCOUNT_CONTEXT.search(_window(text, m.start(), m.end(), 30, 20)))
        out.append(Claim("discount" if disc else "percent", m.group(0).strip(), m.start(),
                         m.end(), "discount_percent" if disc else "percent", v, _qual(m)))


HALF_PRICE_RE = re.compile(r"\b(?:at |for )?half (?:the |of the |its )?(?:price|mrp|list price|"
                           r"original price|cost)\b", re.I)


def half_price_claims(text: str, spans: _Spans, out: list) -> None:
    """'half the price', 'half the MRP': a 50 % discount (LABELLING.md)."""
    for m in HALF_PRICE_RE.finditer(text):
        if spans.free(m.start(), m.end()):
            spans.take(m.start(), m.end())
            out.append(Claim("discount", m.group(0).strip(), m.start(), m.end(),
                             "discount_percent", 50.0))


RATING_RES = [
    re.compile(r"(?<![\w.])(?P<r>[0-5](?:\.\d)?)\s?(?:/|out of)\s?5(?![\d.])", re.I),
    re.compile(r"(?<![\w.])(?P<r>[0-5](?:\.\d)?)\s?-?\s?stars?\b", re.I),
    re.compile(r"\brated\s(?:at\s|as\s)?(?P<r>[0-5](?:\.\d)?)(?=\s*(?:/|out\b|stars?\b|[,!;)]|"
               r"\.(?!\d)|$|by\b|on\b|and\b|with\b))", re.I),
    re.compile(r"(?<![\w.])(?P<r>[0-5]\.\d)\s?(?:rating|rated)\b", re.I),
]
RATING_COUNT_RE = re.compile(
    rf"(?:(?:{_QUAL})\s*)?(?<![\w.])(?P<n>{NUM})(?P<k>k)?\s?(?P<plus>\+)?\s?(?:global |customer |"
    r"user |verified )?(?:ratings|reviews|reviewers)\b", re.I)


def rating_claims(text: str, spans: _Spans, out: list) -> None:
    for rx in RATING_RES:
        for m in rx.finditer(text):
            if not spans.free(m.start(), m.end()):
                continue
            spans.take(m.start(), m.end())
            win = _window(text, m.start(), m.end(), 45, 20)
            decimal = "." in m.group("r")
            if PERSONAL_RATING.search(win) or re.match(r"\s*-?\s*(?:reviews?|ratings?)\b",
                                                       text[m.end():], re.I) \
                    or not (decimal or RATING_CONTEXT.search(win)):
                continue
            out.append(Claim("rating", m.group(0).strip(), m.start(), m.end(), "rating",
                             float(m.group("r"))))
    for m in RATING_COUNT_RE.finditer(text):
        if not spans.free(m.start(), m.end()):
            continue
        n = parse_num(m.group("n"), m.group("k"))
        spans.take(m.start(), m.end())
        if n < 10:
            continue
        q = _qual(m) or ("gt" if m.group("plus") else None)
        out.append(Claim("rating_count", m.group(0).strip(), m.start(), m.end(), "rating_count",
                         n, q, {"precision": 500.0 if m.group("k") else 0.5}))


VERSION_RES = [
    ("bluetooth_version", re.compile(r"\b(?:bluetooth|bt)\s?(?:v|ver\.?|version)?\s?"
                                     r"(?P<v>[1-6](?:\.\d)?)(?![\d.]*\s?(?:%|hours?|hrs?|h\b))",
                                     re.I)),
    ("usb_version", re.compile(r"\busb\s?(?P<v>[1-4]\.\d)\b", re.I)),
    ("ip_rating", re.compile(r"\bip(?P<v>x?\d{1,2})\b", re.I)),
]


def version_claims(text: str, spans: _Spans, out: list) -> None:
    for attr, rx in VERSION_RES:
        for m in rx.finditer(text):
            if not spans.free(m.start("v"), m.end("v")):
                continue
            spans.take(m.start("v"), m.end("v"))
            v = m.group("v").lower()
            out.append(Claim("version", m.group(0).strip(), m.start(), m.end(), attr,
                             v if attr == "ip_rating" else float(v)))


def duration_role(text: str, start: int, end: int) -> str | None:
    """The role word nearest the duration ("a 10-year warranty and a 10-year battery life":
    warranty, then battery); on a tie the first role of DURATION_ROLES."""
    s, e = sentence_bounds(text, start, end)
    ws = max(s, start - 45)
    win = text[ws:min(e, end + 30)]
    best = None
    for rank, (role, rx) in enumerate(DURATION_ROLES):
        for m in rx.finditer(win):
            a, b = ws + m.start(), ws + m.end()
            dist = start - b if b <= start else (a - end if a >= end else 0)
            if best is None or (dist, rank) < best[:2]:
                best = (dist, rank, role)
    return best[2] if best else None


# "my 65W brick", "for a 10 inch tablet", "from my 500GB HDD": another device's numbers.
MY_BEFORE = re.compile(r"\b(?:my|our)\b(?:\s+\w+)?\s*$", re.I)
FOR_A_BEFORE = re.compile(r"\b(?:for|with|fits?|fit for|on)\s+(?:a|an|any|all|your)\s*$", re.I)
OTHER_DEVICE_NOUN = re.compile(r"\s*-?\s*(?:phones?|mobiles?|smartphones?|laptops?|tablets?|tabs?|"
                               r"tvs?|televisions?|devices?|pcs?|monitors?|macbooks?|chargers?|"
                               r"bricks?|adapters?|hdds?|ssds?|drives?|cars?|bikes?|rooms?)\b",
                               re.I)


LIST_GAP = re.compile(r"[\s()\[\],;/|&+-]*")


def _list_tails(text: str, qs: list) -> set[int]:
    """Indices of quantities that continue a bare list: three or more values of one dimension
    with nothing but punctuation between them ("126-inch 50-inch (70.5 mm) 1.25-inch ...", a
    spec dump) state no single value of the product; only the list's first value is read."""
    drop, i = set(), 0
    while i < len(qs):
        j = i
        while j + 1 < len(qs) and qs[j + 1].dim == qs[i].dim and \
                LIST_GAP.fullmatch(text[qs[j].end:qs[j + 1].start]):
            j += 1
        if j - i >= 2:
            drop.update(range(i + 1, j + 1))
        i = j + 1
    return drop


def quantity_claims(text: str, spans: _Spans, out: list, keep_roleless: bool = False) -> None:
    qs = find_quantities(text)
    tails = set() if keep_roleless else _list_tails(text, qs)
    for i, q in enumerate(qs):
        if not spans.free(q.start, q.end):
            continue
        spans.take(q.start, q.end)
        if i in tails:
            continue
        before = text[max(0, q.start - 20):q.start]
        if not keep_roleless and (MY_BEFORE.search(before) or (
                FOR_A_BEFORE.search(before) and OTHER_DEVICE_NOUN.match(text[q.end:]))):
            continue
        attr = q.dim
        if q.dim == "duration":
            role = duration_role(text, q.start, q.end)
            usage = AGE_OR_USE.match(text[q.end:]) or USAGE_BEFORE.search(
                text[max(0, q.start - 30):q.start])
            if role is None or (usage and role != "warranty"):
                if not keep_roleless:
                    continue
                role = "duration"
            attr = role
        out.append(Claim("quantity", q.text.strip(), q.start, q.end, attr, (q.lo, q.hi),
                         q.qualifier, {"dimension": q.dim, "unit": q.unit,
                                       "precision": q.precision}))


COUNT_WORD = rf"(?P<n>{NUM}|{NUMBER_WORD_RE})"
COUNT_RES = [
    ("pack", re.compile(rf"\b(?:multi-?pack|pack|set|box|combo|bundle|kit) of {COUNT_WORD}\b",
                        re.I)),
    ("pack", re.compile(rf"(?<![\w.]){COUNT_WORD}\s?-?\s?(?:pack|pcs|pieces?|pc|nos|units?|"
                        r"piece set|in a pack|count)\b", re.I)),
    ("pair", re.compile(rf"(?<![\w.]){COUNT_WORD}\s?-?\s?pairs?\b", re.I)),
    ("n_in_1", re.compile(r"(?<![\w.])(?P<n>\d{1,2})\s?-?\s?in\s?-?\s?(?:1|one)\b", re.I)),
]


def _count_value(s: str) -> float:
    s = s.lower()
    return float(NUMBER_WORDS[s]) if s in NUMBER_WORDS else parse_num(s)


PURCHASE_BEFORE = re.compile(r"\b(?:bought|buy|buying|purchased?|purchasing|ordered|order|got|"
                             r"took|received|gifted|sent)\b(?:\s+\w+)?\s*$", re.I)


def count_claims(text: str, spans: _Spans, out: list) -> None:
    for attr, rx in COUNT_RES:
        for m in rx.finditer(text):
            if not spans.free(m.start(), m.end()):
                continue
            spans.take(m.start(), m.end())
            if PURCHASE_BEFORE.search(text[max(0, m.start() - 25):m.start()]):
                continue  # how many the reviewer bought, not the pack size
            out.append(Claim("count", m.group(0).strip(), m.start(), m.end(), attr,
                             _count_value(m.group("n"))))


NOUN_COUNT_RE = re.compile(rf"(?<![\w.,-]){COUNT_WORD}\s(?P<w1>[a-z][a-z-]+)(?:\s(?P<w2>[a-z]+))?",
                           re.I)


def noun_count_candidates(text: str, spans: _Spans) -> list[Claim]:
    """'4 blades', '2 USB ports': checkable only when the product states a count of the same
    noun, which the checker decides; the candidates take no spans."""
    out = []
    for m in NOUN_COUNT_RE.finditer(text):
        if not spans.free(m.start(), m.end("n")):
            continue
        nouns = [singular(w) for w in (m.group("w1"), m.group("w2")) if w]
        out.append(Claim("count", m.group(0).strip(), m.start(), m.end(), "noun_count",
                         _count_value(m.group("n")), None, {"nouns": nouns}))
    return out


# Model codes: "H111", "GM100", "POR-1401", "AUE60", "WH-1000XM4"; upper-case letters and
# digits, so glued words ("4.5Decent", "ones3") are not read as models.
MODEL_RE = re.compile(r"(?<![\w-])(?:[A-Z]{1,6}-?\d{1,5}[A-Z]{0,4}(?:-?[A-Z0-9]{1,6})?|"
                      r"[A-Z]{1,3}\d?-\d{2,5}[A-Z]{0,3})(?![\w-])")
NOT_MODEL = re.compile(r"^(?:\d+(?:st|nd|rd|th|am|pm|x|k|s|yrs?|days?|mins?|hrs?|months?|"
                       r"weeks?|rs|inr|g|gb)|x\d+|mp[34]|[234]d|[2345]g|covid-?19|a[345]|"
                       r"[a-z]\d)$", re.I)
SERIES_RE = re.compile(r"\b(?P<series>[A-Za-z][A-Za-z+]{2,})\s(?P<num>\d{2,4}[A-Za-z]?)\b")


def model_claims(text: str, spans: _Spans, out: list) -> None:
    for m in MODEL_RE.finditer(text):
        tok = m.group(0)
        if not spans.free(m.start(), m.end()) or NOT_MODEL.match(tok) or len(tok) < 3:
            continue
        spans.take(m.start(), m.end())
        if OTHER_DEVICE_BEFORE.search(text[max(0, m.start() - 22):m.start()]):
            continue
        out.append(Claim("model", tok, m.start(), m.end(), "model", lx.brand_key(tok)))
    for m in SERIES_RE.finditer(text):
        if not spans.free(m.start("num"), m.end("num")):
            continue
        out.append(Claim("model", m.group(0), m.start(), m.end(), "model_series",
                         m.group("num").lower(), None, {"series": m.group("series").lower()}))


def _sentence_start(text: str, i: int) -> bool:
    return re.search(r"(?:^|[.!?\n:;\-*\"(])\s*$", text[:i]) is not None


# "Prestige has done ...", "Crucial's ...": a capitalised word-like brand opening a sentence is
# the brand when a verb of making / being follows.
BRAND_AS_SUBJECT = re.compile(r"[®™]?(?:'s\b|\s+(?:has|have|had|is|was|makes?|made|did|does|"
                              r"products?|brand|really|always|never|did)\b)", re.I)


def _names_subject(after: str, subject: set[str] | None) -> bool:
    m = re.match(r"[®™]?\s+([A-Za-z]+)", after)
    return bool(subject and m and m.group(1).lower() in subject)


DEVICE_NOUNS = re.compile(r"(?:phones?|mobiles?|smartphones?|laptops?|notebooks?|tablets?|tabs?|"
                          r"tvs?|televisions?|pcs?|desktops?|computers?|monitors?|macbooks?|"
                          r"consoles?|cars?|bikes?|routers?|cameras?|watch(?:es)?|"
                          r"earphones?|headphones?|speakers?|printers?)", re.I)


def _names_other_device(after: str, subject: set[str] | None) -> bool:
    """The brand names another device: one of the next three words (model codes between are
    allowed) is a device noun that does not name this product ("MSI gf63 laptop" in a review
    of a headphone splitter)."""
    m = re.match(r"[®™]?((?:\s+[\w-]+){1,3})", after)
    if not m:
        return False
    for raw in m.group(1).split():
        w = raw.lower()
        if DEVICE_NOUNS.fullmatch(w):
            return not (subject and (w in subject or w.rstrip("s") in subject))
        if not re.fullmatch(r"[\w-]+", raw):
            break
    return False


def brand_claims(text: str, spans: _Spans, out: list, subject: set[str] | None = None,
                 own: str | None = None) -> None:
    exact = {b for b in lx.known_brands() if b != b.lower() and b != b.capitalize()}
    matches = list(lx.brand_regex().finditer(text))
    if own and lx.brand_key(own) and lx.brand_key(own) not in {lx.brand_key(b)
                                                               for b in lx.known_brands()}:
        words = [re.escape(w) for w in re.split(r"[\s\-]+", re.sub(r"[®™©]", "", own)) if w]
        rx = re.compile(r"(?<![\w@])(" + r"[\s\-]?".join(words) + r")(?![\w])", re.I)
        matches = sorted(matches + list(rx.finditer(text)), key=lambda m: m.start())
    for m in matches:
        if not spans.free(m.start(), m.end()):
            continue
        word = m.group(0)
        key = lx.brand_key(word)
        if key in lx.RETAILERS:
            continue
        after = text[m.end():]
        subject_follows = BRAND_AS_SUBJECT.match(after) or _names_subject(after, subject)
        if lx.is_wordlike(word) and word not in exact and (not word[:1].isupper() or (
                _sentence_start(text, m.start()) and not subject_follows)):
            continue
        spans.take(m.start(), m.end())
        before = text[max(0, m.start() - 24):m.start()]
        other_ctx = bool(OTHER_DEVICE_BEFORE.search(before)) and not \
            OWN_PRODUCT_BEFORE.search(before)
        if _names_subject(after, subject):
            other_ctx = False  # "my first Samsung phone" when the product is a phone
        elif _names_other_device(after, subject):
            other_ctx = True   # "MSI gf63 laptop" in a review of a headphone splitter
        out.append(Claim("brand", m.group(0), m.start(), m.end(), "brand", key, None,
                         {"other_context": other_ctx}))


# "this Voltix power bank", "these Kestrel earbuds": a capitalised name right before a word
# naming this product is its maker, whether or not any list knows the name.
MAKER_BEFORE_PRODUCT = re.compile(
    r"\b(?i:this|these|that|the|my new|our new|a|an)\s+(?P<name>[A-Z][A-Za-z0-9+&'-]*[A-Za-z0-9]"
    r"(?:\s[A-Z][A-Za-z0-9+&'-]*[A-Za-z0-9])?)\s+(?P<noun>[a-z][a-z-]+)")


def maker_claims(text: str, spans: _Spans, out: list, subject: set[str] | None = None) -> None:
    """Brand claims found by shape, not by a list: a capitalised name (not an English word, not a
    colour / material / feature word) between 'this' / 'the' / 'a' and a word of the product's
    title or category. The checker compares it with the JSON's brand and text."""
    if not subject:
        return
    for m in MAKER_BEFORE_PRODUCT.finditer(text):
        name, noun = m.group("name"), m.group("noun").lower()
        if not spans.free(m.start("name"), m.end("name")) or noun in PART_STOP or \
                (noun not in subject and noun.rstrip("s") not in subject):
            continue
        words = name.split()
        if any(lx.brand_key(w) in lx.common_words() or lx.brand_key(w) in subject or
               lx._lexicon_word(w) or len(lx.brand_key(w)) < 3 for w in words) or \
                lx.brand_key(name) in lx.RETAILERS:
            continue
        spans.take(m.start("name"), m.end("name"))
        # "better than the Brevora kettle", "switched from a Brevora kettle": another product
        other = bool(OTHER_DEVICE_BEFORE.search(text[max(0, m.start("name") - 24):
                                                     m.start("name")]))
        out.append(Claim("brand", name, m.start("name"), m.end("name"), "brand",
                         lx.brand_key(name), None, {"other_context": other}))


_COLOURS = lx.compile_alternatives(lx.COLOURS)
_AMBIG_COLOURS = lx.compile_alternatives(lx.AMBIGUOUS_COLOURS)
_NOT_PRODUCT = re.compile(rf"^\s*-?\s*(?:{lx.COLOUR_NOT_PRODUCT})\b", re.I)
_COLOUR_CTX_AFTER = re.compile(rf"^\s*-?\s*(?:{lx.COLOUR_CONTEXT})\b", re.I)
_COLOUR_CTX_BEFORE = re.compile(r"(?:\bin\b|colou?rs?(?: is| was| of)?|shade|finish|\bthe\b)\s*$",
                                re.I)
_AND_WHITE_BEFORE = re.compile(r"(?:black|white)\s*(?:and|&|n)\s*$", re.I)


# Words that may follow a colour naming the product itself ("black colour", "black, sturdy",
# "black and looks"); any other next word is a noun naming something else ("black table",
# "brown box") unless it names the product (a word of its title or category).
COLOUR_FOLLOWERS = {"is", "was", "are", "were", "looks", "look", "looked", "colour", "color",
                    "coloured", "colored", "one", "ones", "variant", "version", "shade", "finish",
                    "and", "or", "with", "but", "it", "also", "too", "very", "so", "as", "which",
                    "that", "from", "in", "on", "matte", "glossy", "edition", "model", "body",
                    "option", "colour.", "tone", "really", "quite", "has", "have", "had", "&"}


def _names_other_thing(after: str, subject: set[str] | None) -> bool:
    m = re.match(r"\s*-?\s*([A-Za-z]+)", after)
    if not m or re.match(r"\s*[.,!?;:)\n]", after):
        return False
    w = m.group(1).lower()
    return w not in COLOUR_FOLLOWERS and not (subject and (w in subject or
                                                           w.rstrip("s") in subject))


COLOUR_OPTIONS = re.compile(r"\bavailable in (?:a )?(?:various|many|multiple|different|several|"
                            r"variety of|range of|wide range of|lots of|a lot of) colou?rs\b",
                            re.I)
AVAILABLE_IN_BEFORE = re.compile(r"\bavailable in\b[\w\s,&]{0,30}$", re.I)


def colour_claims(text: str, spans: _Spans, out: list, subject: set[str] | None = None) -> None:
    for m in COLOUR_OPTIONS.finditer(text):   # "available in various colours": several colours
        if spans.free(m.start(), m.end()):
            spans.take(m.start(), m.end())
            out.append(Claim("colour", m.group(0), m.start(), m.end(), "colour_options", None))
    for table, ambiguous in ((_COLOURS, False), (_AMBIG_COLOURS, True)):
        for name, rx in table:
            for m in rx.finditer(text):
                if not spans.free(m.start(), m.end()):
                    continue
                after, before = text[m.end():m.end() + 25], text[max(0, m.start() - 20):m.start()]
                if not _names_subject(after, subject) and (
                        _NOT_PRODUCT.match(after) or (_AND_WHITE_BEFORE.search(before) and
                                                      not AVAILABLE_IN_BEFORE.search(before))
                        or _names_other_thing(after, subject)):
                    continue
                if NEGATION_BEFORE.search(before):
                    continue
                if ambiguous and not (_COLOUR_CTX_AFTER.match(after) or
                                      (_COLOUR_CTX_BEFORE.search(before) and
                                       re.match(r"^\s*(?:[.,!]|$|one|colou?r|and|with)", after))):
                    continue
                spans.take(m.start(), m.end())
                out.append(Claim("colour", m.group(0), m.start(), m.end(), "colour", name))


_MATERIALS = lx.compile_alternatives(lx.MATERIALS)
_MATERIAL_NOT = re.compile(r"^\s*(?:of water|of milk|bottle|jar|wool|bag|cover|box|packaging|"
                           r"packing|wrap|wrapper|sheet)\b", re.I)


def material_claims(text: str, spans: _Spans, out: list) -> None:
    for name, rx in _MATERIALS:
        for m in rx.finditer(text):
            if not spans.free(m.start(), m.end()):
                continue
            before = text[max(0, m.start() - 20):m.start()]
            if NEGATION_BEFORE.search(before) or (name == "plastic" and
                                                  _MATERIAL_NOT.match(text[m.end():])):
                continue
            spans.take(m.start(), m.end())
            out.append(Claim("material", m.group(0), m.start(), m.end(), "material", name))


_FEATURES = lx.compile_alternatives(lx.FEATURES)


def feature_claims(text: str, spans: _Spans, out: list) -> None:
    for name, rx in _FEATURES:
        for m in rx.finditer(text):
            if not spans.free(m.start(), m.end()):
                continue
            before = text[max(0, m.start() - 24):m.start()]
            spans.take(m.start(), m.end())
            if NEGATION_BEFORE.search(before) or re.search(r"\b(?:my|our)\s+(?:\w+\s+){0,2}$",
                                                           before, re.I):
                continue
            out.append(Claim("feature", m.group(0), m.start(), m.end(), "feature", name))


# --- compatibility: the devices a review says the product works with -----------------------
# Device words by group; a claim names a group, and any word of the group in the JSON supports
# it ("phone" is supported by "smartphones", "iPad" by "tablet").
DEVICE_GROUPS = {
    "iphone": r"iphones?",
    "phone": r"(?:smart ?|mobile |cell ?)?phones?|mobiles?",
    "ipad": r"ipads?",
    "tablet": r"tablets?|tabs",
    "macbook": r"macbooks?",
    "laptop": r"laptops?|notebooks?|ultrabooks?|chromebooks?",
    "computer": r"computers?|pcs?|desktops?|imacs?",
    "tv": r"(?:smart |led |android )?tvs?|televisions?",
    "set-top-box": r"set[- ]?top box(?:es)?|dth",
    "console": r"xbox(?:es)?|playstations?|ps[345]|consoles?|nintendo switch",
    "car": r"cars?|car stereos?|android auto|apple carplay|carplay",
    "camera": r"cameras?|dslrs?|camcorders?|gopros?",
    "watch": r"smart ?watch(?:es)?|(?<=my )watch|(?<=a )watch|(?<=the )watch",
    "router": r"routers?|modems?",
    "printer": r"printers?",
    "speaker": r"speakers?|sound ?bars?|home theat(?:er|re)s?",
    "headphones": r"head ?phones?|ear ?phones?|earbuds?|headsets?",
}
# "car charger", "phone holder", "laptop bag": another thing, not the device
NOT_THE_DEVICE = (r"(?!\s+(?:chargers?|adapters?|cables?|mounts?|holders?|stands?|remotes?|"
                  r"covers?|cases?|bags?|sleeves?|accessor\w*|brackets?|tables?))")
_DEVICE_RE = re.compile(r"(?<![\w-])(?:" + "|".join(
    "(?P<%s>%s)" % (k.replace("-", "_"), v) for k, v in DEVICE_GROUPS.items()) + r")(?![\w-])" +
    NOT_THE_DEVICE, re.I)
# What makes a device mention a compatibility claim: it follows one of these in its clause.
COMPAT_CUE = re.compile(
    r"\b(?:(?P<neg>in-?compatible|not compatible|(?:doesn['’]?t|does not|didn['’]?t|did not|"
    r"won['’]?t|will not|not|never) (?:work|fit|connect|support|pair)\w*)|compatible|"
    r"compatibility|"
    r"(?:works?|worked|working)(?: \w+)? (?:with|on|for|in)|suitable|supports?|supported|"
    r"fits?|including|connects?|connected|(?:pairs?|paired) (?:with|to)|"
    r"(?:use[ds]?|using)(?: (?:it|this|them))? (?:with|on)|for)\b", re.I)
CLAUSE_BREAK = re.compile(r"[.!?;:\n]|\bbut\b|\bbecause\b|\bwhich\b|\bthat\b", re.I)


def compatibility_claims(text: str, spans: _Spans, out: list, subject: set[str] | None = None
                         ) -> None:
    """'works with my iPhone XR', 'best device for Lenovo laptop', 'incompatible with my
    tablet', 'ideal for laptops, tablets and smartphones': one claim per device named after a
    compatibility cue in the same clause (a device word naming the product itself is not)."""
    for m in _DEVICE_RE.finditer(text):
        if not spans.free(m.start(), m.end()):
            continue
        group = m.lastgroup.replace("_", "-")
        word = m.group(0).lower()
        if subject and re.findall(r"[a-z]+", word)[-1] in subject:
            continue  # "this phone" in a phone review; "for my laptop" for a laptop stand
        s, _ = sentence_bounds(text, m.start(), m.end())
        before = text[max(s, m.start() - 100):m.start()]
        breaks = list(CLAUSE_BREAK.finditer(before))
        if breaks:
            before = before[breaks[-1].end():]
        cues = list(COMPAT_CUE.finditer(before))
        if not cues:
            continue
        neg = any(c.group("neg") for c in cues)
        spans.take(m.start(), m.end())
        out.append(Claim("compatibility", m.group(0), m.start(), m.end(), "device", group,
                         None, {"negated": neg}))


# --- parts and capabilities in free words ---------------------------------------------------
PART_HAS = re.compile(r"\b(?:comes with|come with|equipped with|includes|(?:has|have|with) "
                      r"(?:an? )?(?:built-in|inbuilt|in-built))\s+", re.I)
PART_LACKS = re.compile(r"\b(?:(?P<no>no)|without any|lacks?|lacking|doesn['’]?t have|"
                        r"does not have)\s+"
                        r"(?!(?:more|extra|such|other|body|one|need|longer|matter|further|"
                        r"additional|hidden|too|much|many)\b)", re.I)
# a bare "no X" states that the product lacks X only at the start of a clause or after "has",
# "there is", "comes with" ("No remote.", "but no place for stylus", "there is no timer"), not
# inside an account ("under no offers", "had no cash", "due to no balance")
NO_STARTS_CLAUSE = re.compile(r"(?:^|[.!?:;\n•*)-]|\b(?:but|and|has|have|with|there is|"
                              r"there['’]s|there are|it has))\s*$", re.I)
PART_WORDS = re.compile(r"(?:(?:a|an|the|its|any|two|dual|built-in|inbuilt|in-built|separate|"
                        r"extra)\s+)?((?:[a-z][a-z-]*)(?:\s+[a-z][a-z-]*){0,2})", re.I)
PART_STOP = {"for", "to", "of", "in", "on", "and", "or", "but", "with", "is", "are", "was",
             "were", "the", "a", "an", "it", "that", "which", "as", "at", "from", "by", "so",
             "be", "can", "will", "if", "this", "its", "any", "all", "these", "those", "they",
             "them", "ever", "about", "when", "while", "after", "before", "than", "then", "not",
             "also", "even", "just", "only", "very", "too", "such", "one", "you", "your", "our",
             "their", "his", "her", "what", "how", "why", "where", "who", "there", "here",
             "between", "anywhere", "anything", "everywhere"}
PERSON_BEFORE = re.compile(r"\b(?:i|we|you|he|she|my|our|your|his|her|they|someone|anyone|"
                           r"everyone|people)\b[\w\s']{0,12}$", re.I)


PART_DENIED_AFTER = re.compile(r"\s+(?:is |are )?(?:not|never) (?:support(?:ed|s)?|available|"
                               r"provided|included|there)\b", re.I)


def part_claims(text: str, spans: _Spans, out: list) -> None:
    """'it has a stylus slot', 'no place for stylus', 'has no moving parts': a word the
    catalogue's listings use for a part or capability (lexicon.part_words), named as something
    the product has or lacks. The head word (the last part word before a function word) is
    the claim; it is checked against the words of the JSON."""
    parts = lx.part_words()
    if not parts:
        return
    for cue_rx, neg in ((PART_LACKS, True), (PART_HAS, False)):
        for m in cue_rx.finditer(text):
            if PERSON_BEFORE.search(text[max(0, m.start() - 20):m.start()]):
                continue  # "I have a Macbook", "used my phone without a screen guard"
            if neg and m.group("no") and not NO_STARTS_CLAUSE.search(
                    text[max(0, m.start() - 20):m.start()]):
                continue
            w = PART_WORDS.match(text, m.end())
            if not w:
                continue
            head = None
            for t in list(re.finditer(r"[a-z][a-z-]*", w.group(1), re.I))[:2]:
                if t.group(0).lower() in PART_STOP:
                    break
                if re.search(r"(?:ing|ed|ly)$", t.group(0)):
                    continue  # "moving parts": a modifier, not the part
                if singular(t.group(0)) in lx.NOT_PARTS:
                    head = None   # "no problems ever", "no wonder customer care"
                    break
                if singular(t.group(0)) in parts and head is None:
                    head = t      # the first part word: "moving parts", "stylus slot"
            # adjectives by their endings, colour / material / feature words (their own
            # extractors read them) and devices (compatibility) are not parts
            if head is None or re.search(r"(?:ous|ful|ive|able|ible|ant|ent|less)$",
                                         head.group(0), re.I) or \
                    lx._lexicon_word(head.group(0)) or _DEVICE_RE.fullmatch(head.group(0)):
                continue
            _part_claim(text, spans, out, w.start(1) + head.start(), w.start(1) + head.end(),
                        neg)
    # postfix denials: "Play Store not support", "remote is not included"
    for m in PART_DENIED_AFTER.finditer(text):
        w = re.search(r"([a-z][a-z-]*)$", text[max(0, m.start() - 30):m.start()], re.I)
        if w and singular(w.group(1)) in parts and w.group(1).lower() not in PART_STOP:
            _part_claim(text, spans, out, m.start() - len(w.group(1)), m.start(), True)


def _part_claim(text: str, spans: _Spans, out: list, s: int, e: int, neg: bool) -> None:
    if spans.free(s, e):
        spans.take(s, e)
        out.append(Claim("feature", text[s:e], s, e, "part", singular(text[s:e]), None,
                         {"negated": neg}))


EXTRACTORS = (money_claims, percent_claims, half_price_claims, rating_claims, version_claims,
              quantity_claims, count_claims, feature_claims, colour_claims, material_claims,
              model_claims, compatibility_claims, brand_claims, maker_claims, part_claims)


def extract_claims(text: str, subject: set[str] | None = None,
                   own_brand: str | None = None) -> tuple[list[Claim], list[Claim]]:
    """(claims, noun-count candidates) of a text, claims sorted by position. `subject`: words
    naming the product (title and category words), so "black cable" is a colour claim about a
    cable while "black table" is not; `own_brand`: the product's brand, always recognised."""
    spans, out = _Spans(), []
    for fn in EXTRACTORS:
        if fn in (colour_claims, compatibility_claims, maker_claims):
            fn(text, spans, out, subject)
        elif fn is brand_claims:
            fn(text, spans, out, subject, own_brand)
        else:
            fn(text, spans, out)
    cands = noun_count_candidates(text, spans)
    out.sort(key=lambda c: (c.start, c.end))
    return out, cands
