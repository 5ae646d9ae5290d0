"""Backends stage: importing this package registers our lm-eval models
(`llama-cpp`, and `harness-hf`: stock HFLM plus throughput timing)."""
from . import hf, llama_cpp  # noqa: F401
from .throughput import METER  # noqa: F401
