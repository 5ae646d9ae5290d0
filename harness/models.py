"""Model registry (data in models.toml): names -> where the weights are, for both backends.

`resolve_gguf(name_or_path)` gives the GGUF file for llama.cpp; `resolve_hf(name_or_path)` gives
`(pretrained, gguf_file)` for transformers: a local HF directory, or the GGUF of a bundled model
(transformers dequantizes it). A model whose weights are absent raises ModelUnavailable with one
line that says how to provide them. Offline, nothing is ever downloaded."""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from importlib import import_module
from importlib.util import find_spec
from pathlib import Path

from .errors import HarnessError
from .paths import CACHE_DIR

REGISTRY_FILE = Path(__file__).with_name("models.toml")
DEFAULT_MODEL = "smollm2-135m-instruct"
# Offline by default: nothing is fetched from a model or dataset hub (an explicit setting wins).
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false"}


def set_offline_defaults() -> None:
    for k, v in OFFLINE_ENV.items():
        os.environ.setdefault(k, v)


class ModelUnavailable(HarnessError):
    """The weights of a registered model are not on this machine."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    hf_id: str | None = None
    gguf: str | None = None
    chat: bool = True
    family: str = "llama"
    bundled: bool = False

    @property
    def env_key(self) -> str:
        return self.name.upper().replace("-", "_").replace(".", "_")


def registry() -> dict[str, ModelSpec]:
    with open(REGISTRY_FILE, "rb") as f:
        raw = tomllib.load(f)
    return {name: ModelSpec(name=name, **fields) for name, fields in raw.items()}


def get_spec(name: str) -> ModelSpec:
    reg = registry()
    if name not in reg:
        raise HarnessError(f"unknown model {name!r}; registered: {', '.join(reg)} "
                           f"(or give a path to a GGUF file / HF model directory)")
    return reg[name]


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


def _hint(spec: ModelSpec) -> str:
    return (f"{spec.name}: weights not found. Provide them with "
            f"HARNESS_HF_{spec.env_key}=/path/to/hf-model-dir (transformers) and/or "
            f"HARNESS_GGUF_{spec.env_key}=/path/to/model.gguf (llama.cpp), "
            f"or `harness export --base-only {spec.name} --format gguf --quant q4_k_m` once the "
            f"HF weights are present" + ("" if _offline() else f"; online: hub id {spec.hf_id}"))


def resolve_gguf(name_or_path: str) -> Path:
    """GGUF file for llama.cpp. Accepts a registry name or a path to a .gguf file."""
    p = Path(name_or_path).expanduser()
    if p.suffix == ".gguf" or p.exists():
        if not p.is_file():
            raise HarnessError(f"{p}: GGUF file not found")
        return p
    spec = get_spec(name_or_path)
    override = os.environ.get(f"HARNESS_GGUF_{spec.env_key}")
    if override:
        if not Path(override).is_file():
            raise ModelUnavailable(f"HARNESS_GGUF_{spec.env_key}={override}: file not found")
        return Path(override)
    src = spec.gguf or ""
    if src.startswith("wheel:"):
        _, module, filename = src.split(":", 2)
        if find_spec(module) is None:
            raise ModelUnavailable(f"{spec.name}: package {module} is not installed "
                                   f"(pip install {module.replace('_', '-')})")
        path = Path(import_module(module).__file__).parent / filename
        if not path.is_file():
            raise ModelUnavailable(f"{spec.name}: {path} missing from package {module}")
        return path
    if src.startswith("assemble:"):
        module = src.split(":", 1)[1]
        if find_spec(module) is None:
            raise ModelUnavailable(f"{spec.name}: package {module} is not installed "
                                   f"(pip install {module.replace('_', '-')})")
        mod = import_module(module)
        target = CACHE_DIR / "models" / mod.MODEL_NAME
        if not target.exists():
            from .files import atomic_path
            with atomic_path(target) as tmp:   # never leave a half-assembled file behind
                mod.assemble(tmp, overwrite=True)
        return target
    if src:
        path = Path(src).expanduser()
        if path.is_file():
            return path
    # A GGUF exported by `harness export --base-only` lands in the cache.
    exported = CACHE_DIR / "models" / f"{spec.name}.q4_k_m.gguf"
    if exported.is_file():
        return exported
    raise ModelUnavailable(_hint(spec))


def _local_hf_dir(spec: ModelSpec) -> Path | None:
    override = os.environ.get(f"HARNESS_HF_{spec.env_key}")
    if override:
        p = Path(override).expanduser()
        if not (p / "config.json").is_file():
            raise ModelUnavailable(f"HARNESS_HF_{spec.env_key}={override}: no config.json there")
        return p
    if spec.hf_id:
        try:  # the local hub cache only; never a download
            from huggingface_hub import snapshot_download
            p = Path(snapshot_download(spec.hf_id, local_files_only=True))
            if (p / "config.json").is_file():
                return p
        except Exception:
            return None
    return None


def resolve_hf(name_or_path: str) -> tuple[str, str | None]:
    """(pretrained, gguf_file) for transformers' from_pretrained.

    A local HF directory wins; a bundled model without one loads from its GGUF (dequantized)."""
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        return str(p), None
    if p.suffix == ".gguf":
        if not p.is_file():
            raise HarnessError(f"{p}: GGUF file not found")
        return str(p.parent), p.name
    spec = get_spec(name_or_path)
    local = _local_hf_dir(spec)
    if local is not None:
        return str(local), None
    if spec.gguf:
        g = resolve_gguf(spec.name)
        return str(g.parent), g.name
    raise ModelUnavailable(_hint(spec))


def availability(name: str) -> tuple[bool, str]:
    """(available, reason) without loading anything heavy."""
    try:
        spec = get_spec(name)
        if spec.gguf or _local_hf_dir(spec) or os.environ.get(f"HARNESS_GGUF_{spec.env_key}"):
            resolve_gguf(name) if (spec.gguf or os.environ.get(f"HARNESS_GGUF_{spec.env_key}")) \
                else resolve_hf(name)
            return True, "available"
        return False, _hint(spec)
    except HarnessError as e:
        return False, str(e)
