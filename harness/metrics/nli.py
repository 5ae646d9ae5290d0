"""Optional NLI-entailment tier: each review sentence against the product JSON, with a local
NLI cross-encoder (e.g. a copy of cross-encoder/nli-deberta-v3-xsmall or roberta-large-mnli;
none is bundled). Runs only when a model directory is given (`--nli-model DIR`, metadata
`nli_model`, HARNESS_NLI_MODEL); never downloads.

Premises are the product's lines (title, each feature, each detail, price, rating); a sentence
counts as entailed when some premise entails it with p >= 0.5, contradicted when some premise
contradicts it with p >= 0.5 and none entails it. Per sample:
  nli_entailment        mean over sentences of the best entailment probability
  nli_unsupported_rate  share of sentences no premise entails
  nli_contradiction     1 if a sentence is contradicted
  nli_sentences         per-sentence detail
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from ..errors import HarnessError

THRESHOLD = 0.5
MAX_LENGTH = 256
BATCH = 32


@lru_cache(maxsize=2)
def nli_model(path: str):
    """(tokenizer, model, entail index, contradiction index), loaded once per process."""
    p = Path(path).expanduser()
    if not (p / "config.json").is_file():
        raise HarnessError(f"{p}: not an NLI model directory (no config.json)")
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
        model = AutoModelForSequenceClassification.from_pretrained(
            str(p), local_files_only=True).eval()
    except (OSError, ValueError) as e:
        raise HarnessError(f"{p}: cannot load the NLI model ({e})") from e
    labels = {i: str(name).lower() for i, name in model.config.id2label.items()}
    ent = [i for i, name in labels.items() if name.startswith("entail")]
    con = [i for i, name in labels.items() if name.startswith("contra")]
    if not ent or not con:
        raise HarnessError(f"{p}: config.json id2label {model.config.id2label} has no "
                           f"'entailment' and 'contradiction' labels")
    model.requires_grad_(False)   # not torch.set_grad_enabled: that is process-wide
    return tok, model, ent[0], con[0]


def premises(product: dict) -> list[str]:
    from .text import product_text
    return [line for line in product_text(product).split("\n") if line.strip()]


def sentences(text: str) -> list[str]:
    parts = re.split(r"(?<=[.!?])\s+|\n+", text.strip())
    return [s.strip() for s in parts if len(s.split()) >= 3]


def _probs(path: str, pairs: list[tuple[str, str]]):
    import torch
    tok, model, ent, con = nli_model(path)
    out = []
    for i in range(0, len(pairs), BATCH):
        chunk = pairs[i:i + BATCH]
        enc = tok([p for p, _ in chunk], [h for _, h in chunk], truncation=True,
                  max_length=MAX_LENGTH, padding=True, return_tensors="pt")
        with torch.inference_mode():
            pr = torch.softmax(model(**enc).logits.float(), dim=-1)
        out += [(float(r[ent]), float(r[con])) for r in pr]
    return out


def nli_scorer(records: list[dict], texts: list[str], path: str) -> list[dict]:
    out = []
    for rec, text in zip(records, texts):
        sents, prem = sentences(text), premises(rec["product"])
        if not sents or not prem:
            out.append({"nli_entailment": 0.0, "nli_unsupported_rate": 0.0,
                        "nli_contradiction": 0.0, "nli_sentences": []})
            continue
        probs = _probs(path, [(p, s) for s in sents for p in prem])
        detail = []
        for j, s in enumerate(sents):
            rows = probs[j * len(prem):(j + 1) * len(prem)]
            e = max(r[0] for r in rows)
            c = max(r[1] for r in rows)
            detail.append({"text": s, "entailment": e, "contradiction": c,
                           "status": "entailed" if e >= THRESHOLD else
                           ("contradicted" if c >= THRESHOLD else "unsupported")})
        out.append({"nli_entailment": sum(d["entailment"] for d in detail) / len(detail),
                    "nli_unsupported_rate": sum(d["status"] != "entailed" for d in detail)
                    / len(detail),
                    "nli_contradiction": float(any(d["status"] == "contradicted"
                                                   for d in detail)),
                    "nli_sentences": detail})
    return out
