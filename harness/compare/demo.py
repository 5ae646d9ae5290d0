"""`harness demo` (`make demo`): the whole loop on the embedded default, in one call.

    from harness.compare.demo import demo
    demo()                       # -> results/demo/report.md, report.html, summary.csv

1. Cut the committed demo set (tasks/product_review/demo.jsonl: 24 products and reviews
   written by hand for this project) into held-out splits under OUTPUT/data/: 8 test,
   4 validation, 12 train, by a stable hash of the product id. A demo adapter is then scored
   on products it never saw (the plain "demo" data is one file for every split).
2. Train a demo LoRA adapter (train preset "demo") for every bundled model that has no
   product_review adapter in adapters/ yet, with the grounded-tuning recipe of real training:
   the train split curated (harness.train.curate, into OUTPUT/data-curated/) and the loss
   masked on sentences the product JSON does not support (TrainConfig.mask_unsupported).
3. Compare base and tuned on both backends on the test products; the 7B rows stay in the
   report, marked unavailable.
The demo set is tiny and invented: it shows the loop working, not real model quality.
"""
from __future__ import annotations

import time
from pathlib import Path

from ..data import demo_file
from ..files import read_jsonl, stable_order, write_jsonl

TASK = "product_review"
DEMO_SPLIT_SIZES = {"test": 8, "validation": 4}   # the rest is train
# CurateConfig settings of the demo over the defaults: none needed, the defaults keep all 12
# hand-written demo train reviews (tests/test_curate.py), above min_examples=8
DEMO_CURATE: dict = {}


def demo_splits(out: str | Path, task: str = TASK, sizes: dict = DEMO_SPLIT_SIZES) -> Path:
    """Write OUT/<task>/{train,validation,test}.jsonl from the demo set; returns OUT (a
    directory that `data=` accepts). Ordered by sha256(id), so the cut never depends on the
    file's line order."""
    rows = stable_order(read_jsonl(demo_file(task)), key=lambda r: r["id"])
    out = Path(out)
    start = 0
    for split in ("test", "validation"):
        write_jsonl(out / task / f"{split}.jsonl", rows[start:start + sizes[split]])
        start += sizes[split]
    write_jsonl(out / task / "train.jsonl", rows[start:])
    return out


def demo(output: str | Path = "results/demo", max_steps: int | None = None,
         limit: int | None = None, models: str = "all", backends: str | None = None,
         resume: bool = True, log=print, progress=None, console=None) -> dict:
    """Train the missing demo adapters, then run the comparison. Returns {"run", "trained",
    "train_s", "wall_s"}."""
    from .plan import CompareConfig, find_adapters
    from .run import compare
    from ..train.curate import curate
    from ..models import registry
    from ..paths import ADAPTERS_DIR
    from .render import render
    from ..train.config import latest_checkpoint
    from ..train.recipe import train

    t0 = time.perf_counter()
    output = Path(output)
    data = demo_splits(output / "data")
    names = [n for n, s in registry().items() if s.bundled
             and (models == "all" or n in models.split(","))]
    trained, curated = [], None
    for name in names:
        if find_adapters(name, TASK):
            continue
        if curated is None:
            rep = curate(data=str(data), out=str(output / "data-curated"), **DEMO_CURATE)
            curated = Path(rep["out"])
            log(f"curated the demo train split: {rep['kept']} of {rep['reviews']} reviews kept "
                f"-> {curated}")
        dest = ADAPTERS_DIR / f"{name}-{TASK}-demo"
        resume_training = latest_checkpoint(dest) is not None   # an interrupted demo
        log(f"training demo adapter for {name} -> {dest}")
        steps = {"max_steps": max_steps} if max_steps else {}   # else the preset's
        train(model=name, task=TASK, preset="demo", data=str(curated.resolve()), **steps,
              output=str(dest), resume=resume_training,
              overwrite=dest.exists() and not resume_training, progress=progress is not None)
        trained.append(str(dest))
    train_s = time.perf_counter() - t0
    given = {"backends": [b.strip() for b in backends.split(",") if b.strip()]} \
        if backends else {}                     # else CompareConfig's default backends
    cfg = CompareConfig(models=models, tasks=[TASK], limit=limit, data=str(data),
                        output=str(output), resume=resume, **given)
    run = compare(cfg, progress=progress)
    render(run, console=console)   # console: Rich tables in the terminal too
    return {"run": str(run), "trained": trained, "train_s": round(train_s, 1),
            "wall_s": round(time.perf_counter() - t0, 1)}
