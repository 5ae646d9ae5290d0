"""The prompt builders: one function per task turns a task record into (prompt, target).

The lm-eval task folders call these through their utils.py, and the trainer calls them too, so
a model is trained on exactly the text it is evaluated on. Chat formatting is not done here:
lm-eval applies the model's chat template (`--apply_chat_template`, set automatically by
`harness eval` for instruct models) and the trainer does the same with `format_example`.
"""
from __future__ import annotations

import json

REVIEW_INSTRUCTION = (
    "Write a short customer review (2-4 sentences) of the product below. "
    "Only mention facts that are in the product data."
)

# Fields shown to the model, in this order; everything else in the record stays out of the prompt.
REVIEW_FIELDS = ("title", "brand", "category", "price", "rating", "features", "details")
MAX_FEATURES = 6
MAX_FEATURE_CHARS = 160


def product_for_prompt(product: dict) -> dict:
    """The product JSON as the model sees it: fixed key order, long lists trimmed."""
    out = {}
    for k in REVIEW_FIELDS:
        if k not in product:
            continue
        v = product[k]
        if k == "features":
            v = [f if len(f) <= MAX_FEATURE_CHARS else f[:MAX_FEATURE_CHARS].rsplit(" ", 1)[0]
                 for f in v[:MAX_FEATURES]]
        elif k == "category":
            v = " > ".join(v)
        out[k] = v
    return out


def review_prompt(product: dict) -> str:
    data = json.dumps(product_for_prompt(product), ensure_ascii=False, indent=None)
    return f"{REVIEW_INSTRUCTION}\n\nProduct: {data}\n\nReview:"


def review_example(record: dict) -> tuple[str, str]:
    return review_prompt(record["product"]), " " + record["review"].strip()


# Task name -> function(record) -> (prompt, target). Other tasks register here too.
EXAMPLE_BUILDERS = {"product_review": review_example}


def register_example_builder(task: str):
    def deco(fn):
        EXAMPLE_BUILDERS[task] = fn
        return fn
    return deco


def build_example(task: str, record: dict) -> tuple[str, str]:
    from . import tasks_registry  # noqa: F401  (registers the other tasks' builders)
    try:
        return EXAMPLE_BUILDERS[task](record)
    except KeyError as e:
        if task not in EXAMPLE_BUILDERS:
            raise ValueError(f"unknown task {task!r}; known: {', '.join(EXAMPLE_BUILDERS)}") from e
        raise


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
