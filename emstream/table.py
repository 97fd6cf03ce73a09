"""Time-series tables: a CSV with a header line and a time column (NAB's ``timestamp,value``).

The stream's first non-blank line is a header if one of its fields is neither a number nor a
time; it names the columns and is a line, not a reject.  :func:`find_layout` reads that line
and the first data line and fixes the :class:`Layout`: fields per line, separated by tabs if
the header holds one (or semicolons, if it holds one and no comma: a TSV's times and names
may hold spaces; a semicolon table's values may have a decimal comma, ``10,5``, as
spreadsheets write them where the comma is the decimal mark; digit grouping, ``"1,234.5"``,
``1.234,5``, is read where the separator leaves it unambiguous), else by commas if the data line
holds one, else by whitespace (a field of a separated table may be in double quotes, as RFC
4180 has it); which field
is the time (the one named ``timestamp``, ``time``, ``date``, ``datetime`` or ``ts``, or
``timestamp=`` given by name or index, else a first field that is an ISO 8601 time; a column
of dates alone takes its time of day from the column beside it: ``Date,Time,Value``); which
fields make the row (``columns`` by name or index; default every other field but one the
header leaves unnamed, the row index pandas' ``to_csv`` and R's ``write.csv`` write, and one
that holds text on the first data line, such as a host name or a status).  A file of
plain numbers has no layout (``find_layout`` returns None) and goes through
:func:`emstream.parse.parse_lines` alone.

:func:`parse_table` then parses blocks of lines with that layout: the numbers through
``parse_lines`` (same reject reasons), the times through :mod:`emstream.timestamps` (a row whose
time does not parse is rejected as "bad timestamp").  ``Parsed.times`` holds seconds since
1970-01-01 UTC, and ``Parsed.time_text`` the time fields as written (for the output).

Example
-------
>>> from emstream.table import find_layout, parse_table
>>> data = b"timestamp,value\\n2014-07-01 00:30:00,8127\\nJuly 1st,9\\n2014-07-01 01:30:00,x\\n"
>>> layout = find_layout(data)
>>> layout.names, layout.time_field, layout.value_fields
(('timestamp', 'value'), 0, (1,))
>>> parsed = parse_table(data, layout)
>>> parsed.rows.tolist(), parsed.times.tolist(), parsed.lines.tolist()
([[8127.0]], [1404174600.0], [2])
>>> [(r.line, r.reason) for r in parsed.rejects]
[(3, 'bad timestamp'), (4, 'non-numeric')]
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace

import numpy as np

from .cellnumbers import (MISSING, WHOLE, grouping_of, is_number, numberish, regrouped,
                          ungrouped)
from .parse import (
    _ASCII_SPACE,
    _SNIPPET,
    _WHITESPACE,
    MAX_KEY_BYTES,
    MAX_TIME_BYTES,
    REASONS,
    WIDE_CONTROL,
    Parsed,
    Reject,
    Rejects,
    TimedParsed,
    _prefix,
    _snippet,
    _spans,
    blank_byte_order_marks,
    is_bad_key,
    key_bytes,
    parse_json_lines,
    parse_lines,
    wide_encoding,
)
from .linebuffer import LineBuffer
from .timestamps import infer_day_first, looks_like_time, needs_day_order, parse_times
from .validation import check_int

TIME_NAMES = ("timestamp", "time", "date", "datetime", "ts", "epoch", "_time", "@timestamp",
              "time_stamp", "unix_time", "unixtime")
# Epoch numbers a first column is read as times by (seconds, or ms, µs, ns as parse_times tells
# them): 2000-01-01 to 2100-01-01.
_EPOCH_SPAN = (946684800.0, 4102444800.0)
# A column of times of day alone (12:30, 9:05, 12:30:05.250, 12:30 PM, 24:00 for the day's
# end), and the names one goes by beside a column of dates.
# A number written with a decimal comma (3,25; ,5), outside a semicolon table a reject of its own.
_DECIMAL_COMMA = re.compile(rb"[+-]?\d*,\d+")
_TIME_OF_DAY = re.compile(rb"(\d{1,2}):(\d\d)(?::(\d\d)(?:\.\d+)?)?(?:\s*([AaPp])\.?[Mm]\.?)?")
CLOCK_NAMES = ("time", "hour", "clock")


def _is_time_of_day(field: bytes) -> bool:
    """Whether ``field`` is a time of day: hours 0-23 (1-12 with AM/PM; 24:00 ends a day),
    minutes and seconds 0-59 (a duration such as 25:10 or 12:75 is none)."""
    match = _TIME_OF_DAY.fullmatch(field)
    if match is None:
        return False
    hour, minute = int(match.group(1)), int(match.group(2))
    second = int(match.group(3) or 0)
    if minute > 59 or second > 59:
        return False
    if match.group(4):
        return 1 <= hour <= 12
    return hour < 24 or (hour == 24 and minute == 0 and second == 0)


def _with_clock(date: bytes, clock: bytes) -> bytes:
    """A date and its time of day as one time (the hour zero-padded: ``9:05`` is no ISO
    time); empty, a bad timestamp, without a time of day."""
    if not clock:
        return b""
    return date + (b" 0" if clock[1:2] == b":" else b" ") + clock
# A readable stream is parsed in blocks of this many bytes (cut at newlines) ...
BLOCK_BYTES = 1 << 20
# ... and the start of its first block decides its layout (a header, the first data lines).
LAYOUT_BYTES = 1 << 16
# The characters a table's fields may be separated by (besides runs of whitespace).
SEPARATORS = (",", "\t", ";", "|")
# Fields per line a layout may name (far more than any line the parser takes holds).
MAX_FIELDS = 1 << 20
SEPARATED = {",": "comma-separated", "\t": "tab-separated", ";": "semicolon-separated",
             "|": "pipe-separated"}
_NUMBERISH = b"0123456789+-.eE "


class LayoutError(ValueError):
    """The configured columns or time column do not exist in the stream's header."""


@dataclass(frozen=True)
class Layout:
    """How a time-series table's lines are laid out (JSON-ready for checkpoints).

    Attributes
    ----------
    names : tuple of str or None
        The header's column names; None without a header.
    header_line : int or None
        The header's line number (it is skipped, not rejected).
    n_fields : int
        Fields per data line.
    comma : bool
        Fields are separated by one character, ``separator`` (else by runs of whitespace).
    time_field : int or None
        The time column; None if the table has none.
    clock_field : int or None
        The column holding the time of day when the time column holds dates alone
        (``Date,Time,Value``, as data loggers and spreadsheets export): each row's time is
        its date and its time of day, written ``date time``.  None: the time column is whole.
    value_fields : tuple of int
        The fields that make a row, in order.
    key_field : int or None
        The field naming each row's series (a keyed stream); None: one series.
    separator : str
        With ``comma``: the separating character, one of ``SEPARATORS``.
    day_first : bool or None
        The order of the times' ``07/01/2014`` dates (day first, month first), None if they
        are not written so.
    grouping : tuple of str or None
        Per value field, the character its first data lines group digits with where one
        separator alone says so (``,`` for Excel's ``#,##0``: ``856`` beside ``1,234``;
        ``.`` for a German spreadsheet's ``1.234``), or ``""``; None: no field does.
    settled : bool
        False for a layout found from a header line alone (a live stream's first line): the
        first data lines still have to say which columns hold text and how dates are written
        (:func:`settle_layout`).
    """

    names: tuple | None
    header_line: int | None
    n_fields: int
    comma: bool
    time_field: int | None
    value_fields: tuple
    key_field: int | None = None
    separator: str = ","
    day_first: bool | None = None
    settled: bool = True
    clock_field: int | None = None
    grouping: tuple | None = None

    def __post_init__(self):
        if self.separator not in SEPARATORS:
            raise ValueError(f"separator must be one of {SEPARATORS!r}, got {self.separator!r}")
        if self.day_first is not None and not isinstance(self.day_first, bool):
            raise ValueError(f"day_first must be true, false or null, got {self.day_first!r}")
        # (A checkpoint's layout is read back through here: a field out of range would fail
        # later, in the parser, as a traceback.)
        check_int(self.n_fields, "n_fields", 1, MAX_FIELDS)
        if not self.value_fields:
            raise ValueError("value_fields must name one field or more")
        for name, field in (("time_field", self.time_field), ("key_field", self.key_field),
                            ("clock_field", self.clock_field),
                            *(("value_fields", f) for f in self.value_fields)):
            if field is not None:
                check_int(field, name, 0, self.n_fields - 1)
        if self.names is not None and len(self.names) != self.n_fields:
            # (a hand-edited checkpoint's: describing it, emstream inspect died of IndexError)
            raise ValueError(f"names must give one name per field ({self.n_fields}), got "
                             f"{len(self.names)}")
        if self.clock_field is not None and self.time_field is None:
            raise ValueError("a clock_field needs a time_field (the dates it completes)")
        special = [f for f in (self.time_field, self.key_field, self.clock_field)
                   if f is not None]
        if len(set(special)) != len(special) or set(special) & set(self.value_fields):
            raise ValueError(f"a field used twice: time {self.time_field!r}, time of day "
                             f"{self.clock_field!r}, key {self.key_field!r}, values "
                             f"{self.value_fields!r}")
        if self.header_line is not None:
            check_int(self.header_line, "header_line", 1)
        if not isinstance(self.settled, bool):
            raise ValueError(f"settled must be true or false, got {self.settled!r}")
        if not self.settled and self.names is None:
            # (only a header's layout waits for its first rows: one without names was settled
            # against them, a TypeError, when the next block came)
            raise ValueError("a layout without a header's names must be settled")
        if self.grouping is not None and (
                len(self.grouping) != len(self.value_fields)
                or not all(g in ("", ",", ".") for g in self.grouping)):
            raise ValueError(f"grouping must give one of '', ',', '.' per value field, got "
                             f"{self.grouping!r}")

    @property
    def sep(self) -> bytes:
        return self.separator.encode()

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> Layout:
        names = data["names"]
        return cls(names=None if names is None else tuple(str(n) for n in names),
                   header_line=data["header_line"], n_fields=int(data["n_fields"]),
                   comma=bool(data["comma"]), time_field=data["time_field"],
                   value_fields=tuple(int(i) for i in data["value_fields"]),
                   key_field=data.get("key_field"), separator=data.get("separator", ","),
                   day_first=data.get("day_first"), settled=data.get("settled", True),
                   clock_field=data.get("clock_field"),
                   grouping=None if data.get("grouping") is None
                   else tuple(str(g) for g in data["grouping"]))

    def describe(self) -> str:
        """One line for people: ``table of 4 comma-separated fields, header on line 1; values:
        value; time: timestamp; key: host``."""
        names = self.names or [f"x{i}" for i in range(self.n_fields)]
        separated = SEPARATED[self.separator] if self.comma else "whitespace-separated"
        return (f"table of {self.n_fields} {separated} fields"
                + (f", header on line {self.header_line}" if self.header_line else "")
                + f"; values: {', '.join(str(names[i]) for i in self.value_fields)}"
                + (f"; time: {names[self.time_field]}" if self.time_field is not None else "")
                + (f" + {names[self.clock_field]}" if self.clock_field is not None else "")
                + ("" if self.day_first is None
                   else "; dates day first" if self.day_first else "; dates month first")
                + (f"; key: {names[self.key_field]}" if self.key_field is not None else "")
                + "".join(f"; {names[i]}: digits grouped with {g!r}"
                          for i, g in zip(self.value_fields, self.grouping or ()) if g))

    def column_names(self) -> list:
        """The row's column names (from the header, else ``x0, x1, ...``)."""
        if self.names is None:
            return [f"x{i}" for i in range(len(self.value_fields))]
        return [self.names[i] for i in self.value_fields]


def _split(line: bytes, comma: bool, sep: bytes = b",") -> list:
    if not comma:
        return line.split()
    if b'"' in line:
        fields = _split_quoted(line, sep)
        if fields is not None:
            return fields
    return [f.strip() for f in line.split(sep)]


def _split_quoted(line: bytes, sep: bytes, key_field: int | None = None) -> list | None:
    """The fields of a line with double quotes, as RFC 4180 reads them (what R's
    ``write.csv``, spreadsheets and ``QUOTE_ALL`` writers produce): a quoted field may hold
    the separator and doubled quotes; the quotes are not part of the value.  Fields lose
    the whitespace at their edges, the key field (``key_field``) only ASCII whitespace.  None
    for a line the csv module cannot read (a lone carriage return after a quote, a field
    beyond its 128 KiB limit): its fields cannot be counted."""
    import csv

    text = line.decode("utf-8", "surrogateescape")  # (bytes that are not UTF-8 kept as they are)
    try:
        fields = next(csv.reader([text], delimiter=sep.decode(), skipinitialspace=True), [""])
    except csv.Error:
        return None
    # (A key loses ASCII whitespace only, as an unquoted key does: str.strip() also took a
    # no-break space, U+3000 or a \x1f from a quoted key's edges, merging '"\xa0web"' into
    # 'web'.  A value or time keeps losing any, as quoted cells always have: a spreadsheet's
    # "5.5\xa0".)
    return [(f.strip(_ASCII_SPACE) if i == key_field else f.strip()).encode(
        "utf-8", "surrogateescape") for i, f in enumerate(fields)]


def _header_separator(head: bytes) -> bytes | None:
    """A tab, or a semicolon where there is no comma, or a pipe where there is neither (psql's
    output, ``ts|value``), if the header line holds one."""
    if b"\t" in head:
        return b"\t"
    if b"," in head:
        return None
    return b";" if b";" in head else b"|" if b"|" in head else None


def _header_names(fields: list) -> tuple | None:
    """A header line's names: UTF-8, or else in the Windows code page spreadsheets save CSV in
    (``Température``) if every name holds an ASCII letter (a line of binary junk is no
    header); None if neither."""
    try:
        return tuple(f.decode("utf-8").strip().strip('"') for f in fields)
    except UnicodeDecodeError:
        pass
    names = tuple(f.decode("cp1252", "replace").strip().strip('"') for f in fields)
    lettered = [any(c.isascii() and c.isalpha() for c in name) for name in names if name]
    return names if lettered and all(lettered) else None


def is_comment(line: bytes) -> bool:
    """Whether a line (stripped) is a comment: it starts with ``#``."""
    return line[:1] == b"#"


def _without_comments(lines: list) -> list:
    """(number, line) pairs without comment lines (Prometheus' ``# HELP``, gnuplot's notes),
    but for the comment right above the first other line if that line is data (numbers and
    times) and the comment, without its ``#``, has as many fields: numpy's
    ``savetxt(header=...)`` names the columns so.  (A comment was taken for the header, and
    every line after it rejected.)"""
    first = next((i for i, (_, line) in enumerate(lines) if not is_comment(line)), None)
    if first is None:
        return []
    kept = [(n, line) for n, line in lines if not is_comment(line)]
    if first:
        number, comment = lines[first - 1]
        named, data = comment.lstrip(b"#").strip(), lines[first][1]
        comma = b"," in data
        fields = _split(data, comma)
        if named and len(_split(named, comma)) == len(fields) and all(
                is_number(f) or looks_like_time(f) for f in fields):
            kept.insert(0, (number, named))
    return kept


# Data lines whose fields say which columns hold text.
TEXT_PROBE_LINES = 50


def _below_a_title(data: bytes, at: int, **settings) -> Layout | None:
    """The layout of ``data`` from its line ``at`` on, if that line is a header the line
    above does not fit as one (a title: sysstat's "Linux 5.15.0 (host) ..." over mpstat's and
    sar's tables, a report's name over its CSV); None to read ``data`` as before.  A header
    here names every column, its value columns in words, with the separator it is written
    with (a title over a grouped header "Group A,,Group B", over a data line (ping's first
    reply), or over a header whose first row is a line of junk, is not passed over)."""
    lines = data.split(b"\n")
    try:
        below = find_layout(b"\n".join(lines[at:]), _titled=True, **settings)
    except LayoutError:
        return None
    if below is None or below.names is None or below.header_line is None:
        return None
    header = lines[below.header_line - settings["first_line"] + at].strip()
    if not all(name.strip() for name in below.names) or not all(
            any(c.isalpha() for c in below.names[i]) for i in below.value_fields):
        return None
    written = _header_separator(header) or (b"," if b"," in header else None)
    return below if (below.sep if below.comma else None) == written else None


def _column_kinds(rows: list, sep: bytes | None) -> tuple:
    """The columns that hold text in most of these first data lines (each a list of fields),
    and those that hold nothing but missing-value words (NA, N/A, null, ...): fields neither a
    number (a decimal comma in a semicolon table counts) nor missing (empty, or such a word)
    decide, and a column of such words alone is text too (a live stream's first line alone: a
    status of N/A made its column a value, and every row was rejected).  (Judged by the first
    line alone, one N/A in a first reading dropped its column from the model for good.)"""
    filled, text, words = {}, {}, set()
    for fields in rows:
        for i, field in enumerate(fields):
            if not field:
                continue
            if field.lower() in MISSING:
                words.add(i)
                continue
            filled[i] = filled.get(i, 0) + 1
            if not numberish(field, sep):
                text[i] = text.get(i, 0) + 1
    words_only = words - set(filled)
    return {i for i, count in text.items() if 2 * count > filled[i]} | words_only, words_only


def _probe(lines: list, comma: bool, sep: bytes | None, n_fields: int,
           limit: int | None = TEXT_PROBE_LINES) -> list:
    """The fields of the first data lines (``limit`` of them; None: all) that have
    ``n_fields`` (those that judge columns)."""
    split = (_split(line, comma, sep or b",") for line in lines[:limit])
    return [fields for fields in split if len(fields) == n_fields]


def _first_rows(data: bytes, layout: Layout) -> list:
    """The fields of ``data``'s first data lines (a repeat of the header left out) that have
    the layout's field count: what the layout warnings judge columns by."""
    lines = [line.strip() for line in data.split(b"\n") if line.strip()]
    lines = [line for line in lines[:TEXT_PROBE_LINES + 1] if not repeats_header(line, layout)]
    return _probe(lines, layout.comma, layout.sep, layout.n_fields)


def only_missing_words(data: bytes, layout: Layout) -> list:
    """Names of the columns left out of the rows that hold nothing but missing-value words
    in the first data lines of ``data`` (:func:`_column_kinds`): text, or a sensor that starts
    out missing, which those lines cannot tell apart (the caller says so)."""
    if layout.names is None:
        return []
    _, words_only = _column_kinds(_first_rows(data, layout), layout.sep if layout.comma else None)
    used = set(layout.value_fields) | {layout.time_field, layout.key_field, layout.clock_field}
    return [layout.names[i] for i in sorted(words_only) if i not in used and layout.names[i]]


def series_columns(data: bytes, layout: Layout) -> list:
    """Names of the columns left out of the rows as text whose first data lines in ``data``
    repeat a few values while their times repeat too (a host, a series' name: several
    series sampled together in one stream, which ``input.key`` would separate); each as
    ``(name, number of values seen)``."""
    if layout.names is None or layout.key_field is not None:
        return []
    rows = _first_rows(data, layout)
    if layout.time_field is None:
        return _cycling_columns(rows, layout)
    if len({row[layout.time_field] for row in rows}) == len(rows):
        return []  # (a series' own times do not repeat: a status column beside them is text)
    if layout.clock_field is None and not any(b":" in row[layout.time_field] or is_number(
            row[layout.time_field]) for row in rows):
        return []  # (dates alone repeat for any series sampled more than daily)
    text, _ = _column_kinds(rows, layout.sep if layout.comma else None)
    used = set(layout.value_fields) | {layout.time_field, layout.clock_field}
    found = []
    for i in sorted(text - used):
        seen = {row[i].strip() for row in rows} - {b""}
        if layout.names[i] and 2 <= len(seen) <= len(rows) // 2:
            found.append((layout.names[i], len(seen)))
    return found


# Without a time column, a text column of a few values that changes from one line to the next
# on at least this share of lines names several series taking turns.
TURNS = 0.8


def _cycling_columns(rows: list, layout: Layout) -> list:
    """Without a time column: the text columns of a few values that take turns line by line
    (a scrape's metric names: node_load1, node_memory_..., node_load1, ...), as ``(name,
    values)``; a status column (OK, then WARN for a while) stays put from line to line."""
    text, _ = _column_kinds(rows, layout.sep if layout.comma else None)
    found = []
    for i in sorted(text - set(layout.value_fields) - {layout.key_field}):
        cells = [row[i].strip() for row in rows]
        values = len(set(cells))
        turns = sum(a != b for a, b in zip(cells, cells[1:]))
        if 2 <= values <= len(cells) // 3 and turns >= TURNS * (len(cells) - 1):
            found.append((layout.names[i] if layout.names and layout.names[i] else str(i),
                          values))
    return found


# A number with a unit after it: nvidia-smi's "5057 MiB", "11.2 ms" (units of size, rate,
# time, frequency, power and temperature: not "200 OK", "3.2a" or "12 Jan").
_WITH_UNIT = re.compile(rb"[+-]?\d+(?:\.\d+)?\s*(?:[KkMGT]i?B|B|[KkMG]?bps|[kMG]?Hz|[mk]?W|"
                        rb"m?[VA]|[mun]?s|\xc2\xb5s|min|rpm|RPM|\xc2\xb0[CF]|[KMG]/s)")


def unit_columns(data: bytes, layout: Layout) -> list:
    """The columns left out of the rows as text whose first data lines in ``data`` all hold
    a number with a unit (nvidia-smi's ``memory.used [MiB]``: ``5057 MiB``), each as ``(name,
    first such field)``: numbers the operator expects learned, which a ``nounits`` option
    or a header naming the unit would give."""
    if layout.names is None:
        return []
    rows = _first_rows(data, layout)
    used = set(layout.value_fields) | {layout.time_field, layout.clock_field, layout.key_field}
    return [(layout.names[i], rows[0][i].strip().decode("utf-8", "replace"))
            for i in range(layout.n_fields) if i not in used and rows
            and all(_WITH_UNIT.fullmatch(row[i].strip()) for row in rows)]


def numbered_header(data: bytes, layout: Layout) -> list:
    """Names of value columns that the header gives as the very number the line after it
    holds there (ping's "64 bytes from ... time=11.2 ms" taken for a header: a data line, whose
    constant 64 is learned and the rest left out as text)."""
    if layout.names is None or layout.header_line is None:
        return []
    split = [[field.strip() for field in _split(line, layout.comma, layout.sep or b",")]
             for line in (line.strip() for line in data.split(b"\n")) if line]
    header = [name.encode() for name in layout.names]
    at = next((k for k, fields in enumerate(split) if fields == header), None)
    after = split[at + 1] if at is not None and at + 1 < len(split) else []
    return [layout.names[i] for i in layout.value_fields
            if i < len(after) and is_number(header[i]) and after[i] == header[i]]


def day_order(stamps: list, day_first="auto") -> bool | None:
    """Whether a stream's times (its first ones, as written) put the day before the month:
    None if the first is not written ``07/01/2014``, else ``day_first`` if told (a bool), else
    what a day above 12 says (:func:`~emstream.timestamps.infer_day_first`), else the order
    under which the times run as a series does, when only one does (:func:`_order_by_steps`:
    a file that starts on the 1st of a month, 1/1/2024 then 1/2/2024, has no day above 12
    for a long while, but read day first its second day comes a month after its first).

    Raises :class:`LayoutError` when nothing says.
    """
    if not stamps or not needs_day_order(stamps[0]):
        return None
    dates = day_first if day_first != "auto" else infer_day_first(stamps)
    if dates is None and day_first == "auto":
        dates = _order_by_steps(stamps)
    if dates is None:
        written = stamps[0].decode("utf-8", "replace")
        raise LayoutError(f"the times are written like {written!r}, day or month first, and no "
                          "day above 12 says which: set input.day_first")
    return dates


# A series runs at a steady step: read in the wrong order of day and month, its dates jump by a
# month where they change by a day, a step this many times its usual one.
IRREGULAR_STEP = 100.0


def _order_by_steps(stamps: list) -> bool | None:
    """Day first (True) or month first (False): the one order under which these times (with
    their times of day) run as a series does, one way at a steady step (no step longer than
    :data:`IRREGULAR_STEP` times the usual one), while under the other they do not (1/1
    00:00 to 1/2 00:00 in 5-minute steps: month first, the date's change is one step; day
    first, a month); None if both orders or neither do (monthly figures, 1/1, 2/1, 3/1,
    step steadily either way: a day or a month)."""
    regular = []
    for day_first in (True, False):
        times = parse_times(stamps, day_first)
        if not np.isfinite(times).all() or times.size < 3:
            continue
        steps = np.diff(times)
        moving = np.abs(steps[steps != 0])
        if _against_the_run(steps) <= 2 and \
                moving.size and moving.max() <= IRREGULAR_STEP * np.median(moving):
            regular.append(day_first)
    return regular[0] if len(regular) == 1 else None


def _index(spec, names, n_fields: int, what: str) -> int:
    """A column given by name (needs a header) or by 0-based index."""
    if isinstance(spec, str) and not spec.lstrip("-").isdigit():
        if names is None or spec not in names:
            known = ", ".join(names) if names else "no header"
            raise LayoutError(f"{what} {spec!r} is not a column ({known})")
        if names.count(spec) > 1:  # (which one was meant? the first was taken silently)
            where = ", ".join(str(i) for i, name in enumerate(names) if name == spec)
            raise LayoutError(f"{what} {spec!r} names {names.count(spec)} columns of the "
                              f"header (fields {where}, from 0): give its index instead")
        return names.index(spec)
    index = int(spec)
    if not 0 <= index < n_fields:
        raise LayoutError(f"{what} {index} out of range for {n_fields} fields per line")
    return index


def repeats_header(line: bytes, layout: Layout) -> bool:
    """Whether ``line`` is the layout's header line again: a followed log file rotated or
    truncated by a writer that starts each file with its header (the new file's first line
    is skipped as the first file's was, not rejected).

    >>> layout = find_layout(b"timestamp,value\\n2024-01-01 00:00,1.5\\n")
    >>> repeats_header(b"timestamp,value", layout), repeats_header(b"2024-01-01,2", layout)
    (True, False)
    """
    if layout.names is None:
        return False
    line = blank_byte_order_marks(line).strip()
    fields = _split(line, layout.comma, layout.sep)
    return len(fields) == len(layout.names) and _header_names(fields) == layout.names


@dataclass(frozen=True)
class ChangedHeader:
    """A header other than the stream's at the start of a followed stream's next file.

    ``names``: its columns; ``layout``: the stream's layout with the columns it uses (values,
    time, key) found by name in the new header, or None if ``missing`` lists some it lacks
    (or holds twice)."""

    names: tuple
    layout: Layout | None
    missing: tuple


def changed_header(line: bytes, layout: Layout) -> ChangedHeader | None:
    """Whether ``line`` is another header of the same table: a log rotated into a file whose
    writer added, dropped or moved columns (every line of it was rejected, "wrong field count",
    with no word about why).  A line is such a header if none of its fields is a number or a
    time and it names at least one of the stream's columns.

    >>> layout = find_layout(b"timestamp,value\\n2024-01-01 00:00,1.5\\n")
    >>> found = changed_header(b"timestamp,host,value", layout)
    >>> found.layout.value_fields, found.layout.n_fields, found.missing
    ((2,), 3, ())
    >>> changed_header(b"timestamp,reading", layout).missing
    ('value',)
    >>> changed_header(b"timestamp,value", layout) is None  # (the same header: a repeat)
    True
    """
    if layout.names is None:
        return None
    fields = _split(blank_byte_order_marks(line).strip(), layout.comma, layout.sep)
    names = _header_names(fields)
    if names is None or names == layout.names or any(
            is_number(f) or looks_like_time(f) for f in fields):
        return None
    if not set(names) & set(layout.names):
        return None  # (a line of words that shares nothing with the table: no header of it)

    def moved(field: int | None) -> int | None:
        if field is None:
            return None
        name = layout.names[field]
        return names.index(name) if names.count(name) == 1 else None

    used = [layout.time_field, layout.clock_field, layout.key_field, *layout.value_fields]
    missing = tuple(layout.names[f] for f in used if f is not None and moved(f) is None)
    if missing:
        return ChangedHeader(names, None, missing)
    return ChangedHeader(names, replace(
        layout, names=names, n_fields=len(names), time_field=moved(layout.time_field),
        clock_field=moved(layout.clock_field), key_field=moved(layout.key_field),
        value_fields=tuple(moved(f) for f in layout.value_fields)), ())


def find_layout(data: bytes, *, columns=None, timestamp="auto", key=None,
                first_line: int = 1, day_first="auto", max_line_bytes: int | None = None,
                _titled: bool = False) -> Layout | None:
    """The layout of a stream that starts with ``data``, or None for plain numbers.

    Parameters
    ----------
    data : bytes
        The stream's first lines (at least up to its first data line).
    columns : sequence of (str or int), optional
        Fields that make a row, by header name or 0-based index; default: all but the time.
    timestamp : "auto", str, int or None
        The time column (name or index); "auto" finds it (see the module's docstring);
        None: no time column.
    key : str or int, optional
        The column naming each row's series (name or index); never part of the row.
    first_line : int
        Line number of the first line of ``data``.
    day_first : "auto" or bool
        Whether times written ``07/01/2014`` put the day first; "auto": as a day above 12 in
        ``data``'s times shows.
    max_line_bytes : int, optional
        Longer lines are no header and no row (the parser rejects them as "too long").

    Returns
    -------
    Layout or None
        None when there is no header, no time column and no key (plain numbers), or when ``data``
        holds no non-blank line yet.  From a header alone, a layout that is not ``settled``
        (:func:`settle_layout`: its first data lines settle it).

    Raises
    ------
    LayoutError
        ``columns`` or ``timestamp`` name a column that does not exist, or the times are
        written ``07/01/2014`` and nothing says whether the day comes first.
    """
    lines = [(first_line + i, line.strip()) for i, line in enumerate(data.split(b"\n"))]
    # (a line too long to be read is no header either: 200 KB of NUL bytes was taken for one,
    # its "name" logged and kept in every checkpoint)
    lines = [(n, line) for n, line in lines
             if line and (max_line_bytes is None or len(line) <= max_line_bytes)]
    if not lines:
        return None
    # Excel's hint of the separator, first of a file (Grafana's "Download for Excel"): "sep=,"
    # is no header (the rows were rejected, the hint the only column).
    hinted = None
    raw_first = data.split(b"\n", 1)[0].rstrip(b"\r\n ").lstrip()
    if len(raw_first) == 5 and raw_first[:4].lower() == b"sep=" and \
            raw_first[4:] in (b",", b";", b"\t", b"|"):
        hinted = raw_first[4:]
        lines = lines[1:]
        if not lines:
            return None
    lines = _without_comments(lines)
    if not lines:
        return None
    names, header_line = None, None
    head_number, head = lines[0]
    head_fields = _split(head, b"," in head)
    # A key given by index is text on every line: it does not make the first line a header.
    by_index = key is not None and not (isinstance(key, str) and not key.lstrip("-").isdigit())
    probe = [f for i, f in enumerate(head_fields) if not (by_index and i == int(key))]
    # (a time of day after a date is no name either: "2024-01-01 00:05:00 1.5" split at
    # whitespace is data)
    if any(not is_number(f) and not looks_like_time(f) and not (
            i and _is_time_of_day(f) and looks_like_time(probe[i - 1]))
           for i, f in enumerate(probe)):
        # A header with tabs (or semicolons and no comma) says how fields are separated: a
        # TSV's times and names may hold spaces.
        head_sep = hinted or _header_separator(head)
        data_lines = [line for _, line in lines[1:] if line.strip(b"-+=|: \t")][:1]
        if head_sep == b"|" and not hinted and data_lines and b"|" not in data_lines[0]:
            head_sep = None  # (a name with a pipe in a whitespace table's header: "value|max")
        if head_sep is not None:
            head_fields = _split(head, True, head_sep)
        names = _header_names(head_fields)
        if names is not None:
            header_line = head_number
            lines = lines[1:]
            # A rule under the header (psql's aligned output: "-----+-----"; a Markdown
            # table's "|---|---|") is no data line: the first one after it decides.
            while lines and not lines[0][1].strip(b"-+=|: \t"):
                lines = lines[1:]
    if names is None:
        head_sep = hinted
    if lines:
        sep = head_sep or (b"," if b"," in lines[0][1] else None)
        fields = _split(lines[0][1], sep is not None, sep or b",")
    elif names is not None:  # a header alone (a live stream's first line): it decides for
        # now, and the first data lines settle the rest (settle_layout)
        fields, sep = [], head_sep or (b"," if b"," in head else None)
    else:
        return None
    comma = sep is not None
    n_fields = len(fields) if fields else len(names)
    if names is not None and fields and len(names) != n_fields:
        # A header that does not fit the data is a title above the header, if the next line
        # fits as one (sysstat's "Linux 5.15.0 (host) 03/01/2024 _x86_64_ (2 CPU)" over mpstat's
        # and sar's tables, a report's name over its CSV: every row was rejected); else only a
        # first rejected line.  (The title is then a rejected line too.)
        below = None if hinted or _titled else _below_a_title(
            data, head_number - first_line + 1, columns=columns, timestamp=timestamp, key=key,
            first_line=head_number + 1, day_first=day_first)
        if below is not None:
            return below
        names = None
        header_line = None
    key_field = None if key is None else _index(key, names, n_fields, "input.key")
    time_field = None
    if timestamp not in (None, "auto"):
        time_field = _index(timestamp, names, n_fields, "input.timestamp")
    elif timestamp == "auto":
        probe_rows = _probe([line for _, line in lines], comma, sep, n_fields)
        lowered = [n.strip().lower() for n in names or ()]
        named = [i for i, n in enumerate(lowered) if n in TIME_NAMES[:5]] or [
            i for i, n in enumerate(lowered) if n in TIME_NAMES and _holds_times(
                [row[i].strip() for row in probe_rows])]
        if named:
            time_field = named[0]
        elif fields and looks_like_time(fields[0]):
            time_field = 0
        elif fields:
            time_field = _time_column(probe_rows, names, key_field)
    clock_field = None
    if time_field is not None and fields:
        wanted = () if columns is None else [_index(c, names, n_fields, "input.columns")
                                             for c in columns]
        time_field, clock_field = _date_and_clock(
            time_field, names, _probe([line for _, line in lines], comma, sep, n_fields),
            {key_field, *wanted}, moved=timestamp == "auto", key_field=key_field)
    dates = None
    if time_field is not None and fields:
        split = [f for f in (_split(line, comma, sep or b",") for _, line in lines)
                 if len(f) == n_fields]
        stamps = [f[time_field] if clock_field is None else
                  _with_clock(f[time_field], f[clock_field]) for f in split]
        try:
            dates = day_order(stamps, day_first)
        except LayoutError:
            if key_field is None:
                raise
            # (series interleaved step back at every change of key: the longest one's own
            # steps tell the order of day and month)
            dates = day_order(max(_by_key(stamps, split, key_field), key=len), day_first)
    if names is None and time_field is None and key_field is None:
        return None
    if key_field is not None and key_field == time_field:
        raise LayoutError(f"input.key {key!r} is the time column" + (
            " (found as the time by itself: to give each of its values a model of its own, "
            "set input.timestamp to the time column, or to null for none)"
            if timestamp == "auto" else ""))
    rows = _probe([line for _, line in lines], comma, sep, n_fields)
    if columns is None:
        # A column without a name is a row index (pandas' to_csv, R's write.csv), and one
        # whose first data lines hold text (a host, a status) is not a number: neither is a
        # value (unless no field is a number: that first line is junk, a reject, not the
        # layout).
        # So is a column named as a row's identifier (a database's id: a count that grows
        # with every row, no measurement), and one that repeats the time as an epoch number
        # (Zabbix's "2024-01-01 00:10:00 1704067800 53.1").
        copies = _time_copies(rows, time_field, clock_field, dates)
        value_fields = tuple(i for i in range(n_fields)
                             if i not in (time_field, key_field, clock_field)
                             and not (names and _is_row_column(names[i], [r[i] for r in rows]))
                             and i not in copies)
        text = _column_kinds(rows, sep)[0] if names is not None else ()
        if any(i not in text for i in value_fields):
            value_fields = tuple(i for i in value_fields if i not in text)
    else:
        value_fields = tuple(_index(c, names, n_fields, "input.columns") for c in columns)
        if len(set(value_fields)) < len(value_fields):  # (a model of one column twice over)
            raise LayoutError(f"input.columns {columns} names a column twice (by index and "
                              "by name?); each column once")
    if (timestamp not in (None, "auto") and columns is None and rows and value_fields
            and not any(is_number(r[i].strip()) for r in rows for i in value_fields)
            and all(is_number(r[time_field].strip()) for r in rows)
            and any(all(looks_like_time(r[i].strip()) and not is_number(r[i].strip())
                        for r in rows) for i in value_fields)):
        # (the value column named as the time, the times in another: the text columns
        # became the values, every line was rejected, exit 0, and the whole file marked as
        # read; an epoch column whose first values are missing, NA, is no such case)
        raise LayoutError(f"input.timestamp {timestamp!r} names a column of numbers, and "
                          "another column holds the times: is that the time column?")
    if time_field in value_fields:
        raise LayoutError(f"the time column {time_field} is also in input.columns")
    if key_field is not None and key_field in value_fields:
        raise LayoutError(f"the key column {key!r} is also in input.columns")
    if not value_fields:
        raise LayoutError(f"the first data line (line {lines[0][0] if lines else head_number}) "
                          f"has {n_fields} field(s) and none is a value column")
    # (digit grouping is told by whole numbers below 1,000 beside grouped ones: from every
    # line given, not the first 50 alone, which a series that starts high holds none of)
    every = _probe([line for _, line in lines], comma, sep, n_fields, limit=None)
    grouping = tuple(grouping_of([row[i].strip() for row in every], sep) for i in value_fields)
    return Layout(names, header_line, n_fields, comma, time_field, value_fields, key_field,
                  (sep or b",").decode(), dates, settled=bool(lines), clock_field=clock_field,
                  grouping=grouping if any(grouping) else None)


# Names of a row's identifier, not a measurement (besides a column the header leaves unnamed).
ROW_NAMES = ("id", "#", "rowid", "row_id")


def _is_row_column(name: str, cells: list) -> bool:
    """A column the header leaves unnamed, or names as a row's identifier (``id``, ``..._id``)
    that holds whole numbers (a stock index named ``Index`` is a value)."""
    name = name.strip().lower()
    return name == "" or (name in ROW_NAMES or name.endswith("_id")) and bool(cells) and all(
        WHOLE.fullmatch(c.strip()) for c in cells)


def _time_copies(rows: list, time_field, clock_field, day_first) -> set:
    """Columns of these first data lines that hold each row's time again as an epoch number
    (to the second), besides the time column itself."""
    if time_field is None or not rows:
        return set()
    stamps = [row[time_field].strip() if clock_field is None
              else _with_clock(row[time_field].strip(), row[clock_field].strip())
              for row in rows]
    times = parse_times(stamps, day_first)
    if not np.isfinite(times).all():
        return set()
    copies = set()
    for i in range(len(rows[0])):
        values = [row[i].strip() for row in rows]
        if i not in (time_field, clock_field) and all(
                _EPOCH_NUMBER.fullmatch(v) for v in values) and np.all(
                np.abs(parse_times(values) - times) <= 1.0):
            copies.add(i)
    return copies


def _holds_times(cells: list) -> bool:
    """Whether a column's first cells are times: written, or epoch numbers from 2000 to 2100
    (a column named ``epoch`` in a training log counts 1, 2, 3: no times)."""
    if not cells:
        return False
    if all(_EPOCH_NUMBER.fullmatch(c) for c in cells):
        return _epoch_times(cells) is not None
    return all(not is_number(c) and looks_like_time(c) for c in cells)


def _epoch_times(cells: list) -> np.ndarray | None:
    """The times of cells that are all epoch numbers from 2000 to 2100, else None."""
    if not all(_EPOCH_NUMBER.fullmatch(c) for c in cells):
        return None
    times = parse_times(cells)
    return times if ((times >= _EPOCH_SPAN[0]) & (times <= _EPOCH_SPAN[1])).all() else None


def _time_column(rows: list, names, key_field) -> int | None:
    """The time column of a table none is named in (:data:`TIME_NAMES`) and whose first field
    is no written time, found in its first data lines ``rows``: the first column of written
    times (``created_at`` of a database's dump, ``last_changed`` of Home Assistant's) that run
    in order, or a first column of epoch numbers (2000 to 2100, in seconds, ms, µs or ns) that
    run one way at a steady step (Prometheus' or Datadog's points as ``time,value`` rows, with
    no header, or one that does not say it is a time: ``t``, ``time_ms``).  None if there is
    none: a column of counts or readings that merely grows is no time."""
    if not rows:
        return None
    for i in range(len(rows[0])):
        values = [row[i].strip() for row in rows]
        if i != key_field and all(not is_number(v) and looks_like_time(v) for v in values) \
                and len(set(values)) > 1:
            runs = _by_key(values, rows, key_field)
            if all(map(_in_order, runs)) and (_ordered(values) or _ordered(max(runs, key=len))):
                return i
    if key_field == 0 or len(rows[0]) < 2 or len(rows) < 5:
        return None
    words = set(re.split(r"[^a-z0-9]+", names[0].lower())) if names is not None else None
    if words is not None and not words & _TIME_WORDS:
        return None  # (in_octets, packets: counters, not times)
    times = _epoch_times([row[0].strip() for row in rows])
    if times is None:
        return None
    steps = np.concatenate([np.diff(run) for run in _by_key(list(times), rows, key_field)])
    if not ((steps > 0).all() or (steps < 0).all()):
        return None
    step = float(np.median(np.abs(steps)))
    # (without a header, a range query's exact step: a counter that grows at a steady rate
    # still varies by more than this)
    steady = np.abs(np.abs(steps) - step) <= (0.05 if names is not None else 1e-4) * step
    return 0 if 1e-3 <= step <= 7 * 86400.0 and steady.mean() >= 0.8 else None


def _by_key(values: list, rows: list, key_field) -> list:
    """``values`` (one per row of ``rows``) as one run per key, in order: times run in order
    within a series; several series interleaved step back at every change of key (a keyed
    table's time column was not found, for every key, when the first lines held more than one
    key: found by an attack helper).  All of them as one run, as before, without a key or
    without evidence: unless some key's run holds three distinct values, the runs cannot show
    an order (one row per key, or one value per key, a host's ``first_seen``, would pass any
    column, and a column of install dates or call lengths was taken for the time)."""
    if key_field is None:
        return [values]
    runs = {}
    for value, row in zip(values, rows):
        runs.setdefault(row[key_field].strip(), []).append(value)
    if not any(len(set(run)) >= 3 for run in runs.values()):
        return [values]
    return list(runs.values())


def _ordered(stamps: list) -> bool:
    """Whether these times need no order of day and month, or it can be told (a column found
    by its values must not stop a stream that ran without it)."""
    try:
        day_order(stamps)
    except LayoutError:
        return False
    return True


# Words of a first column's name that say it may hold epoch times.
_TIME_WORDS = frozenset(("t", "time", "timestamp", "ts", "epoch", "date", "datetime", "clock",
                         "stamp", "unix", "unixtime"))


# An epoch number as exporters write one: digits, perhaps a fraction (no sign, no exponent).
_EPOCH_NUMBER = re.compile(rb"\d{9,19}(?:\.\d+)?")


def _date_and_clock(time_field: int, names, rows: list, taken: set, *, moved: bool,
                    key_field=None) -> tuple:
    """The time column and, if it holds dates alone, the column holding their times of day
    (``Date,Time,Value``): the one named ``time``, ``hour`` or ``clock``, else the next one,
    if its fields in the first data lines ``rows`` are times of day and each date with its time
    is a time.  ``moved``: the time column was found, not configured; if it holds times of day
    alone (``Time,Date,Value``), the dates' column named as a time column takes its place.
    Returns ``(time_field, clock_field or None)``.  (Rows dated by the day alone had no time
    step: no season, and a day's hold measured in 300 points.)"""
    if not rows:
        return time_field, None

    def column(i: int) -> list:
        return [row[i].strip() for row in rows]

    def clock(i: int) -> bool:
        return all(_is_time_of_day(value) for value in column(i))

    free = [i for i in range(len(rows[0])) if i != time_field and i not in taken]
    named = [i for i in free if names and names[i].strip().lower() in CLOCK_NAMES]
    if moved and clock(time_field):
        dated = [i for i in free if names and names[i].strip().lower() in TIME_NAMES
                 and not clock(i)]
        if not dated:
            return time_field, None
        time_field, named = dated[0], [time_field]
    dates = column(time_field)
    if any(b":" in date or not looks_like_time(date) for date in dates):
        return time_field, None  # (whole times already, or no dates)
    for i in [*named, time_field + 1]:
        if i != time_field and i not in taken and i < len(rows[0]) and clock(i) and all(map(
                _in_order, _by_key([_with_clock(date, time) for date, time in
                                    zip(dates, column(i))], rows, key_field))):
            return time_field, i
    return time_field, None


def _in_order(stamps: list) -> bool:
    """Whether these times (as written, in the order of their rows) are all times and run one
    way, but for at most two steps the other way (a repeated hour when clocks go back): a
    series' dates and times of day do; a column of durations beside dates (laps, call
    lengths) jumps about."""
    for day_first in (True, False):
        times = parse_times(stamps, day_first)
        if np.isfinite(times).all():
            return _against_the_run(np.diff(times)) <= 2
    return False


def _against_the_run(steps: np.ndarray) -> int:
    """How many of these steps between times go against the way most go."""
    return min(np.count_nonzero(steps < 0), np.count_nonzero(steps > 0))


def settle_layout(layout: Layout, data: bytes, **settings) -> Layout | None:
    """A layout found from a header alone, settled by the first data lines in ``data``: which
    columns hold text (a host is no value) and whether dates put the day first, as
    :func:`find_layout` (with ``settings``: columns, timestamp, key, day_first) finds them
    from the header and those lines; None if those lines are plain numbers that do not fit
    the header.  Unchanged if settled, or while ``data`` has no data line.  (Decided from
    the header alone, a header written before its rows rejected every row of a text
    column's or of ``7/13/2014`` times' stream, for good: the layout is checkpointed.)"""
    if layout.settled:
        return layout
    # (a repeat of the header, a rotated file's or a restarted producer's, is no data line)
    lines = [line for line in data.split(b"\n") if line.strip()]
    while lines and repeats_header(lines[0], layout):
        lines = lines[1:]
    if not lines:
        return layout
    data = b"\n".join(lines) + b"\n"
    sep = layout.sep if layout.comma else b" "
    header = sep.join(b'"' + name.encode().replace(b'"', b'""') + b'"' if layout.comma
                      else name.encode() for name in layout.names)
    found = find_layout(header + b"\n" + data, first_line=layout.header_line or 1, **settings)
    if found is None or found.header_line is None:
        # Rows that do not fit the header: it was only a first line (skipped already), and
        # the rows decide alone, as in one block (None: plain numbers).
        return found
    return replace(found, header_line=layout.header_line)


# The longest line parse_stream takes (the parsers' default, and emstreamd's
# input.max_line_bytes): longer ones are rejected as "too long".
MAX_LINE_BYTES = 4096


def parse_stream(stream, *, columns=None, n_fields=None, key=None, day_first="auto",
                 on_layout=None):
    """Parse a readable byte stream block by block as emstreamd reads its input; yields
    :class:`~emstream.parse.Parsed` blocks.

    Plain numbers, a table (a header line, a time column, and with ``key``, a column's
    index or name, a key column whose values are the blocks' ``keys``), or JSON lines (one
    object per line, as emstreamd's ``input.format: jsonl``: ``columns`` names the fields and
    ``key`` the key's field), as the first block shows (``day_first`` as :func:`find_layout`
    takes it); ``on_layout``, if given, is called once with that layout (None for plain
    numbers).  Raises :class:`LayoutError` if ``columns`` or ``key`` name no column, JSON
    lines come without field names, or the order of day and month is not known."""
    # (a line past the parsers' max_line_bytes is cut as it arrives, and rejected as too long:
    # kept whole, one 2 GB line of a 2 MB gzip bomb took the command past 24 GB)
    lines = LineBuffer(max_line_bytes=MAX_LINE_BYTES)
    line = 1
    layout = None  # undecided until the first non-blank block; False: plain numbers
    while True:
        chunk = stream.read(BLOCK_BYTES)
        data = blank_byte_order_marks(lines.feed(chunk, at_end=not chunk))
        if data:
            if layout is None and line == 1 and (encoding := wide_encoding(data)):
                raise LayoutError(f"the input is {encoding} text: convert it to UTF-8 first "
                                  f"(iconv -f {encoding[:6]} -t UTF-8)")
            if layout is None and data.strip():
                head = data[:LAYOUT_BYTES]
                head = head[:head.rfind(b"\n") + 1] or head
                from .records import json_document  # (records imports this module)

                if head.lstrip()[:1] == b"{" or json_document(head):
                    layout = _json_layout(head, columns, key, day_first)
                else:
                    layout = find_layout(head, columns=columns, key=key, first_line=line,
                                         day_first=day_first) or False
                if on_layout is not None:
                    on_layout(layout or None)
            if layout and not isinstance(layout, Layout):
                parsed = parse_json_lines(data, layout.value_fields, first_line=line,
                                          key=layout.key_field, time=layout.time_field,
                                          day_first=layout.day_first)
            elif layout:
                parsed = parse_table(data, layout, first_line=line)
            else:
                parsed = parse_lines(data, n_fields=n_fields, columns=columns, first_line=line)
            n_fields = parsed.n_fields or n_fields
            line += parsed.n_lines
            yield parsed
        if not chunk:
            return


def _json_layout(head: bytes, columns, key, day_first):
    """A JSON stream's :class:`~emstream.records.JsonLayout` for :func:`parse_stream`."""
    # (imported here: records imports this module)
    from .records import (JsonLayout, find_json_layout, first_record_fields, json_document,
                           json_document_command, named)

    if shape := json_document(head):
        raise LayoutError(f"the input is {shape}, not JSON lines (one object per line): "
                          f"convert it first ({json_document_command(shape)})")
    if not columns or not all(isinstance(c, str) for c in columns):
        fields = first_record_fields(head)
        raise LayoutError("JSON lines: name the fields to read (--columns cpu,mem; "
                          "timeline: --column cpu)"
                          + (f"; numbers in the first record: {named(fields)}" if fields else ""))
    if key is not None and not isinstance(key, str):
        raise LayoutError("JSON lines: name the field that holds the key (--key-column "
                          "host)")
    return (find_json_layout(head, columns, key=key, day_first=day_first)
            or JsonLayout(tuple(columns), key_field=key))


def of_key(parsed: Parsed, key: str) -> Parsed:
    """The rows of a keyed block whose key is ``key``."""
    mine = np.isin(parsed.keys, key_bytes(key))
    times = getattr(parsed, "times", None)
    text = getattr(parsed, "time_text", None)
    return replace(parsed, rows=parsed.rows[mine], lines=parsed.lines[mine],
                   keys=parsed.keys[mine],
                   **({} if times is None else {"times": times[mine], "time_text": text[mine]}))


def parse_table(data: bytes, layout: Layout, *, first_line: int = 1,
                max_line_bytes: int = 4096) -> Parsed:
    """Parse a block of whole lines laid out as ``layout``.

    Blank lines and lines with the wrong number of fields are found for the whole block at
    once (a flood of them costs a few array passes, not a Python step per line); the others
    are split into fields one by one.

    Parameters
    ----------
    data : bytes
        Whole lines (a last line without a newline counts as a line).
    layout : Layout
    first_line : int
        Line number of the first line of ``data``.
    max_line_bytes : int
        Longer lines are rejected as "too long".

    Returns
    -------
    TimedParsed
        With ``times`` (seconds since the epoch, shape (n,)) and ``time_text`` (the time
        fields as written, bytes, shape (n,)) when the layout has a time column; ``rejects``
        as :class:`~emstream.parse.Rejects`.
    """
    if data:
        fast = _parse_clean_block(data, layout, first_line, max_line_bytes)
        if fast is not None:
            return fast
    # (the parser's line spans; an empty block has no line, not one empty one)
    starts, stops = _spans(np.frombuffer(data, dtype=np.uint8)) if data else (
        np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64))
    n_lines = starts.size
    numbers = first_line + np.arange(n_lines, dtype=np.int64)
    blank, wrong = _screen(data, starts, stops, layout)
    special = (numbers == layout.header_line) | (stops - starts > max_line_bytes)
    blank &= ~special
    wrong &= ~special
    bulk = blank | wrong
    # The rest, a line at a time: the header (left out), too long lines (parse_lines rejects
    # them), and lines with the right number of fields.
    rest = np.flatnonzero(~bulk)
    values, time_text, key_text, early = [], [], [], {}
    key_field = layout.key_field
    # Semicolons separate cells where the comma is the decimal mark (spreadsheets in such
    # locales): a comma in a value is its decimal comma.
    decimal_comma = layout.comma and layout.separator == ";"
    # (the layout's attributes looked up once: this loop is a table's parsing cost)
    comma, sep, n_fields, header_line = layout.comma, layout.sep, layout.n_fields, \
        layout.header_line
    value_fields, time_field, clock_field = layout.value_fields, layout.time_field, \
        layout.clock_field
    # (a cell can only be grouped if its line holds the grouping character)
    cell_sep = sep if comma else None
    grouped = b"." if decimal_comma else b","
    marks = None if layout.grouping is None else [g.encode() for g in layout.grouping]
    for i, number in zip(rest.tolist(), numbers[rest].tolist()):
        line = data[starts[i]:stops[i]]
        if number == header_line or len(line) > max_line_bytes:
            values.append(line if len(line) > max_line_bytes else b"")
            time_text.append(b"")
            key_text.append(b"")
            continue
        quoted = comma and b'"' in line
        if quoted:
            fields = _split_quoted(line, sep, key_field) or []  # (unreadable quoting: no
            # count)
        else:
            fields = [f.strip() for f in line.split(sep)] if comma else line.split()
        if len(fields) != n_fields:  # (a field count the screen did not foresee)
            early[number] = "wrong field count"
            fields = [b""] * n_fields
        if key_field is not None and number not in early and is_bad_key(fields[key_field]):
            early[number] = "bad key"
            fields = [b""] * n_fields
        stamp = b"" if time_field is None else fields[time_field] if clock_field is None \
            else _with_clock(fields[time_field], fields[clock_field])
        if time_field is not None and number not in early and len(stamp) > MAX_TIME_BYTES:
            early[number] = "bad timestamp"
            fields = [b""] * n_fields
        picked = [fields[j] for j in value_fields]
        if not all(picked):  # an empty field is a missing value: not a number
            picked = [field or b"x" for field in picked]
        if b"%" in line:  # (a percentage as a spreadsheet or Grafana formats it: 54.0%)
            picked = [field[:-1].rstrip() if field.endswith(b"%") else field
                      for field in picked]
        if marks is not None:
            picked = [regrouped(field, mark) if mark else ungrouped(field, cell_sep)
                      for field, mark in zip(picked, marks)]
        elif (quoted if sep == b"," else grouped in line):  # (a comma table's: quoted cells)
            picked = [ungrouped(field, cell_sep) for field in picked]
        if decimal_comma:
            picked = [field.replace(b",", b".") for field in picked]
        elif sep != b"," and number not in early and any(
                _DECIMAL_COMMA.fullmatch(field) for field in picked):
            # A tab-, pipe- or space-separated table written where the comma is the decimal
            # mark (German Excel's "Text (Tab delimited)"): "3,250" may as well be 3250, and
            # read as two numbers every such line was a "wrong field count", the rest (the
            # whole numbers) learned alone, a biased model, and no word of why.
            early[number] = "decimal comma"
            picked = [b"x"] * len(picked)
        if quoted:
            # A quoted value may hold what parse_lines splits on ("1,5", "1 2"): not a number.
            picked = [b"x" if b"," in f or len(f.split()) > 1 else f for f in picked]
        values.append(b",".join(picked) or b"x")
        time_text.append(stamp)
        if key_field is not None:
            key_text.append(fields[key_field])
    parsed = parse_lines(b"\n".join(values) + b"\n", n_fields=len(layout.value_fields),
                         first_line=1, max_line_bytes=max_line_bytes) if values else None
    if parsed is None:
        rows, lines = np.empty((0, len(layout.value_fields))), np.empty(0, dtype=np.int64)
        found = Rejects.empty()
    else:
        # parse_lines numbered the lines it saw 1, 2, ...: back to the block's numbers.
        rows, lines = parsed.rows, numbers[rest[parsed.lines - 1]]
        found = Rejects.of(parsed.rejects)
        found = _as_written(found, rest[found.lines - 1], numbers, data, starts, stops)
        found = found.take(np.flatnonzero(~np.isin(found.lines, [*early, layout.header_line])))
    times = text = keys = None
    index = np.searchsorted(numbers[rest], lines)
    if key_field is not None:
        keys = np.array(key_text, dtype=bytes)[index] if len(lines) else np.empty(0, "S1")
    if layout.time_field is not None and len(lines):
        text = np.array([time_text[j] for j in index.tolist()], dtype=bytes)
        times = parse_times(text, layout.day_first)
        bad = ~np.isfinite(times)
        for n in lines[bad].tolist():
            early[n] = "bad timestamp"
        keep = ~bad
        rows, lines, times, text = rows[keep], lines[keep], times[keep], text[keep]
        keys = None if keys is None else keys[keep]
    elif layout.time_field is not None:
        times, text = np.empty(0), np.empty(0, dtype="S1")
    rejects = Rejects.concat([
        _bulk_rejects(data, starts, stops, numbers, blank, wrong), found,
        [Reject(n, reason, _snippet(data[starts[n - first_line]:stops[n - first_line]]))
         for n, reason in early.items()]])
    rejects = rejects.take(np.argsort(rejects.lines, kind="stable"))
    return TimedParsed(np.ascontiguousarray(rows), lines, rejects, n_lines, layout.n_fields,
                       keys=keys, times=times, time_text=text)


def _parse_clean_block(data: bytes, layout: Layout, first_line: int,
                       max_line_bytes: int) -> TimedParsed | None:
    """:func:`parse_table` for a clean block, in array passes over its bytes (a table's lines
    are many and short: a Python step per line cost more than learning them, 1.5 of a
    timestamped back-fill's 2.2 µs per line); None when any line needs :func:`parse_table`'s
    own care (a header, a blank, too long or malformed line, a reject of any kind), which then
    parses the block.

    Each byte gets the index of the field it belongs to (a separator: the field it ends); the
    key and time fields are gathered into fixed-width byte strings, and the value fields, with
    the separators between them, are handed to :func:`parse_lines` as one block."""
    raw = np.frombuffer(data, dtype=np.uint8)
    starts, stops = _spans(raw)
    n_lines = starts.size
    values = layout.value_fields
    if list(values) != sorted(set(values)) or (
            layout.header_line is not None
            and first_line <= layout.header_line < first_line + n_lines):
        return None
    if np.any(stops - starts > max_line_bytes) or b'"' in data:  # (quotes: one by one)
        return None
    if layout.grouping is not None and any(g.encode() in data for g in layout.grouping if g):
        # (a value column with digit grouping: 1.234 is 1234 there; the line parser knows)
        return None
    blank, wrong = _screen(data, starts, stops, layout)
    if blank.any() or wrong.any():
        return None
    # Per byte: its line, whether it is inside one, and its field within the line.
    lengths = stops - starts
    inline = np.repeat(np.arange(n_lines), lengths + 1)[:raw.size]  # (+1: the newline)
    position = np.arange(raw.size) - starts[inline]
    inside = position < lengths[inline]
    space = _WHITESPACE[raw]
    if layout.comma:
        separator = (raw == ord(layout.separator)) & inside
        counted = separator
    else:
        separator = space & inside
        counted = ~space
        counted[1:] &= space[:-1]  # a field starts where a run of non-whitespace starts
        counted[0] = ~space[0]
    total = _prefix(counted)
    field = total[:-1] - total[starts][inline]  # separators before (comma) / fields begun
    if not layout.comma:
        field = field + counted - 1  # the field a byte is in (-1 before the first)
    keys = None
    if layout.key_field is not None:
        in_key = inside & ~separator & (field == layout.key_field)
        # UTF-8 C1 controls, line separators and bidirectional overrides (most blocks have
        # no \xc2 or \xe2; the latter were let through here, into keys and per-point lines)
        wide = (b"\xc2" in data or b"\xe2" in data or b"\xef\xbb\xbf" in data) and any(
            in_key[found.start()] for found in WIDE_CONTROL.finditer(data))
        if wide or np.any((raw[in_key] < 0x20) | (raw[in_key] == 0x7F)):
            return None  # a control character (which a comma table's key may lose to strip)
        if np.bincount(inline[in_key], minlength=1).max() > MAX_KEY_BYTES:
            return None  # a key too long (the line parser rejects it): it would widen all
        keys = _gather(raw, in_key, inline, n_lines)
        if layout.comma:
            keys = np.strings.strip(keys)
            if np.any(np.strings.str_len(keys) == 0):
                return None  # an empty key: the line parser rejects it
    last = values[-1]
    is_value = np.isin(field, values)
    keep = inside & is_value & ~(separator & (field == last))
    if not layout.comma:  # whitespace after a value field that is not the last: one space
        keep = (inside & is_value & ~separator) | (separator & is_value & (field != last))
    keep |= ~inside  # the newlines
    chars = raw
    if layout.comma and layout.separator == ";":  # decimal commas (keys are gathered from raw)
        chars = np.where(raw == ord(","), np.uint8(ord(".")), raw)
    if layout.comma and layout.separator != ",":  # (parse_lines reads commas and whitespace)
        chars = np.where(separator, np.uint8(ord(",")), chars)
    text = chars[keep].tobytes()
    if not text.endswith(b"\n"):
        text += b"\n"
    parsed = parse_lines(text, n_fields=len(values), first_line=1,
                         max_line_bytes=max(max_line_bytes, 1))
    if len(parsed.rejects) or parsed.rows.shape[0] != n_lines:
        return None
    numbers = first_line + np.arange(n_lines, dtype=np.int64)
    times = stamps = None
    if layout.time_field is not None:
        in_time = inside & ~separator & (field == layout.time_field)
        if layout.clock_field is not None:
            in_clock = inside & ~separator & (field == layout.clock_field)
            in_either = in_time | in_clock
        else:
            in_either = in_time
        space = int(layout.clock_field is not None)  # (between a date and its time)
        if np.bincount(inline[in_either], minlength=1).max() + space > MAX_TIME_BYTES:
            return None  # (as a key too long: the line parser says "bad timestamp")
        stamps = _gather(raw, in_time, inline, n_lines)
        if layout.comma:
            stamps = np.strings.strip(stamps)
        if layout.clock_field is not None:
            clocks = _gather(raw, in_clock, inline, n_lines)
            if layout.comma:
                clocks = np.strings.strip(clocks)
            if not np.all(np.strings.str_len(clocks)):
                return None  # (no time of day: the line parser says "bad timestamp")
            # (as _with_clock: the hour zero-padded)
            space = np.where(np.strings.find(clocks, b":") == 1, b" 0", b" ")
            stamps = np.strings.add(np.strings.add(stamps, space), clocks)
        times = parse_times(stamps, layout.day_first)
        if not np.all(np.isfinite(times)):
            return None
    return TimedParsed(np.ascontiguousarray(parsed.rows), numbers, Rejects.empty(), n_lines,
                       layout.n_fields, keys=keys, times=times, time_text=stamps)


def _gather(raw: np.ndarray, chosen: np.ndarray, line_of: np.ndarray, n_lines: int):
    """The ``chosen`` bytes of each line as one fixed-width byte string per line, shape
    (n_lines,)."""
    where = np.flatnonzero(chosen)
    lines = line_of[where]
    counts = np.bincount(lines, minlength=n_lines)
    width = max(int(counts.max()) if counts.size else 0, 1)
    first = np.zeros(n_lines + 1, dtype=np.int64)
    np.cumsum(counts, out=first[1:])
    column = np.arange(where.size) - first[lines]
    out = np.zeros((n_lines, width), dtype=np.uint8)
    out[lines, column] = raw[where]
    return out.view(f"S{width}").ravel()


def _screen(data: bytes, starts, stops, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """Which lines are blank, and which (not blank) have the wrong number of fields, as
    :func:`_split` would count them; shapes (n,)."""
    raw = np.frombuffer(data, dtype=np.uint8)
    space = _WHITESPACE[raw]
    # Per line: bytes that are not whitespace, and commas or fields (runs of non-whitespace).
    solid = _per_line(~space, starts, stops)
    if layout.comma:
        fields = _per_line(raw == ord(layout.separator), starts, stops) + 1
    else:
        run_start = ~space
        run_start[1:] &= space[:-1]
        fields = _per_line(run_start, starts, stops)
    blank = solid == 0
    wrong = ~blank & (fields != layout.n_fields)
    if layout.comma:  # a quoted field may hold the separator: such lines are split one by one
        wrong &= _per_line(raw == ord('"'), starts, stops) == 0
    return blank, wrong


def _per_line(mask: np.ndarray, starts, stops) -> np.ndarray:
    """How many of each line's bytes ``mask`` marks (differences of a running total)."""
    total = _prefix(mask)
    return total[stops] - total[starts]


def _as_written(found: Rejects, index: np.ndarray, numbers, data, starts, stops) -> Rejects:
    """Rejects of the values-only text :func:`parse_table` hands the number parser (its
    lines ``index`` of the block), with the block's line numbers and each line's own text, as
    written: the dead letters and the log show the line that came, time and all, not the
    stand-in for an empty or quoted value that the parser saw."""
    begin = starts[index]
    return Rejects(numbers[index], found.codes, begin, np.minimum(stops[index], begin + _SNIPPET),
                   data, found.reasons)


def _bulk_rejects(data, starts, stops, numbers, blank, wrong) -> Rejects:
    """Blank lines (no text) and wrong field counts (their first bytes), as columns."""
    chosen = np.flatnonzero(blank | wrong)
    if chosen.size == 0:
        return Rejects.empty()
    codes = np.where(blank[chosen], REASONS.index("blank"), REASONS.index("wrong field count"))
    begin = starts[chosen]
    end = np.where(blank[chosen], begin, np.minimum(stops[chosen], begin + _SNIPPET))
    return Rejects(numbers[chosen], codes, begin, end, data)
