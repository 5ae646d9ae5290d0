"""Data stage: raw public files -> task JSONL splits (one preparer per task), plus the lookup
that tells a task which JSONL file to read (prepared data, else the committed demo set)."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import HarnessError
from ..files import stable_fraction, write_jsonl
from ..paths import DATA_DIR, demo_file  # noqa: F401  (demo_file: the data a task reads by default)

SPLITS = ("train", "validation", "test")


def split_of(key: str, validation: float = 0.1, test: float = 0.1) -> str:
    """Deterministic split by a stable key (product id, user id): no key in two splits."""
    bucket = stable_fraction(key)
    if bucket < test:
        return "test"
    if bucket < test + validation:
        return "validation"
    return "train"


def data_dir() -> Path:
    """Where `harness data prepare` writes by default (override: HARNESS_DATA_DIR)."""
    return Path(os.environ.get("HARNESS_DATA_DIR", DATA_DIR))


def resolve_data_file(task: str, split: str, data: str | os.PathLike | None = None) -> Path:
    """The JSONL a task reads for `split`.

    data: None -> prepared data under data_dir() if present, else the committed demo set;
          "demo" -> the demo set (all splits are the same file);
          a directory -> DIR/<task>/<split>.jsonl or DIR/<split>.jsonl; a file -> that file.
    """
    if data is None:
        prepared = data_dir() / task / f"{split}.jsonl"
        return prepared if prepared.exists() else demo_file(task)
    if str(data) == "demo":
        return demo_file(task)
    p = Path(data).expanduser()
    if p.is_file():
        return p
    for cand in (p / task / f"{split}.jsonl", p / f"{split}.jsonl"):
        if cand.exists():
            return cand
    raise HarnessError(f"{p}: no {task} data for split {split!r} "
                       f"(looked for {p / task / f'{split}.jsonl'} and {p / f'{split}.jsonl'}); "
                       f"run `harness data prepare --raw-dir RAW --output {p}`")


def write_splits(records: list[dict], out: Path, task: str, key=lambda r: r["id"]) -> dict:
    """<out>/<task>/{train,validation,test}.jsonl, each record in the split of its key
    (split_of); returns the count per split."""
    by_split: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for rec in records:
        by_split[split_of(key(rec))].append(rec)
    for split, rows in by_split.items():
        write_jsonl(out / task / f"{split}.jsonl", rows)
    return {s: len(r) for s, r in by_split.items()}
