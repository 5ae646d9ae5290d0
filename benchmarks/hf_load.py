"""Loading a bundled GGUF model into transformers: from the GGUF each time (tokenizer conversion
+ dequantization, what transformers does) against the dequantized cache directory
(harness.backends.dequantized), side by side in one run.

Each load runs in a fresh process (imports excluded from the timing), the two ways alternating,
best of --repeat; the cached way is timed as the harness loads (`hf_source`: the GGUF hashed,
then its directory read). The cache directory is built first (its one-time cost is printed
too) in a temporary cache folder, so the project's cache/ is left alone.

    .venv/bin/python benchmarks/hf_load.py [--models smollm2-135m-instruct,gemma3-270m] [--repeat 2]

Writes results/bench/hf_load.json and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.files import write_json  # noqa: E402
from harness.models import set_offline_defaults  # noqa: E402
from harness.paths import RESULTS_DIR  # noqa: E402

set_offline_defaults()

CHILD = r"""
import json, sys, time
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging
from harness.backends.dequantized import hf_source
logging.set_verbosity_error()
pretrained, gguf, way = sys.argv[1], sys.argv[2], sys.argv[3]
t0 = time.perf_counter()
if way == "cache":     # as the harness loads: the GGUF hashed, its cached directory read
    pretrained, gguf = hf_source(pretrained, gguf)
kw = {"gguf_file": gguf} if gguf else {}
tok = AutoTokenizer.from_pretrained(pretrained, **kw)
t1 = time.perf_counter()
model = AutoModelForCausalLM.from_pretrained(pretrained, dtype=torch.float32, **kw)
t2 = time.perf_counter()
print(json.dumps({"tokenizer_s": t1 - t0, "model_s": t2 - t1, "total_s": t2 - t0}))
"""


def timed_load(pretrained: str, gguf: str, way: str, cache: str) -> dict:
    env = {**os.environ, "HARNESS_CACHE_DIR": cache, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", CHILD, pretrained, gguf, way], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="smollm2-135m-instruct,gemma3-270m")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "bench" / "hf_load.json")
    args = ap.parse_args()
    from rich.console import Console
    from rich.table import Table

    from harness.backends import dequantized
    from harness.models import resolve_hf

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        dequantized.CACHE_DIR = Path(tmp)
        os.environ.pop(dequantized.ENV, None)
        for name in [m.strip() for m in args.models.split(",") if m.strip()]:
            pretrained, gguf = resolve_hf(name)
            t0 = time.perf_counter()
            cached, _ = dequantized.hf_source(pretrained, gguf)
            build_s = time.perf_counter() - t0
            runs = {"gguf": [], "cache": []}
            for _ in range(args.repeat):
                runs["gguf"].append(timed_load(pretrained, gguf, "gguf", tmp))
                runs["cache"].append(timed_load(pretrained, gguf, "cache", tmp))
            best = {k: min(v, key=lambda r: r["total_s"]) for k, v in runs.items()}
            size = sum(f.stat().st_size for f in Path(cached).iterdir())
            rows.append({"model": name, "build_s": round(build_s, 2), "cache_mb": round(size / 1e6),
                         "gguf": best["gguf"], "cache": best["cache"], "runs": runs,
                         "speedup": best["gguf"]["total_s"] / best["cache"]["total_s"]})
    t = Table(title=f"transformers load, best of {args.repeat} (fresh process each)")
    for c in ("model", "from GGUF s (tokenizer + model)", "from cache s (hash, tokenizer + model)",
              "speed-up", "one-time build s", "cache MB"):
        t.add_column(c)
    for r in rows:
        g, c = r["gguf"], r["cache"]
        t.add_row(r["model"], f"{g['total_s']:.1f} ({g['tokenizer_s']:.1f} + {g['model_s']:.1f})",
                  f"{c['total_s']:.1f} ({c['tokenizer_s']:.1f} + {c['model_s']:.1f})",
                  f"{r['speedup']:.1f}x", f"{r['build_s']:.1f}", str(r["cache_mb"]))
    Console().print(t)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, {"when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                                 "machine": platform.processor() or platform.machine(),
                                 "repeat": args.repeat, "rows": rows})
    print(f"→ {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
