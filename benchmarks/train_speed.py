"""Training throughput, in one run: our trainer (harness.train) against a plain transformers
Trainer + peft baseline, on the same model, the same examples and the same hyperparameters.

  ours       harness.train.train: length-grouped batches, output layer on response tokens
             only, LoRA weights in bf16 with float32 master copies, no dropout pass
  baseline   transformers.Trainer, TrainingArguments defaults (random batches padded to the
             longest, full logits + the model's own loss), peft's default float32 LoRA
             weights; the same bf16 base model, LoRA r/alpha/dropout on all linear layers,
             lr, warmup, cosine schedule, batch size, seed

Both train one epoch on the same K examples (the first K of the train split, tokenized once by
harness.train.tokenize_examples: same chat template, same response-only labels), with no
evaluation or checkpoint inside the timed loop. tokens/s = real (non-padding) tokens / seconds
of the training loop; "CPU s" is the process CPU time of that loop (less sensitive to other
load on the machine). Each arm runs in its own subprocess, so peak RSS is that arm's own.
With --repeat 2 the arms run A B B A and the best of each is kept.

    .venv/bin/python benchmarks/train_speed.py [--examples 48] [--batch-size 4] [--grad-accum 2]

Writes results/bench/train_speed.json and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from harness.models import DEFAULT_MODEL, set_offline_defaults  # noqa: E402

set_offline_defaults()

from harness.files import write_json, write_jsonl  # noqa: E402
from harness.paths import RESULTS_DIR  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the arms (each runs in a child process) -----------------------------------------------

def arm_ours(a, data_dir: Path, work: Path) -> dict:
    from harness.train.recipe import train

    rec = train(model=a.model, task="product_review", data=str(data_dir), epochs=1,
                batch_size=a.batch_size, grad_accum=a.grad_accum, lr=a.lr,
                warmup_ratio=a.warmup_ratio,
                lora_r=a.lora_r, lora_alpha=a.lora_alpha, lora_dropout=a.lora_dropout,
                max_seq_len=a.max_seq_len, eval_every=10**6, eval_examples=4, patience=0,
                seed=a.seed, threads=a.threads, output=str(work / "ours"), overwrite=True,
                progress=False)
    return {"tokens": rec["tokens_trained"], "train_s": rec["train_s"],
            "train_cpu_s": rec["train_cpu_s"], "steps": rec["steps"],
            "padding_fraction": rec["padding_fraction"],
            "final_train_loss": rec["train_loss"][-1][1]}


def arm_baseline(a, data_dir: Path, work: Path) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import (AutoModelForCausalLM, DataCollatorForSeq2Seq, Trainer,
                              TrainingArguments)

    from harness.models import resolve_hf
    from harness.tasks.records import read_records
    from harness.backends.dequantized import unmark_gguf
    from harness.train.engines import gguf_kwargs, load_tokenizer
    from harness.train.examples import tokenize_examples

    if a.threads:
        torch.set_num_threads(a.threads)
    source = resolve_hf(a.model)
    tok = load_tokenizer(source)
    records = read_records("product_review", "train", str(data_dir))
    examples, _ = tokenize_examples(tok, "product_review", records,
                                    tok.chat_template is not None, a.max_seq_len)
    ds = Dataset.from_list([{"input_ids": e.ids, "attention_mask": [1] * len(e.ids),
                             "labels": e.labels} for e in examples])
    pretrained, gguf = source
    model = AutoModelForCausalLM.from_pretrained(pretrained, dtype=torch.bfloat16,
                                                 **gguf_kwargs(gguf))
    if gguf:
        unmark_gguf(model)   # else Trainer refuses a "quantized" model
    torch.manual_seed(a.seed)
    model = get_peft_model(model, LoraConfig(
        r=a.lora_r, lora_alpha=a.lora_alpha, lora_dropout=a.lora_dropout,
        target_modules="all-linear", bias="none", task_type="CAUSAL_LM"))
    counted = {"tokens": 0, "padded": 0}
    pad = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)

    def collate(rows):
        batch = pad(rows)
        counted["tokens"] += int(batch["attention_mask"].sum())
        counted["padded"] += batch["input_ids"].numel()
        return batch

    args = TrainingArguments(
        output_dir=str(work / "baseline"), per_device_train_batch_size=a.batch_size,
        gradient_accumulation_steps=a.grad_accum,
        num_train_epochs=1, learning_rate=a.lr, lr_scheduler_type="cosine",
        warmup_steps=a.warmup_ratio, weight_decay=0.0, max_grad_norm=1.0, logging_steps=1,
        save_strategy="no", eval_strategy="no", report_to=[], seed=a.seed,
        dataloader_num_workers=0, disable_tqdm=True, use_cpu=not torch.cuda.is_available(),
        bf16=a.baseline_autocast)
    trainer = Trainer(model=model, args=args, train_dataset=ds, data_collator=collate)
    t0, c0 = time.perf_counter(), time.process_time()
    out = trainer.train()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"tokens": counted["tokens"], "train_s": round(wall, 2),
            "train_cpu_s": round(cpu, 2), "steps": out.global_step,
            "padding_fraction": round(1 - counted["tokens"] / counted["padded"], 4),
            "final_train_loss": losses[-1] if losses else None}


ARMS = {"ours": arm_ours, "baseline": arm_baseline}


def run_child(a) -> None:
    work = Path(a.workdir)
    t0 = time.perf_counter()
    res = ARMS[a.arm](a, work / "data", work)
    res.update(arm=a.arm, wall_s=round(time.perf_counter() - t0, 2),
               peak_rss_mb=round(peak_rss_mb(), 1),
               tokens_per_second=round(res["tokens"] / res["train_s"], 2),
               tokens_per_cpu_second=round(res["tokens"] / res["train_cpu_s"], 2))
    print("RESULT " + json.dumps(res), flush=True)


# --- the parent: data, arms in subprocesses, table -------------------------------------------

def make_data(work: Path, k: int) -> dict:
    """The first k train records (prepared data when present, else the demo set) in a temp
    directory; nothing derived from the data is written into the repository."""
    from harness.data import resolve_data_file
    from harness.tasks.records import read_records

    src = resolve_data_file("product_review", "train")
    rows = read_records("product_review", "train")
    if len(rows) < k:
        raise SystemExit(f"{src}: only {len(rows)} records, asked for --examples {k}")
    out = work / "data" / "product_review"
    write_jsonl(out / "train.jsonl", rows[:k])
    write_jsonl(out / "validation.jsonl", read_records("product_review", "validation")[:4])
    return {"source": str(src), "examples": k}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--examples", type=int, default=48, help="train examples (one epoch)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--grad-accum", type=int, default=2)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--warmup-ratio", type=float, default=0.05)
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--lora-alpha", type=int, default=32)
    ap.add_argument("--lora-dropout", type=float, default=0.0)
    ap.add_argument("--max-seq-len", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=1, help="2: run A B B A, keep the best")
    ap.add_argument("--baseline-autocast", action="store_true",
                    help="baseline with TrainingArguments(bf16=True) (autocast)")
    ap.add_argument("--out", default=str(RESULTS_DIR / "bench" / "train_speed.json"))
    ap.add_argument("--arm", choices=list(ARMS), help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.arm:
        return run_child(a)
    if a.examples % (a.batch_size * a.grad_accum):
        raise SystemExit("--examples must be a multiple of --batch-size × --grad-accum")

    with tempfile.TemporaryDirectory(prefix="train_speed_") as tmp:
        work = Path(tmp)
        data = make_data(work, a.examples)
        order = ["ours", "baseline"] + (["baseline", "ours"] if a.repeat > 1 else [])
        runs = []
        for arm in order:
            cmd = [sys.executable, __file__, "--arm", arm, "--workdir", str(work)] + \
                [x for k, v in vars(a).items() if k not in ("arm", "workdir", "repeat", "out",
                                                            "baseline_autocast") and v is not None
                 for x in (f"--{k.replace('_', '-')}", str(v))] + \
                (["--baseline-autocast"] if a.baseline_autocast else [])
            print(f"running {arm} …", file=sys.stderr, flush=True)
            p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
            if p.returncode or not line:
                raise SystemExit(f"{arm} failed (rc {p.returncode}):\n{p.stderr[-3000:]}")
            runs.append(json.loads(line[-1][7:]))
    best = {arm: max((r for r in runs if r["arm"] == arm), key=lambda r: r["tokens_per_second"])
            for arm in ARMS}
    ratio = best["ours"]["tokens_per_second"] / best["baseline"]["tokens_per_second"]
    cpu_ratio = best["ours"]["tokens_per_cpu_second"] / best["baseline"]["tokens_per_cpu_second"]
    report = {
        "command": "benchmarks/train_speed.py " + " ".join(sys.argv[1:]),
        "model": a.model, "data": data, "settings": {k: v for k, v in vars(a).items()
                                                     if k not in ("arm", "workdir", "out")},
        "runs": runs, "best": best, "speedup_tokens_per_second": round(ratio, 3),
        "speedup_tokens_per_cpu_second": round(cpu_ratio, 3),
        "rss_ratio": round(best["ours"]["peak_rss_mb"] / best["baseline"]["peak_rss_mb"], 3),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "loadavg_at_end": os.getloadavg()},
    }
    write_json(a.out, report)

    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"training throughput — {a.model}, {a.examples} examples × 1 epoch, "
                    f"batch {a.batch_size} × {a.grad_accum} accumulation")
    for c in ("arm", "tokens", "steps", "train s", "tokens/s", "CPU s", "tokens/CPU s",
              "padding", "peak RSS MB", "last loss"):
        t.add_column(c, justify="left" if c == "arm" else "right")
    for r in runs:
        t.add_row(r["arm"], str(r["tokens"]), str(r["steps"]), f"{r['train_s']:.1f}",
                  f"{r['tokens_per_second']:.1f}", f"{r['train_cpu_s']:.1f}",
                  f"{r['tokens_per_cpu_second']:.1f}", f"{r['padding_fraction']:.1%}",
                  f"{r['peak_rss_mb']:.0f}", f"{r['final_train_loss']}")
    con = Console(width=150)
    con.print(t)
    con.print(f"ours / baseline: {ratio:.2f}× tokens/s, {cpu_ratio:.2f}× tokens per CPU "
              f"second, {report['rss_ratio']:.2f}× peak RSS  →  {a.out}")


if __name__ == "__main__":
    main()
