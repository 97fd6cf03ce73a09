"""Signals that arrive while the daemon starts (its imports take a quarter to half a second),
kept instead of killing the process unannounced.

:func:`catch` runs first thing when ``emstreamd`` starts.  Once the imports are done,
:func:`main` stops the start-up cleanly if a SIGTERM or SIGINT came (nothing was learned yet)
and gives those two their default action back, so that a start-up that waits stays stoppable;
:class:`emstreamd.loop.Flags` takes the other signals caught (a reload, a checkpoint, a refit)
when it installs the loop's own handlers.
"""

from __future__ import annotations

import signal

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
pending: list = []  # signal numbers, in the order they came
caught = False  # whether catch() ran (the command, not the module imported by a test)


class Stop(Exception):
    """A SIGTERM or SIGINT came during the imports (raised by :func:`main`)."""


def catch() -> None:
    """Keep the start-up's signals in :data:`pending` (the default would end the process)."""
    global caught
    caught = True
    for signum in SIGNALS:
        signal.signal(signum, lambda number, frame: pending.append(number))


def main() -> None:
    """The imports are done: a SIGTERM or SIGINT that came during them stops the start-up
    now (:class:`Stop`, raised here, at a known point).  From here until the loop installs its
    own handlers they act as by default again, so that a start-up that waits (for a FIFO's
    reader, say) stays stoppable; SIGHUP, SIGUSR1 and SIGUSR2 are still kept for the loop."""
    if signal.SIGTERM in pending or signal.SIGINT in pending:
        raise Stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def take() -> list:
    """The signals caught so far (and forget them)."""
    caught_so_far = list(pending)
    pending.clear()
    return caught_so_far
