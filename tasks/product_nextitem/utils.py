"""product_nextitem hooks for lm-eval; the logic is in harness.tasks.nextitem."""
from harness.tasks.nextitem import (doc_to_choice_nextitem as doc_to_choice,
                                    doc_to_target_nextitem as doc_to_target,
                                    doc_to_text_nextitem as doc_to_text,
                                    load_nextitem as load_dataset,
                                    process_nextitem as process_results)  # noqa: F401
