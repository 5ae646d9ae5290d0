"""Train stage: LoRA / QLoRA adapters for any registered (or local HF) causal LM on any task.

One recipe that reads top to bottom (torchtune style):

    1. config     TrainConfig (a dataclass); every range is checked before any compute
    2. inputs     model weights, task, data splits and output directory are resolved and checked
    3. examples   the task's prompt builder (harness.tasks.build_example, the same text the
                  eval task sends) -> the model's chat template (format_example) -> token ids;
                  the loss covers the response tokens only, and for product_review
                  (mask_unsupported) not those of sentences whose claims the product JSON
                  does not support, so a model learns the style of real reviews without
                  learning to state facts that are not in the data
    4. batches    length-grouped batches (similar lengths together, so padding wastes little);
                  the order depends only on (seed, epoch), so a step number is a data position
    5. engine     Unsloth's FastLanguageModel on CUDA when installed, else transformers + peft.
                  QLoRA = bitsandbytes nf4 (on CPU opt-in, with the avx512-bf16 packing off)
    6. loss       backbone -> output layer on the response positions only (the vocab-wide
                  logits of prompt tokens are never computed)
    7. loop       accelerate (unchanged under `accelerate launch`), AdamW, warmup + cosine,
                  validation loss every N steps, early stopping, best adapter kept, atomic
                  checkpoints every M steps, `resume=True` continues after a kill
    8. outputs    adapter_config.json + adapter_model.safetensors (PEFT), training.json,
                  loss.png

    from harness.train.recipe import train
    train(model="smollm2-135m-instruct", task="product_review", data="demo", max_steps=20)
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import random
import shutil
import time
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Callable

import torch

from .curate import curation_of
from ..errors import HarnessError
from ..files import atomic_path, read_json, sha256_file, write_json

IGNORE = -100
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
OUTPUT_FILES = (*ADAPTER_FILES, "training.json", "loss.png")
CHECKPOINTS = "checkpoints"
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


# ==== 1. config ===========================================================================

@dataclass
class TrainConfig:
    model: str = "smollm2-135m-instruct"   # registry name, HF model directory or .gguf file
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
RESUME_FREE = {"resume", "overwrite", "progress", "threads", "output"}


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


# ==== 3. examples: the eval task's prompt -> chat template -> token ids =====================

@dataclass
class Example:
    ids: list[int]
    n_prompt: int                          # the loss starts after these tokens
    masked: tuple[int, ...] = ()           # response positions without loss (unsupported facts)

    @property
    def labels(self) -> list[int]:
        out = [IGNORE] * self.n_prompt + self.ids[self.n_prompt:]
        for i in self.masked:
            out[i] = IGNORE
        return out


MIN_RESPONSE_TOKENS = 8


def as_eval_record(record: dict) -> dict:
    """The record as the lm-eval task hands it to the prompt builder: stored as JSON with
    sorted keys (harness.tasks.records.load_task_dataset), so nested dicts (price, details) come
    back in sorted order, and the prompt text depends on that order."""
    from ..tasks.records import record_of
    return record_of({"record": json.dumps(record, ensure_ascii=False, sort_keys=True)})


def tokenize_examples(tokenizer, task: str, records: list[dict], chat: bool,
                      max_seq_len: int, mask_unsupported: bool = False
                      ) -> tuple[list[Example], dict]:
    """Examples plus counts: a too-long example keeps its prompt and loses the end of its
    response; one whose prompt alone leaves < MIN_RESPONSE_TOKENS is dropped.
    mask_unsupported (product_review records): the response tokens of each sentence holding an
    unsupported or contradicted claim (unsupported_sentences) get no loss."""
    from ..tasks import build_example
    from .examples import format_example

    bos = tokenizer.bos_token
    out, truncated, dropped = [], 0, 0
    n_sent = n_masked_ex = unaligned = 0
    for rec in records:
        prompt, target = build_example(task, as_eval_record(rec))
        prefix, completion = format_example(tokenizer, prompt, target, chat)
        # as lm-eval encodes the context: the tokenizer's special tokens, unless the text
        # already starts with BOS (chat templates)
        p = tokenizer.encode(prefix, add_special_tokens=not (bos and prefix.startswith(bos)))
        full = c = tokenizer.encode(completion, add_special_tokens=False)
        if len(p) + len(c) > max_seq_len:
            if len(p) > max_seq_len - MIN_RESPONSE_TOKENS:
                dropped += 1
                continue
            c = c[:max_seq_len - len(p)]
            truncated += 1
        masked: list[int] = []
        if mask_unsupported:
            sentences = masked_sentences(tokenizer, rec["product"], target.strip(), completion,
                                         full)
            if sentences is None:
                unaligned += 1
            else:
                kept = [[i for i in pos if i < len(c)] for pos in sentences]
                n_sent += sum(bool(k) for k in kept)
                masked = sorted({len(p) + i for k in kept for i in k})
                n_masked_ex += bool(masked)
        out.append(Example(p + c, len(p), tuple(masked)))
    response = sum(len(e.ids) - e.n_prompt for e in out)
    n_masked = sum(len(e.masked) for e in out)
    stats = {"records": len(records), "examples": len(out), "truncated": truncated,
             "dropped": dropped, "tokens": sum(len(e.ids) for e in out),
             "response_tokens": response, "mask_unsupported": mask_unsupported,
             "masked_sentences": n_sent, "masked_tokens": n_masked,
             "masked_share": round(n_masked / response, 6) if response else 0.0,
             "masked_examples": n_masked_ex, "mask_unaligned": unaligned}
    return out, stats


# Tasks whose targets are product reviews the claim checker reads (TrainConfig.mask_unsupported).
MASKED_TASKS = {"product_review"}
MASK_RULE = ("no loss on the target tokens of sentences with a claim the product JSON does not "
             "support (harness.metrics.hallucination: unsupported or contradicted)")
SENTENCE_PUNCT = ".!?;"


def unsupported_sentences(product: dict, text: str) -> list[tuple[int, int]]:
    """Character spans [start, end) of the sentences of `text` that hold a claim the product
    JSON does not support (unsupported or contradicted, as harness.metrics.hallucination
    checks them). A sentence runs from its first non-space character through its end
    punctuation (claims.sentence_bounds; '.' between digits does not end one)."""
    from ..metrics.claims import sentence_bounds
    from ..metrics.hallucination import SUPPORTED, check_claims

    out = set()
    for claim in check_claims(product, text):
        if claim["status"] == SUPPORTED:
            continue
        for start, end in claim["spans"]:
            a, b = sentence_bounds(text, start, end)
            while a < b and text[a].isspace():
                a += 1
            while b < len(text) and text[b] in SENTENCE_PUNCT:
                b += 1
            out.add((a, b))
    return sorted(out)


def token_offsets(tokenizer, text: str, ids: list[int]) -> list[tuple[int, int]] | None:
    """Character span of each token of `ids`, the tokenization of `text`; None when they
    cannot be aligned. A fast tokenizer gives its offset mapping; otherwise each token ends
    where the decoded prefix ending with it ends."""
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        if list(enc["input_ids"]) == list(ids):
            return [(int(a), int(b)) for a, b in enc["offset_mapping"]]
    spans, start = [], 0
    for i in range(len(ids)):
        prefix = tokenizer.decode(ids[:i + 1], clean_up_tokenization_spaces=False)
        if not text.startswith(prefix):
            return None     # a token splits a character, or decoding changes the text
        spans.append((start, len(prefix)))
        start = len(prefix)
    return spans if start == len(text) else None


def masked_sentences(tokenizer, product: dict, text: str, completion: str,
                     ids: list[int]) -> list[list[int]] | None:
    """Per unsupported sentence of `text` (found in `completion`, tokenized as `ids`), the
    positions in `ids` of the tokens with a character in it; None when the tokens cannot be
    aligned with the text."""
    spans = unsupported_sentences(product, text)
    if not spans:
        return []
    at = completion.find(text)
    offsets = token_offsets(tokenizer, completion, ids) if at >= 0 else None
    if offsets is None:
        return None
    return [[i for i, (a, b) in enumerate(offsets) if b > a and a < at + e and b > at + s]
            for s, e in spans]


# ==== 4. batches: length-grouped, order fixed by (seed, epoch) ==============================

GROUP = 16  # batches sorted together: shuffle, cut into GROUP*batch_size chunks, sort each


def epoch_batches(lengths: list[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Indices in batches of similar length, in a shuffled order that only (seed, epoch) fix."""
    rng = random.Random(seed * 1_000_003 + epoch)
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    batches = []
    for i in range(0, len(idx), batch_size * GROUP):
        chunk = sorted(idx[i:i + batch_size * GROUP], key=lambda j: -lengths[j])
        batches += [chunk[k:k + batch_size] for k in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(examples: list[Example], pad_id: int) -> dict:
    """Right-padded tensors: input_ids, attention_mask, labels (IGNORE on prompt and pad)."""
    width = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e.ids)
        ids[i, :n] = torch.tensor(e.ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@dataclass
class Schedule:
    """Which micro-batches step `s` trains on, for a run of `total` optimizer steps."""
    lengths: list[int]
    batch_size: int
    per_step: int                          # micro-batches per optimizer step, all processes
    seed: int

    @property
    def steps_per_epoch(self) -> int:
        return max(1, math.ceil(math.ceil(len(self.lengths) / self.batch_size) / self.per_step))

    def step_batches(self, step: int) -> list[list[int]]:
        epoch, pos = divmod(step, self.steps_per_epoch)
        order = epoch_batches(self.lengths, self.batch_size, self.seed, epoch)
        order += order[:self.steps_per_epoch * self.per_step - len(order)]  # fill the last step
        return order[pos * self.per_step:(pos + 1) * self.per_step]


def lr_at(step: int, total: int, peak: float, warmup_ratio: float) -> float:
    """Linear warmup, then cosine decay to 10% of the peak."""
    warm = max(1, round(total * warmup_ratio)) if warmup_ratio > 0 else 0
    if step < warm:
        return peak * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


# ==== 5. engines: load the base model and attach LoRA ========================================

def torch_dtype(name: str, device_type: str):
    if name == "auto":
        if device_type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16   # CPU: bf16 LoRA measured fastest (benchmarks/train_speed.py)
    return getattr(torch, name)


def gguf_kwargs(gguf_file: str | None) -> dict:
    """from_pretrained arguments for a GGUF file: always the dequantized dense model (with
    the `kernels` package installed transformers would keep the blocks packed, and packed
    layers cannot be trained)."""
    if not gguf_file:
        return {}
    from transformers import GgufConfig
    return {"gguf_file": gguf_file, "quantization_config": GgufConfig(dequantize=True)}


def unmark_gguf(model) -> None:
    """A model loaded from a GGUF comes back dequantized but flagged as quantized by the GGUF
    quantizer, which makes Trainer and peft refuse to train it; clear the flags."""
    model.hf_quantizer = None
    model.is_quantized = False
    if getattr(model, "quantization_method", None) is not None:
        model.quantization_method = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def quantize_linear_4bit(model, compute_dtype, device="cpu", skip=("lm_head",)) -> int:
    """Replace every nn.Linear (but the output layer) by a bitsandbytes nf4 Linear4bit
    (QLoRA). On CPU the avx512-bf16 weight packing is turned off: it kicks in on the first
    no-grad forward (a validation pass) and afterwards the layer passes no gradient to its
    input, so every LoRA below it gets a wrong gradient. Returns the number of layers."""
    import bitsandbytes as bnb

    todo = [(name, mod) for name, mod in model.named_modules()
            if type(mod) is torch.nn.Linear and name.rsplit(".", 1)[-1] not in skip]
    for name, lin in todo:
        q = bnb.nn.Linear4bit(lin.in_features, lin.out_features, bias=lin.bias is not None,
                              compute_dtype=compute_dtype, quant_type="nf4",
                              compress_statistics=True, device="meta")
        q.weight = bnb.nn.Params4bit(lin.weight.data.to(compute_dtype), requires_grad=False,
                                     quant_type="nf4", compress_statistics=True, module=q)
        if lin.bias is not None:
            q.bias = torch.nn.Parameter(lin.bias.data.to(compute_dtype), requires_grad=False)
        q = q.to(device)          # quantizes
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, q)
    disable_cpu_packing(model)
    model.is_loaded_in_4bit = True   # peft then wraps these layers with its bnb LoRA layer
    return len(todo)


def disable_cpu_packing(model) -> None:
    if find_spec("bitsandbytes") is None:
        return
    import bitsandbytes as bnb
    for m in model.modules():
        if isinstance(m, bnb.nn.Linear4bit):
            m.support_avx512bf16_for_cpu = False


def lora_config(cfg: TrainConfig):
    from peft import LoraConfig
    targets = cfg.target_modules if cfg.target_modules == "all-linear" else \
        [t.strip() for t in cfg.target_modules.split(",") if t.strip()]
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets, bias="none", task_type="CAUSAL_LM")


def load_tokenizer(source: tuple[str, str | None]):
    from transformers import AutoTokenizer
    pretrained, gguf = source
    tok = AutoTokenizer.from_pretrained(pretrained, **({"gguf_file": gguf} if gguf else {}))
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    return tok


def load_transformers(cfg: TrainConfig, inp: Inputs, device, dtype):
    """transformers + peft, any device. QLoRA: bitsandbytes nf4 at load time for an HF
    directory on CUDA, else (GGUF, CPU) the dequantized weights are quantized in place."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    pretrained, gguf = inp.model_source
    kwargs: dict[str, Any] = {"dtype": dtype, **gguf_kwargs(gguf)}
    quantize = inp.method == "qlora"
    if quantize and device.type == "cuda" and not gguf:
        from transformers import BitsAndBytesConfig
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype)
        kwargs["device_map"] = {"": device}
    model = AutoModelForCausalLM.from_pretrained(pretrained, **kwargs)
    if gguf:
        unmark_gguf(model)
    if not getattr(model, "is_loaded_in_4bit", False):   # not quantized at load time
        model.to(device)
        if quantize:
            quantize_linear_4bit(model, dtype, device)
    if gradient_checkpointing(cfg, device):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    torch.manual_seed(cfg.seed)   # the LoRA init
    with warnings.catch_warnings():   # peft asks a deprecated transformers attribute
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing",
                                category=FutureWarning)
        # LoRA weights in the compute dtype (see MasterWeights), not peft's float32 default
        peft_model = get_peft_model(model, lora_config(cfg), autocast_adapter_dtype=False)
    disable_cpu_packing(peft_model)
    return peft_model


def load_unsloth(cfg: TrainConfig, inp: Inputs, device, dtype):
    """Unsloth's FastLanguageModel (CUDA only; not verified on a GPU in this repo's CI)."""
    from unsloth import FastLanguageModel  # resolve_engine made sure CUDA is there

    pretrained = inp.model_source[0] if inp.model_source[1] is None else \
        str(dequantized_dir(inp.model_source))
    model, _ = FastLanguageModel.from_pretrained(
        model_name=pretrained, max_seq_length=cfg.max_seq_len, dtype=dtype,
        load_in_4bit=inp.method == "qlora")
    targets = LORA_TARGETS if cfg.target_modules == "all-linear" else \
        [t.strip() for t in cfg.target_modules.split(",") if t.strip()]
    return FastLanguageModel.get_peft_model(
        model, r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
        target_modules=targets, bias="none", random_state=cfg.seed,
        use_gradient_checkpointing="unsloth" if gradient_checkpointing(cfg, device) else False)


def dequantized_dir(source: tuple[str, str | None]) -> Path:
    """A GGUF model saved once as a transformers directory (for engines that cannot read
    GGUF), in the cache."""
    from transformers import AutoModelForCausalLM
    from ..paths import CACHE_DIR

    pretrained, gguf = source
    gguf_path = Path(pretrained) / gguf
    out = CACHE_DIR / "hf" / f"{gguf_path.stem}-{sha256_file(gguf_path)[:12]}"
    if not (out / "config.json").is_file():
        model = AutoModelForCausalLM.from_pretrained(pretrained, **gguf_kwargs(gguf))
        unmark_gguf(model)
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        load_tokenizer(source).save_pretrained(tmp)
        tmp.rename(out)
    return out


ENGINES: dict[str, Callable] = {"transformers": load_transformers, "unsloth": load_unsloth}


def gradient_checkpointing(cfg: TrainConfig, device) -> bool:
    return cfg.gradient_checkpointing if cfg.gradient_checkpointing is not None \
        else device.type == "cuda"


# ==== 6. loss: the output layer on response positions only ==================================

# config attribute -> how the model post-processes its logits (applied when set)
LOGIT_TRANSFORMS: dict[str, Callable] = {
    "final_logit_softcapping": lambda x, c: (x / c).tanh() * c,   # gemma 2/3
    "logit_scale": lambda x, s: x * s,                            # cohere
    "logits_scaling": lambda x, s: x / s,                         # granite
}


def right_padded(mask) -> bool:
    """Every row is 1s then 0s (collate pads on the right)."""
    return mask is not None and bool((mask[:, 1:] <= mask[:, :-1]).all())


class ResponseLoss(torch.nn.Module):
    """Sum of the cross-entropy over response tokens, and their count.

    The backbone runs on every token; the output layer (vocab-wide: 28M of SmolLM2's 135M
    parameters) only where a label is set. Wrapping the whole loss in one module lets
    accelerate/DDP wrap it unchanged."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def causal_lm(self):
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

    def forward(self, input_ids, attention_mask, labels):
        import torch.nn.functional as F

        lm = self.causal_lm()
        if right_padded(attention_mask):
            # Padding only at the end: under the causal mask no real token sees a pad, so the
            # padding mask changes nothing the loss reads. Without it, attention runs the
            # fused causal kernel instead of materialising a (batch, heads, T, T) mask.
            attention_mask = None
        hidden = lm.get_decoder()(input_ids=input_ids, attention_mask=attention_mask,
                                  use_cache=False).last_hidden_state
        targets = labels[:, 1:]
        keep = targets != IGNORE
        logits = lm.get_output_embeddings()(hidden[:, :-1][keep])
        conf = getattr(lm.config, "get_text_config", lambda: lm.config)()
        for attr, fn in LOGIT_TRANSFORMS.items():
            if getattr(conf, attr, None):
                logits = fn(logits, getattr(conf, attr))
        loss = F.cross_entropy(logits.float(), targets[keep], reduction="sum")
        return loss, keep.sum()


# ==== 7. checkpoints: atomic, everything needed to continue bit for bit =====================

class MasterWeights:
    """The trainable (LoRA) weights. In the model they stay in the compute dtype, so no cast
    surrounds each LoRA matmul (on CPU, bf16 LoRA on the bf16 base took 2-3x less CPU time
    per step than peft's float32 LoRA); the optimizer steps float32 master copies, which are
    written back after each step and are what checkpoints and the adapter file hold."""

    def __init__(self, model):
        self.named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.master = [p if p.dtype == torch.float32 else
                       p.detach().float().clone().requires_grad_(True) for _, p in self.named]

    def grads_to_master(self) -> None:
        for (_, p), m in zip(self.named, self.master):
            if m is not p:
                m.grad = None if p.grad is None else p.grad.float()
                p.grad = None

    def master_to_model(self) -> None:
        with torch.no_grad():
            for (_, p), m in zip(self.named, self.master):
                if m is not p:
                    p.copy_(m)

    def state(self) -> dict:
        return {n: m.detach().cpu().contiguous() for (n, _), m in zip(self.named, self.master)}

    def load(self, saved: dict, where: Path) -> None:
        names = {n for n, _ in self.named}
        if set(saved) != names:
            diff = sorted(set(saved) ^ names)
            raise HarnessError(f"{where}: checkpoint does not match this model "
                               f"({len(diff)} parameters differ, e.g. {diff[0]})")
        with torch.no_grad():
            for (n, _), m in zip(self.named, self.master):
                m.copy_(saved[n])
        self.master_to_model()


def save_checkpoint(output: Path, step: int, weights: MasterWeights, optimizer, state: dict,
                    acc) -> Path:
    """Write checkpoints/step-N/ through a temporary directory and a rename, then point
    checkpoints/latest.json at it (atomic too); older checkpoints are removed after."""
    from safetensors.torch import save_file

    root = output / CHECKPOINTS
    name = f"step-{step:07d}"
    tmp = root / f".{name}.tmp"
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    acc.wait_for_everyone()
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    save_file(rng, str(tmp / f"rng.{acc.process_index}.safetensors"))
    acc.wait_for_everyone()   # every rng file is in tmp before the main process renames it
    if acc.is_main_process:
        save_file(weights.state(), str(tmp / "trainable.safetensors"))
        opt = optimizer.state_dict()
        tensors = {f"{i}.{k}": v.contiguous() for i, st in opt["state"].items()
                   for k, v in st.items() if isinstance(v, torch.Tensor)}
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        meta = dict(state, step=step, python_rng=random.getstate(),
                    optimizer_groups=opt["param_groups"],
                    optimizer_keys={str(i): sorted(st) for i, st in opt["state"].items()})
        write_json(tmp / "state.json", meta)
        final = root / name
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        write_json(root / "latest.json", {"dir": name, "step": step})
        for old in root.glob("step-*"):
            if old.name != name:
                shutil.rmtree(old, ignore_errors=True)
    acc.wait_for_everyone()
    return root / name


def load_checkpoint(ck: Path, weights: MasterWeights, optimizer, acc) -> dict:
    from safetensors.torch import load_file

    meta = read_json(ck / "state.json")
    weights.load(load_file(str(ck / "trainable.safetensors")), ck)
    tensors = load_file(str(ck / "optimizer.safetensors"))
    opt_state = {int(i): {k: tensors[f"{i}.{k}"] for k in keys}
                 for i, keys in meta["optimizer_keys"].items()}
    optimizer.load_state_dict({"state": opt_state, "param_groups": meta["optimizer_groups"]})
    rng_file = ck / f"rng.{acc.process_index}.safetensors"
    rng = load_file(str(rng_file))
    torch.set_rng_state(rng["torch"])
    if torch.cuda.is_available():
        torch.cuda.set_rng_state_all([rng[f"cuda{i}"] for i in range(torch.cuda.device_count())])
    v, internal, gauss = meta["python_rng"]
    random.setstate((v, tuple(internal), gauss))
    return meta


def save_adapter(peft_model, weights: MasterWeights, output: Path, base_name: str | None,
                 acc, loss_fn) -> None:
    """adapter_config.json + adapter_model.safetensors (float32), each replaced atomically.
    Called on every process: with sharded parameters (FSDP, DeepSpeed) all of them take part
    in gathering the full state; the main process writes."""
    # the float32 masters by name (swapping them into the model's parameters would drop the
    # DDP gradient hooks of the main process), or the gathered state of sharded parameters
    state = weights.state()
    if sharded(acc):
        state = {k.removeprefix("model."): v for k, v in acc.get_state_dict(loss_fn).items()}
    if not acc.is_main_process:
        return
    tmp = output / ".adapter.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    cfg = peft_model.peft_config["default"]
    old, cfg.base_model_name_or_path = cfg.base_model_name_or_path, base_name
    try:
        # the vocabulary is never resized; "auto" would look the base model up on the hub
        peft_model.save_pretrained(str(tmp), safe_serialization=True,
                                   save_embedding_layers=False, state_dict=state)
    finally:
        cfg.base_model_name_or_path = old
    for f in ADAPTER_FILES:
        os.replace(tmp / f, output / f)
    shutil.rmtree(tmp, ignore_errors=True)


def sharded(acc) -> bool:
    """Parameters or optimizer state split across processes (FSDP, DeepSpeed)."""
    return acc.distributed_type.name in ("FSDP", "DEEPSPEED")


# ==== 8. records: hashes, versions, device, loss curve =======================================

def model_sha256(source: tuple[str, str | None]) -> str:
    pretrained, gguf = source
    if gguf:
        return sha256_file(Path(pretrained) / gguf)
    files = sorted(p for p in Path(pretrained).iterdir()
                   if p.suffix in (".safetensors", ".bin", ".gguf") or p.name == "config.json")
    h = hashlib.sha256()
    for p in files:
        h.update(f"{p.name}:{sha256_file(p)}\n".encode())
    return h.hexdigest()


def versions(engine: str) -> dict:
    from importlib.metadata import PackageNotFoundError, version
    out = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "unsloth",
                "product-review-harness"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def device_info(device) -> dict:
    info = {"type": device.type, "torch_threads": torch.get_num_threads(),
            "cpu": _cpu_name(), "cpu_count": os.cpu_count()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def plot_losses(path: Path, train_loss: list, val_loss: list, best_step: int | None,
                title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    if train_loss:
        s, v = zip(*train_loss)
        ax.plot(s, v, lw=0.8, alpha=0.45, label="train (per step)")
        k = max(1, len(v) // 20)
        if k > 1:
            avg = [sum(v[max(0, i - k + 1):i + 1]) / len(v[max(0, i - k + 1):i + 1])
                   for i in range(len(v))]
            ax.plot(s, avg, lw=1.6, label=f"train (mean of {k})")
    if val_loss:
        s, v = zip(*val_loss)
        ax.plot(s, v, "o-", lw=1.6, label="validation")
    if best_step is not None:
        ax.axvline(best_step, ls="--", c="grey", lw=0.8, label=f"best (step {best_step})")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (response tokens, nats/token)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


# ==== 9. the recipe ==========================================================================

@dataclass
class RunState:
    """What a checkpoint carries besides tensors (JSON)."""
    train_loss: list = field(default_factory=list)   # [step, loss]
    val_loss: list = field(default_factory=list)     # [step, loss]
    best_val: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    stopped_early: bool = False
    tokens: int = 0
    response_tokens: int = 0
    padded_tokens: int = 0
    train_s: float = 0.0
    train_cpu_s: float = 0.0
    resumed_at: list = field(default_factory=list)


def _progress(console):
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)
    return Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]}"),
                    TextColumn("{task.fields[tps]} tok/s"), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn(), console=console)


def evaluate_loss(loss_fn, examples: list[Example], batch_size: int, pad_id: int, acc) -> float:
    """Mean cross-entropy per response token over `examples` (sharded across processes)."""

    order = sorted(range(len(examples)), key=lambda i: len(examples[i].ids))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    total = torch.zeros(2, dtype=torch.float64, device=acc.device)
    mine = batches[acc.process_index::acc.num_processes]
    loss_fn.eval()
    with torch.no_grad():
        # as many forwards on every process (DDP and FSDP communicate in forward): one with
        # fewer batches runs the first again and does not count it
        for j in range(math.ceil(len(batches) / acc.num_processes)):
            b = mine[j] if j < len(mine) else batches[0]
            batch = {k: v.to(acc.device) for k, v in
                     collate([examples[i] for i in b], pad_id).items()}
            s, n = loss_fn(**batch)
            if j < len(mine):
                total += torch.stack([s.double(), n.double()])
    loss_fn.train()
    total = acc.reduce(total, reduction="sum")
    return float(total[0] / total[1])


def train(config: TrainConfig | None = None, preset: str | None = None, **overrides) -> dict:
    """Train an adapter; returns the training.json record (plus "output").

    `train(model=..., task=..., data="demo", max_steps=20)`, `train(TrainConfig(...))`, or
    `train(model=..., preset="demo")` (PRESETS; explicit settings win)."""
    unknown = set(overrides) - {f.name for f in fields(TrainConfig)}
    if unknown:
        raise HarnessError(f"unknown training setting(s): {', '.join(sorted(unknown))}")
    if preset is not None and preset not in PRESETS:
        raise HarnessError(f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
    cfg = TrainConfig(**{**(asdict(config) if config else {}), **PRESETS.get(preset, {}),
                         **overrides})
    t_start = time.perf_counter()

    # -- inputs, checked before any compute --------------------------------------------------
    inp = resolve_inputs(cfg)
    if inp.engine == "unsloth":
        import unsloth  # noqa: F401  (patches transformers before it is used; CUDA only)
    from accelerate import Accelerator

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    from rich.console import Console

    dtype = torch_dtype(cfg.dtype, "cuda" if _cuda() else "cpu")
    # float16 needs loss scaling: accelerate's fp16 mixed precision, with float32 LoRA weights
    # cpu=True without CUDA: under `accelerate launch --multi_gpu` (torchrun) the processes
    # then join one gloo group (MULTI_CPU); otherwise each would train alone
    acc = Accelerator(cpu=not _cuda(), mixed_precision="fp16" if dtype == torch.float16 else None)
    device = acc.device
    console = Console(stderr=True, quiet=not (cfg.progress and acc.is_main_process))

    def say(msg: str) -> None:
        console.print(msg, highlight=False, markup=False)
    if cfg.overwrite and acc.is_main_process:
        clear_output(inp.output)
    if inp.checkpoint is not None and sharded(acc):
        raise HarnessError("--resume: checkpoints are written by single-process and DDP runs "
                           "only, not under FSDP or DeepSpeed")
    if inp.checkpoint is not None:
        saved_cfg = read_json(inp.checkpoint / "state.json")["config"]
        diff = {k: (saved_cfg.get(k), v) for k, v in asdict(cfg).items()
                if k not in RESUME_FREE and saved_cfg.get(k) != v}
        if diff:
            raise HarnessError(f"{inp.checkpoint}: cannot resume with other settings: " +
                               ", ".join(f"{k} was {a!r}, now {b!r}" for k, (a, b) in diff.items()))

    # -- examples ----------------------------------------------------------------------------
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    tokenizer = load_tokenizer(inp.model_source)
    chat = inp.chat if inp.chat is not None else tokenizer.chat_template is not None
    mask = cfg.mask_unsupported and data_task(cfg.task) in MASKED_TASKS
    train_ex, train_stats = tokenize_examples(tokenizer, cfg.task, inp.records["train"], chat,
                                              cfg.max_seq_len, mask)
    # validation is masked alike: its loss estimates the loss the model is trained on
    val_ex, val_stats = tokenize_examples(tokenizer, cfg.task,
                                          inp.records["validation"][:cfg.eval_examples], chat,
                                          cfg.max_seq_len, mask)
    if mask:
        say(f"loss masking: {train_stats['masked_sentences']} unsupported sentences, "
            f"{train_stats['masked_share']:.1%} of the train target tokens")
    for split, ex in (("train", train_ex), ("validation", val_ex)):
        if not ex:
            raise HarnessError(f"{inp.data_files[split]}: no {split} example fits in "
                               f"max_seq_len={cfg.max_seq_len} tokens")
    data_hashes = {s: sha256_file(p) for s, p in inp.data_files.items()}
    if inp.checkpoint is not None:
        saved = read_json(inp.checkpoint / "state.json")["data_sha256"]
        if saved != data_hashes:
            raise HarnessError(f"{inp.checkpoint}: the data changed since this checkpoint "
                               f"({', '.join(s for s in saved if saved[s] != data_hashes.get(s))})")

    # -- schedule ----------------------------------------------------------------------------
    sched = Schedule([len(e.ids) for e in train_ex], cfg.batch_size,
                     cfg.grad_accum * acc.num_processes, cfg.seed)
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * sched.steps_per_epoch))
    eval_every = cfg.eval_every or max(1, total // 5)
    save_every = cfg.save_every or eval_every

    # -- model -------------------------------------------------------------------------------
    t_load = time.perf_counter()
    peft_model = ENGINES[inp.engine](cfg, inp, device, dtype)
    load_s = time.perf_counter() - t_load
    if dtype == torch.float16 or acc.distributed_type.name in ("DEEPSPEED", "FSDP"):
        for p in peft_model.parameters():   # these manage float32 weights themselves
            if p.requires_grad:
                p.data = p.data.float()
    weights = MasterWeights(peft_model)
    n_trainable = sum(p.numel() for p in weights.master)
    loss_fn = ResponseLoss(peft_model)
    optimizer = torch.optim.AdamW(weights.master, lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn, optimizer = acc.prepare(loss_fn, optimizer)
    pad_id = tokenizer.pad_token_id

    # -- state: fresh, or from the checkpoint ------------------------------------------------
    st = RunState()
    start = 0
    if inp.checkpoint is not None:
        meta = load_checkpoint(inp.checkpoint, weights, optimizer, acc)
        st = RunState(**meta["run"])
        start = meta["step"]
        st.resumed_at.append(start)
        say(f"resuming {inp.output} at step {start}/{total}")
    if acc.is_main_process:
        inp.output.mkdir(parents=True, exist_ok=True)

    def checkpoint_state() -> dict:
        return {"config": asdict(cfg), "data_sha256": data_hashes, "run": asdict(st)}

    def validate(step: int) -> None:
        val = evaluate_loss(loss_fn, val_ex, cfg.batch_size * 2, pad_id, acc)
        st.val_loss.append([step, round(val, 6)])
        improved = st.best_val is None or val < st.best_val - cfg.min_delta
        if improved:
            st.best_val, st.best_step, st.bad_evals = val, step, 0
            if step > 0:
                save_adapter(peft_model, weights, inp.output, inp.hub_id, acc, loss_fn)
        elif step > 0:
            st.bad_evals += 1
        say(f"step {step}/{total}: validation loss {val:.4f}"
            + (" (best)" if improved else f" (best {st.best_val:.4f} at step {st.best_step})"))

    if start == 0:
        validate(0)   # the base model's loss: the number every later one is compared with

    # -- the loop ----------------------------------------------------------------------------
    loss_fn.train()
    step = start
    # grad mode is process-wide: a scorer or evaluator run earlier in this process may have
    # turned it off
    with torch.enable_grad(), _progress(console) as bar:
        task = bar.add_task("train", total=total, completed=start, loss="-", tps="-")
        while step < total and not st.stopped_early:
            for g in optimizer.param_groups:
                g["lr"] = lr_at(step, total, cfg.lr, cfg.warmup_ratio)
            t0, c0 = time.perf_counter(), time.process_time()
            micro = sched.step_batches(step)[acc.process_index::acc.num_processes]
            batches = [collate([train_ex[i] for i in b], pad_id) for b in micro]
            # the step's loss is the mean over the response tokens of all processes; DDP
            # averages the processes' gradients, hence the factor num_processes
            n_resp = int(acc.reduce(torch.tensor(sum(int((b["labels"][:, 1:] != IGNORE).sum())
                                                     for b in batches), device=device), "sum"))
            sums = torch.zeros(3, dtype=torch.float64)   # loss, tokens, padded tokens
            for k, batch in enumerate(batches):
                batch = {key: v.to(device) for key, v in batch.items()}
                sync = k == len(batches) - 1
                with (acc.no_sync(loss_fn) if not sync else nullcontext()):
                    s, _ = loss_fn(**batch)
                    acc.backward(s * acc.num_processes / max(1, n_resp))
                sums += torch.tensor([float(s.detach()), int(batch["attention_mask"].sum()),
                                      batch["input_ids"].numel()], dtype=torch.float64)
            loss_sum, tokens, padded = acc.reduce(sums.to(device), "sum").tolist()
            st.tokens += int(tokens)
            st.padded_tokens += int(padded)
            weights.grads_to_master()
            if cfg.max_grad_norm:
                acc.clip_grad_norm_(weights.master, cfg.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            weights.master_to_model()
            st.train_s += time.perf_counter() - t0
            st.train_cpu_s += time.process_time() - c0
            st.response_tokens += n_resp
            step += 1
            loss = loss_sum / max(1, n_resp)
            st.train_loss.append([step, round(loss, 6)])
            tps = st.tokens / st.train_s if st.train_s else 0.0
            bar.update(task, completed=step, loss=f"{loss:.3f}", tps=f"{tps:,.0f}")
            if step % eval_every == 0 or step == total:
                validate(step)
                if cfg.patience and st.bad_evals >= cfg.patience:
                    st.stopped_early = True
                    say(f"early stop at step {step}: no gain in {cfg.patience} evaluations")
            if step % save_every == 0 and step < total and not st.stopped_early \
                    and not sharded(acc):
                save_checkpoint(inp.output, step, weights, optimizer, checkpoint_state(), acc)

    # -- outputs -----------------------------------------------------------------------------
    from ..backends.throughput import peak_rss_mb

    record = {
        "base_model": cfg.model, "base_model_source": {"pretrained": inp.model_source[0],
                                                       "gguf_file": inp.model_source[1]},
        "base_model_sha256": model_sha256(inp.model_source),
        "task": cfg.task, "method": inp.method, "engine": inp.engine,
        "chat_template": chat, "dtype": str(dtype).replace("torch.", ""),
        "data": {s: {"path": str(inp.data_files[s]), "sha256": data_hashes[s], **stats}
                 for s, stats in (("train", train_stats), ("validation", val_stats))},
        "split_sizes": {"train": len(inp.records["train"]),
                        "validation": len(inp.records["validation"])},
        "loss_masking": {"enabled": mask, "rule": MASK_RULE if mask else None,
                         **{s: {k: st_[k] for k in ("masked_sentences", "masked_tokens",
                                                    "response_tokens", "masked_share",
                                                    "masked_examples", "mask_unaligned")}
                            for s, st_ in (("train", train_stats),
                                           ("validation", val_stats))}},
        "curation": curation_of(inp.data_files["train"]),
        "hyperparameters": {k: v for k, v in asdict(cfg).items()
                            if k not in RESUME_FREE | {"model", "task", "data"}},
        "seed": cfg.seed, "steps": step, "total_steps": total,
        "steps_per_epoch": sched.steps_per_epoch,
        "epochs_trained": round(step / sched.steps_per_epoch, 4),
        "eval_every": eval_every, "save_every": save_every,
        "trainable_parameters": n_trainable,
        "initial_val_loss": st.val_loss[0][1] if st.val_loss and st.val_loss[0][0] == 0 else None,
        "best_val_loss": st.best_val, "best_step": st.best_step,
        "stopped_early": st.stopped_early,
        "train_loss": st.train_loss, "val_loss": st.val_loss,
        "tokens_per_second": round(st.tokens / st.train_s, 2) if st.train_s else None,
        "response_tokens_per_second": round(st.response_tokens / st.train_s, 2)
        if st.train_s else None,
        "padding_fraction": round(1 - st.tokens / st.padded_tokens, 4) if st.padded_tokens else 0,
        "tokens_trained": st.tokens, "train_s": round(st.train_s, 2),
        "train_cpu_s": round(st.train_cpu_s, 2), "load_s": round(load_s, 2),
        "wall_s": round(time.perf_counter() - t_start, 2), "peak_rss_mb": round(peak_rss_mb(), 1),
        "resumed_at_steps": st.resumed_at,
        "versions": versions(inp.engine), "device": device_info(device),
        "num_processes": acc.num_processes,
    }
    if not st.best_step:
        # no step beat the base model: keep the last adapter, say so in the record
        save_adapter(peft_model, weights, inp.output, inp.hub_id, acc, loss_fn)
        record["best_step_note"] = "no step improved on the base model's validation loss; " \
                                   "the adapter is the last step's"
    if acc.is_main_process:
        plot_losses(inp.output / "loss.png", st.train_loss, st.val_loss, st.best_step,
                    f"{cfg.model} · {cfg.task} · {inp.method}")
        write_json(inp.output / "training.json", record)
        shutil.rmtree(inp.output / CHECKPOINTS, ignore_errors=True)
    acc.wait_for_everyone()
    say(f"adapter: {inp.output} (best validation loss {st.best_val:.4f} at step "
        f"{st.best_step}; {record['tokens_per_second']} tok/s)")
    if st.best_step == 0 and record["val_loss"] and len(record["val_loss"]) > 1:
        say("warning: no step lowered the validation loss, so the saved adapter is the "
            "untrained one (it changes nothing); try a lower --lr or more data")
    return {**record, "output": str(inp.output)}


