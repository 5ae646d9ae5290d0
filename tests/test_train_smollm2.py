"""The bundled SmolLM2-135M-Instruct (from its GGUF, dequantized) trained for real: on the
demo set, then loaded by stock peft and by `harness eval --model hf ... peft=ADAPTER`
(both the registry form and pretrained=DIR,gguf_file=FILE); on the real train split (slow),
the validation loss goes down."""
from __future__ import annotations

import json

import pytest
import torch

from harness.train.recipe import train


@pytest.fixture(scope="module")
def demo_adapter(tmp_path_factory):
    out = tmp_path_factory.mktemp("smol") / "adapter"
    rec = train(model="smollm2-135m-instruct", data="demo", max_steps=3, batch_size=4,
                eval_every=3, eval_examples=8, lr=5e-4, output=str(out), progress=False)
    return out, rec


@pytest.mark.slow
def test_smollm2_demo_adapter_lowers_loss_and_loads_with_stock_peft(demo_adapter):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    from harness.models import resolve_hf

    out, rec = demo_adapter
    assert rec["base_model"] == "smollm2-135m-instruct" and rec["method"] == "lora"
    assert rec["best_val_loss"] < rec["initial_val_loss"]
    assert rec["chat_template"] is True and rec["dtype"] == "bfloat16"
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    pretrained, gguf = resolve_hf("smollm2-135m-instruct")
    base = AutoModelForCausalLM.from_pretrained(pretrained, gguf_file=gguf,
                                                dtype=torch.float32)
    ids = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]])
    with torch.no_grad():
        before = base(ids).logits
        after = PeftModel.from_pretrained(base, str(out))(ids).logits
    assert not torch.allclose(before, after, atol=1e-4)   # the adapter changes the model


@pytest.mark.slow
@pytest.mark.parametrize("form", ["registry", "gguf_file"])
def test_smollm2_adapter_runs_in_harness_eval(demo_adapter, tmp_path, form):
    from harness.evaluate.runner import evaluate
    from harness.models import resolve_hf

    out, _ = demo_adapter
    if form == "registry":
        margs = f"model=smollm2-135m-instruct,peft={out}"
    else:
        pretrained, gguf = resolve_hf("smollm2-135m-instruct")
        margs = f"pretrained={pretrained},gguf_file={gguf},peft={out}"
    res = evaluate("hf", margs, ["product_review"], limit=2, metadata={"data": "demo"},
                   gen_kwargs="max_gen_toks=16", output_path=tmp_path)
    assert res["results"]["product_review"]["rouge_l,none"] >= 0
    assert res["config"]["model_args"]["peft"] == str(out)
    assert (tmp_path / "results.json").exists()


@pytest.mark.slow
@pytest.mark.data
def test_smollm2_real_train_split_lowers_validation_loss(prepared_dir, tmp_path):
    rec = train(model="smollm2-135m-instruct", data=str(prepared_dir), max_steps=12,
                eval_every=12, eval_examples=32, output=str(tmp_path / "a"), progress=False)
    assert rec["split_sizes"]["train"] > 500
    assert rec["best_val_loss"] < rec["initial_val_loss"]


def test_training_a_registry_model_makes_no_network_call_even_when_online(
        tmp_path, no_network, monkeypatch):
    """The adapter records the hub id as its base model; saving it must not look that id up
    on the hub (peft's default does, to check the vocabulary), with offline mode off."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    out = tmp_path / "adapter"
    train(model="smollm2-135m-instruct", data="demo", max_steps=1, batch_size=2, eval_every=1,
          eval_examples=2, output=str(out), progress=False)
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] \
        == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert no_network == [], f"network calls: {no_network}"
