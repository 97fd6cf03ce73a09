"""When the next scheduled checkpoint is due.

A checkpoint is due once ``checkpoint.every_points`` rows of new state have come since the
last one, or ``checkpoint.every_seconds`` have passed with any; not sooner than
:data:`RETRY_SECONDS` after one that failed (a full disk is not hammered).  A keyed daemon,
whose checkpoints commit many keys, also waits long enough after each for checkpoints to take
at most ``keys.checkpoint_share`` of its time.

Example
-------
>>> now = [0.0]
>>> schedule = CheckpointSchedule({"every_points": 100, "every_seconds": 60},
...                               clock=lambda: now[0])
>>> schedule.add(99); schedule.due()
False
>>> now[0] = 61.0; schedule.due()
True
>>> schedule.written(); schedule.due()
False
"""

from __future__ import annotations

import time

# A checkpoint that failed (a full disk) is tried again after this many seconds, not at once.
RETRY_SECONDS = 5.0


class CheckpointSchedule:
    """Rows of state since the last checkpoint, and when it was written.

    Parameters
    ----------
    settings : dict
        The ``checkpoint`` section (``every_points``, ``every_seconds``), read at each
        :meth:`due` (a SIGHUP's reload changes it in place).
    share : float, optional
        ``keys.checkpoint_share``: the most of the daemon's time checkpoints may take.
    clock : callable, optional
        Seconds, monotonic (:func:`time.monotonic`).
    """

    def __init__(self, settings: dict, share: float | None = None, clock=time.monotonic):
        self.settings = settings
        self.share = share
        self.clock = clock
        self.rows = 0  # rows of new state since the last checkpoint
        self.last = clock()  # when the last one was written (this run's start before it)
        self.took = 0.0  # how long the last one took
        self.failed_at = -float("inf")

    def add(self, rows: int) -> None:
        """``rows`` rows of new state (learned, or waiting in a key's mini-batch)."""
        self.rows += rows

    def due(self) -> bool:
        """Whether a scheduled checkpoint is due now."""
        now = self.clock()
        if now - self.failed_at < RETRY_SECONDS:
            return False
        if self.share is not None and now - self.last < self.took * (1 - self.share) / self.share:
            return False
        return bool(self.rows >= self.settings["every_points"]
                    or (self.rows and now - self.last >= self.settings["every_seconds"]))

    def written(self, took: float = 0.0) -> None:
        """A checkpoint was written (in ``took`` seconds): the count starts again."""
        self.rows = 0
        self.took = took
        self.last = self.clock()

    def failed(self) -> None:
        """A checkpoint could not be written: the next try waits :data:`RETRY_SECONDS`."""
        self.failed_at = self.clock()

    def age(self) -> float:
        """Seconds since the last checkpoint (or this run's start)."""
        return self.clock() - self.last
