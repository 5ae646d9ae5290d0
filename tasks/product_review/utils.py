"""product_review task hooks for lm-eval. All logic lives in the `harness` package, so the
trainer, the CLI and stock `lm_eval --include_path tasks` share one implementation."""
from harness.metrics import score_review
from harness.prompts import review_example
from harness.tasks_registry import load_task_dataset, record_of


def load_dataset(**metadata):
    return load_task_dataset("product_review", metadata.get("data"))


def doc_to_text(doc):
    return review_example(record_of(doc))[0]


def doc_to_target(doc):
    return review_example(record_of(doc))[1]


def process_results(doc, results):
    return score_review(record_of(doc), results[0])


def first_paragraph(resps, docs):
    """lm-eval filter: each response trimmed to its first non-empty paragraph."""
    from harness.metrics.text import first_paragraph as fp
    return [[fp(r) for r in rs] for rs in resps]
