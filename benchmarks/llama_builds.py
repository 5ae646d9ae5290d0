"""llama.cpp builds side by side: speed and batch identity of greedy decoding.

llama.cpp's CPU backend multiplies a matrix by one token with ggml's vec_dot kernels and by
several tokens, for some weight types, with other kernels (llamafile's tinyBLAS for
F32/F16/Q8_0/Q5_0/Q4_0; the "repack" kernels for Q4_0/Q4_K/IQ4_NL). Their sums round
differently, so batched greedy texts can part from one-at-a-time texts. This script measures,
for each build of llama-cpp-python (a folder it was `pip install --target`-ed into, or
`installed` for the one in this venv) and each model, on the same real product_review prompts:

  - prompt tokens/s (one prompt per llama_decode) and one-stream generation tokens/s,
  - aggregate generation tokens/s with --batch sequences decoded together (BatchDecoder),
  - how many batched greedy texts differ from the one-at-a-time ones.

Each (build, model) runs in its own subprocess (a process can load one libllama); the builds
alternate within a model and the whole set runs --repeat times (best speed kept), so background
load hits all builds alike. Speeds compare as ratios to the first build.

    .venv/bin/python benchmarks/llama_builds.py --build installed \\
        --build nollamafile=/tmp/llcpp-off [--build NAME=DIR:norepack] \\
        [--models smollm2-135m-instruct,gemma3-270m] [--prompts 16] [--max-tokens 64] \\
        [--batch 8] [--threads 2] [--repeat 2] [--lora MODEL=LORA.gguf]

`:norepack` loads the model with llama.cpp's extra buffer types off (use_extra_bufts=False:
no repacked weights), as a build with -DGGML_CPU_REPACK=OFF would.
Writes results/bench/llama_builds.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def child(args) -> None:
    import llama_cpp
    import llama_cpp.llama_cpp as capi

    if args.no_repack:   # Llama() has no argument for it: patch the defaults it starts from
        default = capi.llama_model_default_params

        def params():
            p = default()
            p.use_extra_bufts = False
            return p
        capi.llama_model_default_params = params   # the name llama_cpp.llama.Llama calls

    from harness.models import set_offline_defaults
    set_offline_defaults()
    from harness.backends.llama_cpp import GenJob, LlamaCppLM
    from harness.backends.throughput import METER
    from harness.export.generate import review_context, task_generation_kwargs
    from harness.tasks.records import read_records
    from harness.tasks.review import review_example

    data = args.data or "demo"
    recs = read_records("product_review", "test", data)[: args.prompts]
    lm = LlamaCppLM(model=args.model, n_ctx=1024, n_threads=args.threads,
                    batch_size=args.batch, lora_path=args.lora_path)
    until = task_generation_kwargs()["until"]
    contexts = [review_context(lm, review_example(r)[0]) for r in recs]
    jobs = [GenJob(lm.fit_prompt(c, args.max_tokens), until, args.max_tokens) for c in contexts]

    METER.reset()
    one = [lm.generate_one(c, until, args.max_tokens) for c in contexts]
    single = METER.summary()
    dec = lm._batch_decoder()
    METER.reset()
    t0 = time.perf_counter()
    batched = [text for text, _ in dec.run(jobs)]
    wall = time.perf_counter() - t0
    many = METER.summary()
    print(json.dumps({
        "system_info": llama_cpp.llama_print_system_info().decode().strip(),
        "prompt_tokens": sum(len(j.prompt) for j in jobs),
        "prompt_tokens_per_second": single["prompt_tokens_per_second"],
        "generation_tokens_per_second": single["generation_tokens_per_second"],
        "batched_generation_tokens_per_second": many["aggregate_generation_tokens_per_second"],
        "batched_wall_s": round(wall, 2),
        "texts_differ": sum(a != b for a, b in zip(one, batched)),
        "texts": len(one),
    }))


def run_one(build: dict, model: str, args) -> dict:
    model, _, lora = model.partition("+lora=")
    env = dict(os.environ)
    if build["dir"]:
        env["PYTHONPATH"] = build["dir"] + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, __file__, "--child", "--model", model, "--prompts", str(args.prompts),
           "--max-tokens", str(args.max_tokens), "--batch", str(args.batch),
           "--threads", str(args.threads)]
    if args.data:
        cmd += ["--data", args.data]
    if build["norepack"]:
        cmd.append("--no-repack")
    if lora:
        cmd += ["--lora-path", lora]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        sys.exit(f"{build['name']} / {model}: child failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def parse_build(spec: str) -> dict:
    name, _, rest = spec.partition("=")
    if name == "installed" and not rest:
        return {"name": name, "dir": "", "norepack": False}
    path, _, flag = rest.partition(":")
    if flag not in ("", "norepack"):
        sys.exit(f"--build {spec}: unknown flag {flag!r} (only :norepack)")
    if path and not (Path(path) / "llama_cpp").is_dir():
        sys.exit(f"--build {spec}: {path} holds no llama_cpp package "
                 f"(pip install --target {path} WHEEL)")
    return {"name": name, "dir": path, "norepack": flag == "norepack"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", action="append", default=[],
                    help="NAME=DIR[:norepack], or `installed` (repeat)")
    ap.add_argument("--models", default="smollm2-135m-instruct,gemma3-270m")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--data", default=None, help="prepared data dir (default: data/prepared "
                    "when it has product_review/test.jsonl, else the demo set)")
    ap.add_argument("--out", default=str(ROOT / "results" / "bench" / "llama_builds.json"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--no-repack", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--lora-path", help=argparse.SUPPRESS)
    ap.add_argument("--lora", action="append", default=[], metavar="MODEL=GGUF",
                    help="also run MODEL with this LoRA GGUF applied at run time (repeat)")
    args = ap.parse_args()
    if args.child:
        return child(args)

    from harness.paths import DATA_DIR
    if args.data is None and (DATA_DIR / "product_review" / "test.jsonl").exists():
        args.data = str(DATA_DIR)
    builds = [parse_build(b) for b in args.build or ["installed"]]
    models = args.models.split(",")
    for spec in args.lora:
        m, _, path = spec.partition("=")
        if not Path(path).is_file():
            sys.exit(f"--lora {spec}: {path} is not a file")
        models.append(f"{m}+lora={path}")
    runs: dict = {}
    for rep in range(args.repeat):
        for m in models:
            for b in builds:
                r = run_one(b, m, args)
                print(f"[{rep + 1}/{args.repeat}] {b['name']} {m}: {json.dumps(r)}", flush=True)
                best = runs.setdefault((b["name"], m), r)
                for k in ("prompt_tokens_per_second", "generation_tokens_per_second",
                          "batched_generation_tokens_per_second"):
                    best[k] = max(best[k], r[k])
                if r["texts_differ"] != best["texts_differ"]:
                    sys.exit(f"{b['name']} {m}: {r['texts_differ']} differing texts in one run, "
                             f"{best['texts_differ']} in another (not deterministic)")

    from rich.console import Console
    from rich.table import Table
    t = Table(title=f"llama.cpp builds: {args.prompts} real product_review prompts, "
                    f"{args.max_tokens} greedy tokens, batch {args.batch}, {args.threads} threads, "
                    f"best of {args.repeat}; ratios to {builds[0]['name']}")
    for c in ("model", "build", "prompt tok/s", "gen tok/s", f"batch-{args.batch} gen tok/s",
              "batched texts ≠ one-at-a-time"):
        t.add_column(c, no_wrap=c in ("model", "build"))
    rows = []
    for m in models:
        ref = runs[(builds[0]["name"], m)]
        for b in builds:
            r = runs[(b["name"], m)]
            ratio = {k: round(r[k] / ref[k], 3) for k in (
                "prompt_tokens_per_second", "generation_tokens_per_second",
                "batched_generation_tokens_per_second")}
            rows.append({"model": m, "build": b, **r, "ratio_to_first": ratio})
            t.add_row(m.split("+lora=")[0] + (" + LoRA" if "+lora=" in m else ""), b["name"],
                      f"{r['prompt_tokens_per_second']:.0f} ({ratio['prompt_tokens_per_second']:.2f}×)",
                      f"{r['generation_tokens_per_second']:.1f} "
                      f"({ratio['generation_tokens_per_second']:.2f}×)",
                      f"{r['batched_generation_tokens_per_second']:.1f} "
                      f"({ratio['batched_generation_tokens_per_second']:.2f}×)",
                      f"{r['texts_differ']} of {r['texts']}")
    Console().print(t)
    from harness.files import write_json
    write_json(args.out, {"command": "python benchmarks/llama_builds.py " + " ".join(sys.argv[1:]),
                          "machine": platform.machine(), "cpus": os.cpu_count(),
                          "data": args.data or "demo", "rows": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
