"""Export stage: PEFT LoRA adapters and base models -> GGUF for llama.cpp, in-process and offline.

    export(adapter_dir, "gguf-lora")                 -> <adapter>/gguf/<name>-lora.gguf
    export(adapter_dir, "gguf", ["q4_k_m"])          -> <adapter>/gguf/<name>.q4_k_m.gguf
    export(None, "gguf", ["f16"], base="smollm2-135m-instruct")   (--base-only)
                                                     -> cache/models/<name>.f16.gguf
    verify(reference_model, candidates, prompts)     -> top-1 agreement and KL per file

The merged model is written as F16 by harness.export.gguf_file (the gguf package: hyperparameters,
tensors in llama.cpp's layout, tokenizer, special tokens, chat template) and quantized by
llama.cpp itself through llama-cpp-python's `llama_model_quantize`: no llama.cpp checkout, no
network. This module is the PEFT side: adapters and base models, the export, and verification
against transformers.
"""
from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .. import models
from .gguf_file import (QUANTS, arch_of, hf_tensor_shapes, quantize, scan_gguf, write_lora_gguf,
                        write_model_gguf)
from ..errors import HarnessError
from ..files import read_json, sha256_file, write_json

FORMATS = ("gguf", "gguf-lora")
EXPORT_RECORD = "export.json"


# --- adapters ------------------------------------------------------------------------------------
@dataclass
class Adapter:
    """A standard PEFT LoRA directory (adapter_config.json + adapter_model.safetensors)."""
    path: Path
    config: dict
    base: str   # registry name or path of the base model

    @property
    def name(self) -> str:
        return self.path.name

    def weights(self) -> dict:
        from safetensors.torch import load_file

        try:
            return load_file(self.path / "adapter_model.safetensors")
        except Exception as e:
            raise HarnessError(f"{self.path / 'adapter_model.safetensors'}: cannot read "
                               f"({e})") from e

    def scale(self, module: str) -> tuple[int, float]:
        """(rank, PEFT scaling) of one module (rank_pattern / alpha_pattern / rsLoRA aware)."""
        import re

        c = self.config
        r, alpha = c.get("r", 8), c.get("lora_alpha", 8)
        for pat, v in (c.get("rank_pattern") or {}).items():
            if re.search(rf"(^|\.){pat}$", module):
                r = v
        for pat, v in (c.get("alpha_pattern") or {}).items():
            if re.search(rf"(^|\.){pat}$", module):
                alpha = v
        return r, alpha / (math.sqrt(r) if c.get("use_rslora") else r)


def read_adapter(path: str | os.PathLike, base: str | None = None) -> Adapter:
    """The adapter folder and its base model: `base` if given, else training.json's
    "base_model" (written by harness.train), else adapter_config's base_model_name_or_path."""
    path = Path(path).resolve()
    cfg_file = path / "adapter_config.json"
    if not cfg_file.is_file():
        raise HarnessError(f"{path}: not a PEFT adapter directory (no adapter_config.json)")
    if not (path / "adapter_model.safetensors").is_file():
        raise HarnessError(f"{path}: adapter_model.safetensors missing (pickled .bin adapters "
                           f"are not loaded; save the adapter with safetensors)")
    config = read_json(cfg_file)
    if not isinstance(config, dict):
        raise HarnessError(f"{cfg_file}: expected a JSON object, got "
                           f"{type(config).__name__}")
    if config.get("peft_type", "LORA") != "LORA":
        raise HarnessError(f"{cfg_file}: peft_type {config.get('peft_type')!r} is not LoRA")
    if base is None and (path / "training.json").is_file():
        training = read_json(path / "training.json")
        base = training.get("base_model") if isinstance(training, dict) else None
    base = base or config.get("base_model_name_or_path")
    if not base:
        raise HarnessError(f"{cfg_file}: no base_model_name_or_path; give --base NAME_OR_PATH")
    return Adapter(path, config, str(base))


@dataclass
class Base:
    """A base model: weights for transformers and, when there is one, a GGUF for llama.cpp."""
    name: str
    hf: tuple[str, str | None]      # (pretrained, gguf_file) for from_pretrained
    gguf: Path | None               # the llama.cpp weights LoRA GGUFs are applied to

    def config(self):
        from transformers import AutoConfig

        pretrained, gguf_file = self.hf
        try:
            return AutoConfig.from_pretrained(pretrained, gguf_file=gguf_file,
                                              local_files_only=True)
        except (OSError, ValueError) as e:
            raise HarnessError(f"{self.name}: cannot read the model config ({e})") from e


def _registry_name_of(value: str) -> str | None:
    """The registry name a base-model reference stands for: the name itself, its hub id, or the
    path of (the folder holding) a bundled GGUF. Never assembles or downloads anything."""
    reg = models.registry()
    if value in reg:
        return value
    p = Path(value).expanduser()
    for name, spec in reg.items():
        if spec.hf_id and spec.hf_id == value:
            return name
        if not (p.exists() and spec.gguf and spec.gguf.startswith("wheel:")):
            continue
        try:
            g = models.resolve_gguf(name).resolve()
        except HarnessError:
            continue
        if p.resolve() in (g, g.parent):
            return name
    return None


def resolve_base(name_or_path: str) -> Base:
    """A registry name, an HF model directory, a GGUF file, or a directory holding one GGUF
    (what PEFT records as base_model_name_or_path after loading a GGUF with transformers)."""
    if (name := _registry_name_of(name_or_path)) is not None:
        try:
            g = models.resolve_gguf(name)
        except HarnessError:
            g = None
        return Base(name, models.resolve_hf(name), g)
    p = Path(name_or_path).expanduser()
    if p.suffix == ".gguf":
        scan_gguf(p)
        return Base(str(p), (str(p.parent), p.name), p)
    if (p / "config.json").is_file():
        return Base(str(p), (str(p), None), None)
    ggufs = sorted(p.glob("*.gguf")) if p.is_dir() else []
    if len(ggufs) == 1:
        return Base(str(ggufs[0]), (str(p), ggufs[0].name), ggufs[0])
    raise HarnessError(f"base model {name_or_path!r} not found: not a registry name, an HF "
                       f"model directory or a GGUF file; give --base NAME_OR_PATH")


def lora_pairs(adapter: Adapter, shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple]:
    """HF weight name -> (A (r, in), B (out, r), PEFT scale), checked against the base shapes."""
    if adapter.config.get("use_dora"):
        raise HarnessError(f"{adapter.path}: DoRA adapters cannot be written as a llama.cpp "
                           f"LoRA; use --format gguf (merged)")
    pairs: dict[str, dict] = {}
    for key, t in adapter.weights().items():
        module = key.removeprefix("base_model.model.")
        for part, slot in ((".lora_A.weight", "A"), (".lora_B.weight", "B")):
            if module.endswith(part):
                pairs.setdefault(module[: -len(part)], {})[slot] = t
                break
        else:
            hint = ("token-embedding LoRA" if "lora_embedding" in key else
                    "full weights (modules_to_save)")
            raise HarnessError(f"{adapter.path}: tensor {key} is {hint}, which a llama.cpp "
                               f"LoRA GGUF cannot carry; use --format gguf (merged)")
    out = {}
    for module, ab in sorted(pairs.items()):
        if set(ab) != {"A", "B"}:
            raise HarnessError(f"{adapter.path}: {module} has only lora_{''.join(ab)}")
        a, b = ab["A"].float().numpy(), ab["B"].float().numpy()
        weight = module + ".weight"
        if weight not in shapes:
            raise HarnessError(f"{adapter.path}: {module} does not exist in base model "
                               f"{adapter.base}; the adapter was trained for another base")
        out_f, in_f = shapes[weight]
        if a.shape[1] != in_f or b.shape[0] != out_f or a.shape[0] != b.shape[1]:
            raise HarnessError(
                f"{adapter.path}: {module} has LoRA shapes A{tuple(a.shape)} B{tuple(b.shape)} "
                f"but the base weight is {out_f}x{in_f}; the adapter was trained for another "
                f"base model than {adapter.base}")
        out[weight] = (a, b, adapter.scale(module)[1])
    if not out:
        raise HarnessError(f"{adapter.path}: no LoRA tensors in the adapter")
    return out


# --- loading transformers models -----------------------------------------------------------------
def load_model(base: Base, adapter: Adapter | None = None, dtype: str = "float32"):
    """The base model in transformers, with the adapter merged in (merge_and_unload)."""
    import torch
    from transformers import AutoModelForCausalLM

    pretrained, gguf_file = base.hf
    model = AutoModelForCausalLM.from_pretrained(pretrained, gguf_file=gguf_file,
                                                 dtype=getattr(torch, dtype),
                                                 local_files_only=True)
    arch_of(model.config)
    if adapter is not None:
        from peft import PeftModel

        lora_pairs(adapter, {k: tuple(v.shape) for k, v in model.state_dict().items()})
        model = PeftModel.from_pretrained(model, str(adapter.path)).merge_and_unload()
    return model.eval()


# --- the export ----------------------------------------------------------------------------------
@dataclass
class ExportResult:
    files: dict[str, Path] = field(default_factory=dict)   # label (quant, or "lora") -> file
    record: dict = field(default_factory=dict)              # what export.json holds for them
    verify: dict | None = None


@dataclass
class Candidate:
    """One llama.cpp setup to verify: a model GGUF, with a LoRA GGUF on top or not."""
    label: str
    model: Path
    lora: Path | None = None


def _progress(show: bool):
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn,
                               TextColumn, TimeElapsedColumn)

    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), transient=True, disable=not show)


def _stem(adapter: Adapter | None, base: Base) -> str:
    if adapter is not None:
        return adapter.name
    return base.name if base.name in models.registry() else Path(base.hf[0]).name


def output_paths(fmt: str, quants: list[str], out: Path | None, adapter: Adapter | None,
                 base: Base) -> dict[str, Path]:
    """label -> output file. Default folder: <adapter>/gguf, or cache/models for --base-only
    (where harness.models.resolve_gguf finds <name>.q4_k_m.gguf). `out` is a folder, or a .gguf
    file when there is one output."""
    stem = _stem(adapter, base)
    labels = ["lora"] if fmt == "gguf-lora" else quants
    if out is not None and out.suffix == ".gguf":
        if len(labels) != 1:
            raise HarnessError(f"--output {out}: give a folder when exporting {len(labels)} files")
        return {labels[0]: out}
    folder = out or (adapter.path / "gguf" if adapter else models.CACHE_DIR / "models")
    return {q: folder / (f"{stem}-lora.gguf" if q == "lora" else f"{stem}.{q}.gguf")
            for q in labels}


def _writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise HarnessError(f"{folder}: output folder is not writable "
                           f"({e.strerror or e})") from e


def _export_lora(adapter, base, cfg, outputs, lora_dtype, prog) -> dict[str, Path]:
    task = prog.add_task("writing LoRA GGUF", total=None)
    path = write_lora_gguf(outputs["lora"], cfg, lora_pairs(adapter, hf_tensor_shapes(cfg)),
                           name=f"{adapter.name} (LoRA for {Path(adapter.base).name})",
                           base_gguf=base.gguf, dtype=lora_dtype)
    prog.remove_task(task)
    return {"lora": path}


def _export_merged(model, cfg, outputs, quants, tokenizer, name, prog, scratch,
                   threads=None) -> dict[str, Path]:
    """F16 (or F32) with the gguf writer, then llama.cpp quantizes it to the other types.
    An F16 that was not asked for goes to a hidden temporary file next to the outputs, which
    is appended to `scratch` for the caller to verify and then delete."""
    src_type = "f32" if "f32" in quants else "f16"
    folder = next(iter(outputs.values())).parent
    src = outputs.get(src_type)
    if src is None:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=f".{src_type}.gguf", dir=folder)
        os.close(fd)
        src = Path(tmp)
        scratch.append(src)
    state = model.state_dict()
    task = prog.add_task(f"writing {src_type.upper()} GGUF", total=len(state))
    write_model_gguf(src, cfg, state, tokenizer=tokenizer, name=name, dtype=src_type,
                     on_tensor=lambda: prog.advance(task))
    prog.remove_task(task)
    files = {src_type: src} if src_type in outputs else {}
    for q in quants:
        if q not in files:
            task = prog.add_task(f"quantizing to {q}", total=None)
            files[q] = quantize(src, outputs[q], q, threads)
            prog.remove_task(task)
    return files


def export(adapter_path: str | os.PathLike | None, fmt: str = "gguf-lora",
           quants: Iterable[str] = ("q4_k_m",), *, base: str | None = None,
           out: str | os.PathLike | None = None, verify_prompts: int = 0, data=None,
           verify_tokens: int = 32, tokenizer_from: str | os.PathLike | None = None,
           load_dtype: str = "float32", lora_dtype: str = "f32", threads: int | None = None,
           show_progress: bool = False, model=None) -> ExportResult:
    """Export an adapter, or with adapter_path=None the base model `base`, to GGUF.

    fmt "gguf-lora": a llama.cpp LoRA adapter for the base model's GGUF.
    fmt "gguf": the merged model as F16 GGUF, then each of `quants` (f16, q8_0, q4_k_m, f32).
    verify_prompts > 0: compare with transformers on that many product_review prompts (see
    `verify`); the table goes into export.json next to the files and into the result.
    threads: llama.cpp threads for quantizing and verifying [default: all cores].
    model: the merged transformers model, when the caller already has it in memory.
    """
    if fmt not in FORMATS:
        raise HarnessError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    quants = list(dict.fromkeys(quants or ["q4_k_m"]))
    if (bad := [q for q in quants if q not in QUANTS]):
        raise HarnessError(f"unknown quantization {bad[0]!r}; choose from {', '.join(QUANTS)}")
    if adapter_path is None and (base is None or fmt != "gguf"):
        raise HarnessError("--base-only exports a base model: give its name and --format gguf")
    adapter = read_adapter(adapter_path, base) if adapter_path is not None else None
    base_model = resolve_base(adapter.base if adapter else base)
    cfg = base_model.config()
    arch = arch_of(cfg)
    if fmt == "gguf-lora" and base_model.gguf is None:
        raise HarnessError(f"{base_model.name} has no GGUF to apply a LoRA to; export it first "
                           f"with `harness export --base-only {base_model.name} --format gguf "
                           f"--quant f16` and pass it with --base FILE.gguf")
    outputs = output_paths(fmt, quants, Path(out) if out else None, adapter, base_model)
    folder = next(iter(outputs.values())).parent
    created = not folder.exists()
    _writable(folder)
    tokenizer = Path(tokenizer_from) if tokenizer_from else (
        base_model.gguf or Path(base_model.hf[0]))
    result, scratch = ExportResult(), []
    t0 = time.perf_counter()
    try:
        with _progress(show_progress) as prog:
            def merged():
                nonlocal model
                if model is None:
                    task = prog.add_task(f"loading {base_model.name}" + (
                        f" + merging {adapter.name}" if adapter else ""), total=None)
                    model = load_model(base_model, adapter, load_dtype)
                    prog.remove_task(task)
                return model

            if fmt == "gguf-lora":
                result.files = _export_lora(adapter, base_model, cfg, outputs, lora_dtype, prog)
                candidates = [Candidate(f"lora on {base_model.gguf.name}", base_model.gguf,
                                        result.files["lora"])]
                candidates += _earlier_merged(folder, adapter)
            else:
                result.files = _export_merged(merged(), cfg, outputs, quants, tokenizer,
                                              _stem(adapter, base_model), prog, scratch, threads)
                candidates = [Candidate("f16 (intermediate)", p) for p in scratch]
                candidates += [Candidate(q, p) for q, p in result.files.items()]
            seconds = round(time.perf_counter() - t0, 2)
            if verify_prompts:
                result.verify = _run_verify(merged(), candidates, verify_prompts, data,
                                            verify_tokens, prog, base_model, adapter, threads)
    except OSError as e:
        raise HarnessError(f"{folder}: export failed while writing ({e.strerror or e})") from e
    finally:
        for p in scratch:
            p.unlink(missing_ok=True)
        if created and not result.files and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()   # a failed export leaves no empty folder behind
    common = {"format": fmt, "adapter": str(adapter.path) if adapter else None,
              "base_model": base_model.name,
              "base_gguf": str(base_model.gguf) if base_model.gguf else None,
              "architecture": arch.name, "tokenizer": str(tokenizer), "export_s": seconds}
    rows = {r["file"] if not r["lora"] else r["lora"]: r
            for r in (result.verify or {}).get("rows", {}).values()}
    files = {p.name: {**_file_record(p), **common, "quant": None if label == "lora" else label,
                      **({"verify": rows[str(p)]} if str(p) in rows else {})}
             for label, p in result.files.items()}
    result.record = {"files": files, **({"last_verify": result.verify} if result.verify else {})}
    update_record(folder, result.record)
    return result


def ensure_exported(adapter_dir: str, fmt: str, quant: str | None = None) -> Path:
    """The adapter's GGUF export (LoRA GGUF or merged+quantized), made once and reused while
    it is newer than the adapter weights. Export alone knows where its files are: compare
    asks here."""
    adapter = read_adapter(adapter_dir)
    label = "lora" if fmt == "gguf-lora" else quant
    path = output_paths(fmt, [quant] if quant else [], None, adapter,
                        resolve_base(adapter.base))[label]
    weights = Path(adapter_dir) / "adapter_model.safetensors"
    if path.exists() and path.stat().st_mtime >= weights.stat().st_mtime:
        return path
    return export(adapter_dir, fmt, [quant] if quant else ["q4_k_m"]).files[label]


def _file_record(path: Path) -> dict:
    return {"path": str(path), "size_bytes": path.stat().st_size, "sha256": sha256_file(path)}


def update_record(folder: Path, record: dict) -> Path:
    """export.json next to the files: `files` has one entry per file (what it was made from,
    its checksum, its own verify row); `last_verify` the whole table of the latest --verify.
    A later export into the same folder replaces its own entries and keeps the others."""
    path = folder / EXPORT_RECORD
    old = read_json(path) if path.is_file() else {}
    new = {**old, **record, "files": {**old.get("files", {}), **record.get("files", {})}}
    return write_json(path, new)


def _earlier_merged(folder: Path, adapter: Adapter) -> list[Candidate]:
    """Merged GGUFs of the same adapter exported earlier into this folder (from export.json),
    verified next to the LoRA so the table compares LoRA-on-base with merged directly."""
    path = folder / EXPORT_RECORD
    if not path.is_file():
        return []
    return [Candidate(f"{f['quant']} (merged)", Path(f["path"]))
            for f in read_json(path).get("files", {}).values()
            if f.get("format") == "gguf" and f.get("adapter") == str(adapter.path)
            and Path(f["path"]).is_file()]


# --- verification against transformers ----------------------------------------------------------
def review_prompts(n: int, data=None, split: str = "test") -> list[str]:
    """The first n product_review prompts (prepared data when present, else the demo set)."""
    from ..prompts import review_prompt
    from ..tasks.records import read_records

    return [review_prompt(r["product"]) for r in read_records("product_review", split, data)[:n]]


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _open(c: Candidate, n_ctx: int, max_gen_toks: int, n_threads: int | None = None):
    from ..backends.llama_cpp import LlamaCppLM

    return LlamaCppLM(model=str(c.model), lora_path=str(c.lora) if c.lora else None,
                      n_ctx=n_ctx, max_gen_toks=max_gen_toks, n_threads=n_threads)


def verify(reference, candidates: list[Candidate], prompts: list[str], *, n_tokens: int = 32,
           n_ctx: int = 2048, n_threads: int | None = None,
           on_step: Callable[[], None] | None = None) -> dict:
    """Next-token distributions of each llama.cpp setup against the transformers model.

    Each prompt gets the chat template stored in the GGUF (when it has one) and llama.cpp's
    tokens; the transformers model continues it greedily for up to n_tokens (and its
    end-of-generation token). Each setup scores prompt + that continuation in one pass; at the
    positions that produce the continuation the row reports top-1 agreement, mean and max
    KL(transformers || gguf) in nats, and `greedy_same`: the share of prompts where llama.cpp's
    argmax matches at every position, i.e. its own greedy continuation is token for token the
    same. `greedy_pairs`: for LoRA setups, the share of prompts on which their greedy text
    (generated, n_tokens) equals that of each merged setup."""
    import torch

    from .generate import review_context

    lm = _open(candidates[0], n_ctx, n_tokens, n_threads)
    chat = bool(lm.chat_template(True))
    contexts = [review_context(lm, p) for p in prompts]
    eog = sorted(lm.eog)
    refs = []
    with torch.no_grad():
        for ctx in contexts:
            ids = lm.prompt_tokens(ctx)
            gen = reference.generate(torch.tensor([ids]), max_new_tokens=n_tokens,
                                     do_sample=False, eos_token_id=eog, pad_token_id=eog[0],
                                     attention_mask=torch.ones(1, len(ids), dtype=torch.long))
            gen = gen[0, len(ids):].tolist()
            n = next((i for i, t in enumerate(gen) if t in lm.eog), len(gen))
            seq = ids + gen[: n + 1]  # the end-of-generation token is scored too
            if len(seq) > n_ctx:
                raise HarnessError(f"a verify prompt has {len(seq)} tokens, over n_ctx={n_ctx}")
            logits = reference(torch.tensor([seq])).logits[0, len(ids) - 1: len(seq) - 1]
            refs.append((len(ids), seq, _log_softmax(logits.float().numpy())))
            if on_step:
                on_step()
    pairs_needed = any(c.lora for c in candidates) and any(not c.lora for c in candidates)
    rows, texts = {}, {}
    for i, c in enumerate(candidates):
        lm = lm if i == 0 else _open(c, n_ctx, n_tokens, n_threads)
        scorer = lm._scoring_llm()
        agree, kls, same, texts[c.label] = [], [], [], []
        for ctx, (n_prompt, seq, ref_lp) in zip(contexts, refs):
            scorer.reset()
            scorer.eval(seq)
            lp = _log_softmax(np.asarray(scorer.scores[n_prompt - 1: len(seq) - 1]))
            if lp.shape != ref_lp.shape:
                raise HarnessError(f"{c.model}: vocabulary of {lp.shape[-1]} tokens, the "
                                   f"transformers model has {ref_lp.shape[-1]}")
            hits = (lp.argmax(-1) == ref_lp.argmax(-1)).tolist()
            agree.extend(hits)
            same.append(all(hits))
            kls.extend((np.exp(ref_lp) * (ref_lp - lp)).sum(-1).tolist())
            if pairs_needed:
                texts[c.label].append(lm.generate_one(ctx, [], n_tokens))
            if on_step:
                on_step()
        rows[c.label] = {
            "file": str(c.model), "lora": str(c.lora) if c.lora else None,
            "size_bytes": c.model.stat().st_size + (c.lora.stat().st_size if c.lora else 0),
            "top1_agreement": round(float(np.mean(agree)), 4),
            "mean_kl": round(float(np.mean(kls)), 6), "max_kl": round(float(np.max(kls)), 6),
            "greedy_same": round(float(np.mean(same)), 4), "positions": len(agree)}
        del lm, scorer
    pairs = {f"{a.label} vs {b.label}": round(float(np.mean(
        [x == y for x, y in zip(texts[a.label], texts[b.label])])), 4)
        for a in candidates if a.lora for b in candidates if not b.lora}
    return {"prompts": len(prompts), "tokens_per_prompt": n_tokens, "chat_template": chat,
            "reference": "transformers", "rows": rows, "greedy_pairs": pairs}


def _run_verify(model, candidates, n, data, n_tokens, prog, base, adapter, threads) -> dict:
    prompts = review_prompts(n, data)
    task = prog.add_task(f"verifying on {len(prompts)} prompts",
                         total=len(prompts) * (1 + len(candidates)))
    res = verify(model, candidates, prompts, n_tokens=n_tokens, n_threads=threads,
                 on_step=lambda: prog.advance(task))
    prog.remove_task(task)
    res["reference"] = f"transformers {base.name}" + (
        f" + {adapter.name} (merged)" if adapter else "")
    from ..data import resolve_data_file
    res["data"] = str(resolve_data_file("product_review", "test", data))
    return res


def greedy_reviews(c: Candidate, prompts: list[str], max_tokens: int | None = None,
                   n_threads: int | None = None) -> list[str]:
    """Full greedy reviews of one llama.cpp setup (the task's stop strings and token budget),
    e.g. to compare LoRA-on-base with the merged GGUF review by review."""
    from .generate import review_context, review_stop, task_generation_kwargs

    max_tokens = max_tokens or int(task_generation_kwargs()["max_gen_toks"])
    lm = _open(c, 2048, max_tokens, n_threads)
    return [lm.generate_one(review_context(lm, p), review_stop(), max_tokens) for p in prompts]
