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
from typing import Any, Callable

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


@dataclass
class Run:
    """Everything the loop needs, made by setup() before it starts."""
    cfg: TrainConfig
    inp: Any                       # config.Inputs
    acc: Any                       # accelerate.Accelerator
    say: Callable[[str], None]
    console: Any
    dtype: Any
    chat: bool
    mask: bool
    train_ex: list
    val_ex: list
    train_stats: dict
    val_stats: dict
    data_hashes: dict
    sched: Schedule
    total: int
    eval_every: int
    save_every: int
    peft_model: Any
    weights: MasterWeights
    loss_fn: Any
    optimizer: Any
    pad_id: int
    load_s: float
    st: RunState = field(default_factory=RunState)
    start: int = 0
    t_start: float = 0.0


def settings(config: TrainConfig | None, preset: str | None, overrides: dict) -> TrainConfig:
    """The run's TrainConfig: `config` (or the defaults), under the preset, under overrides."""
    unknown = set(overrides) - {f.name for f in fields(TrainConfig)}
    if unknown:
        raise HarnessError(f"unknown training setting(s): {', '.join(sorted(unknown))}")
    if preset is not None and preset not in PRESETS:
        raise HarnessError(f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
    return TrainConfig(**{**(asdict(config) if config else {}), **PRESETS.get(preset, {}),
                          **overrides})


def _check_resumable(cfg: TrainConfig, inp, acc) -> None:
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


def _examples(cfg: TrainConfig, inp, say) -> tuple:
    """(tokenizer, chat, mask, train examples, validation examples, their stats, data hashes)."""
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
    return tokenizer, chat, mask, train_ex, val_ex, train_stats, val_stats, data_hashes


def _model(cfg: TrainConfig, inp, acc, dtype) -> tuple:
    """(peft model, master weights, loss, optimizer, load seconds), prepared by accelerate."""
    t_load = time.perf_counter()
    peft_model = ENGINES[inp.engine](cfg, inp, acc.device, dtype)
    load_s = time.perf_counter() - t_load
    if dtype == torch.float16 or acc.distributed_type.name in ("DEEPSPEED", "FSDP"):
        for p in peft_model.parameters():   # these manage float32 weights themselves
            if p.requires_grad:
                p.data = p.data.float()
    weights = MasterWeights(peft_model)
    loss_fn = ResponseLoss(peft_model)
    optimizer = torch.optim.AdamW(weights.master, lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn, optimizer = acc.prepare(loss_fn, optimizer)
    return peft_model, weights, loss_fn, optimizer, load_s


def setup(cfg: TrainConfig) -> Run:
    """Inputs (checked before any compute), accelerator, examples, schedule, model, optimizer,
    and the state: fresh, or from the checkpoint."""
    t_start = time.perf_counter()
    inp = resolve_inputs(cfg)
    if inp.engine == "unsloth":
        import unsloth  # noqa: F401  (patches transformers before it is used; CUDA only)
    from accelerate import Accelerator
    from rich.console import Console

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dtype = torch_dtype(cfg.dtype, "cuda" if _cuda() else "cpu")
    # float16 needs loss scaling: accelerate's fp16 mixed precision, with float32 LoRA weights
    # cpu=True without CUDA: under `accelerate launch --multi_gpu` (torchrun) the processes
    # then join one gloo group (MULTI_CPU); otherwise each would train alone
    acc = Accelerator(cpu=not _cuda(), mixed_precision="fp16" if dtype == torch.float16 else None)
    console = Console(stderr=True, quiet=not (cfg.progress and acc.is_main_process))

    def say(msg: str) -> None:
        console.print(msg, highlight=False, markup=False)
    if cfg.overwrite and acc.is_main_process:
        clear_output(inp.output)
    _check_resumable(cfg, inp, acc)
    tokenizer, chat, mask, train_ex, val_ex, train_stats, val_stats, data_hashes = \
        _examples(cfg, inp, say)
    sched = Schedule([len(e.ids) for e in train_ex], cfg.batch_size,
                     cfg.grad_accum * acc.num_processes, cfg.seed)
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * sched.steps_per_epoch))
    eval_every = cfg.eval_every or max(1, total // 5)
    peft_model, weights, loss_fn, optimizer, load_s = _model(cfg, inp, acc, dtype)
    run = Run(cfg, inp, acc, say, console, dtype, chat, mask, train_ex, val_ex, train_stats,
              val_stats, data_hashes, sched, total, eval_every, cfg.save_every or eval_every,
              peft_model, weights, loss_fn, optimizer, tokenizer.pad_token_id, load_s,
              t_start=t_start)
    if inp.checkpoint is not None:
        meta = load_checkpoint(inp.checkpoint, weights, optimizer, acc)
        run.st = RunState(**meta["run"])
        run.start = meta["step"]
        run.st.resumed_at.append(run.start)
        say(f"resuming {inp.output} at step {run.start}/{total}")
    if acc.is_main_process:
        inp.output.mkdir(parents=True, exist_ok=True)
    return run


def validate(run: Run, step: int) -> None:
    """Validation loss at `step`; the adapter is saved when it is the best so far."""
    st, cfg = run.st, run.cfg
    val = evaluate_loss(run.loss_fn, run.val_ex, cfg.batch_size * 2, run.pad_id, run.acc)
    st.val_loss.append([step, round(val, 6)])
    improved = st.best_val is None or val < st.best_val - cfg.min_delta
    if improved:
        st.best_val, st.best_step, st.bad_evals = val, step, 0
        if step > 0:
            save_adapter(run.peft_model, run.weights, run.inp.output, run.inp.hub_id, run.acc,
                         run.loss_fn)
    elif step > 0:
        st.bad_evals += 1
    run.say(f"step {step}/{run.total}: validation loss {val:.4f}"
            + (" (best)" if improved else f" (best {st.best_val:.4f} at step {st.best_step})"))


def train_step(run: Run, step: int) -> float:
    """One optimizer step (its micro-batches on this process); returns the step's loss."""
    acc, st, cfg, device = run.acc, run.st, run.cfg, run.acc.device
    for g in run.optimizer.param_groups:
        g["lr"] = lr_at(step, run.total, cfg.lr, cfg.warmup_ratio)
    t0, c0 = time.perf_counter(), time.process_time()
    micro = run.sched.step_batches(step)[acc.process_index::acc.num_processes]
    batches = [collate([run.train_ex[i] for i in b], run.pad_id) for b in micro]
    # the step's loss is the mean over the response tokens of all processes; DDP
    # averages the processes' gradients, hence the factor num_processes
    n_resp = int(acc.reduce(torch.tensor(sum(int((b["labels"][:, 1:] != IGNORE).sum())
                                             for b in batches), device=device), "sum"))
    sums = torch.zeros(3, dtype=torch.float64)   # loss, tokens, padded tokens
    for k, batch in enumerate(batches):
        batch = {key: v.to(device) for key, v in batch.items()}
        sync = k == len(batches) - 1
        with (acc.no_sync(run.loss_fn) if not sync else nullcontext()):
            s, _ = run.loss_fn(**batch)
            acc.backward(s * acc.num_processes / max(1, n_resp))
        sums += torch.tensor([float(s.detach()), int(batch["attention_mask"].sum()),
                              batch["input_ids"].numel()], dtype=torch.float64)
    loss_sum, tokens, padded = acc.reduce(sums.to(device), "sum").tolist()
    st.tokens += int(tokens)
    st.padded_tokens += int(padded)
    run.weights.grads_to_master()
    if cfg.max_grad_norm:
        acc.clip_grad_norm_(run.weights.master, cfg.max_grad_norm)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.weights.master_to_model()
    st.train_s += time.perf_counter() - t0
    st.train_cpu_s += time.process_time() - c0
    st.response_tokens += n_resp
    loss = loss_sum / max(1, n_resp)
    st.train_loss.append([step + 1, round(loss, 6)])
    return loss


def checkpoint_state(run: Run) -> dict:
    return {"config": asdict(run.cfg), "data_sha256": run.data_hashes, "run": asdict(run.st)}


def train(config: TrainConfig | None = None, preset: str | None = None, **overrides) -> dict:
    """Train an adapter; returns the training.json record (plus "output").

    `train(model=..., task=..., data="demo", max_steps=20)`, `train(TrainConfig(...))`, or
    `train(model=..., preset="demo")` (PRESETS; explicit settings win)."""
    run = setup(settings(config, preset, overrides))
    cfg, st = run.cfg, run.st
    if run.start == 0:
        validate(run, 0)   # the base model's loss: the number every later one is compared with
    run.loss_fn.train()
    step = run.start
    # grad mode is process-wide: a scorer or evaluator run earlier in this process may have
    # turned it off
    with torch.enable_grad(), _progress(run.console) as bar:
        task = bar.add_task("train", total=run.total, completed=step, loss="-", tps="-")
        while step < run.total and not st.stopped_early:
            loss = train_step(run, step)
            step += 1
            tps = st.tokens / st.train_s if st.train_s else 0.0
            bar.update(task, completed=step, loss=f"{loss:.3f}", tps=f"{tps:,.0f}")
            if step % run.eval_every == 0 or step == run.total:
                validate(run, step)
                if cfg.patience and st.bad_evals >= cfg.patience:
                    st.stopped_early = True
                    run.say(f"early stop at step {step}: no gain in {cfg.patience} evaluations")
            if step % run.save_every == 0 and step < run.total and not st.stopped_early \
                    and not sharded(run.acc):
                save_checkpoint(run.inp.output, step, run.weights, run.optimizer,
                                checkpoint_state(run), run.acc)
    return finish(run, step)


def training_record(run: Run, step: int) -> dict:
    """training.json: what was trained on what, how, how fast, and the loss curves."""
    from ..backends.throughput import peak_rss_mb

    cfg, inp, st = run.cfg, run.inp, run.st
    stats = (("train", run.train_stats), ("validation", run.val_stats))
    return {
        "base_model": cfg.model, "base_model_source": {"pretrained": inp.model_source[0],
                                                       "gguf_file": inp.model_source[1]},
        "base_model_sha256": model_sha256(inp.model_source),
        "task": cfg.task, "method": inp.method, "engine": inp.engine,
        "chat_template": run.chat, "dtype": str(run.dtype).replace("torch.", ""),
        "data": {s: {"path": str(inp.data_files[s]), "sha256": run.data_hashes[s], **stat}
                 for s, stat in stats},
        "split_sizes": {"train": len(inp.records["train"]),
                        "validation": len(inp.records["validation"])},
        "loss_masking": {"enabled": run.mask, "rule": MASK_RULE if run.mask else None,
                         **{s: {k: st_[k] for k in ("masked_sentences", "masked_tokens",
                                                    "response_tokens", "masked_share",
                                                    "masked_examples", "mask_unaligned")}
                            for s, st_ in stats}},
        "curation": curation_of(inp.data_files["train"]),
        "hyperparameters": {k: v for k, v in asdict(cfg).items()
                            if k not in RESUME_FREE | {"model", "task", "data"}},
        "seed": cfg.seed, "steps": step, "total_steps": run.total,
        "steps_per_epoch": run.sched.steps_per_epoch,
        "epochs_trained": round(step / run.sched.steps_per_epoch, 4),
        "eval_every": run.eval_every, "save_every": run.save_every,
        "trainable_parameters": sum(p.numel() for p in run.weights.master),
        "initial_val_loss": st.val_loss[0][1] if st.val_loss and st.val_loss[0][0] == 0 else None,
        "best_val_loss": st.best_val, "best_step": st.best_step,
        "stopped_early": st.stopped_early,
        "train_loss": st.train_loss, "val_loss": st.val_loss,
        "tokens_per_second": round(st.tokens / st.train_s, 2) if st.train_s else None,
        "response_tokens_per_second": round(st.response_tokens / st.train_s, 2)
        if st.train_s else None,
        "padding_fraction": round(1 - st.tokens / st.padded_tokens, 4) if st.padded_tokens else 0,
        "tokens_trained": st.tokens, "train_s": round(st.train_s, 2),
        "train_cpu_s": round(st.train_cpu_s, 2), "load_s": round(run.load_s, 2),
        "wall_s": round(time.perf_counter() - run.t_start, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "resumed_at_steps": st.resumed_at,
        "versions": versions(inp.engine), "device": device_info(run.acc.device),
        "num_processes": run.acc.num_processes,
    }


def finish(run: Run, step: int) -> dict:
    """The outputs: the adapter (the last one when no step beat the base model), training.json
    and the loss curve; the checkpoints removed."""
    cfg, inp, st, acc = run.cfg, run.inp, run.st, run.acc
    record = training_record(run, step)
    if not st.best_step:
        # no step beat the base model: keep the last adapter, say so in the record
        save_adapter(run.peft_model, run.weights, inp.output, inp.hub_id, acc, run.loss_fn)
        record["best_step_note"] = "no step improved on the base model's validation loss; " \
                                   "the adapter is the last step's"
    if acc.is_main_process:
        plot_losses(inp.output / "loss.png", st.train_loss, st.val_loss, st.best_step,
                    f"{cfg.model} · {cfg.task} · {inp.method}")
        write_json(inp.output / "training.json", record)
        shutil.rmtree(inp.output / CHECKPOINTS, ignore_errors=True)
    acc.wait_for_everyone()
    run.say(f"adapter: {inp.output} (best validation loss {st.best_val:.4f} at step "
            f"{st.best_step}; {record['tokens_per_second']} tok/s)")
    if st.best_step == 0 and record["val_loss"] and len(record["val_loss"]) > 1:
        run.say("warning: no step lowered the validation loss, so the saved adapter is the "
                "untrained one (it changes nothing); try a lower --lr or more data")
    return {**record, "output": str(inp.output)}
