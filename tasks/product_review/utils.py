"""product_review task hooks for lm-eval. All logic lives in the `harness` package, so the
trainer, the CLI and stock `lm_eval --include_path tasks` share one implementation."""
import json

from harness.backends.hf import generate_no_loop  # noqa: F401  (YAML custom_generate)
from harness.metrics import score_review
from harness.metrics.aggregate import pooled_hallucination_rate  # noqa: F401  (YAML aggregation)
from harness.metrics.catalogue import register_catalogue
from harness.metrics.config import configure_from_metadata, current, reference_for
from harness.prompts import review_example
from harness.tasks_registry import load_task_dataset, record_of


def load_dataset(**metadata):
    """The task data; also hands the metadata (fluency_reference, model_under_test, nli_model,
    scorers) to the scorers and registers every product as the catalogue (brands, the average
    product that centres relevance_product)."""
    configure_from_metadata(metadata)
    ds = load_task_dataset("product_review", metadata.get("data"))
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
    from harness.metrics import prefetch
    from harness.metrics.text import first_paragraph as fp
    out = [[fp(r) for r in rs] for rs in resps]
    prefetch([record_of(d) for d in docs], [rs[0] if rs else "" for rs in out])
    return out
