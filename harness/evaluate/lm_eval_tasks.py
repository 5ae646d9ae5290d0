"""Registers this project's task folders with the installed lm-eval, so that stock
`lm_eval --tasks product_review ...` finds them without `--include_path tasks`.

How lm-eval 0.4 finds tasks: `TaskManager` indexes every `*.yaml` under its own `lm_eval/tasks/`
folder (plus any `--include_path`); it has no entry point or environment variable for more
folders, and its recursive glob does not follow a symlinked folder. It does honour `include:`
in a task YAML (the included file's `!function utils.x` resolve next to that file). So
`register()` (run by `make setup`) writes one stub per task YAML into
`lm_eval/tasks/product_review_harness/`, each only `include: <absolute path of our YAML>`:
the tasks themselves stay in tasks/, edits to them show at once, and only a new task file
needs `make setup` (or `python -m harness.evaluate.lm_eval_tasks`) again. Stubs of task files that are
gone are removed."""
from __future__ import annotations

import re
import sys
from importlib.util import find_spec
from pathlib import Path

from ..errors import HarnessError
from ..paths import TASKS_DIR

STUB_DIR_NAME = "product_review_harness"
HEADER = "# Written by product-review-harness set-up (python -m harness.evaluate.lm_eval_tasks).\n"


def lm_eval_tasks_dir() -> Path:
    """The installed lm-eval's own task folder, found without importing lm-eval."""
    spec = find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        raise HarnessError("lm-eval is not installed in this environment (make setup)")
    return Path(next(iter(spec.submodule_search_locations))) / "tasks"


def _wanted(tasks_dir: Path) -> dict[str, str]:
    """stub file name -> stub text, one per task YAML under tasks_dir."""
    out = {}
    for y in sorted(Path(tasks_dir).resolve().glob("*/*.yaml")):
        out[f"{y.parent.name}__{y.name}"] = f"{HEADER}include: {y}\n"
    return out


def stub_dir() -> Path:
    return lm_eval_tasks_dir() / STUB_DIR_NAME


def register(tasks_dir: Path = TASKS_DIR) -> list[Path]:
    """Write (or refresh) the stubs; idempotent. Returns the stub files."""
    wanted = _wanted(tasks_dir)
    if not wanted:
        raise HarnessError(f"{tasks_dir}: no task YAML files to register")
    d = stub_dir()
    try:
        d.mkdir(exist_ok=True)
        for old in d.glob("*.yaml"):
            if old.name not in wanted:
                old.unlink()
        for name, text in wanted.items():
            p = d / name
            if not p.exists() or p.read_text() != text:
                p.write_text(text)
    except OSError as e:
        raise HarnessError(f"cannot register the task folders with lm-eval in {d}: {e}") from e
    return [d / n for n in wanted]


def registered(tasks_dir: Path = TASKS_DIR) -> bool:
    """True when every task YAML of tasks_dir has its up-to-date stub in lm-eval's tree."""
    try:
        d = stub_dir()
    except HarnessError:
        return False
    return all((d / n).is_file() and (d / n).read_text() == t
               for n, t in _wanted(tasks_dir).items())


def include_path(tasks_dir: Path = TASKS_DIR) -> str | None:
    """What to pass to lm-eval's `include_path`: nothing when set-up registered these tasks
    (lm-eval would index them twice and warn that each overrides itself), else tasks_dir."""
    return None if registered(tasks_dir) else str(tasks_dir)


def own_task_names(tasks_dir: Path = TASKS_DIR) -> set[str]:
    """The task, tag and group names this project's task YAMLs define."""
    names: set[str] = set()
    for y in Path(tasks_dir).glob("*/*.yaml"):
        for line in y.read_text(encoding="utf-8").splitlines():
            m = re.match(r"(task|tag|group):\s*([\w.-]+)\s*$", line)
            if m:
                names.add(m.group(2))
    return names


def task_manager_args(tasks: list[str], tasks_dir: Path = TASKS_DIR) -> dict:
    """TaskManager keyword arguments for a run of `tasks`. When they are all this project's,
    lm-eval indexes only tasks/ (indexing its own ~13k task YAMLs cost every cell a few
    seconds: ~10 s under cProfile, which inflates pure-Python YAML parsing);
    otherwise everything, as stock lm-eval does."""
    if tasks and all(isinstance(t, str) for t in tasks) and \
            set(tasks) <= own_task_names(tasks_dir):
        return {"include_path": str(tasks_dir), "include_defaults": False}
    return {"include_path": include_path(tasks_dir)}


def main() -> int:
    try:
        stubs = register()
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"lm-eval task folders registered: {len(stubs)} task files in {stubs[0].parent}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
