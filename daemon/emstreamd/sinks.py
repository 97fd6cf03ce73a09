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
import fcntl
import hashlib
import logging
import os
import re
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


# A restart checks what was written after the checkpoint this many bytes at a time (a
# checkpoint every 100,000 points writes about 6 MB of per-point lines between two; one every
# 5,000,000 points, 75 MB, was left, written again, and said to be another writer's).
CUT_CHUNK = 8 << 20

# The daemon's lines, whole: a per-point line (csv: line, key and time if any, label,
# probability, surprise, score, anomaly; jsonl: the same as an object), its csv header.
# Group "n": the input line's number (at most 19 digits); "key": the line's key, if keyed.
_FORMS = {
    "csv": re.compile(rb'(?P<n>\d{1,19}),(?P<key>)(?:.*,)?'
                      rb'\d{1,4},[01]\.\d{6},[^,]*(?:,[01]\.\d{8})?(?:,[01])?'),
    "csv-keyed": re.compile(rb'(?P<n>\d{1,19}),(?P<key>"(?:[^"]|"")*"|[^,"]*),(?:.*,)?'
                            rb'\d{1,4},[01]\.\d{6},[^,]*(?:,[01]\.\d{8})?(?:,[01])?'),
    "jsonl": re.compile(rb'\{"line": (?P<n>\d{1,19})(?P<key>)'
                        rb', .*"label": \d{1,4}, "probability": [01]\.\d{6}, "surprise": .*\}'),
    "jsonl-keyed": re.compile(rb'\{"line": (?P<n>\d{1,19}), "key": (?P<key>"(?:[^"\\]|\\.)*")'
                              rb', .*"label": \d{1,4}, "probability": [01]\.\d{6}, '
                              rb'"surprise": .*\}'),
}
_HEADER = re.compile(rb"line,(?:key,)?(?:time,)?label,probability,surprise,score,anomaly")


class _OwnLines:
    """Whether bytes fed in turn hold only lines this daemon writes in ``form`` (a key of
    :data:`_FORMS`; a csv header too), of input lines from ``first_line`` on, in the order one
    run writes them (numbers rising, key by key), and at most a last line cut short by a
    kill, whose number goes on rising.  Another writer's lines (a note appended by hand,
    another daemon's lines, which start again from their first line) fail it."""

    def __init__(self, first_line: int, form: str):
        self.first_line, self.form = first_line, form
        self.pattern = _FORMS[form]
        self.last = {}  # each key's last line number (None: no key)
        self.carry = b""  # the end of the bytes fed so far, after their last newline

    def feed(self, data: bytes, final: bool = False) -> bool:
        """Check ``data``, the next bytes (``final``: the last; its unfinished line is the
        cut one's)."""
        lines = (self.carry + data).split(b"\n")
        self.carry = lines.pop()  # (b"" after a whole last line)
        csv, pattern, last = self.form.startswith("csv"), self.pattern, self.last
        for line in lines:
            if csv and _HEADER.fullmatch(line):
                continue
            match = pattern.fullmatch(line)
            if match is None:
                return False
            number, key = int(match.group("n")), match.group("key")
            if number < max(self.first_line, last.get(key, 0) + 1):
                return False
            last[key] = number
        if not final:
            return len(self.carry) <= CUT_CHUNK  # (no line of ours is that long)
        partial = self.carry
        if not partial:
            return True
        start = re.match(rb'(?:\{"line": )?(\d{1,19})[,}]', partial)
        if start is not None:  # (a keyed line's key is not known yet: its number is checked)
            return int(start.group(1)) > max([self.first_line - 1, *(
                () if self.form.endswith("-keyed") else last.values())])
        # (the very start of a line: "{", '{"li', "lin", or a number not yet whole)
        return re.fullmatch(rb'(?:\{"line": )?\d{1,19}', partial) is not None \
            or any(whole.startswith(partial) for whole in (b'{"line": ', b"line,"))


def file_mark(fd: int, what: str) -> dict | None:
    """Where a checkpoint leaves an appended file (the per-point lines): its identity, its
    size and a digest of the bytes before that, after making it durable (a checkpoint must
    not promise lines a power cut takes back); None if it cannot be read back."""
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None  # (a pipe, a terminal, /dev/null: nothing to cut back)
        os.fdatasync(fd)  # (the size is data here: fdatasync keeps it)
    except OSError as exc:
        log.warning("%s: not made durable (%s): its lines after this checkpoint may repeat "
                    "after a crash", what, exc.strerror or exc)
        return None
    size = info.st_size
    before = _fingerprint(fd, size)
    if before is None:
        return None
    return {"device": info.st_dev, "inode": info.st_ino, "size": size, "before": before,
            "path": _path_of(fd)}


def cut_file_back(fd: int, mark, first_line: int, what: str, form: str) -> None:
    """At a restart, cut what was written to an appended file after a checkpoint's ``mark``
    (:func:`file_mark`): the lines it is for are read and written again.  Only the same
    file, unchanged up to the mark, and only lines of this daemon's forms (numbered from
    ``first_line`` on, the first line still to be reported) are cut: another writer's lines
    are left, with a warning."""
    if not isinstance(mark, dict):
        return
    try:
        info = os.fstat(fd)
    except OSError:
        return
    size = mark.get("size")
    same = (info.st_dev, info.st_ino, _path_of(fd)) == (mark.get("device"), mark.get("inode"),
                                                        mark.get("path"))
    if same and isinstance(size, int) and info.st_size < size:
        # (the shell's > of the README's own command, run again, empties the file before the
        # daemon starts: the lines before the checkpoint were gone without a word)
        log.warning("%s holds %d bytes, fewer than the %d the checkpoint left in it: its lines "
                    "up to the checkpoint are no longer in it (emptied by a shell's >, which "
                    "empties the file at each start where >> and output.path append, or "
                    "rotated by copytruncate)", what, info.st_size, size)
        return
    if not same or not isinstance(size, int) or not 0 <= size <= info.st_size:
        return  # another file (its inode may be a deleted one's), or this one renamed since:
        # nothing of ours to cut
    if info.st_size == size or mark.get("before") != _fingerprint(fd, size):
        return  # (nothing after it, or the file was rewritten since: a copytruncate
        # rotation, say)
    checker, lines, at = _OwnLines(first_line, form), 0, size
    while at < info.st_size:
        chunk = _read_back(fd, at, min(CUT_CHUNK, info.st_size - at))
        at += 0 if not chunk else len(chunk)
        if not chunk or not checker.feed(chunk, final=at >= info.st_size):
            log.warning("%s: the %d bytes after the checkpoint's end are not (only) this "
                        "daemon's lines from line %d: left as they are; the lines since the "
                        "checkpoint are written again", what, info.st_size - size, first_line)
            return
        lines += chunk.count(b"\n")
    try:
        os.ftruncate(fd, size)
        if not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND:
            # (a descriptor shared with the runs before, as a shell's > gives a restart loop:
            # its offset stays past the cut, and the next line landed after a hole of NULs)
            os.lseek(fd, size, os.SEEK_SET)
    except OSError as exc:
        log.warning("%s: the lines written after the checkpoint not cut (%s): they are "
                    "written again", what, exc.strerror or exc)
        return
    log.info("%s: %d bytes written after the checkpoint cut (%d lines, written again)", what,
             at - size, lines + bool(checker.carry))


def _path_of(fd: int) -> str | None:
    """The file's path as the system names it now (None where there is no /proc)."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def _fingerprint(fd: int, size: int) -> str | None:
    """A digest of the file's last 256 bytes before ``size``: what a cut-back checks is
    still there (None if the file cannot be read back)."""
    start = max(0, size - 256)
    before = _read_back(fd, start, size - start)
    return None if before is None else hashlib.sha256(before).hexdigest()[:32]


def _read_back(fd: int, offset: int, count: int) -> bytes | None:
    """Up to ``count`` bytes of the file from ``offset`` (None if it cannot be read: the
    output's descriptor is write-only, so it is read through /proc, which not every system
    has)."""
    try:
        reader = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.pread(reader, count, offset)
    except OSError:
        return None
    finally:
        os.close(reader)


# Seconds between checks for a stop while the per-point output's reader takes nothing.
STALL_POLL = 0.2


class OutputStalled(OSError):
    """A stop was asked while the per-point output's reader took nothing."""


def _write_all(fd: int, data: bytes, stop=None) -> None:
    """Write all of ``data`` to ``fd`` or raise OSError.  (The buffered stream's write came
    back short on a signal that arrived while a pipe was full, and on a pipe its parent had
    made non-blocking; the rest of the batch's lines were lost, without a word, exit 0.)

    While the reader takes nothing, ``stop()`` is asked every 0.2 s: True raises
    :class:`OutputStalled` (a SIGTERM otherwise waited for a stalled reader for ever)."""
    view = memoryview(data)
    while view:
        while stop is not None and not select.select([], [fd], [], STALL_POLL)[1]:
            if stop():
                raise OutputStalled(errno.EAGAIN, "its reader takes nothing, and a stop was "
                                    "asked")
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:  # a non-blocking pipe that is full: wait for its reader
            if stop is None:
                select.select([], [fd], [])


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
        self.stop = None  # asked while a write waits for the reader: True gives up

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
        if self._kind is None:
            self._fd()
        if self._kind == "file" and not self.header_written \
                and os.fstat(self.out.fileno()).st_size > 0:
            self.header_written = True  # (appended to: the file has its header; a restart
            # wrote one more in the middle of it)
        if self.settings["header"] and not self.header_written and kind == "csv":
            text = (b"line," + (b"key," if key is not None else b"")
                    + (b"time," if stamps is not None else b"")
                    + b"label,probability,surprise,score,anomaly\n" + text)
        try:
            if self._kind == "file":
                self._size = os.fstat(self.out.fileno()).st_size
            fd = self._fd()
            if fd is None:
                self.out.write(text)
                self.out.flush()
            else:
                _write_all(fd, text, self.stop)
        except OSError as exc:  # the reader went away (| head), a full disk
            self.close_lost(exc)
            return exc
        self.header_written = True
        return None

    def mark(self) -> dict | None:
        """Where a checkpoint leaves a file's per-point lines (:func:`file_mark`), so that a
        restart cuts what came after (:meth:`cut_back`); None for a pipe, a terminal or no
        output."""
        if self.out is None or self._fd() is None or self._kind != "file":
            return None
        try:
            self.out.flush()
        except OSError:
            return None
        mark = file_mark(self.out.fileno(), "per-point output")
        return None if mark is None else {**mark, "format": self.settings["format"]}

    def cut_back(self, mark, first_line: int, keyed: bool = False) -> None:
        """At a restart, cut the per-point lines written after the checkpoint (``mark``, from
        :meth:`mark`; see :func:`cut_file_back`): the rows they are for are learned, and their
        lines written, again, so that the file holds each line once, and no line cut short by
        a kill."""
        if self.out is not None and self._fd() is not None and self._kind == "file":
            now = self.settings["format"]
            # (the lines after the checkpoint are in the form they were written in: read as
            # the new one's, they were said to be another writer's, left, and written again)
            written = mark.get("format", now) if isinstance(mark, dict) else now
            if written not in ("csv", "jsonl"):
                written = now
            elif written != now:
                log.warning("per-point output: output.format is %s since the checkpoint, which "
                            "wrote %s: the file holds %s lines up to it and %s lines after",
                            now, written, written, now)
            cut_file_back(self.out.fileno(), mark, first_line, "per-point output",
                          written + ("-keyed" if keyed else ""))

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
