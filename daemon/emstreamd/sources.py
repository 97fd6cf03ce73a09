"""Where bytes come from: stdin (a pipe, read promptly) or a regular file read to its end.

A source hands out blocks of *complete* lines; a partial last line is kept until its newline
arrives.  At the end of input a final line without a newline is handed out as a line (policy:
a writer that did not end its last line still meant it).
"""

from __future__ import annotations

import hashlib
import os
import select

from emstream.parse import LineBuffer

READ_BYTES = 1 << 20
FINGERPRINT_BYTES = 1024


def fingerprint(path: str, length: int = FINGERPRINT_BYTES) -> tuple[str, int]:
    """sha256 of a file's first ``length`` bytes (fewer if it is shorter), and how many."""
    with open(path, "rb") as handle:
        head = handle.read(length)
    return hashlib.sha256(head).hexdigest(), len(head)


class _Source:
    """Shared bookkeeping: ``offset`` counts the bytes handed out as complete lines."""

    offset = 0
    at_end = False

    def _hand_out(self, chunk: bytes) -> bytes:
        if not chunk:
            self.at_end = True
        data = self.lines.feed(chunk, self.at_end)
        self.offset += len(data)
        return data


class FileInput(_Source):
    """A regular file, from a byte offset to its end (``--input``, for back-fills)."""

    kind = "file"

    def __init__(self, path: str, offset: int = 0):
        self.path = path
        self.handle = open(path, "rb")
        stat = os.fstat(self.handle.fileno())
        self.device, self.inode = stat.st_dev, stat.st_ino
        self.fingerprint, self.fingerprint_bytes = fingerprint(path)
        self.handle.seek(offset)
        self.offset = offset
        self.lines = LineBuffer()

    def identity(self) -> dict:
        return {"kind": self.kind, "path": os.path.abspath(self.path), "device": self.device,
                "inode": self.inode, "fingerprint": self.fingerprint,
                "fingerprint_bytes": self.fingerprint_bytes}

    def matches(self, saved: dict) -> bool:
        """Is ``saved`` (an identity from a checkpoint) this same file?"""
        if saved.get("kind") != self.kind:
            return False
        head, _ = fingerprint(self.path, saved.get("fingerprint_bytes", FINGERPRINT_BYTES))
        return head == saved.get("fingerprint")

    def read(self, timeout: float) -> bytes:
        return self._hand_out(self.handle.read(READ_BYTES))

    def close(self) -> None:
        self.handle.close()


class StdinInput(_Source):
    """Standard input: polled, so a slow producer still gets prompt batches."""

    kind = "stdin"

    def __init__(self, fd: int = 0):
        self.fd = fd
        self.lines = LineBuffer()

    def identity(self) -> dict:
        return {"kind": self.kind}

    def matches(self, saved: dict) -> bool:
        return False  # a pipe cannot be replayed: nothing to resume from

    def read(self, timeout: float) -> bytes:
        ready, _, _ = select.select([self.fd], [], [], max(timeout, 0.0))
        if not ready:
            return b""
        return self._hand_out(os.read(self.fd, READ_BYTES))

    def close(self) -> None:
        pass
