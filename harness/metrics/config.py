"""Scoring configuration of one process: which scorers run, which reference LM measures
fluency, which (optional) NLI model checks entailment.

Sources, first found wins: `configure(...)` (the CLI, `harness score`), the task metadata
(`--metadata '{"fluency_reference": "smollm2-135m-instruct"}'`, read when the task loads its
data), environment variables, defaults. The model under test comes only as an argument: the
`model_under_test` the eval runner puts into the task metadata, else the `model`/`pretrained`
model arg that lm-eval copies there (never an environment variable).

    HARNESS_FLUENCY_REFERENCE  reference LM for bits per byte (name, GGUF path, or "none")
    HARNESS_NLI_MODEL          local directory of an NLI cross-encoder (optional tier)
    HARNESS_SCORERS            comma-separated subset of SCORERS (default: all)
(The reference LM's engine, HARNESS_REFERENCE_ENGINE, is read where the engines live:
harness.backends.reference.)
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace

# Reference LM when the model under test is not a Gemma model, and when it is.
DEFAULT_REFERENCE = "gemma3-270m"
ALTERNATE_REFERENCE = "smollm2-135m-instruct"


@dataclass(frozen=True)
class ScoringConfig:
    model_under_test: str | None = None
    fluency_reference: str | None = None
    nli_model: str | None = None
    scorers: tuple[str, ...] | None = None


_OVERRIDE = ScoringConfig()
_METADATA = ScoringConfig()
_METADATA_MODEL: str | None = None
ENV = {"fluency_reference": "HARNESS_FLUENCY_REFERENCE", "nli_model": "HARNESS_NLI_MODEL",
       "scorers": "HARNESS_SCORERS"}


def _parse(field: str, value):
    if field == "scorers" and isinstance(value, str):
        return tuple(s.strip() for s in value.split(",") if s.strip())
    return value


def configure(**kw) -> None:
    """Set values for this process (None leaves a value to the other sources)."""
    global _OVERRIDE
    _OVERRIDE = replace(_OVERRIDE, **{k: _parse(k, v) for k, v in kw.items()})


def configure_from_metadata(metadata: dict) -> None:
    """Called by the task when lm-eval loads its data with the task metadata."""
    global _METADATA, _METADATA_MODEL
    names = {f.name for f in fields(ScoringConfig)}
    _METADATA = ScoringConfig(**{k: _parse(k, v) for k, v in (metadata or {}).items()
                                 if k in names and v is not None})
    # lm-eval copies --model_args into the task metadata: the last resort for the model under
    # test (a plain `lm_eval` run, which sets no model_under_test)
    _METADATA_MODEL = (metadata or {}).get("model") or (metadata or {}).get("pretrained")


def reset() -> None:
    global _OVERRIDE, _METADATA, _METADATA_MODEL
    _OVERRIDE, _METADATA, _METADATA_MODEL = ScoringConfig(), ScoringConfig(), None


def current() -> ScoringConfig:
    out = {}
    for f in fields(ScoringConfig):
        v = getattr(_OVERRIDE, f.name)
        if v is None:
            v = getattr(_METADATA, f.name)
        if v is None and f.name in ENV and os.environ.get(ENV[f.name]):
            v = _parse(f.name, os.environ[ENV[f.name]])
        if v is None and f.name == "model_under_test":
            v = _METADATA_MODEL
        out[f.name] = v
    return ScoringConfig(**out)


def reference_for(model_under_test: str | None, explicit: str | None = None) -> str | None:
    """The fluency reference LM: the explicit choice, else the bundled model other than the
    one under test (Gemma under test -> SmolLM2, anything else -> Gemma). "none" -> None."""
    if explicit:
        return None if explicit.lower() in ("none", "off", "") else explicit
    name = str(model_under_test or "").lower()
    return ALTERNATE_REFERENCE if "gemma" in name else DEFAULT_REFERENCE
