"""Where things live. Everything is resolved from the repository root, never from the
current working directory, so tasks and defaults work from anywhere."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TASKS_DIR = ROOT / "tasks"
DATA_DIR = ROOT / "data" / "prepared"
ADAPTERS_DIR = Path(os.environ.get("HARNESS_ADAPTERS_DIR", ROOT / "adapters"))
RESULTS_DIR = ROOT / "results"
CACHE_DIR = Path(os.environ.get("HARNESS_CACHE_DIR", ROOT / "cache"))

# The shared raw data of this workspace (tests and benchmarks skip when it is absent).
SHARED_DATA = Path(os.environ.get("HARNESS_RAW_DIR", ROOT.parent / "shared" / "data"))


def demo_file(task: str) -> Path:
    """The committed demo set of a task (tasks/<task>/demo.jsonl)."""
    return TASKS_DIR / task / "demo.jsonl"
