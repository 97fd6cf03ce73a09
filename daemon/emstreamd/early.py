"""Signals that arrive while the daemon starts (its imports take a quarter to half a second),
kept instead of killing the process unannounced.

:func:`catch` runs first thing when ``emstreamd`` starts.  Once the imports are done,
:func:`main` stops the start-up cleanly if a SIGTERM or SIGINT came (nothing was learned yet);
from then until the loop installs its own handlers those two stop the start-up where it is
(:class:`Stop`, also out of a wait for a FIFO's reader), so that a start-up that waits stays
stoppable and still ends with "stopped while starting" and exit 0;
:class:`emstreamd.loop.Flags` takes the other signals caught (a reload, a checkpoint, a refit)
when it installs the loop's own handlers.
"""

from __future__ import annotations

import signal

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
pending: list = []  # signal numbers, in the order they came
caught = False  # whether catch() ran (the command, not the module imported by a test)


class Stop(BaseException):
    """A SIGTERM or SIGINT came while the daemon started (raised by :func:`main` or by the
    handler it installs).  Not an ``Exception``: no ``except Exception`` on the way swallows
    it, as none swallows a ``KeyboardInterrupt``."""


def catch() -> None:
    """Keep the start-up's signals in :data:`pending` (the default would end the process)."""
    global caught
    caught = True
    for signum in SIGNALS:
        signal.signal(signum, lambda number, frame: pending.append(number))


def main() -> None:
    """The imports are done: a SIGTERM or SIGINT that came during them stops the start-up
    now (:class:`Stop`, raised here, at a known point).  From here until the loop installs its
    own handlers they raise :class:`Stop` where the start-up is, so that one that waits (for a
    FIFO's reader, say) stays stoppable (a SIGINT there printed a KeyboardInterrupt traceback
    and a SIGTERM killed the process); SIGHUP, SIGUSR1 and SIGUSR2 are still kept for the
    loop."""
    if signal.SIGTERM in pending or signal.SIGINT in pending:
        raise Stop
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)


def _stop(signum, frame) -> None:
    raise Stop


def take() -> list:
    """The signals caught so far (and forget them)."""
    caught_so_far = list(pending)
    pending.clear()
    return caught_so_far
