"""Text to rows: the one parser of numeric lines (the ``emstream`` command and the daemon).

A pure function from bytes to rows plus counted rejects.  A line holds ``n_fields`` numbers
separated by whitespace and/or commas.  A vectorised screen of the bytes finds the lines that
are plainly fine (only number characters, the right number of fields, not too long); numpy
parses all of those in one call, and only the others are parsed line by line with the same
rules, so a few bad lines cost little.  Every rejected line is reported with its 1-based line
number and one of :data:`REASONS`.

Numbers follow one strict grammar in both paths: optional sign, digits with an optional
decimal point, optional exponent; ASCII only.  ``nan``, ``inf``, ``1_000``, ``0x10`` and
non-ASCII digits are rejected, and so is a value that overflows to infinity ("non-finite") or
lies beyond ±1e100 ("out of range": the model refuses values whose squares overflow).

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

import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .validation import MAX_ABS_VALUE

REASONS = ("blank", "non-numeric", "non-finite", "wrong field count", "too long",
           "invalid utf-8", "invalid json", "missing field", "out of range")
_NUMBER = re.compile(rb"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_SEPARATORS = re.compile(rb"[ \t\r,]+")
_SPACES = bytes.maketrans(b",\r", b"  ")
_SNIPPET = 60


@dataclass(frozen=True)
class Reject:
    """A line that was skipped: its 1-based number, why, and its start (for logs)."""

    line: int
    reason: str
    text: str


@dataclass(frozen=True)
class Parsed:
    """Rows parsed from a block of lines.

    Attributes
    ----------
    rows : ndarray of shape (n, D)
        D = ``len(columns)`` if columns were selected, else ``n_fields``.
    lines : ndarray of shape (n,)
        1-based line number of each row.
    rejects : tuple of Reject
    n_lines : int
        Lines in the block.
    n_fields : int or None
        Fields per line (None if no line was valid and none was asked for).
    line_ends : ndarray of shape (n_lines,) or None
        Byte offset just past each line (its newline, or the end of the block), when the
        parser found them on its way (the one-number-per-line fast path); else None.
    """

    rows: np.ndarray
    lines: np.ndarray
    rejects: tuple
    n_lines: int
    n_fields: int | None
    line_ends: np.ndarray | None = None

    def reject_counts(self) -> dict:
        """Rejected lines by reason."""
        return dict(Counter(r.reason for r in self.rejects))


class LineBuffer:
    """Cuts a byte stream into blocks of complete lines, keeping a partial last line.

    >>> cut = LineBuffer()
    >>> cut.feed(b"1\\n2\\n3"), cut.feed(b"4\\n5"), cut.feed(b"", at_end=True)
    (b'1\\n2\\n', b'34\\n', b'5')

    At the end of input a last line without its newline is handed out as a line.
    """

    def __init__(self):
        self.pending = b""

    def feed(self, chunk: bytes, at_end: bool = False) -> bytes:
        data = self.pending + chunk
        if at_end:
            self.pending = b""
            return data
        cut = data.rfind(b"\n") + 1
        self.pending = data[cut:]
        return data[:cut]


def _snippet(line: bytes) -> str:
    return line[:_SNIPPET].decode("utf-8", errors="replace")


def _parse_line(line: bytes, n_fields: int | None, max_line_bytes: int):
    """One line by the strict rules: (values, None) or (None, reason)."""
    if len(line) > max_line_bytes:
        return None, "too long"
    if any(b >= 0x80 for b in line):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            return None, "invalid utf-8"
        return None, "non-numeric"
    stripped = line.strip(b" \t\r,")
    if not stripped:
        return None, "blank"
    fields = _SEPARATORS.split(stripped)
    if not all(_NUMBER.fullmatch(f) for f in fields):
        return None, "non-numeric"
    if n_fields is not None and len(fields) != n_fields:
        return None, "wrong field count"
    values = [float(f) for f in fields]
    if not all(np.isfinite(values)):
        return None, "non-finite"
    if not all(abs(v) <= MAX_ABS_VALUE for v in values):
        return None, "out of range"
    return values, None


_ALLOWED = np.zeros(256, dtype=bool)
_ALLOWED[np.frombuffer(b"0123456789+-.eE \t\r,\n", dtype=np.uint8)] = True
_SEPARATOR_BYTES = np.zeros(256, dtype=bool)
_SEPARATOR_BYTES[np.frombuffer(b" \t\r,\n", dtype=np.uint8)] = True


def _fromstring(data: bytes, n_lines: int, n_fields: int):
    """numpy's parser on lines known to hold ``n_fields`` plausible fields each, or None."""
    try:
        values = np.fromstring(data.translate(_SPACES), dtype=np.float64, sep=" ")
    except ValueError:  # a malformed number such as "1.2.3" or "1e"
        return None
    if values.size != n_lines * n_fields:
        return None
    return values.reshape(n_lines, n_fields)


def _screen(data: bytes, n_fields: int, max_line_bytes: int):
    """Vectorised look at every line: which are plainly fine (numbers only, right count).

    Returns ``(ok, starts, ends)``: a boolean per line and each line's byte span.
    """
    raw = np.frombuffer(data, dtype=np.uint8)
    newline = raw == 10
    ends = np.flatnonzero(newline)
    if ends.size == 0 or ends[-1] != raw.size - 1:  # a last line without its newline
        ends = np.append(ends, raw.size)
    starts = np.concatenate(([0], ends[:-1] + 1))
    token = ~_SEPARATOR_BYTES[raw]
    field_starts = token.copy()
    field_starts[1:] &= ~token[:-1]
    # Sentinel so that reduceat never sees an empty last segment at the end of the data.
    padded = np.append(field_starts, False).astype(np.int32)
    fields = np.add.reduceat(padded, starts)
    odd = np.append(~_ALLOWED[raw], False).astype(np.int32)
    foreign = np.add.reduceat(odd, starts)
    empty = ends == starts  # reduceat returns the element itself for an empty segment
    fields[empty] = 0
    foreign[empty] = 0
    ok = (fields == n_fields) & (foreign == 0) & (ends - starts <= max_line_bytes)
    return ok, starts, ends


def _parse_clean(clean: bytes, lines: np.ndarray, first: int, n_fields: int, rows: list,
                 numbers: list, suspects: list) -> None:
    """numpy on screened lines; halves a block that still fails (say "1.2.3") down to 64 lines."""
    values = _fromstring(clean, lines.size, n_fields)
    if values is not None:
        # Within ±MAX_ABS_VALUE (NaN and infinity fail too); the rest get their reason line
        # by line.
        usable = (np.abs(values) <= MAX_ABS_VALUE).all(axis=1)
        rows.append(values[usable])
        numbers.append(first + lines[usable])
        suspects.extend(lines[~usable].tolist())
    elif lines.size <= 64:
        suspects.extend(lines.tolist())
    else:
        half = lines.size // 2
        cut = int(np.flatnonzero(np.frombuffer(clean, dtype=np.uint8) == 10)[half - 1]) + 1
        _parse_clean(clean[:cut], lines[:half], first, n_fields, rows, numbers, suspects)
        _parse_clean(clean[cut:], lines[half:], first, n_fields, rows, numbers, suspects)


def _one_number_per_line(data: bytes, max_line_bytes: int):
    """The common 1-D case at memchr speed: no separators, no blank lines, all parse.

    Returns ``(rows of shape (n, 1), line ends)`` or None for the general path.  Each check
    is one pass over the block (a 1 MiB block costs ~1 ms of checks against ~5 ms of
    parsing), so the block is scanned once per question, not once per forbidden byte."""
    if data.translate(None, _NUMBER_BYTES):  # any other byte: the strict path decides
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
    caller checks that.  None if pyarrow is missing or refuses the block."""
    reader = _arrow_reader()
    if reader is None:
        return None
    read, error = reader
    try:
        column = read(data)
    except error:
        return None
    if column.null_count:
        return None
    # The values' buffer as it is: pyarrow's to_numpy() imports pandas (0.5 s) on first use.
    return np.concatenate([np.frombuffer(chunk.buffers()[1], dtype=np.float64,
                                         count=len(chunk), offset=8 * chunk.offset)
                           for chunk in column.chunks])


@lru_cache(maxsize=1)
def _arrow_reader():
    """``(read(bytes) -> float64 column, the error it raises)`` or None without pyarrow."""
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

    return read, pa.ArrowInvalid


def _parse(data: bytes, first: int, n_fields: int, max_line_bytes: int, rows: list,
           numbers: list, rejects: list) -> None:
    """Append the rows and rejects of the lines in ``data`` (1-based numbers from ``first``)."""
    ok, starts, ends = _screen(data, n_fields, max_line_bytes)
    n_lines = ok.size
    if ok.all():
        clean, clean_lines = data, np.arange(n_lines)
    else:
        keep = np.repeat(ok, ends - starts + 1)[: len(data)]
        clean = np.frombuffer(data, dtype=np.uint8)[keep].tobytes()
        clean_lines = np.flatnonzero(ok)
    suspects = [] if ok.all() else list(np.flatnonzero(~ok))
    if clean_lines.size:
        _parse_clean(clean, clean_lines, first, n_fields, rows, numbers, suspects)
    if not suspects:
        return
    good, where = [], []
    for index in sorted(suspects):
        line = data[starts[index]:ends[index]]
        values, reason = _parse_line(line, n_fields, max_line_bytes)
        if reason is None:
            good.append(values)
            where.append(int(first + index))
        else:
            rejects.append(Reject(int(first + index), reason, _snippet(line)))
    if good:
        rows.append(np.array(good, dtype=np.float64))
        numbers.append(np.array(where))


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
        Longer lines are rejected as "too long".

    Returns
    -------
    Parsed
    """
    if n_fields in (None, 1) and (columns is None or list(columns) == [0]):
        fast = _one_number_per_line(data, max_line_bytes)
        if fast is not None:
            values, ends = fast
            return Parsed(values, np.arange(first_line, first_line + ends.size), (), ends.size,
                          1, ends)
    rows, numbers, rejects = [], [], []
    n_lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    position, line_no = 0, first_line
    if n_fields is None:
        # The first valid line sets the width; lines before it are rejects.
        while position < len(data):
            end = data.find(b"\n", position)
            end = len(data) if end < 0 else end
            values, reason = _parse_line(data[position:end], None, max_line_bytes)
            if reason is None:
                n_fields = len(values)
                break
            rejects.append(Reject(line_no, reason, _snippet(data[position:end])))
            position, line_no = end + 1, line_no + 1
    if n_fields is not None and position < len(data):
        _parse(data[position:], line_no, n_fields, max_line_bytes, rows, numbers, rejects)
    width = n_fields or 0
    table = np.concatenate(rows) if rows else np.empty((0, width))
    found = np.concatenate(numbers) if numbers else np.empty(0, dtype=np.int64)
    if len(rows) > 1:  # rows recovered line by line come after the clean ones: restore order
        order = np.argsort(found, kind="stable")
        table, found = table[order], found[order]
    if columns is not None:
        columns = list(columns)
        if n_fields is not None and any(not 0 <= c < n_fields for c in columns):
            raise ValueError(f"columns {columns} out of range for {n_fields} fields per line")
        table = table[:, columns] if table.shape[1] else np.empty((0, len(columns)))
    rejects.sort(key=lambda r: r.line)
    return Parsed(np.ascontiguousarray(table), found.astype(np.int64), tuple(rejects),
                  n_lines, n_fields)


def parse_json_lines(data: bytes, fields, *, first_line: int = 1,
                     max_line_bytes: int = 4096) -> Parsed:
    """Parse JSON lines, one object per line, taking the named numeric ``fields`` in order.

    Parameters
    ----------
    data : bytes
        Whole lines (a last line without a newline counts).
    fields : sequence of str
        Keys whose values make the row; extra keys are ignored.

    Returns
    -------
    Parsed
        Rejects: "invalid json" (not a JSON object), "missing field", "non-numeric" (a value
        that is not a number; booleans included), "non-finite", "too long", "invalid utf-8",
        "blank".

    Examples
    --------
    >>> parsed = parse_json_lines(b'{"t": 1, "v": 2.5}\\n{"v": "x"}\\n{"v": 3}\\n', ["v"])
    >>> parsed.rows.ravel().tolist(), [(r.line, r.reason) for r in parsed.rejects]
    ([2.5, 3.0], [(2, 'non-numeric')])
    """
    import json

    fields = list(fields)
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    good, where, rejects = [], [], []
    for offset, line in enumerate(lines):
        number = first_line + offset
        reason = None
        if len(line) > max_line_bytes:
            reason = "too long"
        elif not line.strip():
            reason = "blank"
        else:
            try:
                # NaN/Infinity (which Python's json writes by default) count as non-finite.
                record = json.loads(line.decode("utf-8"), parse_constant=float)
            except UnicodeDecodeError:
                reason = "invalid utf-8"
            except ValueError:
                reason = "invalid json"
            else:
                if not isinstance(record, dict):
                    reason = "invalid json"
                elif any(name not in record for name in fields):
                    reason = "missing field"
                else:
                    values = [record[name] for name in fields]
                    if any(isinstance(v, bool) or not isinstance(v, (int, float))
                           for v in values):
                        reason = "non-numeric"
                    elif not all(np.isfinite(np.asarray(values, dtype=float))):
                        reason = "non-finite"
                    elif not all(abs(float(v)) <= MAX_ABS_VALUE for v in values):
                        reason = "out of range"
        if reason is None:
            good.append(values)
            where.append(number)
        else:
            rejects.append(Reject(number, reason, _snippet(line)))
    rows = np.array(good, dtype=np.float64) if good else np.empty((0, len(fields)))
    return Parsed(rows.reshape(-1, len(fields)), np.array(where, dtype=np.int64),
                  tuple(rejects), len(lines), len(fields))
