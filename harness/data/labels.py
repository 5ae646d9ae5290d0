"""Label spaces of the classification tasks: the ordered class names a record is classified into.

A label space is kept once, beside the split files (`labels.json`), not in every record: the
133 aisle names would repeat in 44k records. A record names its space by id
("<task>:<hash of the names>"), so a record can never be read against the wrong label list:

    {"id": "instacart:1", "product": {"title": ...}, "label": "snacks",
     "label_space": "product_department:3f0c2a91be"}

`label_space(record)` gives the names. Spaces are registered when task data is read through
`load_label_space` (the lm-eval tasks and the baselines do it); a space not registered yet is
looked up in the default data locations of its task (prepared data, then the demo set).
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import HarnessError
from ..files import read_json, sha256_text, write_json

LABELS_FILE = "labels.json"
SPACES: dict[str, list[str]] = {}


def space_id(task: str, labels: list[str]) -> str:
    return f"{task}:{sha256_text(json.dumps(list(labels), ensure_ascii=False))[:10]}"


def write_label_space(path: Path, task: str, labels: list[str], **info) -> str:
    """Write labels.json; returns the space id that records must carry."""
    sid = space_id(task, labels)
    write_json(path, {"task": task, "id": sid, "labels": list(labels), **info})
    SPACES[sid] = list(labels)
    return sid


def labels_file_for(data_file: Path) -> Path:
    """labels.json beside split files (DIR/<task>/test.jsonl); X_labels.json beside a single
    file X.jsonl (the demo sets: demo.jsonl -> demo_labels.json)."""
    from . import SPLITS

    data_file = Path(data_file)
    if data_file.stem in SPLITS:
        return data_file.with_name(LABELS_FILE)
    return data_file.with_name(f"{data_file.stem}_labels.json")


def load_label_space(path: Path) -> str:
    """Register the label space in `path`; returns its id. The id is checked against the names,
    so an edited file is an error, not a silent relabelling."""
    body = read_json(path)
    labels = body.get("labels") if isinstance(body, dict) else None
    if (not isinstance(labels, list) or not labels
            or not all(isinstance(x, str) and x.strip() for x in labels)):
        raise HarnessError(f"{path}: 'labels' must be a non-empty list of class names")
    if len(set(labels)) != len(labels):
        raise HarnessError(f"{path}: 'labels' has duplicate class names")
    sid = space_id(body.get("task", ""), labels)
    if body.get("id") not in (None, sid):
        raise HarnessError(f"{path}: id {body.get('id')!r} does not match its labels "
                           f"(expected {sid!r}); was the file edited by hand?")
    SPACES[sid] = labels
    return sid


def _default_files(task: str) -> list[Path]:
    from . import data_dir, demo_file

    return [data_dir() / task / LABELS_FILE, labels_file_for(demo_file(task))]


def label_space(record: dict) -> list[str]:
    sid = record.get("label_space")
    if not isinstance(sid, str) or ":" not in sid:
        raise HarnessError(f"record {record.get('id')!r}: no label_space field "
                           f"(classification records name their labels.json by id)")
    if sid not in SPACES:
        for f in _default_files(sid.split(":", 1)[0]):
            if f.is_file():
                load_label_space(f)
    if sid not in SPACES:
        raise HarnessError(f"record {record.get('id')!r}: label space {sid} is not loaded; "
                           f"call harness.data.labels.load_label_space(DIR/{LABELS_FILE}) with the "
                           f"labels.json written beside the split files by `harness data prepare`")
    return SPACES[sid]
