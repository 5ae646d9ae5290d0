"""The package's import graph (issue #14): no import cycle among harness modules, no import
that runs upward through the stage order, no registration by `__import__` / `import_module`.
Read from the source with ast (every import, also those inside functions), nothing imported."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parent.parent / "harness"

# Lowest first: a module may import its own stage and the stages before it, never a later one.
# The shared modules (errors, files, paths, models, prompts) are the bottom; the metrics'
# validation (planted cases, gold set) reads task data, so it sits above tasks.
STAGES = ["shared", "data", "backends", "metrics", "tasks", "metrics.validation", "evaluate",
          "train", "export", "compare", "cli"]
SHARED = {"harness", "harness.errors", "harness.files", "harness.paths", "harness.models",
          "harness.prompts"}
# The only dynamic imports allowed, with the reason; none of them loads a harness module.
DYNAMIC_ALLOWED = {"harness.models": "the model wheel package a models.toml entry names"}


def module_name(path: Path, root: Path = HARNESS) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def stage_of(module: str) -> str:
    if module in SHARED:
        return "shared"
    rest = module.split(".", 1)[1]
    if rest.startswith("metrics.validation"):
        return "metrics.validation"
    return rest.split(".")[0]


def imports_of(path: Path, module: str, known: set[str]) -> tuple[set[str], list[str]]:
    """(harness modules `module` imports, dynamic-import calls found). `from P import x`
    counts as importing P.x when that is a module, else P."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out: set[str] = set()
    dynamic: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "harness"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                src = ".".join(base + ([node.module] if node.module else []))
            else:
                src = node.module or ""
            if src.split(".")[0] != "harness":
                continue
            for a in node.names:
                sub = f"{src}.{a.name}"
                out.add(sub if sub in known else src)
        elif isinstance(node, ast.Call):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            if name in ("__import__", "import_module"):
                dynamic.append(f"{path.name}:{node.lineno}")
    out.discard(module)
    return out, dynamic


def import_graph(root: Path = HARNESS) -> tuple[dict[str, set[str]], dict[str, list[str]]]:
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph, dynamic = {}, {}
    for mod, path in files.items():
        graph[mod], dyn = imports_of(path, mod, set(files))
        graph[mod] &= set(files)
        if dyn:
            dynamic[mod] = dyn
    return graph, dynamic


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    rank = {s: i for i, s in enumerate(STAGES)}
    return [f"{m} ({stage_of(m)}) imports {n} ({stage_of(n)})"
            for m, deps in sorted(graph.items()) for n in sorted(deps)
            if rank[stage_of(n)] > rank[stage_of(m)]]


GRAPH, DYNAMIC = import_graph()


def test_every_module_has_a_stage():
    assert not [m for m in GRAPH if stage_of(m) not in STAGES]


def test_no_import_cycle():
    assert find_cycle(GRAPH) is None, " -> ".join(find_cycle(GRAPH))


def test_no_import_runs_upward_through_the_stages():
    assert upward_imports(GRAPH) == []


def test_no_registration_by_dynamic_import():
    assert set(DYNAMIC) <= set(DYNAMIC_ALLOWED), DYNAMIC


def test_metrics_import_no_task_data_loading_or_eval_code():
    scorers = {m: deps for m, deps in GRAPH.items() if stage_of(m) == "metrics"}
    bad = {m: sorted(d for d in deps if d.startswith(("harness.tasks", "harness.evaluate",
                                                       "harness.data")))
           for m, deps in scorers.items()}
    assert {m: d for m, d in bad.items() if d} == {}


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root / "harness"


@pytest.mark.parametrize("files, cycle", [
    ({"harness/__init__.py": "", "harness/a.py": "from . import b\n",
      "harness/b.py": "def f():\n    from .a import x\n"}, True),        # inside a function
    ({"harness/__init__.py": "", "harness/a.py": "from . import b\n",
      "harness/b.py": "import harness.files\n", "harness/files.py": ""}, False),
])
def test_the_cycle_check_finds_a_planted_cycle(tmp_path, files, cycle):
    graph, _ = import_graph(_write(tmp_path, files))
    assert (find_cycle(graph) is not None) is cycle


def test_the_stage_check_finds_a_planted_upward_import(tmp_path):
    root = _write(tmp_path, {"harness/__init__.py": "", "harness/metrics/__init__.py": "",
                             "harness/metrics/x.py": "from ..tasks.records import read\n",
                             "harness/tasks/__init__.py": "", "harness/tasks/records.py": "",
                             "harness/data/__init__.py": "",
                             "harness/data/y.py": "def f():\n    import importlib\n"
                                                  "    importlib.import_module('harness.z')\n"})
    graph, dynamic = import_graph(root)
    assert upward_imports(graph) == ["harness.metrics.x (metrics) imports harness.tasks.records "
                                     "(tasks)"]
    assert list(dynamic) == ["harness.data.y"]


# --- the README's layout table names every module, and only modules that exist ---------------

def readme_layout_modules(readme: Path = HARNESS.parent / "README.md") -> set[str]:
    """Paths named in the module column of README's "Pipeline and layout" table; a bare name
    (`config.py`) is in the folder of the path before it in the same cell."""
    import re

    text = readme.read_text(encoding="utf-8")
    section = text[text.index("## Pipeline and layout"):text.index("## Add a task")]
    named: set[str] = set()
    for line in section.splitlines():
        cells = line.split("|")
        if len(cells) < 4 or not line.startswith("|"):
            continue
        folder = None
        for token in re.findall(r"`([^`]+)`", cells[2]):
            if token.startswith("harness/"):
                folder = token if token.endswith("/") else token.rsplit("/", 1)[0] + "/"
                if not token.endswith("/"):
                    named.add(token)
            elif folder and re.fullmatch(r"[\w.]+\.(py|toml)", token):
                named.add(folder + token)
    return named


def test_readme_layout_table_names_every_module_that_exists():
    root = HARNESS.parent
    named = readme_layout_modules()
    missing = sorted(n for n in named if not (root / n).is_file())
    assert missing == [], f"README names modules that do not exist: {missing}"
    code = set()
    for p in HARNESS.rglob("*"):
        if p.suffix not in (".py", ".toml") or "__pycache__" in p.parts:
            continue
        body = ast.parse(p.read_text()).body if p.suffix == ".py" else [None]
        docstring_only = p.name == "__init__.py" and all(
            isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)
        if not docstring_only and p.name not in ("__main__.py",) and p != HARNESS / "__init__.py":
            code.add(str(p.relative_to(root)))
    assert sorted(code - named) == [], "modules missing from README's layout table"
