"""The batcher: rows read but not learned yet, cut into mini-batches in the order they came.

A single-series daemon holds one :class:`Pending`; a keyed daemon holds one per key (the key's
partial mini-batch, which its checkpoint document keeps, :meth:`Pending.state`).  Rows come with
their stream line numbers and, when the input has them, their times (seconds since the epoch)
and the times as written; a single series also keeps each row's byte end, so that its
checkpoint can stop just after the last row learned.

Example
-------
>>> import numpy as np
>>> pending = Pending()
>>> pending.add(np.array([[1.0], [2.0]]), np.array([1, 2]))
>>> pending.add(np.array([[3.0]]), np.array([4]))
>>> batch = pending.take(2)
>>> batch.rows.ravel().tolist(), batch.lines.tolist(), len(pending), pending.first_line()
([1.0, 2.0], [1, 2], 1, 4)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from emstream.validation import MAX_ABS_VALUE


class Batch(NamedTuple):
    """One mini-batch: rows (n, n_columns), line numbers (n,), and times (n,), times as
    written (n,) and byte ends (n,), each None when not kept."""

    rows: np.ndarray
    lines: np.ndarray
    times: np.ndarray | None
    stamps: np.ndarray | None
    ends: np.ndarray | None


def split_front(parts: list, count: int) -> tuple[np.ndarray, list]:
    """The first ``count`` items of a list of arrays, and the list of what is left.

    A view when the first array holds them all (the usual case: a parsed block holds many
    mini-batches); otherwise only the pieces that make up those items are joined.
    """
    first = parts[0]
    if len(first) >= count:
        return first[:count], ([first[count:]] if len(first) > count else []) + parts[1:]
    taken, n = [], 0
    for i, part in enumerate(parts):
        if n + len(part) > count:
            taken.append(part[:count - n])
            return np.concatenate(taken), [part[count - n:]] + parts[i + 1:]
        taken.append(part)
        n += len(part)
    return np.concatenate(taken), []


class Pending:
    """Rows waiting to be learned, oldest first (pieces as they were parsed, joined only when
    a mini-batch spans several)."""

    __slots__ = ("_rows", "_lines", "_times", "_stamps", "_ends", "count")

    def __init__(self):
        self._rows, self._lines, self._times, self._stamps, self._ends = [], [], [], [], []
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def add(self, rows: np.ndarray, lines: np.ndarray, times=None, stamps=None,
            ends=None) -> None:
        """Append rows (n, n_columns) read from lines ``lines`` (n,); ``times``, ``stamps``
        and ``ends`` (n,) go with them when the input has them (always, or never)."""
        self._rows.append(rows)
        self._lines.append(lines)
        if times is not None:
            self._times.append(times)
            self._stamps.append(stamps)
        if ends is not None:
            self._ends.append(ends)
        self.count += len(rows)

    def take(self, count: int) -> Batch:
        """The first ``count`` waiting rows, as one mini-batch."""
        rows, self._rows = split_front(self._rows, count)
        lines, self._lines = split_front(self._lines, count)
        times = stamps = ends = None
        if self._times:
            times, self._times = split_front(self._times, count)
            stamps, self._stamps = split_front(self._stamps, count)
        if self._ends:
            ends, self._ends = split_front(self._ends, count)
        self.count -= count
        return Batch(rows, lines, times, stamps, ends)

    def first_line(self) -> int | None:
        """The line number of the oldest waiting row (None if none waits)."""
        return int(self._lines[0][0]) if self.count else None

    def state(self) -> dict:
        """The waiting rows, JSON-ready (floats round-trip exactly through JSON; byte ends are
        not kept: a keyed daemon's position is past every row it keeps)."""
        def joined(parts):
            return np.concatenate(parts) if parts else None

        rows, times, stamps = joined(self._rows), joined(self._times), joined(self._stamps)
        return {"rows": [] if rows is None else rows.tolist(),
                "lines": [] if rows is None else joined(self._lines).tolist(),
                "times": None if times is None else times.tolist(),
                "stamps": None if stamps is None else [s.decode("latin-1") for s in
                                                       stamps.tolist()]}

    def restore(self, saved: dict | None, n_columns: int | None = None) -> None:
        """Add the rows of :meth:`state` (``n_columns`` numbers each, if given); ValueError
        if ``saved`` is not such a state (an edited or crafted checkpoint)."""
        if saved is None:
            return
        try:
            lines = np.asarray(saved["lines"], dtype=np.int64).reshape(-1)
            if not lines.size:
                return
            rows = np.asarray(saved["rows"], dtype=float)
            times, stamps = saved.get("times"), saved.get("stamps")
            if times is not None:
                times = np.asarray(times, dtype=float).reshape(-1)
                stamps = np.array([t.encode("latin-1") for t in stamps], dtype=bytes)
        except (KeyError, TypeError, ValueError, OverflowError, AttributeError,
                UnicodeEncodeError) as exc:
            raise ValueError(f"waiting rows: {exc}") from None
        n = lines.shape[0]
        # (within the parser's bound: a forged 1e300 was taken, then the model refused it with
        # a traceback when its mini-batch was learned)
        if rows.ndim != 2 or rows.shape[0] != n or not rows.shape[1] \
                or not (np.abs(rows) <= MAX_ABS_VALUE).all() or (n_columns is not None
                                                                 and rows.shape[1] != n_columns):
            raise ValueError(f"waiting rows: {n} rows of finite numbers within ±"
                             f"{MAX_ABS_VALUE:.0e} expected"
                             + ("" if n_columns is None else f", {n_columns} each"))
        if (lines < 1).any():
            raise ValueError("waiting rows: line numbers must be >= 1")
        if times is not None and (times.shape[0] != n or stamps.shape[0] != n
                                  or not np.isfinite(times).all()):
            raise ValueError(f"waiting rows: {n} finite times and {n} times as written "
                             "expected")
        self.add(rows, lines, times, stamps)
