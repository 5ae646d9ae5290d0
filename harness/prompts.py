"""The product_review prompt: the product JSON as the model sees it, and its trimming to a
model's context. Shared below the stages that use it: the review task builds its examples
from it (harness.tasks.review), the backends trim an over-long context with it, the metrics
read the product table as it was shown (PARENT) and the prompt a text may echo (fluency).
Chat formatting is not done here: lm-eval applies the model's chat template
(`--apply_chat_template`, set automatically by `harness eval` for instruct models) and the
trainer does the same (harness.train.examples.format_example).
"""
from __future__ import annotations

import json
from typing import Callable

from .errors import HarnessError

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
    return _review_prompt_of(product_for_prompt(product))


def _review_prompt_of(shown: dict) -> str:
    data = json.dumps(shown, ensure_ascii=False, indent=None)
    return f"{REVIEW_INSTRUCTION}\n\nProduct: {data}\n\nReview:"


# --- prompts longer than the model's context ------------------------------------------------
# When a prompt does not fit, the product JSON is trimmed: these fields go first, in this
# order, then the features, last first. The instruction, the title and the chat template are
# never cut (cutting a prompt from the front, as lm-eval does, drops the instruction).
TRIM_FIELDS = ("details", "rating", "price", "category", "brand")


def trim_product(shown: dict, render: Callable[[dict], str], fits: Callable[[str], bool],
                 where: str = "product") -> tuple[str, list[str]]:
    """(text, what was dropped): render(shown) with the fewest fields and features dropped
    for fits(text) to hold. HarnessError when even the title alone does not fit."""
    shown = dict(shown)
    text = render(shown)
    dropped: list[str] = []
    if fits(text):
        return text, dropped
    steps = [f for f in TRIM_FIELDS if f in shown] + \
        [f"features[{i}]" for i in reversed(range(len(shown.get("features") or [])))]
    for step in steps:
        if step.startswith("features["):
            shown["features"] = shown["features"][:-1]
            if not shown["features"]:
                del shown["features"]
        else:
            del shown[step]
        dropped.append(step)
        text = render(shown)
        if fits(text):
            return text, dropped
    raise HarnessError(f"{where}: the prompt does not fit the model's context even with only "
                       f"the product title ({len(str(shown.get('title', '')))} characters); "
                       f"shorten the title or use a larger context (n_ctx)")


def fit_review_prompt(product: dict, fits: Callable[[str], bool],
                      render: Callable[[str], str] = lambda p: p,
                      where: str = "product") -> tuple[str, list[str]]:
    """The review prompt as the model sees it (render: e.g. the chat template) trimmed until
    fits(text): see trim_product."""
    return trim_product(product_for_prompt(product), lambda s: render(_review_prompt_of(s)),
                        fits, where)


def fit_review_context(context: str, fits: Callable[[str], bool],
                       where: str = "prompt") -> tuple[str, list[str]]:
    """The same trimming on a rendered context (a review prompt, chat template applied or
    not), for a backend that sees only the text: the product JSON between "Product: " and
    "\n\nReview:" is trimmed, the rest kept as it is. A context with no product JSON in it is
    returned as it is when it fits, else HarnessError."""
    head, sep, rest = context.partition("\nProduct: ")
    data, sep2, tail = rest.partition("\n\nReview:")
    try:
        shown = json.loads(data) if sep and sep2 else None
    except json.JSONDecodeError:
        shown = None
    if not isinstance(shown, dict):
        if fits(context):
            return context, []
        raise HarnessError(f"{where}: the prompt is longer than the model's context")
    return trim_product(shown, lambda s: f"{head}{sep}{json.dumps(s, ensure_ascii=False)}"
                                         f"{sep2}{tail}", fits, where)


def trim_note(dropped: list[str]) -> str:
    """'details, price, features[3:6]' for a warning line."""
    feats = sorted(int(d[9:-1]) for d in dropped if d.startswith("features["))
    out = [d for d in dropped if not d.startswith("features[")]
    if feats:
        out.append(f"features[{feats[0]}:{feats[-1] + 1}]")
    return ", ".join(out)
