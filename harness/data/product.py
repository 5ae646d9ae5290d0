"""One normalised product schema, shared by every task, the prompts and the metrics.

    {"title": str, "brand": str, "category": [str, ...],
     "price": {"amount": float, "currency": "INR", "list_price": float, "discount_percent": float},
     "rating": float, "rating_count": int, "features": [str, ...], "details": {str: str}}

Absent or junk fields are dropped, never stored empty.
"""
from __future__ import annotations

import html
import re
from typing import Any

CURRENCY_SYMBOLS = {"₹": "INR", "$": "USD", "£": "GBP", "€": "EUR", "Rs.": "INR", "Rs": "INR"}

# Text that says nothing about the product itself.
JUNK_PATTERNS = [
    r"^\s*$",
    r"statements regarding dietary supplements",
    r"have not been evaluated by the fda",
    r"^\s*(free )?shipping\b",
    r"ships? (free|from|within|in \d)",
    r"^\s*(visit|see) the .* store",
    r"click (here|the)",
    r"^\s*asin\b",
    r"^\s*customer reviews?\b",
    r"^\s*best sellers? rank",
    r"^\s*date first available",
    r"^\s*manufacturer\s*$",
    r"^\s*national stock number",
    r"javascript|</?\w+[^>]*>|\{\s*[\w-]+\s*:",
]
_JUNK_RE = re.compile("|".join(f"(?:{p})" for p in JUNK_PATTERNS), re.I)
# Detail keys that carry shipping or catalogue boilerplate rather than product facts.
JUNK_DETAIL_KEYS = {"asin", "shipping weight", "best sellers rank", "customer reviews",
                    "date first available", "domestic shipping", "international shipping",
                    "item model number_", "is discontinued by manufacturer", "upc", "ean"}

_TAG_RE = re.compile(r"<[^<>]*>")
# A tag that is never closed: "<span class=..." up to the next "<" or the end of the text.
_OPEN_TAG_RE = re.compile(r"<\s*/?\s*[A-Za-z!][^<>]*(?=<|$)")
# Attribute junk of a tag whose "<" was cut off: ' class="a-size-large" id="productTitle">'
# (HTML attribute names only, so "Voltage=220V" or 'Size="L"' in real text stay).
_ATTRS_RE = re.compile(r"""(?:(?:^|\s)(?:class|id|style|href|src|alt|title|width|height|type|"""
                       r"""name|rel|target|dir|lang|role|(?:data|aria)-[\w-]+)\s*=\s*"""
                       r"""(?:"[^"]*"?|'[^']*'?|[^\s"'<>]+))+\s*/?>?""", re.I)
_WS_RE = re.compile(r"\s+")


def clean_text(value: Any) -> str:
    """Unescape HTML, strip tags (also unclosed ones, and attribute junk of a tag whose start
    was cut off), fold white space. Text that was nothing but markup becomes ""."""
    if value is None:
        return ""
    text = html.unescape(str(value))
    text = _TAG_RE.sub(" ", text)
    text = _OPEN_TAG_RE.sub(" ", text)
    text = _ATTRS_RE.sub(" ", text)
    return _WS_RE.sub(" ", text).strip()


def is_junk(text: str) -> bool:
    return len(text) < 2 or bool(_JUNK_RE.search(text))


def parse_number(text: Any) -> float | None:
    """'₹1,099' -> 1099.0, '64%' -> 64.0, '24,269' -> 24269.0; None when there is no number."""
    if text is None:
        return None
    if isinstance(text, (int, float)):
        return float(text)
    m = re.search(r"-?\d[\d,]*(?:\.\d+)?", str(text))
    if not m:
        return None
    try:
        return float(m.group(0).replace(",", ""))
    except ValueError:
        return None


def parse_price(text: Any, default_currency: str = "USD") -> tuple[float | None, str | None]:
    if text is None or str(text).strip() == "":
        return None, None
    s = str(text).strip()
    currency = default_currency
    for sym, code in CURRENCY_SYMBOLS.items():
        if s.startswith(sym) or sym in s:
            currency = code
            break
    if "-" in s.strip("-") and re.search(r"\d\s*-\s*[^\d]*\d", s):
        # price ranges ("$10.00 - $50.00") are not one price
        return None, None
    amount = parse_number(s)
    return amount, (currency if amount is not None else None)


# Brand-style words that are written in camel case and must stay whole (besides the words
# with one lower-case letter before the capital: iPad, eBook, iPhone).
CAMEL_KEEP = {"MacBook", "PlayStation", "YouTube", "PowerPoint", "AirPods", "OnePlus", "GoPro",
              "SanDisk", "WhatsApp", "LinkedIn", "ThinkPad", "IdeaPad", "PowerShot", "HomePod",
              "AirPort", "FireStick", "SmartThings", "JavaScript", "PayPal", "DeWalt",
              "McAfee", "McDonald", "FedEx", "PowerBeats", "BlackBerry"}


def split_camel(text: str) -> str:
    """Joined category words apart: "HomeTheater" -> "Home Theater", "SmartWatches" ->
    "Smart Watches"; "USBCables", "iPad", "eBook" and the brand words of CAMEL_KEEP stay."""
    def word(m: re.Match) -> str:
        w = m.group(0)
        # a split needs two lower-case letters before the capital: "iPad", "eBook" stay
        return w if w in CAMEL_KEEP else re.sub(r"(?<=[a-z]{2})(?=[A-Z][a-z])", " ", w)
    return re.sub(r"[A-Za-z]+", word, text)


def split_category(value: Any) -> list[str]:
    if value is None:
        return []
    parts = value if isinstance(value, list) else re.split(r"\|", str(value))
    out: list[str] = []
    for p in parts:
        p = clean_text(p)
        p = re.sub(r"(?<=[a-z])&(?=[A-Z])", " & ", p)          # "Computers&Accessories"
        p = split_camel(p)
        if p and not is_junk(p) and (not out or out[-1] != p):
            out.append(p)
    return out


def clean_list(values: Any, sep: str | None = None) -> list[str]:
    if values is None:
        return []
    if isinstance(values, str):
        values = values.split(sep) if sep else [values]
    out, seen = [], set()
    for v in values:
        t = clean_text(v)
        if t and not is_junk(t) and t.lower() not in seen:
            seen.add(t.lower())
            out.append(t)
    return out


def clean_details(details: Any) -> dict[str, str]:
    """Text details only: an entry whose value is an object or a list (e.g. a nested "Best
    Sellers Rank") is left out, never stored as its repr."""
    if not isinstance(details, dict):
        return {}
    out = {}
    for k, v in details.items():
        if isinstance(v, (dict, list, tuple, set, bool)) or v is None:
            continue
        key = clean_text(k).strip(" :").strip()
        val = clean_text(v)
        if not key or not val or key.lower() in JUNK_DETAIL_KEYS or is_junk(val) or is_junk(key):
            continue
        out[key] = val
    return out


def make_product(*, title: Any, brand: Any = None, category: Any = None, price: Any = None,
                 list_price: Any = None, discount_percent: Any = None, rating: Any = None,
                 rating_count: Any = None, features: Any = None, details: Any = None,
                 default_currency: str = "USD") -> dict:
    """Build a normalised product dict; raises ValueError('missing title') when unusable."""
    product: dict[str, Any] = {}
    t = clean_text(title)
    if not t and title is not None and str(title).strip():
        raise ValueError("title empty after cleaning (markup only)")
    if not t or is_junk(t):
        raise ValueError("missing title")
    product["title"] = t
    b = clean_text(brand)
    if b and not is_junk(b) and b.lower() not in {"unknown", "generic", "n/a", "na", "none"}:
        product["brand"] = re.sub(r"^(visit the|by)\s+|\s+store$", "", b, flags=re.I).strip()
    cat = split_category(category)
    if cat:
        product["category"] = cat
    amount, cur = parse_price(price, default_currency)
    lp, lcur = parse_price(list_price, default_currency)
    if amount is not None or lp is not None:
        p: dict[str, Any] = {"amount": amount if amount is not None else lp, "currency": cur or lcur}
        if lp is not None and amount is not None and lp > amount:
            p["list_price"] = lp
        d = parse_number(discount_percent)
        if d is not None and 0 < d < 100:
            p["discount_percent"] = d
        product["price"] = p
    r = parse_number(rating)
    if r is not None and 0 < r <= 5:
        product["rating"] = r
    rc = parse_number(rating_count)
    if rc is not None and rc >= 0:
        product["rating_count"] = int(rc)
    feats = clean_list(features)
    if feats:
        product["features"] = feats
    det = clean_details(details)
    if det:
        product["details"] = det
    from ..errors import HarnessError
    from .schema import validate_product
    try:   # the schema every later stage relies on (a failure here is a bug, counted)
        return validate_product(product, "normalised product")
    except HarnessError as e:
        raise ValueError(str(e)) from None


# --- raw rows: which types a reader can use ------------------------------------------------
RAW_KINDS = {
    "text": "a string",                   # (a number is taken as its text)
    "texts": "a string or a list of strings",
    "number": "a number or a numeric string",
    "mapping": "an object",
}


def _kind_ok(kind: str, v: Any) -> bool:
    if v is None:
        return True
    scalar = isinstance(v, (str, int, float)) and not isinstance(v, bool)
    if kind in ("text", "number"):
        return scalar
    if kind == "texts":   # a bare number is no list of texts ("feature": 5)
        return isinstance(v, str) or (isinstance(v, list) and all(
            isinstance(x, (str, int, float)) and not isinstance(x, bool) for x in v))
    return isinstance(v, dict)


def raw_problem(row: dict, kinds: dict[str, str]) -> str | None:
    """The skip reason of a raw row with a field its reader cannot use, e.g. "bad field price
    (list, expected a number or a numeric string)"; None when every field is usable. Stops
    `price: ["$1", "$2"]` becoming 1.0 and a dict summary becoming its repr."""
    from .schema import _type_name

    for name, kind in kinds.items():
        v = row.get(name)
        if not _kind_ok(kind, v):
            return f"bad field {name} ({_type_name(v)}, expected {RAW_KINDS[kind]})"
    return None


def as_list(v: Any) -> list:
    """A raw list field: None -> [], one string -> [it] (never its characters)."""
    if v is None:
        return []
    return list(v) if isinstance(v, list) else [v]
