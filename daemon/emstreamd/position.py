"""Where the input stands: the line and byte a checkpoint may claim, and what waits before it.

Exactly once on an input a restart reads again rests on one rule: a checkpoint's position is
just past the last line whose effect is in the model or the counters *with every line before
it*.  Rows read but not learned yet (:attr:`InputPosition.pending`) and lines rejected after
them (:attr:`InputPosition.rejects`) stay after the position, so a restart reads them again,
and the checkpoint's counters leave them out (:meth:`InputPosition.counters_at`).  Rows of a
first mini-batch that a stop caught still deciding are *carried* in the checkpoint instead,
past its position, and learned first next run.

Example
-------
>>> import numpy as np
>>> position = InputPosition(offset=0)
>>> position.read(3)  # lines 1-3: two rows (ending at bytes 4 and 8), then a rejected line
>>> position.pending.add(np.array([[1.0], [2.0]]), np.array([1, 2]), ends=np.array([4, 8]))
>>> position.line(), position.waiting()
(1, 2)
>>> batch = position.take(1, counters={})
>>> position.applied(batch, read_offset=12, now=0.0)
>>> position.line(), position.offset
(2, 4)
"""

from __future__ import annotations

import json
import logging

import numpy as np

from .batcher import Batch, Pending
from .rejects import PendingRejects

log = logging.getLogger("emstreamd")


class InputPosition:
    """The input's position and what waits before it.

    Parameters
    ----------
    offset : int
        The source's byte offset when reading starts.
    """

    def __init__(self, offset: int):
        self.next_line = 1  # the stream's number of the next line read
        self.offset = offset  # just past the last line applied, with all before it
        # The number of the line that starts at ``offset``: kept with it, not inferred from
        # what waits (a header line skipped, or a reject whose dead letter could not be
        # written, is neither a waiting row nor a waiting reject, and a checkpoint inferring
        # it paired a byte offset with the next line's number: every later line numbered one
        # too high, for good).
        self.offset_line = 1
        self.pending = Pending()  # rows read, not learned yet (with their byte ends)
        self.carried = Pending()  # a first mini-batch a stop caught still deciding
        self.rejects = PendingRejects()  # rejected after the last applied row
        self.first_pending_at = None  # when the oldest pending row came (monotonic seconds)
        self.file_first_line = 1  # the stream's line number of the current file's first line

    def restart(self, offset: int, next_line: int) -> None:
        """Reading resumes at byte ``offset``, the stream's line ``next_line``, with every
        line before it applied."""
        self.offset, self.next_line, self.offset_line = offset, next_line, next_line

    def read(self, n_lines: int) -> None:
        """``n_lines`` more lines were read (rows, rejects or blank)."""
        self.next_line += n_lines

    def waiting(self) -> int:
        """Rows read and not learned yet: carried from the last run, and pending."""
        return self.carried.count + self.pending.count

    def all_applied(self, offset: int) -> None:
        """Every line read up to byte ``offset`` is applied or rejected: the position moves
        past them all."""
        self.offset = offset
        self.offset_line = self.next_line
        self.rejects = PendingRejects()

    def take(self, limit: int, counters: dict) -> Batch:
        """The first ``limit`` waiting rows (carried ones first).  Carried rows of another
        width than this run's (the input's columns changed between the runs) fit no model:
        they are dropped, counted in ``counters["rejected"]`` and logged."""
        carried = min(limit, self.carried.count)
        parts = ([self.carried.take(carried)] if carried else []) + (
            [self.pending.take(limit - carried)] if limit > carried else [])
        if len(parts) == 1:
            return parts[0]
        first, second = parts
        if first.rows.shape[1] != second.rows.shape[1]:
            log.warning("%d rows carried from the last run hold %d values and this run's rows "
                        "%d: the carried rows are not learned", first.rows.shape[0],
                        first.rows.shape[1], second.rows.shape[1])
            rejected = counters["rejected"]
            rejected["carried, another width"] = rejected.get("carried, another width", 0) \
                + first.rows.shape[0]
            return second

        def joined(name):
            a, b = getattr(first, name), getattr(second, name)
            return None if a is None or b is None else np.concatenate([a, b])

        return Batch(joined("rows"), joined("lines"), joined("times"), joined("stamps"),
                     second.ends)

    def applied(self, batch: Batch, read_offset: int, now: float) -> None:
        """``batch`` (from :meth:`take`) is learned and reported: the position moves past its
        last row (past every line read, at ``read_offset``, if no row waits any more)."""
        if batch.ends is None:  # (carried rows alone: the position is past them already)
            return
        self.offset = int(batch.ends[-1])
        self.offset_line = int(batch.lines[-1]) + 1
        self.rejects.drop_through(int(batch.lines[-1]))
        if self.pending.count:
            self.first_pending_at = now
        else:
            self.first_pending_at = None
            self.all_applied(read_offset)

    def carry(self, read_offset: int) -> None:
        """Move the pending rows to the carried ones: every line read is then carried,
        applied or rejected, and the position moves past them all."""
        if self.pending.count:
            batch = self.pending.take(self.pending.count)
            self.carried.add(batch.rows, batch.lines, batch.times, batch.stamps)
        self.first_pending_at = None
        self.all_applied(read_offset)

    def line(self) -> int:
        """Number of the first line not behind the position (the one at :attr:`offset`)."""
        return self.offset_line

    def counters_at(self, counters: dict) -> dict:
        """``counters`` as of the position (a copy): lines read after it, and rejects among
        them, are not counted yet."""
        counters = json.loads(json.dumps(counters))
        for reason, n in self.rejects.counts().items():
            counters["rejected"][reason] -= n
            if not counters["rejected"][reason]:
                del counters["rejected"][reason]
        # (lines read past the position taken off the lifetime count: the position's own line
        # number starts again at 1 on a new standard input, and was the count after restarts)
        counters["lines"] -= self.next_line - self.line()
        return counters
