"""How a failure (a peer that does not import, a profiler that cannot be read) is written into the result."""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message; ``""`` where it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
