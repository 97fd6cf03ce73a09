"""JSON lines as a time series: which field holds each record's time.

A JSON stream's rows are its numeric ``fields`` (:func:`emstream.parse.parse_json_lines`);
its time is the field ``timestamp`` names, or with ``"auto"`` the first of
:data:`TIME_FIELDS` that the stream's first record holds as a time (text that
:mod:`emstream.timestamps` reads, or a number that is plausibly epoch seconds or milliseconds:
a ``time`` of 0.25 is a duration, not a date).  :func:`find_json_layout` decides once, from
the first records, and the decision (a :class:`JsonLayout`) is kept with the checkpoint, as a
table's :class:`~emstream.table.Layout` is.

Example
-------
>>> from emstream.records import find_json_layout
>>> layout = find_json_layout(b'{"@timestamp": "2014-07-01T00:30:00Z", "cpu": 0.5}\\n', ["cpu"])
>>> layout.time_field, layout.describe()
('@timestamp', 'JSON lines; values: cpu; time: @timestamp')
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from .parse import _unquoted, field_of, json_time_text
from .table import TIME_NAMES as TABLE_TIME_NAMES
from .table import _EPOCH_NUMBER, LayoutError, _ordered, day_order
from .timestamps import looks_like_time, parse_times

# Field names taken for the time under timestamp "auto", in this order ...
TIME_FIELDS = ("timestamp", "@timestamp", "time", "ts", "datetime", "date")
# ... else these, whatever their case, in the record's order: a table's time column names, and
# the time fields of common tools' records: Home Assistant's (last_changed; its recorder's
# last_updated_ts), Zabbix's clock, Serilog's @t, python-json-logger's asctime, nginx's
# time_local and time_iso8601, Azure's TimeGenerated and CloudTrail's eventTime.
TIME_NAMES = frozenset(TABLE_TIME_NAMES) | {
    "t", "@t", "clock", "asctime", "time_local", "time_iso8601", "timegenerated", "eventtime",
    "event_time", "last_changed", "last_updated", "last_changed_ts", "last_updated_ts"}
# A number in a time field counts as an epoch time only if it is, in seconds, between these
# (1973 to 2286, whatever unit it is written in).
_EPOCH_RANGE = (1e8, 1e10)


@dataclass(frozen=True)
class JsonLayout:
    """What a JSON stream's records hold.

    Attributes
    ----------
    value_fields : tuple of str
        The fields that make a row (``input.fields``).
    time_field : str or None
        The field holding each record's time; None: the stream has no time.
    key_field : str or None
        The field naming each record's series (``input.key``).
    day_first : bool or None
        The order of day and month in times written ``07/01/2014``.
    """

    value_fields: tuple
    time_field: str | None = None
    key_field: str | None = None
    day_first: bool | None = None

    def __post_init__(self):
        if self.day_first is not None and not isinstance(self.day_first, bool):
            raise ValueError(f"day_first must be true, false or null, got {self.day_first!r}")
        if self.time_field is not None and not isinstance(self.time_field, str):
            raise ValueError(f"time_field must be a field name, got {self.time_field!r}")
        if self.key_field is not None and not isinstance(self.key_field, str):
            raise ValueError(f"key_field must be a field name, got {self.key_field!r}")
        if not self.value_fields or not all(isinstance(f, str) for f in self.value_fields):
            raise ValueError(f"value_fields must be one or more field names, got "
                             f"{self.value_fields!r}")

    def to_dict(self) -> dict:
        return {"format": "jsonl", **{k: list(v) if isinstance(v, tuple) else v
                                      for k, v in asdict(self).items()}}

    @classmethod
    def from_dict(cls, data: dict) -> JsonLayout:
        return cls(value_fields=tuple(str(f) for f in data["value_fields"]),
                   time_field=data.get("time_field"), key_field=data.get("key_field"),
                   day_first=data.get("day_first"))

    def column_names(self) -> list:
        return list(self.value_fields)

    def describe(self) -> str:
        """One line for people: ``JSON lines; values: cpu; time: @timestamp``."""
        return (f"JSON lines; values: {', '.join(self.value_fields)}"
                + (f"; time: {self.time_field}" if self.time_field is not None else "")
                + ("" if self.day_first is None
                   else "; dates day first" if self.day_first else "; dates month first")
                + (f"; key: {self.key_field}" if self.key_field is not None else ""))


def _is_time(value) -> bool:
    """Whether a time field's value is a time: written (ISO 8601, a spreadsheet's), or an epoch
    number, bare or quoted, in seconds, ms, µs or ns (as the parser tells them apart) from 1973
    on (a ``time`` of 0.25 is a duration)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)) or isinstance(value, str) and _EPOCH_NUMBER.fullmatch(
            value.strip().encode("utf-8", "surrogatepass")):
        text = json_time_text(value)
        if text is None:
            return False
        return bool(_EPOCH_RANGE[0] <= parse_times([text])[0] <= _EPOCH_RANGE[1])
    return isinstance(value, str) and looks_like_time(value.encode("utf-8", "surrogatepass"))


def _records(data: bytes):
    for line in data.split(b"\n"):
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(record, dict):
            yield record


def find_json_layout(data: bytes, fields, *, timestamp="auto", key=None,
                     day_first="auto") -> JsonLayout | None:
    """The layout of a JSON stream whose first lines are ``data``, or None while they hold no
    JSON object to find the time field in.

    Parameters
    ----------
    data : bytes
        The stream's first lines.
    fields : sequence of str
        The numeric fields that make a row.
    timestamp : "auto", str or None
        The time field; "auto": the first of :data:`TIME_FIELDS` that the first record
        holds as a time (and is not one of ``fields``); None: no time.
    key : str, optional
        The field naming each record's series.
    day_first : "auto" or bool
        As :func:`emstream.table.find_layout` takes it.

    Raises
    ------
    LayoutError
        The times are written ``07/01/2014`` and nothing says whether the day comes first.
    """
    records = list(_records(data))
    if shape := json_document(data):
        raise LayoutError(f"the input is {shape}, not JSON lines (one object per line): "
                          f"convert it first ({json_document_command(shape)})")
    if timestamp == "auto" and not records:
        return None  # (junk so far: the first record decides)
    time_field = timestamp if timestamp not in ("auto", None) else None
    if timestamp == "auto" and records:
        # (the key names a series, never its time: a key field named "date" was taken for the
        # time too, and all of a key's rows shared one)
        time_field = _time_field(records, fields, exclude=() if key is None else (key,))
    dates = None
    if time_field is not None:
        stamps = [json_time_text(field_of(r, time_field)) for r in records]
        dates = day_order([s for s in stamps if s is not None], day_first)
    return JsonLayout(tuple(fields), time_field, key, dates)


def _time_field(records: list, fields, exclude=()) -> str | None:
    """The time field of records whose first ones are ``records`` (see ``find_json_layout``),
    never one of ``exclude`` (the key: it names a series, not its time).

    At the top, else beside the values (an Elasticsearch hit's ``_source.@timestamp`` next to
    its ``_source.system.cpu.pct``), the first that the first record holds a time in: one of
    :data:`TIME_FIELDS`, in their order; else, in the record's order, a name of
    :data:`TIME_NAMES` whatever its case (CloudWatch's ``Timestamp``, InfluxDB's ``_time``,
    Zabbix's ``clock``, Home Assistant's ``last_changed``) whose times need no order of day and
    month or tell it (a field found so must not stop a stream that ran without it).  By name
    only: a field taken for the time rejects every later record without one, so what merely
    looks like times (an account's ``last_login``, a login's ``expires``) or runs one way (a
    counter) is left alone."""
    first = records[0]
    roots = [""] + sorted({f.split(".")[0] + "." for f in fields if "." in f})
    found = next((root + name for root in roots for name in TIME_FIELDS
                  if root + name not in fields and root + name not in exclude
                  and _is_time(field_of(first, root + name))), None)
    for root in roots if found is None else ():
        inner = first if not root else field_of(first, root[:-1])
        if type(inner) is not dict:
            continue
        for name in inner:
            if root + name in fields or root + name in exclude \
                    or name.lower() not in TIME_NAMES or not _is_time(inner[name]):
                continue
            stamps = [json_time_text(field_of(record, root + name)) for record in records]
            if _ordered([stamp for stamp in stamps if stamp is not None]):
                return root + name
    return found


def numeric_fields(record: dict, *, depth: int = 3) -> list:
    """The fields of a JSON record that hold a number (or a string holding one, as
    :func:`emstream.parse.parse_json_lines` reads it), nested ones by their dotted names (up to
    ``depth`` levels), times left out: what ``input.fields`` could name.

    >>> numeric_fields({"time": 1404174600, "host": "a", "cpu": "0.5", "mem": {"used": 3}})
    ['cpu', 'mem.used']
    """
    names = []
    for name, value in record.items():
        if type(value) is dict:
            if depth > 1:
                names += [f"{name}.{inner}" for inner in numeric_fields(value, depth=depth - 1)]
        elif (type(value) in (int, float) or type(value) is str and _unquoted([value])[1] is None) \
                and not (name.lower() in TIME_NAMES and _is_time(value)):
            names.append(name)
    return names


def json_document(head: bytes) -> str | None:
    """What JSON that is not JSON lines ``head`` starts: "a JSON array" (``[``, ``[{``, as
    exports and APIs write a list of records), "a JSON object over several lines" (pretty
    printed: a line ``{`` alone), or None.  Read line by line, every line of either is a
    rejected row (a record on a line of its own, the array's last, was learned alone).

    >>> json_document(b'[{"v": 1},\\n{"v": 2}]\\n'), json_document(b'{\\n  "v": 1\\n}\\n')
    ('a JSON array', 'a JSON object over several lines')
    >>> json_document(b'{"v": 1}\\n') is None, json_document(b"1.5,2\\n") is None
    (True, True)
    """
    line = next((line for line in head.split(b"\n") if line.strip()), b"").strip()
    if line == b"[" or line[:1] == b"[" and line[1:].lstrip()[:1] == b"{":
        return "a JSON array"
    return "a JSON object over several lines" if line == b"{" else None


def named(fields: list, most: int = 10) -> str:
    """Field names for a message, at most ``most`` of them (a record of 2,000 numbers made one
    line of 25 KB).

    >>> named(["a", "b", "c"], most=2)
    'a, b and 1 more'
    """
    return ", ".join(fields[:most]) + (f" and {len(fields) - most} more"
                                       if len(fields) > most else "")


def json_document_command(shape: str) -> str:
    """The command that turns :func:`json_document`'s ``shape`` into JSON lines."""
    return "jq -c '.[]'" if shape == "a JSON array" else "jq -c ."


def first_record_fields(head: bytes) -> list | None:
    """If the first non-blank line of ``head`` is a JSON object, its :func:`numeric_fields`;
    else None.  Read as a table, such a line is a header of nonsense names and every record a
    rejected row, so the readers of tables say what the input is instead.

    >>> first_record_fields(b'\\n{"t": "2024-01-01T00:00:00Z", "v": "12.5"}\\n')
    ['v']
    >>> first_record_fields(b"t,v\\n") is None, first_record_fields(b'{"v": 1}\\nt,v\\n') is None
    (True, True)
    """
    lines = [line for line in head.split(b"\n") if line.strip()][:2]
    if not lines or lines[0].lstrip()[:1] != b"{":
        return None
    # (two objects, or one alone so far: a table under a line of JSON metadata is no JSON lines)
    records = [next(_records(line), None) for line in lines]
    return None if None in records else numeric_fields(records[0])


def layout_from_dict(data: dict):
    """A checkpoint's input layout: a table's :class:`~emstream.table.Layout` or a JSON
    stream's :class:`JsonLayout` (``"format": "jsonl"``)."""
    from .table import Layout

    if data.get("format") == "jsonl":
        return JsonLayout.from_dict(data)
    return Layout.from_dict(data)
