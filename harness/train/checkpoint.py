"""What a run writes: atomic checkpoints (everything needed to continue bit for bit), the
adapter, and the record's parts (hashes, versions, device, loss curve)."""
from __future__ import annotations

import hashlib
import os
import platform
import random
import shutil
from pathlib import Path

import torch

from ..errors import HarnessError
from ..files import atomic_path, read_json, sha256_file, write_json
from .config import ADAPTER_FILES, CHECKPOINTS


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
