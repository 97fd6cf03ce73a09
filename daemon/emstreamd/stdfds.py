"""Standard streams the daemon was started without (``2>&-``, ``>&-``): /dev/null in their
place, before anything else is opened.

A closed descriptor 0, 1 or 2 is the lowest free number, so the first file the daemon opens
(its input, the lock, a checkpoint's temporary file) would take it, and whatever is written to
that stream would land in the file.  Python leaves ``sys.stdout`` or ``sys.stderr`` None (or
writing to a dead descriptor) then, and the exit summary raised instead of being printed.
:data:`closed` says which were missing: per-point output to a closed stdout is refused, not
thrown away.

Example
-------
>>> from emstreamd import stdfds
>>> stdfds.plug(); sorted(stdfds.closed)   # (all three open here)
[]
"""

from __future__ import annotations

import fcntl
import os
import sys

STREAMS = ("stdin", "stdout", "stderr")
closed: set = set()  # the names of the standard streams that were closed at start


def _usable(fd: int) -> bool:
    """Whether descriptor ``fd`` is open the way its stream needs (stdout and stderr for
    writing: started through a shell script with ``2>&-``, descriptor 2 was the script
    itself, read-only, and every write failed)."""
    try:
        mode = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
    except OSError:
        return False
    return fd == 0 or mode in (os.O_WRONLY, os.O_RDWR)


def plug() -> None:
    """Put /dev/null on every closed (or unwritable) standard descriptor; note which."""
    closed.update(name for fd, name in enumerate(STREAMS) if not _usable(fd))
    if not closed:
        return
    null = os.open(os.devnull, os.O_RDWR)
    for fd, name in enumerate(STREAMS):
        if name in closed and fd != null:
            os.dup2(null, fd)
    if null > 2:
        os.close(null)
    for fd, name in enumerate(STREAMS):
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, "r" if fd == 0 else "w", closefd=False))
