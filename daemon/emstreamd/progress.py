"""How far a back-fill has come: share of the file read, rate and time left, for status lines."""

from __future__ import annotations

import os
import time


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """Progress through the file at ``path`` from byte ``start`` (where this run began).

    The size is read again each time: a file may grow while it is back-filled.  For a
    compressed file, whose offsets count decompressed bytes, ``in_file`` maps an offset to
    about where it lies in the file itself, and share, rate and time left come from that.
    """

    def __init__(self, path: str, start: int, clock=time.monotonic, in_file=None):
        self.path, self.clock, self.in_file = path, clock, in_file
        self.start = start if in_file is None else in_file(start)

    def describe(self, offset: int, began: float) -> str:
        """"; 37.5% of FILE, 12.3 MB/s, 0:41 left" for the byte ``offset`` reached, reading
        since the time ``began`` (of ``clock``; the start-up's imports do not count)."""
        try:
            size = os.stat(self.path).st_size
        except OSError:
            return ""
        if size <= 0:
            return ""
        if self.in_file is not None:
            offset = self.in_file(offset)
        elapsed = self.clock() - began
        rate = (offset - self.start) / elapsed if elapsed > 0 else 0.0
        text = f"; {min(offset / size, 1.0):.1%} of {self.path}, {rate / 1e6:.3g} MB/s"
        if rate > 0:
            text += f", {_duration(max(size - offset, 0) / rate)} left"
        return text
