"""Train stage: LoRA / QLoRA adapters for any registered (or local HF) causal LM on any task.

One recipe that reads top to bottom (torchtune style):

    1. config     TrainConfig (a dataclass); every range is checked before any compute
    2. inputs     model weights, task, data splits and output directory are resolved and checked
    3. examples   the task's prompt builder (harness.tasks.build_example, the same text the
                  eval task sends) -> the model's chat template (format_example) -> token ids;
                  the loss covers the response tokens only, and for product_review
                  (mask_unsupported) not those of sentences whose claims the product JSON
                  does not support, so a model learns the style of real reviews without
                  learning to state facts that are not in the data
    4. batches    length-grouped batches (similar lengths together, so padding wastes little);
                  the order depends only on (seed, epoch), so a step number is a data position
    5. engine     Unsloth's FastLanguageModel on CUDA when installed, else transformers + peft.
                  QLoRA = bitsandbytes nf4 (on CPU opt-in, with the avx512-bf16 packing off)
    6. loss       backbone -> output layer on the response positions only (the vocab-wide
                  logits of prompt tokens are never computed)
    7. loop       accelerate (unchanged under `accelerate launch`), AdamW, warmup + cosine,
                  validation loss every N steps, early stopping, best adapter kept, atomic
                  checkpoints every M steps, `resume=True` continues after a kill
    8. outputs    adapter_config.json + adapter_model.safetensors (PEFT), training.json,
                  loss.png

    from harness.train.recipe import train
    train(model="smollm2-135m-instruct", task="product_review", data="demo", max_steps=20)
"""
from __future__ import annotations

import math
import random
import shutil
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields

import torch

from ..errors import HarnessError
from ..files import read_json, sha256_file, write_json
from .checkpoint import (device_info, load_checkpoint, MasterWeights, model_sha256, plot_losses,
                         save_adapter, save_checkpoint, sharded, versions)
from .config import (CHECKPOINTS, PRESETS, RESUME_FREE, _cuda, clear_output, data_task,
                     resolve_inputs, TrainConfig)
from .curate import curation_of
from .engines import ENGINES, load_tokenizer, torch_dtype
from .examples import IGNORE, MASK_RULE, MASKED_TASKS, collate, lr_at, Schedule, tokenize_examples
from .loss import ResponseLoss


# ==== 9. the recipe ==========================================================================

@dataclass
class RunState:
    """What a checkpoint carries besides tensors (JSON)."""
    train_loss: list = field(default_factory=list)   # [step, loss]
    val_loss: list = field(default_factory=list)     # [step, loss]
    best_val: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    stopped_early: bool = False
    tokens: int = 0
    response_tokens: int = 0
    padded_tokens: int = 0
    train_s: float = 0.0
    train_cpu_s: float = 0.0
    resumed_at: list = field(default_factory=list)


def _progress(console):
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)
    return Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]}"),
                    TextColumn("{task.fields[tps]} tok/s"), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn(), console=console)


def evaluate_loss(loss_fn, examples: list[Example], batch_size: int, pad_id: int, acc) -> float:
    """Mean cross-entropy per response token over `examples` (sharded across processes)."""

    order = sorted(range(len(examples)), key=lambda i: len(examples[i].ids))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    total = torch.zeros(2, dtype=torch.float64, device=acc.device)
    mine = batches[acc.process_index::acc.num_processes]
    loss_fn.eval()
    with torch.no_grad():
        # as many forwards on every process (DDP and FSDP communicate in forward): one with
        # fewer batches runs the first again and does not count it
        for j in range(math.ceil(len(batches) / acc.num_processes)):
            b = mine[j] if j < len(mine) else batches[0]
            batch = {k: v.to(acc.device) for k, v in
                     collate([examples[i] for i in b], pad_id).items()}
            s, n = loss_fn(**batch)
            if j < len(mine):
                total += torch.stack([s.double(), n.double()])
    loss_fn.train()
    total = acc.reduce(total, reduction="sum")
    return float(total[0] / total[1])


def train(config: TrainConfig | None = None, preset: str | None = None, **overrides) -> dict:
    """Train an adapter; returns the training.json record (plus "output").

    `train(model=..., task=..., data="demo", max_steps=20)`, `train(TrainConfig(...))`, or
    `train(model=..., preset="demo")` (PRESETS; explicit settings win)."""
    unknown = set(overrides) - {f.name for f in fields(TrainConfig)}
    if unknown:
        raise HarnessError(f"unknown training setting(s): {', '.join(sorted(unknown))}")
    if preset is not None and preset not in PRESETS:
        raise HarnessError(f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
    cfg = TrainConfig(**{**(asdict(config) if config else {}), **PRESETS.get(preset, {}),
                         **overrides})
    t_start = time.perf_counter()

    # -- inputs, checked before any compute --------------------------------------------------
    inp = resolve_inputs(cfg)
    if inp.engine == "unsloth":
        import unsloth  # noqa: F401  (patches transformers before it is used; CUDA only)
    from accelerate import Accelerator

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    from rich.console import Console

    dtype = torch_dtype(cfg.dtype, "cuda" if _cuda() else "cpu")
    # float16 needs loss scaling: accelerate's fp16 mixed precision, with float32 LoRA weights
    # cpu=True without CUDA: under `accelerate launch --multi_gpu` (torchrun) the processes
    # then join one gloo group (MULTI_CPU); otherwise each would train alone
    acc = Accelerator(cpu=not _cuda(), mixed_precision="fp16" if dtype == torch.float16 else None)
    device = acc.device
    console = Console(stderr=True, quiet=not (cfg.progress and acc.is_main_process))

    def say(msg: str) -> None:
        console.print(msg, highlight=False, markup=False)
    if cfg.overwrite and acc.is_main_process:
        clear_output(inp.output)
    if inp.checkpoint is not None and sharded(acc):
        raise HarnessError("--resume: checkpoints are written by single-process and DDP runs "
                           "only, not under FSDP or DeepSpeed")
    if inp.checkpoint is not None:
        saved_cfg = read_json(inp.checkpoint / "state.json")["config"]
        diff = {k: (saved_cfg.get(k), v) for k, v in asdict(cfg).items()
                if k not in RESUME_FREE and saved_cfg.get(k) != v}
        if diff:
            raise HarnessError(f"{inp.checkpoint}: cannot resume with other settings: " +
                               ", ".join(f"{k} was {a!r}, now {b!r}" for k, (a, b) in diff.items()))

    # -- examples ----------------------------------------------------------------------------
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    tokenizer = load_tokenizer(inp.model_source)
    chat = inp.chat if inp.chat is not None else tokenizer.chat_template is not None
    mask = cfg.mask_unsupported and data_task(cfg.task) in MASKED_TASKS
    train_ex, train_stats = tokenize_examples(tokenizer, cfg.task, inp.records["train"], chat,
                                              cfg.max_seq_len, mask)
    # validation is masked alike: its loss estimates the loss the model is trained on
    val_ex, val_stats = tokenize_examples(tokenizer, cfg.task,
                                          inp.records["validation"][:cfg.eval_examples], chat,
                                          cfg.max_seq_len, mask)
    if mask:
        say(f"loss masking: {train_stats['masked_sentences']} unsupported sentences, "
            f"{train_stats['masked_share']:.1%} of the train target tokens")
    for split, ex in (("train", train_ex), ("validation", val_ex)):
        if not ex:
            raise HarnessError(f"{inp.data_files[split]}: no {split} example fits in "
                               f"max_seq_len={cfg.max_seq_len} tokens")
    data_hashes = {s: sha256_file(p) for s, p in inp.data_files.items()}
    if inp.checkpoint is not None:
        saved = read_json(inp.checkpoint / "state.json")["data_sha256"]
        if saved != data_hashes:
            raise HarnessError(f"{inp.checkpoint}: the data changed since this checkpoint "
                               f"({', '.join(s for s in saved if saved[s] != data_hashes.get(s))})")

    # -- schedule ----------------------------------------------------------------------------
    sched = Schedule([len(e.ids) for e in train_ex], cfg.batch_size,
                     cfg.grad_accum * acc.num_processes, cfg.seed)
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * sched.steps_per_epoch))
    eval_every = cfg.eval_every or max(1, total // 5)
    save_every = cfg.save_every or eval_every

    # -- model -------------------------------------------------------------------------------
    t_load = time.perf_counter()
    peft_model = ENGINES[inp.engine](cfg, inp, device, dtype)
    load_s = time.perf_counter() - t_load
    if dtype == torch.float16 or acc.distributed_type.name in ("DEEPSPEED", "FSDP"):
        for p in peft_model.parameters():   # these manage float32 weights themselves
            if p.requires_grad:
                p.data = p.data.float()
    weights = MasterWeights(peft_model)
    n_trainable = sum(p.numel() for p in weights.master)
    loss_fn = ResponseLoss(peft_model)
    optimizer = torch.optim.AdamW(weights.master, lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn, optimizer = acc.prepare(loss_fn, optimizer)
    pad_id = tokenizer.pad_token_id

    # -- state: fresh, or from the checkpoint ------------------------------------------------
    st = RunState()
    start = 0
    if inp.checkpoint is not None:
        meta = load_checkpoint(inp.checkpoint, weights, optimizer, acc)
        st = RunState(**meta["run"])
        start = meta["step"]
        st.resumed_at.append(start)
        say(f"resuming {inp.output} at step {start}/{total}")
    if acc.is_main_process:
        inp.output.mkdir(parents=True, exist_ok=True)

    def checkpoint_state() -> dict:
        return {"config": asdict(cfg), "data_sha256": data_hashes, "run": asdict(st)}

    def validate(step: int) -> None:
        val = evaluate_loss(loss_fn, val_ex, cfg.batch_size * 2, pad_id, acc)
        st.val_loss.append([step, round(val, 6)])
        improved = st.best_val is None or val < st.best_val - cfg.min_delta
        if improved:
            st.best_val, st.best_step, st.bad_evals = val, step, 0
            if step > 0:
                save_adapter(peft_model, weights, inp.output, inp.hub_id, acc, loss_fn)
        elif step > 0:
            st.bad_evals += 1
        say(f"step {step}/{total}: validation loss {val:.4f}"
            + (" (best)" if improved else f" (best {st.best_val:.4f} at step {st.best_step})"))

    if start == 0:
        validate(0)   # the base model's loss: the number every later one is compared with

    # -- the loop ----------------------------------------------------------------------------
    loss_fn.train()
    step = start
    # grad mode is process-wide: a scorer or evaluator run earlier in this process may have
    # turned it off
    with torch.enable_grad(), _progress(console) as bar:
        task = bar.add_task("train", total=total, completed=start, loss="-", tps="-")
        while step < total and not st.stopped_early:
            for g in optimizer.param_groups:
                g["lr"] = lr_at(step, total, cfg.lr, cfg.warmup_ratio)
            t0, c0 = time.perf_counter(), time.process_time()
            micro = sched.step_batches(step)[acc.process_index::acc.num_processes]
            batches = [collate([train_ex[i] for i in b], pad_id) for b in micro]
            # the step's loss is the mean over the response tokens of all processes; DDP
            # averages the processes' gradients, hence the factor num_processes
            n_resp = int(acc.reduce(torch.tensor(sum(int((b["labels"][:, 1:] != IGNORE).sum())
                                                     for b in batches), device=device), "sum"))
            sums = torch.zeros(3, dtype=torch.float64)   # loss, tokens, padded tokens
            for k, batch in enumerate(batches):
                batch = {key: v.to(device) for key, v in batch.items()}
                sync = k == len(batches) - 1
                with (acc.no_sync(loss_fn) if not sync else nullcontext()):
                    s, _ = loss_fn(**batch)
                    acc.backward(s * acc.num_processes / max(1, n_resp))
                sums += torch.tensor([float(s.detach()), int(batch["attention_mask"].sum()),
                                      batch["input_ids"].numel()], dtype=torch.float64)
            loss_sum, tokens, padded = acc.reduce(sums.to(device), "sum").tolist()
            st.tokens += int(tokens)
            st.padded_tokens += int(padded)
            weights.grads_to_master()
            if cfg.max_grad_norm:
                acc.clip_grad_norm_(weights.master, cfg.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            weights.master_to_model()
            st.train_s += time.perf_counter() - t0
            st.train_cpu_s += time.process_time() - c0
            st.response_tokens += n_resp
            step += 1
            loss = loss_sum / max(1, n_resp)
            st.train_loss.append([step, round(loss, 6)])
            tps = st.tokens / st.train_s if st.train_s else 0.0
            bar.update(task, completed=step, loss=f"{loss:.3f}", tps=f"{tps:,.0f}")
            if step % eval_every == 0 or step == total:
                validate(step)
                if cfg.patience and st.bad_evals >= cfg.patience:
                    st.stopped_early = True
                    say(f"early stop at step {step}: no gain in {cfg.patience} evaluations")
            if step % save_every == 0 and step < total and not st.stopped_early \
                    and not sharded(acc):
                save_checkpoint(inp.output, step, weights, optimizer, checkpoint_state(), acc)

    # -- outputs -----------------------------------------------------------------------------
    from ..backends.throughput import peak_rss_mb

    record = {
        "base_model": cfg.model, "base_model_source": {"pretrained": inp.model_source[0],
                                                       "gguf_file": inp.model_source[1]},
        "base_model_sha256": model_sha256(inp.model_source),
        "task": cfg.task, "method": inp.method, "engine": inp.engine,
        "chat_template": chat, "dtype": str(dtype).replace("torch.", ""),
        "data": {s: {"path": str(inp.data_files[s]), "sha256": data_hashes[s], **stats}
                 for s, stats in (("train", train_stats), ("validation", val_stats))},
        "split_sizes": {"train": len(inp.records["train"]),
                        "validation": len(inp.records["validation"])},
        "loss_masking": {"enabled": mask, "rule": MASK_RULE if mask else None,
                         **{s: {k: st_[k] for k in ("masked_sentences", "masked_tokens",
                                                    "response_tokens", "masked_share",
                                                    "masked_examples", "mask_unaligned")}
                            for s, st_ in (("train", train_stats),
                                           ("validation", val_stats))}},
        "curation": curation_of(inp.data_files["train"]),
        "hyperparameters": {k: v for k, v in asdict(cfg).items()
                            if k not in RESUME_FREE | {"model", "task", "data"}},
        "seed": cfg.seed, "steps": step, "total_steps": total,
        "steps_per_epoch": sched.steps_per_epoch,
        "epochs_trained": round(step / sched.steps_per_epoch, 4),
        "eval_every": eval_every, "save_every": save_every,
        "trainable_parameters": n_trainable,
        "initial_val_loss": st.val_loss[0][1] if st.val_loss and st.val_loss[0][0] == 0 else None,
        "best_val_loss": st.best_val, "best_step": st.best_step,
        "stopped_early": st.stopped_early,
        "train_loss": st.train_loss, "val_loss": st.val_loss,
        "tokens_per_second": round(st.tokens / st.train_s, 2) if st.train_s else None,
        "response_tokens_per_second": round(st.response_tokens / st.train_s, 2)
        if st.train_s else None,
        "padding_fraction": round(1 - st.tokens / st.padded_tokens, 4) if st.padded_tokens else 0,
        "tokens_trained": st.tokens, "train_s": round(st.train_s, 2),
        "train_cpu_s": round(st.train_cpu_s, 2), "load_s": round(load_s, 2),
        "wall_s": round(time.perf_counter() - t_start, 2), "peak_rss_mb": round(peak_rss_mb(), 1),
        "resumed_at_steps": st.resumed_at,
        "versions": versions(inp.engine), "device": device_info(device),
        "num_processes": acc.num_processes,
    }
    if not st.best_step:
        # no step beat the base model: keep the last adapter, say so in the record
        save_adapter(peft_model, weights, inp.output, inp.hub_id, acc, loss_fn)
        record["best_step_note"] = "no step improved on the base model's validation loss; " \
                                   "the adapter is the last step's"
    if acc.is_main_process:
        plot_losses(inp.output / "loss.png", st.train_loss, st.val_loss, st.best_step,
                    f"{cfg.model} · {cfg.task} · {inp.method}")
        write_json(inp.output / "training.json", record)
        shutil.rmtree(inp.output / CHECKPOINTS, ignore_errors=True)
    acc.wait_for_everyone()
    say(f"adapter: {inp.output} (best validation loss {st.best_val:.4f} at step "
        f"{st.best_step}; {record['tokens_per_second']} tok/s)")
    if st.best_step == 0 and record["val_loss"] and len(record["val_loss"]) > 1:
        say("warning: no step lowered the validation loss, so the saved adapter is the "
            "untrained one (it changes nothing); try a lower --lr or more data")
    return {**record, "output": str(inp.output)}
