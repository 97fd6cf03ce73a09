"""Signals that arrive while the daemon starts (its imports take a quarter to half a second),
kept for its loop instead of killing the process unannounced.

:func:`catch` runs first thing when ``emstreamd`` starts; :class:`emstreamd.loop.Flags` takes
what was caught when it installs the loop's own handlers (a SIGTERM during start-up then stops
the daemon cleanly, with its checkpoint, as one a moment later does).
"""

from __future__ import annotations

import signal

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
pending: list = []  # signal numbers, in the order they came


def catch() -> None:
    """Keep the start-up's signals in :data:`pending` (the default would end the process)."""
    for signum in SIGNALS:
        signal.signal(signum, lambda number, frame: pending.append(number))


def take() -> list:
    """The signals caught so far (and forget them)."""
    caught = list(pending)
    pending.clear()
    return caught
