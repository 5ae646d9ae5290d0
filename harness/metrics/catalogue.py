"""The catalogue a run is scored against: every product of the task data. Its brands extend the
brand lexicon (a review naming another product's brand is caught) and its average product
centres relevance_product. lm-eval's load_dataset, `harness score` and `harness metrics
validate` register the same task data, so the same sample gets the same scores on every path."""
from __future__ import annotations

def register_catalogue(records: list[dict], source: str) -> None:
    from .lexicon import register_brands, register_part_words
    from .relevance import register_catalogue as centre_on

    products = [r.get("product") or {} for r in records]
    register_brands(p.get("brand") for p in products)
    register_part_words(products)
    centre_on(products, source)
