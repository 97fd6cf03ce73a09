"""The one text parser: strict numbers, counted rejects with line numbers, fast and slow paths
agreeing."""

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emstream.cli import parsed_blocks
from emstream.parse import _parse_line, parse_lines


@pytest.mark.parametrize("line, reason", [
    (b"abc", "non-numeric"), (b"nan", "non-finite"), (b"inf", "non-finite"),
    (b"-Infinity", "non-finite"), (b"NaN", "non-finite"), (b"nan 2", "wrong field count"),
    (b"nanx", "non-numeric"), (b"infinit", "non-numeric"),
    (b"1_000", "non-numeric"), (b"0x10", "non-numeric"), (b"1.2.3", "non-numeric"),
    (b"1e", "non-numeric"), ("\u0661".encode(), "non-numeric"), (b"\xff\xfe", "invalid utf-8"),
    (b"1e999", "non-finite"), (b"", "blank"), (b"  \t", "blank"), (b"1 2", "wrong field count"),
    (b"9" * 5000, "too long"), (b"1e200", "out of range"), (b"-3e101", "out of range"),
    (b"5\x0b", "non-numeric"), (b"5\x0c", "non-numeric"),
])
def test_each_kind_of_bad_line_is_rejected_with_its_reason(line, reason):
    good = b"\n".join([b"1.5"] * 100)
    data = good + b"\n" + line + b"\n" + good + b"\n"
    parsed = parse_lines(data)
    assert [(r.line, r.reason) for r in parsed.rejects] == [(101, reason)]
    assert parsed.rows.shape == (200, 1)
    assert parsed.lines[99] == 100 and parsed.lines[100] == 102


@pytest.mark.parametrize("text, expected", [
    (b"+3", 3.0), (b"-0.5", -0.5), (b".5", 0.5), (b"5.", 5.0), (b"1e-3", 1e-3), (b"2E+2", 200.0),
    (b" 7 ", 7.0), (b"7\r", 7.0),
])
def test_accepted_number_forms(text, expected):
    assert parse_lines(text + b"\n").rows[0, 0] == expected


def test_csv_whitespace_and_column_selection():
    data = b"1,2,3\n4 5 6\n7,\t8 ,9\r\n"
    assert parse_lines(data).rows.tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert parse_lines(data, columns=[2, 0]).rows.tolist() == [[3, 1], [6, 4], [9, 7]]
    with pytest.raises(ValueError, match="out of range"):
        parse_lines(data, columns=[3])


def test_width_comes_from_the_first_valid_line():
    parsed = parse_lines(b"x,y\n1,2\n3\n4,5\n")
    assert parsed.n_fields == 2
    assert parsed.rows.tolist() == [[1, 2], [4, 5]]
    assert [(r.line, r.reason) for r in parsed.rejects] == [(1, "non-numeric"),
                                                          (3, "wrong field count")]


def test_last_line_without_newline_counts():
    parsed = parse_lines(b"1\n2\n3")
    assert parsed.rows.ravel().tolist() == [1, 2, 3] and parsed.n_lines == 3


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64).map(lambda v: repr(v).encode()),
    st.integers(-10**6, 10**6).map(lambda v: str(v).encode()),
    st.sampled_from([b"", b"nan", b"1 2", b"abc", b"1e999", b"\xff", b"1,", b"-", b"1.2.3",
                     b"1e5", b" 3 "])), min_size=1, max_size=300))
def test_fast_path_agrees_with_the_line_by_line_rules(lines):
    data = b"\n".join(lines) + b"\n"
    parsed = parse_lines(data, n_fields=1)
    expected_rows, expected_rejects = [], []
    for number, line in enumerate(lines, start=1):
        values, reason = _parse_line(line, 1, 4096)
        if reason is None:
            expected_rows.append((number, values[0]))
        else:
            expected_rejects.append((number, reason))
    assert [(r.line, r.reason) for r in parsed.rejects] == expected_rejects
    assert parsed.lines.tolist() == [n for n, _ in expected_rows]
    assert parsed.rows.ravel().tolist() == [v for _, v in expected_rows]


def _line_by_line(lines, n_fields=None):
    """The rules one line at a time: the first valid line sets the width if none is given."""
    rows, rejects = [], []
    for number, line in enumerate(lines, start=1):
        values, reason = _parse_line(line, n_fields, 4096)
        if reason is None:
            n_fields = n_fields or len(values)
            rows.append((number, values))
        else:
            rejects.append((number, reason))
    return rows, rejects


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([
    b"1", b"2 3", b"4,5", b"6 7 8", b"", b" ", b"nan", b"nan 1", b"1 inf", b"1e999 2",
    b"1e200", b"abc", b"1.2.3", b"-", b"1 x", b"\xff", b"\xd9\xa1", b"9" * 5000, b"+.5 -5.",
    b"1e5 1E-5", b"1_0 2", b"Infinity"]), min_size=1, max_size=200))
def test_bulk_verdicts_agree_with_the_line_by_line_rules_before_and_after_the_width(lines):
    """Lines before the first valid one are judged without a width, those after with it; a
    line's verdict is remembered for its width only ("nan 1" is non-finite before, the wrong
    field count after a one-number line)."""
    data = b"\n".join(lines) + b"\n"
    parsed = parse_lines(data)
    rows, rejects = _line_by_line(lines)
    assert [(r.line, r.reason) for r in parsed.rejects] == rejects
    assert parsed.lines.tolist() == [n for n, _ in rows]
    assert parsed.rows.tolist() == [v for _, v in rows]
    assert all(r.text == lines[r.line - 1][:60].decode("utf-8", "replace")
               for r in parsed.rejects)


def test_blocks_keep_line_numbers_and_join_lines_cut_at_block_edges(monkeypatch):
    import emstream.table as table
    monkeypatch.setattr(table, "BLOCK_BYTES", 7)  # (parse_stream, which parsed_blocks runs)
    data = b"".join(f"{i}.25\n".encode() for i in range(1, 30)) + b"oops\n31"
    blocks = list(parsed_blocks(io.BytesIO(data)))
    rows = np.concatenate([b.rows for b in blocks]).ravel()
    lines = np.concatenate([b.lines for b in blocks])
    rejects = [(r.line, r.reason) for b in blocks for r in b.rejects]
    assert rows.tolist() == [i + 0.25 for i in range(1, 30)] + [31.0]
    assert lines.tolist() == list(range(1, 30)) + [31]
    assert rejects == [(30, "non-numeric")]


def test_long_but_valid_number_is_still_too_long():
    long_number = b"1." + b"0" * 5000
    parsed = parse_lines(b"1\n" * 100 + long_number + b"\n" + b"2\n" * 100)
    assert [(r.line, r.reason) for r in parsed.rejects] == [(101, "too long")]


def test_arrow_fast_path_gives_numpys_values_and_refuses_what_the_strict_parser_refuses():
    """One number per line goes through pyarrow's reader when installed: same bits as numpy."""
    pytest.importorskip("pyarrow")
    from emstream.parse import _one_number_per_line, _read_fast

    rng = np.random.default_rng(0)
    values = rng.normal(size=5000) * 10.0 ** rng.integers(-300, 300, 5000)
    texts = [f"{v:.17g}" for v in values] + [f"{v:e}" for v in values[:500]] + [
        f"+{abs(v):f}" for v in values[:500]] + ["-0", ".5", "5.", "007", "1E+05", "-1e-310"]
    data = ("\n".join(texts) + "\n").encode()
    fast = _read_fast(data)
    assert fast is not None
    np.testing.assert_array_equal(fast, np.fromstring(data, sep="\n"))
    in_range = np.abs(fast) <= 1e100  # the rest are rejected as "out of range"
    parsed = parse_lines(data)
    np.testing.assert_array_equal(parsed.rows[:, 0], fast[in_range])
    assert len(parsed.rejects) == np.count_nonzero(~in_range) > 0
    for junk in [b'"1"\n', b"1_000\n", b"NA\n", b"1e\n", b".\n", b"1.2.3\n", b"+-1\n",
                 b"0x10\n", b"1 2\n"]:
        assert _one_number_per_line(b"1\n" + junk, 4096) is None, junk
        for n_fields in (None, 1):
            parsed = parse_lines(b"1\n" + junk, n_fields=n_fields)
            assert parsed.rows.ravel().tolist() == [1.0] and len(parsed.rejects) == 1, junk


@pytest.mark.parametrize("data", [b"1\n-2.5\n3e2\n", b"1\n-2.5\n3e2", b"4\n"])
def test_line_ends_of_the_fast_path_are_the_offsets_past_each_line(data):
    """The daemon's exactly-once positions use them instead of scanning the block again."""
    parsed = parse_lines(data, n_fields=1)
    expected = [i + 1 for i, b in enumerate(data) if b == 10]
    if not data.endswith(b"\n"):
        expected.append(len(data))
    assert parsed.line_ends is not None and parsed.line_ends.tolist() == expected
    assert parse_lines(b"1\nx\n").line_ends is None  # a reject: the general path


def test_without_pyarrow_one_number_per_line_is_parsed_by_numpy(monkeypatch):
    """The fast reader is optional: without it the same block gives the same rows."""
    import emstream.parse as parse

    data = b"1.5\n-2\n3e2\n.25\n"
    with_reader = parse_lines(data, n_fields=1)
    monkeypatch.setattr(parse, "_arrow_reader", lambda: None)
    without = parse_lines(data, n_fields=1)
    np.testing.assert_array_equal(without.rows, with_reader.rows)
    assert without.line_ends.tolist() == with_reader.line_ends.tolist() == [4, 7, 11, 15]


def test_a_key_may_hold_no_character_that_printable_escapes_and_no_other_control():
    """Two spellings of one set: the bytes pattern series keys are checked with
    (``parse.is_bad_key``, fast on raw input) and the table ``printable`` escapes with for a
    terminal.  Every code point of the Basic Multilingual Plane is read the same by both (a key
    may not hold a tab or newline either, which ``printable`` leaves)."""
    from emstream.parse import is_bad_key
    from emstream.terminal import printable

    differ = [hex(code) for code in range(0x10000) if not 0xD800 <= code < 0xE000
              and is_bad_key(f"k{chr(code)}".encode()) != (
                  printable(chr(code)) != chr(code) or chr(code) in "\t\n")]
    assert differ == []
