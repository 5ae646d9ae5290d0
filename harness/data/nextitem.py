"""product_nextitem data: a user's last items -> the next item, ranked among sampled candidates.

Sources (every one found below the raw directory is used; `source` tells them apart):
  * UniSRec-style leave-one-out files (Amazon 2018 Industrial & Scientific):
    X.text (`item_id<TAB>title. category path. brand.`), X.item2index (ASIN<TAB>index),
    X.{train,valid,test}.inter (`user<TAB>history indices<TAB>next index`). test/valid rows
    are used as they are; for train, each user's longest row (the sequence before the
    validation item).
  * Amazon Review Data 2018 reviews + metadata (meta_X.json + X*.json, e.g. Gift Cards 5-core):
    each user's reviews in time order (unixReviewTime, then asin) are the sequence; an item
    reviewed twice counts once (the first time). Leave-one-out: the last item is the test
    target, the one before the validation target, the one before that the train target.

Record (one per user and split):
  {"id", "source", "user", "history_ids": [all earlier items], "history": [titles of the last
   HISTORY_SHOWN of them], "target_id", "target", and in validation/test
   "candidate_ids", "candidates" (titles), "label" (index of the target among the candidates)}
Candidates are the target plus `negatives` items drawn uniformly (seeded per record) from the
source's items with a title, never from the user's history, never repeating a title. Titles are
trimmed to MAX_TITLE_CHARS at a word boundary. Train records carry no candidates: the trainer
learns history -> next title, which is exactly what the loglikelihood ranking scores.

Bad input is counted in the report: malformed rows, unknown item ids, items without a title
("item missing from the text file"), users with a too short history, too few items to sample.
"""
from __future__ import annotations

import hashlib
import os
import random
from collections import defaultdict
from pathlib import Path

from ..errors import HarnessError
from ..files import stable_order, write_json, write_jsonl
from . import SPLITS
from .product import clean_text
from .sources import Skips, json_lines, open_raw

TASK = "product_nextitem"
NEGATIVES = int(os.environ.get("HARNESS_NEXTITEM_NEGATIVES", 19))
HISTORY_SHOWN = 10
MIN_HISTORY = 1
MAX_TITLE_CHARS = 100
SEED = 0
# Category roots that start the category path in UniSRec .text lines ("title. <root> ...").
CATEGORY_ROOTS = ("Industrial & Scientific",)
INTER_SPLITS = {"train": "train", "validation": "valid", "test": "test"}


def trim_title(text: str, limit: int = MAX_TITLE_CHARS) -> str:
    text = clean_text(text)
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:-")


def unisrec_title(text: str) -> str:
    """The title part of "title. category path. brand. " (category may be empty: ". . ")."""
    ends = [text.find(f". {root}") for root in CATEGORY_ROOTS] + [text.find(". . ")]
    ends = [i for i in ends if i > 0]
    return text[:min(ends)] if ends else text.strip().rstrip(".")


def _norm(title: str) -> str:
    return " ".join(title.lower().split())


# --- readers: each returns (titles {item: title}, {split: [(user, history, target)]}) ---------

def _lines(path: Path):
    with open_raw(path) as f:
        try:
            for lineno, line in enumerate(f, 1):
                line = line.rstrip("\n")
                if lineno == 1 and ":token" in line:  # RecBole header
                    continue
                if line.strip():
                    yield lineno, line.split("\t")
        except UnicodeDecodeError as e:
            raise HarnessError(f"{path}: not UTF-8 text ({e.reason})") from e


def read_unisrec(stem: Path, skips: Skips):
    titles = {}
    for _, f in _lines(stem.with_suffix(".text")):
        if len(f) != 2 or not f[1].strip():
            skips.skip("malformed .text row")
            continue
        titles[f[0].strip()] = trim_title(unisrec_title(f[1]))
    index = {}
    for _, f in _lines(stem.with_suffix(".item2index")):
        if len(f) != 2 or not f[1].strip().isdigit():
            skips.skip("malformed .item2index row")
            continue
        index[f[1].strip()] = f[0].strip()
    if not index:
        raise HarnessError(f"{stem.with_suffix('.item2index')}: no `ASIN<TAB>index` rows")
    rows: dict[str, list] = {}
    for split, name in INTER_SPLITS.items():
        by_user: dict[str, tuple] = {}
        for _, f in _lines(stem.with_suffix(f".{name}.inter")):
            if len(f) != 3:
                skips.skip("malformed .inter row")
                continue
            ids = f[1].split() + [f[2].strip()]
            if not all(i in index for i in ids):
                skips.skip("unknown item index")
                continue
            items = [index[i] for i in ids]
            user = f[0].strip()
            if user not in by_user or len(items) > len(by_user[user][1]) + 1:
                by_user[user] = (user, items[:-1], items[-1])  # train: longest row per user
        rows[split] = [by_user[u] for u in sorted(by_user, key=lambda u: (len(u), u))]
    return titles, rows


def read_amazon_reviews(meta: Path, reviews: Path, skips: Skips):
    titles = {}
    for m in json_lines(meta, skips):
        asin, title = m.get("asin"), trim_title(m.get("title") or "")
        if asin and title:
            titles.setdefault(str(asin), title)
    events: dict[str, list] = defaultdict(list)
    for r in json_lines(reviews, skips):
        user, asin, t = r.get("reviewerID"), r.get("asin"), r.get("unixReviewTime")
        if not user or not asin or not isinstance(t, (int, float)):
            skips.skip("review without reviewerID/asin/unixReviewTime")
            continue
        events[str(user)].append((t, str(asin)))
    rows: dict[str, list] = {s: [] for s in SPLITS}
    for user in sorted(events):
        seq, seen = [], set()
        for _, asin in sorted(events[user]):
            if asin in seen:
                skips.skip("repeated item of a user (first kept)")
                continue
            seen.add(asin)
            seq.append(asin)
        for back, split in ((1, "test"), (2, "validation"), (3, "train")):
            if len(seq) < back:
                skips.skip("history too short")
                continue
            rows[split].append((user, seq[:len(seq) - back], seq[len(seq) - back]))
    return titles, rows


def discover(raw_dir: Path) -> list[tuple[str, str, callable]]:
    """(label, source, reader) for every sequence source below raw_dir."""
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise HarnessError(f"{raw_dir}: not a directory")
    found = []
    for train in sorted(raw_dir.rglob("*.train.inter")):
        stem = train.with_name(train.name[:-len(".train.inter")])
        need = [stem.with_suffix(s) for s in (".text", ".item2index", ".valid.inter",
                                              ".test.inter")]
        if all(p.is_file() for p in need):
            found.append((f"{stem.parent.name} ({stem.name}.*.inter)", stem.parent.name,
                          lambda s, st=stem: read_unisrec(st, s)))
    for meta in sorted(list(raw_dir.rglob("meta_*.json")) + list(raw_dir.rglob("meta_*.jsonl"))):
        name = meta.name[len("meta_"):].rsplit(".", 1)[0]
        reviews = sorted(p for p in meta.parent.iterdir() if p != meta and p.name.startswith(name)
                         and p.suffix in (".json", ".jsonl"))
        if reviews:
            found.append((f"{meta.parent.name} ({reviews[0].name})", meta.parent.name,
                          lambda s, m=meta, r=reviews[0]: read_amazon_reviews(m, r, s)))
    return found


# --- records -----------------------------------------------------------------------------

def sample_candidates(target: str, history: list[str], pool: list[str], titles: dict,
                      negatives: int, rng: random.Random) -> list[str] | None:
    """target + `negatives` distinct-title items outside the history, shuffled; None when the
    pool is too small."""
    banned = set(history) | {target}
    used = {_norm(titles[target])}
    picked: list[str] = []
    tries = 0
    while len(picked) < negatives and tries < 50 * negatives:
        tries += 1
        item = pool[rng.randrange(len(pool))]
        if item in banned or _norm(titles[item]) in used:
            continue
        banned.add(item)
        used.add(_norm(titles[item]))
        picked.append(item)
    if len(picked) < negatives:  # small pools: scan them all in random order
        rest = [i for i in pool if i not in banned]
        rng.shuffle(rest)
        for item in rest:
            if len(picked) == negatives:
                break
            if _norm(titles[item]) not in used:
                used.add(_norm(titles[item]))
                picked.append(item)
    if len(picked) < negatives:
        return None
    cands = picked + [target]
    rng.shuffle(cands)
    return cands


def make_records(source: str, titles: dict, rows: dict, split: str, negatives: int,
                 seed: int, skips: Skips) -> list[dict]:
    pool = sorted(titles)
    out = []
    for user, history, target in rows.get(split, []):
        if target not in titles:
            skips.skip("item missing from the text file (target)")
            continue
        shown = [titles[i] for i in history if i in titles]
        if len(shown) < len(history):
            skips.update({"item missing from the text file (history)": len(history) - len(shown)})
        if len(shown) < MIN_HISTORY:
            skips.skip("history too short")
            continue
        rec = {"id": f"{source}:{user}", "source": source, "user": user,
               "history_ids": history, "history": shown[-HISTORY_SHOWN:],
               "target_id": target, "target": titles[target]}
        if split != "train":
            key = f"{seed}:{source}:{split}:{user}"
            rng = random.Random(int(hashlib.sha256(key.encode()).hexdigest()[:16], 16))
            cands = sample_candidates(target, history, pool, titles, negatives, rng)
            if cands is None:
                skips.skip("too few items to sample negatives")
                continue
            rec.update(candidate_ids=cands, candidates=[titles[i] for i in cands],
                       label=cands.index(target))
        out.append(rec)
    return out


def prepare_nextitem(raw_dir: Path, out: Path, negatives: int = NEGATIVES,
                     seed: int = SEED) -> dict:
    if negatives < 1:
        raise HarnessError(f"product_nextitem: negatives must be >= 1 (got {negatives})")
    sources = discover(Path(raw_dir))
    if not sources:
        raise HarnessError(f"{raw_dir}: no product_nextitem source found (looked for "
                           f"X.text + X.item2index + X.{{train,valid,test}}.inter, and Amazon "
                           f"meta_X.json + X*.json review pairs)")
    skips = Skips()
    by_split: dict[str, list[dict]] = {s: [] for s in SPLITS}
    counts: dict[str, dict] = {}
    for label, source, reader in sources:
        titles, rows = reader(skips)
        counts[label] = {}
        for split in SPLITS:
            recs = make_records(source, titles, rows, split, negatives, seed, skips)
            counts[label][split] = len(recs)
            by_split[split] += recs
    if not by_split["test"]:
        raise HarnessError(f"{raw_dir}: no usable product_nextitem test records")
    for split, recs in by_split.items():
        recs = stable_order(recs, key=lambda r: r["id"])  # mixed --limit
        write_jsonl(out / TASK / f"{split}.jsonl", recs)
    counts["total"] = {s: len(r) for s, r in by_split.items()}
    report = {"task": TASK, "counts": counts, "skipped": dict(skips), "negatives": negatives,
              "history_shown": HISTORY_SHOWN, "seed": seed}
    write_json(out / TASK / "prepare.json", report)
    return report


def prepare_task(raw_dir: Path | None, out: Path) -> dict:
    if raw_dir is None:
        raise HarnessError("product_nextitem: give --raw-dir (Amazon sequences)")
    return prepare_nextitem(Path(raw_dir), Path(out))
