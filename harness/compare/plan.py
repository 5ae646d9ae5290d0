"""The grid of a `harness compare` run: its settings (CompareConfig), its cells (model ×
variant × backend × task, plus the human reference row), their cache keys and run order."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..backends.decoding import GENERATION_BATCH
from ..errors import HarnessError
from ..files import read_json, sha256_file
from ..models import availability, get_spec, registry
from ..paths import ADAPTERS_DIR

BACKENDS = ("llama-cpp", "hf", "vllm")  # vllm: GPU clusters only (not installed here)
# What a run uses unless told otherwise (CompareConfig, `harness compare`, `harness demo`)
DEFAULT_BACKENDS = ("llama-cpp", "hf")
DEFAULT_TASKS = ("product_review",)
# Generation batch per backend (requests decoded together); backends not named here: 1.
DEFAULT_BATCH_SIZE = GENERATION_BATCH
# Backends whose LM switches adapters on a loaded model, and the model_arg naming the adapter.
ADAPTER_ARG = {"llama-cpp": "lora_path", "hf": "peft"}


@dataclass
class Cell:
    model: str
    variant: str                # "base" | "tuned" | "tuned-merged-q4_k_m"
    backend: str
    task: str
    adapter: str | None = None  # adapter directory (tuned variants)
    status: str = "pending"     # pending | done | cached | unavailable | failed
    reason: str = ""
    key: str = ""
    wall_s: float | None = None
    load_s: float | None = None           # model load in this cell (0: a loaded model reused)
    metric_s: float | None = None         # scoring: lm-eval filters + process_results
    cell_peak_rss_mb: float | None = None
    rss_scope: str = ""                   # "cell"; "process" where the peak cannot be reset

    @property
    def label(self) -> str:
        name = self.variant if not self.adapter else f"{self.variant} ({Path(self.adapter).name})"
        return f"{self.model} · {name} · {self.backend} · {self.task}"


# --- planning ------------------------------------------------------------------------------

def find_adapters(model: str, task: str, adapters_dir: Path = ADAPTERS_DIR) -> list[Path]:
    """Adapters whose training.json names this base model and task."""
    found = []
    if not adapters_dir.is_dir():
        return found
    for tj in sorted(adapters_dir.glob("*/training.json")):
        try:
            meta = read_json(tj)
        except HarnessError:
            continue
        if meta.get("base_model") == model and meta.get("task") == task and \
                (tj.parent / "adapter_model.safetensors").exists():
            found.append(tj.parent)
    return found


def data_fingerprint(task: str, data) -> str:
    from ..data import resolve_data_file
    try:
        path = resolve_data_file(task, "test", data)
    except HarnessError:
        return "missing"
    return sha256_file(path)[:16] if path.exists() else "missing"


def cell_key(cell: Cell, data_hash: str, limit: int | None,
             gen_kwargs: str | None = None, batch_size: int | str | None = None,
             model_args: dict | None = None) -> str:
    """A cell's cache key. gen_kwargs (e.g. the anti-loop setting) changes the outputs, so it is
    part of the key: a run with other decoding never reuses these cells (None keeps old keys).
    So is a generation batch above 1: batched greedy texts can part from one-at-a-time ones at
    near-tied logits (llama.cpp LoRA / Q5_0 cells, README); batch 1 keeps the old keys. So are
    the extra model_args of the cell's backend (`--model-args hf:dtype=bfloat16` gives other
    numbers than the fp32 default); none keeps the old keys."""
    adapter_hash = ""
    if cell.adapter:
        f = Path(cell.adapter) / "adapter_model.safetensors"
        adapter_hash = sha256_file(f)[:16] if f.exists() else "missing"
    parts = [cell.model, cell.variant, adapter_hash, cell.backend, cell.task, data_hash, limit]
    if gen_kwargs and cell.backend != NO_BACKEND:
        parts.append(gen_kwargs)
    if batch_size not in (None, 1, "1") and cell.backend != NO_BACKEND:
        parts.append(f"batch_size={batch_size}")
    extra = {k: str(v) for k, v in ((model_args or {}).get(cell.backend) or {}).items()
             if k != "batch_size"}       # the batch is keyed above
    if extra and cell.backend != NO_BACKEND:
        parts.append(extra)
    raw = json.dumps(parts, sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def merged_quants(merged_quant: str | list[str] | None) -> list[str]:
    """"q4_k_m,q8_0" -> ["q4_k_m", "q8_0"]; None, "" or "none" -> [] (no merged cells)."""
    from ..export.gguf_file import QUANTS

    items = merged_quant.split(",") if isinstance(merged_quant, str) else merged_quant or []
    quants = [q.strip().lower() for q in items if q.strip() and q.strip().lower() != "none"]
    if (bad := [q for q in quants if q not in QUANTS]):
        raise HarnessError(f"--merged-quant: unknown quantization {bad[0]!r}; choose from "
                           f"{', '.join(QUANTS)} (comma-separated), or none")
    return list(dict.fromkeys(quants))


def plan(models: str | list[str], tasks, backends, adapters_dir: Path = ADAPTERS_DIR,
         merged_quant: str | list[str] | None = "q4_k_m") -> list[Cell]:
    """Cells of a run. merged_quant: the merged exports scored on llama.cpp beside the LoRA
    GGUF ("q4_k_m", "q4_k_m,q8_0", ... or None)."""
    names = list(registry()) if models in ("all", ["all"]) else \
        [m.strip() for m in (models.split(",") if isinstance(models, str) else models)]
    for b in backends:
        if b not in BACKENDS:
            raise HarnessError(f"unknown backend {b!r}; choose from {', '.join(BACKENDS)}")
    quants = merged_quants(merged_quant)
    cells = []
    for name in names:
        get_spec(name)  # unknown names fail here, before any compute
        ok, why = availability(name)
        for task in tasks:
            for backend in backends:
                if not ok:
                    cells.append(Cell(name, "base", backend, task, status="unavailable",
                                      reason=why))
                    continue
                cells.append(Cell(name, "base", backend, task))
                for ad in find_adapters(name, task, adapters_dir):
                    cells.append(Cell(name, "tuned", backend, task, adapter=str(ad)))
                    if backend == "llama-cpp":
                        cells += [Cell(name, f"tuned-merged-{q}", backend, task,
                                       adapter=str(ad)) for q in quants]
    return cells


def lm_key(cell: Cell) -> tuple:
    """Cells with one key run on one loaded model: base and tuned (adapter applied at run
    time) of a model on a backend; each merged export is a model of its own."""
    merged = cell.variant.startswith("tuned-merged-")
    return (cell.backend, cell.model, cell.variant if merged else "",
            cell.adapter if merged else "")


def run_order(cells: list[Cell]) -> list[Cell]:
    """The cells in plan order, except that all cells of one loaded model run together, and
    all of one model on one backend (its merged exports after the adapter cells)."""
    first: dict[tuple, int] = {}
    for i, c in enumerate(cells):
        first.setdefault((c.backend, c.model), i)
        first.setdefault(lm_key(c), i)
    return sorted(cells, key=lambda c: (first[(c.backend, c.model)], first[lm_key(c)]))


# --- the human reference row ---------------------------------------------------------------

NO_BACKEND = "-"
# Tasks whose references are reviews, scored by harness.metrics.score_reviews: they get a row
# model=reference, variant=human (ranked and label tasks have no text reference to score).
REFERENCE_ROW_TASKS = ("product_review",)


def reference_cells(tasks) -> list[Cell]:
    return [Cell("reference", "human", NO_BACKEND, t) for t in tasks if t in REFERENCE_ROW_TASKS]


# --- the run's settings ----------------------------------------------------------------------------

@dataclass
class CompareConfig:
    models: str | list[str] = "all"
    tasks: list[str] = field(default_factory=lambda: list(DEFAULT_TASKS))
    backends: list[str] = field(default_factory=lambda: list(DEFAULT_BACKENDS))
    limit: int | None = None
    data: str | None = None          # None: prepared data else demo; "demo"; or a directory
    output: str | None = None
    resume: bool = False
    n_threads: int | None = None
    seed: int = 0
    merged_quant: str | None = "q4_k_m"   # merged exports to score too: "q4_k_m,q8_0", None
    gen_kwargs: str | None = None
    model_args: dict | None = None   # backend -> extra lm-eval model_args (pass-through)
    # backend -> generation batch; an int (or "N", "llama-cpp:8,hf:4") sets it as parse says
    batch_size: dict | int | str = field(default_factory=lambda: dict(DEFAULT_BATCH_SIZE))
    reuse_models: bool = True        # one loaded model per backend and weights for the run
    adapters_dir: str | None = None  # where tuned adapters are found (None: ADAPTERS_DIR)
    # who runs the cells: "in-process" (here, one after another) or "ray" (a Ray task each;
    # harness.compare.executors). address: the Ray cluster (None: a local one on this machine);
    # ray_resources: backend -> {"num_cpus": N, "num_gpus": M} over harness.compare.executors' table.
    executor: str = "in-process"
    address: str | None = None
    ray_resources: dict | None = None


def batch_sizes(value: dict | int | str | None) -> dict:
    """Generation batch per backend: a dict as it is; N -> every backend N;
    "llama-cpp:8,hf:4" -> those two (the others keep DEFAULT_BATCH_SIZE); None -> defaults."""
    out = dict(DEFAULT_BATCH_SIZE)
    if isinstance(value, dict) or value is None:
        out.update(value or {})
    elif ":" not in str(value):
        out = {b: _positive(value, "--batch-size") for b in BACKENDS}
    else:
        for item in str(value).split(","):
            backend, _, n = item.partition(":")
            if backend.strip() not in BACKENDS:
                raise HarnessError(f"--batch-size {item!r}: unknown backend {backend.strip()!r}; "
                                   f"choose from {', '.join(BACKENDS)}")
            out[backend.strip()] = _positive(n, "--batch-size")
    return out


def cell_batch(cell: Cell, model_args: dict | None, batch: dict) -> int | str:
    """The generation batch a cell runs with: a batch_size in its backend's model_args wins over
    the run's per-backend batch (run_cell applies the same rule)."""
    extra = (model_args or {}).get(cell.backend) or {}
    return extra.get("batch_size", batch.get(cell.backend, 1))


def _positive(value, what: str) -> int:
    try:
        n = int(str(value).strip())
    except ValueError:
        n = 0
    if n < 1:
        raise HarnessError(f"{what} {value!r}: expected a positive integer "
                           f"(or BACKEND:N,... e.g. llama-cpp:8,hf:4)")
    return n


