"""Opening raw files, for every reader of the data stage: one opener (a file that cannot be
read is one error line naming it), the JSON-lines reader the raw dumps share, and Skips, the
count of rows left out by reason."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import IO, Iterator

from ..errors import HarnessError


class Skips(Counter):
    """Counts skipped rows by reason."""

    def skip(self, reason: str) -> None:
        self[reason] += 1


def open_raw(path: Path, mode: str = "r", encoding: str | None = "utf-8",
             newline: str | None = None) -> IO:
    """The raw file opened for reading; HarnessError naming it when it cannot be read."""
    try:
        if "b" in mode:
            return open(path, mode)
        return open(path, mode, encoding=encoding, newline=newline)
    except OSError as e:
        raise HarnessError(f"{path}: cannot read ({e.strerror})") from e


def json_lines(path: Path, skips: Skips) -> Iterator[dict]:
    """The JSON objects of a JSON-lines file; a malformed line or one that is not an object is
    skipped and counted, a file that is not UTF-8 is one error."""
    with open_raw(path) as f:
        try:
            for line in f:
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    skips.skip("malformed JSON line")
                    continue
                if isinstance(row, dict):
                    yield row
                else:
                    skips.skip("JSON line is not an object")
        except UnicodeDecodeError as e:
            raise HarnessError(f"{path}: not UTF-8 text ({e.reason})") from e
