"""product_review: product JSON -> a short customer review. The prompt builder and the lm-eval
hooks; tasks/product_review/utils.py only binds them, so the trainer, the CLI and stock
`lm_eval --include_path tasks` share one implementation."""
from __future__ import annotations

import json

from ..data import SPLITS
from ..errors import HarnessError
from ..metrics import prefetch, score_review
from ..metrics.catalogue import register_catalogue
from ..metrics.config import configure_from_metadata, current, reference_for
from ..metrics.text import first_paragraph as _first_paragraph
from ..prompts import review_prompt
from .records import load_task_dataset, read_records, record_of

TASK = "product_review"


def review_example(record: dict) -> tuple[str, str]:
    return review_prompt(record["product"]), " " + record["review"].strip()


def register_task_data(data=None, fallback: list[dict] | None = None) -> str:
    """Register the product_review task data as the catalogue the metrics score against
    (`data` as in lm-eval's metadata: None = the prepared data or the demo set); the given
    records when that data is not on this machine. Returns where the catalogue came from."""
    try:
        recs = [r for s in SPLITS for r in read_records(TASK, s, data)]
        source = f"task data ({data or 'default'})"
    except HarnessError:
        recs, source = list(fallback or []), "scored samples only"
    register_catalogue(recs, source)
    return source


# --- lm-eval hooks ---------------------------------------------------------------------------

def load_dataset(**metadata):
    """The task data; also hands the metadata (fluency_reference, model_under_test, nli_model,
    scorers) to the scorers and registers every product as the catalogue (brands, the average
    product that centres relevance_product)."""
    configure_from_metadata(metadata)
    ds = load_task_dataset(TASK, metadata.get("data"))
    register_catalogue([json.loads(r) for split in ds.values() for r in split["record"]],
                       f"task data ({metadata.get('data') or 'default'})")
    return ds


def doc_to_text(doc):
    return review_example(record_of(doc))[0]


def doc_to_target(doc):
    return review_example(record_of(doc))[1]


def process_results(doc, results):
    out = score_review(record_of(doc), results[0])
    cfg = current()
    if "bits_per_byte" in out:
        out["fluency_reference"] = reference_for(cfg.model_under_test, cfg.fluency_reference)
    return out


def first_value(values):
    """Run figure of a per-sample label: the value all samples share, else 'mixed'."""
    vals = {v for v in values if v is not None}
    return vals.pop() if len(vals) == 1 else ("mixed" if vals else "")


def first_paragraph(resps, docs):
    """lm-eval filter: each response trimmed to its first non-empty paragraph. The first
    responses of all documents are then scored in one batch (harness.metrics.prefetch);
    process_results reads those scores."""
    out = [[_first_paragraph(r) for r in rs] for rs in resps]
    prefetch([record_of(d) for d in docs], [rs[0] if rs else "" for rs in out])
    return out
