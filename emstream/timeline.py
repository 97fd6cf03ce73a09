"""A picture of a monitored series: its values with the alerts marked, and the score below.

``emstream timeline DATA SCORES -o picture.png`` reads the series (a time-series CSV, or plain
numbers) and emstreamd's per-point output for it (csv or jsonl, with or without a header), and
draws the values over time (line number without timestamps) with each alert (``anomaly``)
marked, and under them the score on a scale that spreads its top end: ``-log10(1 - score)``
(3 is a score of 0.999, 4 of 0.9999), with the threshold drawn.  Needs matplotlib
(``pip install 'emstream[plot]'``).
"""

from __future__ import annotations

import csv
import json
import math

import numpy as np

from .compressed import DataFile
from .episodes import DEFAULT_THRESHOLD
from .table import of_key, parse_stream


# Line numbers are counted in 64 bits (a larger one raised OverflowError, as a traceback).
_MAX_LINE = 2**63


def read_scores(path, key: str | None = None, timed: bool | None = None) -> dict:
    """emstreamd's per-point output as arrays: ``line``, ``score``, ``anomaly`` (n,); with
    ``key``, only that key's lines of a keyed daemon's output (its second field, or ``key``).
    ``timed`` says whether the series has a time column, if known: a csv line's fields are then
    counted exactly (without it, a keyed line and a timed one both have seven)."""
    lines, scores, flags = [], [], []
    keys = set()
    with open(path, "rb") as handle:
        for raw in handle:
            raw = raw.strip()
            if not raw or raw.startswith(b"line"):
                continue
            if raw.startswith(b"{"):
                try:
                    record = json.loads(raw)
                    if "key" in record:
                        keys.add(str(record["key"]))
                        if key is not None and str(record["key"]) != key:
                            continue
                    line, score = record["line"], record["score"]
                    if type(line) is not int or not 0 < line < _MAX_LINE \
                            or type(score) not in (int, float) or not 0.0 <= score <= 1.0 \
                            or type(record.get("anomaly", False)) is not bool:
                        raise TypeError
                except (ValueError, TypeError, KeyError, AttributeError):
                    raise ValueError(f"{path}: not emstreamd's per-point output (a JSON line "
                                     "with line, score in [0, 1] and anomaly): "
                                     f"{raw[:80]!r}") from None
                lines.append(line)
                scores.append(float(score))
                flags.append(record.get("anomaly", False))
                continue
            if b'"' in raw:  # (a quoted key: a comma or quotes in it)
                text = raw.decode("utf-8", "replace")
                try:
                    fields = [field.encode("utf-8") for field in next(csv.reader([text]))]
                except csv.Error:  # (a CR inside a field: no line emstreamd writes)
                    raise ValueError(f"{path}: not emstreamd's per-point output: "
                                     f"{raw[:80]!r}") from None
            else:
                fields = raw.split(b",")
            base = 6 if key is None else 7
            counts = (base, base + 1) if timed is None else (base + bool(timed),)
            if len(fields) not in counts:
                extra = (" (the lines of a keyed emstreamd? name the series with --key)"
                         if key is None and len(fields) == base + 1 + bool(timed) else "")
                raise ValueError(f"{path}: not emstreamd's per-point output for this series "
                                 f"(line, {'key, ' if key is not None else ''}"
                                 f"{'time, ' if timed else '[time,] ' if timed is None else ''}"
                                 f"label, probability, surprise, score, anomaly){extra}: "
                                 f"{raw[:80]!r}")
            if key is not None and fields[1].decode("utf-8", "replace") != key:
                continue
            try:
                line, score = int(fields[0]), float(fields[-2])
            except ValueError:
                line, score = None, math.nan
            if line is None or not 0 < line < _MAX_LINE or not 0.0 <= score <= 1.0:
                raise ValueError(f"{path}: not emstreamd's per-point output (a line number, "
                                 f"and a score in [0, 1]): {raw[:80]!r}")
            lines.append(line)
            scores.append(score)
            flags.append(fields[-1] == b"1")
    if key is None and len(keys) > 1:
        raise ValueError(f"{path}: the per-point lines of {len(keys)} keys (a keyed "
                         "emstreamd): name one with --key")
    if not lines:
        raise ValueError(f"{path}: no per-point lines"
                         f"{f' of key {key!r}' if key is not None else ''}")
    return {"line": np.array(lines, dtype=np.int64), "score": np.array(scores),
            "anomaly": np.array(flags, dtype=bool)}


def read_series(path, key: str | None = None, key_column=0, day_first="auto",
                column=None) -> dict:
    """A series file's rows: ``line`` (n,), ``value`` (n,) (``column``, a 0-based index or a
    header name, or for JSON lines a field; by default the first value column), ``time``
    (n,) (datetime64, or None without a time column); with ``key``, only the rows whose
    ``key_column`` (0-based index or header name; a field of JSON lines) holds it."""
    with DataFile(path) as handle:
        blocks = list(parse_stream(handle, key=None if key is None else key_column,
                                   day_first=day_first,
                                   columns=None if column is None else [column]))
    if key is not None:
        blocks = [of_key(block, key) for block in blocks if block.keys is not None]
    lines = np.concatenate([b.lines for b in blocks]) if blocks else np.empty(0, np.int64)
    values = np.concatenate([b.rows[:, 0] if b.rows.size else np.empty(0) for b in blocks]) \
        if blocks else np.empty(0)
    stamps = [getattr(b, "times", None) for b in blocks]
    times = None if not blocks or stamps[0] is None else \
        (np.concatenate(stamps) * 1000).astype("datetime64[ms]")
    if lines.size == 0:
        why = (f" with key {key!r} in column {key_column!r}" if key is not None
               else f" in column {column!r}" if column is not None
               else " (a keyed stream? name the series with --key)")
        raise ValueError(f"{path}: no rows of numbers{why}")
    return {"line": lines, "value": values, "time": times}


def plot_timeline(data_path, scores_path, path, *, threshold: float = DEFAULT_THRESHOLD,
                  title: str | None = None, key: str | None = None, key_column=0,
                  day_first="auto", column=None) -> list:
    """Draw a series (with ``key``, that key's series of a keyed stream) with its alerts and
    scores to the image file ``path``; returns notes for the user (score lines not drawn)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = read_series(data_path, key, key_column, day_first, column)
    scored = read_scores(scores_path, key, timed=series["time"] is not None)
    x_of_line = dict(zip(series["line"].tolist(),
                         series["time"] if series["time"] is not None else series["line"]))
    known = np.array([line in x_of_line for line in scored["line"].tolist()], dtype=bool)
    if not known.any():
        raise ValueError(f"{scores_path}: none of its lines is a line of {data_path} (the "
                         "per-point output of another series?)")
    notes = []
    if not known.all():
        # (A per-point output of a longer stream drawn over a shorter file, silently: a picture
        # of another series' scores, and its alerts gone from the legend's count.)
        lost = int((~known).sum())
        alerts = int(scored["anomaly"][~known].sum())
        notes.append(f"{lost:,} of the {known.size:,} lines of {scores_path} ({alerts:,} "
                     f"alert{'s' if alerts != 1 else ''} among them) are not lines of "
                     f"{data_path} and are not drawn (the output of another or a longer "
                     "file?)")
    at = np.array([x_of_line[line] for line in scored["line"][known].tolist()])
    value_of_line = dict(zip(series["line"].tolist(), series["value"].tolist()))
    level = -np.log10(np.maximum(1.0 - scored["score"][known], 1e-12))
    flags = scored["anomaly"][known]
    x = series["time"] if series["time"] is not None else series["line"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 6), sharex=True,
                                      gridspec_kw={"height_ratios": [2, 1]})
    top.plot(x, series["value"], color="0.3", linewidth=0.7)
    alerts = scored["line"][known][flags]
    top.scatter(at[flags], [value_of_line[line] for line in alerts.tolist()], color="red",
                zorder=3, s=30, label=f"alerts ({int(flags.sum())})")
    top.set_ylabel("value")
    top.legend(loc="upper left")
    if title:
        top.set_title(title, parse_math=False)  # (as written: "$5 to $10" is no formula)
    bottom.plot(at, level, color="C0", linewidth=0.7)
    bottom.axhline(-np.log10(1.0 - threshold), color="red", linestyle="--", linewidth=0.8,
                   label=f"threshold {threshold}")
    bottom.set_ylabel("-log10(1 - score)")
    bottom.legend(loc="upper left")
    bottom.set_xlabel("time" if series["time"] is not None else "line")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return notes
