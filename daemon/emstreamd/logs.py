"""How the daemon writes to stderr: text lines, text for journald, or one JSON object a line.

Under systemd's journal (``JOURNAL_STREAM`` names stderr) the journal adds its own time and
name, so text lines drop them and start with a ``<N>`` priority prefix, which the journal reads
as the line's level.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

from emstream.terminal import printable

FORMATS = ("text", "json")
TEXT = "%(asctime)s emstreamd %(levelname)s %(message)s"
JOURNAL = "<%(priority)d>%(levelname)s %(message)s"
PRIORITY = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}
# A LogRecord's own attributes; anything else on a record came from ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime",
                                                                         "priority"}
_style = "text"


def under_journald(stream=None) -> bool:
    """True if ``stream`` (stderr) is the journal's stream, as systemd says in JOURNAL_STREAM
    ("device:inode"); a child whose stderr was redirected elsewhere inherits the variable."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in expected.split(":"))
        info = os.fstat((stream or sys.stderr).fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (info.st_dev, info.st_ino) == (device, inode)


class _TextFormatter(logging.Formatter):
    def formatMessage(self, record):
        # A record's message is one line (a newline in a file name or a key forged the next
        # log line); a traceback after it keeps its lines.
        return printable(super().formatMessage(record), one_line=True)

    def format(self, record):
        return printable(super().format(record))


class _Priority(logging.Filter):
    def filter(self, record):
        record.priority = PRIORITY.get(record.levelname, 6)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, message, and the extra fields."""

    def format(self, record):
        entry = {"time": _utc(record.created), "level": record.levelname,
                 "message": record.getMessage()}
        entry.update((k, v) for k, v in vars(record).items() if k not in _STANDARD)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + \
        f".{int(seconds % 1 * 1000):03d}Z"


# The loggers whose records are the daemon's own (the library's among them).
OWN_LOGGERS = ("emstreamd", "emstream", "root")


class _OwnOrWarning(logging.Filter):
    """Other libraries' records only from WARNING up: dask's scheduler and workers (of
    ``refit.scheduler``) logged some thirty INFO lines per cluster started or stopped, in the
    daemon's name, whatever level their loggers were set to (dask sets its own on import).
    At DEBUG everything goes through."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or \
            record.name.split(".", 1)[0] in OWN_LOGGERS


def setup(level: str = "INFO", style: str = "text", stream=None) -> None:
    """Send the daemon's log records to ``stream`` (stderr) in ``style``: text or json."""
    global _style
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    if style == "json":
        handler.setFormatter(JsonFormatter())
        _style = "json"
    elif under_journald(stream):
        handler.addFilter(_Priority())
        handler.setFormatter(_TextFormatter(JOURNAL))
        _style = "journal"
    else:
        handler.setFormatter(_TextFormatter(TEXT))
        _style = "text"
    if level != "DEBUG":
        handler.addFilter(_OwnOrWarning())
    logging.basicConfig(level=level, handlers=[handler], force=True)


def fatal(message: str, **fields) -> None:
    """The one line that says why the daemon stops (a configuration error, ...)."""
    message = printable(" ".join(message.split("\n")))
    if _style == "json":
        entry = {"time": _utc(time.time()), "level": "ERROR", "message": message, **fields}
        line = json.dumps(entry, default=str)
    else:
        line = ("<3>" if _style == "journal" else "") + f"emstreamd: {message}"
    _to_stderr(line)


def report(text: str, **fields) -> None:
    """A report at exit: ``text`` as is, or for json one object with ``fields``."""
    if _style == "json":
        _to_stderr(json.dumps({"time": _utc(time.time()), "level": "INFO", **fields},
                              default=str))
    else:
        _to_stderr(printable(text))


def _to_stderr(line: str) -> None:
    """Print a line to stderr, if it can be written: a full disk under it, or a pipe whose
    reader has gone (journald restarted), turned every exit code into 1 (a configuration
    error's 78 too, which the shipped unit does not restart on)."""
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError, AttributeError):  # (ValueError: closed; None: no stderr)
        pass
