"""Progress of long loops: a live bar on a terminal, a handful of plain lines in a log.

On a terminal (stderr is a TTY) :func:`progress_bar` returns a tqdm bar. Anywhere else (CI, ``> log``,
a notebook's captured stderr) a bar's carriage-return redraws would fill the log with hundreds of
updates, so it returns a :class:`PlainProgress` with the same ``update`` / ``set_postfix`` / ``close``
API that prints one line at 25, 50, 75 and 100 % of the total (and, for a long or open-ended loop,
one line when 30 s have passed without any). ``enabled=False`` (the commands' ``--no-progress``)
prints nothing in either case.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Generic, TextIO, TypeVar

T = TypeVar("T")

MARKS = (25, 50, 75, 100)  # percent of the total at which a plain line is printed
INTERVAL_S = 30.0  # longest stretch without a plain line while the loop goes on


def progress_bar(
    iterable: Iterable[T] | None = None,
    *,
    total: int | None = None,
    desc: str,
    enabled: bool = True,
    initial: int = 0,
    leave: bool = True,
    stream: TextIO | None = None,
) -> Any:
    """A progress bar over ``iterable`` (or updated by hand with ``update(n)``), shown on ``stream``.

    Args:
        iterable: items to yield, counted one each; None to count with ``update``.
        total: the count at completion (default ``len(iterable)`` where it has one; None: open-ended).
        desc: what is counted, printed first (``"meta-train"``).
        enabled: False prints nothing at all.
        initial: the count already done (a resumed run).
        leave: keep the terminal bar on screen once closed.
        stream: where to write (default ``sys.stderr``, looked up at the call).

    Returns:
        ``tqdm.tqdm`` when ``stream`` is a terminal and ``enabled``, else a :class:`PlainProgress`;
        both iterate, work as context managers and offer ``update``, ``set_postfix``, ``close`` and ``n``.
    """
    stream = sys.stderr if stream is None else stream
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if enabled and _is_terminal(stream):
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, initial=initial, leave=leave, file=stream)
    return PlainProgress(iterable, total=total, desc=desc, initial=initial, stream=stream if enabled else None)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class PlainProgress(Generic[T]):
    """tqdm's counting API that writes a few whole lines instead of redrawing a bar.

    A line reads ``meta-train: 500/1000 (50%), 12.3 s, ~12.3 s left, loss=0.0123``. Lines are printed
    when the count crosses each of :data:`MARKS` percent of ``total``, when :data:`INTERVAL_S` seconds
    have passed since the last line, and at ``close`` if the last count was not printed yet.
    ``stream=None`` counts silently.
    """

    def __init__(
        self,
        iterable: Iterable[T] | None = None,
        *,
        total: int | None,
        desc: str,
        initial: int = 0,
        stream: TextIO | None,
    ) -> None:
        self.iterable = iterable
        self.total = total
        self.desc = desc
        self.n = initial
        self.stream = stream
        self.postfix = ""
        self._initial = initial
        self._start = self._last_line = time.monotonic()
        self._printed_n: int | None = None
        self._next_mark = self._mark_index(initial)
        self._closed = False

    def _mark_index(self, n: int) -> int:
        """Index into MARKS of the first mark above the percentage ``n`` stands for."""
        if not self.total:
            return len(MARKS)
        percent = 100 * n / self.total
        return next((i for i, mark in enumerate(MARKS) if mark > percent), len(MARKS))

    def __iter__(self) -> Iterator[T]:
        if self.iterable is None:
            raise TypeError("this progress counter was made without an iterable; call update() instead")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> PlainProgress[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        """Count ``n`` more; print a line when a mark is crossed or the interval has passed."""
        self.n += n
        mark = self._mark_index(self.n)
        if mark > self._next_mark or time.monotonic() - self._last_line >= INTERVAL_S:
            self._next_mark = mark
            self._line()

    def set_postfix(self, ordered_dict: Mapping[str, Any] | None = None, refresh: bool = True, **kwargs: Any) -> None:
        """Values shown at the end of the next line (``loss=0.0123``), as in tqdm."""
        values = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{key}={value}" for key, value in values.items())

    def close(self) -> None:
        """Print the final count if it was not printed yet; later calls do nothing."""
        if self._closed:
            return
        self._closed = True
        if self.n != self._printed_n and self.n != self._initial:
            self._line()

    def _line(self) -> None:
        now = time.monotonic()
        self._last_line, self._printed_n = now, self.n
        if self.stream is None:
            return
        elapsed = now - self._start
        parts = [f"{self.desc}: {self.n}"]
        if self.total:
            parts[0] += f"/{self.total} ({100 * self.n / self.total:.0f}%)"
        parts.append(f"{elapsed:.1f} s")
        done = self.n - self._initial
        if self.total and 0 < done and self.n < self.total:
            parts.append(f"~{elapsed / done * (self.total - self.n):.1f} s left")
        if self.postfix:
            parts.append(self.postfix)
        print(", ".join(parts), file=self.stream, flush=True)
