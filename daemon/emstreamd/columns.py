"""``input.columns`` before the width is known: a line without every configured column is a
reject, not the line that fixes the width.

:func:`emstream.parse.parse_lines` takes the first valid line's field count as the width and
then selects the columns; a first valid line narrower than the columns need (``5`` before
``1,2,3`` with ``columns: [0, 2]``) would make the width too small for the columns.  Here such
lines are rejected ("wrong field count") and the first valid line that has every configured
column fixes the width.  Only the blocks read before the width is known come here.
"""

from __future__ import annotations

import numpy as np

from emstream.parse import REASONS, Parsed, Rejects, parse_lines

# The parser's field separators (emstream.parse): whitespace and commas; a newline ends a line.
_SEPARATOR = np.zeros(256, dtype=bool)
_SEPARATOR[np.frombuffer(b" \t\r,\n", dtype=np.uint8)] = True
_SNIPPET = 60  # bytes of a rejected line kept for the log, as the parser keeps
_WRONG_COUNT = REASONS.index("wrong field count")


def _line_spans(raw: np.ndarray):
    """Start of each line, end (newline excluded) and field count, for a block's bytes."""
    ends = np.flatnonzero(raw == 10)
    if ends.size == 0 or ends[-1] != raw.size - 1:  # a last line without its newline
        ends = np.append(ends, raw.size)
    starts = np.concatenate(([0], ends[:-1] + 1))
    token = ~_SEPARATOR[raw]
    field_starts = token.copy()
    field_starts[1:] &= ~token[:-1]
    fields = np.add.reduceat(np.append(field_starts, False).astype(np.int32), starts)
    return starts, ends, fields


def _select(parsed: Parsed, columns: list) -> np.ndarray:
    if parsed.n_fields is None:
        return np.empty((0, len(columns)))
    return np.ascontiguousarray(parsed.rows[:, columns])


def parse_with_columns(data: bytes, columns, *, first_line: int,
                       max_line_bytes: int) -> Parsed:
    """:func:`~emstream.parse.parse_lines` of a block read before the width is known.

    Parameters
    ----------
    data : bytes
        Whole lines.
    columns : sequence of int
        0-based fields to keep (``input.columns``).
    first_line : int
        Number of the block's first line.
    max_line_bytes : int

    Returns
    -------
    Parsed
        ``n_fields`` is None while no valid line with every column has been seen.
    """
    columns = list(columns)
    need = max(columns) + 1
    parsed = parse_lines(data, first_line=first_line, max_line_bytes=max_line_bytes)
    if parsed.n_fields is None or parsed.n_fields >= need:  # the usual case: one parse
        return Parsed(_select(parsed, columns), parsed.lines, parsed.rejects, parsed.n_lines,
                      parsed.n_fields, parsed.line_ends)
    # The first valid line is too narrow.  Find the first valid one among the lines with
    # enough fields: parsed together (in one call, whatever their number), the first row of
    # those is it, and its width is the input's.
    raw = np.frombuffer(data, dtype=np.uint8)
    starts, ends, fields = _line_spans(raw)
    wide = np.flatnonzero(fields >= need)
    keep = np.repeat(fields >= need, np.minimum(ends + 1, raw.size) - starts)
    probe = parse_lines(raw[keep].tobytes(), first_line=0, max_line_bytes=max_line_bytes)
    cut = int(wide[probe.lines[0]]) if probe.lines.size else parsed.n_lines
    # Before the cut: every valid line lacks a column.
    narrow = parsed.lines[parsed.lines < first_line + cut] - first_line
    narrow_starts = starts[narrow]
    narrow = Rejects(first_line + narrow, np.full(narrow.size, _WRONG_COUNT),
                     narrow_starts, np.minimum(ends[narrow], narrow_starts + _SNIPPET), data)
    # Other lines before the cut keep their reasons: a narrow one's from the whole block, a
    # wide one's from the probe (judged by its own width: "nan nan nan" is non-finite).
    ours = Rejects.of(parsed.rejects)
    ours = ours.take((ours.lines < first_line + cut) & (fields[ours.lines - first_line] < need))
    theirs = Rejects.of(probe.rejects)
    theirs = theirs.take(wide[theirs.lines] < cut)
    theirs = theirs.renumbered(first_line + wide[theirs.lines])
    rejects = Rejects.concat([ours, theirs, narrow])
    rejects = rejects.take(np.argsort(rejects.lines, kind="stable"))
    if cut == parsed.n_lines:
        return Parsed(np.empty((0, len(columns))), np.empty(0, dtype=np.int64), rejects,
                      parsed.n_lines, None)
    rest = parse_lines(data[starts[cut]:], n_fields=probe.n_fields, columns=columns,
                       first_line=first_line + cut, max_line_bytes=max_line_bytes)
    return Parsed(rest.rows, rest.lines, Rejects.concat([rejects, rest.rejects]),
                  parsed.n_lines, probe.n_fields)
