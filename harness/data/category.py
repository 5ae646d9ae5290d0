"""product_department / product_aisle data: Instacart product names -> department (20 classes)
and aisle (133 classes).

Raw files (Instacart Online Grocery Shopping 2017; with or without a header row):
    products.csv     product_id,product_name,aisle_id,department_id
    aisles.csv       aisle_id,aisle
    departments.csv  department_id,department

Decisions, all counted in the report:
  * The department "missing" (and its aisle "missing") is not a class: it marks products that
    were never filed (apples, dish liquid, pens, ...), so nothing in the name predicts it. Those
    products are left out of every split ("no label: department 'missing'").
  * Names are cleaned (HTML, the file's broken quote escaping `9\\""` -> `9"`). Products whose
    cleaned names coincide are one product: same aisle -> the lowest id is kept; different
    aisles -> all are dropped (the name cannot decide).
  * Split: stratified by aisle (so by department too), deterministic: within an aisle,
    products ordered by a hash of their id, 10% test, 10% validation, the rest train. Both
    tasks use this one split, so a product is in the same split for both. Each split file is in
    hash order, so lm-eval's `--limit N` reads a mixed sample, not one class.

Record: {"id", "source", "product": {"title"}, "label", "label_space", "department", "aisle"}
(the class names of the task are in labels.json beside the splits; see harness.data.labels).
"""
from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Iterator

from ..errors import HarnessError
from ..files import stable_order, write_json, write_jsonl
from .labels import LABELS_FILE, write_label_space
from . import SPLITS
from .product import clean_text
from .sources import Skips, open_raw

SOURCE = "instacart"
UNLABELLED = {"missing"}          # department / aisle names that mean "no label"
VALIDATION, TEST = 0.1, 0.1
TASK_FIELD = {"product_department": "department", "product_aisle": "aisle"}


def _rows(path: Path, header_first: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of a CSV with or without a header row."""
    with open_raw(path, newline="") as f:
        reader = csv.reader(f)
        try:
            for row in reader:
                if reader.line_num == 1 and row and row[0].strip() == header_first:
                    continue
                if row:
                    yield reader.line_num, row
        except csv.Error as e:
            raise HarnessError(f"{path}:{reader.line_num}: unreadable CSV ({e})") from e
        except UnicodeDecodeError as e:
            raise HarnessError(f"{path}:{reader.line_num}: not UTF-8 text ({e.reason})") from e


def _id_names(path: Path, header_first: str, skips: Skips, what: str) -> dict[str, str]:
    out = {}
    for _, row in _rows(path, header_first):
        if len(row) != 2 or not row[0].strip().isdigit() or not row[1].strip():
            skips.skip(f"{path.name}: malformed row")
            continue
        out[row[0].strip()] = clean_text(row[1])
    if not out:
        raise HarnessError(f"{path}: no {what} rows (expected `{header_first},name` lines)")
    return out


def clean_name(raw: str) -> str:
    """Product name as shown to a model: the file's `\\""` escapes fixed, wrapping quotes gone."""
    s = raw.replace('\\""', '"')
    if len(s) > 1 and s[0] == s[-1] == '"':
        s = s[1:-1]
    return clean_text(s)


def find_instacart(raw_dir: Path) -> Path:
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise HarnessError(f"{raw_dir}: not a directory")
    for p in sorted(raw_dir.rglob("products.csv")):
        if (p.parent / "aisles.csv").is_file() and (p.parent / "departments.csv").is_file():
            return p.parent
    raise HarnessError(f"{raw_dir}: no Instacart data found (looked for a folder with "
                       f"products.csv, aisles.csv and departments.csv)")


def read_instacart(folder: Path, skips: Skips) -> list[dict]:
    """Labelled, de-duplicated product records (no split yet)."""
    folder = Path(folder)
    aisles = _id_names(folder / "aisles.csv", "aisle_id", skips, "aisle")
    departments = _id_names(folder / "departments.csv", "department_id", skips, "department")
    by_name: dict[str, list[dict]] = defaultdict(list)
    used_aisles = set()
    for lineno, row in _rows(folder / "products.csv", "product_id"):
        if len(row) != 4:
            skips.skip("wrong number of fields")
            continue
        pid, name, aisle_id, dep_id = (x.strip() for x in row)
        name = clean_name(name)
        if not pid or not name:
            skips.skip("missing product id or name")
            continue
        if aisle_id not in aisles:
            skips.skip("unknown aisle id")
            continue
        if dep_id not in departments:
            skips.skip("unknown department id")
            continue
        used_aisles.add(aisle_id)
        dep, aisle = departments[dep_id], aisles[aisle_id]
        if dep in UNLABELLED or aisle in UNLABELLED:
            skips.skip(f"no label: department {dep!r}")
            continue
        by_name[" ".join(name.lower().split())].append(
            {"id": f"{SOURCE}:{pid}", "source": SOURCE, "product": {"title": name},
             "department": dep, "aisle": aisle})
    for aisle_id in aisles.keys() - used_aisles:
        skips.skip("aisles.csv: aisle used by no product")
    records = []
    for group in by_name.values():
        if len({r["aisle"] for r in group}) > 1:
            skips.update({"duplicate name, conflicting labels": len(group)})
            continue
        if len(group) > 1:
            skips.update({"duplicate name, same labels": len(group) - 1})
        records.append(min(group, key=lambda r: (len(r["id"]), r["id"])))  # lowest id
    if not records:
        raise HarnessError(f"{folder}: no labelled products")
    return records


def stratified_split(records: list[dict], stratum: str, validation: float = VALIDATION,
                     test: float = TEST) -> dict[str, list[dict]]:
    """Deterministic stratified split: in each stratum, records by hash of id; the first
    round(n*test) go to test, the next round(n*validation) to validation. Each split comes
    back in hash order (a mixed sample for --limit)."""
    strata: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        strata[r[stratum]].append(r)
    out: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for group in strata.values():
        group = stable_order(group, key=lambda r: r["id"])
        n_test, n_val = round(len(group) * test), round(len(group) * validation)
        out["test"] += group[:n_test]
        out["validation"] += group[n_test:n_test + n_val]
        out["train"] += group[n_test + n_val:]
    return {split: stable_order(rows, key=lambda r: r["id"]) for split, rows in out.items()}


def prepare_classification(task: str, raw_dir: Path, out: Path) -> dict:
    field = TASK_FIELD[task]
    folder = find_instacart(raw_dir)
    skips = Skips()
    splits = stratified_split(read_instacart(folder, skips), "aisle")
    labels = sorted({r[field] for rows in splits.values() for r in rows})
    sid = write_label_space(out / task / LABELS_FILE, task, labels, source=SOURCE,
                            field=field)
    for split, rows in splits.items():
        write_jsonl(out / task / f"{split}.jsonl",
                    ({**r, "label": r[field], "label_space": sid} for r in rows))
    counts = {s: len(rows) for s, rows in splits.items()}
    report = {"task": task, "counts": {f"{SOURCE} ({folder.name}/products.csv)": counts,
                                       "total": dict(counts)},
              "skipped": dict(skips), "classes": len(labels), "label_space": sid}
    write_json(out / task / "prepare.json", report)
    return report


def prepare_department(raw_dir: Path | None, out: Path) -> dict:
    if raw_dir is None:
        raise HarnessError("product_department: give --raw-dir (Instacart products.csv)")
    return prepare_classification("product_department", Path(raw_dir), Path(out))


def prepare_aisle(raw_dir: Path | None, out: Path) -> dict:
    if raw_dir is None:
        raise HarnessError("product_aisle: give --raw-dir (Instacart products.csv)")
    return prepare_classification("product_aisle", Path(raw_dir), Path(out))
