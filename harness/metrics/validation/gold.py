"""`harness metrics validate --gold FILE ...`: the metrics measured against a gold set labelled
by reading (tests/data/gold_*.jsonl; format and rules in tasks/product_review/LABELLING.md),
never against the metric's own reflection.

Every gold item names its product (`product_id`), which is joined from the prepared data. The
figures, each with a bootstrap 95% CI over reviews (harness.metrics.bootstrap):

  hallucination  claim-level precision / recall / F1 of the metric's unsupported + contradicted
                 detection. A metric flag is each span of a claim check_claims() does not call
                 supported; it matches a gold bad claim (unsupported or contradicted) when their
                 character spans overlap. precision = flags overlapping a gold bad claim / flags,
                 recall = gold bad claims overlapped by a flag / gold bad claims, F1 their
                 harmonic mean (pooled over reviews). Per gold claim kind too (a flag takes the
                 kind of the gold claim it overlaps, else its own kind mapped by METRIC_KIND).
  false flags    review level: share of reviews with no gold bad claim where the metric flags
                 anything (and per kind: where it flags a claim of that kind).
  fluency        generated items: the metric flags a text when any degenerate_* flag fires
                 (empty, cutoff, echo, loop); gold says not fluent for loop / echo / truncated /
                 off-topic. Accuracy = share where the two agree.
  relevance      each gold real item: its own review vs a review of another product of the same
                 category leaf (the last category element; when the leaf has no other product,
                 the deepest shared category level, counted in `fallback`); accuracy = share of
                 pairs where relevance_product(own) > relevance_product(other).
                 Reader labels (a gold file whose rows carry `reader`, e.g.
                 tests/data/gold_relevance_reader.jsonl): a person shown the product and the
                 two reviews in hidden order said which one is about it, or "either" when
                 nothing in them tells; `reader` in the figures gives the reader's own
                 accuracy and the metric's accuracy on the pairs the reader could decide.
  agreement      items labelled twice (same id in two passes): Cohen's kappa at review level
                 (has a bad claim: yes / no) and at character level (each character labelled
                 none / supported / unsupported / contradicted), and on the fluency label.

Items are split into a development half (error analysis, metric fixes) and a test half (only
reported) by a stable hash of product_id (`half_of`); figures are for the chosen half (default
test). Agreement is about the labels, not the metric: it uses every doubly labelled item.
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ...errors import HarnessError
from ...files import sha256_text
from ..bootstrap import bootstrap_ci

GOLD_LABELS = ("supported", "unsupported", "contradicted")
BAD = ("unsupported", "contradicted")
CHAR_LABELS = ("none",) + GOLD_LABELS
FLUENCY_LABELS = ("fluent", "loop", "echo", "truncated", "off-topic")
ITEM_KINDS = ("real", "generated")
HALVES = ("dev", "test", "all")
PARTS = ("hallucination", "fluency", "relevance", "agreement")
REQUIRED_KEYS = ("id", "kind", "split", "product_id", "text", "claims")
# the metric's claim kinds -> the gold kinds, for flags that overlap no gold claim
METRIC_KIND = {"quantity": "quantity", "price": "price", "discount": "discount",
               "percent": "other", "rating": "rating", "rating_count": "rating",
               "count": "count", "version": "feature", "model": "model", "brand": "brand",
               "colour": "colour", "material": "material", "feature": "feature",
               "compatibility": "compatibility"}
# the fluency flags that correspond to a gold fluency label
FLAG_OF_LABEL = {"loop": "degenerate_loop", "echo": "degenerate_echo",
                 "truncated": "degenerate_cutoff"}
FLUENCY_FLAGS = ("degenerate_empty", "degenerate_cutoff", "degenerate_echo", "degenerate_loop")
# acceptance values of issue #13: figure -> (op, value)
ACCEPTANCE = {"claim_f1": (">=", 0.85), "false_flag_rate": ("<=", 0.05),
              "relevance_accuracy": (">=", 0.80), "fluency_accuracy": (">=", 0.90)}
N_ERRORS = 20
N_BOOT = 2000


# --- gold items ------------------------------------------------------------------------------

@dataclass
class GoldItem:
    id: str
    kind: str
    split: str
    product_id: str
    text: str
    claims: list[dict]
    review_index: int | None = None
    source: dict | None = None
    fluency: str | None = None
    labeller: str | None = None
    where: str = ""                      # file:line

    @property
    def bad_claims(self) -> list[dict]:
        return [c for c in self.claims if c["label"] in BAD]

    @property
    def has_bad(self) -> bool:
        return bool(self.bad_claims)


def half_of(product_id: str) -> str:
    """'dev' or 'test': a stable hash of the product id (salted, so that it is independent of
    the data split, which hashes the same ids; every item of a product is in the same half)."""
    return "dev" if int(sha256_text(f"gold-half:{product_id}")[:8], 16) % 2 == 0 else "test"


def _check_item(row: dict, where: str) -> GoldItem:
    missing = [k for k in REQUIRED_KEYS if k not in row]
    if missing:
        raise HarnessError(f"{where}: gold item lacks {', '.join(missing)}")
    text = row["text"]
    if not isinstance(text, str):
        raise HarnessError(f"{where}: 'text' is not a string")
    if row["kind"] not in ITEM_KINDS:
        raise HarnessError(f"{where}: kind {row['kind']!r} is not one of {', '.join(ITEM_KINDS)}")
    claims = []
    for j, c in enumerate(row["claims"] or []):
        s, e = c.get("start"), c.get("end")
        if not (isinstance(s, int) and isinstance(e, int) and 0 <= s < e <= len(text)):
            raise HarnessError(f"{where}: claims[{j}] has no valid start/end ({s}, {e}) in a "
                               f"text of {len(text)} characters")
        if c.get("span") is not None and c["span"] != text[s:e]:
            raise HarnessError(f"{where}: claims[{j}] span {c['span']!r} != text[{s}:{e}] "
                               f"{text[s:e]!r}")
        if c.get("label") not in GOLD_LABELS:
            raise HarnessError(f"{where}: claims[{j}] label {c.get('label')!r} is not one of "
                               f"{', '.join(GOLD_LABELS)}")
        claims.append({**c, "kind": c.get("kind") or "other"})
    flu = row.get("fluency")
    if flu is not None and flu not in FLUENCY_LABELS:
        raise HarnessError(f"{where}: fluency {flu!r} is not one of {', '.join(FLUENCY_LABELS)}")
    return GoldItem(id=str(row["id"]), kind=row["kind"], split=row["split"],
                    product_id=str(row["product_id"]), text=text, claims=claims,
                    review_index=row.get("review_index"), source=row.get("source"),
                    fluency=flu, labeller=row.get("labeller"), where=where)


READER_CHOICES = ("own", "other", "either")


def _check_reader(row: dict, where: str) -> dict:
    missing = [k for k in ("id", "other_product", "other_review_sha256", "reader") if k not in row]
    if missing:
        raise HarnessError(f"{where}: relevance reader label lacks {', '.join(missing)}")
    if row["reader"] not in READER_CHOICES:
        raise HarnessError(f"{where}: reader {row['reader']!r} is not one of "
                           f"{', '.join(READER_CHOICES)}")
    return {**row, "where": where}


def read_gold(paths: Iterable[str | Path]) -> list[GoldItem]:
    """Every item of the gold files, in file order; a malformed item is one HarnessError naming
    the file and line. Rows with a `reader` key are relevance reader labels
    (read_gold_and_reader returns both)."""
    return read_gold_and_reader(paths)[0]


def read_gold_and_reader(paths: Iterable[str | Path]) -> tuple[list[GoldItem], dict[str, dict]]:
    from ...files import read_jsonl

    items, reader = [], {}
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise HarnessError(f"{p}: gold file not found")
        # read_jsonl skips blank lines: count lines ourselves for the error messages
        lines = [i for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
                 if line.strip()]
        for lineno, row in zip(lines, read_jsonl(p)):
            if isinstance(row, dict) and "reader" in row:
                lab = _check_reader(row, f"{p}:{lineno}")
                if lab["id"] in reader:
                    raise HarnessError(f"{p}:{lineno}: a second reader label for {lab['id']}")
                reader[lab["id"]] = lab
            else:
                items.append(_check_item(row, f"{p}:{lineno}"))
    return items, reader


def primary_and_second(items: list[GoldItem]) -> tuple[list[GoldItem], list[tuple[GoldItem,
                                                                                     GoldItem]]]:
    """One item per id for the figures (the 'pass1' label when an id was labelled twice, else
    the first seen) and the (first, second) pairs of doubly labelled ids for the agreement.
    An id labelled twice in one file by one labeller is an error (unless the lines are equal);
    in two files it is a second pass whatever the labeller field says."""
    def file_of(it: GoldItem) -> str:
        return it.where.rsplit(":", 1)[0]

    by_id: dict[str, list[GoldItem]] = defaultdict(list)
    for it in items:
        same = [o for o in by_id[it.id] if o.labeller == it.labeller
                and file_of(o) == file_of(it)]
        if same:
            if same[0].claims == it.claims and same[0].fluency == it.fluency:
                continue        # the same line twice
            raise HarnessError(f"{it.where}: id {it.id} labelled again by {it.labeller!r} "
                               f"(also at {same[0].where}) with other labels")
        by_id[it.id].append(it)
    primary, pairs = [], []
    for group in by_id.values():
        group = sorted(group, key=lambda g: g.labeller != "pass1")   # stable: pass1 first
        primary.append(group[0])
        pairs += [(group[0], other) for other in group[1:]]
    return primary, pairs


# --- prepared data -----------------------------------------------------------------------------

def load_prepared(data: str | Path | None = None) -> list[dict]:
    """All product_review records of a prepared folder (default: the project's prepared data);
    a clear error when there is none (never the demo set: gold items name real products)."""
    from ...data import SPLITS, data_dir
    from ...tasks.records import read_records

    root = Path(data) if data is not None else data_dir()
    if not (root / "product_review").is_dir() and not any(
            (root / f"{s}.jsonl").exists() for s in SPLITS):
        raise HarnessError(f"{root}: no prepared product_review data; run `harness data prepare "
                           f"--raw-dir ../shared/data` (or give --data PREPARED_DIR)")
    return [r for s in SPLITS for r in read_records("product_review", s, root)]


def join_products(items: list[GoldItem], records: list[dict], data_name: str = "") -> dict:
    """product_id -> record for every item; a missing product is one HarnessError."""
    by_id = {r["id"]: r for r in records}
    for it in items:
        if it.product_id not in by_id:
            raise HarnessError(f"{it.where}: product {it.product_id} (item {it.id}) is not in the "
                               f"prepared data{' ' + data_name if data_name else ''}; prepare "
                               f"it from the same raw data (`harness data prepare --raw-dir "
                               f"../shared/data`) or give --data")
    return by_id


def text_mismatches(items: list[GoldItem], by_id: dict) -> list[str]:
    """Real items whose text is not the record's review `review_index` verbatim."""
    out = []
    for it in items:
        if it.kind != "real":
            continue
        revs = by_id[it.product_id].get("reviews") or [{"text": by_id[it.product_id]["review"]}]
        i = it.review_index
        if not (isinstance(i, int) and 0 <= i < len(revs) and revs[i]["text"] == it.text):
            out.append(it.id)
    return out


# --- hallucination: overlap matching -------------------------------------------------------------

def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def metric_flags(metric_claims: list[dict]) -> list[dict]:
    """One flag per span of every claim the metric does not call supported."""
    out = []
    for c in metric_claims:
        if c["status"] == "supported":
            continue
        for s, e in c.get("spans") or [[c["start"], c["end"]]]:
            out.append({"start": s, "end": e, "claim": c})
    return out


@dataclass
class ItemMatch:
    """The overlap matching of one review's gold claims and metric claims."""
    n_bad: int                 # gold bad claims
    bad_hit: list[bool]        # per gold bad claim: overlapped by a flag
    flags: list[dict]          # the metric's flags
    flag_ok: list[bool]        # per flag: overlaps a gold bad claim
    flag_kind: list[str]       # per flag: the gold kind it is attributed to
    gold_status: list[str]     # per gold claim (all labels): worst metric status overlapping it

    @property
    def flagged(self) -> bool:
        return bool(self.flags)


_WORST = {"none": 0, "supported": 1, "unsupported": 2, "contradicted": 3}


def match_claims(gold_claims: list[dict], metric_claims: list[dict],
                 text: str | None = None) -> ItemMatch:
    """Match one review's metric flags to its gold claims by overlapping character spans.
    With `text`, a flag that overlaps no gold claim but says exactly what a gold bad claim
    says (an unlabelled repeat) counts as on that claim."""
    bad = [g for g in gold_claims if g["label"] in BAD]
    flags = metric_flags(metric_claims)
    span = lambda d: (d["start"], d["end"])  # noqa: E731
    bad_hit = [any(overlaps(span(g), span(f)) for f in flags) for g in bad]
    flag_ok, flag_kind = [], []
    for f in flags:
        hits = [g for g in bad if overlaps(span(g), span(f))]
        over = hits or [g for g in gold_claims if overlaps(span(g), span(f))]
        if not over and text is not None:
            # an unlabelled repeat of a labelled bad claim (the guide labels a claim repeated
            # by a loop up to 5 times and leaves the rest): matched by its exact text
            said = text[f["start"]:f["end"]].strip().lower()
            hits = [g for g in bad if said and text[g["start"]:g["end"]].strip().lower() == said]
            over = hits
        flag_ok.append(bool(hits))
        flag_kind.append(over[0]["kind"] if over else
                         METRIC_KIND.get(f["claim"]["kind"], "other"))
    gold_status = []
    for g in gold_claims:
        st = "none"
        for c in metric_claims:
            if any(overlaps(span(g), (s, e)) for s, e in c.get("spans") or
                   [[c["start"], c["end"]]]) and _WORST[c["status"]] > _WORST[st]:
                st = c["status"]
        gold_status.append(st)
    return ItemMatch(len(bad), bad_hit, flags, flag_ok, flag_kind, gold_status)


def _safe_div(a: float, b: float) -> float:
    return a / b if b else float("nan")


def _div(a, b):
    return np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)


def prf(flag_ok, flags, hit, bad):
    """(precision, recall, F1) from per-review counts, pooled over the last axis (so that one
    call scores every bootstrap resample). precision is nan without flags, recall and F1 nan
    without gold bad claims; F1 is 0 when no flag or no correct flag."""
    a, b, c, d = (np.asarray(x, dtype=float).sum(axis=-1) for x in (flag_ok, flags, hit, bad))
    with np.errstate(divide="ignore", invalid="ignore"):
        p, r = _div(a, b), _div(c, d)
        f = np.where(d > 0, np.where((b > 0) & (a > 0), 2 * p * r / (p + r), 0.0), np.nan)
    return p, r, f


def _ci(statistic, columns, seed: int = 0) -> dict:
    return bootstrap_ci(statistic, columns, n_boot=N_BOOT, seed=seed)


def _mean_ci(values: list[float], seed: int = 0) -> dict:
    return _ci(lambda x: x.mean(axis=-1), [values], seed)


def hallucination_figures(items: list[GoldItem], matches: list[ItemMatch]) -> dict:
    """P/R/F1 (with CIs), review-level false-flag rate, per gold kind and per item kind."""
    def prf_block(rows: list[tuple[int, int, int, int]]) -> dict:
        cols = np.array(rows, dtype=float).reshape(-1, 4).T if rows else np.zeros((4, 0))
        out = {}
        for i, name in enumerate(("precision", "recall", "f1")):
            out[name] = _ci(lambda a, b, c, d, i=i: prf(a, b, c, d)[i], list(cols))
        out.update(gold_bad_claims=int(cols[3].sum()), bad_claims_found=int(cols[2].sum()),
                   metric_flags=int(cols[1].sum()), flags_on_bad_claims=int(cols[0].sum()),
                   reviews=len(rows))
        return out

    rows = [(sum(m.flag_ok), len(m.flags), sum(m.bad_hit), m.n_bad) for m in matches]
    clean = [(it, m) for it, m in zip(items, matches) if not it.has_bad]
    out = {"claims": prf_block(rows),
           "false_flag_rate": _mean_ci([float(m.flagged) for _, m in clean]),
           "reviews": len(items), "reviews_with_bad_claim": sum(it.has_bad for it in items),
           "reviews_without_bad_claim": len(clean)}
    kinds = sorted({g["kind"] for it in items for g in it.claims} |
                   {k for m in matches for k in m.flag_kind})
    by_kind = {}
    for k in kinds:
        krows = []
        for it, m in zip(items, matches):
            bad = [g for g in it.bad_claims]
            kb = [h for g, h in zip(bad, m.bad_hit) if g["kind"] == k]
            kf = [ok for ok, fk in zip(m.flag_ok, m.flag_kind) if fk == k]
            krows.append((sum(kf), len(kf), sum(kb), len(kb)))
        block = prf_block(krows)
        block["false_flag_rate"] = _mean_ci([float(k in m.flag_kind) for _, m in clean])
        by_kind[k] = block
    out["by_kind"] = by_kind
    out["by_item_kind"] = {}
    for ik in ITEM_KINDS:
        sel = [(it, m) for it, m in zip(items, matches) if it.kind == ik]
        if sel:
            b = prf_block([(sum(m.flag_ok), len(m.flags), sum(m.bad_hit), m.n_bad)
                           for _, m in sel])
            b["false_flag_rate"] = _mean_ci([float(m.flagged) for it, m in sel
                                             if not it.has_bad])
            out["by_item_kind"][ik] = b
    conf: dict = {lab: dict.fromkeys(_WORST, 0) for lab in GOLD_LABELS}
    for it, m in zip(items, matches):
        for g, st in zip(it.claims, m.gold_status):
            conf[g["label"]][st] += 1
    out["gold_label_vs_metric_status"] = conf
    return out


def check_items(items: list[GoldItem], by_id: dict,
                progress: Callable[[int], None] | None = None) -> list[list[dict]]:
    """The metric's claims (check_claims) of every item."""
    from ..hallucination import check_claims
    out = []
    for it in items:
        out.append(check_claims(by_id[it.product_id]["product"], it.text))
        if progress:
            progress(1)
    return out


def _context(text: str, s: int, e: int, width: int = 100) -> str:
    return (("…" if s > width else "") + text[max(0, s - width):s] + "[[" + text[s:e] + "]]" +
            text[e:e + width] + ("…" if e + width < len(text) else ""))


def _claim_brief(c: dict) -> dict:
    return {k: c.get(k) for k in ("kind", "attribute", "value", "text", "status", "evidence",
                                  "spans")}


def hallucination_errors(items: list[GoldItem], by_id: dict, claims: list[list[dict]],
                         matches: list[ItemMatch], n: int = N_ERRORS) -> dict:
    """The worst misses (gold bad claims no flag overlaps) and false flags (flags that overlap
    no gold bad claim). Misses: contradicted before unsupported, then those the metric checked
    and called supported before those it never extracted. False flags: 'contradicted' before
    'unsupported', then in reviews with no gold bad claim first, then flags the gold calls
    supported first. Ties: by a hash of item id and offset (stable)."""
    misses, falses = [], []
    for it, cl, m in zip(items, claims, matches):
        title = by_id[it.product_id]["product"].get("title", "")
        bad = it.bad_claims
        for g, hit in zip(bad, m.bad_hit):
            if hit:
                continue
            seen = [c for c in cl if any(overlaps((g["start"], g["end"]), (s, e))
                                         for s, e in c["spans"])]
            how = "checked, called supported" if seen else "not extracted"
            key = (g["label"] != "contradicted", not seen,
                   sha256_text(f"{it.id}:{g['start']}"))
            misses.append((key, {"id": it.id, "item_kind": it.kind, "product_title": title,
                                 "text": it.text, "span": [g["start"], g["end"]],
                                 "span_text": it.text[g["start"]:g["end"]],
                                 "context": _context(it.text, g["start"], g["end"]),
                                 "gold_label": g["label"], "gold_kind": g["kind"],
                                 "gold_field": g.get("field"), "gold_note": g.get("note"),
                                 "metric": how,
                                 "metric_claims": [_claim_brief(c) for c in seen]}))
        for f, ok, fk in zip(m.flags, m.flag_ok, m.flag_kind):
            if ok:
                continue
            over = [g for g in it.claims if overlaps((g["start"], g["end"]),
                                                     (f["start"], f["end"]))]
            key = (f["claim"]["status"] != "contradicted", it.has_bad, not over,
                   sha256_text(f"{it.id}:{f['start']}"))
            falses.append((key, {"id": it.id, "item_kind": it.kind, "product_title": title,
                                 "text": it.text, "span": [f["start"], f["end"]],
                                 "span_text": it.text[f["start"]:f["end"]],
                                 "context": _context(it.text, f["start"], f["end"]),
                                 "gold_label": over[0]["label"] if over else "no claim",
                                 "gold_kind": fk, "gold_note": over[0].get("note") if over
                                 else None, "metric_claim": _claim_brief(f["claim"]),
                                 "metric_reason": f"{f['claim']['status']}: "
                                                  f"{f['claim'].get('evidence') or 'not in JSON'}"}))
    misses.sort(key=lambda x: x[0])
    falses.sort(key=lambda x: x[0])
    return {"misses_total": len(misses), "false_flags_total": len(falses),
            "misses_by": dict(Counter(f"{d['gold_label']} {d['gold_kind']}, {d['metric']}"
                                      for _, d in misses).most_common()),
            "false_flags_by": dict(Counter(
                f"metric {d['metric_claim']['status']} {d['metric_claim']['kind']}, gold "
                f"{d['gold_label']}, {d['item_kind']}" for _, d in falses).most_common()),
            "worst_misses": [d for _, d in misses[:n]],
            "worst_false_flags": [d for _, d in falses[:n]]}


# --- fluency ---------------------------------------------------------------------------------

def fluency_reference(item: GoldItem, explicit: str | None) -> str | None:
    """The reference LM `harness score` would use for this generated review: the explicit
    choice, else the bundled model other than the one that wrote it."""
    from ..config import reference_for
    return reference_for((item.source or {}).get("model"), explicit)


def score_fluency(items: list[GoldItem], by_id: dict, explicit: str | None,
                  progress: Callable[[int], None] | None = None) -> list[dict]:
    from ..fluency import fluency_scorer

    groups: dict = defaultdict(list)
    for i, it in enumerate(items):
        groups[fluency_reference(it, explicit)].append(i)
    out: list[dict] = [{} for _ in items]
    for ref, ix in groups.items():
        for k in range(0, len(ix), 32):
            chunk = ix[k:k + 32]
            got = fluency_scorer([by_id[items[i].product_id] for i in chunk],
                                 [items[i].text for i in chunk], ref)
            for i, d in zip(chunk, got):
                out[i] = {**d, "reference": ref}
            if progress:
                progress(len(chunk))
    return out


def fluency_figures(items: list[GoldItem], scores: list[dict]) -> dict:
    flagged = [bool(s.get("degenerate", 0) > 0) for s in scores]
    gold_bad = [it.fluency != "fluent" for it in items]
    agree = [float(f == g) for f, g in zip(flagged, gold_bad)]
    by_label = {}
    for lab in FLUENCY_LABELS:
        sel = [(f, s) for it, f, s in zip(items, flagged, scores) if it.fluency == lab]
        if not sel:
            continue
        d = {"n": len(sel), "flagged_rate": sum(f for f, _ in sel) / len(sel),
             "flags": {k: int(sum(s.get(k, 0) > 0 for _, s in sel)) for k in FLUENCY_FLAGS}}
        if lab in FLAG_OF_LABEL:
            d["matching_flag_rate"] = d["flags"][FLAG_OF_LABEL[lab]] / len(sel)
        by_label[lab] = d
    tp = sum(f and g for f, g in zip(flagged, gold_bad))
    return {"accuracy": _mean_ci(agree), "items": len(items),
            "not_fluent": sum(gold_bad), "flagged": sum(flagged),
            "flag_precision": _safe_div(tp, sum(flagged)) if sum(flagged) else None,
            "flag_recall": _safe_div(tp, sum(gold_bad)) if sum(gold_bad) else None,
            "by_gold_label": by_label,
            "references": dict(Counter(str(s.get("reference")) for s in scores))}


def fluency_errors(items: list[GoldItem], scores: list[dict], n: int = N_ERRORS) -> list[dict]:
    out = []
    for it, s in zip(items, scores):
        flagged = s.get("degenerate", 0) > 0
        if flagged != (it.fluency != "fluent"):
            out.append({"id": it.id, "text": it.text, "gold_fluency": it.fluency,
                        "metric_flags": [k for k in FLUENCY_FLAGS if s.get(k, 0) > 0],
                        "repeated_3gram_rate": s.get("repeated_3gram_rate"),
                        "end_bits": s.get("end_bits"), "bits_per_byte": s.get("bits_per_byte")})
    out.sort(key=lambda d: sha256_text(d["id"]))
    return out[:n]


# --- relevance -------------------------------------------------------------------------------

def _cats(rec: dict) -> list[str]:
    return list(rec["product"].get("category") or [])


def _reviews(rec: dict) -> list[str]:
    return [r["text"] for r in (rec.get("reviews") or [{"text": rec.get("review", "")}])
            if (r.get("text") or "").strip()]


def _pool(records: list[dict]) -> list[tuple[dict, list[str], frozenset]]:
    return [(r, _cats(r), frozenset(_reviews(r))) for r in records if _reviews(r)]


def other_review(item: GoldItem, pool: list[tuple[dict, list[str], frozenset]],
                 by_id: dict) -> tuple[dict, str, str] | None:
    """(other record, its review, level) for the within-category pair of a gold real item: a
    product of the same category leaf, else of the deepest category prefix it shares ('depth
    k of n'); never the product itself nor one sharing a review text with it (Amazon lists
    variants of one product separately with the same reviews). Chosen by a stable hash.
    `pool`: _pool(records)."""
    own = by_id[item.product_id]
    cats = _cats(own)
    if not cats:
        return None
    own_texts = set(_reviews(own)) | {item.text}
    cands = [(r, c, t) for r, c, t in pool if r["id"] != own["id"] and not (t & own_texts)]
    levels = [("leaf", lambda c: bool(c) and c[-1] == cats[-1])]
    for d in range(len(cats) - 1, 0, -1):
        levels.append((f"depth {d} of {len(cats)}", lambda c, d=d: c[:d] == cats[:d]))
    for name, same in levels:
        found = [(r, t) for r, c, t in cands if same(c)]
        if found:
            rec, texts = min(found, key=lambda x: sha256_text(f"{item.id}|{x[0]['id']}"))
            text = min(sorted(texts), key=lambda t: sha256_text(f"{item.id}|{rec['id']}|{t}"))
            return rec, text, name
    return None


def relevance_pairs(items: list[GoldItem], records: list[dict], by_id: dict) -> list[dict]:
    pool = _pool(records)
    pairs = []
    for it in items:
        got = other_review(it, pool, by_id)
        pairs.append(None if got is None else {"item": it, "other": got[0], "other_text": got[1],
                                               "level": got[2]})
    return pairs


def relevance_rows(pairs: list[dict], by_id: dict,
                   progress: Callable[[int], None] | None = None) -> list[dict]:
    """One row per pair: relevance_product of the own and the other review, win = own > other."""
    from ..relevance import embed, product_embedding_text, product_relevance

    rows = []
    step = 64
    for i in range(0, len(pairs), step):
        chunk = pairs[i:i + step]
        m = len(chunk)
        prods = [by_id[p["item"].product_id]["product"] for p in chunk]
        ev = embed([product_embedding_text(p) for p in prods] + [p["item"].text for p in chunk]
                   + [p["other_text"] for p in chunk])
        for j, (p, prod) in enumerate(zip(chunk, prods)):
            own, _ = product_relevance(ev[m + j], ev[j], prod, p["item"].text)
            other, _ = product_relevance(ev[2 * m + j], ev[j], prod, p["other_text"])
            rows.append({"id": p["item"].id, "product_title": prod.get("title", ""),
                         "leaf": (prod.get("category") or [""])[-1], "level": p["level"],
                         "own_review": p["item"].text, "other_product": p["other"]["id"],
                         "other_title": p["other"]["product"].get("title", ""),
                         "other_review": p["other_text"], "own": own, "other": other,
                         "win": own > other})
        if progress:
            progress(m)
    return rows


def reader_figures(rows: list[dict], reader: dict[str, dict]) -> dict | None:
    """The reader's choices on these pairs (a label counts only for the pair it was made on:
    same other product, same other review) and the metric's accuracy where the reader could
    tell: `metric_accuracy_decided` over pairs the reader answered own or other,
    `metric_accuracy_reader_right` over pairs the reader answered own."""
    if not reader:
        return None
    got, stale = [], 0
    for r in rows:
        lab = reader.get(r["id"])
        if lab is None:
            continue
        if lab["other_product"] != r["other_product"] or \
                lab["other_review_sha256"] != sha256_text(r["other_review"]):
            stale += 1
            continue
        got.append((r, lab))
    choices = Counter(lab["reader"] for _, lab in got)
    decided = [(r, lab) for r, lab in got if lab["reader"] != "either"]
    return {"labelled": len(got), "stale": stale, "unlabelled": len(rows) - len(got) - stale,
            "choices": {k: choices.get(k, 0) for k in READER_CHOICES},
            "reader_accuracy_decided": _mean_ci([float(lab["reader"] == "own")
                                                 for _, lab in decided]),
            "metric_accuracy_decided": _mean_ci([float(r["win"]) for r, _ in decided]),
            "metric_accuracy_reader_right": _mean_ci([float(r["win"]) for r, lab in decided
                                                      if lab["reader"] == "own"]),
            "metric_accuracy_either": _mean_ci([float(r["win"]) for r, lab in got
                                                if lab["reader"] == "either"])}


def relevance_summary(rows: list[dict], skipped: int = 0,
                      reader: dict[str, dict] | None = None) -> dict:
    levels = Counter(r["level"] for r in rows)
    out = {"accuracy": _mean_ci([float(r["win"]) for r in rows]), "pairs": len(rows),
           "skipped_no_category": skipped, "leaf_pairs": levels.get("leaf", 0),
           "fallback": {k: v for k, v in sorted(levels.items()) if k != "leaf"}}
    fig = reader_figures(rows, reader or {})
    if fig is not None:
        out["reader"] = fig
    return out


# --- agreement -------------------------------------------------------------------------------

def cohen_kappa_from_table(table) -> np.ndarray | float:
    """Cohen's kappa of k x k tables of counts (rows: rater 1, columns: rater 2; any leading
    axes are separate tables); nan when chance agreement is 1 (both raters used one and the
    same label throughout) or the table is empty."""
    t = np.asarray(table, dtype=float)
    n = t.sum(axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        po = np.trace(t, axis1=-2, axis2=-1) / n
        pe = (t.sum(axis=-1) * t.sum(axis=-2)).sum(axis=-1) / n ** 2
        k = np.where((n > 0) & (pe < 1 - 1e-12), (po - pe) / (1 - pe), np.nan)
    return float(k) if k.ndim == 0 else k


def cohen_kappa(a: list, b: list, labels: Iterable | None = None) -> float:
    labels = list(labels) if labels is not None else sorted(set(a) | set(b), key=str)
    ix = {lab: i for i, lab in enumerate(labels)}
    t = np.zeros((len(labels), len(labels)))
    for x, y in zip(a, b):
        t[ix[x], ix[y]] += 1
    return cohen_kappa_from_table(t)


def _binary_kappa(x, y):
    """Cohen's kappa of two 0/1 raters over the last axis (vectorised for the bootstrap)."""
    t = np.stack([np.stack([((x == 1) & (y == 1)).sum(-1), ((x == 1) & (y == 0)).sum(-1)], -1),
                  np.stack([((x == 0) & (y == 1)).sum(-1), ((x == 0) & (y == 0)).sum(-1)], -1)],
                 -2)
    return cohen_kappa_from_table(t)


def char_labels(text: str, claims: list[dict]) -> list[str]:
    """The label of each character: the label of the claims covering it (the worst when claims
    overlap: contradicted > unsupported > supported), 'none' outside every claim."""
    out = ["none"] * len(text)
    for c in claims:
        for i in range(c["start"], min(c["end"], len(text))):
            if _WORST[c["label"]] > _WORST[out[i]]:
                out[i] = c["label"]
    return out


def agreement(pairs: list[tuple[GoldItem, GoldItem]]) -> dict:
    """Cohen's kappa between two passes on the doubly labelled items (CIs: bootstrap over
    items; the character-level one resamples whole items)."""
    usable = [(a, b) for a, b in pairs if a.text == b.text]
    out: dict = {"items": len(usable), "text_differs": [a.id for a, b in pairs if a.text != b.text],
                 "labellers": dict(Counter(f"{a.labeller} vs {b.labeller}" for a, b in usable))}
    if not usable:
        return out
    ra = np.array([float(a.has_bad) for a, _ in usable])
    rb = np.array([float(b.has_bad) for _, b in usable])

    out["review_kappa"] = _ci(_binary_kappa, [ra, rb])
    out["review_agreement"] = float((ra == rb).mean())
    out["review_table"] = {"both bad": int(((ra == 1) & (rb == 1)).sum()),
                           "first only": int(((ra == 1) & (rb == 0)).sum()),
                           "second only": int(((ra == 0) & (rb == 1)).sum()),
                           "neither": int(((ra == 0) & (rb == 0)).sum())}
    k = len(CHAR_LABELS)
    ix = {lab: i for i, lab in enumerate(CHAR_LABELS)}
    tables = np.zeros((len(usable), k * k))
    for n, (a, b) in enumerate(usable):
        for x, y in zip(char_labels(a.text, a.claims), char_labels(b.text, b.claims)):
            tables[n, ix[x] * k + ix[y]] += 1
    out["char_kappa"] = _ci(lambda *cols: cohen_kappa_from_table(
        np.stack([c.sum(axis=-1) for c in cols], -1).reshape(cols[0].shape[:-1] + (k, k))),
        list(tables.T))
    total = tables.sum(axis=0).reshape(k, k)
    out["char_table"] = {CHAR_LABELS[i]: {CHAR_LABELS[j]: int(total[i, j]) for j in range(k)}
                         for i in range(k)}
    flu = [(a.fluency, b.fluency) for a, b in usable if a.fluency and b.fluency]
    if flu:
        out["fluency_kappa"] = {"value": _nan_none(cohen_kappa([x for x, _ in flu],
                                                               [y for _, y in flu],
                                                               FLUENCY_LABELS)),
                                "n": len(flu)}
    return out


def _nan_none(v: float) -> float | None:
    return None if v is None or not np.isfinite(v) else float(v)


# --- the report ------------------------------------------------------------------------------

@dataclass
class GoldRun:
    report: dict
    errors: dict = field(default_factory=dict)


def _acceptance(report: dict) -> dict:
    figs = {"claim_f1": report.get("hallucination", {}).get("claims", {}).get("f1"),
            "false_flag_rate": report.get("hallucination", {}).get("false_flag_rate"),
            "relevance_accuracy": report.get("relevance", {}).get("accuracy"),
            "fluency_accuracy": report.get("fluency", {}).get("accuracy")}
    out = {}
    for k, (op, thr) in ACCEPTANCE.items():
        f = figs[k]
        if not f or f.get("value") is None:
            continue
        v = f["value"]
        half = (f["hi"] - f["lo"]) / 2
        out[k] = {"value": v, "lo": f["lo"], "hi": f["hi"], "n": f["n"], "op": op,
                  "threshold": thr, "ci_half_width": half,
                  "met": v >= thr if op == ">=" else v <= thr,
                  "within_ci": v >= thr - half if op == ">=" else v <= thr + half}
    return out


def run_gold(gold_files: list[str | Path], records: list[dict] | None = None, *,
             data: str | Path | None = None, half: str = "test",
             parts: tuple[str, ...] = PARTS, fluency_reference: str | None = None,
             error_analysis: bool = True,
             progress: Callable[[str, int, int], None] | None = None) -> GoldRun:
    """Score the metrics against the gold files. `records`: the prepared product_review records
    (default: read from `data` / the project's prepared data). The error analysis (GoldRun.errors; `error_analysis=False` skips it) is
    always made on the development half."""
    if half not in HALVES:
        raise HarnessError(f"--half must be one of {', '.join(HALVES)}, not {half!r}")
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise HarnessError(f"unknown part(s) {', '.join(unknown)}; known: {', '.join(PARTS)}")
    items, reader = read_gold_and_reader(gold_files)
    if not items:
        raise HarnessError("the gold files hold no items")
    if records is None:
        records = load_prepared(data)
    by_id = join_products(items, records, str(data or ""))
    # the catalogue `harness score` registers: its brands extend the brand lexicon; its
    # average products centre relevance (embeds 256 products: only when relevance is scored)
    if "relevance" in parts:
        from ..catalogue import register_catalogue
        register_catalogue(records, "gold validation: prepared data")
    else:
        from ..lexicon import register_brands, register_part_words
        register_brands((r.get("product") or {}).get("brand") for r in records)
        register_part_words(r.get("product") or {} for r in records)

    primary, second = primary_and_second(items)
    in_half = [it for it in primary if half == "all" or half_of(it.product_id) == half]
    dev = [it for it in primary if half_of(it.product_id) == "dev"]
    report: dict = {
        "gold_files": [str(p) for p in gold_files], "half": half,
        "items": {"all": len(primary), "in_half": len(in_half),
                  "by_kind": dict(Counter(it.kind for it in in_half)),
                  "by_split": dict(Counter(it.split for it in in_half)),
                  "labellers": dict(Counter(str(it.labeller) for it in in_half)),
                  "doubly_labelled": len(second),
                  "halves": dict(Counter(half_of(it.product_id) for it in primary))},
        "text_mismatches": text_mismatches(primary, by_id),
        "acceptance_values": {k: f"{op} {v}" for k, (op, v) in ACCEPTANCE.items()},
    }
    errors: dict = {"half": "dev", "items": len(dev)} if error_analysis else {}

    def bar(part, total):
        return (lambda k: progress(part, k, total)) if progress else None

    # the items scored: the chosen half, plus the development half for the error analysis
    if not error_analysis:
        dev = []
    work = list({it.id: it for it in in_half + dev}.values())
    half_ids = {it.id for it in in_half}
    dev_ids = {it.id for it in dev}
    if "hallucination" in parts:
        claims = check_items(work, by_id, bar("hallucination", len(work)))
        matches = [match_claims(it.claims, c, it.text) for it, c in zip(work, claims)]
        sel = [i for i, it in enumerate(work) if it.id in half_ids]
        report["hallucination"] = hallucination_figures([work[i] for i in sel],
                                                        [matches[i] for i in sel])
        sel = [i for i, it in enumerate(work) if it.id in dev_ids]
        errors["hallucination"] = hallucination_errors(
            [work[i] for i in sel], by_id, [claims[i] for i in sel], [matches[i] for i in sel])
    if "fluency" in parts:
        gen = [it for it in work if it.kind == "generated" and it.fluency]
        if gen:
            scores = score_fluency(gen, by_id, fluency_reference, bar("fluency", len(gen)))
            h = [(it, s) for it, s in zip(gen, scores) if it.id in half_ids]
            if h:
                report["fluency"] = fluency_figures([it for it, _ in h], [s for _, s in h])
            d = [(it, s) for it, s in zip(gen, scores) if it.id in dev_ids]
            errors["fluency_disagreements"] = fluency_errors([it for it, _ in d],
                                                             [s for _, s in d])
    if "relevance" in parts:
        real = [it for it in work if it.kind == "real"]
        if real:
            pairs = relevance_pairs(real, records, by_id)
            rows = relevance_rows([p for p in pairs if p], by_id, bar("relevance", len(real)))
            skipped = [it.id for it, p in zip(real, pairs) if p is None]
            report["relevance"] = relevance_summary(
                [r for r in rows if r["id"] in half_ids],
                sum(i in half_ids for i in skipped), reader)
            errors["relevance_losses"] = [
                {**r, "reader": reader.get(r["id"], {}).get("reader")} for r in rows
                if r["id"] in dev_ids and not r["win"]][:N_ERRORS]
    if "agreement" in parts:
        report["agreement"] = agreement(second)
        kinds = sorted({a.kind for a, _ in second})
        if len(kinds) > 1:
            report["agreement"]["by_item_kind"] = {
                k: agreement([(a, b) for a, b in second if a.kind == k]) for k in kinds}
    report["acceptance"] = _acceptance(report)
    return GoldRun(report, errors if error_analysis else {})
