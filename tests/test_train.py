"""Trainer: inputs checked before compute, the eval prompt as training text, length-grouped
batches, the response-only loss, tiny Llama/Mistral training with stock-peft reloading,
early stopping, QLoRA gradients on CPU. Tiny random models (hidden 64, 2 layers) with
SmolLM2's real tokenizer keep these fast; the bundled model itself is in test_train_smollm2.py."""
from __future__ import annotations

import json
import random

import pytest
import torch

from harness.errors import HarnessError
from harness.files import write_jsonl
from harness.train.examples import IGNORE, collate, epoch_batches, tokenize_examples
from harness.train.loss import ResponseLoss
from harness.train.config import TrainConfig, resolve_inputs
from harness.train.recipe import train

from _train_models import build_tiny


@pytest.fixture(scope="session")
def smol_tokenizer():
    from transformers import AutoTokenizer
    from harness.models import resolve_hf

    pretrained, gguf = resolve_hf("smollm2-135m-instruct")
    return AutoTokenizer.from_pretrained(pretrained, gguf_file=gguf)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory, smol_tokenizer):
    root = tmp_path_factory.mktemp("tiny")
    return {arch: build_tiny(root / arch, arch, smol_tokenizer)
            for arch in ("llama", "mistral", "gemma3")}


def demo_records(task="product_review"):
    from harness.tasks.records import read_records
    return read_records(task, "train", "demo")


# --- bad input: one clear error, before any model is loaded --------------------------------

def test_bad_input_is_rejected_before_compute(tmp_path, tiny):
    def err(match, **kw):
        kw.setdefault("output", str(tmp_path / "out"))
        with pytest.raises(HarnessError, match=match):
            resolve_inputs(TrainConfig(**kw))

    err("unknown model 'nope'", model="nope")
    err("unknown task 'nope'", model=str(tiny["llama"]), task="nope")
    err(r"lr=-1 is out of range.*lora_r=0 is out of range|lora_r=0.*lr=-1",
        model=str(tiny["llama"]), lr=-1, lora_r=0)
    err("batch_size=2.5 is not a whole number", model=str(tiny["llama"]), batch_size=2.5)
    err("method='dora' is not one of", model=str(tiny["llama"]), method="dora")
    err("resume and overwrite exclude", model=str(tiny["llama"]), resume=True, overwrite=True)
    (tmp_path / "notamodel").mkdir()
    err("no config.json", model=str(tmp_path / "notamodel"))
    # an empty split names its file
    data = tmp_path / "data" / "product_review"
    data.mkdir(parents=True)
    (data / "train.jsonl").write_text("")
    write_jsonl(data / "validation.jsonl", demo_records()[:2])
    err(r"train\.jsonl: no records", model=str(tiny["llama"]), data=str(tmp_path / "data"))
    # an existing adapter is never overwritten silently
    out = tmp_path / "adapter"
    out.mkdir()
    (out / "adapter_model.safetensors").write_bytes(b"x")
    err("adapter directory exists.*--overwrite", model=str(tiny["llama"]), data="demo",
        output=str(out))
    err("no checkpoint to resume from", model=str(tiny["llama"]), data="demo",
        output=str(out), resume=True)
    with pytest.raises(HarnessError, match="unknown training setting.*learning_rate"):
        train(model=str(tiny["llama"]), learning_rate=1e-4)
    assert not (tmp_path / "out").exists()


# --- the training text is the eval prompt ---------------------------------------------------

def test_examples_are_the_eval_prompt_with_loss_on_the_response_only(smol_tokenizer):
    from harness.train.examples import format_example
    from harness.tasks.records import load_task_dataset
    import importlib.util
    from harness.paths import TASKS_DIR

    spec = importlib.util.spec_from_file_location("pr_utils", TASKS_DIR / "product_review" /
                                                  "utils.py")
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    docs = load_task_dataset("product_review", "demo", splits=("train",))["train"]
    records = demo_records()
    examples, stats = tokenize_examples(smol_tokenizer, "product_review", records, True, 1024)
    assert stats["examples"] == len(records) == len(docs) and stats["dropped"] == 0
    for ex, doc in zip(examples, docs):
        # the prompt lm-eval sends (doc_to_text), through the chat template, is the prefix
        prefix, completion = format_example(smol_tokenizer, utils.doc_to_text(doc),
                                            utils.doc_to_target(doc), True)
        assert smol_tokenizer.decode(ex.ids[:ex.n_prompt]) == prefix
        assert smol_tokenizer.decode(ex.ids[ex.n_prompt:]) == completion
        assert completion.startswith(utils.doc_to_target(doc).strip())
        labels = ex.labels
        assert all(x == IGNORE for x in labels[:ex.n_prompt])
        assert labels[ex.n_prompt:] == ex.ids[ex.n_prompt:]
    # too long: the prompt is kept whole, the response is cut; too long a prompt is dropped
    n = examples[0].n_prompt
    short, st = tokenize_examples(smol_tokenizer, "product_review", records[:1], True, n + 10)
    assert st["truncated"] == 1 and short[0].n_prompt == n and len(short[0].ids) == n + 10
    _, st = tokenize_examples(smol_tokenizer, "product_review", records[:1], True, n)
    assert st["dropped"] == 1


def test_every_registered_task_gives_prompt_and_target(smol_tokenizer):
    """Tasks plug in through harness.tasks.TASKS: the trainer needs nothing else."""
    from harness.tasks import TASKS
    from harness.train.config import data_task
    from harness.data import demo_file

    tasks = [t for t in sorted(TASKS) if demo_file(data_task(t)).exists()]
    assert "product_review" in tasks
    for task in tasks:
        records = demo_records(data_task(task))[:4]
        examples, stats = tokenize_examples(smol_tokenizer, task, records, True, 1024)
        assert stats["examples"] == len(records), task
        assert all(len(e.ids) > e.n_prompt for e in examples), task


# --- batches ---------------------------------------------------------------------------------

def test_length_grouped_batches_are_a_seeded_permutation_with_little_padding():
    rng = random.Random(1)
    lengths = [rng.randint(150, 650) for _ in range(962)]   # the real train split's range
    b0 = epoch_batches(lengths, 8, seed=0, epoch=0)
    assert sorted(i for b in b0 for i in b) == list(range(962))
    assert b0 == epoch_batches(lengths, 8, seed=0, epoch=0)
    assert b0 != epoch_batches(lengths, 8, seed=0, epoch=1)
    assert b0 != epoch_batches(lengths, 8, seed=1, epoch=0)

    def padding(batches):
        real = sum(lengths[i] for b in batches for i in b)
        return 1 - real / sum(max(lengths[i] for i in b) * len(b) for b in batches)

    idx = list(range(962))
    random.Random(0).shuffle(idx)
    plain = [idx[i:i + 8] for i in range(0, 962, 8)]
    assert padding(b0) < 0.05 < padding(plain)


# --- the loss --------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["llama", "mistral", "gemma3"])
def test_response_loss_equals_the_models_own_loss(tiny, smol_tokenizer, arch):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny[arch], dtype=torch.float32)
    examples, _ = tokenize_examples(smol_tokenizer, "product_review", demo_records()[:3],
                                    True, 1024)
    batch = collate(examples, smol_tokenizer.pad_token_id)
    with torch.no_grad():
        s, n = ResponseLoss(model)(**batch)
        ref = model(**batch).loss
    assert int(n) == sum(len(e.ids) - e.n_prompt for e in examples) - 0
    assert float(s / n) == pytest.approx(float(ref), rel=1e-5)


# --- training --------------------------------------------------------------------------------

def _val_loss_with_stock_peft(base_dir, adapter_dir, tokenizer, dtype, n=6):
    """Reload base + adapter with stock transformers/peft and compute the validation loss
    (the first n demo records, as the trainer's eval_examples=n)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype)
    model = PeftModel.from_pretrained(base, adapter_dir).eval()
    examples, _ = tokenize_examples(tokenizer, "product_review", demo_records()[:n], True,
                                    1024)
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].ids))
    s = n = 0.0
    with torch.no_grad():
        for k in range(0, len(order), 8):
            a, b = ResponseLoss(model)(**collate([examples[i] for i in order[k:k + 8]],
                                                tokenizer.pad_token_id))
            s, n = s + float(a), n + float(b)
    return s / n


@pytest.mark.parametrize("arch,dtype", [("llama", "auto"), ("mistral", "float32")])
def test_tiny_model_trains_and_adapter_reloads_with_stock_peft(tiny, smol_tokenizer, tmp_path,
                                                               arch, dtype):
    out = tmp_path / "adapter"
    train(model=str(tiny[arch]), data="demo", max_steps=4, batch_size=2, lr=3e-3,
          eval_every=2, eval_examples=6, dtype=dtype, output=str(out), progress=False)
    files = {p.name for p in out.iterdir()}
    assert files == {"adapter_config.json", "adapter_model.safetensors", "training.json",
                     "loss.png"}
    meta = json.loads((out / "training.json").read_text())
    for key in ("base_model", "task", "method", "base_model_sha256", "data", "split_sizes",
                "hyperparameters", "seed", "versions", "device", "train_loss", "val_loss",
                "tokens_per_second", "peak_rss_mb", "wall_s"):
        assert key in meta, key
    assert (meta["base_model"], meta["task"], meta["method"]) == \
        (str(tiny[arch]), "product_review", "lora")
    assert len(meta["train_loss"]) == 4 and [s for s, _ in meta["val_loss"]] == [0, 2, 4]
    assert meta["best_val_loss"] < meta["initial_val_loss"]
    assert meta["data"]["train"]["sha256"] and meta["split_sizes"]["train"] == 24
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["r"] == 16
    # the adapter on disk is the best one: stock peft reproduces its validation loss
    torch_dtype = torch.bfloat16 if meta["dtype"] == "bfloat16" else torch.float32
    again = _val_loss_with_stock_peft(tiny[arch], out, smol_tokenizer, torch_dtype)
    assert again == pytest.approx(meta["best_val_loss"], rel=2e-3)


def test_early_stopping_keeps_the_best_adapter(tiny, smol_tokenizer, tmp_path):
    """Patience counts evaluations that fail to beat the best by min_delta. The tiny random
    model's loss sits near ln(vocab) (its random output layer keeps logits small), so no step
    can gain a whole nat: two evaluations without a gain stop the run at step 2, the best is
    the base model (step 0), and the record says the adapter is the last step's."""
    out = tmp_path / "adapter"
    rec = train(model=str(tiny["llama"]), data="demo", max_steps=12, batch_size=2, lr=2e-3,
                warmup_ratio=0, eval_every=1, eval_examples=6, patience=2, min_delta=1.0,
                dtype="float32", output=str(out), progress=False)
    assert rec["stopped_early"] and rec["steps"] == 2, rec["val_loss"]
    assert [s for s, _ in rec["val_loss"]] == [0, 1, 2]
    assert rec["best_step"] == 0
    assert rec["best_val_loss"] == pytest.approx(rec["initial_val_loss"], abs=1e-6)
    assert "no step improved" in rec["best_step_note"]
    assert (out / "adapter_model.safetensors").exists()
    # without min_delta the same run keeps going: every step beats the last on this data
    rec2 = train(model=str(tiny["llama"]), data="demo", max_steps=4, batch_size=2, lr=2e-3,
                 warmup_ratio=0, eval_every=1, eval_examples=6, patience=2, dtype="float32",
                 output=str(tmp_path / "adapter2"), progress=False)
    assert not rec2["stopped_early"] and rec2["steps"] == 4
    vals = dict((s, v) for s, v in rec2["val_loss"])
    assert rec2["best_val_loss"] == pytest.approx(min(vals.values()))
    again = _val_loss_with_stock_peft(tiny["llama"], tmp_path / "adapter2", smol_tokenizer,
                                      torch.float32)
    assert again == pytest.approx(rec2["best_val_loss"], rel=1e-4)


# --- QLoRA on CPU ------------------------------------------------------------------------------

def test_qlora_cpu_gradients_match_a_dequantized_reference(tiny, smol_tokenizer):
    import bitsandbytes as bnb   # in the dev extra: this test runs in CI, never skips
    from bitsandbytes.functional import dequantize_4bit, has_avx512bf16
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    from harness.train.engines import quantize_linear_4bit

    examples, _ = tokenize_examples(smol_tokenizer, "product_review", demo_records()[:2],
                                    True, 1024)
    batch = collate(examples, smol_tokenizer.pad_token_id)
    lcfg = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear",
                      task_type="CAUSAL_LM")

    def lora_grads(packing_off: bool):
        model = AutoModelForCausalLM.from_pretrained(tiny["llama"], dtype=torch.float32)
        n = quantize_linear_4bit(model, torch.float32)
        assert n == 2 * 7
        ref = AutoModelForCausalLM.from_pretrained(tiny["llama"], dtype=torch.float32)
        for name, mod in model.named_modules():
            if isinstance(mod, bnb.nn.Linear4bit):   # the same nf4 weights, dequantized
                ref.get_submodule(name).weight.data = dequantize_4bit(
                    mod.weight.data, mod.weight.quant_state).float()
        grads = []
        for m in (model, ref):
            torch.manual_seed(0)
            pm = get_peft_model(m, lcfg)
            torch.manual_seed(1)
            for name, p in pm.named_parameters():   # lora_B != 0: every LoRA gets a gradient
                if "lora_B" in name:
                    p.data.normal_(0, 0.02)
            if m is model and not packing_off:
                for mod in pm.modules():
                    if isinstance(mod, bnb.nn.Linear4bit):
                        mod.support_avx512bf16_for_cpu = has_avx512bf16()
            loss = ResponseLoss(pm)
            loss.eval()
            with torch.no_grad():   # a validation pass first, as the trainer does
                loss(**batch)
            loss.train()
            s, n = loss(**batch)
            (s / n).backward()
            grads.append({k: p.grad.clone() if p.grad is not None else torch.zeros_like(p)
                          for k, p in pm.named_parameters() if p.requires_grad})
        return grads

    q, ref = lora_grads(packing_off=True)
    assert q.keys() == ref.keys() and len(q) == 2 * 7 * 2
    for k in q:
        assert torch.allclose(q[k], ref[k], rtol=1e-3, atol=1e-6), k
    if has_avx512bf16():   # this CPU has the packed kernel: show the flag is what matters
        q, ref = lora_grads(packing_off=False)
        worst = max(float((q[k] - ref[k]).norm() / ref[k].norm()) for k in q)
        assert worst > 0.5


def test_qlora_cpu_trains_and_saves_a_plain_lora_adapter(tiny, smol_tokenizer, tmp_path):
    out = tmp_path / "adapter"
    rec = train(model=str(tiny["llama"]), data="demo", method="qlora", max_steps=3,
                batch_size=2, lr=3e-3, eval_every=3, eval_examples=6, output=str(out),
                progress=False)
    assert rec["method"] == "qlora" and rec["best_val_loss"] < rec["initial_val_loss"]
    # the adapter applies to the unquantized base with stock peft
    again = _val_loss_with_stock_peft(tiny["llama"], out, smol_tokenizer, torch.bfloat16)
    assert again < rec["initial_val_loss"]
