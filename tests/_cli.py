"""Run the real CLI (`python -m harness.cli`) in a subprocess, as a user would."""
from __future__ import annotations

import subprocess
import sys

from harness.paths import ROOT


def run_cli(args, env, timeout=1500) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=ROOT)
