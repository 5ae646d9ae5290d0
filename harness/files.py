"""Small file helpers shared by every stage: atomic writes, JSON / JSONL reading with line
numbers, content hashes. Nothing here knows about models or tasks."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from .errors import HarnessError


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ""):
    """Yield a temporary path next to `path`; rename it over `path` only if the block succeeds.

    A crash or an exception leaves the old file (or nothing) behind, never a half-written one.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise HarnessError(f"{path.parent}: cannot create output directory ({e.strerror})") from e
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    # mkstemp makes the file 0600; give it the mode a plain open() would (0666 minus the umask),
    # so that reports and results can be shared.
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return Path(path)


def read_jsonl(path: str | os.PathLike, errors: dict | None = None,
               check: Callable[[dict, str], dict] | None = None) -> Iterator[dict]:
    """Yield one dict per line. A malformed line raises HarnessError naming file and line,
    unless `errors` is given: then it is counted there under 'malformed json' and skipped.
    check(row, "FILE:LINE"), when given, returns the row to yield or raises HarnessError."""
    path = Path(path)
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        raise HarnessError(f"{path}: cannot read ({e.strerror})") from e
    with f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError("not a JSON object")
            except (json.JSONDecodeError, ValueError) as e:
                if errors is None:
                    raise HarnessError(f"{path}:{lineno}: malformed JSON line ({e})") from e
                errors["malformed json"] = errors.get("malformed json", 0) + 1
                continue
            yield check(row, f"{path}:{lineno}") if check else row


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise HarnessError(f"{path}: cannot read ({e.strerror})") from e
    except json.JSONDecodeError as e:
        raise HarnessError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from e


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- stable order and split by hash: the same on every machine, whatever the input order ---

def stable_fraction(key: str) -> float:
    """A key's place in [0, 1], from its sha256: the same key always lands at the same place."""
    return int(sha256_text(key)[:8], 16) / 0xFFFFFFFF


def stable_order(items: Iterable, key: Callable[[Any], str]) -> list:
    """The items sorted by the sha256 of key(item): a fixed, well-mixed order."""
    return sorted(items, key=lambda item: sha256_text(str(key(item))))
