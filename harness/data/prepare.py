"""`harness data prepare`: the table of per-task preparers (PREPARERS). Each takes the raw directory and
the output directory, writes <out>/<task>/{train,validation,test}.jsonl atomically and returns
a report {"counts": {source: {split: n}}, "skipped": {reason: n}} for the CLI to print."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from ..errors import HarnessError
from ..files import write_json
from . import SPLITS, category, nextitem, split_of, write_splits
from .review import discover, group_records, load_hub
from .sources import Skips


def prepare_review(raw_dir: Path | None, out: Path, hub: str | None = None,
                   custom: list[tuple[Path, dict]] | None = None) -> dict:
    """custom: a user's own files with their field mappings (harness.data.generic)."""
    from .generic import read_generic

    skips = Skips()
    records: list[dict] = []
    counts: dict[str, dict] = {}
    sources = []
    if raw_dir is not None and not custom:
        sources = [(label, reader, src) for label, reader, src in discover(raw_dir)]
        if not sources:
            raise HarnessError(f"{raw_dir}: no product_review source found (looked for an "
                               f"Amazon.in CSV with product_id/review_content columns and "
                               f"Amazon meta_*.json + reviews *.json pairs)")
    if raw_dir is not None and custom:
        sources = list(discover(raw_dir))
    for path, mapping in custom or []:
        sources.append((f"custom ({Path(path).name})",
                        lambda s, p=path, m=mapping: read_generic(p, m, s), "custom"))
    if hub:
        sources.append((f"hub {hub}", lambda s: load_hub(hub, s), hub))
    for label, reader, src in sources:
        recs = group_records(reader(skips), src)
        records += recs
        counts[label] = {s: 0 for s in SPLITS}
        for r in recs:
            counts[label][split_of(r["id"])] += 1
    if not records:
        raise HarnessError("no usable product_review records in the given sources")
    totals = write_splits(records, out, "product_review")
    counts["total"] = totals
    report = {"task": "product_review", "counts": counts, "skipped": dict(skips)}
    write_json(out / "product_review" / "prepare.json", report)
    return report


# task -> preparer(raw_dir, out) (product_review also takes hub= and custom=); one line a task
PREPARERS: dict[str, Callable[..., dict]] = {
    "product_review": prepare_review,
    "product_department": category.prepare_department,
    "product_aisle": category.prepare_aisle,
    "product_nextitem": nextitem.prepare_task,
}


def prepare(raw_dir: Path | None, out: Path, tasks: list[str] | None = None,
            hub: str | None = None, custom: list[tuple[Path, dict]] | None = None) -> list[dict]:
    """Prepare every task asked for (default: all) into a staging folder inside `out`, and
    only when all of them succeeded put each <out>/<task> in place (the old folder replaced).
    A task that fails leaves `out` as it was: no task half-written, none of the others
    replaced."""
    import shutil
    import tempfile

    # all tasks in a fixed order (product_review, then by name): the first failure, and so
    # the error, does not depend on the table's order
    every = ["product_review"] + sorted(t for t in PREPARERS if t != "product_review")
    names = list(dict.fromkeys(tasks or (["product_review"] if custom and raw_dir is None
                                         else every)))
    for task in names:
        if task not in PREPARERS:
            raise HarnessError(f"unknown task {task!r}; known: {', '.join(PREPARERS)}")
    out = Path(out)
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".prepare-", dir=out))
    except OSError as e:
        raise HarnessError(f"{out}: cannot create output directory ({e.strerror})") from e
    try:
        reports = []
        for task in names:
            fn = PREPARERS[task]
            reports.append(fn(raw_dir, stage, hub=hub, custom=custom)
                           if task == "product_review" else fn(raw_dir, stage))
        for task in names:
            old = stage / f"{task}.old"
            if (out / task).exists():
                os.replace(out / task, old)
            os.replace(stage / task, out / task)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
    return reports
