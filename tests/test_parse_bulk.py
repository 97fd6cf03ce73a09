"""The parser judges whole blocks at once (issue 16: junk within 20x of valid input per MB);
here its verdicts are held to the rules stated one line at a time (``_parse_line``,
``_json_verdict``) on random hostile input, cut into blocks anywhere, and the daemon's
columnar bookkeeping (counters, logs, dead letters) to what one reject at a time gave."""

import json
import logging
import os
import re
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emstream import parse
from emstream.linebuffer import LineBuffer
from emstream.parse import Reject, Rejects, parse_json_lines, parse_lines

# Pieces of hostile lines: numbers of every form, malformed ones, words, separators, bytes
# that are not numbers, not ASCII or not UTF-8.
ATOMS = [b"1", b"-2.5", b"+.5", b"5.", b"1e5", b"1E-5", b"007", b"0.125", b"1e999", b"-1e200",
         b"1e", b".", b"-", b"+", b"e", b"1.2.3", b"1e5e5", b"1e5.5", b"1.e5", b".e5", b"--1",
         b"1-", b"1e+", b"+-1", b"nan", b"NaN", b"-inf", b"Infinity", b"+INF", b"infinit",
         b"nanx", b"inf1", b"abc", b"x", b"y", b"1_0", b"0x10", b'"1"', b"\\", b"\x00", b"\x0b",
         b"\x7f", b"\xff", b"\xfe", b"\xc3\xa9", b"\xe2\x82", b"\xed\xa0\x80", b"\xf0\x9f\x98\x80",
         b"\xc0\xaf", "\u0661".encode(), b"9" * 70]
SEPARATORS = [b" ", b",", b"\t", b"\r", b"  ", b", ", b",,"]


def _line(parts) -> bytes:
    atoms, separators, lead, trail = parts
    return lead + b"".join(atom if k == 0 else separator + atom
                           for k, (separator, atom) in enumerate(zip(separators, atoms))) + trail


hostile_lines = st.lists(st.tuples(st.lists(st.sampled_from(ATOMS), max_size=4),
                                   st.lists(st.sampled_from(SEPARATORS), min_size=4,
                                            max_size=4),
                                   st.sampled_from([b"", b"", b" ", b",", b"\t"]),
                                   st.sampled_from([b"", b"", b" ", b"\r", b","])).map(_line),
                         min_size=1, max_size=60)


def _reference(lines, n_fields, max_line_bytes, first_line=1):
    """The rules one line at a time; the first valid line sets the width if none is given."""
    rows, rejects = [], []
    for number, line in enumerate(lines, start=first_line):
        values, reason = parse._parse_line(line, n_fields, max_line_bytes)
        if reason is None:
            n_fields = n_fields or len(values)
            rows.append((number, values))
        else:
            rejects.append(Reject(number, reason, line[:60].decode("utf-8", "replace")))
    return rows, rejects, n_fields


def _check(parsed, rows, rejects, n_fields):
    assert list(parsed.rejects) == rejects
    assert parsed.lines.tolist() == [n for n, _ in rows]
    assert parsed.rows.tolist() == [v for _, v in rows]
    assert parsed.n_fields == n_fields
    counts = {}
    for reject in rejects:
        counts[reject.reason] = counts.get(reject.reason, 0) + 1
    assert parsed.reject_counts() == counts


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=hostile_lines, n_fields=st.sampled_from([None, 1, 2, 3]),
       repeat=st.integers(1, 30), max_line_bytes=st.sampled_from([4096, 40, 8]),
       ended=st.booleans())
def test_bulk_verdicts_are_the_line_rules_on_random_hostile_input(lines, n_fields, repeat,
                                                                  max_line_bytes, ended):
    lines = lines[:-1] + [lines[-1]] * repeat  # a flood of the last line
    if not ended and lines[-1] == b"":
        ended = True
    data = b"\n".join(lines) + (b"\n" if ended else b"")
    parsed = parse_lines(data, n_fields=n_fields, first_line=5, max_line_bytes=max_line_bytes)
    _check(parsed, *_reference(lines, n_fields, max_line_bytes, first_line=5))
    assert parsed.n_lines == len(lines)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet="0123456789+-.eEnaiftyNAIFTY", max_size=10), min_size=1,
                max_size=40))
def test_the_bulk_number_grammar_is_the_pattern(fields):
    """Fields made only of number bytes and the letters of nan/inf: the vectorised grammar and
    word check against ``_NUMBER`` and ``_NON_FINITE``, one field a line and all on one line."""
    encoded = [f.encode() for f in fields if f]
    if not encoded:
        return
    data = b"\n".join(encoded) + b"\n"
    _check(parse_lines(data, n_fields=1), *_reference(encoded, 1, 4096))
    _check(parse_lines(data), *_reference(encoded, None, 4096))
    line = b" ".join(encoded)
    _check(parse_lines(line + b"\n"), *_reference([line], None, 4096))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=hostile_lines, cuts=st.lists(st.integers(1, 300), min_size=1, max_size=20),
       n_fields=st.sampled_from([None, 1, 2]))
def test_blocks_cut_anywhere_give_the_rejects_of_the_whole_stream(lines, cuts, n_fields):
    """As the daemon reads: chunks of any size cut into blocks of whole lines by the line
    buffer (long partial lines shortened), each block parsed with the width found before it
    and numbered on from the last; together they are the rules over the whole stream."""
    limit = 64  # (a shortened line keeps more than the 60 bytes a reject shows)
    lines = lines + [b"1" * 200 + b"x", b"2 " * 100]
    stream = b"\n".join(lines) + b"\n"
    cut, at, k, width, number = LineBuffer(limit), 0, 0, n_fields, 1
    rows, lines_seen, rejects = [], [], []
    while True:
        size = cuts[k % len(cuts)]
        chunk, at, k = stream[at:at + size], at + size, k + 1
        block = cut.feed(chunk, at_end=not chunk)
        if block:
            parsed = parse_lines(block, n_fields=width, first_line=number,
                                 max_line_bytes=limit)
            width = width or parsed.n_fields
            number += parsed.n_lines
            rows += parsed.rows.tolist()
            lines_seen += parsed.lines.tolist()
            rejects += list(parsed.rejects)
        if not chunk:
            break
    lines = re.sub(rb"\r(?![\r\n])", b"\n", stream).split(b"\n")[:-1]  # a lone CR ends a line
    expected_rows, expected_rejects, expected_width = _reference(lines, n_fields, limit)
    assert rejects == expected_rejects
    assert lines_seen == [n for n, _ in expected_rows]
    assert rows == [v for _, v in expected_rows]
    assert width == expected_width and number == len(lines) + 1


JSON_LINES = [b'{"v": 1.5}', b'{"v": 2, "w": 3}', b'{"w": 1}', b' {"v": "x"}', b'\t{"v": true}',
              b"{", b"[1]", b"", b"  ", b"\x0b", b"\x0c{}", b"\xff{", b'{"v": 1e400}',
              b'{"v": NaN}', b'{"v": 1' + b"0" * 120 + b"}", b'\r{"v": 1}', b'{"v": "\xc3\xa9"}',
              b'x{"v":1}', b'{"v": 1}{"v": 2}', b'{"v": 3} ', b"\x00", b"nan", b"{" * 50,
              b'{"v": "2.5", "w": "-1e3"}', b'{"v": "nan"}', b'{"v": "2.5x"}']


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(JSON_LINES), min_size=1, max_size=50),
       st.sampled_from([["v"], ["v", "w"]]), st.sampled_from([4096, 12]))
def test_json_bulk_screen_is_the_line_rules(lines, fields, max_line_bytes):
    data = b"\n".join(lines) + b"\n"
    parsed = parse_json_lines(data, fields, first_line=3, max_line_bytes=max_line_bytes)
    expected, rows = [], []
    for number, line in enumerate(lines, start=3):
        values, reason = parse._json_verdict(line, fields, max_line_bytes)
        if reason is None:
            rows.append((number, values))
        else:
            expected.append(Reject(number, reason, line[:60].decode("utf-8", "replace")))
    assert list(parsed.rejects) == expected
    assert parsed.lines.tolist() == [n for n, _ in rows]
    assert parsed.rows.tolist() == [v for _, v in rows]


def _dumps(rejects) -> bytes:
    """Dead-letter records as the daemon wrote them one reject at a time."""
    return b"".join(json.dumps({"line": r.line, "reason": r.reason, "text": r.text}).encode()
                    + b"\n" for r in rejects)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(ATOMS + [b"", b"1.5", b"1 2"]), st.integers(1, 40)),
                min_size=1, max_size=30),
       st.sampled_from([1, 8, 95, 99_990, 999_999_960]))
def test_dead_letter_records_are_json_dumps_of_each_reject(runs, first_line):
    """Floods (formatted by numpy, digits included, across 9 -> 10 -> 100 ...) and single
    rejects (one at a time) alike."""
    lines = [atom for atom, count in runs for _ in range(count)]
    rejects = parse_lines(b"\n".join(lines) + b"\n", n_fields=1, first_line=first_line).rejects
    expected = _dumps(rejects)
    expected_ends = np.cumsum([len(_dumps([r])) for r in rejects]).tolist()
    blob, ends = rejects.to_json_lines()
    assert blob == expected and ends.tolist() == expected_ends
    with mock.patch.object(parse, "_arrow_compute", lambda: None):  # without pyarrow
        blob, ends = rejects.to_json_lines()
    assert blob == expected and ends.tolist() == expected_ends


def test_rejects_are_a_sequence_of_reject_tuples():
    rejects = parse_lines(b"1\n\nx\nnan\n\xff\n").rejects
    assert len(rejects) == 4 and bool(rejects)
    assert rejects[0] == Reject(2, "blank", "") and rejects[-1].reason == "invalid utf-8"
    assert rejects[1:3] == (Reject(3, "non-numeric", "x"), Reject(4, "non-finite", "nan"))
    assert isinstance(rejects[:2], tuple)  # as when rejects were a tuple (pickled by dask)
    assert rejects == tuple(rejects) and rejects.counts() == {
        "blank": 1, "non-numeric": 1, "non-finite": 1, "invalid utf-8": 1}
    with pytest.raises(IndexError):
        rejects[4]
    assert parse_lines(b"1\n2\n").rejects == () and not parse_lines(b"1\n").rejects
    # Other reasons (a time-series table's), other blocks: one set of columns.
    extra = Rejects.of([Reject(9, "bad timestamp", "July 1st,5")])
    both = Rejects.concat([rejects, extra])
    assert tuple(both) == tuple(rejects) + (Reject(9, "bad timestamp", "July 1st,5"),)
    assert both.counts()["bad timestamp"] == 1
    assert both.to_json_lines()[0] == _dumps(both)


# ---------------------------------------------------------------- the daemon's bookkeeping
class _Stream:
    kind, path, at_end, boundary = "stdin", "stream.txt", False, False

    def __init__(self):
        self.offset = 0
        self.max_line_bytes = None


def _daemon(tmp_path, dead_letter=True):
    from emstreamd import config as config_module
    from emstreamd.loop import Daemon

    overrides = [("checkpoint", "path", str(tmp_path / "state")),
                 ("input", "max_line_bytes", 64)]
    if dead_letter:
        overrides.append(("input", "dead_letter", str(tmp_path / "dead.jsonl")))
    daemon = Daemon(config_module.load(None, overrides), _Stream())
    daemon.prepare()
    return daemon


def _feed(daemon, stream: bytes, cuts) -> None:
    cut, at, k = LineBuffer(64), 0, 0
    while True:
        chunk = stream[at:at + cuts[k % len(cuts)]]
        at, k = at + len(chunk), k + 1
        block = cut.feed(chunk, at_end=not chunk)
        daemon.source.offset += cut.block_bytes
        if block:
            daemon._take(block)
        if not chunk:
            return


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(lines=hostile_lines, cuts=st.lists(st.integers(1, 200), min_size=1, max_size=10),
       flood=st.integers(0, 2500))
def test_the_daemon_counts_logs_and_dead_letters_each_reject_as_before(tmp_path_factory, lines,
                                                                        flood, cuts):
    """Counters by reason, the logged lines (the first 20 rejects, then every 1000th, with
    their running count) and the dead-letter file are what one reject at a time gave."""
    tmp_path = tmp_path_factory.mktemp("daemon")
    lines = [b"1.5"] + lines + [b""] * flood + [b"2.5", b"x"]
    stream = b"\n".join(lines) + b"\n"
    daemon = _daemon(tmp_path)
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("emstreamd")
    logger.addHandler(handler)
    try:
        _feed(daemon, stream, cuts)
    finally:
        logger.removeHandler(handler)
        daemon.lock.close()
        daemon.dead_letters.close()
    lines = re.sub(rb"\r(?![\r\n])", b"\n", stream).split(b"\n")[:-1]  # a lone CR ends a line
    _, rejects, _ = _reference(lines, 1, 64)
    counts = {}
    for reject in rejects:
        counts[reject.reason] = counts.get(reject.reason, 0) + 1
    assert daemon.counters["rejected"] == counts
    assert list(daemon.counters["rejected"]) == list(counts)  # (in order of first sight)
    assert daemon.counters["lines"] == len(lines)
    logged = [r.getMessage() for r in records if "rejected (" in r.getMessage()]
    expected = [f"line {r.line} (stream.txt line {r.line}) rejected ({r.reason}): {r.text!r} "
                f"[{k} rejected so far]" for k, r in enumerate(rejects, start=1)
                if k <= 20 or k % 1000 == 0]
    assert logged == expected
    assert (tmp_path / "dead.jsonl").read_bytes() == _dumps(rejects)


def test_pending_rejects_keep_the_position_and_counters_exact(tmp_path):
    """Rejects after a row that is not yet learned: the checkpoint's position stays before
    them and its counters leave them out, until the rows around them are learned."""
    daemon = _daemon(tmp_path, dead_letter=False)
    data = b"1.5\n\nx\n" + b"2.5\n" + b"nan\n" * 3 + b"\n" * 5
    daemon.source.offset = len(data)
    daemon._take(data)
    assert daemon.counters["rejected"] == {"blank": 6, "non-numeric": 1, "non-finite": 3}
    assert daemon.position.line() == 1  # row 1 is not learned
    assert daemon.position.counters_at(daemon.counters)["rejected"] == {}
    daemon._apply(1)
    assert daemon.position.line() == 2 and daemon.position.offset == 4
    at_position = daemon.position.counters_at(daemon.counters)
    assert at_position["rejected"] == {} and at_position["lines"] == 1
    daemon._apply(1)  # row 4: every line read is behind the position
    assert daemon.position.line() == 13 and daemon.position.offset == len(data)
    assert daemon.position.counters_at(daemon.counters)["rejected"] == daemon.counters["rejected"]
    daemon.lock.close()


def test_a_number_numpy_refuses_but_the_grammar_takes_is_judged_by_the_rules(monkeypatch):
    """Not reached unless numpy and the bulk grammar disagree on a field: then the lines
    numpy parses in bulk are judged one at a time, and still by the rules."""
    monkeypatch.setattr(parse._Block, "bad_fields",
                        lambda self: (np.zeros(self.n, dtype=bool),) * 2)
    data = b"1\n1.2.3\n2e5\n-\n3\n"
    lines = data.split(b"\n")[:-1]
    _check(parse_lines(data, n_fields=1), *_reference(lines, 1, 4096))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([b"", b"  ", b"\t\r", b"\x0b", b"timestamp,value", b"time value",
                                 b"2014-07-01 00:30:00,8127", b"2014-07-01T00:30:00 5",
                                 b"1.5", b"1,2", b"a,b,c", b"x", b"nan", b"\xff,1"]),
                min_size=0, max_size=12), st.booleans())
def test_the_layout_is_found_from_the_blocks_first_three_non_blank_lines(lines, ended):
    """The daemon gives ``find_layout`` only the start of its first block (a block of a
    million blank lines and one number is not split into a million lines)."""
    from emstream.table import find_layout
    from emstreamd.parser import _head

    data = b"\n".join(lines) + (b"\n" if ended else b"")
    assert find_layout(_head(data), first_line=3) == find_layout(data, first_line=3)
