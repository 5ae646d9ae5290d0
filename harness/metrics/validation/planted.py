"""Planted cases built from real reviews, for `harness metrics validate`.

* Hallucination: a real review with one wrong fact injected (changed number, wrong unit,
  another brand, wrong colour, wrong material, invented feature), in place when the review
  states that fact, else as an inserted sentence. Each case keeps the character span of the
  injected text, so a hit means the metric flagged *that* claim. The clean set: unmodified
  real reviews selected by a verbatim rule that does not use the metric (`is_clean`).
* Fluency: a real review vs its word-shuffled, span-repeated and truncated versions.
* Relevance: a product with its own review vs a review of a product from another category.

Every choice is drawn from a `random.Random(seed)`, so the same seed gives the same cases.
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass

from .. import lexicon as lx
from ..units import unit_info

# --- the clean set -------------------------------------------------------------------------
_NUM_TOKEN = re.compile(r"\d+(?:\.\d+)?")


def _numbers(text: str) -> set[str]:
    out = set()
    for n in _NUM_TOKEN.findall(re.sub(r"(?<=\d),(?=\d)", "", text)):
        out.add(f"{float(n):g}")
    return out


def product_json_text(product: dict) -> str:
    from ..text import product_text
    return product_text(product) + "\n" + json.dumps(product, ensure_ascii=False)


def _lexicon_terms(text: str) -> set[str]:
    """Every colour / material / feature / brand word of the lexicons found in text, as the
    matched lower-cased surface string (no context rules, no normalisation)."""
    terms = set()
    for table in (lx.COLOURS, lx.AMBIGUOUS_COLOURS, lx.MATERIALS, lx.FEATURES):
        for _, rx in lx.compile_alternatives(table):
            terms |= {m.group(0).lower() for m in rx.finditer(text)}
    terms |= {m.group(0).lower() for m in lx.brand_regex().finditer(text)
              if lx.brand_key(m.group(0)) not in lx.RETAILERS}
    return terms


def is_clean(product: dict, review: str) -> bool:
    """A real review that only restates facts of its JSON, by a rule independent of the metric:
    every number in it (thousands separators removed) occurs as a number in the JSON, every
    colour/material/feature/brand word of the lexicons in it occurs verbatim (case-insensitive)
    in the JSON, and it has at least one such number or word (it states some fact)."""
    pj = product_json_text(product)
    nums, pnums = _numbers(review), _numbers(pj)
    if not nums <= pnums:
        return False
    terms = _lexicon_terms(review)
    low = pj.lower()
    if any(not re.search(rf"(?<!\w){re.escape(t)}(?!\w)", low) for t in terms):
        return False
    return bool(nums or terms)


# --- hallucination injections --------------------------------------------------------------
@dataclass
class Planted:
    kind: str          # number | unit | brand | colour | material | feature
    mode: str          # in_place | inserted
    text: str
    span: tuple[int, int]
    injected: str
    record_id: str


def _product_noun(product: dict) -> str:
    cats = product.get("category") or []
    leaf = cats[-1] if cats else ""
    words = re.findall(r"[A-Za-z]+", leaf)
    noun = (words[-1] if words else "product").lower()
    return noun[:-1] if noun.endswith("s") and len(noun) > 3 else noun


def _insert(rng: random.Random, review: str, sentence: str) -> tuple[str, tuple[int, int]]:
    """Insert a sentence at a random sentence boundary of the review."""
    bounds = [0] + [m.end() for m in re.finditer(r"[.!?](?:\s+|$)", review)]
    bounds = sorted({b for b in bounds if b <= len(review)} | {len(review)})
    pos = rng.choice(bounds)
    before, after = review[:pos], review[pos:]
    if before and not before.endswith((" ", "\n")):
        before += ". " if not re.search(r"[.!?]$", before) else " "
    sep = " " if after and not after.startswith(" ") else ""
    start = len(before)
    return before + sentence + sep + after, (start, start + len(sentence))


def _far_from_all(value: float, numbers: set[str], rel: float = 0.25) -> bool:
    return all(abs(value - float(n)) > rel * max(abs(value), abs(float(n)), 1e-9)
               for n in numbers)


def _fmt_like(v: float, like: str) -> str:
    dec = len(like.split(".", 1)[1]) if "." in like else 0
    s = f"{v:.{dec}f}" if dec else str(int(round(v)))
    if "," in like and abs(v) >= 1000:
        s = f"{int(round(v)):,}"
    return s


FACTORS = (0.25, 0.4, 0.5, 1.5, 2.0, 2.5, 3.0, 4.0)
DURATION_TEMPLATES = {"warranty": "It comes with a {q} warranty.",
                      "battery": "The battery lasts {q} on a charge.",
                      "charging_time": "It charges fully in {q}."}
QUANTITY_TEMPLATES = ("It is rated at {q}.", "The {q} spec is what sold me.",
                      "I like that it offers {q}.", "Good to get {q} at this price.",
                      "The listing says {q} and that is what I got.")
PRICE_TEMPLATES = ("Got it for {p}.", "Paid {p} for it.", "At {p} it is good value.",
                   "Worth it for {p}.")
BRAND_TEMPLATES = ("{B} has done a good job with this {noun}.", "Typical {B} quality.",
                   "This {B} {noun} works as described.", "I trust {B} products and this one "
                   "is no exception.", "Solid build, as expected of {B}.")
COLOUR_TEMPLATES = ("The {c} colour looks great.", "Mine came in {c}.",
                    "I like the {c} finish.", "Looks nice in {c}.", "The {c} {noun} looks "
                    "premium.")
MATERIAL_TEMPLATES = ("The {m} body feels sturdy.", "It is made of {m}.",
                      "Good {m} build quality.", "The {m} construction feels solid.")
FEATURE_TEMPLATES = ("It also has {f}.", "The {f} works well.", "I really like the {f}.",
                     "Bonus: it comes with {f}.", "Nice to have {f} on this {noun}.")
# Surface forms written for the injections, deliberately not copied from the lexicon's
# canonical names (the metric has to recognise the variant), each with the words whose presence
# in the JSON means the product may well have that feature (then it is not injected).
INVENTED_FEATURES = (
    ("wireless charging support", ("wireless", "qi")),
    ("active noise cancelling", ("noise", "anc", "enc")),
    ("a built-in sleep timer", ("timer",)), ("Alexa voice control", ("alexa", "voice")),
    ("a fingerprint reader", ("fingerprint",)), ("IPX7 waterproofing", ("waterproof", "ipx",
                                                                       "water", "ip6", "ip5")),
    ("RGB lighting effects", ("rgb", "led", "light")),
    ("automatic shut-off", ("auto", "shut", "cut-off", "cutoff")),
    ("dual SIM slots", ("sim",)), ("built-in GPS", ("gps",)),
    ("a heart-rate sensor", ("heart",)), ("a touchscreen panel", ("touch",)),
    ("NFC pairing", ("nfc",)), ("a remote control", ("remote",)),
    ("Wi-Fi connectivity", ("wifi", "wi-fi", "wlan", "wireless")),
    ("Bluetooth connectivity", ("bluetooth", "wireless", "bt")),
    ("a digital LCD display", ("display", "lcd", "led", "screen", "digital")),
    ("USB Type-C charging", ("type-c", "type c", "usb-c", "usb c", "typec")),
    ("dishwasher-safe parts", ("dishwasher",)), ("a foldable design", ("fold", "collaps")),
    ("a magnetic mount", ("magnet",)), ("surge protection", ("surge", "spike", "protection")),
    ("a backlit keyboard", ("backlit", "backlight", "light")),
    ("Dolby Atmos sound", ("dolby", "atmos")), ("4K resolution", ("4k", "uhd", "2160")),
    ("a built-in microphone", ("mic",)), ("an SpO2 monitor", ("spo2", "oxygen")),
    ("a quick-charge mode", ("fast", "quick", "rapid", "turbo", "charg")),
    ("a kickstand", ("stand",)), ("an anti-slip base", ("slip", "skid", "grip")),
)
# Colour and material names, plainly wrong when none of their words is in the JSON. Colours
# without a colour word of their own ("silver", "orange") go into "<c> colour" sentences.
COLOUR_CHOICES = ("red", "blue", "green", "yellow", "pink", "purple", "white", "black", "grey",
                  "brown", "beige", "orange", "silver", "golden")
AMBIGUOUS_COLOUR_CHOICES = {"orange", "silver", "golden"}
# Words whose presence in the JSON makes a colour not plainly wrong (shades of it).
COLOUR_WORDS = {"grey": ("grey", "gray", "silver", "charcoal"),
                "silver": ("silver", "grey", "gray", "chrome", "charcoal"), "golden": ("gold", "champagne"),
                "pink": ("pink", "rose", "magenta"), "purple": ("purple", "violet", "lavender"),
                "red": ("red", "maroon", "wine", "burgundy"),
                "blue": ("blue", "navy", "teal", "turquoise", "cyan", "indigo"),
                "green": ("green", "teal", "olive", "mint"),
                "brown": ("brown", "tan", "coffee", "bronze"), "beige": ("beige", "cream", "khaki"),
                "white": ("white", "cream", "ivory"), "black": ("black",),
                "yellow": ("yellow", "mustard"), "orange": ("orange", "coral", "peach")}
MATERIAL_CHOICES = ("stainless steel", "aluminium", "leather", "wooden", "ceramic", "glass",
                    "nylon", "silicone", "cotton", "bamboo", "brass")
MATERIAL_WORDS = {"stainless steel": ("steel", "metal"), "aluminium": ("alumin", "metal"),
                  "brass": ("brass", "metal"), "glass": ("glass",),
                  "wooden": ("wood", "bamboo", "mdf", "sheesham", "plywood"),
                  "silicone": ("silicon", "rubber"), "nylon": ("nylon", "braid"),
                  "leather": ("leather",)}
UNIT_SWAPS = {"length": ("mm", "cm", "m", "inch", "feet"), "weight": ("g", "kg", "lb"),
              "volume": ("ml", "litres"), "charge": ("mAh", "Ah"), "power": ("W", "kW"),
              "storage": ("MB", "GB", "TB"), "duration": ("minutes", "hours", "days", "months",
                                                         "years"),
              "frequency": ("Hz", "kHz", "MHz", "GHz"), "data_rate": ("Mbps", "Gbps"),
              "energy": ("Wh", "kWh")}


def _factor(unit: str) -> float:
    info = unit_info(unit)
    return info[1] if info else 1.0


class Injector:
    """Builds planted cases for one record; `other_brands` are brands of other products."""

    def __init__(self, rng: random.Random, other_brands: list[str]):
        from ..claims import extract_claims
        self.rng = rng
        self.other_brands = other_brands
        self._extract = extract_claims

    def _facts_numbers(self, product: dict) -> set[str]:
        return _numbers(product_json_text(product))

    @staticmethod
    def _wrong_amount(product: dict, number: float, unit: str | None, pnums: set[str]) -> bool:
        """Plainly wrong: > 25 % away from every number in the JSON and, converted to the base
        unit, from every amount of the same dimension in it ("1 L" is not wrong for 1000 ml)."""
        from ..units import find_quantities
        if number <= 0 or not _far_from_all(number, pnums):
            return False
        info = unit_info(unit) if unit else None
        if info is None:
            return True
        same = {f"{q.lo:g}" for q in find_quantities(product_json_text(product))
                if q.dim == info[0]} | {f"{q.hi:g}" for q in find_quantities(
                    product_json_text(product)) if q.dim == info[0]}
        return _far_from_all(number * info[1], same)

    def _quantity_sources(self, product: dict):
        """(number string, unit as written after it, dimension, template) for amounts stated
        in the JSON title, features and details ("16H", " W"); durations only with their role
        (warranty, battery, charging)."""
        from ..claims import duration_role
        from ..units import find_quantities
        lines = [product.get("title", "")] + product.get("features", []) + \
            [f"{k}: {v}" for k, v in (product.get("details") or {}).items()]
        out = []
        for line in lines:
            for q in find_quantities(line):
                m = re.match(r".*?(\d[\d,]*(?:\.\d+)?)", q.text)
                if not (m and q.dim in UNIT_SWAPS and q.lo == q.hi and not q.qualifier):
                    continue
                unit = q.text[m.end():]
                if q.dim == "duration":
                    tpl = DURATION_TEMPLATES.get(duration_role(line, q.start, q.end))
                    if tpl:
                        out.append((m.group(1), unit, q.dim, tpl))
                else:
                    out.append((m.group(1), unit, q.dim, None))
        return out

    def _template(self, tpl):
        return tpl or self.rng.choice(QUANTITY_TEMPLATES)

    def number(self, rec: dict) -> Planted | None:
        product, review = rec["product"], rec["review"]
        pnums = self._facts_numbers(product)
        claims, _ = self._extract(review)
        targets = [c for c in claims if c.kind in ("quantity", "price") and c.qualifier is None
                   and c.value[0] == c.value[1]]
        self.rng.shuffle(targets)
        for c in targets:
            m = re.search(r"\d[\d,]*(?:\.\d+)?", c.text)
            if not m:
                continue
            old = m.group(0)
            unit = c.extra.get("unit") if c.kind == "quantity" else None
            for fac in self.rng.sample(FACTORS, len(FACTORS)):
                new = _fmt_like(float(old.replace(",", "")) * fac, old)
                if new != old and self._wrong_amount(product, float(new.replace(",", "")), unit,
                                                     pnums):
                    s = c.start + m.start()
                    text = review[:s] + new + review[s + len(old):]
                    return Planted("number", "in_place", text, (c.start, c.end + len(new) -
                                                                 len(old)), new, rec["id"])
        sources = self._quantity_sources(product)
        if sources:
            num, unit, _, tpl = self.rng.choice(sources)
            for fac in self.rng.sample(FACTORS, len(FACTORS)):
                new = _fmt_like(float(num.replace(",", "")) * fac, num)
                if self._wrong_amount(product, float(new.replace(",", "")), unit.strip(" -"),
                                      pnums):
                    q = f"{new}{unit}"
                    text, span = _insert(self.rng, review, self._template(tpl).format(q=q))
                    return Planted("number", "inserted", text, span, q, rec["id"])
        price = (product.get("price") or {}).get("amount")
        if price:
            sym = {"INR": "₹", "USD": "$", "GBP": "£", "EUR": "€"}.get(
                product["price"].get("currency"), "$")
            for fac in self.rng.sample(FACTORS, len(FACTORS)):
                v = price * fac
                if _far_from_all(v, pnums):
                    p = f"{sym}{int(round(v)):,}"
                    text, span = _insert(self.rng, review, self.rng.choice(
                        PRICE_TEMPLATES).format(p=p))
                    return Planted("number", "inserted", text, span, p, rec["id"])
        return None

    def unit(self, rec: dict) -> Planted | None:
        """Same number, another unit of the same dimension, so the stated amount is wrong by
        more than 25 % against every amount of that dimension in the JSON."""
        from ..units import find_quantities
        product, review = rec["product"], rec["review"]
        stated = [q.lo for q in find_quantities(product_json_text(product))]

        def swap(num: str, unit: str, dim: str) -> str | None:
            n = float(num.replace(",", ""))
            for u in self.rng.sample(UNIT_SWAPS[dim], len(UNIT_SWAPS[dim])):
                if _factor(u) == _factor(unit):
                    continue
                if _far_from_all(n * _factor(u), {f"{v:g}" for v in stated}):
                    return u
            return None

        claims, _ = self._extract(review)
        targets = [c for c in claims if c.kind == "quantity" and c.extra["dimension"] in
                   UNIT_SWAPS and c.qualifier is None and c.value[0] == c.value[1]]
        self.rng.shuffle(targets)
        for c in targets:
            m = re.match(r"(.*?)(\d[\d,]*(?:\.\d+)?)", c.text)
            u = m and swap(m.group(2), c.extra["unit"], c.extra["dimension"])
            if u:
                new = f"{m.group(1)}{m.group(2)} {u}"
                text = review[:c.start] + new + review[c.end:]
                return Planted("unit", "in_place", text, (c.start, c.start + len(new)), new,
                               rec["id"])
        sources = self._quantity_sources(product)
        self.rng.shuffle(sources)
        for num, unit, dim, tpl in sources:
            u = swap(num, unit.strip(" -"), dim)
            if u:
                q = f"{num} {u}"
                text, span = _insert(self.rng, review, self._template(tpl).format(q=q))
                return Planted("unit", "inserted", text, span, q, rec["id"])
        return None

    def brand(self, rec: dict) -> Planted | None:
        product, review = rec["product"], rec["review"]
        alnum = re.sub(r"[^a-z0-9]", "", product_json_text(product).lower())
        choices = [b for b in self.other_brands if lx.brand_key(b) not in alnum
                   and lx.brand_key(b) not in lx.RETAILERS]
        if not choices:
            return None
        b = self.rng.choice(choices)
        own = product.get("brand")
        if own:
            m = re.search(rf"(?<!\w){re.escape(own)}(?!\w)", review, re.I)
            if m:
                text = review[:m.start()] + b + review[m.end():]
                return Planted("brand", "in_place", text, (m.start(), m.start() + len(b)), b,
                               rec["id"])
        text, span = _insert(self.rng, review, self.rng.choice(BRAND_TEMPLATES).format(
            B=b, noun=_product_noun(product)))
        return Planted("brand", "inserted", text, span, b, rec["id"])

    def _swap_word(self, rec, kind, choices, blockers, templates, key) -> Planted | None:
        product, review = rec["product"], rec["review"]
        low = product_json_text(product).lower()
        pool = [c for c in choices if not any(w in low for w in blockers.get(c, (c,)))]
        if not pool:
            return None
        new = self.rng.choice(pool)
        claims, _ = self._extract(review)
        # "glass" names a material only in a material context: never swapped in place
        targets = [c for c in claims if c.kind == kind] if new != "glass" else []
        if kind == "colour" and new in AMBIGUOUS_COLOUR_CHOICES:
            new += " colour"
            templates = ("The {c} looks great.", "Mine came in {c}.", "The {c} is nice.")
        if targets:
            c = self.rng.choice(targets)
            text = review[:c.start] + new + review[c.end:]
            return Planted(kind, "in_place", text, (c.start, c.start + len(new)), new, rec["id"])
        text, span = _insert(self.rng, review, self.rng.choice(templates).format(
            **{key: new, "noun": _product_noun(product)}))
        return Planted(kind, "inserted", text, span, new, rec["id"])

    def colour(self, rec: dict) -> Planted | None:
        return self._swap_word(rec, "colour", COLOUR_CHOICES, COLOUR_WORDS, COLOUR_TEMPLATES,
                               "c")

    def material(self, rec: dict) -> Planted | None:
        return self._swap_word(rec, "material", MATERIAL_CHOICES, MATERIAL_WORDS,
                               MATERIAL_TEMPLATES, "m")

    def feature(self, rec: dict) -> Planted | None:
        product, review = rec["product"], rec["review"]
        low = product_json_text(product).lower()
        pool = [f for f, block in INVENTED_FEATURES if not any(b in low for b in block)]
        if not pool:
            return None
        f = self.rng.choice(pool)
        tpl = self.rng.choice(FEATURE_TEMPLATES)
        if "the {f}" in tpl.lower():
            f = re.sub(r"^(?:a|an)\s+", "", f)
        text, span = _insert(self.rng, review, tpl.format(f=f, noun=_product_noun(product)))
        return Planted("feature", "inserted", text, span, f, rec["id"])


HALLUCINATION_KINDS = ("number", "unit", "brand", "colour", "material", "feature")


def planted_hallucinations(records: list[dict], seed: int = 0) -> list[Planted]:
    rng = random.Random(seed)
    brands = sorted({r["product"]["brand"] for r in records if r["product"].get("brand")})
    brands = [b for b in brands if re.sub(r"[®™©]", "", b).strip() in lx.known_brands()]
    inj = Injector(rng, brands)
    out = []
    for rec in records:
        for kind in HALLUCINATION_KINDS:
            got = getattr(inj, kind)(rec)
            if got is not None:
                out.append(got)
    return out


# --- fluency perturbations -----------------------------------------------------------------
def shuffle_words(rng: random.Random, text: str) -> str:
    words = text.split()
    for _ in range(10):
        rng.shuffle(words)
        if " ".join(words) != text:
            break
    return " ".join(words)


def repeat_span(rng: random.Random, text: str) -> str:
    """A decoding loop: a span of 2-6 words repeated 3-6 times in place."""
    words = text.split()
    n = rng.randint(2, min(6, max(2, len(words))))
    i = rng.randrange(0, max(1, len(words) - n + 1))
    span = words[i:i + n]
    return " ".join(words[:i + n] + span * rng.randint(3, 6) + words[i + n:])


def truncate(rng: random.Random, text: str) -> str:
    """Cut mid-sentence: after 30-80 % of the words, never right after a sentence end."""
    words = text.split()
    lo, hi = max(2, int(0.3 * len(words))), max(3, int(0.8 * len(words)))
    for _ in range(20):
        k = rng.randint(lo, hi)
        if not re.search(r"[.!?]$", words[k - 1]) and k < len(words):
            return " ".join(words[:k])
    return " ".join(words[:lo]).rstrip(".!?")


PERTURBATIONS = {"shuffled": shuffle_words, "repeated": repeat_span, "truncated": truncate}
