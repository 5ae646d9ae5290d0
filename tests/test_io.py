"""harness.files: atomic writes keep the mode a plain open() would give (umask), not mkstemp's 0600."""
import os
import stat

import pytest

from harness.errors import HarnessError
from harness.files import write_json, write_text


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_write_follows_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        p = write_json(tmp_path / "r.json", {"a": 1})
        q = tmp_path / "plain.txt"
        q.write_text("x")  # what a plain open() gives under the same umask
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == mode == stat.S_IMODE(q.stat().st_mode)


def test_failed_write_leaves_old_file(tmp_path):
    p = write_text(tmp_path / "a.txt", "old")
    with pytest.raises(TypeError):
        write_json(p, {"x": object.__new__(type("Bad", (), {"__str__": None}))})
    assert p.read_text() == "old"
    assert [f.name for f in tmp_path.iterdir()] == ["a.txt"]


def test_unwritable_dir_is_one_line(tmp_path):
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(HarnessError, match="cannot create output directory"):
        write_text(f / "sub" / "x.txt", "x")
