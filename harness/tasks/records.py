"""The bridge between task JSONL files and lm-eval: every task's `custom_dataset` hook calls
`load_task_dataset`, and every hook gets its record back with `record_of(doc)`.

Records are nested JSON (product dicts whose keys differ from row to row). Arrow would turn them
into sparse structs, so each row is stored as {"id", "record": <the JSON text>} instead."""
from __future__ import annotations

import json
import logging
from collections import Counter

from ..data import SPLITS, resolve_data_file
from ..errors import HarnessError
from ..files import read_jsonl

log = logging.getLogger("harness.tasks")


def task_names() -> dict[str, str]:
    """Every task in tasks/ (a YAML file per task, named after it) -> the task folder, whose
    data it reads (product_department_gen -> product_department)."""
    from ..paths import TASKS_DIR

    return {p.stem: p.parent.name for p in sorted(TASKS_DIR.glob("*/*.yaml"))}


def read_records(task: str, split: str, data=None) -> list[dict]:
    """The records of a task split; a record whose product breaks the schema
    (harness.data.schema) is one HarnessError naming the file, line and field."""
    from ..data.schema import validate_record

    path = resolve_data_file(task, split, data)
    rows = list(read_jsonl(path, check=lambda row, where: validate_record(row, where, task)))
    if not rows:
        raise HarnessError(f"{path}: no records for task {task!r}, split {split!r}")
    return rows


def load_task_dataset(task: str, data=None, splits=SPLITS):
    import datasets

    out = {}
    for split in splits:
        rows = read_records(task, split, data)
        out[split] = datasets.Dataset.from_dict({
            "id": [str(r.get("id", i)) for i, r in enumerate(rows)],
            "record": [json.dumps(r, ensure_ascii=False, sort_keys=True) for r in rows],
        })
    return datasets.DatasetDict(out)


def record_of(doc: dict) -> dict:
    return json.loads(doc["record"]) if "record" in doc else doc


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
