"""Where bytes come from: stdin (a pipe, read promptly) or a regular file read to its end.

A source hands out blocks of *complete* lines; a partial last line is kept until its newline
arrives.  At the end of input a final line without a newline is handed out as a line (policy:
a writer that did not end its last line still meant it).  With ``max_line_bytes`` set (the
daemon sets it to ``input.max_line_bytes``), a partial line that outgrows it keeps only its
start and is handed out, when it ends, as a line the parser rejects as "too long" (see
:class:`~emstream.linebuffer.LineBuffer`): memory stays bounded, and ``offset`` still counts
every byte read.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import re
import select
import stat
import time

from emstream.compressed import DataFile
from emstream.linebuffer import LineBuffer

from .errors import EX_DATAERR, StartError

# The first byte of a line end: LF, CRLF, a lone CR (emstream.linebuffer).
_LINE_END = re.compile(rb"[\r\n]")

log = logging.getLogger("emstreamd")

READ_BYTES = 1 << 20
# NUL holes said in a followed file (a file of a hole after every line logged each).
SAID_HOLES = 10
_NULS = re.compile(rb"\0*")
FINGERPRINT_BYTES = 1024
# A followed file's bytes just before the read position, kept as read: a copytruncate refilled
# past the position with the same first bytes (a constant prelude, a periodic sensor) shows
# there, where the file's first bytes do not tell.
TAIL_BYTES = 64


def fingerprint(path: str, length: int = FINGERPRINT_BYTES) -> tuple[str | None, int]:
    """sha256 of a file's first ``length`` bytes (fewer if it is shorter), and how many.

    ``(None, 0)`` for anything but a regular file, or a file gone meanwhile: opening a FIFO
    would block (and release its writer), reading a directory fails.
    """
    handle, _ = _open_regular(path)
    if handle is None:
        return None, 0
    with handle:
        head = os.pread(handle.fileno(), length, 0)
    return hashlib.sha256(head).hexdigest(), len(head)


def _before(fd: int, offset: int) -> dict | None:
    """The checkpoint's fingerprint of the (up to FINGERPRINT_BYTES) bytes just before
    ``offset``, ``{"before", "before_bytes"}``; None if the file no longer holds them."""
    want = min(offset, FINGERPRINT_BYTES)
    before = os.pread(fd, want, offset - want)
    if len(before) != want:
        return None
    return {"before": hashlib.sha256(before).hexdigest(), "before_bytes": want}


def _before_matches(fd: int, saved: dict, offset: int) -> bool:
    """Whether the file holds, just before ``offset``, the bytes the checkpoint ``saved``
    fingerprinted there (True if it fingerprinted none)."""
    n = saved.get("before_bytes")
    if not (isinstance(n, int) and 0 < n <= offset):
        return True
    return hashlib.sha256(os.pread(fd, n, offset - n)).hexdigest() == saved.get("before")


def _holds_before(path: str, saved: dict) -> bool:
    """:func:`_before_matches` for the file at ``path`` (False if it cannot be read)."""
    offset = saved.get("offset")
    if not isinstance(offset, int):
        return True
    handle, _ = _open_regular(path)
    if handle is None:
        return False
    with handle:
        return _before_matches(handle.fileno(), saved, offset)


def _stat_reason(exc: OSError) -> str:
    """What a failed stat of the followed path says, in words."""
    if isinstance(exc, FileNotFoundError):
        return "gone (deleted or renamed, nothing in its place yet)"
    return f"cannot be looked up ({exc.strerror or exc})"


def _open_regular(path: str):
    """``(file, None)``: ``path`` opened for reading, a regular file; else ``(None, why)``, why
    None for a missing file (never blocks, never raises)."""
    try:
        # A FIFO is not even opened: that would release a writer blocked in its open.
        mode = os.stat(path).st_mode
        if stat.S_ISREG(mode):
            # O_NONBLOCK: a FIFO put there since the stat must not block the open.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                os.close(fd)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror})"
    if not stat.S_ISREG(mode):
        return None, f"is {_kind(mode)}, not a regular file"
    os.set_blocking(fd, True)
    return open(fd, "rb"), None


def not_regular(path: str) -> str | None:
    """What ``path`` is if it is there and not a regular file ("a FIFO"), else None (stat
    only: opening a FIFO blocks until a writer comes, and releases it)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # (missing or unreadable: opening it says so)
    return None if stat.S_ISREG(mode) else _kind(mode)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "a special file"


class _Source:
    """Shared bookkeeping: ``offset`` counts the input bytes handed out as complete lines.

    ``boundary`` is set by a source whose next bytes will come from another file (rotation,
    truncation): the loop applies what it holds, then calls ``next_file()``.
    ``max_line_bytes`` (None: no limit) bounds what a partial line may hold in memory.
    """

    offset = 0
    at_end = False
    boundary = False
    _max_line_bytes = None

    @property
    def max_line_bytes(self) -> int | None:
        return self._max_line_bytes

    @max_line_bytes.setter
    def max_line_bytes(self, value: int | None) -> None:
        self._max_line_bytes = value
        self.lines.limit = value

    def _new_lines(self) -> LineBuffer:
        return LineBuffer(self._max_line_bytes)

    def _feed(self, chunk: bytes, at_end: bool = False) -> bytes:
        """Complete lines from the line buffer; ``offset`` moves past the bytes behind them
        (more than their length if they lead with a shortened, too long line)."""
        data = self.lines.feed(chunk, at_end)
        self.offset += self.lines.block_bytes
        return data

    def _end_held_cr(self) -> bytes:
        """The line a held CR ends, once nothing more comes (:meth:`LineBuffer.end_held_cr`);
        ``offset`` moves past it."""
        data = self.lines.end_held_cr()
        self.offset += self.lines.block_bytes
        return data

    def _hand_out(self, chunk: bytes) -> bytes:
        if not chunk:
            self.at_end = True
        return self._feed(chunk, self.at_end)


class FileInput(_Source):
    """A regular file, from a byte offset to its end (``--input``, for back-fills)."""

    kind = "file"

    def __init__(self, path: str, offset: int = 0, max_line_bytes: int | None = None):
        self.path = path
        self._max_line_bytes = max_line_bytes
        # (gzip, bzip2 and xz files are read decompressed: offsets count decompressed bytes)
        self.handle = DataFile(path)
        self._said_garbage = self._said_cut = False
        stat = os.fstat(self.handle.fileno())
        self.device, self.inode = stat.st_dev, stat.st_ino
        self.fingerprint, self.fingerprint_bytes = fingerprint(path)
        self.handle.seek(offset)
        self.offset = offset
        self.lines = self._new_lines()

    def identity(self, offset: int | None = None) -> dict:
        """The file, by its first bytes; with ``offset`` (the checkpoint's position), also the
        bytes just before it (plain files: a compressed one cannot be read at an offset), so
        that a restart knows the file still holds, up to there, what was learned."""
        out = {"kind": self.kind, "path": os.path.abspath(self.path), "device": self.device,
               "inode": self.inode, "fingerprint": self.fingerprint,
               "fingerprint_bytes": self.fingerprint_bytes}
        if offset and self.handle.compression is None:
            before = _before(self.handle.fileno(), offset)
            if before is not None:
                out.update(before)
            elif not self._said_cut:
                # Cut under the daemon after it read them: fingerprinted as they are now (none),
                # every checkpoint failed its own check and the model could not be resumed,
                # not even on the file as it was read.  Without the fingerprint a restart on
                # that file resumes; on a shorter one it stops (fewer bytes than the position).
                self._said_cut = True
                log.warning("--input %s was cut while it was read (it now ends before byte "
                            "%d, the position learned): checkpoints cannot fingerprint the "
                            "bytes before it", self.path, offset)
        return out

    def resume(self, saved: dict) -> bool:
        """Continue after the position in ``saved`` if it describes this same file (its first
        bytes).  Raises :class:`StartError` if it begins as that file did but no longer holds,
        up to the position, what was read from it (cut, rewritten or replaced): which of its
        lines the model has is then unknown, and neither guess (skip to the position, or learn
        them all again) is safe.  A followed file's checkpoint counts too: the same file
        back-filled after it was followed (or followed after a back-fill) goes on from there,
        not from its start again."""
        if saved.get("kind") not in ("file", "follow"):
            return False
        head, _ = fingerprint(self.path, saved.get("fingerprint_bytes", FINGERPRINT_BYTES))
        if head is None or head != saved.get("fingerprint"):
            return False
        offset = int(saved["offset"])
        if self.handle.compression is None:
            offset = self._check_before(saved, offset)
        elif offset:
            self.handle.seek(offset - 1)
            before = self.handle.read(1)
            if before == b"\r":
                self.lines.owe_line_end()
            elif before not in (b"\n", b""):
                # As _check_before, decompressed: the last line, learned without its newline,
                # goes on in the member appended since (it was learned again as a point).
                self.lines.skip_rest_of_line()
                log.warning("--input %s: its line at byte %d (decompressed) had no newline "
                            "when the last run ended and was learned as it stood; what was "
                            "written on after it, up to its newline, is skipped", self.path,
                            offset)
        self.handle.seek(offset)
        if self.handle.compression is not None and self.handle.tell() < offset:
            # (its bytes before the position cannot be checked as a plain file's are, at
            # each checkpoint, without decompressing it again from its start; but one that
            # ends before the position is not the file read: it "resumed" past its end)
            raise StartError(f"--input {self.path} holds {self.handle.tell()} bytes "
                             f"decompressed, fewer than the checkpoint's position (byte "
                             f"{offset}): it is not the file the checkpoint read (or it was "
                             "cut or rewritten since); to learn this file from its start into "
                             "the model, feed it on stdin; to start a new model, remove the "
                             "checkpoint", EX_DATAERR)
        self.offset = offset
        return True

    def _check_before(self, saved: dict, offset: int) -> int:
        """The position to resume at: ``offset``, or past the rest of a line that the last run
        learned as it stood at the end of the file, before its newline came."""
        fd = self.handle.fileno()
        size = os.fstat(fd).st_size
        what = ("the file the checkpoint read (or it was cut or rewritten since); to learn "
                "this file from its start into the model, feed it on stdin (< FILE); to start "
                "a new model, remove the checkpoint")
        if size < offset:
            raise StartError(f"--input {self.path} holds {size} bytes, fewer than the "
                             f"checkpoint's position (byte {offset}): it is not {what}",
                             EX_DATAERR)
        if not _before_matches(fd, saved, offset):
            raise StartError(f"--input {self.path}: the bytes before the checkpoint's position "
                             f"(byte {offset}) are not those it read: it is not {what}",
                             EX_DATAERR)
        if offset == 0:
            return offset
        before = os.pread(fd, 1, offset - 1)
        if before == b"\r":
            # A CR ended the last line learned (a lone CR, or the file's last byte then): CRs
            # and an LF written after it end that same line (emstream.linebuffer).
            self.lines.owe_line_end()
        if size == offset or before in (b"\n", b"\r"):
            return offset
        # The last run ended on a line without its newline and learned it as it stood (a
        # file's last line often has none); what was written on after it is not a new line.
        end = offset
        while end < size:
            chunk = os.pread(fd, READ_BYTES, end)
            found = _LINE_END.search(chunk)
            if found is not None:
                end += found.end()
                if found.group() == b"\r":  # (CRs and an LF after it end the same line)
                    self.lines.owe_line_end()
                break
            end += len(chunk)
        log.warning("--input %s: its line at byte %d had no newline when the last run ended and "
                    "was learned as it stood; the %d bytes written on after it are skipped",
                    self.path, offset, end - offset)
        return end

    def read(self, timeout: float) -> bytes:
        data = self.handle.read(READ_BYTES)
        if not data and self.handle.trailing_garbage and not self._said_garbage:
            self._said_garbage = True
            kind = self.handle.compression
            log.warning("--input %s: bytes after its last %s %s are not %s data; the input "
                        "ends there (the lines before them are all read, as %s -dc writes "
                        "them)", self.path, kind, "member" if kind == "gzip" else "stream",
                        kind, kind)
        return self._hand_out(data)

    def close(self) -> None:
        self.handle.close()


class StdinInput(_Source):
    """Standard input: polled, so a slow producer still gets prompt batches."""

    kind = "stdin"

    def __init__(self, fd: int = 0, max_line_bytes: int | None = None):
        self.fd = fd
        self._max_line_bytes = max_line_bytes
        self.lines = self._new_lines()
        self.error = None  # the read error that ended the input, if one did

    def identity(self, offset: int | None = None) -> dict:
        """The kind; for a regular file redirected to stdin, its device and inode too
        (``regular_file``), so that a restart on the same file can say it is read again."""
        try:
            info = os.fstat(self.fd)
        except OSError:
            return {"kind": self.kind}
        if not stat.S_ISREG(info.st_mode):
            return {"kind": self.kind}
        return {"kind": self.kind, "regular_file": [info.st_dev, info.st_ino]}

    def resume(self, saved: dict) -> bool:
        return False  # a pipe cannot be replayed: nothing to resume from

    def read(self, timeout: float) -> bytes:
        ready, _, _ = select.select([self.fd], [], [], max(timeout, 0.0))
        if not ready:
            # Nothing more for now after a lone CR (an instrument writing value\r): that CR
            # ended the line, rather than hold the newest reading until the next one comes.
            return self._end_held_cr()
        try:
            data = os.read(self.fd, READ_BYTES)
        except BlockingIOError:  # (a non-blocking descriptor that select saw ready in vain)
            return b""
        except OSError as exc:
            # A socket reset by its peer, a terminal hung up (EIO): the input ends here, and
            # what was learned is checkpointed as at the end of input (the error went up to
            # the exit, and 5,000 points learned from a socket were lost with no checkpoint).
            self.error = exc
            self.at_end = True
            cut = self.lines.pending_bytes
            # (the unfinished last line is cut short, not ended: it was learned as a value)
            log.error("reading standard input failed: %s: the input ends here%s",
                      exc.strerror or exc, f"; the unfinished last line ({cut} bytes) is "
                      "dropped" if cut else "")
            return self._feed(b"")
        return self._hand_out(data)

    def close(self) -> None:
        pass


def _existing(paths):
    """``(path, os.stat(path))`` for each of ``paths`` that still exists (rotation races) and
    is a regular file (a directory or FIFO named like a rotated file is no candidate)."""
    for path in paths:
        try:
            found = os.stat(path)
        except OSError:
            continue
        if stat.S_ISREG(found.st_mode):
            yield path, found


ROTATED_SUFFIXES_SKIPPED = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".zip")
# A rotated file is named as logrotate names it (app.log.1, app.log-20241204) or Python's
# rotating handlers do (app.log.1, app.log.2024-12-04): the path, a dot or a dash, a digit.
# Other siblings are not the log's past: a dead-letter file app.log.rejected (taken for the
# next file, the daemon read its own rejects back and grew it without end), a backup
# app.log.bak (its lines learned a second time).
ROTATED_NAME = re.compile(r"[.-][0-9]")


class FollowInput(_Source):
    """A growing file, followed like ``tail -F`` (``--follow``).

    Survives appends, rotation by rename (the old file is drained until the new one holds
    something, or the old one is deleted, and the old one has been quiet for ``rotate_quiet``
    seconds since the rename was seen), copytruncate (the lines not yet read are taken from the
    copy: a ``PATH.*``/``PATH-*`` sibling that begins with the same bytes and is long enough;
    then the truncated file is read from its start), the file missing for a while, and a partial
    last line.  It polls every ``poll`` seconds when idle (a stat call: cheap, and it works on
    NFS where inotify does not).  A restart resumes in the checkpointed file, found by device
    and inode among ``PATH.N`` / ``PATH-DATE`` rotated siblings (:data:`ROTATED_NAME`;
    compressed ones and the daemon's ``own`` files skipped) if it was rotated while the daemon
    was down, or in its copy if it was copytruncated.

    A copytruncate is seen by the file growing shorter than the position, or by its first
    bytes, or the bytes just before the position while a copy holds what was read, no longer
    being those this reader read (truncated and written past the position before the reader
    looked): a block read from a rewritten file is not handed out.  (Without a copy, a change
    before the position is an edit in place, read on from the position.)  The checkpoint's fingerprint is that of the bytes read,
    never of what the file holds now, so a checkpoint taken after a copytruncate the reader
    has not seen yet still finds the copy; the checkpoint also fingerprints the bytes before
    its position while the file still holds what was read, so that a restart on a file
    copytruncated and refilled past the position meanwhile reads the copy's rest and the new
    file, not the new file from the old position.  (A file whose every line is the same, read
    again, cannot be told from itself.)
    Anything but a regular file at the path (a directory, a FIFO) is logged once and waited
    out like a missing file; it is never opened for reading (a FIFO would block).
    """

    kind = "follow"

    def __init__(self, path: str, poll: float = 0.05, rotate_quiet: float = 1.0,
                 max_line_bytes: int | None = None, own=()):
        self.path = path
        # The daemon's own files (its dead letters, its per-point output): never the log's.
        self.own = {os.path.abspath(p) for p in own if p}
        self._max_line_bytes = max_line_bytes
        self.poll = poll
        self.rotate_quiet = rotate_quiet
        self.lines = self._new_lines()
        self.handle = None
        self.device = self.inode = None
        self.last_data = time.monotonic()
        self._moved_seen = None
        self.draining = False  # reading a rotated file that no longer grows
        self._finished = None
        self._copy = None  # after a copytruncate: the copy that holds the unread lines
        self._target = None  # the open file's real path (a symlink at the path resolved)
        self._head = b""  # the open file's first bytes, as this reader read them
        self._tail = b""  # the open file's bytes just before _position, as read (TAIL_BYTES)
        self._said_edit = False  # (bytes before the position changed in place: said once)
        self._position = 0  # where the next read of the open file starts
        self._complained = None  # (path, what) last logged as not a regular file
        self._in_hole = False  # the last block read was NULs to its end (see _skip_hole)
        self._after_hole = (b"", 0)  # a block read and where its rest starts (see read)
        self._holes = 0  # NUL holes skipped in the open file (the first SAID_HOLES are said)
        self._seen_size = 0  # the most the open file was seen to hold (bytes)
        self._said_gone = False
        self.continues = False  # the file next_file opened continues the last one (a copy)
        self._open(path)

    def _open(self, path: str, offset: int = 0) -> bool:
        handle, why = _open_regular(path)
        if handle is not None and (own := self._own_file(handle)) is not None:
            # A symlink (or hard link) at the path to the daemon's own dead letters or output:
            # read, each rejected line was written there again, and read again, without end.
            handle.close()
            handle, why = None, f"is the daemon's own {own}, not read"
        if handle is None:
            if why is None:
                why = "does not exist"
                if (path, why) != self._complained:  # (once per absence: rotations have gaps)
                    # (a warning until a file has been read: a path mistyped was silent)
                    log.log(logging.WARNING if self.device is None else logging.INFO,
                            "%s does not exist (yet): waiting for it", path)
            elif (path, why) != self._complained:
                log.warning("%s %s: waiting for %s file there", path, why,
                            "another" if "own" in why else "a regular")
            self._complained = (path, why)
            return False
        if self._complained is not None and self._complained[1] == "does not exist":
            log.info("%s has appeared: reading it", path)
        self._complained = None
        if self.handle is not None:
            self.handle.close()
        self.handle = handle
        info = os.fstat(handle.fileno())
        self.device, self.inode = info.st_dev, info.st_ino
        self._target = os.path.realpath(path)  # (what a symlink at the path led to)
        self._opened = path
        handle.seek(offset)
        self.offset = self._position = offset
        self.lines = self._new_lines()
        if offset and os.pread(handle.fileno(), 1, offset - 1) == b"\r":
            self.lines.owe_line_end()  # (as FileInput._check_before: a CR ended the last line)
        self.last_data = time.monotonic()
        self._after_hole = (b"", 0)
        self._holes = 0
        self._seen_size = 0
        self._said_gone = False  # (the path gone while this file is read: said once)
        self._moved_seen = None  # when the path was first seen to lead to another file
        self._head = os.pread(handle.fileno(), FINGERPRINT_BYTES, 0)
        kept = min(offset, TAIL_BYTES)
        self._tail = os.pread(handle.fileno(), kept, offset - kept) if kept else b""
        return True

    def _own_file(self, handle) -> str | None:
        """Which of the daemon's own files ``handle`` is (the same device and inode), if any."""
        info = os.fstat(handle.fileno())
        for path in self.own:
            try:
                mine = os.stat(path)
            except OSError:
                continue
            if (mine.st_dev, mine.st_ino) == (info.st_dev, info.st_ino):
                return f"file {path}"
        return None

    def _rewritten(self, start: int | None = None, chunk: bytes = b"") -> bool:
        """Whether the open file no longer holds the bytes read from it at its start, or just
        before ``start`` (the read position before ``chunk``, just read from there, which
        counts as read): truncated and written again since."""
        if start is None:
            start = self._position
        fd = self.handle.fileno()
        known = self._head
        if chunk and start <= len(known) < FINGERPRINT_BYTES:
            known += chunk[len(known) - start:FINGERPRINT_BYTES - start]
        if os.pread(fd, len(known), 0) != known:
            return True
        tail = self._tail
        if tail and (now := os.pread(fd, len(tail), start - len(tail))) != tail:
            head = (hashlib.sha256(known).hexdigest(), len(known))
            if self._find_copy(head, start, exclude=(self.device, self.inode)) is not None:
                return True  # copytruncated (the copy holds what was read) and refilled
            # Edited in place, not cut: a writer that rewrites its unfinished last line, an
            # export that updates its last row.  Read on from the position, as before.
            if not self._said_edit:
                self._said_edit = True
                log.warning("%s: bytes before byte %d changed in place (a writer that rewrites "
                            "what it wrote?): reading on from there", self.reading, start)
            tail = now
        self._head = known
        self._tail = (tail + chunk[-TAIL_BYTES:])[-TAIL_BYTES:] if chunk else tail
        return False

    def identity(self, offset: int | None = None) -> dict:
        if self.handle is None:
            return {"kind": self.kind, "path": os.path.abspath(self.path)}
        fd = self.handle.fileno()
        out = {"kind": self.kind, "path": os.path.abspath(self.path), "device": self.device,
               "inode": self.inode, "fingerprint": hashlib.sha256(self._head).hexdigest(),
               "fingerprint_bytes": len(self._head), "target": self._target,
               # (files rotated after this one are at least as new: see _after_gone)
               "mtime_ns": os.fstat(fd).st_mtime_ns}
        if offset and offset <= self._position and not self._rewritten():
            # (only while the file still holds what was read up to the read position: the
            # bytes of a file rewritten since are not those learned)
            out.update(_before(fd, offset) or {})
        return out

    def resume(self, saved: dict) -> bool:
        # (a back-fill's checkpoint too: the file followed after it was back-filled)
        if saved.get("kind") not in ("file", "follow") or saved.get("inode") is None:
            return False
        # Where the path led when the file was opened: a symlink switched to a new file while
        # the daemon was down still leads back to the old one, whose rest is read first.
        target = saved.get("target")
        earlier = [target] if isinstance(target, str) and target != self.path else []
        for candidate, info in _existing([self.path] + earlier + self._rotated_siblings()):
            if (info.st_dev, info.st_ino) != (saved["device"], saved["inode"]):
                continue
            head, _ = fingerprint(candidate, saved["fingerprint_bytes"])
            if head != saved["fingerprint"] or info.st_size < int(saved["offset"]):
                continue  # the same inode, truncated or rewritten since: look for its copy
            if not _holds_before(candidate, saved):
                copy = self._find_copy((saved["fingerprint"], saved["fingerprint_bytes"]),
                                       int(saved["offset"]), exclude=(info.st_dev, info.st_ino))
                if copy is not None:
                    continue  # copytruncated and refilled past the position: the copy's rest
                log.warning("%s: bytes before the checkpoint's position (byte %s) changed in "
                            "place since (a writer that rewrites what it wrote?): going on "
                            "from there", candidate, saved["offset"])
            offset = int(saved["offset"])
            self._open(candidate, offset)
            if offset and os.pread(self.handle.fileno(), 1, offset - 1) not in (b"\n", b"\r"):
                # A back-fill learned the file's last line before its newline came: what is
                # written on after it is no line of its own (learned, "34" of "1.234" was a
                # point, and every later line number one too high).
                self.lines.skip_rest_of_line()
                log.warning("%s: its line at byte %d had no newline when the last run ended "
                            "and was learned as it stood; what is written on after it, up to "
                            "its newline, is skipped", candidate, offset)
            self.draining = candidate != self.path and (
                time.time() - info.st_mtime > self.rotate_quiet)
            return True
        # Copytruncated while the daemon was down (or before it noticed): the rest of the file
        # is in its copy.
        copy = self._find_copy((saved["fingerprint"], saved["fingerprint_bytes"]),
                               int(saved["offset"]), exclude=None)
        if copy is not None and self._open(copy, int(saved["offset"])):
            self.draining = True
            return True
        self._after_gone(saved)
        return False

    def _after_gone(self, saved: dict) -> None:
        """The checkpointed file is gone (rotated and compressed, or removed): read first the
        rotated files that followed it, oldest first (two rotations while the daemon was down
        skipped a whole file: it went straight to the file at the path)."""
        since = saved.get("mtime_ns")
        if not isinstance(since, int):  # (a checkpoint from before this was kept)
            return
        newer = [(info.st_mtime_ns, candidate)
                 for candidate, info in _existing(self._rotated_siblings())
                 if info.st_mtime_ns >= since]
        if newer and self._open(min(newer)[1]):
            self.draining = True  # (rotated: it grows no more)

    @property
    def reading(self) -> str:
        """The path of the file being read (a rotated sibling, or the followed path)."""
        return self._opened if self.handle is not None else self.path

    def _find_copy(self, head: tuple, size: int, exclude) -> str | None:
        """The newest sibling that starts with ``head`` (sha256, bytes) and holds at least
        ``size`` bytes."""
        if head[0] is None or not head[1]:
            return None
        found = []
        for candidate, info in _existing(self._rotated_siblings()):
            if (info.st_dev, info.st_ino) == exclude or info.st_size < size:
                continue
            if fingerprint(candidate, head[1]) == head:
                found.append((info.st_mtime_ns, candidate))
        return max(found)[1] if found else None

    def _rotated_siblings(self) -> list:
        found = glob.glob(glob.escape(self.path) + ".*") + glob.glob(glob.escape(self.path) + "-*")
        return sorted(p for p in found if not p.endswith(ROTATED_SUFFIXES_SKIPPED)
                      and ROTATED_NAME.match(p, len(self.path))
                      and os.path.abspath(p) not in self.own)

    def read(self, timeout: float) -> bytes:
        if self.handle is not None:
            chunk, at = self._after_hole
            self._after_hole = (b"", 0)
            if at == len(chunk):
                start = self._position
                chunk, at = self.handle.read(READ_BYTES), 0
                if chunk:
                    self._position += len(chunk)
                    if self._rewritten(start, chunk):
                        # Truncated and written past the position before this read: the
                        # chunk is the new file's, read from the old position. Not handed out
                        # (nor counted as read: what was lost is said from the old position).
                        self._position = start
                        return self._truncated()
                    self.last_data = time.monotonic()
                    if len(chunk) == READ_BYTES:  # (more may be there: how much is known)
                        self._seen_size = max(self._seen_size,
                                              os.fstat(self.handle.fileno()).st_size)
            if at < len(chunk):
                if chunk[at] == 0 and not self.lines.pending_bytes:
                    at = self._skip_hole(chunk, at)
                else:
                    self._in_hole = False
                hole = chunk.find(b"\n\0", at)
                if hole >= 0:
                    # A hole after a line, inside the block: the lines up to it now, the rest
                    # at the next read, where it leads the block and is skipped (glued to the
                    # line after it, it took that line with it, rejected as too long).  The
                    # block is kept whole, with where the rest starts: a file of many holes
                    # costs one copy of each piece, not of the rest at each hole.
                    self._after_hole = (chunk, hole + 1)
                    return self._feed(chunk[at:hole + 1])
                return self._feed(chunk[at:] if at else chunk)
        return self._at_eof(timeout)

    def _skip_hole(self, chunk: bytes, at: int) -> int:
        """Where the NUL bytes that start a line at ``chunk[at]`` end: a writer not in append
        mode goes on writing at its old offset after a copytruncate, and the file begins with a
        hole of NULs up to there (read as one line, too long, that took the first real line
        with it)."""
        end = _NULS.match(chunk, at).end()
        if not self._in_hole:  # (once per hole, however many blocks it spans)
            self._holes += 1
            if self._holes <= SAID_HOLES:
                log.warning("%s: NUL bytes from byte %d skipped (a hole: a copytruncate with a "
                            "writer not in append mode?)%s", self.path, self.offset,
                            "; further holes in this file are skipped without a word"
                            if self._holes == SAID_HOLES else "")
        self._in_hole = end == len(chunk)
        self.offset += end - at
        return end

    def _at_eof(self, timeout: float) -> bytes:
        """Nothing new in the open file: decide between waiting, rotation and truncation."""
        try:
            info = os.stat(self.path)
        except OSError as exc:
            info = None
            if self.handle is not None and not self._said_gone:
                # (deleted, or a path that cannot be looked up: nothing was said while the
                # open file was read on and the path waited for)
                self._said_gone = True
                log.info("%s: %s; reading on in the file that was open there until a file "
                         "comes back at the path", self.path, _stat_reason(exc))
        if self.handle is not None and info is not None and (
                (info.st_dev, info.st_ino) == (self.device, self.inode)):
            self._seen_size = max(self._seen_size, info.st_size)
        if self.handle is not None and self._opened == self.path and (
                info is None or (info.st_dev, info.st_ino) != (self.device, self.inode)):
            self._opened = self._moved_to()
        if self.handle is None:
            if info is not None and self._open(self.path):
                return b""
        elif info is not None and (info.st_dev, info.st_ino) != (self.device, self.inode):
            # Renamed away: drain it until the writer has clearly moved to the new file: the
            # new one holds something (or the old one is deleted: rotated and compressed at
            # once, it can grow no more), and the old one has been quiet since the rename was
            # seen, not only since its last line (a log quieter than rotate_quiet was left at
            # once, and the line its writer put in the old file before its reopen was lost).
            now = time.monotonic()
            if self._moved_seen is None:
                self._moved_seen = now
            quiet = now - max(self.last_data, self._moved_seen) >= self.rotate_quiet
            # (Not a regular file at the path, a FIFO or a directory, holds no writer's lines:
            # left when quiet, and said, as before.)
            if self.draining or (quiet and (info.st_size > 0 or not stat.S_ISREG(info.st_mode)
                                            or os.fstat(self.handle.fileno()).st_nlink == 0)):
                return self._finish_file("rotated")
        elif self.draining:
            return self._finish_file("rotated")  # a rotated sibling found at resume, drained
        elif ((info is not None and info.st_size < self.offset + self.lines.pending_bytes)
              or self._rewritten()):
            return self._truncated()
        elif self.lines.holds_cr and time.monotonic() - self.last_data >= self.poll:
            # A writer that ends lines in a lone CR: the file stopped after one, so it ended
            # the last line (an LF that comes after all the same is that line's).
            return self._end_held_cr()
        time.sleep(min(max(timeout, 0.0), self.poll))
        return b""

    def _moved_to(self) -> str:
        """Where the open file went when the path stopped leading to it: the rotated sibling
        that is it (the lines still drained from it are named so, not by the path, which holds
        a new file or nothing), else the path (a file deleted; looked for again at each poll)."""
        for candidate, info in _existing(self._rotated_siblings()):
            if (info.st_dev, info.st_ino) == (self.device, self.inode):
                return candidate
        return self.path

    def _truncated(self) -> bytes:
        """copytruncate: finish the lines from the copy if there is one, else what was read is
        all there was."""
        head = (hashlib.sha256(self._head).hexdigest(), len(self._head))
        copy = self._find_copy(head, self.offset + self.lines.pending_bytes,
                               exclude=(self.device, self.inode))
        if copy is not None:
            self._copy = copy
            self._finished = "copied"
            self.boundary = True  # the partial line, if any, is read again from the copy
            return b""
        unread = self._seen_size - self._position
        if unread > 0:
            # (A copy put elsewhere, logrotate's olddir: the unread backlog went with an INFO.)
            log.warning("%s was truncated before it was read to its end, and no copy of it was "
                        "found beside it (a %s.N or %s-DATE file that starts with the same "
                        "bytes): the %d bytes or more it held after byte %d are lost",
                        self.reading, self.path, self.path, unread, self._position)
        return self._finish_file("truncated")

    def _finish_file(self, why: str) -> bytes:
        """The open file is done: a partial last line counts as a line; the loop switches."""
        self._finished = why
        data = self._feed(b"", at_end=True)
        self.boundary = True
        return data

    def next_file(self) -> None:
        """Continue with the next file: after truncation the same path from its start; after a
        rename, the oldest rotated sibling newer than the finished file (several rotations may
        have happened meanwhile), else the file now at the path."""
        self.boundary = False
        self.continues = False
        if self._finished == "copied":
            copy, self._copy = self._copy, None
            if self._open(copy, self.offset):
                self.draining = True
                self.continues = True  # (the same lines go on: the copy's numbers are theirs)
                return
        follower = self.path
        if self._finished == "rotated" and self.handle is not None:
            finished = os.fstat(self.handle.fileno())
            newer = []
            for candidate, info in _existing(self._rotated_siblings()):
                if ((info.st_dev, info.st_ino) != (finished.st_dev, finished.st_ino)
                        and info.st_mtime_ns >= finished.st_mtime_ns):
                    newer.append((info.st_mtime_ns, candidate))
            if newer:
                follower = min(newer)[1]
        self.draining = False
        if not self._open(follower):
            if self.handle is not None:
                self.handle.close()
            self.handle = None
            self.offset = 0
            return
        # A rotated file that has been quiet for a while is drained without waiting.
        self.draining = follower != self.path and (
            time.time() - os.fstat(self.handle.fileno()).st_mtime > self.rotate_quiet)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
