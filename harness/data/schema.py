"""The one product schema, checked with pydantic v2 wherever a product comes in: the raw data
readers (after normalisation, harness.data.review / generic), `harness generate` (its
--product input) and task loading (every task JSONL record that holds a "product").

    {"title": str, "brand": str, "category": [str, ...],
     "price": {"amount": float, "currency": str, "list_price": float, "discount_percent": float},
     "rating": float, "rating_count": int, "features": [str, ...], "details": {str: str}}

Only "title" is required. Keys outside the schema are kept as they are (they never reach the
prompt: harness.prompts.REVIEW_FIELDS). A value of the wrong type is one HarnessError naming
where the product came from (file:line, or file[index]) and the field, e.g.
`products.jsonl:3: product field features[1]: expected a string, got null`.

Safe coercions (the only ones; everything else is an error):

| field | accepted besides the schema type | becomes |
|---|---|---|
| any string | surrounding white space | stripped |
| category | one string, parts split on " > " or "|" | ["Kitchen", "Cookware"] (never characters) |
| features | one string | a one-element list (never characters) |
| price | a bare number (int or float) | {"amount": number} |
| amount, list_price, discount_percent, rating | an int, or a plain numeric string ("12.5") | float |
| rating_count | a whole float (12.0) or a digit string ("12") | int |
| details values | an int or float | its text ("210") |
| optional fields | null | left out |

Booleans are never numbers, NaN and infinity are rejected, rating is 0-5, prices and counts are
not negative, discount_percent is 0-100; lists (e.g. `price: [1, 2, 3]`), objects and null
inside a list are errors.
"""
from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, StrictStr, ValidationError,
                      field_validator)

from ..errors import HarnessError

_NUMERIC = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$")


def _type_name(v: Any) -> str:
    return {type(None): "null", bool: "boolean", int: "integer", float: "number", str: "string",
            list: "list", dict: "object"}.get(type(v), type(v).__name__)


def _number(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise ValueError(f"expected a number, got {_type_name(v)}")
    if isinstance(v, str):
        if not _NUMERIC.match(v):
            raise ValueError(f"expected a number, got the string {v[:40]!r}")
        v = float(v)
    v = float(v)
    if not math.isfinite(v):
        raise ValueError("expected a finite number")
    return v


def _count(v: Any) -> int:
    if isinstance(v, str) and v.strip().isdigit():
        return int(v.strip())
    f = _number(v)
    if f != int(f):
        raise ValueError(f"expected a whole number, got {v!r}")
    return int(f)


def _text(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"expected a string, got {_type_name(v)}")
    return v.strip()


def _nonempty_text(v: Any) -> str:
    v = _text(v)
    if not v:
        raise ValueError("empty string")
    return v


def _text_list(v: Any, split: str | None = None) -> list:
    if isinstance(v, str):
        parts = re.split(split, v) if split else [v]
        return [p.strip() for p in parts if p.strip()]
    if not isinstance(v, list):
        raise ValueError(f"expected a list of strings, got {_type_name(v)}")
    return v


def _detail_value(v: Any) -> Any:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return f"{v:g}" if isinstance(v, float) else str(v)
    return v


Number = Annotated[float, BeforeValidator(_number)]
Count = Annotated[int, BeforeValidator(_count), Field(ge=0)]
Text = Annotated[StrictStr, BeforeValidator(_text)]
NonEmptyText = Annotated[StrictStr, BeforeValidator(_nonempty_text)]
# (before-validators run last first: a number becomes text, then the text is checked)
DetailValue = Annotated[StrictStr, BeforeValidator(_text), BeforeValidator(_detail_value)]


class Price(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: Annotated[Number, Field(ge=0)]
    currency: Text | None = None
    list_price: Annotated[Number, Field(ge=0)] | None = None
    discount_percent: Annotated[Number, Field(ge=0, le=100)] | None = None


class Product(BaseModel):
    model_config = ConfigDict(extra="allow")
    title: NonEmptyText
    brand: Text | None = None
    category: list[NonEmptyText] | None = None
    price: Price | None = None
    rating: Annotated[Number, Field(ge=0, le=5)] | None = None
    rating_count: Count | None = None
    features: list[Text] | None = None
    details: dict[StrictStr, DetailValue] | None = None

    @field_validator("category", mode="before")
    @classmethod
    def _category(cls, v):
        return None if v is None else _text_list(v, r"\s+>\s+|\|")

    @field_validator("features", mode="before")
    @classmethod
    def _features(cls, v):
        return None if v is None else _text_list(v)

    @field_validator("price", mode="before")
    @classmethod
    def _price(cls, v):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return {"amount": v}
        if v is not None and not isinstance(v, dict):
            raise ValueError(f"expected an object {{\"amount\": number, \"currency\": ...}} or a "
                             f"number, got {_type_name(v)}")
        return v

    @field_validator("details", mode="before")
    @classmethod
    def _details(cls, v):
        if v is not None and not isinstance(v, dict):
            raise ValueError(f"expected an object of strings, got {_type_name(v)}")
        return v


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" in str(part):
            continue   # pydantic's validator step names, not fields
        else:
            out += ("." if out else "") + str(part)
    return out or "product"


def _message(err: dict) -> str:
    msg = err.get("msg", "invalid")
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    if err.get("type") == "missing":
        return "required, missing"
    if err.get("type", "").startswith("string_type"):
        return f"expected a string, got {_type_name(err.get('input'))}"
    return msg[0].lower() + msg[1:] if msg else msg


def validate_product(obj: Any, where: str) -> dict:
    """The product as a plain dict (safe coercions applied, None fields left out), or one
    HarnessError `WHERE: product field FIELD: what is wrong`."""
    if not isinstance(obj, dict):
        raise HarnessError(f"{where}: expected a product JSON object, got {_type_name(obj)}")
    try:
        product = Product.model_validate(obj)
    except ValidationError as e:
        errs = e.errors(include_url=False)
        first = errs[0]
        more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
        raise HarnessError(f"{where}: product field {_loc(first['loc'])}: "
                           f"{_message(first)}{more}") from None
    return product.model_dump(exclude_none=True)


def validate_record(record: dict, where: str, task: str | None = None) -> dict:
    """A task record: its "product" (when it has one, or must: product_review) validated in
    place; product_review also needs a "review" string."""
    prod = record.get("product")
    if task != "product_review" and isinstance(prod, dict) and \
            isinstance(prod.get("title"), str) and not prod["title"].strip():
        return record   # unusable, not malformed: the task's own check skips and counts it
    if "product" in record or task == "product_review":
        record = {**record, "product": validate_product(prod, where)}
    if task == "product_review" and not isinstance(record.get("review"), str):
        raise HarnessError(f"{where}: record field review: expected a string, got "
                           f"{_type_name(record.get('review'))}")
    return record
