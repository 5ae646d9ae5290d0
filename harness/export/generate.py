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

from ..errors import HarnessError
from ..paths import TASKS_DIR

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
    """A product dict, or a task record holding one under "product", checked against the
    product schema (harness.data.schema: wrong types are one error naming the field)."""
    from ..data.schema import validate_product

    from ..data.schema import _type_name

    product = obj.get("product", obj) if isinstance(obj, dict) else obj
    if not isinstance(product, dict):
        what = "\"product\" " if isinstance(obj, dict) else ""
        raise HarnessError(f"{where}: expected a product JSON object (or a record with "
                           f"\"product\"), got {what}{_type_name(product)}")
    return validate_product(product, where)


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
    from ..backends.llama_cpp import LlamaCppLM
    from ..backends.gguf_reader import scan_gguf
    from ..models import resolve_gguf

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


def check_settings(max_tokens: int | None, temperature: float) -> None:
    if max_tokens is not None and int(max_tokens) < 1:
        raise HarnessError(f"--max-tokens {max_tokens}: expected 1 or more")
    if temperature < 0:
        raise HarnessError(f"--temperature {temperature}: expected 0 (greedy) or more")


def generate_reviews(model: str, products: Iterable[tuple[str, dict]], *,
                     lora: str | os.PathLike | None = None, max_tokens: int | None = None,
                     temperature: float = 0.0, seed: int = 0, n_ctx: int = 2048,
                     n_threads: int | None = None,
                     on_text: Callable[[str, str], None] | None = None,
                     on_warning: Callable[[str], None] | None = None,
                     lm=None) -> Iterator[dict]:
    """One dict per product: id, review, token counts, prefill and generation tokens/s.
    on_text(id, piece) streams each review as it is written. Greedy unless temperature > 0
    (then `seed` makes it repeatable).

    A prompt that does not leave max_tokens of the context free is trimmed (product fields,
    then features: harness.prompts.fit_review_prompt), never cut from the front; the row's
    "trimmed" lists what was dropped and on_warning gets one line. A product whose title alone
    does not fit is a HarnessError."""
    from ..backends.throughput import METER
    from ..prompts import fit_review_prompt, trim_note

    check_settings(max_tokens, temperature)
    lm = lm or open_model(model, lora, n_ctx=n_ctx, n_threads=n_threads, seed=seed)
    max_tokens = int(max_tokens or task_generation_kwargs()["max_gen_toks"])
    until = review_stop()
    budget = int(getattr(lm, "n_ctx", n_ctx)) - max_tokens
    if budget < 1:
        raise HarnessError(f"--max-tokens {max_tokens}: leaves no room for a prompt in the "
                           f"model's context of {budget + max_tokens} tokens")
    for pid, product in products:
        context, dropped = fit_review_prompt(
            product, lambda text: len(lm.prompt_tokens(text)) <= budget,
            render=lambda p: review_context(lm, p), where=f"product {pid}")
        if dropped and on_warning:
            on_warning(f"product {pid}: prompt trimmed to fit the context ({budget} tokens "
                       f"for the prompt, {max_tokens} for the review): dropped "
                       f"{trim_note(dropped)}")
        before = (METER.prompt_tokens, METER.prefill_s, METER.gen_tokens, METER.decode_s)
        text = lm.generate_one(context, until, max_tokens,
                               temperature=temperature, seed=seed if temperature else None,
                               on_text=(lambda piece, pid=pid: on_text(pid, piece))
                               if on_text else None)
        p_tok, p_s, g_tok, g_s = (a - b for a, b in zip(
            (METER.prompt_tokens, METER.prefill_s, METER.gen_tokens, METER.decode_s), before))
        row = {"id": pid, "review": text.strip(), "prompt_tokens": p_tok,
               "generated_tokens": g_tok + 1,
               "prompt_tokens_per_second": round(p_tok / p_s, 2) if p_s > 0 else None,
               "generation_tokens_per_second": round(g_tok / g_s, 2) if g_s > 0 and g_tok
               else None}
        if dropped:
            row["trimmed"] = dropped
        yield row


class ReviewLog:
    """`generate --output FILE`: one JSONL line per review, appended and flushed as soon as the
    review is done, so a crash or a bad product later on loses nothing. Each line carries the
    settings it was made with (`settings`); rerunning with the same FILE and settings skips
    the products already there (resume). A file made with other settings is an error, never
    mixed in. A torn last line (a crash mid-write) is dropped on resume. The file is touched
    only when the first new review is done (a run that fails before leaves it as it was)."""

    def __init__(self, path: str | os.PathLike, settings: dict, overwrite: bool = False):
        self.path, self.settings = Path(path), dict(settings)
        self.done: dict[str, dict] = {}
        self._opened = False
        if self.path.exists() and not overwrite:
            rows = self._read()
            other = next((r for r in rows if r.get("settings") != self.settings), None)
            if other is not None:
                raise HarnessError(f"{self.path}: holds reviews made with other settings "
                                   f"({other.get('settings')}); choose another --output or "
                                   f"add --overwrite")
            self.done = {str(r["id"]): r for r in rows}

    def _read(self) -> list[dict]:
        rows = []
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise HarnessError(f"{self.path}: cannot read ({e})") from e
        for lineno, line in enumerate(lines, 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                if lineno == len(lines):
                    break   # torn by a crash while it was written
                raise HarnessError(f"{self.path}:{lineno}: malformed JSON line; not a "
                                   f"`generate --output` file? choose another --output") from None
            if not isinstance(row, dict) or "id" not in row:
                raise HarnessError(f"{self.path}:{lineno}: not a review line (no \"id\"); "
                                   f"choose another --output")
            rows.append(row)
        return rows

    def add(self, row: dict) -> None:
        from ..files import write_jsonl

        if not self._opened:   # the rows kept so far, atomically, without a torn last line
            write_jsonl(self.path, list(self.done.values()))
            self._opened = True
        row = {**row, "settings": self.settings}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.done[str(row["id"])] = row
