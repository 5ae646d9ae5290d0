"""The classification tasks (product_department, product_aisle and their `_gen` variants):
prompt builders and lm-eval hooks. The task folders' utils.py only bind these to a task name,
so stock `lm_eval --include_path tasks`, `harness eval` and the trainer run the same code.

  product_department / product_aisle   multiple choice: the prompt asks for the class, each
                                       class name is scored as the answer (no list shown)
  product_department_gen / _aisle_gen  generate: the class names are listed in the prompt

The target starts with a space (plain-text completion); with a chat template the trainer and
lm-eval put it, stripped, in the assistant turn. The data of a `_gen` task is its base task's.
Loading checks every record; a bad one (label outside the label space, no title) is left out,
counted, and reported as one warning line per split, never a crash. Choose data with lm-eval's
`--metadata '{"data": "demo" | DIR | FILE}'`.
"""
from __future__ import annotations

import numpy as np

from ..data import resolve_data_file
from ..data.labels import label_space, labels_file_for, load_label_space
from ..metrics.classify import macro_f1, parse_choice  # noqa: F401  (macro_f1: YAML aggregation)
from .records import load_checked, record_of

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


def classify_example(task: str, record: dict) -> tuple[str, str]:
    """(prompt, target) of a record of `task` (a `_gen` task lists the class names)."""
    labels = label_space(record) if task.endswith(GEN_SUFFIX) else None
    return classify_prompt(task, record["product"]["title"], labels), " " + record["label"]


# --- lm-eval hooks -------------------------------------------------------------------------------

def check_classify(rec: dict, split: str) -> str | None:
    title = (rec.get("product") or {}).get("title") if isinstance(rec.get("product"), dict) \
        else None
    if not isinstance(title, str) or not title.strip():
        return "no product title"
    if rec.get("label") not in label_space(rec):
        return "label not in the label space"
    return None


def load_classification(task: str, data=None):
    task = data_task(task)
    lf = labels_file_for(resolve_data_file(task, "test", data))
    if lf.is_file():
        load_label_space(lf)
    return load_checked(task, data, check_classify)


class ClassifyHooks:
    """lm-eval hooks for one classification task (multiple choice or `_gen`)."""

    def __init__(self, task: str):
        self.task = task

    def load_dataset(self, **metadata):
        return load_classification(self.task, metadata.get("data"))

    def doc_to_text(self, doc) -> str:
        return classify_example(self.task, record_of(doc))[0]

    def doc_to_choice(self, doc) -> list[str]:
        return label_space(record_of(doc))

    def doc_to_target(self, doc) -> int:
        rec = record_of(doc)
        return label_space(rec).index(rec["label"])

    def doc_to_label(self, doc) -> str:
        return record_of(doc)["label"]

    def process_mc(self, doc, results) -> dict:
        rec = record_of(doc)
        labels = label_space(rec)
        ll = np.array([r[0] for r in results], dtype=float)
        pred = labels[int(np.argmax(ll))]
        pred_norm = labels[int(np.argmax(ll / np.array([len(x) for x in labels])))]
        gold = rec["label"]
        return {"acc": float(pred == gold), "acc_norm": float(pred_norm == gold),
                "macro_f1": (gold, pred), "macro_f1_norm": (gold, pred_norm)}

    def process_gen(self, doc, results) -> dict:
        rec = record_of(doc)
        pred = parse_choice(results[0], label_space(rec))
        return {"acc": float(pred == rec["label"]), "macro_f1": (rec["label"], pred),
                "invalid": float(pred is None)}
