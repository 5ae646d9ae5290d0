"""Reading any GGUF: the magic check, the header (metadata and tensor infos) and tensors as
numpy arrays. Kept apart from the writer (harness.export.gguf_file), as gguf-py keeps its
reader apart: the backends, the metrics' reference LM, eval, compare and export all check a
file here before llama.cpp opens it, so a corrupt or renamed file is one error line."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from ..errors import HarnessError

MAGIC = b"GGUF"


def check_magic(path: str | os.PathLike, head: bytes | None = None) -> None:
    """HarnessError unless the file starts with the GGUF magic (head: its first bytes, when
    the caller has read them already)."""
    if head is None:
        with open(path, "rb") as f:
            head = f.read(len(MAGIC))
    if head[:len(MAGIC)] != MAGIC:
        raise HarnessError(f"{path}: not a GGUF file (bad magic)")


_SCALARS = {gguf.GGUFValueType.UINT8: "B", gguf.GGUFValueType.INT8: "b",
            gguf.GGUFValueType.UINT16: "H", gguf.GGUFValueType.INT16: "h",
            gguf.GGUFValueType.UINT32: "I", gguf.GGUFValueType.INT32: "i",
            gguf.GGUFValueType.FLOAT32: "f", gguf.GGUFValueType.BOOL: "?",
            gguf.GGUFValueType.UINT64: "Q", gguf.GGUFValueType.INT64: "q",
            gguf.GGUFValueType.FLOAT64: "d"}


@dataclass
class GGUFTensor:
    ne: tuple[int, ...]               # ggml order (fastest dimension first)
    type: gguf.GGMLQuantizationType
    offset: int                       # absolute, in the file
    n_bytes: int


@dataclass
class GGUFFile:
    """What read_gguf / scan_gguf found: metadata with its GGUF value types, tensor infos, and
    the file mapped in memory for `array`."""
    path: Path
    kv: dict[str, Any]
    types: dict[str, tuple[gguf.GGUFValueType, gguf.GGUFValueType | None]]  # (type, item type)
    tensors: dict[str, GGUFTensor]
    buf: Any = None

    def array(self, name: str) -> np.ndarray:
        """One tensor as float32 in numpy order (the transformers shape), dequantized."""
        t = self.tensors[name]
        raw = np.frombuffer(self.buf, dtype=np.uint8, count=t.n_bytes, offset=t.offset)
        shape = tuple(reversed(t.ne))
        if t.type in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
            dtype = np.float32 if t.type == gguf.GGMLQuantizationType.F32 else np.float16
            return raw.view(dtype).astype(np.float32).reshape(shape)
        block, type_size = gguf.GGML_QUANT_SIZES[t.type]
        rows = raw.reshape(-1, t.ne[0] // block * type_size)
        return gguf.dequantize(rows, t.type).astype(np.float32).reshape(shape)


def read_gguf(path: str | os.PathLike, arrays: bool = True) -> GGUFFile:
    """A GGUF's metadata (arrays too unless arrays=False; string items as bytes) and tensor
    infos, checked: a missing, truncated or corrupt file is a HarnessError naming the problem.
    Mirror of the writers below. gguf-py's GGUFReader does the same but makes a numpy view per
    token string (seconds on a 49k-token vocab); this reads a 262k-token vocab in well under
    a second."""
    import mmap
    import struct

    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"{path}: GGUF file not found")
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
    except (OSError, ValueError) as e:
        raise HarnessError(f"{path}: cannot read ({e})") from e
    pos = 0

    def take(fmt: str):
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return vals if len(vals) > 1 else vals[0]

    def raw_string() -> bytes:
        nonlocal pos
        n = take("Q")
        if pos + n > size:
            raise ValueError("a string runs past the end of the file")
        pos += n
        return bytes(buf[pos - n: pos])

    def array(sub: gguf.GGUFValueType, n: int):
        nonlocal pos
        if sub in _SCALARS:  # fixed-size items
            width = struct.calcsize(_SCALARS[sub])
            if pos + n * width > size:
                raise ValueError("an array runs past the end of the file")
            pos += n * width
            return np.frombuffer(buf, np.dtype("<" + _SCALARS[sub]), n, pos - n * width) \
                .tolist() if arrays else None
        if sub == gguf.GGUFValueType.STRING:
            if arrays:
                return [raw_string() for _ in range(n)]
            for _ in range(n):  # skip: only the lengths are read
                pos += 8 + struct.unpack_from("<Q", buf, pos)[0]
            if pos > size:
                raise ValueError("an array runs past the end of the file")
            return None
        return [array(gguf.GGUFValueType(take("I")), take("Q")) for _ in range(n)]

    try:
        check_magic(path, bytes(buf[:4]))
        pos = 4
        version, n_tensors, n_kv = take("IQQ")
        if version not in (2, 3) or n_tensors > 1 << 24 or n_kv > 1 << 24:
            raise ValueError(f"implausible header (version {version}, {n_tensors} tensors)")
        kv, types = {}, {}
        for _ in range(n_kv):
            key = raw_string().decode("utf-8")
            vtype = gguf.GGUFValueType(take("I"))
            if vtype == gguf.GGUFValueType.STRING:
                kv[key], types[key] = raw_string().decode("utf-8", "replace"), (vtype, None)
            elif vtype == gguf.GGUFValueType.ARRAY:
                sub, n = gguf.GGUFValueType(take("I")), take("Q")
                value = array(sub, n)
                kv[key], types[key] = (value if arrays else f"[{n} x {sub.name}]"), (vtype, sub)
            else:
                kv[key], types[key] = take(_SCALARS[vtype]), (vtype, None)
        infos = []
        for _ in range(n_tensors):
            name = raw_string().decode("utf-8")
            ne = tuple(take("Q") for _ in range(take("I")))
            infos.append((name, ne, gguf.GGMLQuantizationType(take("I")), take("Q")))
    except (struct.error, ValueError, KeyError, UnicodeDecodeError) as e:
        raise HarnessError(f"{path}: corrupt or truncated GGUF header ({e})") from None
    align = int(kv.get("general.alignment", gguf.GGUF_DEFAULT_ALIGNMENT))
    start = pos + (-pos % align)
    tensors = {}
    for name, ne, qtype, offset in infos:
        block, type_size = gguf.GGML_QUANT_SIZES[qtype]
        t = GGUFTensor(ne, qtype, start + offset, math.prod(ne) // block * type_size)
        if t.offset + t.n_bytes > size:
            raise HarnessError(f"{path}: truncated GGUF (tensor {name} ends at byte "
                               f"{t.offset + t.n_bytes}, the file has {size})")
        tensors[name] = t
    return GGUFFile(path, kv, types, tensors, buf)


def scan_gguf(path: str | os.PathLike) -> GGUFFile:
    """read_gguf without the metadata arrays: the fast check before llama.cpp opens a file."""
    return read_gguf(path, arrays=False)
