"""product_review hooks for lm-eval; the logic is in harness.tasks.review."""
from harness.backends.hf import generate_no_loop  # noqa: F401  (YAML custom_generate)
from harness.metrics.aggregate import pooled_hallucination_rate  # noqa: F401  (YAML aggregation)
from harness.tasks.review import (doc_to_target, doc_to_text, first_paragraph,  # noqa: F401
                                  first_value, load_dataset, process_results)
