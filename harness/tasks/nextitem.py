"""product_nextitem: the titles of a user's last items -> the next title (each candidate title
is scored as the answer). Prompt builder and lm-eval hooks; the task folder's utils.py only
binds them. Loading checks every record (history, target, candidates that contain the target);
a bad one is left out and counted. Choose data with lm-eval's `--metadata '{"data": ...}'`;
`"source": NAME` keeps one source's users only (the YAML variants per source set it through
dataset_kwargs).
"""
from __future__ import annotations

from ..metrics.ranking import rank_of, ranking_metrics
from .records import load_checked, record_of

NEXTITEM_INSTRUCTION = "A customer bought these products, oldest first:"
NEXTITEM_QUESTION = "Which product did the customer buy next?\nNext product:"


def nextitem_prompt(history: list[str]) -> str:
    lines = "\n".join(f"{i}. {t}" for i, t in enumerate(history, 1))
    return f"{NEXTITEM_INSTRUCTION}\n{lines}\n\n{NEXTITEM_QUESTION}"


def nextitem_example(record: dict) -> tuple[str, str]:
    return nextitem_prompt(record["history"]), " " + record["target"]


# --- lm-eval hooks -----------------------------------------------------------------------

def check_nextitem(rec: dict, split: str) -> str | None:
    hist = rec.get("history")
    if not isinstance(hist, list) or not hist or not all(isinstance(t, str) for t in hist):
        return "history too short"
    if not isinstance(rec.get("target"), str) or not rec["target"].strip():
        return "no target title"
    if split == "train":
        return None
    cands, label = rec.get("candidates"), rec.get("label")
    if not isinstance(cands, list) or len(cands) < 2:
        return "fewer than 2 candidates"
    if not isinstance(label, int) or not 0 <= label < len(cands) or cands[label] != rec["target"]:
        return "label does not point at the target"
    return None


def doc_to_text_nextitem(doc) -> str:
    return nextitem_prompt(record_of(doc)["history"])


def doc_to_choice_nextitem(doc) -> list[str]:
    return record_of(doc)["candidates"]


def doc_to_target_nextitem(doc) -> int:
    return record_of(doc)["label"]


def process_nextitem(doc, results) -> dict:
    """Candidates ranked by loglikelihood per character (the primary metrics; raw sums favour
    short titles) and by raw loglikelihood (`_raw`)."""
    rec = record_of(doc)
    ll = [float(r[0]) for r in results]
    norm = [x / max(len(c), 1) for x, c in zip(ll, rec["candidates"])]
    out = ranking_metrics(rank_of(norm, rec["label"]))
    out.update({f"{k}_raw": v for k, v in ranking_metrics(rank_of(ll, rec["label"])).items()})
    return out


def load_nextitem(**metadata):
    return load_checked("product_nextitem", metadata.get("data"), check_nextitem,
                        source=metadata.get("source"))
