"""Training settings (TrainConfig: every default in one place; PRESETS; the ranges every value
is checked against) and the inputs they name (model, task, data splits, output), all resolved
and checked before any compute. No torch import at module level: the CLI builds its options
from TrainConfig."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from ..errors import HarnessError
from ..files import read_json
from ..models import DEFAULT_MODEL

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
OUTPUT_FILES = (*ADAPTER_FILES, "training.json", "loss.png")
CHECKPOINTS = "checkpoints"


# ==== 1. config ===========================================================================

@dataclass
class TrainConfig:
    model: str = DEFAULT_MODEL            # registry name, HF model directory or .gguf file
    task: str = "product_review"           # any task of harness.tasks.TASKS
    method: str = "auto"                   # lora | qlora | auto (qlora on CUDA, lora on CPU)
    data: str | None = None                # None: prepared data, else demo; "demo"; a directory
    output: str | None = None              # default adapters/<model>-<task>-<method>
    epochs: float = 1.0
    max_steps: int | None = None           # overrides epochs
    batch_size: int = 4                    # sequences per micro-batch (activation memory)
    grad_accum: int = 2                    # micro-batches per optimizer step
    lr: float = 2e-4
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0              # 0: no dropout pass (measured 2x cheaper per step)
    target_modules: str = "all-linear"     # or a comma-separated list of module names
    max_seq_len: int = 1024                # longer examples lose the end of their response
    eval_every: int | None = None          # steps between validation losses (None: ~5 per run)
    eval_examples: int = 128               # validation records used (the first N)
    patience: int = 3                      # stop after this many evaluations without a gain
    min_delta: float = 0.0                 # a gain smaller than this does not count
    save_every: int | None = None          # steps between checkpoints (None: = eval_every)
    seed: int = 0
    dtype: str = "auto"                    # auto (bf16 where supported) | bfloat16 | float32
    engine: str = "auto"                   # auto | unsloth | transformers
    gradient_checkpointing: bool | None = None  # None: on with CUDA, off on CPU
    threads: int | None = None             # torch CPU threads (None: torch's default)
    resume: bool = False
    overwrite: bool = False
    progress: bool = True
    # product_review: no loss on the target sentences holding a claim the product JSON does not
    # support (unsupported or contradicted); other tasks ignore it
    mask_unsupported: bool = True


# Named settings, applied under explicit ones: train(model=..., preset="demo").
# "demo": the committed demo set, 16 steps of 4 examples, a validation pass every 4 steps;
# sized for `harness demo` on 2 CPU cores (README). On the demo's 12 train / 4 validation
# products lr 1e-3 overfit gemma3-270m at once (validation loss up from step 8, so the kept
# adapter was the untrained one); 3e-4 lowers both bundled models' validation loss.
PRESETS: dict[str, dict] = {
    "demo": dict(data="demo", max_steps=16, batch_size=4, grad_accum=1, lr=3e-4,
                 warmup_ratio=0.0, eval_every=4, eval_examples=8),
}

# (min, max, min inclusive?) for every numeric field; None = optional
RANGES: dict[str, tuple[float, float, bool]] = {
    "epochs": (0, 1000, False), "max_steps": (1, 10_000_000, True),
    "batch_size": (1, 4096, True), "grad_accum": (1, 4096, True),
    "lr": (0, 1, False), "warmup_ratio": (0, 1, True), "weight_decay": (0, 10, True),
    "max_grad_norm": (0, 1e6, False), "lora_r": (1, 4096, True), "lora_alpha": (0, 1e5, False),
    "lora_dropout": (0, 0.9, True), "max_seq_len": (16, 1_000_000, True),
    "eval_every": (1, 10_000_000, True), "eval_examples": (1, 10_000_000, True),
    "patience": (0, 10_000, True), "min_delta": (0, 100, True),
    "save_every": (1, 10_000_000, True), "seed": (0, 2**32 - 1, True),
    "threads": (1, 4096, True),
}
INT_FIELDS = {"max_steps", "batch_size", "grad_accum", "lora_r", "max_seq_len", "eval_every",
              "eval_examples", "patience", "save_every", "seed", "threads"}
CHOICES = {"method": ("auto", "lora", "qlora"), "engine": ("auto", "unsloth", "transformers"),
           "dtype": ("auto", "bfloat16", "float32", "float16")}
# fields that may differ between a killed run and its resumption
# settings a resumed run may give differently; "data" is checked by content (sha256 of each
# split, recipe._examples), so `data/curated` and `/abs/path/data/curated` resume alike
RESUME_FREE = {"resume", "overwrite", "progress", "threads", "output", "data"}


def check_config(cfg: TrainConfig) -> None:
    """Every out-of-range or unknown value, as one HarnessError."""
    problems = []
    for name, (lo, hi, lo_incl) in RANGES.items():
        v = getattr(cfg, name)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or \
                (name in INT_FIELDS and not float(v).is_integer()):
            problems.append(f"{name}={v!r} is not a {'whole ' if name in INT_FIELDS else ''}number")
        elif not ((v >= lo if lo_incl else v > lo) and v <= hi):
            problems.append(f"{name}={v} is out of range ({'[' if lo_incl else '('}{lo}, {hi}])")
    for name, allowed in CHOICES.items():
        if getattr(cfg, name) not in allowed:
            problems.append(f"{name}={getattr(cfg, name)!r} is not one of {', '.join(allowed)}")
    if not str(cfg.target_modules).strip():
        problems.append("target_modules is empty")
    if cfg.resume and cfg.overwrite:
        problems.append("resume and overwrite exclude each other")
    if not isinstance(cfg.mask_unsupported, bool):
        problems.append(f"mask_unsupported={cfg.mask_unsupported!r} is not true or false")
    if problems:
        raise HarnessError("bad training settings: " + "; ".join(problems))


# ==== 2. inputs: model, task, data, output (all checked before any compute) =================

@dataclass
class Inputs:
    model_source: tuple[str, str | None]   # (pretrained dir, gguf_file) for from_pretrained
    chat: bool | None                      # registry flag; None: decided by the tokenizer
    hub_id: str | None                     # recorded as the adapter's base_model_name_or_path
    method: str
    engine: str
    output: Path
    records: dict[str, list[dict]]
    data_files: dict[str, Path]
    checkpoint: Path | None                # the checkpoint to resume from


def _cuda() -> bool:
    import torch
    return torch.cuda.is_available()


def resolve_method(method: str) -> str:
    if method != "auto":
        return method
    return "qlora" if _cuda() and find_spec("bitsandbytes") else "lora"


def resolve_engine(engine: str) -> str:
    """Unsloth only with CUDA (importing it without CUDA raises) and only when installed."""
    if engine == "unsloth" and not _cuda():
        raise HarnessError("engine unsloth needs a CUDA GPU; this machine has none "
                           "(use --engine transformers)")
    if engine == "unsloth" and find_spec("unsloth") is None:
        raise HarnessError("engine unsloth is not installed (on a CUDA machine: make setup-gpu, "
                           "then .venv-gpu; see README 'GPU')")
    if engine != "auto":
        return engine
    return "unsloth" if _cuda() and find_spec("unsloth") is not None else "transformers"


def _model_label(model: str) -> str:
    p = Path(model)
    return p.stem if p.suffix == ".gguf" else (p.name if p.exists() else model)


def default_output(model: str, task: str, method: str) -> Path:
    from ..paths import ADAPTERS_DIR
    return ADAPTERS_DIR / f"{_model_label(model)}-{task}-{method}"


def resolve_model(model: str) -> tuple[tuple[str, str | None], bool | None, str | None]:
    """((pretrained, gguf_file), chat flag or None, hub id or path for the adapter config)."""
    from ..models import registry, resolve_hf

    source = resolve_hf(model)
    pretrained, gguf = source
    if gguf is None and not (Path(pretrained) / "config.json").is_file():
        raise HarnessError(f"{pretrained}: not a transformers model directory (no config.json)")
    spec = registry().get(model)
    if spec is not None:
        return source, spec.chat, spec.hf_id or model
    return source, None, str(Path(model).expanduser().resolve())


def resolve_inputs(cfg: TrainConfig) -> Inputs:
    from ..data import resolve_data_file
    from ..tasks import TASKS
    from ..tasks.records import read_records

    check_config(cfg)
    if cfg.task not in TASKS:
        raise HarnessError(f"unknown task {cfg.task!r}; tasks with a prompt builder: "
                           f"{', '.join(sorted(TASKS))}")
    method = resolve_method(cfg.method)
    if method == "qlora" and find_spec("bitsandbytes") is None:
        raise HarnessError("method qlora needs bitsandbytes: pip install -e '.[qlora-cpu]' "
                           "(CPU) or make setup-gpu (CUDA); or use --method lora")
    engine = resolve_engine(cfg.engine)
    source, chat, hub_id = resolve_model(cfg.model)
    records, files = {}, {}
    for split in ("train", "validation"):
        files[split] = resolve_data_file(data_task(cfg.task), split, cfg.data)
        records[split] = read_records(data_task(cfg.task), split, cfg.data)
    output = Path(cfg.output).expanduser() if cfg.output else \
        default_output(cfg.model, cfg.task, method)
    checkpoint = check_output(output, cfg)
    return Inputs(source, chat, hub_id, method, engine, output, records, files, checkpoint)


def data_task(task: str) -> str:
    """The task whose data a task reads (lm-eval variants such as product_department_gen
    read product_department's)."""
    from ..tasks.category import data_task as mapping
    return mapping(task)


def latest_checkpoint(output: Path) -> Path | None:
    pointer = output / CHECKPOINTS / "latest.json"
    if not pointer.is_file():
        return None
    ck = output / CHECKPOINTS / read_json(pointer)["dir"]
    return ck if (ck / "state.json").is_file() else None


def check_output(output: Path, cfg: TrainConfig) -> Path | None:
    """The checkpoint to resume from (or None); refuses to clobber an existing adapter."""
    if output.exists() and not output.is_dir():
        raise HarnessError(f"{output}: exists and is not a directory")
    ours = [f for f in (*OUTPUT_FILES, CHECKPOINTS) if (output / f).exists()]
    if not ours:
        return None
    if cfg.overwrite:
        return None
    ck = latest_checkpoint(output)
    if cfg.resume:
        if ck is not None:
            return ck
        if (output / "training.json").is_file():
            raise HarnessError(f"{output}: this training already finished (training.json); "
                               f"use --overwrite to train again")
        raise HarnessError(f"{output}: has adapter files but no checkpoint to resume from; "
                           f"use --overwrite to start over")
    hint = "--resume to continue it or " if ck is not None else ""
    raise HarnessError(f"{output}: adapter directory exists ({', '.join(ours)}); use {hint}"
                       f"--overwrite to replace it, or --output elsewhere")


def clear_output(output: Path) -> None:
    for f in OUTPUT_FILES:
        (output / f).unlink(missing_ok=True)
    shutil.rmtree(output / CHECKPOINTS, ignore_errors=True)
