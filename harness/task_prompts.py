"""Prompt builders of the classification and next-item tasks: record -> (prompt, target).

Registered in harness.prompts.EXAMPLE_BUILDERS under the lm-eval task names, so the lm-eval
tasks and the trainer (build_example) use the same text:

  product_department / product_aisle   multiple choice: the prompt asks for the class, each
                                       class name is scored as the answer (no list shown)
  product_department_gen / _aisle_gen  generate: the class names are listed in the prompt
  product_nextitem                     the titles of the user's last items -> the next title
                                       (each candidate title is scored as the answer)

The target starts with a space (plain-text completion); with a chat template the trainer and
lm-eval put it, stripped, in the assistant turn. The data of a `_gen` task is its base task's.
"""
from __future__ import annotations

from .labels import label_space
from .prompts import register_example_builder

# data task -> how its question reads; the class names come from the record's label space
CLASSIFY = {
    "product_department": {"noun": "Department",
                           "question": "Which department of a grocery store sells this product?"},
    "product_aisle": {"noun": "Aisle",
                      "question": "In which aisle of a grocery store is this product?"},
}
GEN_SUFFIX = "_gen"


def data_task(task: str) -> str:
    """The task whose prepared data a task reads (product_department_gen -> product_department)."""
    return task[:-len(GEN_SUFFIX)] if task.endswith(GEN_SUFFIX) else task


def classify_prompt(task: str, title: str, labels: list[str] | None = None) -> str:
    """Without labels (multiple choice): question, product, "Department:" to be completed.
    With labels (generate): product first, then the question and the list, so that the last
    thing a small instruct model reads is what to answer (it tends to echo the product name
    otherwise)."""
    spec = CLASSIFY[data_task(task)]
    if labels is None:
        return f"{spec['question']}\n\nProduct: {title}\n{spec['noun']}:"
    noun = spec["noun"].lower()
    return (f"Product: {title}\n\n{spec['question']} Choose one of: {', '.join(labels)}.\n"
            f"Answer with the {noun} name only.")


def _classify_builder(task: str, with_list: bool):
    def build(record: dict) -> tuple[str, str]:
        labels = label_space(record) if with_list else None
        return classify_prompt(task, record["product"]["title"], labels), " " + record["label"]
    build.__name__ = f"{task}_example"
    return build


for _task in CLASSIFY:
    register_example_builder(_task)(_classify_builder(_task, with_list=False))
    register_example_builder(_task + GEN_SUFFIX)(_classify_builder(_task + GEN_SUFFIX, True))


NEXTITEM_INSTRUCTION = "A customer bought these products, oldest first:"
NEXTITEM_QUESTION = "Which product did the customer buy next?\nNext product:"


def nextitem_prompt(history: list[str]) -> str:
    lines = "\n".join(f"{i}. {t}" for i, t in enumerate(history, 1))
    return f"{NEXTITEM_INSTRUCTION}\n{lines}\n\n{NEXTITEM_QUESTION}"


@register_example_builder("product_nextitem")
def nextitem_example(record: dict) -> tuple[str, str]:
    return nextitem_prompt(record["history"]), " " + record["target"]
