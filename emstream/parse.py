"""Text to rows: the one parser of numeric lines (the ``emstream`` command and the daemon).

A pure function from bytes to rows plus counted rejects.  A line holds ``n_fields`` numbers
separated by whitespace and/or commas.  A vectorised screen of the bytes finds the lines that
are plainly fine (only number characters, the right number of fields, not too long); numpy
parses all of those in one call, and only the others are parsed line by line with the same
rules, so a few bad lines cost little.  Every rejected line is reported with its 1-based line
number and one of :data:`REASONS`.

Numbers follow one strict grammar in both paths: optional sign, digits with an optional
decimal point, optional exponent; ASCII only.  ``1_000``, ``0x10`` and non-ASCII digits are
rejected ("non-numeric"); ``nan``, ``inf`` and ``infinity`` (any case, optional sign) and a
value that overflows to infinity are rejected as "non-finite", and a value beyond ±1e100 as
"out of range" (the model refuses values whose squares overflow).

Hostile input costs little: the grammar cannot backtrack (time linear in the line), lines
longer than ``max_line_bytes`` are rejected before any pattern looks at them, most rejects
get their reason from the same vectorised screen as the valid lines, and
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

import gc
import json
import math
import re
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache, partial
from itertools import repeat
from operator import itemgetter
from typing import NamedTuple

import numpy as np

from .linebuffer import LineBuffer  # noqa: F401  (cut streams into lines: cli, emstreamd)
from .validation import MAX_ABS_VALUE

REASONS = ("blank", "non-numeric", "non-finite", "wrong field count", "too long",
           "invalid utf-8", "invalid json", "missing field", "out of range")
# One way to match each number (no nested choices), so a failing match costs linear time.
_NUMBER = re.compile(rb"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_NON_FINITE = re.compile(rb"[+-]?(?:nan|inf(?:inity)?)", re.IGNORECASE)
_SEPARATORS = re.compile(rb"[ \t\r,]+")
_SPACES = bytes.maketrans(b",\r", b"  ")
_SNIPPET = 60


class Reject(NamedTuple):
    """A line that was skipped: its 1-based number, why, and its start (for logs).

    A named tuple: a flood of bad lines makes one per line, at half a dataclass's cost."""

    line: int
    reason: str
    text: str


_make_rejects = partial(map, partial(tuple.__new__, Reject))  # (line, reason, text) tuples


@contextmanager
def _no_collection():
    """The cyclic garbage collector paused while many small objects are made at once.

    Rejects (named tuples, which the collector never untracks) made by the hundred thousand
    set off collection after collection over the ones made before: that took 40% of a block
    of blank lines.  Nothing made here can form a cycle; the collector runs afterwards as
    usual.  Left as it was if another thread paused it meanwhile."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


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


def _snippet(line: bytes) -> str:
    return line[:_SNIPPET].decode("utf-8", errors="replace")


def _parse_line(line: bytes, n_fields: int | None, max_line_bytes: int):
    """One line by the strict rules: (values, None) or (None, reason)."""
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


_ALLOWED = np.zeros(256, dtype=bool)
_ALLOWED[np.frombuffer(b"0123456789+-.eE \t\r,\n", dtype=np.uint8)] = True
_SEPARATOR_BYTES = np.zeros(256, dtype=bool)
_SEPARATOR_BYTES[np.frombuffer(b" \t\r,\n", dtype=np.uint8)] = True
_DIGITS = np.zeros(256, dtype=bool)
_DIGITS[np.frombuffer(b"0123456789", dtype=np.uint8)] = True
# Byte classes; a line's highest says how it may be judged in bulk: 0 number and separator
# bytes, 1 letters of nan/inf/infinity (the line is judged by the rules), 2 any other ASCII
# byte ("non-numeric"), 3 bytes of non-ASCII characters (the UTF-8 check decides).
_CLASS = np.full(256, 2, dtype=np.uint8)
_CLASS[_ALLOWED] = 0
_CLASS[np.frombuffer(b"nafityNAFITY", dtype=np.uint8)] = 1
_CLASS[128:] = 3
# Reasons given in bulk, by code (0: the line is judged by the rules).
_BULK_REASONS = np.array([None, "blank", "non-numeric", "too long"], dtype=object)


class _Lines:
    """A vectorised look at every line of a block: byte spans, fields, byte classes.

    Attributes ``starts``, ``ends`` (each line's span, newline excluded), ``fields`` (runs of
    non-separator bytes) and ``klass`` (its highest byte class) are arrays with one entry per
    line; ``has_digit`` is computed when first asked for (only rejects need it).
    """

    def __init__(self, data: bytes):
        self.raw = raw = np.frombuffer(data, dtype=np.uint8)
        ends = np.flatnonzero(raw == 10)
        if ends.size == 0 or ends[-1] != raw.size - 1:  # a last line without its newline
            ends = np.append(ends, raw.size)
        self.starts = np.concatenate(([0], ends[:-1] + 1))
        self.ends = ends
        token = ~_SEPARATOR_BYTES[raw]
        field_starts = token.copy()
        field_starts[1:] &= ~token[:-1]
        # Sentinel so that reduceat never sees an empty last segment at the end of the data;
        # each line's segment runs to the next line's start (its newline is a separator).
        self.fields = np.add.reduceat(np.append(field_starts, False).astype(np.int32),
                                      self.starts)
        self.klass = np.maximum.reduceat(np.append(_CLASS[raw], 0), self.starts)
        self._has_digit = None

    @property
    def has_digit(self) -> np.ndarray:
        if self._has_digit is None:
            self._has_digit = np.logical_or.reduceat(np.append(_DIGITS[self.raw], False),
                                                     self.starts)
        return self._has_digit

    def ok(self, n_fields: int, max_line_bytes: int) -> np.ndarray:
        """Lines that are plainly fine: numbers only, ``n_fields`` of them, not too long."""
        return ((self.fields == n_fields) & (self.klass == 0)
                & (self.ends - self.starts <= max_line_bytes))


def _fromstring(data: bytes, n_lines: int, n_fields: int):
    """numpy's parser on lines known to hold ``n_fields`` plausible fields each, or None."""
    try:
        values = np.fromstring(data.translate(_SPACES), dtype=np.float64, sep=" ")
    except ValueError:  # a malformed number such as "1.2.3" or "1e"
        return None
    if values.size != n_lines * n_fields:
        return None
    return values.reshape(n_lines, n_fields)


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
        suspects.append(lines[~usable])
    elif lines.size <= 64:
        suspects.append(lines)
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


class _Verdicts:
    """Rejects and recovered rows of one block, gathered in line order.

    Verdicts are remembered by the line's bytes (and the width they were judged for): a flood
    of one bad line is judged once."""

    def __init__(self):
        self.rejects = []
        self.good_lines, self.good_values = [], []
        self._memos = {}

    def memo(self, n_fields: int | None) -> dict:
        return self._memos.setdefault(n_fields, {})

    def judge(self, line: bytes, n_fields: int | None, max_line_bytes: int):
        """``(values, reason)`` of one line by the strict rules, remembered."""
        memo = self.memo(n_fields)
        verdict = memo.get(line)
        if verdict is None:
            verdict = memo[line] = _parse_line(line, n_fields, max_line_bytes)
        return verdict

    def sort_out(self, data: bytes, lines: _Lines, index: np.ndarray, first: int,
                 n_fields: int | None, max_line_bytes: int) -> None:
        """Judge the lines ``index`` (0-based, increasing; 1-based numbers from ``first``):
        in bulk where their bytes decide, else by the rules (time linear in the line; none
        for a line that is too long)."""
        if not index.size:
            return
        starts, ends = lines.starts[index], lines.ends[index]
        klass, fields = lines.klass[index], lines.fields[index]
        code = np.zeros(index.size, dtype=np.int8)
        plain = klass == 0
        code[plain & (fields == 0)] = 1  # only separators: blank
        code[plain & (fields > 0) & ~lines.has_digit[index]] = 2  # a number without a digit
        code[klass == 2] = 2  # a byte no number or separator has
        code[ends - starts > max_line_bytes] = 3  # first of all: too long
        reasons = _BULK_REASONS[code]
        rejected = code > 0
        todo = np.flatnonzero(~rejected)
        memo, bad, why = self.memo(n_fields), [], []
        for j, line, start, end in zip(todo.tolist(), (first + index[todo]).tolist(),
                                       starts[todo].tolist(), ends[todo].tolist()):
            raw = data[start:end]
            verdict = memo.get(raw)
            if verdict is None:
                verdict = memo[raw] = _parse_line(raw, n_fields, max_line_bytes)
            if verdict[1] is None:
                self.good_lines.append(line)
                self.good_values.append(verdict[0])
            else:
                bad.append(j)
                why.append(verdict[1])
        if bad:
            reasons[bad] = why
            rejected[bad] = True
        if not rejected.any():
            return
        starts = starts[rejected]
        heads = map(slice, starts.tolist(),
                    np.minimum(ends[rejected], starts + _SNIPPET).tolist())
        texts = map(bytes.decode, map(data.__getitem__, heads), repeat("utf-8"),
                    repeat("replace"))
        with _no_collection():
            self.rejects.extend(_make_rejects(zip((first + index[rejected]).tolist(),
                                                  reasons[rejected].tolist(), texts)))


def _first_valid(data: bytes, lines: _Lines, max_line_bytes: int, verdicts: _Verdicts):
    """Index and values of the first valid line (it sets the width), or ``(None, None)``."""
    candidates = ((lines.klass <= 1) & lines.has_digit
                  & (lines.ends - lines.starts <= max_line_bytes))
    for index in np.flatnonzero(candidates).tolist():
        values, reason = verdicts.judge(data[lines.starts[index]:lines.ends[index]], None,
                                        max_line_bytes)
        if reason is None:
            return index, values
    return None, None


def _parse(data: bytes, lines: _Lines, skip: int, first: int, n_fields: int,
           max_line_bytes: int, rows: list, numbers: list, verdicts: _Verdicts) -> None:
    """Append the rows of the lines of ``data`` from index ``skip`` on (1-based numbers from
    ``first`` for index 0); their rejects and recovered rows go to ``verdicts``."""
    ok = lines.ok(n_fields, max_line_bytes)
    ok[:skip] = False
    if ok.all():
        clean, clean_lines = data, np.arange(ok.size)
    else:
        keep = np.repeat(ok, lines.ends - lines.starts + 1)[: len(data)]
        clean = lines.raw[keep].tobytes()
        clean_lines = np.flatnonzero(ok)
    suspects = [np.flatnonzero(~ok[skip:]) + skip]
    if clean_lines.size:
        _parse_clean(clean, clean_lines, first, n_fields, rows, numbers, suspects)
    verdicts.sort_out(data, lines, np.sort(np.concatenate(suspects)), first, n_fields,
                      max_line_bytes)


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
    """
    if n_fields in (None, 1) and (columns is None or list(columns) == [0]):
        fast = _one_number_per_line(data, max_line_bytes)
        if fast is not None:
            values, ends = fast
            return Parsed(values, np.arange(first_line, first_line + ends.size), (), ends.size,
                          1, ends)
    rows, numbers = [], []
    verdicts = _Verdicts()
    lines = _Lines(data) if data else None
    n_lines = lines.starts.size if data else 0
    if data and n_fields is None:
        # The first valid line sets the width; lines before it are rejects.
        start, values = _first_valid(data, lines, max_line_bytes, verdicts)
        before = np.arange(n_lines if start is None else start)
        verdicts.sort_out(data, lines, before, first_line, None, max_line_bytes)
        if start is not None:
            n_fields = len(values)
            _parse(data, lines, start, first_line, n_fields, max_line_bytes, rows, numbers,
                   verdicts)
    elif data:
        _parse(data, lines, 0, first_line, n_fields, max_line_bytes, rows, numbers, verdicts)
    if verdicts.good_values:
        rows.append(np.array(verdicts.good_values, dtype=np.float64))
        numbers.append(np.array(verdicts.good_lines, dtype=np.int64))
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
    rejects = verdicts.rejects
    rejects.sort(key=itemgetter(0))  # in order already: one pass to make sure
    return Parsed(np.ascontiguousarray(table), found.astype(np.int64), tuple(rejects),
                  n_lines, n_fields)


_BEYOND_RANGE = 10**101


def _json_int(text: str) -> int:
    """A JSON integer; one of more than 101 digits is beyond ±1e100 whatever its digits, and is
    not converted (Python refuses integers of more than 4,300 digits)."""
    if len(text) <= 102:
        return int(text)
    return -_BEYOND_RANGE if text.startswith("-") else _BEYOND_RANGE


def _json_verdict(line: bytes, fields: list, max_line_bytes: int):
    """``(values, reason)`` of one JSON line: never an exception, whatever the line holds."""
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
    try:
        values = [record[name] for name in fields]
    except KeyError:
        return None, "missing field"
    if any(type(v) not in (int, float) for v in values):  # bool, str, null, list, dict
        return None, "non-numeric"
    if not all(math.isfinite(v) for v in values if type(v) is float):
        return None, "non-finite"
    # Compared before any conversion: an integer of 400 digits is out of range, not an error.
    if not all(abs(v) <= MAX_ABS_VALUE for v in values):
        return None, "out of range"
    return [float(v) for v in values], None


def parse_json_lines(data: bytes, fields, *, first_line: int = 1,
                     max_line_bytes: int = 4096) -> Parsed:
    """Parse JSON lines, one object per line, taking the named numeric ``fields`` in order.

    Parameters
    ----------
    data : bytes
        Whole lines (a last line without a newline counts).
    fields : sequence of str
        Keys whose values make the row; extra keys are ignored.
    first_line : int
        Line number of the first line of ``data``.
    max_line_bytes : int
        Longer lines are rejected as "too long" (before they are decoded).

    Returns
    -------
    Parsed
        Rejects: "invalid json" (not a JSON object, or nested too deep to decode), "missing
        field", "non-numeric" (a value that is not a number; booleans included),
        "non-finite" (NaN, Infinity, or a number that overflows a float), "out of range"
        (beyond ±1e100, integers of any size included), "too long", "invalid utf-8",
        "blank".

    Examples
    --------
    >>> parsed = parse_json_lines(b'{"t": 1, "v": 2.5}\\n{"v": "x"}\\n{"v": 3}\\n', ["v"])
    >>> parsed.rows.ravel().tolist(), [(r.line, r.reason) for r in parsed.rejects]
    ([2.5, 3.0], [(2, 'non-numeric')])
    """
    fields = list(fields)
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    good, where, rejected = [], [], []
    memo = {}
    for number, line in enumerate(lines, start=first_line):
        verdict = memo.get(line)
        if verdict is None:
            verdict = _json_verdict(line, fields, max_line_bytes)
            if verdict[1] is not None:  # rejects are remembered (a flood is judged once)
                memo[line] = verdict
        values, reason = verdict
        if reason is None:
            good.append(values)
            where.append(number)
        else:
            rejected.append((number, reason, _snippet(line)))
    rows = np.array(good, dtype=np.float64) if good else np.empty((0, len(fields)))
    with _no_collection():
        rejects = tuple(_make_rejects(rejected))
    return Parsed(rows.reshape(-1, len(fields)), np.array(where, dtype=np.int64), rejects,
                  len(lines), len(fields))
