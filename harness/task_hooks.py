"""lm-eval hooks of the classification tasks (product_department, product_aisle and their
`_gen` variants) and of product_nextitem. The task folders' utils.py only bind these to a task
name, so stock `lm_eval --include_path tasks` and `harness eval` run the same code.

Loading checks every record; a bad one (label outside the label space, no title, no history,
candidates that do not contain the target, ...) is left out, counted, and reported as one
warning line per split, never a crash. Choose data with lm-eval's
`--metadata '{"data": "demo" | DIR | FILE}'`; product_nextitem also takes `"source": NAME`
(one source's users only; the YAML variants per source set it through dataset_kwargs).
"""
from __future__ import annotations

import logging
from collections import Counter

import numpy as np

from .data import SPLITS, resolve_data_file
from .io import HarnessError
from .labels import label_space, labels_file_for, load_label_space
from .metrics.classify import macro_f1, parse_choice  # noqa: F401  (macro_f1: YAML aggregation)
from .metrics.ranking import rank_of, ranking_metrics
from .prompts import build_example
from .task_prompts import data_task, nextitem_prompt
from .tasks_registry import load_task_dataset, record_of

log = logging.getLogger("harness.tasks")


def load_checked(task: str, data, check, source: str | None = None):
    """The task's DatasetDict without the records `check(record, split)` gives a reason for."""
    ds = load_task_dataset(task, data)
    for split in SPLITS:
        why: Counter = Counter()

        def keep(doc, split=split):
            rec = record_of(doc)
            if source is not None and rec.get("source") != source:
                return False
            reason = check(rec, split)
            if reason is not None:
                why[reason] += 1
            return reason is None

        ds[split] = ds[split].filter(keep, load_from_cache_file=False)
        if why:
            log.warning("%s %s: left out %d record(s): %s", task, split, sum(why.values()),
                        ", ".join(f"{r}: {n}" for r, n in why.most_common()))
        if len(ds[split]) == 0:
            raise HarnessError(f"{task}: no usable {split} records"
                               + (f" for source {source!r}" if source else "")
                               + f" in {resolve_data_file(task, split, data)}")
    return ds


# --- classification ----------------------------------------------------------------------

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
        return build_example(self.task, record_of(doc))[0]

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


# --- next item ---------------------------------------------------------------------------

def check_nextitem(rec: dict, split: str) -> str | None:
    hist = rec.get("history")
    if not isinstance(hist, list) or not hist or not all(isinstance(t, str) for t in hist):
        return "history too short"
    if not isinstance(rec.get("target"), str) or not rec["target"].strip():
        return "no target title"
    if split == "train":
        return None
    cands, label = rec.get("candidates"), rec.get("label")
    if not isinstance(cands, list) or len(cands) < 2:
        return "fewer than 2 candidates"
    if not isinstance(label, int) or not 0 <= label < len(cands) or cands[label] != rec["target"]:
        return "label does not point at the target"
    return None


def doc_to_text_nextitem(doc) -> str:
    return nextitem_prompt(record_of(doc)["history"])


def doc_to_choice_nextitem(doc) -> list[str]:
    return record_of(doc)["candidates"]


def doc_to_target_nextitem(doc) -> int:
    return record_of(doc)["label"]


def process_nextitem(doc, results) -> dict:
    """Candidates ranked by loglikelihood per character (the primary metrics; raw sums favour
    short titles) and by raw loglikelihood (`_raw`)."""
    rec = record_of(doc)
    ll = [float(r[0]) for r in results]
    norm = [x / max(len(c), 1) for x, c in zip(ll, rec["candidates"])]
    out = ranking_metrics(rank_of(norm, rec["label"]))
    out.update({f"{k}_raw": v for k, v in ranking_metrics(rank_of(ll, rec["label"])).items()})
    return out


def load_nextitem(**metadata):
    return load_checked("product_nextitem", metadata.get("data"), check_nextitem,
                        source=metadata.get("source"))
