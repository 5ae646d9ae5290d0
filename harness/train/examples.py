"""Training examples: a task record -> the text the model sees (the task's prompt builder,
harness.tasks.build_example, then the chat template: format_example) -> token ids whose labels
cover the response only (and, for product_review, not the sentences with an unsupported claim);
then length-grouped batches whose order depends only on (seed, epoch), and the LR schedule."""
from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass

import torch

IGNORE = -100


def format_example(tokenizer, prompt: str, target: str | None, chat: bool) -> tuple[str, str]:
    """(prefix, completion) as the model sees them: with the chat template for instruct models
    (user turn = prompt, assistant turn = target), else plain text completion.
    The loss of the trainer covers `completion` only."""
    if chat:
        msgs = [{"role": "user", "content": prompt}]
        prefix = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        if target is None:
            return prefix, ""
        full = tokenizer.apply_chat_template(
            msgs + [{"role": "assistant", "content": target.strip()}], tokenize=False)
        if not full.startswith(prefix):  # templates that rewrite earlier turns
            return prefix, target.strip() + (tokenizer.eos_token or "")
        return prefix, full[len(prefix):]
    return prompt, ("" if target is None else target + (tokenizer.eos_token or ""))


# ==== 3. examples: the eval task's prompt -> chat template -> token ids =====================

@dataclass
class Example:
    ids: list[int]
    n_prompt: int                          # the loss starts after these tokens
    masked: tuple[int, ...] = ()           # response positions without loss (unsupported facts)

    @property
    def labels(self) -> list[int]:
        out = [IGNORE] * self.n_prompt + self.ids[self.n_prompt:]
        for i in self.masked:
            out[i] = IGNORE
        return out


MIN_RESPONSE_TOKENS = 8


def as_eval_record(record: dict) -> dict:
    """The record as the lm-eval task hands it to the prompt builder: stored as JSON with
    sorted keys (harness.tasks.records.load_task_dataset), so nested dicts (price, details) come
    back in sorted order, and the prompt text depends on that order."""
    from ..tasks.records import record_of
    return record_of({"record": json.dumps(record, ensure_ascii=False, sort_keys=True)})


def tokenize_examples(tokenizer, task: str, records: list[dict], chat: bool,
                      max_seq_len: int, mask_unsupported: bool = False
                      ) -> tuple[list[Example], dict]:
    """Examples plus counts: a too-long example keeps its prompt and loses the end of its
    response; one whose prompt alone leaves < MIN_RESPONSE_TOKENS is dropped.
    mask_unsupported (product_review records): the response tokens of each sentence holding an
    unsupported or contradicted claim (unsupported_sentences) get no loss."""
    from ..tasks import build_example
    from .examples import format_example

    bos = tokenizer.bos_token
    out, truncated, dropped = [], 0, 0
    n_sent = n_masked_ex = unaligned = 0
    for rec in records:
        prompt, target = build_example(task, as_eval_record(rec))
        prefix, completion = format_example(tokenizer, prompt, target, chat)
        # as lm-eval encodes the context: the tokenizer's special tokens, unless the text
        # already starts with BOS (chat templates)
        p = tokenizer.encode(prefix, add_special_tokens=not (bos and prefix.startswith(bos)))
        full = c = tokenizer.encode(completion, add_special_tokens=False)
        if len(p) + len(c) > max_seq_len:
            if len(p) > max_seq_len - MIN_RESPONSE_TOKENS:
                dropped += 1
                continue
            c = c[:max_seq_len - len(p)]
            truncated += 1
        masked: list[int] = []
        if mask_unsupported:
            sentences = masked_sentences(tokenizer, rec["product"], target.strip(), completion,
                                         full)
            if sentences is None:
                unaligned += 1
            else:
                kept = [[i for i in pos if i < len(c)] for pos in sentences]
                n_sent += sum(bool(k) for k in kept)
                masked = sorted({len(p) + i for k in kept for i in k})
                n_masked_ex += bool(masked)
        out.append(Example(p + c, len(p), tuple(masked)))
    response = sum(len(e.ids) - e.n_prompt for e in out)
    n_masked = sum(len(e.masked) for e in out)
    stats = {"records": len(records), "examples": len(out), "truncated": truncated,
             "dropped": dropped, "tokens": sum(len(e.ids) for e in out),
             "response_tokens": response, "mask_unsupported": mask_unsupported,
             "masked_sentences": n_sent, "masked_tokens": n_masked,
             "masked_share": round(n_masked / response, 6) if response else 0.0,
             "masked_examples": n_masked_ex, "mask_unaligned": unaligned}
    return out, stats


# Tasks whose targets are product reviews the claim checker reads (TrainConfig.mask_unsupported).
MASKED_TASKS = {"product_review"}
MASK_RULE = ("no loss on the target tokens of sentences with a claim the product JSON does not "
             "support (harness.metrics.hallucination: unsupported or contradicted)")
SENTENCE_PUNCT = ".!?;"


def unsupported_sentences(product: dict, text: str) -> list[tuple[int, int]]:
    """Character spans [start, end) of the sentences of `text` that hold a claim the product
    JSON does not support (unsupported or contradicted, as harness.metrics.hallucination
    checks them). A sentence runs from its first non-space character through its end
    punctuation (claims.sentence_bounds; '.' between digits does not end one)."""
    from ..metrics.claims import sentence_bounds
    from ..metrics.hallucination import SUPPORTED, check_claims

    out = set()
    for claim in check_claims(product, text):
        if claim["status"] == SUPPORTED:
            continue
        for start, end in claim["spans"]:
            a, b = sentence_bounds(text, start, end)
            while a < b and text[a].isspace():
                a += 1
            while b < len(text) and text[b] in SENTENCE_PUNCT:
                b += 1
            out.add((a, b))
    return sorted(out)


def token_offsets(tokenizer, text: str, ids: list[int]) -> list[tuple[int, int]] | None:
    """Character span of each token of `ids`, the tokenization of `text`; None when they
    cannot be aligned. A fast tokenizer gives its offset mapping; otherwise each token ends
    where the decoded prefix ending with it ends."""
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        if list(enc["input_ids"]) == list(ids):
            return [(int(a), int(b)) for a, b in enc["offset_mapping"]]
    spans, start = [], 0
    for i in range(len(ids)):
        prefix = tokenizer.decode(ids[:i + 1], clean_up_tokenization_spaces=False)
        if not text.startswith(prefix):
            return None     # a token splits a character, or decoding changes the text
        spans.append((start, len(prefix)))
        start = len(prefix)
    return spans if start == len(text) else None


def masked_sentences(tokenizer, product: dict, text: str, completion: str,
                     ids: list[int]) -> list[list[int]] | None:
    """Per unsupported sentence of `text` (found in `completion`, tokenized as `ids`), the
    positions in `ids` of the tokens with a character in it; None when the tokens cannot be
    aligned with the text."""
    spans = unsupported_sentences(product, text)
    if not spans:
        return []
    at = completion.find(text)
    offsets = token_offsets(tokenizer, completion, ids) if at >= 0 else None
    if offsets is None:
        return None
    return [[i for i, (a, b) in enumerate(offsets) if b > a and a < at + e and b > at + s]
            for s, e in spans]


# ==== 4. batches: length-grouped, order fixed by (seed, epoch) ==============================

GROUP = 16  # batches sorted together: shuffle, cut into GROUP*batch_size chunks, sort each


def epoch_batches(lengths: list[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Indices in batches of similar length, in a shuffled order that only (seed, epoch) fix."""
    rng = random.Random(seed * 1_000_003 + epoch)
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    batches = []
    for i in range(0, len(idx), batch_size * GROUP):
        chunk = sorted(idx[i:i + batch_size * GROUP], key=lambda j: -lengths[j])
        batches += [chunk[k:k + batch_size] for k in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(examples: list[Example], pad_id: int) -> dict:
    """Right-padded tensors: input_ids, attention_mask, labels (IGNORE on prompt and pad)."""
    width = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e.ids)
        ids[i, :n] = torch.tensor(e.ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@dataclass
class Schedule:
    """Which micro-batches step `s` trains on, for a run of `total` optimizer steps."""
    lengths: list[int]
    batch_size: int
    per_step: int                          # micro-batches per optimizer step, all processes
    seed: int

    @property
    def steps_per_epoch(self) -> int:
        return max(1, math.ceil(math.ceil(len(self.lengths) / self.batch_size) / self.per_step))

    def step_batches(self, step: int) -> list[list[int]]:
        epoch, pos = divmod(step, self.steps_per_epoch)
        order = epoch_batches(self.lengths, self.batch_size, self.seed, epoch)
        order += order[:self.steps_per_epoch * self.per_step - len(order)]  # fill the last step
        return order[pos * self.per_step:(pos + 1) * self.per_step]


def lr_at(step: int, total: int, peak: float, warmup_ratio: float) -> float:
    """Linear warmup, then cosine decay to 10% of the peak."""
    warm = max(1, round(total * warmup_ratio)) if warmup_ratio > 0 else 0
    if step < warm:
        return peak * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))
