"""`python -m harness.cli` (e.g. under `accelerate launch`)."""
from . import main

main()
