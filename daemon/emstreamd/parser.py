r"""The parser stage: blocks of whole lines in, rows, rejects and line ends out.

The first lines of a stream decide how it is read (its layout): plain numbers, a table with a
header and perhaps a time or key column, or JSON lines.  :class:`BlockParser` decides it, keeps
it (a checkpoint records it, a restart reads on with it), and handles what a followed log's
next file may bring: its header again (skipped), or a header of other columns (its lines
rejected, or read by name).  It parses in the loop's thread or in a back-fill's reader thread
(:mod:`emstreamd.prefetch`), never both.

Example
-------
>>> parser = BlockParser({"format": "numbers", "columns": None, "timestamp": "auto",
...                       "key": None, "day_first": "auto", "fields": None,
...                       "max_line_bytes": 4096})
>>> parsed, ends = parser.parse(b"1.5\n2.5\nabc\n", first=1, n_fields=None)
>>> parsed.rows.ravel().tolist(), ends.tolist(), parser.layout
([1.5, 2.5], [4, 8, 12], False)
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace

import numpy as np

from emstream import checkpoint
from emstream.compressed import MAGIC
from emstream.parse import (_SNIPPET, REASONS, Parsed, Rejects, blank_byte_order_marks,
                            parse_json_lines, parse_lines, wide_encoding)
from emstream.records import (JsonLayout, find_json_layout, first_record_fields,
                              json_document, json_document_command, layout_from_dict, named)
from emstream.table import (LAYOUT_BYTES, Layout, LayoutError, changed_header, find_layout,
                            is_comment, numbered_header, only_missing_words, parse_table,
                            repeats_header, series_columns, settle_layout, unit_columns)

from .columns import parse_with_columns
from .errors import EX_CONFIG, EX_DATAERR, StartError
from .resumed import LAYOUT_SETTINGS, warn_layout_settings

log = logging.getLogger("emstreamd")

_VISIBLE = re.compile(rb"\S")  # what bytes.strip() leaves


def _refuse_json(data: bytes, settings: dict) -> None:
    """Stop at a first block of JSON that the settings would read as rejected rows, every one:
    JSON that is no JSON lines (an array, pretty-printed objects), or JSON lines read as
    numbers (a table whose header is the first record cut at its commas)."""
    head = _head(data)
    jsonl = settings["format"] == "jsonl"
    then = "" if jsonl else " and read it with input.format: jsonl and input.fields"
    if (shape := json_document(head)) is not None:
        raise StartError(f"the input is {shape}, not JSON lines (one object per line): convert "
                         f"it first ({json_document_command(shape)}){then}", EX_CONFIG)
    fields = None if jsonl else first_record_fields(head)
    if fields is not None:
        longest = max(len(line) for line in head.split(b"\n"))
        raise StartError(
            "the input is JSON lines (one object per line): set input.format: jsonl and "
            "input.fields to the fields to read ("
            + (f"numbers in the first record: {named(fields)})" if fields
               else "the first record holds no number)")
            + (f"; its lines are longer than input.max_line_bytes ({settings['max_line_bytes']})"
               if longest > settings["max_line_bytes"] else ""), EX_CONFIG)


# The reason a file's lines are rejected when its header lacks columns the stream learns.
COLUMNS_CHANGED = "columns changed"


def _rejected_block(data: bytes, first: int, n_fields: int | None) -> Parsed:
    """Every line of a block rejected as :data:`COLUMNS_CHANGED` (the file they are in is a
    table of other columns): numbered from ``first``, each with its first bytes for the log
    and the dead letters."""
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10) + 1
    if data and (not ends.size or ends[-1] != len(data)):
        ends = np.append(ends, len(data))
    starts = np.concatenate(([0], ends[:-1]))
    stops = np.minimum(starts + _SNIPPET, np.maximum(ends - 1, starts))
    lines = np.arange(first, first + ends.size)
    rejects = Rejects(lines, np.full(ends.size, len(REASONS), dtype=np.int8), starts, stops,
                      data, (*REASONS, COLUMNS_CHANGED))
    return Parsed(np.empty((0, 1)), np.empty(0, dtype=np.int64), rejects, int(ends.size),
                  n_fields, line_ends=ends)


def _head(data: bytes) -> bytes:
    """The start of a block that ``find_layout`` reads, without splitting a block of a million
    lines: through its third line that is neither blank nor a comment (a title, a header,
    the first data line), and whole lines up to ``LAYOUT_BYTES`` (whose times may say
    whether dates put the day first)."""
    end = counted = 0
    while counted < 3:
        found = _VISIBLE.search(data, end)
        if found is None:
            return data
        end = data.find(b"\n", found.start()) + 1
        if not end:
            return data
        counted += not is_comment(data[found.start():found.start() + 1])
    return data[:max(end, data.rfind(b"\n", 0, LAYOUT_BYTES) + 1)]


def _beyond_comments(data: bytes) -> bool:
    """Whether a block holds a line that is neither blank nor a comment: a live stream's
    first block of comments alone (``# HELP ...``) decides no layout yet."""
    return _first_beyond_comments(data) is not None


def _first_beyond_comments(data: bytes) -> int | None:
    """Where the block's first line that is neither blank nor a comment starts (its first
    visible byte), or None."""
    end = 0
    while (found := _VISIBLE.search(data, end)) is not None:
        if not is_comment(data[found.start():found.start() + 1]):
            return found.start()
        end = data.find(b"\n", found.start()) + 1
        if not end:
            return None
    return None
    return False


def picks_by_index(columns) -> bool:
    """Whether ``input.columns`` picks columns by 0-based index (not by header name)."""
    return bool(columns) and all(isinstance(c, int) for c in columns)


class BlockParser:
    """Parses blocks of whole lines as the stream's first lines decided (see the module).

    Parameters
    ----------
    settings : dict
        The configuration's ``input`` section (validated).
    where : callable ``(line) -> str``
        Where a stream line is in the file being read, for log messages (`` (FILE line N)``).

    Attributes
    ----------
    layout : Layout, JsonLayout, False or None
        A table's or a JSON stream's layout; False: plain numbers; None: not decided yet.
    n_fields : int or None
        Fields per line of plain numbers, once the first line fixed it.
    layout_settings : dict
        The input settings a resumed layout was decided with (a checkpoint records them).
    header_may_repeat : bool
        At the start of a followed stream's next file, whose first line may be the header
        again (a writer that starts each file with it).
    foreign_header : tuple of str or None
        The header of the file being read, if it lacks columns the stream learns from (a log
        rotated into a file of other columns): its lines are rejected until the next file.
    """

    def __init__(self, settings: dict, where=lambda line: ""):
        self.settings = settings
        self.where = where
        self.layout = None
        self.n_fields = None
        self.layout_settings = {}
        self.header_may_repeat = False
        self.foreign_header = None

    def next_file(self) -> None:
        """The next bytes are a new file's (rotated or truncated): its first line may be the
        header again, and its own header decides whether its lines are read."""
        self.header_may_repeat = True
        self.foreign_header = None

    def restore(self, meta: dict, where: str, learned: bool) -> None:
        """Take a checkpoint's layout (``meta["layout"]``) and the settings it was decided
        with; ``learned``: whether the checkpoint's model has learned rows.  Raises
        :class:`~emstream.checkpoint.CheckpointError` for a malformed layout and
        :class:`StartError` for one that another input format made."""
        layout = meta.get("layout")
        settings = self.settings
        if layout is not None:
            try:
                self.layout = False if layout == "plain" else layout_from_dict(layout)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise checkpoint.CheckpointError(f"{where}: bad input layout: {exc}")
            was = "jsonl" if isinstance(self.layout, JsonLayout) else "numbers"
            if was != settings["format"]:  # (read with the other parser: a traceback, or
                # every row rejected)
                raise StartError(f"{where} was made reading input.format: {was}; the "
                                 f"configuration says {settings['format']} (set it back, or "
                                 "start a new checkpoint)", EX_CONFIG)
            if isinstance(self.layout, Layout) and self.layout.names is not None \
                    and "settled" not in layout and not learned:
                # A checkpoint from before layouts were settled, taken after a header alone
                # (nothing learned): its rows settle it now (kept as it was, it rejected them
                # all).
                self.layout = replace(self.layout, settled=False)
            warn_layout_settings(meta, settings)
            saved = (meta.get("config") or {}).get("input")
            if isinstance(saved, dict):  # (what the layout was decided with, kept as it is)
                self.layout_settings = {name: saved[name] for name in LAYOUT_SETTINGS
                                        if name in saved}
        elif settings["format"] == "jsonl" and learned:
            # A JSON stream checkpointed before JSON times were read learned without them.
            self.layout = JsonLayout(tuple(settings["fields"]), None, settings["key"])

    def resume_at(self, next_line: int, offset: int, n_fields: int | None, *,
                  same_input: bool = False) -> None:
        """Read on from a checkpoint: the stream's line ``next_line`` at byte ``offset`` of
        the file (0: its start), with the checkpoint's ``n_fields``; ``same_input``: the
        checkpoint's own input, read on from its position (not a new standard input, nor a
        file read from its start).  Raises :class:`StartError` if ``input.columns`` asks for
        more fields than that."""
        # A new stream numbered from 1 again (stdin): its first line is its own, the header
        # again (skipped as a repeat) or a row (it was skipped as the header: one row lost at
        # every resume).  The checkpoint's own file from its first line (a checkpoint taken
        # while the rows after its header waited) reads its header line as the header again.
        renumbered = next_line == 1 and not same_input and isinstance(self.layout, Layout) \
            and self.layout.names is not None
        if renumbered and self.layout.header_line is not None:
            self.layout = replace(self.layout, header_line=None)
        self.header_may_repeat = (next_line > 1 or renumbered) and offset == 0
        self.n_fields = n_fields
        columns = self.settings["columns"]
        if (n_fields and not self.layout and picks_by_index(columns)
                and max(columns) >= n_fields):
            raise StartError(f"input.columns {columns} needs {max(columns) + 1} fields per "
                             f"line, but the checkpoint's input has {n_fields} (remove the "
                             "checkpoint to start a new model)", EX_CONFIG)

    def state(self) -> dict:
        """What a checkpoint's meta keeps of the parser (``n_fields`` and ``layout``)."""
        return {"n_fields": self.n_fields,
                "layout": (None if self.layout is None else "plain" if self.layout is False
                           else self.layout.to_dict())}

    def parse(self, data: bytes, first: int, n_fields: int | None):
        """Rows of a block of lines, and the byte offset just past each line (in the block)."""
        settings = self.settings
        if self.layout is None and first == 1 and (encoding := wide_encoding(data)):
            # (before anything is learned: every line would be rejected, the input read past)
            raise StartError(f"the input is {encoding} text: convert it to UTF-8 first (iconv "
                             f"-f {encoding[:6]} -t UTF-8)", EX_DATAERR)
        if self.layout is None and first == 1 and (
                packed := next((kind for magic, kind in MAGIC if data.startswith(magic)), None)):
            # A compressed file piped in (stdin: a file given by --input is read decompressed):
            # its bytes were taken for a header, or every line rejected as invalid UTF-8.
            tool = {"gzip": "zcat", "bzip2": "bzcat", "xz": "xzcat"}.get(packed, "zstd -dc")
            raise StartError(f"the input is {packed}-compressed: give the file with --input, "
                             f"or decompress it on the way ({tool} FILE | emstreamd ...)",
                             EX_DATAERR)
        data = blank_byte_order_marks(data)
        if settings["format"] == "jsonl":
            if self.layout is None and data.strip():
                _refuse_json(data, settings)
                try:
                    self.layout = find_json_layout(_head(data), settings["fields"],
                                                   timestamp=settings["timestamp"],
                                                   key=settings["key"],
                                                   day_first=settings["day_first"])
                except LayoutError as exc:
                    raise StartError(f"the input does not fit the configuration: {exc}",
                                     EX_CONFIG) from None
                if self.layout is not None:
                    log.info("input: %s", self.layout.describe())
            layout = self.layout or JsonLayout(tuple(settings["fields"]))
            parsed = parse_json_lines(data, settings["fields"], first_line=first,
                                      max_line_bytes=settings["max_line_bytes"],
                                      key=settings["key"], time=layout.time_field,
                                      day_first=layout.day_first)
        else:
            if self.layout is None and _beyond_comments(data):
                # The first block decides: a table with a header and/or a time column, or
                # plain numbers.
                _refuse_json(data, settings)
                try:
                    self.layout = find_layout(_head(data), columns=settings["columns"],
                                              timestamp=settings["timestamp"],
                                              key=settings["key"], first_line=first,
                                              day_first=settings["day_first"],
                                              max_line_bytes=settings["max_line_bytes"]) or False
                except LayoutError as exc:  # (before anything is learned: nothing to undo)
                    raise StartError(f"the input does not fit the configuration: {exc}",
                                     EX_CONFIG) from None
                self.check_named_columns()
                log.info("input: %s", self.layout.describe() if self.layout
                         else "plain numbers")
                self._warn(data)
            elif self.layout and not self.layout.settled:
                self._settle(data)
                n_fields = self.n_fields
            layout = self.layout
            if layout and self.header_may_repeat:
                layout = self._skip_repeated_header(data, first)
            if self.foreign_header is not None:
                parsed = _rejected_block(data, first, self.n_fields)
            elif layout:
                parsed = parse_table(data, layout, first_line=first,
                                     max_line_bytes=settings["max_line_bytes"])
            elif (n_fields is None and picks_by_index(settings["columns"])
                  and max(settings["columns"])):
                # Lines without every configured column are rejects, not the width.
                parsed = parse_with_columns(data, settings["columns"], first_line=first,
                                            max_line_bytes=settings["max_line_bytes"])
            else:
                parsed = parse_lines(data, n_fields=n_fields, columns=settings["columns"],
                                     first_line=first, max_line_bytes=settings["max_line_bytes"])
        ends = parsed.line_ends
        if ends is None:
            ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10) + 1
            if ends.size < parsed.n_lines:
                ends = np.append(ends, len(data))
        return parsed, ends

    def _settle(self, data: bytes) -> None:
        """A layout found from a header alone is settled by the first data lines (which
        columns hold text, how dates are written: :func:`emstream.table.settle_layout`)."""
        settings = self.settings
        try:
            settled = settle_layout(self.layout, _head(data), columns=settings["columns"],
                                    timestamp=settings["timestamp"], key=settings["key"],
                                    day_first=settings["day_first"])
        except LayoutError as exc:  # (nothing was learned under the header alone)
            raise StartError(f"the input does not fit the configuration: {exc}",
                             EX_CONFIG) from None
        if settled is not self.layout:
            self.layout = settled if settled is not None else False
            if not self.layout:  # (the header's field count is no plain line's)
                self.n_fields = None
                self.check_named_columns()
            log.info("input: %s", settled.describe() if settled else "plain numbers")
            self._warn(data)

    def _warn(self, data: bytes) -> None:
        """Say which columns were left out for holding nothing but N/A-like words so far or
        numbers with a unit, whether the header looks like a data line, and which text columns
        look like the names of several series in one stream."""
        if self.layout and self.settings["columns"] is None:
            names = only_missing_words(_head(data), self.layout)
            if names:
                log.warning("input: %s hold(s) nothing but missing-value words (N/A, NA, null, "
                            "...) in the first lines: left out as text; name the columns to "
                            "learn in input.columns", ", ".join(names))
        if isinstance(self.layout, Layout) and self.settings["columns"] is None:
            numbers = numbered_header(_head(data), self.layout)
            if numbers:
                log.warning("input: the header (line %d) names column(s) %s, the very "
                            "number(s) the next line holds there: a data line? If so (a report "
                            "piped in), give the stream a header line or pick its numbers "
                            "(awk '{print $3}')", self.layout.header_line,
                            named(numbers))
            for name, example in unit_columns(_head(data), self.layout):
                log.warning("input: column %r holds numbers with a unit (%r): left out as "
                            "text; write them without the unit (nvidia-smi: --format=csv,"
                            "nounits)", name, example)
        if self.layout:
            for name, count in series_columns(_head(data), self.layout):
                log.warning("input: column %r holds text, %d different values in the first "
                            "lines: several series in one stream? They are learned as one; "
                            "input.key: %s gives each its own model", name, count, name)

    def check_named_columns(self) -> None:
        """Plain numbers have no header: ``input.columns`` may not name columns."""
        if self.layout is False and any(isinstance(c, str)
                                        for c in self.settings["columns"] or ()):
            raise StartError("the input does not fit the configuration: input.columns names "
                             "columns, but the input has no header line", EX_CONFIG)

    def _skip_repeated_header(self, data: bytes, first: int):
        """The layout to parse this block with, the first of a new file: if its first
        line that is neither blank nor a comment repeats the header, that line is skipped as
        the header is (it was rejected as non-numeric once per rotation); a header of other
        columns is read by name.  Comment lines above it are rejected, as any line that is
        no row (one taken for "the first line" hid a reordered header below it, and the rows
        were learned with their columns swapped).  For this block only: the layout the
        checkpoint keeps names the stream's own header line (kept, the line number of a
        rotated file's header skipped a data row of any input read later from its start)."""
        start = _first_beyond_comments(data)
        if start is None:
            return self.layout  # (blank or comment lines alone yet: the next block decides)
        self.header_may_repeat = False
        end = data.find(b"\n", start)
        line = data[start:end if end >= 0 else len(data)]
        at = first + data.count(b"\n", 0, start)
        if repeats_header(line, self.layout):
            return replace(self.layout, header_line=at)
        changed = changed_header(line, self.layout)
        if changed is None:
            return self.layout
        if changed.layout is None:
            self.foreign_header = changed.names
            log.error("input: line %d%s is a header of other columns (%s), without %s, which "
                      "this stream learns: the file's lines are rejected (%s); a new checkpoint "
                      "starts a model on its columns", at, self.where(at),
                      ", ".join(changed.names), ", ".join(map(repr, changed.missing)),
                      COLUMNS_CHANGED)
            return self.layout
        log.warning("input: line %d%s is a header of other columns (%s): the stream's "
                    "columns are taken from it by name", at, self.where(at),
                    ", ".join(changed.names))
        # The checkpoint keeps the stream's own header line (see above).
        self.layout = replace(changed.layout, header_line=self.layout.header_line)
        log.info("input: %s", self.layout.describe())
        return replace(changed.layout, header_line=at)

    def row_width(self) -> int | None:
        """Numbers per row the input gives, as far as its layout and settings say (None: not
        known yet)."""
        settings = self.settings
        if self.layout:  # a table or JSON lines
            return len(self.layout.value_fields)
        if settings["format"] == "jsonl" and settings["fields"]:
            return len(settings["fields"])
        columns = settings["columns"]
        return len(columns) if isinstance(columns, list) and columns else self.n_fields
