"""Data files that are compressed (gzip, bzip2, xz), read as the lines they hold.

A back-fill is often of rotated logs (``app.log.2.gz``).  The compression is told by the file's
first bytes, not its name, and the file is read through the standard library's decompressors:
positions (``tell``, ``seek``) count the *decompressed* bytes, so a checkpoint's input offset
means the same for a compressed file as for a plain one (resuming decompresses up to it again).
``raw_position`` and ``in_file`` say how far into the file itself the reading is, for
progress.

Example
-------
>>> import gzip, os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "values.txt.gz")
>>> with gzip.open(path, "wb") as out:
...     _ = out.write(b"1.5\\n2.5\\n")
>>> compression(path)
'gzip'
>>> with DataFile(path) as data:
...     data.read(), data.tell()
(b'1.5\\n2.5\\n', 8)
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import stat
import zlib

# First bytes of each format (zstd: for a clear refusal; the 3.11 standard library lacks it).
MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"),
         (b"\x28\xb5\x2f\xfd", "zstd"))
_OPENERS = {"gzip": lambda raw: gzip.GzipFile(fileobj=raw, mode="rb"),
            "bzip2": lambda raw: _Streams(raw, "bzip2"), "xz": lambda raw: _Streams(raw, "xz")}
# What a damaged or cut-off compressed stream raises, besides OSError.
_DAMAGED = (EOFError, lzma.LZMAError, zlib.error)


def compression(path) -> str | None:
    """The compression of the regular file at ``path`` by its first bytes, or None (plain, or
    not a regular file: a FIFO is not peeked at, which would take its bytes)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        with open(path, "rb") as handle:
            head = handle.read(6)
    except OSError:
        return None
    return next((kind for magic, kind in MAGIC if head.startswith(magic)), None)


# Compressed bytes read from the file at a time, and decompressed bytes handed out at most at a
# time by a read of everything (so that one step's output stays bounded).
_RAW_CHUNK, _OUT_CHUNK = 64 << 10, 1 << 20


def _gathered(piece, size: int) -> bytes:
    """Up to ``size`` bytes (all, if negative) from calls of ``piece(limit)`` (``limit``: the
    bytes still wanted, -1 for all), until one comes back empty."""
    pieces, total = [], 0
    while size < 0 or total < size:
        chunk = piece(-1 if size < 0 else size - total)
        if not chunk:
            break
        pieces.append(chunk)
        total += len(chunk)
    return b"".join(pieces)


class _Streams:
    """Concatenated xz or bzip2 streams (``cat a.xz b.xz``, ``pbzip2``'s output), read as one
    file: ``read``, ``seek`` and ``tell`` in decompressed bytes.

    The standard library's ``LZMAFile`` and ``BZ2File`` read such files too, but a next stream
    damaged in its first bytes, or bytes after the last stream that are no stream at all,
    simply ended the data there: a damaged second stream of a back-fill lost all its rows
    without a word.  Here bytes that start with the format's magic are a stream, and damage in
    one is an error; bytes that do not (xz's stream padding of zero bytes aside) are trailing
    garbage, which ends the data and sets :attr:`trailing_garbage`, as a gzip file's do.
    """

    def __init__(self, raw, kind: str):
        self.raw = raw
        self.kind = kind
        self.magic = next(magic for magic, name in MAGIC if name == kind)
        self._restart()

    def _restart(self) -> None:
        self.raw.seek(0)
        self._decompressor = self._new()
        self._input = b""  # compressed bytes read but not yet fed
        self._position = 0
        self._done = False
        self.trailing_garbage = False

    def _new(self):
        return lzma.LZMADecompressor() if self.kind == "xz" else bz2.BZ2Decompressor()

    def _next_stream(self) -> bool:
        """After a stream's end: start the next one (True), or end the data (False)."""
        rest = self._decompressor.unused_data + self._input
        while True:
            if self.kind == "xz":
                rest = rest.lstrip(b"\0")  # (stream padding)
            if len(rest) >= len(self.magic):
                break
            more = self.raw.read(_RAW_CHUNK)
            if not more:
                break
            rest += more
        if not rest:
            return False
        if not rest.startswith(self.magic):
            self.trailing_garbage = True
            return False
        self._decompressor, self._input = self._new(), rest
        return True

    def _piece(self, limit: int) -> bytes:
        """Up to ``limit`` (> 0) decompressed bytes; empty at the end of the data."""
        while not self._done:
            if self._decompressor.eof and not self._next_stream():
                self._done = True
                break
            data = b""
            if self._decompressor.needs_input:
                data, self._input = self._input or self.raw.read(_RAW_CHUNK), b""
                if not data:
                    raise EOFError("Compressed file ended before the end-of-stream marker "
                                   "was reached")
            piece = self._decompressor.decompress(data, limit)
            if piece:
                self._position += len(piece)
                return piece
        return b""

    def read(self, size: int = -1) -> bytes:
        return _gathered(lambda limit: self._piece(_OUT_CHUNK if limit < 0 else limit), size)

    def seek(self, offset: int) -> None:
        """Go to the decompressed byte ``offset`` (or the end, if the data are shorter)."""
        if offset < self._position:
            self._restart()
        while self._position < offset and self._piece(min(offset - self._position,
                                                          _OUT_CHUNK)):
            pass

    def tell(self) -> int:
        return self._position

    def close(self) -> None:
        """(The raw file is its owner's to close.)"""


def _is_terminal(path: str) -> bool:
    """Whether ``path`` is this process's standard input and that is a terminal (read until
    Ctrl-D): /dev/stdin typed into.  Decided without opening ``path``: opening a device to ask
    rewinds a tape, arms a watchdog, or waits for a serial line's carrier."""
    try:
        return os.isatty(0) and os.path.samestat(os.stat(path), os.fstat(0))
    except OSError:
        return False


class DataFile:
    """A data file opened for reading, decompressed if it is compressed.

    Parameters
    ----------
    path : str or path-like

    Raises
    ------
    OSError
        The file cannot be opened, is a device (/dev/zero would be read for ever), or is
        compressed in a format that cannot be read here (zstd), with a message saying how to
        feed it instead.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        try:
            mode = os.stat(self.path).st_mode
        except OSError:
            mode = None  # (open says why)
        if mode is not None and (stat.S_ISCHR(mode) or stat.S_ISBLK(mode)) \
                and not _is_terminal(self.path):
            # (/dev/zero was read for ever, without a word; a pipe or a FIFO ends, and is
            # read, as is a terminal, /dev/stdin typed into, which ends at Ctrl-D)
            raise OSError(f"{self.path} is a {'character' if stat.S_ISCHR(mode) else 'block'} "
                          "device, not a file of data: pipe the data in, or name a file")
        self.compression = compression(self.path)
        if self.compression == "zstd":
            raise OSError(f"{self.path} is zstd-compressed, which this Python cannot read: "
                          f"decompress it on the way (zstd -dc {self.path} | ...)")
        self.raw = open(self.path, "rb")
        self.handle = self.raw if self.compression is None else \
            _OPENERS[self.compression](self.raw)
        # Bytes after the last whole gzip member (xz, bzip2 stream) that start no other
        # (padding, a torn append): the data end there, as gzip(1) reads it ("trailing
        # garbage ignored").
        self.trailing_garbage = False

    def fileno(self) -> int:
        """The file's descriptor (of the compressed bytes, if it is compressed)."""
        return self.raw.fileno()

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` (decompressed) bytes; a damaged compressed stream is an OSError."""
        try:
            if self.compression == "gzip":
                return self._read_gzip(size)
            data = self.handle.read(size)
            if self.compression is not None:
                self.trailing_garbage = self.handle.trailing_garbage
            return data
        except _DAMAGED as exc:
            raise OSError(f"{self.path}: damaged or cut-off {self.compression} data "
                          f"({exc})") from None
        except OSError as exc:
            raise self._named(exc) from None

    def _read_gzip(self, size: int) -> bytes:
        """``read`` a piece at a time (``read1``): bytes that are no gzip member where the next
        one would start end the data, and what was decompressed before them is kept (a whole
        ``read`` raised and lost it)."""
        if self.trailing_garbage:
            return b""
        return _gathered(self._gzip_piece, size)

    def _gzip_piece(self, limit: int) -> bytes:
        try:
            return self.handle.read1(limit)
        except gzip.BadGzipFile as exc:
            if not str(exc).startswith("Not a gzipped file"):
                raise OSError(f"{self.path}: damaged gzip data ({exc})") from None
            self.trailing_garbage = True
            return b""

    def seek(self, offset: int) -> None:
        """Go to the (decompressed) byte ``offset``: linear in it for a compressed file."""
        try:
            self.handle.seek(offset)
        except _DAMAGED as exc:
            raise OSError(f"{self.path}: damaged or cut-off {self.compression} data "
                          f"({exc})") from None
        except OSError as exc:
            raise self._named(exc) from None

    def _named(self, exc: OSError) -> OSError:
        """``exc`` naming the file: the decompressor's own OSError (bzip2's "Invalid data
        stream", no errno) says neither which file nor that it is damaged."""
        if self.compression is not None and exc.errno is None:
            return OSError(f"{self.path}: damaged or cut-off {self.compression} data ({exc})")
        return exc

    def tell(self) -> int:
        return self.handle.tell()

    def raw_position(self) -> int:
        """Bytes of the file itself read so far (compressed ones, if it is compressed)."""
        return self.raw.tell()

    def in_file(self, offset: int) -> float:
        """About where the (decompressed) byte ``offset`` lies in the file itself: scaled by
        the compression of what was read so far (for progress through a compressed file)."""
        read = self.tell()
        return offset if read <= 0 else offset * self.raw_position() / read

    def close(self) -> None:
        if self.handle is not self.raw:
            self.handle.close()
        self.raw.close()

    def __enter__(self) -> "DataFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
