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
from .table import day_order
from .timestamps import looks_like_time

# Field names taken for the time under timestamp "auto", in this order.
TIME_FIELDS = ("timestamp", "@timestamp", "time", "ts", "datetime", "date")
# A number in a time field counts as epoch seconds or milliseconds only between these
# (1973 in seconds to 2286 in milliseconds).
_EPOCH_RANGE = (1e8, 1e13)


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
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return _EPOCH_RANGE[0] <= abs(value) <= _EPOCH_RANGE[1]
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
    if timestamp == "auto" and not records:
        return None  # (junk so far: the first record decides)
    time_field = timestamp if timestamp not in ("auto", None) else None
    if timestamp == "auto" and records:
        first = records[0]
        # At the top, else beside the values (an Elasticsearch hit's "_source.@timestamp"
        # next to its "_source.system.cpu.pct": no time was found, and nothing said so).
        roots = [""] + sorted({f.split(".")[0] + "." for f in fields if "." in f})
        time_field = next((root + name for root in roots for name in TIME_FIELDS
                           if root + name not in fields
                           and _is_time(field_of(first, root + name))), None)
    dates = None
    if time_field is not None:
        stamps = [json_time_text(field_of(r, time_field)) for r in records]
        dates = day_order([s for s in stamps if s is not None], day_first)
    return JsonLayout(tuple(fields), time_field, key, dates)


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
                and not (name in TIME_FIELDS and _is_time(value)):
            names.append(name)
    return names


def first_record_fields(head: bytes) -> list | None:
    """If the first non-blank line of ``head`` is a JSON object, its :func:`numeric_fields`;
    else None.  Read as a table, such a line is a header of nonsense names and every record a
    rejected row, so the readers of tables say what the input is instead.

    >>> first_record_fields(b'\\n{"t": "2024-01-01T00:00:00Z", "v": "12.5"}\\n')
    ['v']
    >>> first_record_fields(b"t,v\\n") is None
    True
    """
    line = next((line for line in head.split(b"\n") if line.strip()), b"")
    if line.lstrip()[:1] != b"{":
        return None
    record = next(_records(line), None)
    return None if record is None else numeric_fields(record)


def layout_from_dict(data: dict):
    """A checkpoint's input layout: a table's :class:`~emstream.table.Layout` or a JSON
    stream's :class:`JsonLayout` (``"format": "jsonl"``)."""
    from .table import Layout

    if data.get("format") == "jsonl":
        return JsonLayout.from_dict(data)
    return Layout.from_dict(data)
