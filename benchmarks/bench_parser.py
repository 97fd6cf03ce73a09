"""The parser's seconds per MB on hostile input, against valid input of the same format.

Usage::

    python benchmarks/bench_parser.py [--mb 1] [--repeats 3] [--e2e-mb 4] [--no-e2e]
                                      [--no-dead] [--formats 1d,3col,csv,json] [--only SUBSTRING]

Acceptance (issue 16, hardening): junk costs at most 20 times what valid input costs per MB.
Nothing is asserted; the table shows each shape's ratio to the valid input of its format.

Columns:

``parser``
    What the daemon does with a block, timed in this process: the line buffer cutting 1 MiB
    reads into blocks of whole lines, ``Daemon._take`` (the same ``BlockParser.parse`` the daemon
    calls: layout, parse, columns) and its bookkeeping of the block's rejects (counters, the
    pending positions, the rate-limited log lines, written to /dev/null).  The daemon has
    first seen a few valid lines (its width and layout are known), as when junk arrives
    mid-stream; shapes marked "(from start)" come before any valid line.  Best of
    ``--repeats``.
``+dead``
    The same with ``input.dead_letter`` set (one record per reject, to a file in /tmp).
``e2e``
    ``emstreamd --no-output < FILE`` on a file of 2 kB of valid lines and ``--e2e-mb`` MB of
    the shape, its time after start-up as its summary gives it, against a file of valid lines
    of the same size (whose time includes learning, so these ratios are lower).  On stdin:
    with ``--input`` a thread parses the first blocks during start-up, which that time leaves
    out.

Valid input: one number per line (``%.6f`` of a normal mixture), three comma-separated numbers
a line, and JSON lines ``{"t": i, "v": x}`` with ``input.fields: [v]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import print_machine  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "daemon"))
MB = 1 << 20
NEWLINE = b"\n"


def _fill(pattern: bytes, size: int) -> bytes:
    """``pattern`` (whole lines) repeated to about ``size`` bytes, whole lines only."""
    return pattern * max(1, size // len(pattern))


def _valid_1d(n: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    values = np.r_[rng.normal(0, 1, n // 2), rng.normal(8, 1, n - n // 2)]
    rng.shuffle(values)
    return [b"%.6f" % v for v in values]


def _lines(items: list) -> bytes:
    return b"\n".join(items) + b"\n"


CSV_HEADER = b"timestamp,value\n"


def valid(fmt: str, size: int) -> bytes:
    """Valid input of ``fmt`` (a "csv" time series starts with its header line)."""
    n = size // {"1d": 9, "3col": 30, "json": 28, "csv": 30}[fmt] + 1
    ones = _valid_1d(n * (3 if fmt == "3col" else 1))
    if fmt == "csv":
        start = np.datetime64("2014-07-01T00:00:00")
        stamps = (start + np.arange(n) * np.timedelta64(300, "s")).astype(str)
        rows = [b"%s,%s" % (t.replace("T", " ").encode(), v) for t, v in zip(stamps, ones)]
        return CSV_HEADER + _lines(rows)[:size].rsplit(b"\n", 1)[0] + b"\n"
    if fmt == "1d":
        return _lines(ones)[:size].rsplit(b"\n", 1)[0] + b"\n"
    if fmt == "3col":
        rows = [b",".join(ones[i:i + 3]) for i in range(0, len(ones), 3)]
        return _lines(rows)[:size].rsplit(b"\n", 1)[0] + b"\n"
    rows = [b'{"t": %d, "v": %s}' % (i, v) for i, v in enumerate(ones)]
    return _lines(rows)[:size].rsplit(b"\n", 1)[0] + b"\n"


def _varied(template: str, size: int, seed: int = 1) -> bytes:
    """Lines that differ from each other (no verdict can be remembered)."""
    rng = np.random.default_rng(seed)
    numbers = rng.integers(0, 10**6, size // 6 + 1)
    return _lines([(template % k).encode() for k in numbers])[:size].rsplit(b"\n", 1)[0] + b"\n"


def _alternate(good: bytes, junk: list, size: int) -> bytes:
    """A valid line, a junk line (cycling through ``junk``), and so on."""
    good_lines = good.split(b"\n")[:-1]
    out, total, i = [], 0, 0
    while total < size:
        pair = good_lines[i % len(good_lines)] + b"\n" + junk[i % len(junk)] + b"\n"
        out.append(pair)
        total += len(pair)
        i += 1
    return b"".join(out)


MIXED_JUNK = [b"abc", b"x", b"", b" , ", b"nan", b"-inf", b"1.2.3", b"1e", b"-", b".",
              b"1" * 300 + b"x", b"\xff\xfe", b"\x00\x00", "\u0661".encode(), b"1_000",
              b"0x10", b"1e999", b"1e200", b"temperature sensor failure at node 17 !!"]


def shapes(fmt: str, size: int) -> list:
    """``(name, data, before any valid line)`` for every junk shape of one format."""
    good = valid(fmt, size)
    common = [
        ("blank \\n", _fill(b"\n", size), False),
        ("blank \\n (from start)", _fill(b"\n", size), True),
        ("blank \\r\\n", _fill(b"\r\n", size), False),
        ("spaces", _fill(b"   \n", size), False),
        ("letters abc", _fill(b"abc\n", size), False),
        ("1 byte x", _fill(b"x\n", size), False),
        ("2 bytes xy", _fill(b"xy\n", size), False),
        ("NUL bytes", _fill(b"\x00\x00\x00\n", size), False),
        ("invalid utf-8", _fill(b"\xff\xfe\n", size), False),
        ("valid utf-8 letters", _fill("\u00e9t\u00e9\n".encode(), size), False),
        ("too long lines (5000 B)", _fill(b"1" * 5000 + b"\n", size), False),
        ("one line of the whole size", b"7" * size + b"\n", False),
        ("varied letters", _varied("junk%d", size), False),
    ]
    if fmt == "json":
        return [("valid", good, False)] + common + [
            ("invalid json {", _fill(b"{\n", size), False),
            ("invalid json varied", _varied('{"v": %d', size), False),
            ("missing field", _fill(b'{"w": 1}\n', size), False),
            ("non-numeric value", _varied('{"v": "%d"}', size), False),
            ("alternate valid/blank", _alternate(good, [b""], size), False),
            ("alternate valid/mixed", _alternate(good, MIXED_JUNK + [b'{"v": 1', b"[1]"],
                                                 size), False),
        ]
    if fmt == "csv":  # a time series (header and time column), after its header
        rows = good[len(CSV_HEADER):]
        return [("valid", rows, False)] + common[:1] + common[2:] + [
            ("bad timestamp varied", _varied("zz%d,1", size), False),
            ("bad value", _fill(b"2014-07-01 00:00:00,abc\n", size), False),
            ("too many fields", _fill(b"2014-07-01 00:00:00,1,2\n", size), False),
            ("too few fields", _fill(b"2014-07-01 00:00:00\n", size), False),
            ("empty fields ,", _fill(b",\n", size), False),
            ("alternate valid/blank", _alternate(rows, [b""], size), False),
            ("alternate valid/mixed", _alternate(rows, MIXED_JUNK + [b"1,2,3", b"zz,1"],
                                                 size), False),
        ]
    digits = _fill(b"1" * 1000 + b"x\n", size)
    extra = [
        ("digit runs 1111..1x", digits, False),
        ("nan", _fill(b"nan\n", size), False),
        ("malformed 1.2.N varied", _varied("1.2.%d", size), False),
        ("out of range 1eN varied", _varied("1e2%02d", size), False),
    ]
    if fmt == "1d":
        extra += [
            ("too many fields 1 2", _fill(b"1 2\n", size), False),
            ("too many fields varied", _varied("%d 1", size), False),
            ("alternate valid/blank", _alternate(good, [b""], size), False),
            ("alternate valid/abc", _alternate(good, [b"abc"], size), False),
            ("alternate valid/mixed", _alternate(good, MIXED_JUNK + [b"1 2"], size), False),
        ]
    else:
        extra += [
            ("too many fields 1,2,3,4", _fill(b"1,2,3,4\n", size), False),
            ("too few fields 1,2", _fill(b"1,2\n", size), False),
            ("too few fields 1", _fill(b"1\n", size), False),
            ("too few varied", _varied("%d,5", size), False),
            ("alternate valid/blank", _alternate(good, [b""], size), False),
            ("alternate valid/1,2", _alternate(good, [b"1,2"], size), False),
            ("alternate valid/mixed", _alternate(good, MIXED_JUNK + [b"1,2", b"1,2,3,4",
                                                                     b"1,,2"], size), False),
        ]
    return [("valid", good, False)] + common + extra


SETTINGS = {"1d": [], "3col": [], "csv": [], "json": [("input", "format", "jsonl"),
                                           ("input", "fields", ["v"])]}
E2E_SETTINGS = {"1d": [], "3col": [], "csv": [],
                "json": ["--set", "input.format=jsonl", "--set", "input.fields=[v]"]}


class _Stream:
    """What ``Daemon._take`` asks of a source: the offset past the block, its path."""

    kind = "stdin"
    path = "bench"
    at_end = False
    boundary = False

    def __init__(self):
        self.offset = 0
        self.max_line_bytes = None


def time_parser(fmt: str, data: bytes, from_start: bool, dead_letter: str | None,
                repeats: int) -> float:
    """Best seconds of the daemon's block path over ``data``."""
    from emstream.linebuffer import LineBuffer
    from emstreamd import config as config_module
    from emstreamd.loop import Daemon

    best = float("inf")
    for _ in range(repeats):
        state = tempfile.mkdtemp()
        overrides = SETTINGS[fmt] + [("checkpoint", "path", state)]
        if dead_letter is not None:
            overrides.append(("input", "dead_letter", dead_letter))
            open(dead_letter, "wb").close()
        config = config_module.load(None, overrides)
        source = _Stream()
        daemon = Daemon(config, source)
        daemon.prepare()
        if not from_start:
            prime = valid(fmt, 4000)
            source.offset += len(prime)
            daemon._take(prime)
            _applied(daemon)
        cut = LineBuffer(config["input"]["max_line_bytes"])
        started = time.perf_counter()
        for position in range(0, len(data) + 1, MB):
            chunk = data[position:position + MB]
            block = cut.feed(chunk, at_end=not chunk)
            source.offset += cut.block_bytes
            if block:
                daemon._take(block)
                _applied(daemon)
        best = min(best, time.perf_counter() - started)
        if daemon.dead_letters is not None:
            daemon.dead_letters.close()
        daemon.lock.close()
    return best


def _applied(daemon) -> None:
    """Pending rows dropped as if learned, so that the next block starts alike."""
    position = daemon.position
    position.pending = type(position.pending)()
    position.first_pending_at = None
    position.all_applied(daemon.source.offset)


def time_daemon(fmt: str, path: Path) -> float:
    """Seconds after start-up of ``emstreamd --no-output`` reading ``path`` on stdin."""
    state = tempfile.mkdtemp()
    command = [sys.executable, "-m", "emstreamd", "--config", str(ROOT / "config.yaml"),
               "--checkpoint", state, "--no-output", "--set", "status.every_seconds=0",
               "--set", "checkpoint.every_points=100000000", *E2E_SETTINGS[fmt]]
    with open(path, "rb") as stdin:
        done = subprocess.run(command, stdin=stdin, capture_output=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"emstreamd failed on {path}: {done.stderr.decode()[-2000:]}")
    return float(re.search(rb"lines in ([0-9.]+) s after start-up", done.stderr)[1])


def main() -> None:
    print_machine()
    print("load average: %.2f %.2f %.2f (a shared machine: compare ratios within one run)"
          % os.getloadavg())
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=1.0, help="MB of each shape (parser)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--e2e-mb", type=float, default=4.0, help="MB of each shape (daemon)")
    parser.add_argument("--no-e2e", action="store_true", help="skip the daemon runs")
    parser.add_argument("--no-dead", action="store_true", help="skip the dead-letter column")
    parser.add_argument("--only", default="", help="shapes whose name contains this")
    parser.add_argument("--formats", default="1d,3col,csv,json")
    args = parser.parse_args()
    logging.basicConfig(level="INFO", stream=open(os.devnull, "w"))
    folder = Path(tempfile.mkdtemp())
    dead = str(folder / "dead.jsonl")
    size = int(args.mb * MB)
    worst = []
    for fmt in args.formats.split(","):
        print(f"\n{fmt}: {args.mb:g} MB a shape (parser), {args.e2e_mb:g} MB (daemon); "
              "s/MB and ratio to valid input")
        print(f"{'shape':<30} {'lines/MB':>9} {'parser':>8} {'ratio':>6} {'+dead':>8} "
              f"{'ratio':>6} {'e2e':>8} {'ratio':>6}")
        reference = {}
        for name, data, from_start in shapes(fmt, size):
            if args.only and args.only not in name and name != "valid":
                continue
            mb = len(data) / MB
            parse = time_parser(fmt, data, from_start, None, args.repeats) / mb
            results = {"parser": parse}
            if not args.no_dead:
                results["+dead"] = time_parser(fmt, data, from_start, dead, args.repeats) / mb
            if not args.no_e2e:
                e2e_size = int(args.e2e_mb * MB)
                body = data * max(1, e2e_size // len(data))
                if name.startswith("one line"):
                    body = b"7" * e2e_size + b"\n"
                path = folder / f"{fmt}.txt"
                path.write_bytes((b"" if from_start else valid(fmt, 2000)) + body)
                results["e2e"] = time_daemon(fmt, path) / (len(body) / MB)
            if name == "valid":
                reference = results
            row = f"{name:<30} {data.count(NEWLINE) / mb:>9.0f}"
            for column in ("parser", "+dead", "e2e"):
                if column in results:
                    ratio = results[column] / reference[column]
                    row += f" {results[column]:>8.4f} {ratio:>5.1f}x"
                    if name != "valid":
                        worst.append((ratio, fmt, name, column))
                else:
                    row += f" {'':>8} {'':>6}"
            print(row, flush=True)
    if worst:
        ratio, fmt, name, column = max(worst)
        print(f"\nworst ratio: {ratio:.1f}x ({fmt}, {name}, {column}); target <= 20x")


if __name__ == "__main__":
    main()
