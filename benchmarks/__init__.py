"""mcekit benchmarks: grid specs for `mcekit bench`, the training-speed comparison and the clustering ceiling.

Run them with `python -m benchmarks.speed` and `python -m benchmarks.ceiling`.
"""

from __future__ import annotations

from pathlib import Path


def publish(text: str, out: Path) -> None:
    """Write a Markdown report (creating its folder) and show it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"written to {out}")
