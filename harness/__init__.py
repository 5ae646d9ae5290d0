"""Cross-backend benchmark harness for LLMs that write e-commerce product reviews.

Pipeline: data -> tasks -> backends -> metrics -> report. The CLI (`harness`) is a thin layer
over the functions of these modules, which a notebook can call too."""
__version__ = "0.1.0"
