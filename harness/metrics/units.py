"""Numbers and units: parse "1,00,000", "10k", "1.5-2 m", "₹1,099/-" and convert every
quantity to one base unit per dimension, so "10000 mAh" equals "10 Ah" and "6 ft" equals
"1.83 m". The table is data: (regex, dimension, factor to the base unit, spacing rule)."""
from __future__ import annotations

import re
from dataclasses import dataclass

# A number: 1,099 | 1,00,000 | 10000 | 1.5 | .5 (no sign: reviews do not state negative specs)
NUM = r"(?:\d{1,3}(?:,\d{2,3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15,
                "twenty": 20, "a dozen": 12, "dozen": 12, "a pair": 2, "pair": 2, "single": 1}
NUMBER_WORD_RE = "|".join(sorted(NUMBER_WORDS, key=len, reverse=True))
# Spelled-out numbers a quantity may start with ("two litres", "three-year warranty").
SPELLED = {w: v for w, v in NUMBER_WORDS.items() if " " not in w and w not in ("pair", "single",
                                                                               "dozen")}
SPELLED_RE = "|".join(sorted(SPELLED, key=len, reverse=True))

# spacing rule: "any" = "5 kg" or "5kg"; "attached" = only "5h", "3A"; "upper" = attached in
# any case, or spaced when written in upper case ("65 W", "1.5 L").
# unit regex, dimension, factor to base unit, spacing rule
UNITS: list[tuple[str, str, float, str]] = [
    (r"mah", "charge", 1.0, "any"), (r"ah", "charge", 1000.0, "any"),
    (r"kwh", "energy", 1000.0, "any"), (r"wh", "energy", 1.0, "any"),
    (r"kw|kilowatts?", "power", 1000.0, "any"), (r"watts?|w", "power", 1.0, "upper"),
    (r"kv", "voltage", 1000.0, "any"), (r"volts?|v", "voltage", 1.0, "upper"),
    (r"ma|milliamps?", "current", 0.001, "attached"),
    (r"amps?|amperes?|a", "current", 1.0, "upper_strict"),
    (r"mm|millimet(?:er|re)s?", "length", 1.0, "any"),
    (r"cm|centimet(?:er|re)s?|cms", "length", 10.0, "any"),
    (r"km|kilomet(?:er|re)s?|kms", "length", 1e6, "any"),
    (r"met(?:er|re)s?|mtrs?|m", "length", 1000.0, "any"),
    (r"inch(?:es)?|\"|″|”", "length", 25.4, "any"), (r"feet|foot|ft", "length", 304.8, "any"),
    (r"mg|milligrams?", "weight", 0.001, "any"),
    (r"kg|kgs|kilograms?|kilos?", "weight", 1000.0, "any"),
    (r"g|gm|gms|grams?|gr", "weight", 1.0, "any"), (r"lbs?|pounds?", "weight", 453.592, "any"),
    (r"oz|ounces?", "weight", 28.3495, "any"),
    (r"ml|millilit(?:er|re)s?", "volume", 1.0, "any"), (r"cl", "volume", 10.0, "attached"),
    (r"l|ltrs?|lts?|lit(?:er|re)s?", "volume", 1000.0, "upper"),
    (r"tb", "storage", 1e6, "any"), (r"gb", "storage", 1000.0, "any"),
    (r"mb", "storage", 1.0, "any"),
    (r"gb/s", "byte_rate", 1000.0, "any"), (r"mb/s", "byte_rate", 1.0, "any"),
    (r"gbps", "data_rate", 1000.0, "any"), (r"mbps", "data_rate", 1.0, "any"),
    (r"kbps", "data_rate", 0.001, "any"),
    (r"ghz", "frequency", 1e9, "any"), (r"mhz", "frequency", 1e6, "any"),
    (r"khz", "frequency", 1e3, "any"), (r"hz", "frequency", 1.0, "any"),
    (r"secs?|seconds?", "duration", 1 / 3600, "any"),
    (r"mins?|minutes?", "duration", 1 / 60, "any"),
    (r"hrs?|hours?|h", "duration", 1.0, "any_h"), (r"days?", "duration", 24.0, "any"),
    (r"weeks?", "duration", 168.0, "any"), (r"months?", "duration", 730.0, "any"),
    (r"yrs?|years?", "duration", 8760.0, "any"), (r"y", "duration", 8760.0, "upper"),
    (r"°\s?c|degrees? c(?:elsius)?|celsius", "temperature", 1.0, "any"),
    (r"db|decibels?", "loudness", 1.0, "any"), (r"rpm", "speed_rpm", 1.0, "any"),
    (r"mp|megapixels?", "camera", 1.0, "any"), (r"p", "resolution", 1.0, "attached_p"),
    (r"x", "zoom", 1.0, "attached"),
]
_UNIT_RE = "|".join(f"(?:{u})" for u, *_ in sorted(UNITS, key=lambda x: -len(x[0])))
_UNIT_ONE = [(re.compile(rf"(?:{u})\Z", re.I), dim, f, rule) for u, dim, f, rule in UNITS]
RESOLUTIONS = {144, 240, 360, 480, 720, 1080, 1440, 2160}

QUALIFIERS = {
    "approx": r"approx\.?|approximately|around|about|nearly|almost|roughly|close to|~|almost",
    "lt": r"under|below|less than|within|at most|not more than|cheaper than",
    "gt": r"over|above|more than|at least|minimum|min\.|plus|\+",
    "upto": r"up ?to|max(?:imum)?|max\.",
}
_QUAL_RE = "|".join(f"(?P<q_{k}>{v})" for k, v in QUALIFIERS.items())

QUANTITY_RE = re.compile(
    rf"(?:(?:{_QUAL_RE})\s*)?(?<![\w.,/-])(?P<n1>{NUM}|\b(?:{SPELLED_RE})\b)(?P<k1>k)?"
    rf"(?:\s*(?:-|–|to|~)\s*(?P<n2>{NUM})(?P<k2>k)?)?"
    rf"(?P<sp>\s?-?\s?)(?P<unit>{_UNIT_RE})(?![a-z0-9])", re.I)


def parse_num(s: str, k: str | None = None) -> float:
    """'1,00,000' -> 100000.0; '1.5' + 'k' -> 1500.0."""
    v = float(s.replace(",", ""))
    return v * 1000 if k else v


def decimals(s: str) -> int:
    return len(s.split(".", 1)[1]) if "." in s else 0


@dataclass(frozen=True)
class Quantity:
    dim: str
    lo: float          # in the dimension's base unit
    hi: float          # == lo unless a range "10-12 h"
    unit: str          # as written
    qualifier: str | None
    start: int
    end: int
    text: str
    precision: float   # half the last written digit, in base units ("1.8 m" -> 0.05 m)


def unit_info(unit: str) -> tuple[str, float, str] | None:
    u = unit.strip().lower()
    for rx, dim, factor, rule in _UNIT_ONE:
        if rx.match(u):
            return dim, factor, rule
    return None


def _spacing_ok(rule: str, sp: str, unit: str, n1: str) -> bool:
    attached = sp == ""
    if rule == "any":
        return True
    if rule == "any_h":      # "10h" / "10 hrs": a lone spaced "h" is too ambiguous
        return attached or unit.lower() != "h"
    if rule == "attached":
        return attached
    if rule == "upper":      # "65w", "65 W", "1.5L", "1.5 L" but not "5 w" / "2 l"
        return attached or unit[:1].isupper() or len(unit) > 1
    if rule == "upper_strict":  # "3A", "2.4 A", "amps"; never "3a" / "a"
        return len(unit) > 1 or unit == "A"
    if rule == "attached_p":
        return attached and n1.isdigit() and int(n1) in RESOLUTIONS
    return True


def find_quantities(text: str) -> list[Quantity]:
    out = []
    for m in QUANTITY_RE.finditer(text):
        unit = m.group("unit")
        info = unit_info(unit)
        if info is None:
            continue
        dim, factor, rule = info
        if not _spacing_ok(rule, m.group("sp").replace("-", ""), unit, m.group("n1")):
            continue
        # "4G"/"5G" networks, "2 in 1", "3 x" counts are not quantities
        if dim == "weight" and unit in ("G", "g") and m.group("n1") in ("2", "3", "4", "5") \
                and (unit == "G" or re.match(r"\s*(?:network|lte|volte|sim|phone|mobile|"
                                             r"support|enabled|band|connectivity)", text[m.end():],
                                             re.I)):
            continue
        qual = next((k[2:] for k, v in m.groupdict().items() if k.startswith("q_") and v), None)
        n1 = m.group("n1")
        lo = (float(SPELLED[n1.lower()]) if n1.lower() in SPELLED else
              parse_num(n1, m.group("k1"))) * factor
        hi = parse_num(m.group("n2"), m.group("k2")) * factor if m.group("n2") else lo
        if hi < lo:
            lo, hi = hi, lo
        prec = 0.5 * 10 ** (-decimals(m.group("n1"))) * factor * (1000 if m.group("k1") else 1)
        out.append(Quantity(dim, lo, hi, unit, qual, m.start(), m.end(), m.group(0), prec))
    return out


def close(a: float, b: float, rel: float = 0.03, abs_tol: float = 0.0) -> bool:
    return abs(a - b) <= max(rel * max(abs(a), abs(b)), abs_tol, 1e-9)


def matches(claim_lo: float, claim_hi: float, qualifier: str | None, fact_lo: float,
            fact_hi: float, precision: float = 0.0) -> bool:
    """Does a stated value (or range, or bound) agree with a fact value (or range)?

    Equality allows 3 % (unit conversions, rounding: "6 ft" vs "1.82 m") or half the claim's
    last written digit ("2 m" for 1.82 m). "approx" allows 15 %; "under"/"over" are bounds;
    "up to 30 h" is a spec and must equal the fact."""
    if qualifier == "lt":
        return fact_lo <= claim_hi * 1.03 or close(claim_hi, fact_hi)
    if qualifier == "gt":
        return fact_hi >= claim_lo * 0.97 or close(claim_lo, fact_lo)
    rel = 0.15 if qualifier == "approx" else 0.03
    if claim_lo != claim_hi:  # a stated range: both ends must agree, or contain the fact
        return (close(claim_lo, fact_lo, rel, precision) and close(claim_hi, fact_hi, rel,
                                                                    precision)) or \
            (fact_lo == fact_hi and claim_lo <= fact_lo <= claim_hi)
    return any(close(claim_lo, f, rel, precision) for f in {fact_lo, fact_hi})
