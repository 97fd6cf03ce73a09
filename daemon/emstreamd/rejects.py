"""The rejects stage: lines the parser could not read as rows, counted, logged and kept.

A rejected line is never lost in silence: it is counted by reason (the daemon's counters and
metrics), the first ones and one in :data:`LOG_REJECT_EVERY` after are logged with where they
are, each may be appended to ``input.dead_letter`` as a JSON line (:class:`DeadLetters`),
and those read after the last applied row wait in :class:`PendingRejects`, so that a
checkpoint's position and counters stay before them until the rows around them are learned.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from emstream.parse import Rejects

from .errors import EX_CANTCREAT, StartError
from .sinks import say_if_waiting_for_a_reader

log = logging.getLogger("emstreamd")

# Rejected lines logged: the first ones, then one in so many (counted over the daemon's life).
LOGGED_REJECTS = 20
LOG_REJECT_EVERY = 1000
# Rejected lines, none read as a row before them, after which the log says the input is not
# what the configuration reads (ping's, sysstat's or top's reports piped in: every line was
# rejected and nothing said so but the lines themselves).
NOTHING_READ_LINES = 100
NOTHING_READ_HINTS = {
    "non-numeric": "lines of words and numbers (a tool's report) need their numbers picked "
                   "(awk '{print $3, $5}') or a header line naming the columns (input.columns "
                   "picks some); JSON lines need input.format: jsonl",
    "wrong field count": "the lines do not have as many fields as the first line fixed "
                         "(input.columns picks fields by place)",
    "bad timestamp": "the time column holds what it cannot read as times (input.timestamp "
                     "names the column, null reads none; input.day_first)",
    "too long": "the lines are longer than input.max_line_bytes",
    "missing field": "the records lack a field of input.fields (or input.timestamp, input.key)",
    "invalid json": "the lines are no JSON objects",
    "bad key": "the key column holds no keys (input.key)",
    "decimal comma": "the values have a decimal comma (3,25), which only a semicolon-separated "
                     "table is read with: convert them (tr , .) or write the table with ';'",
}


class PendingRejects:
    """The rejected lines read after the last applied row: their numbers and reasons, kept as
    the parser's arrays (a flood of them costs a few bytes a line, not an object a line).

    A checkpoint's position stays before the first of them while a row read before them is
    unapplied, and its counters leave them out."""

    def __init__(self):
        self._parts = []  # (lines, codes, reasons) of successive blocks, lines increasing

    def add(self, rejects: Rejects) -> None:
        if len(rejects):  # (not the Rejects themselves: they hold on to their block's bytes)
            self._parts.append((rejects.lines, rejects.codes, rejects.reasons))

    def __bool__(self) -> bool:
        return bool(self._parts)

    def first_line(self) -> int:
        return int(self._parts[0][0][0])

    def drop_through(self, line: int) -> None:
        """Forget the rejects up to and including ``line`` (now behind the position)."""
        kept = []
        for lines, codes, reasons in self._parts:
            if lines[-1] > line:
                start = int(np.searchsorted(lines, line, side="right"))
                kept.append((lines[start:], codes[start:], reasons))
        self._parts = kept

    def counts(self) -> dict:
        """Rejects by reason."""
        total = {}
        for _, codes, reasons in self._parts:
            for code, n in enumerate(np.bincount(codes).tolist()):
                if n:
                    total[reasons[code]] = total.get(reasons[code], 0) + n
        return total


class DeadLetters:
    """``input.dead_letter``: each rejected line appended as one JSON line (its number, reason
    and first bytes).  Several daemons may share the file: a restart writes the letters of the
    lines it reads again once more (at least once, never lost)."""

    def __init__(self, path: str):
        self.path = path
        say_if_waiting_for_a_reader("input.dead_letter", path)
        try:
            self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                              0o644)
        except OSError as exc:
            raise StartError(f"input.dead_letter: cannot open {path}: {exc.strerror}",
                             EX_CANTCREAT) from None

    def write(self, rejects: Rejects) -> tuple[int, OSError | None]:
        """Append a block's rejects in one write (more if the kernel takes less): how many
        were written, and the error that stopped the rest (a full disk), if any.  The record
        an error cut short is removed, so the file holds whole lines only."""
        blob, ends = rejects.to_json_lines()
        blob = memoryview(blob)
        written = 0
        size = os.fstat(self.fd).st_size
        try:
            while written < len(blob):
                written += os.write(self.fd, blob[written:])
        except OSError as exc:
            whole = int(np.searchsorted(ends, written, side="right"))
            try:
                os.ftruncate(self.fd, size + (int(ends[whole - 1]) if whole else 0))
            except OSError:
                pass
            return whole, exc
        return len(rejects), None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def log_rejects(rejects: Rejects, before: int, where) -> None:
    """Log the first :data:`LOGGED_REJECTS` rejects of the daemon's life and every
    :data:`LOG_REJECT_EVERY`-th after (``before``: rejected so far; ``where(line)``: the
    file and line a stream line is)."""
    first = range(min(len(rejects), max(0, LOGGED_REJECTS - before)))
    every = range(-(before + 1) % LOG_REJECT_EVERY, len(rejects), LOG_REJECT_EVERY)
    for i in sorted(set(first).union(every)):
        reject = rejects[i]
        log.warning("line %d%s rejected (%s): %r [%d rejected so far]", reject.line,
                    where(reject.line), reject.reason, reject.text, before + i + 1)


def say_if_nothing_read(run: dict, before: int, rows_read: int) -> None:
    """Say once that the input is not what the configuration reads, when this run's first
    :data:`NOTHING_READ_LINES` lines were all rejected (``run``: this run's rejects by reason,
    blank lines aside; ``before``: their total before this block)."""
    total = sum(run.values())
    if before < NOTHING_READ_LINES <= total and not rows_read:
        # (this run's lines: resumed on a file of another width, every line was rejected
        # and the input marked as read without a word, the model's earlier rows hiding it)
        reason = max(run, key=run.get)
        said = ", ".join(f"{n} {r}" for r, n in sorted(run.items(), key=lambda item: -item[1]))
        log.warning("none of the first %d lines was read as a row (%s): the input is not "
                    "what the configuration reads: %s", total, said,
                    NOTHING_READ_HINTS.get(reason, "see the rejected lines above"))
