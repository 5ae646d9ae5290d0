"""What every command module shares: the consoles, the option parsing helpers."""
from __future__ import annotations

from rich.console import Console

console = Console(stderr=False)
err = Console(stderr=True)

PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


def split_list(values) -> list[str]:
    """A list option given either way: repeated (--task a --task b), comma-separated
    (--task a,b) or both -> ["a", "b"]."""
    if values is None:
        return []
    items = [values] if isinstance(values, str) else values
    return [p.strip() for v in items for p in str(v).split(",") if p.strip()]
