"""Classical baselines, scored with the same metrics as the LLMs on the same split.

    baseline_scores("product_department", data=None) -> {"majority": {"acc": .., "macro_f1": ..},
                                                         "tfidf_logreg": {...}}
    baseline_scores("product_nextitem") -> {"random": {...}, "popularity": {...},
                                            "cooccurrence": {...}}

Classification (product_department, product_aisle; `_gen` variants use their base data):
  majority       the most frequent train label
  tfidf_logreg   TF-IDF of character 2-5-grams and word 1-2-grams of the product name, logistic
                 regression (scikit-learn), fitted on train
Next item (candidates and labels as stored in the records, ties broken by candidate order):
  random         every candidate scores the same (= the seeded candidate order)
  popularity     how often the item occurs in the train sequences of its source
  cooccurrence   how often the item occurs within WINDOW positions of the user's last items in
                 the train sequences (recency-weighted), popularity breaking ties

`data` selects records as for the lm-eval tasks (None, "demo", a directory, a file). Records that
fail the task's checks are left out and counted (`run_baselines(...).skipped`).
"""
from __future__ import annotations

import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Callable

from ..data import resolve_data_file
from ..errors import HarnessError
from ..data.labels import labels_file_for, load_label_space
from ..metrics.classify import accuracy, macro_f1
from ..metrics.ranking import METRICS, rank_of, ranking_metrics
from .category import check_classify
from .nextitem import check_nextitem
from .category import data_task
from .records import read_records

SEED = 0
WINDOW = 3          # co-occurrence: items at most this many positions apart
RECENT = 5          # co-occurrence: score against the user's last RECENT items


@dataclass
class BaselineReport:
    task: str
    split: str
    n: int
    scores: dict[str, dict[str, float]]
    skipped: dict[str, int] = field(default_factory=dict)
    n_train: int = 0


def _checked(task: str, split: str, data, check, source: str | None, skipped: Counter,
             limit: int | None = None) -> list:
    out = []
    for rec in read_records(task, split, data):
        if source is not None and rec.get("source") != source:
            continue
        why = check(rec, split)
        if why:
            skipped[f"{split}: {why}"] += 1
        else:
            out.append(rec)
            if limit is not None and len(out) == limit:
                break
    if not out:
        raise HarnessError(f"{task}: no usable {split} records"
                           + (f" for source {source!r}" if source else "")
                           + f" in {resolve_data_file(task, split, data)}")
    return out


# --- classification ----------------------------------------------------------------------

def tfidf_logreg(seed: int = SEED):
    """TF-IDF (character 2-5-grams within words + word 1-2-grams) -> logistic regression."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    features = make_union(
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2,
                        lowercase=True),
        TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, min_df=1,
                        lowercase=True, token_pattern=r"(?u)\b\w+\b"))
    # saga, 30 epochs: the accuracy of a converged lbfgs fit (0.851 vs 0.852 on the department
    # validation split) at a tenth of its time; 133 aisles still take minutes on 2 cores.
    return make_pipeline(features, LogisticRegression(C=10.0, solver="saga", max_iter=30,
                                                      tol=1e-3, random_state=seed))


def classify_baselines(task: str, data, split: str, source: str | None,
                       limit: int | None = None) -> BaselineReport:
    from sklearn.exceptions import ConvergenceWarning

    task = data_task(task)
    lf = labels_file_for(resolve_data_file(task, split, data))
    if lf.is_file():
        load_label_space(lf)
    skipped: Counter = Counter()
    train = _checked(task, "train", data, check_classify, source, skipped)
    test = _checked(task, split, data, check_classify, source, skipped, limit)
    x_train = [r["product"]["title"] for r in train]
    y_train = [r["label"] for r in train]
    x_test, gold = [r["product"]["title"] for r in test], [r["label"] for r in test]
    scores = {}
    majority = Counter(y_train).most_common(1)[0][0]
    preds = {"majority": [majority] * len(test)}
    if len(set(y_train)) > 1:
        with warnings.catch_warnings():  # saga stops at max_iter by design; tiny demo sets
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.filterwarnings("ignore", "The number of unique classes")
            model = tfidf_logreg().fit(x_train, y_train)
        preds["tfidf_logreg"] = list(model.predict(x_test))
    for name, pred in preds.items():
        pairs = list(zip(gold, pred))
        scores[name] = {"acc": accuracy(pairs), "macro_f1": macro_f1(pairs)}
    return BaselineReport(task, split, len(test), scores, dict(skipped), len(train))


# --- next item ---------------------------------------------------------------------------

def _sequences(train: list[dict]) -> dict[str, list[list[str]]]:
    by_source: dict[str, list[list[str]]] = defaultdict(list)
    for r in train:
        by_source[r["source"]].append(list(r.get("history_ids") or []) + [r["target_id"]])
    return by_source


def _popularity(seqs: list[list[str]]) -> Counter:
    return Counter(i for s in seqs for i in s)


def _cooccurrence(seqs: list[list[str]]) -> dict[str, Counter]:
    co: dict[str, Counter] = defaultdict(Counter)
    for s in seqs:
        for i, a in enumerate(s):
            for b in s[i + 1:i + 1 + WINDOW]:
                if a != b:
                    co[a][b] += 1
                    co[b][a] += 1
    return co


def nextitem_baselines(task: str, data, split: str, source: str | None,
                       limit: int | None = None) -> BaselineReport:
    skipped: Counter = Counter()
    train = _checked(task, "train", data, check_nextitem, source, skipped)
    test = _checked(task, split, data, check_nextitem, source, skipped, limit)
    if any("candidate_ids" not in r for r in test):
        raise HarnessError(f"{task}: {split} records need candidate_ids for the baselines")
    seqs = _sequences(train)
    pop = {s: _popularity(v) for s, v in seqs.items()}
    co = {s: _cooccurrence(v) for s, v in seqs.items()}

    def cooc_score(r, item):
        recent = (r.get("history_ids") or [])[-RECENT:]
        table = co.get(r["source"], {})
        c = sum(table.get(h, {}).get(item, 0) / (len(recent) - k)
                for k, h in enumerate(recent))
        return (c, pop.get(r["source"], Counter())[item])

    scorers: dict[str, Callable] = {
        "random": lambda r, item: 0,
        "popularity": lambda r, item: pop.get(r["source"], Counter())[item],
        "cooccurrence": cooc_score,
    }
    scores = {}
    for name, fn in scorers.items():
        sums = dict.fromkeys(METRICS, 0.0)
        for r in test:
            m = ranking_metrics(rank_of([fn(r, c) for c in r["candidate_ids"]], r["label"]))
            for k in sums:
                sums[k] += m[k]
        scores[name] = {k: v / len(test) for k, v in sums.items()}
    return BaselineReport(task, split, len(test), scores, dict(skipped), len(train))


# data task -> fn(task, data, split, source, limit) -> BaselineReport
BASELINES: dict[str, Callable[..., BaselineReport]] = {
    "product_department": classify_baselines,
    "product_aisle": classify_baselines,
    "product_nextitem": nextitem_baselines,
}


def _base_task(task: str) -> str:
    """product_department_gen -> product_department; product_nextitem_gift_cards -> ..."""
    t = data_task(task)
    return next((b for b in BASELINES if t == b or t.startswith(b + "_")), t)


SOURCE_VARIANTS = {"product_nextitem_scientific": "amazon2018_scientific",
                   "product_nextitem_gift_cards": "amazon2018_gift_cards"}


def run_baselines(task: str, data=None, split: str = "test", source: str | None = None,
                  limit: int | None = None) -> BaselineReport:
    """`limit`: score the first N usable records of the split only, the documents lm-eval's
    `--limit N` scores (the split files are in a mixed order)."""
    base = _base_task(task)
    if base not in BASELINES:
        raise HarnessError(f"no baselines for task {task!r}; tasks with baselines: "
                           f"{', '.join(BASELINES)}")
    source = source or SOURCE_VARIANTS.get(task)
    if limit is not None and limit < 1:
        raise HarnessError(f"--limit must be >= 1 (got {limit})")
    return BASELINES[base](base, data, split, source, limit)


def baseline_scores(task: str, data=None, limit: int | None = None) -> dict[str, dict[str, float]]:
    """baseline name -> metric -> value on the test split (the contract of `harness compare`);
    `limit` as lm-eval's --limit."""
    return run_baselines(task, data, limit=limit).scores
