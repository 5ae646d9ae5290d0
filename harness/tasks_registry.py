"""The bridge between task JSONL files and lm-eval: every task's `custom_dataset` hook calls
`load_task_dataset`, and every hook gets its record back with `record_of(doc)`.

Records are nested JSON (product dicts whose keys differ from row to row). Arrow would turn them
into sparse structs, so each row is stored as {"id", "record": <the JSON text>} instead."""
from __future__ import annotations

import json

from .data import SPLITS, resolve_data_file
from .io import HarnessError, read_jsonl

# Task names whose prompt builders live outside prompts.py register them on import.
TASK_MODULES: list[str] = ["harness.task_prompts"]


def task_names() -> dict[str, str]:
    """Every task in tasks/ (a YAML file per task, named after it) -> the task folder, whose
    data it reads (product_department_gen -> product_department)."""
    from .paths import TASKS_DIR

    return {p.stem: p.parent.name for p in sorted(TASKS_DIR.glob("*/*.yaml"))}


def read_records(task: str, split: str, data=None) -> list[dict]:
    """The records of a task split; a record whose product breaks the schema
    (harness.schema) is one HarnessError naming the file, line and field."""
    from .schema import validate_record

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


for _mod in TASK_MODULES:
    __import__(_mod)
