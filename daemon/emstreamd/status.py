"""The periodic status line: points per second since the last one, totals, the checkpoint's age,
and a back-fill's progress.

Example
-------
>>> now = [0.0]
>>> status = StatusLine({"every_seconds": 10}, clock=lambda: now[0])
>>> status.count(5000); status.due()
False
>>> now[0] = 10.0; status.due(), status.rate()
(True, 500.0)
"""

from __future__ import annotations

import sys
import time

# stderr is a terminal (someone is watching): a back-fill's status line comes every second.
_TERMINAL = sys.stderr.isatty()


class StatusLine:
    """When the next status line is due, and the rate since the last one.

    Parameters
    ----------
    settings : dict
        The ``status`` section (``every_seconds``; 0 for none), read at each :meth:`due` (a
        SIGHUP's reload changes it in place).
    clock : callable, optional
        Seconds, monotonic (for tests).
    """

    def __init__(self, settings: dict, clock=time.monotonic):
        self.settings = settings
        self.clock = clock
        self.last = clock()
        self.rows = 0  # points learned since the last line

    def count(self, rows: int) -> None:
        """``rows`` more points learned."""
        self.rows += rows

    def due(self, watched_back_fill: bool = False) -> bool:
        """Whether a line is due; ``watched_back_fill``: a back-fill on a terminal, whose
        progress comes at least every second."""
        every = self.settings["every_seconds"]
        if every and watched_back_fill and _TERMINAL:
            every = min(every, 1.0)
        return bool(every) and self.clock() - self.last >= every

    def rate(self) -> float:
        """Points per second since the last line."""
        return self.rows / max(self.clock() - self.last, 1e-9)

    def said(self) -> None:
        """A line was written: the next rate counts from now."""
        self.last, self.rows = self.clock(), 0
