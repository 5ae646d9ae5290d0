"""Tasks stage: each task's prompt builder and lm-eval hooks (one module per task), the
records bridge to lm-eval (records.py) and the classical baselines (baselines.py).

TASKS is the one table of task names: task -> function(record) -> (prompt, target). The lm-eval
task folders (tasks/<task>/utils.py) and the trainer both build their text through it, so a
model is trained on exactly the text it is evaluated on. Adding a task: a tasks/<task>/ folder,
a preparer in harness/data/ (+1 line in harness.data.prepare.PREPARERS) and a module here
(+1 line in TASKS); see the README, "Add a task".
"""
from __future__ import annotations

from functools import partial
from typing import Callable

from . import category, nextitem, review

# one line a task (an lm-eval variant of a task is a task too: its YAML names it)
TASKS: dict[str, Callable[[dict], tuple[str, str]]] = {
    "product_review": review.review_example,
    "product_department": partial(category.classify_example, "product_department"),
    "product_department_gen": partial(category.classify_example, "product_department_gen"),
    "product_aisle": partial(category.classify_example, "product_aisle"),
    "product_aisle_gen": partial(category.classify_example, "product_aisle_gen"),
    "product_nextitem": nextitem.nextitem_example,
}


# The metrics a task is judged by first (the compare report's verdict, per-sample diffs and
# plots), best first; each one its task's YAML lists.
PRIMARY_METRICS: dict[str, tuple[str, ...]] = {
    "product_review": ("hallucination_rate", "relevance_product", "rouge_l", "bits_per_byte"),
    "product_department": ("acc",), "product_department_gen": ("acc",),
    "product_aisle": ("acc",), "product_aisle_gen": ("acc",),
    "product_nextitem": ("mrr", "hit@10"),
}


def build_example(task: str, record: dict) -> tuple[str, str]:
    try:
        build = TASKS[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}") from None
    return build(record)
