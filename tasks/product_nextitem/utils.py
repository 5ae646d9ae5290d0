"""product_nextitem hooks for lm-eval; the logic is in harness.task_hooks."""
from harness.task_hooks import (doc_to_choice_nextitem as doc_to_choice,  # noqa: F401
                                doc_to_target_nextitem as doc_to_target,
                                doc_to_text_nextitem as doc_to_text,
                                load_nextitem as load_dataset,
                                process_nextitem as process_results)
