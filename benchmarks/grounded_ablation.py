"""The grounded-tuning recipe, step by step, on the real data: what curation, loss masking and
anti-loop decoding each change against the base model.

  1. curate    `harness data curate` of the train split (harness.train.curate defaults)
  2. train     LoRA adapters of --model (default SmolLM2) on the curated split (or on
               --curated DIR as it is), the same settings but:
                 (a) curation alone          mask_unsupported=False
                 (b) curation + masking      mask_unsupported=True (the default)
  3. compare   `harness compare` (LoRA GGUF at run time, no merged export) on the test
               split, greedy:
                 anti-loop off (no_repeat_ngram_generated=0), llama.cpp: base, (a), (b)
                 anti-loop on  (no_repeat_ngram_generated=N), --backends: base, (b)
  4. tables    paired bootstrap 95% CIs (harness.compare.stats.comparisons) on the same test
               products of unsupported claims per review, loop rate (degenerate_loop),
               ROUGE-L, relevance to the reference review, attribute coverage:
                 ablation    each step - the base model with anti-loop off, on llama.cpp;
                             plus "anti-loop alone" (base with it on)
                 acceptance  (b) - base, both with anti-loop on, per backend (issue #11)

    .venv/bin/python benchmarks/grounded_ablation.py [--model NAME] [--epochs 2]
        [--max-steps N] [--limit N] [--output results/grounded_ablation] [--adapters-dir DIR]
        [--data data/prepared|demo] [--curated DIR] [--backends llama-cpp,hf]
        [--arms curated-masked,curated] [--no-ablation]

Every step is resumable: an adapter whose training.json matches the settings and data is
reused, compare runs with resume=True. `--data demo` runs the whole thing on the demo set's
held-out splits (a smoke test of the pipeline, no evidence about quality). Writes
OUTPUT/ablation.json and prints the table. Timing on this machine, real data, all 121 test
products: about 10 min per 50 training steps and 5 min per compare cell (README).
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from harness.models import DEFAULT_MODEL, set_offline_defaults  # noqa: E402

set_offline_defaults()

from harness.errors import HarnessError  # noqa: E402
from harness.files import read_json, sha256_file, write_json
from harness.paths import DATA_DIR, RESULTS_DIR, TASKS_DIR  # noqa: E402

TASK = "product_review"
METRICS = {"unsupported": "unsupported claims / review", "degenerate_loop": "loop rate",
           "rouge_l": "ROUGE-L", "relevance_reference": "relevance to reference",
           "attribute_coverage": "attribute coverage"}
ARMS = {"curated-masked": True, "curated": False}   # adapter suffix -> mask_unsupported (the recipe first)
FALLBACK_NGRAM = 3


def task_anti_loop() -> int:
    """The task's own no_repeat_ngram_generated (product_review.yaml), else FALLBACK_NGRAM."""
    text = (TASKS_DIR / TASK / f"{TASK}.yaml").read_text(encoding="utf-8")
    m = re.search(r"^\s*no_repeat_ngram_generated:\s*(\d+)", text, re.M)
    return int(m.group(1)) if m and int(m.group(1)) > 0 else FALLBACK_NGRAM


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def train_arm(a, data: Path, dest: Path, mask: bool) -> dict:
    """Train one adapter, or reuse it when its training.json has these settings and data."""
    from harness.train.config import latest_checkpoint
    from harness.train.recipe import train

    settings = dict(epochs=a.epochs, max_steps=a.max_steps, mask_unsupported=mask,
                    seed=a.seed)
    done = dest / "training.json"
    if done.is_file() and (dest / "adapter_model.safetensors").is_file():
        rec = read_json(done)
        same = all(rec["hyperparameters"].get(k) == v for k, v in settings.items()) and \
            rec["data"]["train"]["sha256"] == sha256_file(data / TASK / "train.jsonl")
        if same:
            log(f"reusing {dest}")
            return rec
    resume = latest_checkpoint(dest) is not None
    log(f"training {dest.name} (mask_unsupported={mask})")
    return train(model=a.model, task=TASK, data=str(data), output=str(dest), resume=resume,
                 overwrite=dest.exists() and not resume, progress=a.progress, **settings)


def link_adapters(dest: Path, adapters: list[Path]) -> Path:
    """A folder holding (symlinks to) exactly these adapters: compare's adapters_dir."""
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.iterdir():
        if old.is_symlink():
            old.unlink()
    for ad in adapters:
        (dest / ad.name).symlink_to(ad.resolve(), target_is_directory=True)
    return dest


def run_compare(a, data: Path, out: Path, adapters_dir: Path, anti_loop: int) -> list[dict]:
    from harness.compare.plan import CompareConfig
    from harness.compare.run import compare
    from harness.compare.summary import load_run
    from harness.compare.render import render

    backends = ["llama-cpp"] if anti_loop == 0 else a.backends   # the ablation is llama.cpp's
    cfg = CompareConfig(models=a.model, tasks=[TASK], backends=backends, limit=a.limit,
                        data=str(data), output=str(out), resume=True, merged_quant=None,
                        gen_kwargs=f"no_repeat_ngram_generated={anti_loop}",
                        adapters_dir=str(adapters_dir), n_threads=a.threads)
    log(f"compare -> {out} (no_repeat_ngram_generated={anti_loop})")
    run = compare(cfg, progress=lambda i, n, c: c and log(f"  cell {i + 1}/{n}: {c.label}"))
    render(run)
    _, cells = load_run(run)
    return [dict(c, run=str(run)) for c in cells if c["model"] == a.model]


def pick(cells: list[dict], variant: str, adapter: str | None = None,
         backend: str = "llama-cpp") -> dict:
    for c in cells:
        if c["variant"] == variant and c["backend"] == backend and \
                (adapter is None or Path(c["adapter"]).name == adapter):
            if not c.get("samples"):
                raise HarnessError(f"{c['run']}: the {variant} {backend} cell"
                                   + (f" of {adapter}" if adapter else "")
                                   + f" did not finish ({c['status']}: {c.get('reason', '')})")
            return c
    raise HarnessError(f"{cells[0]['run'] if cells else 'compare'}: no {variant} {backend} cell"
                       + (f" for adapter {adapter}" if adapter else ""))


def step_rows(step: str, base: dict, other: dict) -> list[dict]:
    """other - base for METRICS, paired over the same documents (harness.compare.stats.comparisons)."""
    from harness.compare.stats import comparisons

    tuned = dict(other, variant=step)   # a cell compared with `base`, whatever it is
    comps = comparisons([base, tuned])
    return [dict(c, step=step) for c in comps if c["metric"] in METRICS]


def print_table(rows: list[dict], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    t.add_column("step")
    for m in METRICS.values():
        t.add_column(m, justify="right")
    for step in dict.fromkeys(r["step"] for r in rows):
        by = {r["metric"]: r for r in rows if r["step"] == step}
        t.add_row(step, *(f"{by[m]['diff']:+.3f} [{by[m]['lo']:+.3f}, {by[m]['hi']:+.3f}]"
                          if m in by else "-" for m in METRICS))
    Console(width=200).print(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--data", default=str(DATA_DIR), help="prepared data directory "
                    "(`harness data prepare`), or 'demo' for a smoke run on the demo set")
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--epochs", type=float, default=2.0, help="passes over the curated train "
                    "split (~390 reviews: 2 epochs ~ the 121 steps of the README's adapter)")
    ap.add_argument("--max-steps", type=int, default=None, help="optimizer steps (overrides "
                    "--epochs)")
    ap.add_argument("--limit", type=int, default=None, help="test products per compare cell "
                    "(default: all)")
    ap.add_argument("--output", type=Path, default=RESULTS_DIR / "grounded_ablation")
    ap.add_argument("--adapters-dir", type=Path, default=None, help="where the two adapters "
                    "go (default: OUTPUT/adapters; not adapters/, so `make demo` and plain "
                    "`harness compare` do not pick them up)")
    ap.add_argument("--anti-loop", type=int, default=None, help="no_repeat_ngram_generated N "
                    "of the 'on' runs (default: the task's own, else 3)")
    ap.add_argument("--arms", default=",".join(ARMS), help="adapters to train and compare: "
                    "curated-masked (the recipe) and/or curated (curation alone)")
    ap.add_argument("--backends", type=lambda s: [b.strip() for b in s.split(",") if b.strip()],
                    default=["llama-cpp"], help="backends of the anti-loop-on run (base and "
                    "the recipe's adapter, the task's default decoding: issue #11's "
                    "acceptance table), e.g. llama-cpp,hf; the anti-loop-off ablation runs "
                    "on llama.cpp only")
    ap.add_argument("--curated", type=Path, default=None, help="a curated split to train on "
                    "as it is (`harness data curate` output) instead of curating again; "
                    "adapters trained on other data are not reused")
    ap.add_argument("--no-ablation", dest="ablation", action="store_false", help="only the "
                    "anti-loop-on run (base and the recipe's adapter with the task's default "
                    "decoding: the acceptance table), no anti-loop-off runs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="llama.cpp threads")
    ap.add_argument("--quiet", dest="progress", action="store_false")
    a = ap.parse_args()

    from harness.train.curate import curate

    t0 = time.perf_counter()
    out = a.output
    adapters_dir = (a.adapters_dir or out / "adapters").resolve()
    anti_loop = a.anti_loop if a.anti_loop is not None else task_anti_loop()
    if anti_loop < 1:
        raise SystemExit("--anti-loop must be >= 1 (the 'on' runs)")
    if a.data == "demo":
        from harness.compare.demo import demo_splits
        prepared = demo_splits(out / "demo-data")
    else:
        prepared = Path(a.data)
        if not (prepared / TASK / "train.jsonl").is_file():
            raise SystemExit(f"{prepared}: no {TASK}/train.jsonl; run `harness data prepare "
                             f"--raw-dir ../shared/data` first")

    if a.curated:
        curated = a.curated.resolve()
        if not (curated / TASK / "curation.json").is_file():
            raise SystemExit(f"{curated}: no {TASK}/curation.json (`harness data curate "
                             f"--output {curated}` writes it)")
        cur = {k: v for k, v in read_json(curated / TASK / "curation.json").items()
               if k != "reviews_detail"}
        log(f"training on the curated split {curated} as it is")
    else:
        log(f"curating {prepared / TASK / 'train.jsonl'}")
        cur = curate(data=str(prepared), out=str(out / "curated"))
        curated = Path(cur["out"])
    log(f"kept {cur['kept']} of {cur['reviews']} reviews ({cur['products_with_kept']} of "
        f"{cur['products']} products); dropped {cur['dropped']}")

    label = Path(a.model).stem if a.model.endswith(".gguf") else a.model
    adapters, records = {}, {}
    arms = [x.strip() for x in a.arms.split(",") if x.strip()]
    if not arms or set(arms) - set(ARMS):
        raise SystemExit(f"--arms: choose from {', '.join(ARMS)}")
    for suffix, mask in ((k, v) for k, v in ARMS.items() if k in arms):
        dest = adapters_dir / f"{label}-{TASK}-{suffix}"
        records[suffix] = train_arm(a, curated, dest, mask)
        adapters[suffix] = dest

    # the test split is the prepared one (curation copies it unchanged)
    names = {k: v.name for k, v in adapters.items()}
    rows = []
    if a.ablation:
        off = run_compare(a, prepared, out / "compare-antiloop-off",
                          link_adapters(out / "compare-adapters-off", list(adapters.values())), 0)
    on = run_compare(a, prepared, out / "compare-antiloop-on",
                     link_adapters(out / "compare-adapters-on",
                                   [v for k, v in adapters.items() if k == "curated-masked"]),
                     anti_loop)
    if a.ablation:
        base = pick(off, "base")
        steps = [("(a) curation", pick(off, "tuned", names["curated"]))] \
            if "curated" in names else []
        if "curated-masked" in names:
            steps += [("(b) curation + masking", pick(off, "tuned", names["curated-masked"])),
                      (f"(b) + anti-loop (n={anti_loop})",
                       pick(on, "tuned", names["curated-masked"]))]
        steps += [(f"base + anti-loop (n={anti_loop})", pick(on, "base"))]
        rows = [r for step, cell in steps for r in step_rows(step, base, cell)]
        print_table(rows, "ablation on llama.cpp: each step - the base model with anti-loop off, "
                          "paired bootstrap 95% CI over the same test products")
    # issue #11's acceptance: tuned - base, both with the task's default decoding, per backend
    accept = []
    if "curated-masked" in names:
        for backend in a.backends:
            accept += step_rows(f"tuned - base, {backend}",
                                pick(on, "base", backend=backend),
                                pick(on, "tuned", names["curated-masked"], backend=backend))
        print_table(accept, f"the recipe: tuned - base, both with anti-loop n={anti_loop} (the "
                            "task's default decoding), paired bootstrap 95% CI")
    base = pick(on, "base")
    report = {
        "model": a.model, "data": str(prepared), "limit": a.limit, "anti_loop": anti_loop,
        "n_test": len(base["samples"]), "curation": cur,
        "training": {k: {f: r.get(f) for f in ("output", "steps", "epochs_trained",
                                               "initial_val_loss", "best_val_loss",
                                               "best_step", "loss_masking", "wall_s")}
                     for k, r in records.items()},
        "compare_runs": ([str(out / "compare-antiloop-off")] if a.ablation else [])
        + [str(out / "compare-antiloop-on")],
        "rows": rows, "acceptance_rows": accept, "wall_s": round(time.perf_counter() - t0, 1),
    }
    write_json(out / "ablation.json", report)
    log(f"wrote {out / 'ablation.json'} ({report['wall_s']:.0f} s)")


if __name__ == "__main__":
    try:
        main()
    except HarnessError as e:
        raise SystemExit(f"error: {e}")
