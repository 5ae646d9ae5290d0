"""Cross-backend benchmark harness for LLMs that write e-commerce product reviews.

Pipeline: data -> tasks -> backends -> metrics -> report. The CLI (`harness`) is a thin layer
over the functions of these modules, which a notebook can call too."""
__version__ = "0.1.0"

import logging as _logging

# bitsandbytes (dev / qlora-cpu extra) warns on import, on CPUs with avx512-bf16, that it could
# not fetch an optional kernel from the hub (`kernels` package; offline here by design). QLoRA on
# CPU does not use it (harness.train turns the packed path off), so the warning is noise.
_logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(_logging.ERROR)
