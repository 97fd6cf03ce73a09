"""The per-point output: a learned batch's lines, formatted and written in one write.

The sink knows its stream (a file, or a pipe, socket or terminal whose reader may go away) and
nothing of the daemon: it says when the reader has gone or a write failed, and the daemon
decides what that means for its checkpoints.

Example
-------
>>> import io, numpy as np
>>> from types import SimpleNamespace
>>> sink = PointSink(io.BytesIO(), {"format": "csv", "header": True})
>>> update = SimpleNamespace(resp=np.array([[0.9, 0.1]]), surprise=np.array([1.25]),
...                          anomaly=np.array([False]), score=np.array([0.5]))
>>> sink.write(np.array([7]), None, update, key="web-3") is None
True
>>> print(sink.out.getvalue().decode(), end="")
line,key,label,probability,surprise,score,anomaly
7,web-3,0,0.900000,1.2500,0.50000000,0
"""

from __future__ import annotations

import errno
import logging
import os
import select
import stat

import numpy as np

from emstream.report import format_rows

log = logging.getLogger("emstreamd")


def say_if_waiting_for_a_reader(key: str, path: str) -> None:
    """Log why the daemon is about to stop: opening a FIFO for writing blocks until a reader
    opens it, and without this line an operator sees a daemon that hangs before "ready"."""
    try:
        if not stat.S_ISFIFO(os.stat(path).st_mode):
            return
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC))
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a FIFO that no process has open for reading
            log.warning("%s: %s is a FIFO with no reader: waiting for a process to open it for "
                        "reading", key, path)


class PointSink:
    """Per-point lines to a binary stream.

    Parameters
    ----------
    out : binary stream or None
        None: no per-point output.
    settings : dict
        The ``output`` section (``format``, ``header``).
    """

    def __init__(self, out, settings: dict):
        self.out = out
        self.settings = settings
        self.header_written = False
        self.lost = False  # the reader went away or a write failed: nothing more is written
        self.unreported = False  # a write failed part-way: a learned batch is not all written
        self._kind = None  # "file", "stream" (a pipe, socket, terminal) or "other"
        self._poll = None
        self._size = 0  # the output file's size before the batch being written

    @property
    def open(self) -> bool:
        return self.out is not None

    def write(self, lines, stamps, update, key: str | None = None) -> OSError | None:
        """Write one learned batch's lines (``update``: the series' update, with its
        responsibilities and scores); the error if the write failed (the sink is then
        closed: see :meth:`close_lost`)."""
        if self.out is None:
            return None
        resp = update.resp
        labels = resp.argmax(axis=1)
        probability = resp[np.arange(len(labels)), labels]
        kind = self.settings["format"]
        text = format_rows(kind, lines, labels, probability, update.surprise, update.anomaly,
                           score=update.score, time_text=stamps, key=key)
        if self.settings["header"] and not self.header_written and kind == "csv":
            text = (b"line," + (b"key," if key is not None else b"")
                    + (b"time," if stamps is not None else b"")
                    + b"label,probability,surprise,score,anomaly\n" + text)
        try:
            if self._kind == "file":
                self._size = os.fstat(self.out.fileno()).st_size
            self.out.write(text)
            self.out.flush()
        except OSError as exc:  # the reader went away (| head), a full disk
            self.close_lost(exc)
            return exc
        self.header_written = True
        return None

    def _fd(self) -> int | None:
        """The output's descriptor, its kind noted on first use."""
        try:
            fd = self.out.fileno()
        except (AttributeError, OSError, ValueError):  # not a real file (a test's BytesIO)
            self._kind = "other"
            return None
        if self._kind is None:
            mode = os.fstat(fd).st_mode
            self._kind = "file" if stat.S_ISREG(mode) else "stream"
        return fd

    def reader_gone(self) -> bool:
        """Whether the output is a pipe or socket whose reader has gone (poll says POLLERR or
        POLLHUP): asked before each batch is learned."""
        if self.out is None:
            return False
        if self._poll is None:
            fd = self._fd()
            if fd is None or self._kind != "stream":
                self._poll = False  # a file or /dev/null: no reader to lose
                return False
            self._poll = select.poll()
            self._poll.register(fd, 0)  # POLLERR and POLLHUP are always reported
        if self._poll is False:
            return False
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in self._poll.poll(0))

    def close_lost(self, exc: OSError | None) -> None:
        """Stop writing: the reader went away (``exc`` None: found before a batch was learned)
        or a write failed.  A failed write into a file is cut back to the batch's start, so the
        file holds whole batches only (a restart writes that batch again, whole)."""
        if self.out is None:
            return
        fd = self._fd()
        if exc is not None and fd is not None:
            self.unreported = True
            if self._kind == "file":
                try:
                    os.ftruncate(fd, self._size)
                except OSError:
                    pass
        if fd is not None:
            # Bytes still in the stream's buffer would fail again when its owner closes it.
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)
        self.out = None
        self.lost = True
