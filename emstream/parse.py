"""Text to rows: the one parser of numeric lines (the ``emstream`` command and the daemon).

A pure function from bytes to rows plus counted rejects.  A line holds ``n_fields`` numbers
separated by whitespace and/or commas.  Every line of a block is judged at once, with numpy
over the block's bytes: where each line starts and ends, its fields, the highest class of its
bytes; numpy (or pyarrow's reader) parses the numbers of all the lines that may be rows in one
call.  Nothing is done line by line in Python, so a block of junk costs a few passes over its
bytes, like a block of numbers.  Every rejected line is reported with its 1-based line number
and one of :data:`REASONS`, as columns (:class:`Rejects`): a flood of blank lines makes arrays,
not an object per line.

Numbers follow one strict grammar (:data:`_NUMBER`, applied to the bytes in bulk): optional
sign, digits with an optional decimal point, optional exponent; ASCII only.  ``1_000``,
``0x10`` and non-ASCII digits are rejected ("non-numeric"); ``nan``, ``inf`` and ``infinity``
(any case, optional sign) and a value that overflows to infinity are rejected as "non-finite",
and a value beyond ±1e100 as "out of range" (the model refuses them: sums of their squares
would overflow).
:func:`_parse_line` states the same rules for one line; the tests hold the two to each other.

Hostile input costs little: the checks cannot backtrack (time linear in the bytes), lines longer
than ``max_line_bytes`` are rejected before any other look at them, and
:class:`~emstream.linebuffer.LineBuffer` (which cuts a stream into blocks of lines) keeps only
the start of an over-long partial line.

Example
-------
>>> from emstream.parse import parse_lines
>>> parsed = parse_lines(b"1.5\\n2\\nabc\\n\\n3e2\\n")
>>> parsed.rows.ravel().tolist(), parsed.lines.tolist()
([1.5, 2.0, 300.0], [1, 2, 5])
>>> [(r.line, r.reason) for r in parsed.rejects]
[(3, 'non-numeric'), (4, 'blank')]
>>> parse_lines(b"1,2,3\\n4 5 6\\n", columns=[0, 2]).rows.tolist()
[[1.0, 3.0], [4.0, 6.0]]
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from json.encoder import encode_basestring_ascii
from typing import NamedTuple

import numpy as np

from .linebuffer import LineBuffer  # noqa: F401  (cut streams into lines: cli, emstreamd)
from .validation import MAX_ABS_VALUE

REASONS = ("blank", "non-numeric", "non-finite", "wrong field count", "too long",
           "invalid utf-8", "invalid json", "missing field", "out of range", "bad key",
           "bad timestamp", "decimal comma")
# Verdicts on a line: the index of its reason in REASONS, or _ROW.
(_IS_BLANK, _IS_NON_NUMERIC, _IS_NON_FINITE, _IS_WRONG_COUNT, _IS_TOO_LONG, _IS_INVALID_UTF8,
 _IS_INVALID_JSON, _IS_MISSING, _IS_OUT_OF_RANGE, _IS_BAD_KEY, _IS_BAD_TIME,
 _IS_DECIMAL_COMMA) = range(len(REASONS))
_ROW = -1
_CODES = {reason: code for code, reason in enumerate(REASONS)}
# The rules for one line (_parse_line): one way to match each number (no nested choices), so a
# failing match costs linear time.
_NUMBER = re.compile(rb"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_NON_FINITE = re.compile(rb"[+-]?(?:nan|inf(?:inity)?)", re.IGNORECASE)
# A control character: C0 and DEL as bytes, C1 (U+0080-U+009F, CSI among them) as UTF-8, and
# (as UTF-8) the line and paragraph separators U+2028/U+2029, which split a per-point line for
# any reader that splits lines the Unicode way, and the bidirectional embeddings, overrides
# and isolates (U+202A-U+202E, U+2066-U+2069), which make a listing's row read in another
# order than it is written.  (The marks U+200E/U+200F/U+061C, which right-to-left names
# carry, reorder nothing beyond their own neighbours, and stay.)  And the invisible ones no
# name needs: the zero-width space U+200B, the word joiner and invisible operators
# U+2060-U+2064, and a byte-order mark inside a key (U+FEFF): "\u200bweb" was a series of
# its own that every listing showed as "web".  (The zero-width joiner and non-joiner U+200C
# and U+200D stay: Persian and Indic names and emoji sequences need them.)
# (The multi-byte ones apart too: a block parser checks single bytes with array tests.)
WIDE_CONTROL = re.compile(rb"\xc2[\x80-\x9f]|\xe2\x80[\x8b\xa8-\xae]|"
                          rb"\xe2\x81[\xa0-\xa4\xa6-\xa9]|\xef\xbb\xbf")
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]|" + WIDE_CONTROL.pattern)
_SEPARATORS = re.compile(rb"[ \t\r,]+")
_SPACES = bytes.maketrans(b",\r", b"  ")
_SNIPPET = 60


BYTE_ORDER_MARK = b"\xef\xbb\xbf"


# Byte-order marks of the encodings whose ASCII is not ASCII (longest first: UTF-32LE's
# begins with UTF-16LE's).
_WIDE_MARKS = ((b"\xff\xfe\x00\x00", "UTF-32LE"), (b"\x00\x00\xfe\xff", "UTF-32BE"),
               (b"\xff\xfe", "UTF-16LE"), (b"\xfe\xff", "UTF-16BE"))


def wide_encoding(data: bytes) -> str | None:
    """The encoding whose byte-order mark starts ``data``, for text of two or four bytes a
    character (Excel's "Unicode text", PowerShell's ``>``), which no line of it would parse
    in; None for any other start.

    >>> wide_encoding("value\\n1.5\\n".encode("utf-16")), wide_encoding(b"1.5\\n")
    ('UTF-16LE', None)
    """
    for mark, name in _WIDE_MARKS:
        if data.startswith(mark):
            return name
    return None


def blank_byte_order_marks(data: bytes) -> bytes:
    """``data`` with each UTF-8 byte order mark that starts a line (spreadsheets' "CSV UTF-8"
    starts the file with one) made three spaces: the header's first name is then the name,
    and the first row is not rejected; byte offsets stay as they are.

    >>> blank_byte_order_marks(b"\\xef\\xbb\\xbftimestamp,value\\n")
    b'   timestamp,value\\n'
    """
    if BYTE_ORDER_MARK not in data:
        return data
    marked = bytearray(data)
    at = data.find(BYTE_ORDER_MARK)
    while at >= 0:
        if at == 0 or data[at - 1] == 10:
            marked[at:at + 3] = b"   "
        at = data.find(BYTE_ORDER_MARK, at + 3)
    return bytes(marked)


def key_text(name: bytes) -> str | None:
    """A series key as text: UTF-8, or else the Windows code page that spreadsheets save CSV
    in (cp1252, as header names are read), so that a host named ``Zürich`` in an Excel export
    is the key ``Zürich``, however it was saved; None for bytes that are neither (a key is
    stored and shown as text: rejected as "bad key").

    >>> key_text("Zürich".encode()), key_text("Zürich".encode("cp1252")), key_text(b"a\\x81")
    ('Zürich', 'Zürich', None)
    """
    try:
        return name.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return name.decode("cp1252")
    except UnicodeDecodeError:  # (five bytes cp1252 leaves undefined)
        return None


def key_bytes(key: str) -> list:
    """Every way a key may be written that :func:`key_text` reads as ``key``: its UTF-8, and
    its cp1252 if that differs and is not itself UTF-8 (which would read as another key).

    >>> key_bytes("Zürich"), key_bytes("web-3")
    ([b'Z\\xc3\\xbcrich', b'Z\\xfcrich'], [b'web-3'])
    """
    written = [key.encode("utf-8", "surrogatepass")]
    try:
        other = key.encode("cp1252")
    except UnicodeEncodeError:
        return written
    if other != written[0] and key_text(other) == key:
        written.append(other)
    return written


# Longest time text taken (bytes): ISO 8601 with nanoseconds and a zone is 35; a longer
# field is no time (and would widen its block's array of times, as a long key would).
MAX_TIME_BYTES = 64
# Longest key taken (bytes): a host name is at most 253.  A block's keys are held in one
# array as wide as its longest, so one 4 KB key cost 4 KB for every line of its block (1.9 GB
# for a block of short lines).
MAX_KEY_BYTES = 256


_ASCII_SPACE = " \t\n\r\x0b\x0c"  # what bytes.strip() removes


def is_bad_key(name: bytes) -> bool:
    """Whether a series key (as written, surrounding whitespace removed) is refused ("bad
    key"): empty, longer than :data:`MAX_KEY_BYTES`, or holding a control character (a NUL,
    a tab, an escape sequence, a Unicode line separator or bidirectional override), which would
    name a series no listing or per-point line can show as it is.

    >>> is_bad_key(b"web-3"), is_bad_key(b""), is_bad_key(b"a\\x00"), is_bad_key(b"x" * 300)
    (False, True, True, True)
    >>> is_bad_key("\\u009b31m".encode()), is_bad_key("Zürich 5°".encode())
    (True, False)
    >>> is_bad_key("x\\u2028y".encode()), is_bad_key("\\u202eabc".encode())
    (True, True)
    >>> is_bad_key("\\u05e9\\u05e8\\u05ea\\u200f-1".encode())  # (a right-to-left mark)
    False
    >>> is_bad_key("\\u200bweb".encode()), is_bad_key("we\\ufeffb".encode())
    (True, True)
    """
    return not name or len(name) > MAX_KEY_BYTES or _CONTROL.search(name) is not None


class Reject(NamedTuple):
    """A line that was skipped: its 1-based number, why, and its start (for logs)."""

    line: int
    reason: str
    text: str


class Rejects(Sequence):
    """The rejected lines of a block as columns; a sequence of :class:`Reject`.

    A flood of bad lines costs a few arrays, not an object per line: a :class:`Reject` is made
    only when one is asked for (by index or iteration, e.g. for the few lines a log shows).  A
    slice is a tuple of them, as it was when rejects were a tuple.

    Attributes
    ----------
    lines : ndarray of int64
        1-based line numbers, increasing.
    codes : ndarray of int8
        Each line's reason, as an index into ``reasons``.
    starts, stops : ndarray of int64
        The span in ``data`` of each line's text: its first ``_SNIPPET`` bytes.
    data : bytes
        The block the spans point into.
    reasons : tuple of str
        :data:`REASONS`, and any other reason a caller's rejects carry ("bad timestamp").

    Examples
    --------
    >>> from emstream.parse import parse_lines
    >>> rejects = parse_lines(b"1\\n\\nx y\\n").rejects
    >>> len(rejects), rejects.lines.tolist(), rejects.counts()
    (2, [2, 3], {'blank': 1, 'non-numeric': 1})
    >>> rejects[1]
    Reject(line=3, reason='non-numeric', text='x y')
    >>> blob, ends = rejects.to_json_lines()  # (dead letters)
    >>> bytes(blob).splitlines()[1], ends.tolist()
    (b'{"line": 3, "reason": "non-numeric", "text": "x y"}', [43, 95])
    """

    __slots__ = ("codes", "data", "lines", "reasons", "starts", "stops")

    def __init__(self, lines, codes, starts, stops, data: bytes = b"", reasons=REASONS):
        self.lines = np.asarray(lines, dtype=np.int64)
        self.codes = np.asarray(codes, dtype=np.int8)
        self.starts = np.asarray(starts, dtype=np.int64)
        self.stops = np.asarray(stops, dtype=np.int64)
        self.data = data
        self.reasons = tuple(reasons)

    @classmethod
    def empty(cls) -> Rejects:
        return cls(np.empty(0, np.int64), np.empty(0, np.int8), np.empty(0, np.int64),
                   np.empty(0, np.int64))

    @classmethod
    def of(cls, rejects) -> Rejects:
        """``rejects`` as columns: as they are if they are, else from :class:`Reject` tuples
        (their texts kept as given)."""
        if isinstance(rejects, Rejects):
            return rejects
        rejects = list(rejects)
        if not rejects:
            return cls.empty()
        reasons = list(REASONS)
        for reject in rejects:
            if reject.reason not in reasons:
                reasons.append(reject.reason)
        texts = [reject.text.encode("utf-8", "surrogatepass") for reject in rejects]
        sizes = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
        stops = np.cumsum(sizes)
        return cls([r.line for r in rejects], [reasons.index(r.reason) for r in rejects],
                   stops - sizes, stops, b"".join(texts), reasons)

    @classmethod
    def concat(cls, parts) -> Rejects:
        """The rejects of ``parts`` one after the other (their lines in order)."""
        parts = [part for part in map(cls.of, parts) if len(part)]
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        reasons = list(parts[0].reasons)
        for part in parts[1:]:
            reasons += [r for r in part.reasons if r not in reasons]
        codes = [np.array([reasons.index(r) for r in part.reasons], dtype=np.int8)[part.codes]
                 for part in parts]
        data = parts[0].data
        if any(part.data is not data for part in parts):  # texts gathered, not whole blocks
            parts = [part._compact() for part in parts]
            shifts = np.cumsum([0] + [len(part.data) for part in parts[:-1]]).tolist()
            data = b"".join(part.data for part in parts)
        else:
            shifts = [0] * len(parts)
        starts = [part.starts + shift for part, shift in zip(parts, shifts)]
        stops = [part.stops + shift for part, shift in zip(parts, shifts)]
        return cls(np.concatenate([p.lines for p in parts]), np.concatenate(codes),
                   np.concatenate(starts), np.concatenate(stops), data, reasons)

    def _compact(self) -> Rejects:
        """The same rejects holding only their texts' bytes (not the whole block's)."""
        sizes = self.stops - self.starts
        stops = np.cumsum(sizes)
        raw = np.frombuffer(self.data, dtype=np.uint8)
        data = raw[_ranges(self.starts, sizes)].tobytes()
        return Rejects(self.lines, self.codes, stops - sizes, stops, data, self.reasons)

    def take(self, index) -> Rejects:
        """The rejects at ``index`` (a slice, a boolean mask or indices), as columns."""
        return Rejects(self.lines[index], self.codes[index], self.starts[index],
                       self.stops[index], self.data, self.reasons)

    def renumbered(self, lines) -> Rejects:
        """The same rejects under other line numbers."""
        return Rejects(lines, self.codes, self.starts, self.stops, self.data, self.reasons)

    def __len__(self) -> int:
        return self.lines.size

    def __getitem__(self, index):
        if isinstance(index, slice):
            return tuple(self.take(index))
        line = self.lines[index]  # (an IndexError beyond the end, as a tuple's)
        return Reject(int(line), self.reasons[self.codes[index]],
                      _text(self.data, int(self.starts[index]), int(self.stops[index])))

    def __iter__(self):
        reasons = self.reasons
        for line, code, start, stop in zip(self.lines.tolist(), self.codes.tolist(),
                                           self.starts.tolist(), self.stops.tolist()):
            yield Reject(line, reasons[code], _text(self.data, start, stop))

    def __eq__(self, other) -> bool:
        if isinstance(other, (Rejects, tuple)):
            return tuple(self) == tuple(other)
        return NotImplemented

    __hash__ = None

    def __repr__(self) -> str:
        return f"Rejects({len(self)} lines: {self.counts()})"

    def counts(self) -> dict:
        """Rejected lines by reason, in the order the reasons first occur."""
        tally = np.bincount(self.codes, minlength=len(self.reasons))
        first = {code: int(np.argmax(self.codes == code))
                 for code in np.flatnonzero(tally).tolist()}
        return {self.reasons[code]: int(tally[code]) for code in sorted(first, key=first.get)}

    def to_json_lines(self) -> tuple[bytes, np.ndarray]:
        """One JSON object a reject, as ``json.dumps({"line": .., "reason": .., "text": ..})``
        writes it, each on its line (bytes, or a memoryview of them); and the offset just past
        each record.

        A long run of rejects with the same reason and text (a flood) is written by numpy
        into the result, the line numbers' digits included; the others are made all at once
        (:func:`_json_records`)."""
        n = len(self)
        if not n:
            return b"", np.empty(0, dtype=np.int64)
        heads = self._runs()
        runs = np.diff(np.append(heads, n))
        long = runs >= _LONG_RUN
        if not long.any():
            return _json_records(self)
        single = ~np.repeat(long, runs)
        others, other_ends = (_json_records(self.take(single)) if single.any()
                              else (b"", np.empty(0, dtype=np.int64)))
        suffixes = {}
        for start in heads[long].tolist():
            code = int(self.codes[start])
            text = _text(self.data, int(self.starts[start]), int(self.stops[start]))
            suffixes[start] = (f', "reason": {json.dumps(self.reasons[code])}, '
                               f'"text": {json.dumps(text)}}}\n').encode()
        sizes = np.empty(n, dtype=np.int64)
        sizes[single] = np.diff(other_ends, prepend=0)
        tails = np.array([len(suffixes[start]) if flood else 0
                          for start, flood in zip(heads.tolist(), long.tolist())])
        in_runs = ~single
        sizes[in_runs] = (len(_RECORD_HEAD) + _digits(self.lines[in_runs])
                          + np.repeat(tails, runs)[in_runs])
        ends = np.cumsum(sizes)
        out = np.empty(int(ends[-1]), dtype=np.uint8)
        others = np.frombuffer(others, dtype=np.uint8)
        other_ends = np.append(0, other_ends)  # [0]: where the next other record starts
        done = 0  # records written, in order
        for start, size in zip(heads[long].tolist(), runs[long].tolist()):
            at = int(ends[start - 1]) if start else 0
            if start > done:  # the other records since the last flood, as they are
                copied = int(other_ends[start - done] - other_ends[0])
                out[at - copied:at] = others[int(other_ends[0]):int(other_ends[start - done])]
                other_ends = other_ends[start - done:]
            _records_into(out[at:int(ends[start + size - 1])], self.lines[start:start + size],
                          suffixes[start])
            done = start + size
        if done < n:
            out[int(ends[done - 1]):] = others[int(other_ends[0]):]
        return memoryview(out), ends

    def _runs(self) -> np.ndarray:
        """Index of the first reject of each run of rejects with the same reason and text."""
        sizes = self.stops - self.starts
        same = np.zeros(len(self), dtype=bool)
        same[1:] = (self.codes[1:] == self.codes[:-1]) & (sizes[1:] == sizes[:-1])
        check = np.flatnonzero(same & (sizes > 0))
        if check.size:  # texts of the same length: compared byte by byte, all at once
            raw = np.frombuffer(self.data, dtype=np.uint8)
            lengths = sizes[check]
            here = _ranges(self.starts[check], lengths)
            before = here - np.repeat(self.starts[check] - self.starts[check - 1], lengths)
            offsets = np.cumsum(lengths) - lengths
            same[check[np.logical_or.reduceat(raw[here] != raw[before], offsets)]] = False
        return np.flatnonzero(~same)


_RECORD_HEAD = b'{"line": '
_HEAD_BYTES = np.frombuffer(_RECORD_HEAD, dtype=np.uint8)
_LONG_RUN = 16  # rejects alike whose records numpy writes
_CHUNK_ROWS = 32768
_POWERS = 10 ** np.arange(1, 19, dtype=np.int64)


def _digits(numbers: np.ndarray) -> np.ndarray:
    """Decimal digits of each of ``numbers`` (non-negative, increasing)."""
    counts = np.diff(np.searchsorted(numbers, _POWERS), prepend=0, append=numbers.size)
    return np.repeat(np.arange(1, _POWERS.size + 2), counts)


# Bytes that a JSON string holds as they are (printable ASCII but the quote and backslash).
_PLAIN = np.zeros(256, dtype=bool)
_PLAIN[0x20:0x7F] = True
_PLAIN[[ord('"'), ord("\\")]] = False


def _json_records(rejects: Rejects) -> tuple[bytes, np.ndarray]:
    """The records of ``rejects`` (see :meth:`Rejects.to_json_lines`) made all at once: each
    text escaped in bulk when it needs no escaping (most junk), else by ``json``'s own
    escaping (once per distinct text); then joined by pyarrow's ``binary_join_element_wise``
    (about 0.5 µs a record) or, without pyarrow, one Python format a record (about 3 µs)."""
    raw = np.frombuffer(rejects.data, dtype=np.uint8)
    starts, sizes = rejects.starts, rejects.stops - rejects.starts
    special = _prefix(~_PLAIN[raw])
    plain = special[rejects.stops] == special[starts]
    if not plain.all():  # the others escaped once per distinct text, after the block's bytes
        escaped, made = [], {}
        for start, stop in zip(starts[~plain].tolist(), rejects.stops[~plain].tolist()):
            text = rejects.data[start:stop]
            if text not in made:
                made[text] = encode_basestring_ascii(
                    text.decode("utf-8", errors="replace"))[1:-1].encode()
            escaped.append(made[text])
        sizes, starts = sizes.copy(), starts.copy()
        sizes[~plain] = np.fromiter(map(len, escaped), dtype=np.int64, count=len(escaped))
        starts[~plain] = raw.size + np.cumsum(sizes[~plain]) - sizes[~plain]
        raw = np.concatenate([raw, np.frombuffer(b"".join(escaped), dtype=np.uint8)])
    texts = raw[_ranges(starts, sizes)].tobytes()
    mids = [f', "reason": {json.dumps(reason)}, "text": "'.encode()
            for reason in rejects.reasons]
    arrow = _arrow_compute()
    if arrow is None:
        cuts = np.cumsum(sizes).tolist()
        records = [b'{"line": %d%s%s"}\n' % (line, mids[code], texts[begin:end])
                   for line, code, begin, end in zip(rejects.lines.tolist(),
                                                     rejects.codes.tolist(), [0] + cuts, cuts)]
        return b"".join(records), np.cumsum(np.fromiter(map(len, records), dtype=np.int64,
                                                        count=len(records)))
    pa, pc = arrow
    n = len(rejects)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(sizes, out=offsets[1:])
    binary = pa.binary()
    joined = pc.binary_join_element_wise(
        pa.scalar(_RECORD_HEAD, binary),
        pc.cast(pa.array(rejects.lines), pa.string()).cast(binary),
        pc.take(pa.array(mids, binary), pa.array(rejects.codes)),
        pa.Array.from_buffers(binary, n, [None, pa.py_buffer(offsets), pa.py_buffer(texts)]),
        pa.scalar(b'"}\n', binary), pa.scalar(b"", binary))
    _, ends, blob = joined.buffers()
    ends = np.frombuffer(ends, dtype=np.int32, count=n + 1)
    return bytes(memoryview(blob)[:ends[-1]]), ends[1:].astype(np.int64)


@lru_cache(maxsize=1)
def _arrow_compute():
    """``(pyarrow, pyarrow.compute)`` or None without pyarrow."""
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
    except ImportError:
        return None
    return pa, pc


def _records_into(out: np.ndarray, lines: np.ndarray, suffix: bytes) -> None:
    """Write ``{"line": N`` + ``suffix`` for each of ``lines`` (increasing) into ``out``.

    Records with as many digits are the rows of a table: the text around the digits copied
    into every row, then the digits one column at a time.  By chunks of rows, so that a table
    stays in cache while its columns are written (five times faster for a million records)."""
    head, tail = len(_RECORD_HEAD), np.frombuffer(suffix, dtype=np.uint8)
    at = 0
    cuts = np.unique(np.searchsorted(lines, _POWERS))  # where the digits grow
    for part in np.split(lines, cuts[(cuts > 0) & (cuts < lines.size)]):
        size = int(_digits(part[:1])[0])
        row = head + size + tail.size
        for begin in range(0, part.size, _CHUNK_ROWS):
            chunk = part[begin:begin + _CHUNK_ROWS]
            table = out[at:at + chunk.size * row].reshape(chunk.size, row)
            table[:, :head] = _HEAD_BYTES
            table[:, head + size:] = tail
            rest = chunk.astype(np.uint32 if chunk[-1] < 1 << 32 else np.uint64)
            ten = rest.dtype.type(10)
            for column in range(head + size - 1, head - 1, -1):
                rest, table[:, column] = np.divmod(rest, ten)
            table[:, head:head + size] += ord("0")
            at += chunk.size * row


def _ranges(starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """The indices ``start, start + 1, ..., start + size - 1`` of every range, in one array."""
    ends = np.cumsum(sizes)
    return np.arange(ends[-1] if ends.size else 0) + np.repeat(starts - ends + sizes, sizes)


def _text(data: bytes, start: int, stop: int) -> str:
    return data[start:stop].decode("utf-8", errors="replace")


_NO_REJECTS = Rejects.empty()


@dataclass(frozen=True)
class Parsed:
    """Rows parsed from a block of lines.

    Attributes
    ----------
    rows : ndarray of shape (n, D)
        D = ``len(columns)`` if columns were selected, else ``n_fields``.
    lines : ndarray of shape (n,)
        1-based line number of each row.
    rejects : Rejects (or a tuple of Reject)
    n_lines : int
        Lines in the block.
    n_fields : int or None
        Fields per line (None if no line was valid and none was asked for).
    line_ends : ndarray of shape (n_lines,) or None
        Byte offset just past each line (its newline, or the end of the block), when the
        parser found them on its way (the one-number-per-line fast path); else None.
    keys : ndarray of bytes, shape (n,), or None
        Each row's key (a keyed stream's series, UTF-8); None without a key column or field.
    """

    rows: np.ndarray
    lines: np.ndarray
    rejects: Sequence
    n_lines: int
    n_fields: int | None
    line_ends: np.ndarray | None = None
    keys: np.ndarray | None = None

    def reject_counts(self) -> dict:
        """Rejected lines by reason."""
        return Rejects.of(self.rejects).counts()


@dataclass(frozen=True)
class TimedParsed(Parsed):
    """:class:`Parsed` with each row's time (a table's time column, a JSON time field).

    Attributes
    ----------
    times : ndarray of float64, shape (n,), or None
        Seconds since 1970-01-01 UTC; None if the layout has no time column.
    time_text : ndarray of bytes, shape (n,), or None
        The time fields as written.

    Its ``keys`` (see :class:`Parsed`) are each row's key field as written.
    """

    times: np.ndarray | None = None
    time_text: np.ndarray | None = None


def _snippet(line: bytes) -> str:
    return line[:_SNIPPET].decode("utf-8", errors="replace")


def _parse_line(line: bytes, n_fields: int | None, max_line_bytes: int):
    """One line by the strict rules: (values, None) or (None, reason).

    The statement of the rules that :func:`parse_lines` applies to whole blocks at once."""
    if len(line) > max_line_bytes:
        return None, "too long"
    if not line.isascii():
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            return None, "invalid utf-8"
        return None, "non-numeric"
    stripped = line.strip(b" \t\r,")
    if not stripped:
        return None, "blank"
    fields = _SEPARATORS.split(stripped)
    spelled_non_finite = False
    for field in fields:
        if not _NUMBER.fullmatch(field):
            if not _NON_FINITE.fullmatch(field):
                return None, "non-numeric"
            spelled_non_finite = True
    if n_fields is not None and len(fields) != n_fields:
        return None, "wrong field count"
    if spelled_non_finite:
        return None, "non-finite"
    values = [float(f) for f in fields]
    if not all(map(math.isfinite, values)):
        return None, "non-finite"
    if not all(abs(v) <= MAX_ABS_VALUE for v in values):
        return None, "out of range"
    return values, None


_SEPARATOR_BYTES = np.zeros(256, dtype=bool)
_SEPARATOR_BYTES[np.frombuffer(b" \t\r,\n", dtype=np.uint8)] = True
# Byte classes; a line's highest says how it is judged: 0 number and separator bytes, 1 letters
# of nan/inf/infinity (its fields decide), 2 any other ASCII byte ("non-numeric"), 3 bytes of
# non-ASCII characters ("invalid utf-8" or "non-numeric").
_CLASS = np.full(256, 2, dtype=np.uint8)
_CLASS[np.frombuffer(b"0123456789+-.eE \t\r,\n", dtype=np.uint8)] = 0
_CLASS[np.frombuffer(b"nafityNAFITY", dtype=np.uint8)] = 1
_CLASS[128:] = 3
_CLASS_COUNTS = np.array([0, 1, 1 + (1 << 21), 1 + (1 << 21) + (1 << 42)],
                         dtype=np.int64)[_CLASS]

# The number grammar in bulk.  Each byte of a field is checked against its neighbours (a
# field's edges count as separators): a sign comes first or after the exponent's e and
# before a digit or point; a point follows a sign, a digit or the field's start and comes
# before a digit, an e or the field's end, with a digit on one side at least; an e follows a
# digit or point and comes before a digit or sign.  Then, within a field, the points and e's
# in order may only be: none, one point, one e, a point then an e.  Together these are
# exactly ``_NUMBER`` (the tests compare the two on random fields).
_SEP, _DIGIT, _SIGN, _POINT, _EXP, _OTHER = range(6)
_CATEGORY = np.full(256, _OTHER, dtype=np.uint8)
_CATEGORY[_SEPARATOR_BYTES] = _SEP
_CATEGORY[np.frombuffer(b"0123456789", dtype=np.uint8)] = _DIGIT
_CATEGORY[np.frombuffer(b"+-", dtype=np.uint8)] = _SIGN
_CATEGORY[np.frombuffer(b".", dtype=np.uint8)] = _POINT
_CATEGORY[np.frombuffer(b"eE", dtype=np.uint8)] = _EXP


def _byte_allowed(before: int, byte: int, after: int) -> bool:
    if byte in (_SEP, _DIGIT):
        return True
    if byte == _SIGN:
        return before in (_SEP, _EXP) and after in (_DIGIT, _POINT)
    if byte == _POINT:
        return (before in (_SEP, _SIGN, _DIGIT) and after in (_DIGIT, _EXP, _SEP)
                and _DIGIT in (before, after))
    if byte == _EXP:
        return before in (_DIGIT, _POINT) and after in (_DIGIT, _SIGN)
    return False


# Indexed by before * 36 + byte * 6 + after (categories): the byte breaks the grammar.
_BAD_BYTE = np.array([not _byte_allowed(b, c, a) for b in range(6) for c in range(6)
                      for a in range(6)], dtype=bool)


_LOWER = np.arange(256, dtype=np.uint8) | 0x20  # ASCII letters to lower case (others differ)
# nan, inf and infinity (after an optional sign, in any case) by length, as little-endian
# integers of their lower-case letters.
_WORDS = {size: np.array([int.from_bytes(w, "little") for w in words], dtype=np.uint64)
          for size, words in ((3, (b"nan", b"inf")), (8, (b"infinity",)))}


def _spans(raw: np.ndarray):
    """Start and end (newline excluded) of each line of a block's bytes."""
    ends = np.flatnonzero(raw == 10)
    if ends.size == 0 or ends[-1] != raw.size - 1:  # a last line without its newline
        ends = np.append(ends, raw.size)
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    return starts, ends


def _prefix(counts: np.ndarray) -> np.ndarray:
    """Running totals of ``counts`` with a 0 in front: ``out[j] - out[i]`` sums ``[i, j)``.

    Sums over each line's bytes are differences of these at its ends: a pass over the bytes
    and two look-ups a line (``np.add.reduceat`` costs ~40 ns a line, too much for a block of
    a million one-byte lines)."""
    out = np.empty(counts.size + 1, dtype=np.int32 if counts.size < 1 << 31 else np.int64)
    out[0] = 0
    np.cumsum(counts, out=out[1:])
    return out


def _invalid_utf8(data: bytes, n_lines: int) -> np.ndarray:
    """Per line: its bytes are not UTF-8.  The block is decoded once, invalid bytes escaped to
    U+DC80..U+DCFF (which no valid UTF-8 gives); a newline never belongs to a multi-byte
    character, so each line decodes as it would alone."""
    text = data.decode("utf-8", errors="surrogateescape")
    points = np.array(text).reshape(1).view(np.uint32)
    escaped = np.flatnonzero((points >= 0xDC80) & (points <= 0xDCFF))
    invalid = np.zeros(n_lines, dtype=bool)
    invalid[np.searchsorted(np.flatnonzero(points == 10), escaped)] = True
    return invalid


class _Block:
    """A vectorised look at every line of a block.

    Attributes ``starts``, ``ends`` (each line's span, newline excluded), ``lengths``,
    ``fields`` (runs of non-separator bytes) and ``klass`` (its highest byte class) hold one
    entry per line; :meth:`bad_fields` and :meth:`invalid_utf8` are worked out when asked for
    (only some junk needs them)."""

    def __init__(self, data: bytes):
        self.data = data
        self.raw = raw = np.frombuffer(data, dtype=np.uint8)
        self.starts, self.ends = starts, ends = _spans(raw)
        self.n = starts.size
        self.lengths = ends - starts
        self.token = token = ~_SEPARATOR_BYTES[raw]
        self.begins = begins = token.copy()
        begins[1:] &= ~token[:-1]
        # Fields before each line (the index of its first field) and in it.
        total = _prefix(begins)
        self.first_field = total[starts]
        self.fields = np.zeros(self.n, dtype=np.int64)
        self.klass = np.zeros(self.n, dtype=np.uint8)
        # Only non-empty lines have fields or bytes: a flood of empty ones costs no look-up.
        full = np.flatnonzero(self.lengths)
        if full.size == self.n:
            full = slice(None)
        elif not full.size:
            return
        starts, ends = starts[full], ends[full]
        self.fields[full] = total[ends] - self.first_field[full]
        classes = _CLASS[raw]
        odd = np.flatnonzero(classes)
        if odd.size * 8 < raw.size:  # mostly numbers: the other bytes looked at alone
            np.maximum.at(self.klass, np.searchsorted(self.ends, odd), classes[odd])
        # Else the highest class from how many bytes of class >= 1, >= 2 and 3 the line has,
        # counted at once in three 21-bit parts of one integer (blocks under 2 MiB).
        elif raw.size < 1 << 21:
            counts = np.empty(raw.size + 1, dtype=np.int64)
            counts[0] = 0
            np.cumsum(_CLASS_COUNTS[raw], out=counts[1:])
            counts = counts[ends] - counts[starts]
            self.klass[full] = (((counts & 0x1FFFFF) > 0).view(np.uint8)
                                + ((counts & (0x1FFFFF << 21)) > 0) + ((counts >> 42) > 0))
        else:
            for level in (1, 2, 3):
                counts = _prefix(classes >= level)
                self.klass[full] += (counts[ends] - counts[starts]) > 0

    def bad_fields(self):
        """Per line: whether a field is neither a number nor a non-finite word (``bad``), and
        whether one is such a word (``word``)."""
        raw, token = self.raw, self.token
        category = _CATEGORY[raw]
        before = np.empty_like(category)
        before[0] = _SEP
        before[1:] = category[:-1]
        after = np.empty_like(category)
        after[-1] = _SEP
        after[:-1] = category[1:]
        breaks = _prefix(_BAD_BYTE[before * 36 + category * 6 + after])
        begins = np.flatnonzero(self.begins)
        last = token.copy()
        last[:-1] &= ~token[1:]
        ends = np.flatnonzero(last) + 1
        bad = breaks[ends] > breaks[begins]
        marks = np.flatnonzero((category == _POINT) | (category == _EXP))
        if marks.size > 1:  # consecutive points and e's of a field: only a point then an e
            owner = np.searchsorted(begins, marks, side="right") - 1
            kind = category[marks]
            wrong = (owner[1:] == owner[:-1]) & ((kind[:-1] != _POINT) | (kind[1:] != _EXP))
            bad[owner[1:][wrong]] = True
        word = np.zeros(begins.size, dtype=bool)
        lengths = ends - begins
        maybe = np.flatnonzero(bad & (lengths >= 3) & (lengths <= 9))
        if maybe.size:
            signed = _CATEGORY[raw[begins[maybe]]] == _SIGN
            body, size = begins[maybe] + signed, lengths[maybe] - signed
            for width, spellings in _WORDS.items():
                which = np.flatnonzero(size == width)
                at = body[which]
                key = np.zeros(which.size, dtype=np.uint64)
                for k in range(width):  # the field's letters, lower case, as one integer
                    key |= _LOWER[raw[at + k]].astype(np.uint64) << np.uint64(8 * k)
                word[maybe[which[np.isin(key, spellings)]]] = True
        # Per line, from running totals over the fields (a line's fields are consecutive).
        bad_total = _prefix(bad & ~word)
        word_total = _prefix(word)
        after_line = self.first_field + self.fields
        return (bad_total[after_line] > bad_total[self.first_field],
                word_total[after_line] > word_total[self.first_field])

    def invalid_utf8(self) -> np.ndarray:
        return _invalid_utf8(self.data, self.n)

    def select(self, lines: np.ndarray) -> bytes:
        """The bytes of the lines ``lines`` (a boolean mask), each with its newline."""
        if lines.all():
            return self.data
        keep = np.repeat(lines, self.lengths + 1)[:self.raw.size]
        return self.raw[keep].tobytes()


def _one_number_per_line(data: bytes, max_line_bytes: int):
    """The common 1-D case at memchr speed: no separators, no blank lines, all parse.

    Returns ``(rows of shape (n, 1), line ends)`` or None for the general path.  Each check
    is one pass over the block (a 1 MiB block costs ~1 ms of checks against ~5 ms of
    parsing), so the block is scanned once per question, not once per forbidden byte."""
    if data.translate(None, _NUMBER_BYTES):  # any other byte: the strict path decides
        return None
    if data.startswith(b"\n") or b"\n\n" in data:  # a blank line (found at memchr speed)
        return None
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10) + 1  # past each line
    if not data.endswith(b"\n"):
        ends = np.append(ends, len(data) + 1)  # as if the newline were there
    if ends.size:
        lengths = np.diff(ends, prepend=0) - 1
        if lengths.min() == 0 or lengths.max() > max_line_bytes:  # blank or too long
            return None
    values = _read_fast(data)
    if values is None:
        try:
            values = np.fromstring(data, dtype=np.float64, sep="\n")
        except ValueError:
            return None
    if values.size != ends.size or (
            values.size and not np.maximum.reduce(np.abs(values)) <= MAX_ABS_VALUE):
        return None  # (NaN and infinity fail the bound too)
    if ends.size and ends[-1] > len(data):
        ends[-1] = len(data)
    return values[:, None], ends


# Bytes a line of one plain decimal number is made of; anything else goes the strict way.
_NUMBER_BYTES = b"0123456789+-.eE\n"


def _read_fast(data: bytes) -> np.ndarray | None:
    """pyarrow's CSV reader, when pyarrow is installed: 1.3x faster than ``np.fromstring`` on
    one number per line, with the same correctly rounded values, and it releases the GIL while
    it parses (the daemon learns in the meantime).  It imports in 0.03 s (pandas' reader, as
    fast, takes 0.5 s).  Only blocks of digits, signs, points and exponents are given to it, so
    it cannot accept what the strict parser refuses (quotes, NA markers, ``1_000``); the
    caller checks that.  None if pyarrow is missing or refuses the block, or if a signal
    interrupted it: in the main thread pyarrow cancels a read on SIGINT/SIGTERM (when Python
    handles them) and raises ``ArrowCancelled`` after the Python handler ran, so the block is
    left to numpy and the handler's flag stops the daemon cleanly."""
    reader = _arrow_reader()
    if reader is None:
        return None
    read, errors = reader
    try:
        column = read(data)
    except errors:
        return None
    if column.null_count:
        return None
    # The values' buffer as it is: pyarrow's to_numpy() imports pandas (0.5 s) on first use.
    return np.concatenate([np.frombuffer(chunk.buffers()[1], dtype=np.float64,
                                         count=len(chunk), offset=8 * chunk.offset)
                           for chunk in column.chunks])


@lru_cache(maxsize=1)
def _arrow_reader():
    """``(read(bytes) -> float64 column, the errors it raises)`` or None without pyarrow."""
    try:
        import pyarrow as pa
        import pyarrow.csv as csv
    except ImportError:
        return None
    options = {
        "read_options": csv.ReadOptions(use_threads=False, column_names=["value"],
                                        block_size=1 << 26),
        "parse_options": csv.ParseOptions(quote_char=False, double_quote=False,
                                          escape_char=False, ignore_empty_lines=False),
        "convert_options": csv.ConvertOptions(column_types={"value": pa.float64()},
                                              strings_can_be_null=False),
    }

    def read(data: bytes):
        return csv.read_csv(pa.py_buffer(data), **options).column(0)

    return read, (pa.ArrowInvalid, pa.ArrowCancelled)


def _numbers(data: bytes, count: int, one_per_line: bool) -> np.ndarray | None:
    """The ``count`` numbers of lines whose fields are all plausible numbers, or None if one is
    not a number after all (say "1.2.3": numpy refuses any field that is not whole)."""
    if not count:
        return np.empty(0)
    values = None
    if one_per_line and not data.translate(None, _NUMBER_BYTES):
        values = _read_fast(data)
    if values is None:
        try:
            values = np.fromstring(data.translate(_SPACES), dtype=np.float64, sep=" ")
        except ValueError:  # a malformed number such as "1.2.3" or "1e"
            return None
    return values if values.size == count else None


def _values(block: _Block, rows: np.ndarray, verdict: np.ndarray, bad_fields):
    """The numbers of the lines ``rows`` (a mask; class 0, fields, not too long): the lines
    left in ``rows`` and their numbers, one after the other.  Lines with a malformed number
    are taken out (verdict "non-numeric"): found by the grammar in bulk when numpy refuses the
    block, which the common block of numbers never pays for."""
    if not rows.any():
        return rows, np.empty(0)
    counts = block.fields[rows]
    values = _numbers(block.select(rows), int(counts.sum()), bool((counts == 1).all()))
    if values is not None:
        return rows, values
    bad = bad_fields()[0] & rows
    verdict[bad] = _IS_NON_NUMERIC
    rows = rows & ~bad
    counts = block.fields[rows]
    values = _numbers(block.select(rows), int(counts.sum()), bool((counts == 1).all()))
    if values is not None:
        return rows, values
    # Not reached unless numpy and the grammar disagree on a field: the rules, line by line.
    found = []
    for index in np.flatnonzero(rows).tolist():
        line = block.data[block.starts[index]:block.ends[index]]
        numbers, reason = _parse_line(line, None, len(line))
        if reason is None:
            found.extend(numbers)
        else:
            verdict[index] = _CODES[reason]
            rows[index] = False
    return rows, np.array(found, dtype=np.float64)


def _judge(data: bytes, n_fields: int | None, max_line_bytes: int):
    """Every line of ``data`` judged at once: ``(verdicts, row lines, rows, width, block)``.

    Verdicts are reason codes (:data:`REASONS`) or ``_ROW``, by the precedence of
    :func:`_parse_line`; the width is ``n_fields``, else that of the first valid line (lines
    before it are judged without one), else None."""
    block = _Block(data)
    klass, fields, n = block.klass, block.fields, block.n
    verdict = np.full(n, _ROW, dtype=np.int8)
    verdict[klass == 2] = _IS_NON_NUMERIC
    wide = klass == 3
    if wide.any():
        verdict[wide] = np.where(block.invalid_utf8()[wide], _IS_INVALID_UTF8,
                                 _IS_NON_NUMERIC)
    numeric = (klass <= 1) & (block.lengths <= max_line_bytes)
    verdict[(klass <= 1) & (fields == 0)] = _IS_BLANK
    verdict[block.lengths > max_line_bytes] = _IS_TOO_LONG
    numeric &= fields > 0
    rows = numeric & (klass == 0)  # lines whose numbers are needed
    if n_fields is not None:
        rows &= fields == n_fields
    checked = []

    def bad_fields():
        if not checked:
            checked.append(block.bad_fields())
        return checked[0]

    rows, values = _values(block, rows, verdict, bad_fields)
    # The others' fields decide: a bad one makes the line non-numeric; else a spelled nan or
    # inf makes it non-finite (if its width is right, checked below).
    others = np.flatnonzero(numeric & ~rows & (verdict == _ROW))
    if others.size:
        bad, word = bad_fields()
        verdict[others] = np.where(bad[others], _IS_NON_NUMERIC,
                                   np.where(word[others], _IS_NON_FINITE, _ROW))
    index = np.flatnonzero(rows)
    counts = fields[index]
    usable = np.abs(values) <= MAX_ABS_VALUE  # (NaN and infinity fail too)
    if not usable.all():
        offsets = np.cumsum(counts) - counts
        unusable = ~np.logical_and.reduceat(usable, offsets)
        infinite = ~np.logical_and.reduceat(np.isfinite(values), offsets)
        verdict[index[unusable]] = np.where(infinite[unusable], _IS_NON_FINITE,
                                            _IS_OUT_OF_RANGE)
    width, first = n_fields, 0
    if width is None:
        valid = np.flatnonzero(verdict == _ROW)
        if valid.size:
            first = int(valid[0])
            width = int(fields[first])
    if width is not None:
        # From the first line with a width on, a line that is not already non-numeric (or
        # worse) must have that many fields.
        after = verdict[first:]
        judged = (after == _ROW) | (after == _IS_NON_FINITE) | (after == _IS_OUT_OF_RANGE)
        after[judged & (fields[first:] != width)] = _IS_WRONG_COUNT
    accepted = verdict[index] == _ROW
    if width is None:  # (no line is valid)
        table = np.empty((0, 0))
    elif accepted.all() and (counts == width).all():
        table = values.reshape(-1, width)
    else:
        table = values[np.repeat(accepted, counts)].reshape(-1, width)
    return verdict, index[accepted], table, width, block


def parse_lines(data: bytes, *, n_fields: int | None = None, columns=None,
                first_line: int = 1, max_line_bytes: int = 4096) -> Parsed:
    """Parse numeric lines.

    Parameters
    ----------
    data : bytes
        Whole lines; a last line without a newline counts as a line (the caller decides
        whether a partial line is complete).
    n_fields : int, optional
        Numbers per line; default: those of the first valid line.
    columns : sequence of int, optional
        Fields to keep, in this order (0-based); default: all.
    first_line : int
        Line number of the first line of ``data`` (for reports across blocks).
    max_line_bytes : int
        Longer lines are rejected as "too long" (before any other look at them).

    Returns
    -------
    Parsed
        Its ``rejects`` are :class:`Rejects`.
    """
    if n_fields in (None, 1) and (columns is None or list(columns) == [0]):
        fast = _one_number_per_line(data, max_line_bytes)
        if fast is not None:
            values, ends = fast
            return Parsed(values, np.arange(first_line, first_line + ends.size), _NO_REJECTS,
                          ends.size, 1, ends)
    if data:
        verdict, rows, table, n_fields, block = _judge(data, n_fields, max_line_bytes)
        if rows.size:
            rejected = np.flatnonzero(verdict != _ROW)
            codes, starts, ends = verdict[rejected], block.starts[rejected], block.ends[rejected]
        else:  # every line (a flood of junk): no gathers
            rejected = np.arange(block.n)
            codes, starts, ends = verdict, block.starts, block.ends
        rejects = Rejects(first_line + rejected, codes, starts,
                          np.minimum(ends, starts + _SNIPPET), data)
        found, n_lines = first_line + rows, block.n
    else:
        table, found = np.empty((0, n_fields or 0)), np.empty(0, dtype=np.int64)
        rejects, n_lines = _NO_REJECTS, 0
    if columns is not None:
        columns = list(columns)
        if n_fields is not None and any(not 0 <= c < n_fields for c in columns):
            raise ValueError(f"columns {columns} out of range for {n_fields} fields per line")
        table = table[:, columns] if table.shape[1] else np.empty((0, len(columns)))
    return Parsed(np.ascontiguousarray(table), found.astype(np.int64), rejects, n_lines,
                  n_fields)


_BEYOND_RANGE = 10**101


def _json_int(text: str) -> int:
    """A JSON integer; one of more than 101 digits is beyond ±1e100 whatever its digits, and is
    not converted (Python refuses integers of more than 4,300 digits)."""
    if len(text) <= 102:
        return int(text)
    return -_BEYOND_RANGE if text.startswith("-") else _BEYOND_RANGE


# A string holding a JSON number (as log shippers that quote every value write them) ...
_QUOTED_NUMBER = re.compile(r"\s*(-?(?:0|[1-9][0-9]*))(\.[0-9]+)?([eE][+-]?[0-9]+)?\s*")
# ... or a non-finite one, in the spellings such writers use ("NaN", "Infinity", "-inf").
_QUOTED_NON_FINITE = re.compile(r"\s*[+-]?(?:nan|inf|infinity)\s*", re.IGNORECASE)


def _unquoted(values: list) -> tuple[list, str | None]:
    """The values with each string that holds a number replaced by that number (read as JSON
    would read it unquoted), or the reason of the first string that does not."""
    out = []
    for value in values:
        if type(value) is str:
            number = _QUOTED_NUMBER.fullmatch(value)
            if number is None:
                reason = "non-finite" if _QUOTED_NON_FINITE.fullmatch(value) else "non-numeric"
                return values, reason
            whole, fraction, exponent = number.groups()
            value = (_json_int(whole) if fraction is None and exponent is None
                     else float(number.group(0)))
        out.append(value)
    return out, None


_MISSING = object()


def field_of(record: dict, name: str):
    """A record's field ``name``, or, if it has none so named, the nested field that a dotted
    name leads to (``system.cpu.pct`` in ``{"system": {"cpu": {"pct": 0.5}}}``, as structured
    loggers nest them; a number is a place in a list: ``values.0`` in collectd's
    ``{"values": [0.5]}``, ``value.1`` in a Prometheus query's ``{"value": [1709251200,
    "0.5"]}``); :data:`_MISSING` if neither is there."""
    value = record.get(name, _MISSING)
    if value is not _MISSING or "." not in name:
        return value
    value = record
    for part in name.split("."):
        if type(value) is list and part.isascii() and part.isdigit() \
                and (part == "0" or part[0] != "0"):  # (as written: 01 is no place)
            value = value[int(part)] if len(part) <= 18 and int(part) < len(value) else _MISSING
        elif type(value) is dict:
            value = value.get(part, _MISSING)
        else:
            return _MISSING
        if value is _MISSING:
            return _MISSING
    return value


def json_time_text(value) -> bytes | None:
    """A JSON time field as text: a string as written, a number (epoch seconds or
    milliseconds) in its shortest form; None for anything else."""
    if type(value) is str:
        return value.strip().encode("utf-8", "surrogatepass")
    if type(value) is int:
        return str(value).encode()
    if type(value) is float and math.isfinite(value):
        return repr(value).encode()
    return None


def _json_verdict(line: bytes, fields: list, max_line_bytes: int, key: str | None = None,
                  time: str | None = None):
    """``(values, reason)`` of one JSON line: never an exception, whatever the line holds.
    With ``key``, values go on with that field's value as UTF-8 bytes (a string, or an integer
    written as text; anything else is a "missing field"); with ``time``, they end with that
    field's text (:func:`json_time_text`; a missing one is a "missing field")."""
    if len(line) > max_line_bytes:
        return None, "too long"
    if not line.strip():
        return None, "blank"
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return None, "invalid utf-8"
    if not text.lstrip(" \t\r").startswith("{"):  # not an object: no need to decode it
        return None, "invalid json"
    try:
        # NaN/Infinity (which Python's json writes by default) count as non-finite.
        record = json.loads(text, parse_constant=float, parse_int=_json_int)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than Python recurses
        return None, "invalid json"
    if not isinstance(record, dict):
        return None, "invalid json"
    values = [field_of(record, name) for name in fields]
    if any(v is _MISSING for v in values):
        return None, "missing field"
    if any(type(v) is str for v in values):  # log shippers often quote numbers
        values, reason = _unquoted(values)
        if reason is not None:
            return None, reason
    if any(type(v) not in (int, float) for v in values):  # bool, str, null, list, dict
        return None, "non-numeric"
    if not all(math.isfinite(v) for v in values if type(v) is float):
        return None, "non-finite"
    # Compared before any conversion: an integer of 400 digits is out of range, not an error.
    if not all(abs(v) <= MAX_ABS_VALUE for v in values):
        return None, "out of range"
    row = [float(v) for v in values]
    if key is not None:
        name = field_of(record, key)
        if name is _MISSING:
            return None, "missing field"
        if type(name) is int and abs(name) <= MAX_ABS_VALUE:
            name = str(name)
        if type(name) is not str:  # (null, a float, a list: there, but no key)
            return None, "bad key"
        try:  # (a lone surrogate, "\ud800", is no text a key can be stored as)
            # (ASCII whitespace only, as a table's key is stripped: str.strip() also took
            # Unicode spaces, so "\u00a0a" was the key "a" in JSON lines but not in a CSV)
            name = name.strip(_ASCII_SPACE).encode("utf-8")
        except UnicodeEncodeError:
            return None, "bad key"
        if is_bad_key(name):
            return None, "bad key"
        row.append(name)
    if time is not None:
        stamp = field_of(record, time)
        if stamp is _MISSING:
            return None, "missing field"
        text = json_time_text(stamp)
        if text is None or len(text) > MAX_TIME_BYTES:
            return None, "bad timestamp"
        row.append(text)
    return row, None


_WHITESPACE = np.zeros(256, dtype=bool)  # what bytes.strip() strips
_WHITESPACE[np.frombuffer(b" \t\n\r\x0b\x0c", dtype=np.uint8)] = True
_LEADING = np.zeros(256, dtype=bool)  # what a JSON line may start with before its "{"
_LEADING[np.frombuffer(b" \t\r", dtype=np.uint8)] = True


def parse_json_lines(data: bytes, fields, *, first_line: int = 1,
                     max_line_bytes: int = 4096, key: str | None = None,
                     time: str | None = None, day_first: bool | None = None) -> Parsed:
    """Parse JSON lines, one object per line, taking the named numeric ``fields`` in order.

    Parameters
    ----------
    data : bytes
        Whole lines (a last line without a newline counts).
    fields : sequence of str
        Keys whose values make the row; extra keys are ignored.  A value may be a number or a
        string holding one in JSON's notation (``"12.5"``, as log shippers that quote every
        value write it), read as the same number unquoted.  A dotted name that is not a key
        names a nested field (``system.cpu.pct``).
    first_line : int
        Line number of the first line of ``data``.
    max_line_bytes : int
        Longer lines are rejected as "too long" (before they are decoded).
    key : str, optional
        The field naming each row's series (a string, or an integer taken as its text):
        ``Parsed.keys``; a line without one is a "missing field".
    time : str, optional
        The field holding each row's time (text :mod:`emstream.timestamps` reads, or epoch
        seconds or milliseconds as a number): ``Parsed.times`` (seconds since the epoch) and
        ``Parsed.time_text`` (as written); a line without one is a "missing field", one
        whose time does not parse a "bad timestamp".
    day_first : bool, optional
        The order of day and month in times written ``07/01/2014``.

    Returns
    -------
    Parsed
        With ``time``, a :class:`TimedParsed`.
        Rejects: "invalid json" (not a JSON object, or nested too deep to decode), "missing
        field", "non-numeric" (a value that is not a number; booleans included),
        "non-finite" (NaN, Infinity, or a number that overflows a float; quoted too), "out of
        range" (beyond ±1e100, integers of any size included), "too long", "invalid utf-8",
        "blank"; with ``key``, "bad key" (an empty key, one holding a control character
        (:func:`is_bad_key`) or a lone surrogate, or a key field that is neither text nor an
        integer: null, a float, a list).  Lines that are too long, blank, not UTF-8 or do not
        start with "{" are found in bulk; the others are decoded one by one (a repeated bad
        one once).

    Examples
    --------
    >>> parsed = parse_json_lines(b'{"t": 1, "v": 2.5}\\n{"v": "x"}\\n{"v": 3}\\n', ["v"])
    >>> parsed.rows.ravel().tolist(), [(r.line, r.reason) for r in parsed.rejects]
    ([2.5, 3.0], [(2, 'non-numeric')])
    """
    fields = list(fields)
    timed = {} if time is None else {"times": np.empty(0), "time_text": np.empty(0, "S1")}
    kind = Parsed if time is None else TimedParsed
    if not data:
        return kind(np.empty((0, len(fields))), np.empty(0, dtype=np.int64), _NO_REJECTS, 0,
                    len(fields), keys=None if key is None else np.empty(0, dtype="S1"), **timed)
    raw = np.frombuffer(data, dtype=np.uint8)
    starts, ends = _spans(raw)
    lengths = ends - starts
    verdict = np.full(starts.size, _ROW, dtype=np.int8)
    # The first byte that is not a space, tab or carriage return: "{" or the line is no object.
    ahead = np.flatnonzero(~_LEADING[raw])
    at = np.append(ahead, raw.size)[np.searchsorted(ahead, starts)]
    inside = at < ends
    opens = np.zeros(starts.size, dtype=bool)
    opens[inside] = raw[at[inside]] == ord("{")
    verdict[~opens] = _IS_INVALID_JSON
    if not data.isascii():
        high = _prefix(raw >= 128)
        verdict[(high[ends] > high[starts]) & _invalid_utf8(data, starts.size)] = \
            _IS_INVALID_UTF8
    visible = _prefix(~_WHITESPACE[raw])
    verdict[visible[ends] == visible[starts]] = _IS_BLANK
    verdict[lengths > max_line_bytes] = _IS_TOO_LONG
    good, where, memo = [], [], {}
    for index in np.flatnonzero(verdict == _ROW).tolist():
        line = data[starts[index]:ends[index]]
        values, reason = memo.get(line) or _json_verdict(line, fields, max_line_bytes, key,
                                                         time)
        if reason is None:
            good.append(values)
            where.append(index)
        else:
            memo[line] = None, reason  # a flood of one bad line is decoded once
            verdict[index] = _CODES[reason]
    if time is not None:
        from .timestamps import parse_times

        stamps = [values.pop() for values in good]
        times = parse_times(stamps, day_first) if stamps else np.empty(0)
        bad = ~np.isfinite(times)
        if bad.any():
            verdict[np.asarray(where)[bad]] = _IS_BAD_TIME
            kept = np.flatnonzero(~bad).tolist()
            good, where = [good[i] for i in kept], [where[i] for i in kept]
            stamps, times = [stamps[i] for i in kept], times[~bad]
        timed = {"times": times, "time_text": np.array(stamps, dtype=bytes) if stamps
                 else np.empty(0, "S1")}
    rejected = np.flatnonzero(verdict != _ROW)
    rejects = Rejects(first_line + rejected, verdict[rejected], starts[rejected],
                      np.minimum(ends[rejected], starts[rejected] + _SNIPPET), data)
    keys = None
    if key is not None:
        keys = np.array([values.pop() for values in good], dtype=bytes) if good else \
            np.empty(0, dtype="S1")
    rows = np.array(good, dtype=np.float64) if good else np.empty((0, len(fields)))
    return kind(rows.reshape(-1, len(fields)), first_line + np.array(where, dtype=np.int64),
                rejects, starts.size, len(fields), keys=keys, **timed)
