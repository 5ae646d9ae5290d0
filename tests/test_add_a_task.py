"""README, "Add a task": a new task is its tasks/<task>/ folder, one data module and one tasks
module, plus one line in each of the two tables (harness.data.prepare.PREPARERS and
harness.tasks.TASKS, the module's name added to the import above each). Done here exactly
that way on a copy of the package in a temporary folder, then run through `data prepare` and
lm-eval's own task loading, in a fresh process."""
from __future__ import annotations

import difflib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from harness.models import OFFLINE_ENV
from harness.paths import ROOT

TASK = "product_brand"

DATA_MODULE = '''"""product_brand data: brands.csv (id, title, brand) -> records {id, product, label}."""
from __future__ import annotations

import csv
from pathlib import Path

from ..errors import HarnessError
from . import write_splits

TASK = "product_brand"


def prepare_brand(raw_dir: Path | None, out: Path) -> dict:
    path = Path(raw_dir or ".") / "brands.csv"
    if not path.is_file():
        raise HarnessError(f"{path}: not found")
    with open(path, newline="", encoding="utf-8") as f:
        records = [{"id": r["id"], "product": {"title": r["title"]}, "label": r["brand"]}
                   for r in csv.DictReader(f)]
    return {"task": TASK, "counts": {"brands.csv": write_splits(records, Path(out), TASK)},
            "skipped": {}}
'''

TASKS_MODULE = '''"""product_brand: a product title -> its brand."""
from __future__ import annotations

from .records import load_task_dataset, record_of

TASK = "product_brand"


def brand_example(record: dict) -> tuple[str, str]:
    return f"Product: {record['product']['title']}\\nBrand:", " " + record["label"]


def load_dataset(**metadata):
    return load_task_dataset(TASK, metadata.get("data"))


def doc_to_text(doc):
    return brand_example(record_of(doc))[0]


def doc_to_target(doc):
    return brand_example(record_of(doc))[1]


def process_results(doc, results):
    return {"exact_match": float(results[0].strip() == record_of(doc)["label"])}
'''

YAML = f'''task: {TASK}
custom_dataset: !function utils.load_dataset
output_type: generate_until
test_split: test
validation_split: validation
doc_to_text: !function utils.doc_to_text
doc_to_target: !function utils.doc_to_target
process_results: !function utils.process_results
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 8
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
'''

UTILS = '''"""product_brand hooks for lm-eval; the logic is in harness.tasks.brand."""
from harness.tasks.brand import doc_to_target, doc_to_text, load_dataset, process_results  # noqa: F401
'''

CHECK = f'''if True:
    import json, sys
    from pathlib import Path
    from harness.data.prepare import prepare
    from harness.tasks import build_example
    from harness.tasks.records import read_records, task_names
    from lm_eval.tasks import TaskManager

    raw, out = Path(sys.argv[1]), Path(sys.argv[2])
    [rep] = prepare(raw, out, ["{TASK}"])
    tm = TaskManager(include_path=str(Path.cwd() / "tasks" / "{TASK}"),
                     metadata={{"data": str(out)}})
    task = tm.load(["{TASK}"])["tasks"]["{TASK}"]
    docs = list(task.test_docs())
    rec = read_records("{TASK}", "test", str(out))[0]
    print(json.dumps({{"counts": rep["counts"], "n": len(docs),
                      "prompt": task.doc_to_text(docs[0]), "target": task.doc_to_target(docs[0]),
                      "built": build_example("{TASK}", rec), "known": "{TASK}" in task_names(),
                      "files": sorted(p.name for p in (out / "{TASK}").iterdir())}}))
'''


def _add_line(path: Path, after: str, line: str, import_from: str, module: str) -> None:
    """The table gets one line; the module's name joins the import line above it."""
    text = path.read_text()
    head = f"from {import_from} import "
    start = text.index(head)
    end = text.index("\n", start)
    names = sorted(n.strip() for n in text[start + len(head):end].split(",")) + [module]
    text = text[:start] + head + ", ".join(sorted(set(names), key=lambda n: (n.isupper(), n))) \
        + text[end:]
    i = text.index(after)
    j = text.index("\n", text.index("{", i)) + 1      # the first entry of the table
    path.write_text(text[:j] + line + "\n" + text[j:])


def test_a_toy_task_added_the_readme_way_prepares_and_loads_in_lm_eval(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "harness", repo / "harness",
                    ignore=shutil.ignore_patterns("__pycache__"))
    before = {p.relative_to(repo): p.read_text() for p in (repo / "harness").rglob("*.py")}

    # 1. the task folder
    (repo / "tasks" / TASK).mkdir(parents=True)
    (repo / "tasks" / TASK / f"{TASK}.yaml").write_text(YAML)
    (repo / "tasks" / TASK / "utils.py").write_text(UTILS)
    # 2. one data module, one line in PREPARERS
    (repo / "harness" / "data" / "brand.py").write_text(DATA_MODULE)
    _add_line(repo / "harness" / "data" / "prepare.py", "PREPARERS:",
              f'    "{TASK}": brand.prepare_brand,', ".", "brand")
    # 3. one tasks module, one line in TASKS
    (repo / "harness" / "tasks" / "brand.py").write_text(TASKS_MODULE)
    _add_line(repo / "harness" / "tasks" / "__init__.py", "TASKS:",
              f'    "{TASK}": brand.brand_example,', ".", "brand")

    after = {p.relative_to(repo): p.read_text() for p in (repo / "harness").rglob("*.py")}
    assert set(after) - set(before) == {Path("harness/data/brand.py"),
                                         Path("harness/tasks/brand.py")}
    changed = {p for p in before if before[p] != after[p]}
    assert changed == {Path("harness/data/prepare.py"), Path("harness/tasks/__init__.py")}
    for p in changed:   # one line added to the table, one import line extended
        diff = [d for d in difflib.ndiff(before[p].splitlines(), after[p].splitlines())
                if d[:2] in ("+ ", "- ")]
        assert len([d for d in diff if d.startswith("+ ")]) == 2, diff
        assert len([d for d in diff if d.startswith("- ")]) == 1, diff

    raw = tmp_path / "raw"
    raw.mkdir()
    rows = ["id,title,brand"] + [f"b{i},Acme kettle model {i},{('Acme', 'Bolt')[i % 2]}"
                                 for i in range(60)]
    (raw / "brands.csv").write_text("\n".join(rows) + "\n")
    env = {**os.environ, **OFFLINE_ENV, "PYTHONPATH": str(repo)}
    r = subprocess.run([sys.executable, "-c", CHECK, str(raw), str(tmp_path / "prepared")],
                       cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    counts = out["counts"]["brands.csv"]
    assert sum(counts.values()) == 60 and min(counts.values()) > 0
    assert out["files"] == ["test.jsonl", "train.jsonl", "validation.jsonl"]
    assert out["known"] and out["n"] == counts["test"]
    assert out["prompt"].startswith("Product: Acme kettle model") and out["prompt"] == \
        out["built"][0]
    assert out["target"].strip() in ("Acme", "Bolt")
