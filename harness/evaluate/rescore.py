"""`harness score RESULTS_DIR`: (re)score saved product_review samples in a separate process,
so no scorer model has to share memory with the model under test.

Reads every samples_product_review*.jsonl below RESULTS_DIR (written by lm-eval or by
harness.evaluate.save_results), scores the generated text of each sample against its record,
and writes next to it (or under --output): scores_<name>.jsonl (per sample) and scores_<name>.json
(run figures + the scoring configuration), both atomically.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from ..errors import HarnessError
from ..files import read_json, read_jsonl, write_json, write_jsonl
from ..metrics import config as cfgmod
from ..metrics.aggregate import aggregate

CHUNK = 64
SAMPLES_GLOB = "samples_product_review*.jsonl"


def find_samples(path: Path) -> list[Path]:
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise HarnessError(f"{path}: no such file or directory")
    files = sorted(p for p in path.rglob(SAMPLES_GLOB) if not p.name.startswith("."))
    if not files:
        raise HarnessError(f"{path}: no {SAMPLES_GLOB} files (run `harness eval ... "
                           f"--tasks product_review --log_samples --output_path {path}`)")
    return files


def _text_of(row: dict, where: str) -> str:
    for key in ("filtered_resps", "resps"):
        v = row.get(key)
        while isinstance(v, list) and v:
            v = v[0]
        if isinstance(v, str):
            return v
    raise HarnessError(f"{where}: no generated text (expected 'filtered_resps': [\"...\"] "
                       f"or 'resps': [[\"...\"]])")


def _record_of(row: dict, where: str) -> dict:
    doc = row.get("doc")
    if not isinstance(doc, dict):
        raise HarnessError(f"{where}: field 'doc' missing or not an object")
    rec = doc
    if "record" in doc:
        try:
            rec = json.loads(doc["record"]) if isinstance(doc["record"], str) else doc["record"]
        except json.JSONDecodeError as e:
            raise HarnessError(f"{where}: field 'doc.record' is not valid JSON ({e.msg})") from e
    if not isinstance(rec, dict) or not isinstance(rec.get("product"), dict):
        raise HarnessError(f"{where}: field 'doc.record.product' missing (not a product_review "
                           f"sample)")
    return rec


def read_samples(path: Path) -> list[tuple[dict, dict, str]]:
    """[(row, record, generated text)]"""
    out = []
    for i, row in enumerate(read_jsonl(path), 1):
        where = f"{path}:{i}"
        out.append((row, _record_of(row, where), _text_of(row, where)))
    if not out:
        raise HarnessError(f"{path}: no samples")
    return out


def results_of(samples_file: Path) -> dict:
    """The lm-eval results JSON written with this samples file, or {}."""
    d = samples_file.parent
    stamp = samples_file.stem.split("_")[-1]
    cands = sorted(d.glob(f"results*{stamp}*.json")) or sorted(d.glob("results*.json"))
    if not cands:
        return {}
    try:
        res = read_json(cands[-1])
    except HarnessError:
        return {}
    return res if isinstance(res, dict) else {}


def model_of(results: dict) -> str | None:
    margs = (results.get("config") or {}).get("model_args")
    if isinstance(margs, str):
        from .runner import parse_model_args
        try:
            margs = parse_model_args(margs)
        except HarnessError:
            margs = {}
    if isinstance(margs, dict):
        return margs.get("model") or margs.get("pretrained") or results.get("model_name")
    return results.get("model_name")


def task_metadata(results: dict) -> dict:
    for name, conf in (results.get("configs") or {}).items():
        if name.startswith("product_review") and isinstance(conf, dict):
            return conf.get("metadata") or {}
    return {}


def rescore_file(samples_file: Path, out_dir: Path | None = None,
                 overrides: dict | None = None,
                 progress: Callable[[int], None] | None = None) -> dict:
    rows = read_samples(samples_file)
    results = results_of(samples_file)
    meta = task_metadata(results)
    o = {k: v for k, v in (overrides or {}).items() if v is not None}
    base = cfgmod.current()
    cfg = cfgmod.ScoringConfig(
        model_under_test=o.get("model_under_test") or base.model_under_test or model_of(results),
        fluency_reference=o.get("fluency_reference") or base.fluency_reference
        or meta.get("fluency_reference"),
        nli_model=o.get("nli_model") or base.nli_model or meta.get("nli_model"),
        scorers=cfgmod._parse("scorers", o.get("scorers")) or base.scorers)
    from ..tasks.review import register_task_data
    catalogue = register_task_data(meta.get("data"), [r for _, r, _ in rows])
    from ..metrics import score_reviews
    scored: list[dict] = []
    for i in range(0, len(rows), CHUNK):
        chunk = rows[i:i + CHUNK]
        scored += score_reviews([r for _, r, _ in chunk], [t for _, _, t in chunk], cfg)
        if progress:
            progress(len(chunk))
    per_sample = [{"doc_id": row.get("doc_id", i), "id": rec.get("id"), "text": text, **m}
                  for i, ((row, rec, text), m) in enumerate(zip(rows, scored))]
    name = samples_file.stem[len("samples_"):] if samples_file.stem.startswith("samples_") \
        else samples_file.stem
    dest = Path(out_dir) if out_dir else samples_file.parent
    reference = cfgmod.reference_for(cfg.model_under_test, cfg.fluency_reference) \
        if "fluency" in (cfg.scorers or ("fluency",)) else None
    summary = {"samples_file": str(samples_file), "n": len(per_sample),
               "config": {"model_under_test": cfg.model_under_test,
                          "fluency_reference": reference, "nli_model": cfg.nli_model,
                          "scorers": list(cfg.scorers) if cfg.scorers else None,
                          "catalogue": catalogue},
               "aggregate": aggregate(scored)}
    write_jsonl(dest / f"scores_{name}.jsonl", per_sample)
    write_json(dest / f"scores_{name}.json", summary)
    summary["files"] = [str(dest / f"scores_{name}.jsonl"), str(dest / f"scores_{name}.json")]
    return summary


def rescore(path: Path, out: Path | None = None, overrides: dict | None = None,
            progress: Callable[[int], None] | None = None) -> list[dict]:
    """Score every samples file below `path`; with `out`, mirror their folders under it."""
    path = Path(path)
    files = find_samples(path)
    root = path if path.is_dir() else path.parent
    summaries = []
    for f in files:
        dest = (Path(out) / f.parent.relative_to(root)) if out else None
        summaries.append(rescore_file(f, dest, overrides, progress))
    return summaries


def count_samples(path: Path) -> int:
    return sum(sum(1 for line in open(f, encoding="utf-8") if line.strip())
               for f in find_samples(path))
