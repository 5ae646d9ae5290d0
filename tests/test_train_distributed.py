"""Data-parallel training on CPU: `accelerate launch --multi_gpu --num_processes 2 -m
harness.cli train` (torchrun, gloo) on the demo set trains one adapter that stock peft loads,
and follows the loss curve of a one-process run with the same global batch (2 processes x
grad_accum 1 = 1 process x grad_accum 2: the same micro-batches in the same order). A tiny
random Llama (hidden 64, 2 layers) with SmolLM2's real tokenizer keeps it to about a minute."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.train.loss import ResponseLoss
from harness.train.examples import collate, tokenize_examples
from harness.train.recipe import train

from _train_models import build_tiny

ROOT = Path(__file__).resolve().parents[1]
# float32: the two runs then differ by summation order only. batch_size 1 gives 3 validation
# batches of 2, so one process has 2 and the other 1 (it must still take part in every
# collective); the processes' response-token counts differ in every step.
SETTINGS = dict(data="demo", max_steps=6, batch_size=1, lr=3e-3, warmup_ratio=0.0,
                eval_every=2, eval_examples=6, lora_dropout=0.0, dtype="float32", seed=0)
REL = 1e-5   # measured: < 1e-7 apart; each process normalizing by its own token count
             # (the trainer before DDP support) put step 1 off by 2e-3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(model: Path, out: Path) -> subprocess.CompletedProcess:
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in SETTINGS.items()]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
           "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           "-m", "harness.cli", "train", "--model", str(model), "--grad-accum", "1",
           "--output", str(out), "--quiet", *flags]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from transformers import AutoTokenizer
    from harness.models import resolve_hf

    root = tmp_path_factory.mktemp("dist")
    pretrained, gguf = resolve_hf("smollm2-135m-instruct")
    tok = AutoTokenizer.from_pretrained(pretrained, gguf_file=gguf)
    model = build_tiny(root / "llama", "llama", tok)
    proc = _launch(model, root / "two")
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = train(model=str(model), grad_accum=2, output=str(root / "one"), progress=False,
                **SETTINGS)
    two = json.loads((root / "two" / "training.json").read_text())
    return model, root / "one", root / "two", one, two


def test_two_processes_follow_the_one_process_loss_curve(runs):
    _, _, _, one, two = runs
    assert (one["num_processes"], two["num_processes"]) == (1, 2)
    assert [s for s, _ in two["train_loss"]] == list(range(1, 7))
    assert [s for s, _ in two["val_loss"]] == [0, 2, 4, 6]
    for key in ("train_loss", "val_loss"):
        for (s1, l1), (s2, l2) in zip(one[key], two[key], strict=True):
            assert s1 == s2 and l2 == pytest.approx(l1, rel=REL), (key, s1)
    # the step's loss and token counts cover both processes' micro-batches
    assert two["tokens_trained"] == one["tokens_trained"]
    assert two["best_step"] == one["best_step"] and two["best_val_loss"] < two["initial_val_loss"]


def test_rank0_writes_one_adapter_that_stock_peft_loads(runs):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from harness.tasks.records import read_records

    model_dir, one_dir, two_dir, _, two = runs
    # no checkpoint, no temporary directory, no second copy left behind
    assert {p.name for p in two_dir.iterdir()} == {"adapter_config.json",
                                                   "adapter_model.safetensors",
                                                   "training.json", "loss.png"}
    a, b = (load_file(str(d / "adapter_model.safetensors")) for d in (one_dir, two_dir))
    assert a.keys() == b.keys() and all(v.dtype == torch.float32 for v in b.values())
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-3, atol=1e-5), k
    # stock transformers + peft reproduce the kept adapter's validation loss
    tok = AutoTokenizer.from_pretrained(model_dir)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    peft_model = PeftModel.from_pretrained(base, str(two_dir)).eval()
    records = read_records("product_review", "validation", "demo")[:SETTINGS["eval_examples"]]
    examples, _ = tokenize_examples(tok, "product_review", records, True, 1024)
    s = n = 0.0
    with torch.no_grad():
        for e in examples:
            ls, ln = ResponseLoss(peft_model)(**collate([e], pad_id=0))   # one: no padding
            s, n = s + float(ls), n + float(ln)
    assert s / n == pytest.approx(two["best_val_loss"], rel=1e-5)

