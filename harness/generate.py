"""Offline review generation with llama.cpp: a GGUF (registry name or file), optionally a LoRA
GGUF on top, product JSON in, streamed reviews and throughput out.

    for r in generate_reviews("model.q4_k_m.gguf", read_products("product.json")):
        print(r["review"], r["generation_tokens_per_second"])

Everything model-side is harness.backends.llama_cpp (LlamaCppLM.generate_one, the chat template
stored in the GGUF) and the prompt is harness.prompts.review_prompt, so a review generated here
is the one `harness eval --model llama-cpp` scores. Stop strings and the token budget come from
the product_review task's YAML.
"""
from __future__ import annotations

import json
import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .io import HarnessError
from .paths import TASKS_DIR

TASK = "product_review"


@lru_cache(maxsize=None)
def task_generation_kwargs(task: str = TASK) -> dict:
    """The task YAML's generation_kwargs (its `!function` tags are not needed here)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    path = TASKS_DIR / task / f"{task}.yaml"
    with open(path, encoding="utf-8") as f:
        return dict(yaml.load(f, Loader=Loader).get("generation_kwargs") or {})


def review_stop() -> list[str]:
    return list(task_generation_kwargs()["until"])


def review_context(lm, prompt: str) -> str:
    """The prompt as the model sees it: through the GGUF's chat template when it has one."""
    if lm.chat_template(True):
        return lm.apply_chat_template([{"role": "user", "content": prompt}])
    return prompt


# --- products in ---------------------------------------------------------------------------------
def _product_of(obj, where: str) -> dict:
    """A product dict, or a task record holding one under "product"."""
    product = obj.get("product", obj) if isinstance(obj, dict) else None
    if not isinstance(product, dict):
        raise HarnessError(f"{where}: expected a product JSON object (or a record with "
                           f"\"product\"), got {type(obj).__name__}")
    if not isinstance(product.get("title"), str) or not product["title"].strip():
        raise HarnessError(f"{where}: product has no \"title\" string")
    return product


def parse_products(text: str, source: str = "<stdin>") -> list[tuple[str, dict]]:
    """(id, product) pairs from a JSON object, a JSON array, or JSON lines."""
    text = text.strip()
    if not text:
        raise HarnessError(f"{source}: no products (empty input)")
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None
    if whole is not None:
        items = whole if isinstance(whole, list) else [whole]
        return [(str(o.get("id", i)) if isinstance(o, dict) else str(i),
                 _product_of(o, f"{source}[{i}]" if isinstance(whole, list) else source))
                for i, o in enumerate(items)]
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise HarnessError(f"{source}:{lineno}: malformed JSON line ({e.msg})") from e
        out.append((str(obj.get("id", lineno)) if isinstance(obj, dict) else str(lineno),
                    _product_of(obj, f"{source}:{lineno}")))
    return out


def read_products(source: str | os.PathLike | None = None) -> list[tuple[str, dict]]:
    """Products from a .json / .jsonl file, or from stdin when source is None or "-"."""
    if source is None or str(source) == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise HarnessError("no products: give --product FILE (.json or .jsonl) or pipe "
                               "product JSON into stdin")
        return parse_products(sys.stdin.read(), "<stdin>")
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise HarnessError(f"{path}: cannot read ({e.strerror})") from e
    return parse_products(text, str(path))


# --- reviews out ---------------------------------------------------------------------------------
def open_model(model: str, lora: str | os.PathLike | None = None, *, n_ctx: int = 2048,
               n_threads: int | None = None, seed: int = 0):
    """LlamaCppLM for a registry name or GGUF path, with a LoRA GGUF on top when given; a
    truncated/corrupt file is reported before llama.cpp sees it."""
    from .backends.llama_cpp import LlamaCppLM
    from .gguf_io import scan_gguf
    from .models import resolve_gguf

    arch = scan_gguf(resolve_gguf(model)).kv.get("general.architecture")
    if lora is not None:
        kv = scan_gguf(lora).kv
        if kv.get("general.type") != "adapter":
            raise HarnessError(f"{lora}: not a LoRA adapter GGUF (general.type="
                               f"{kv.get('general.type')!r})")
        if kv.get("general.architecture") != arch:
            raise HarnessError(f"{lora}: LoRA for architecture {kv.get('general.architecture')!r}"
                               f", the model is {arch!r}")
    return LlamaCppLM(model=model, lora_path=str(lora) if lora else None, n_ctx=n_ctx,
                      n_threads=n_threads, seed=seed)


def generate_reviews(model: str, products: Iterable[tuple[str, dict]], *,
                     lora: str | os.PathLike | None = None, max_tokens: int | None = None,
                     temperature: float = 0.0, seed: int = 0, n_ctx: int = 2048,
                     n_threads: int | None = None,
                     on_text: Callable[[str, str], None] | None = None,
                     lm=None) -> Iterator[dict]:
    """One dict per product: id, review, token counts, prefill and generation tokens/s.
    on_text(id, piece) streams each review as it is written. Greedy unless temperature > 0
    (then `seed` makes it repeatable)."""
    from .backends.throughput import METER
    from .prompts import review_prompt

    lm = lm or open_model(model, lora, n_ctx=n_ctx, n_threads=n_threads, seed=seed)
    max_tokens = int(max_tokens or task_generation_kwargs()["max_gen_toks"])
    until = review_stop()
    for pid, product in products:
        before = (METER.prompt_tokens, METER.prefill_s, METER.gen_tokens, METER.decode_s)
        text = lm.generate_one(review_context(lm, review_prompt(product)), until, max_tokens,
                               temperature=temperature, seed=seed if temperature else None,
                               on_text=(lambda piece, pid=pid: on_text(pid, piece))
                               if on_text else None)
        p_tok, p_s, g_tok, g_s = (a - b for a, b in zip(
            (METER.prompt_tokens, METER.prefill_s, METER.gen_tokens, METER.decode_s), before))
        yield {"id": pid, "review": text.strip(), "prompt_tokens": p_tok,
               "generated_tokens": g_tok + 1,
               "prompt_tokens_per_second": round(p_tok / p_s, 2) if p_s > 0 else None,
               "generation_tokens_per_second": round(g_tok / g_s, 2) if g_s > 0 and g_tok else None}
