"""The batch formatter of per-point score lines (emstream score, emstreamd)."""

import json

import numpy as np
import pytest

from emstream.report import _format_slowly, format_rows


def _batch(n, rng):
    surprise = rng.normal(2, 3, n) * 10.0 ** rng.integers(-5, 9, n)
    surprise[:4] = [0.0, -0.00004, 0.99995, 99999999.99996]  # rounding edges
    probability = rng.random(n)
    probability[:3] = [0.0, 1.0, 0.9999996]
    return (np.arange(n) + rng.integers(1, 10**9), rng.integers(0, 12, n), probability,
            surprise, rng.random(n) < 0.1)


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_batch_formatting_equals_row_by_row_formatting(kind):
    batch = _batch(20_000, np.random.default_rng(0))
    fast = format_rows(kind, *batch)
    assert fast == _format_slowly(kind, *batch)
    assert fast.count(b"\n") == 20_000


def test_csv_fields_read_back():
    lines, labels, probability, surprise, anomaly = _batch(5000, np.random.default_rng(1))
    rows = np.loadtxt(format_rows("csv", lines, labels, probability, surprise, anomaly).decode()
                      .splitlines(), delimiter=",")
    np.testing.assert_array_equal(rows[:, 0], lines)
    np.testing.assert_array_equal(rows[:, 1], labels)
    np.testing.assert_allclose(rows[:, 2], probability, atol=5e-7)
    np.testing.assert_allclose(rows[:, 3], surprise, atol=5e-5)
    np.testing.assert_array_equal(rows[:, 4], anomaly)


def test_jsonl_reads_back_and_survives_infinite_surprise():
    lines, labels, probability, surprise, anomaly = _batch(100, np.random.default_rng(2))
    surprise[7] = np.inf
    text = format_rows("jsonl", lines, labels, probability, surprise, anomaly)
    records = [json.loads(line) for line in text.decode().splitlines()]
    assert records[7]["surprise"] == float("inf")
    # Strict JSON: a non-finite surprise was written as Infinity, which jq refuses.
    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    for line in text.decode().splitlines():
        json.loads(line, parse_constant=refuse)
    surprise[7] = -np.inf
    text = format_rows("jsonl", lines, labels, probability, surprise, anomaly)
    assert json.loads(text.decode().splitlines()[7], parse_constant=refuse)["surprise"] == \
        float("-inf")
    assert [r["anomaly"] for r in records] == anomaly.tolist()
    assert [r["line"] for r in records] == lines.tolist()
    assert format_rows("csv", lines[:0], labels[:0], probability[:0], surprise[:0],
                       anomaly[:0]) == b""


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_an_enormous_surprise_is_written_in_exponent_form(kind):
    """Fixed-point, a surprise of 1e199 (data on a scale near 1e-100) took 200 digits."""
    lines, labels, probability, surprise, anomaly = _batch(5, np.random.default_rng(4))
    surprise[1] = 1.2345678e199
    text = format_rows(kind, lines, labels, probability, surprise, anomaly).decode()
    second = text.splitlines()[1]
    assert "1.234568e+199" in second and len(second) < 120
    if kind == "jsonl":
        assert json.loads(second)["surprise"] == pytest.approx(1.2345678e199, rel=1e-6)


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_without_anomaly_flags_the_column_is_left_out(kind):
    lines, labels, probability, surprise, _ = _batch(2000, np.random.default_rng(3))
    fast = format_rows(kind, lines, labels, probability, surprise)
    assert fast == _format_slowly(kind, lines, labels, probability, surprise)
    first = fast.decode().splitlines()[0]
    assert "anomaly" not in first and (kind == "jsonl" or first.count(",") == 3)


def test_a_time_written_with_a_comma_quote_or_tab_stays_one_field(tmp_path):
    """A time as the input wrote it goes into the line as a field: "7/13/2014, 12:00 AM"
    (a comma, from a quoted CSV field) made a CSV line of eight fields, and a tab before AM
    invalid JSON; plain times keep the fast path's bytes."""
    import csv

    from emstream.timeline import read_scores

    stamps = np.array([b"7/13/2014, 12:00 AM", b'13/07/2014 "noon"', b"7/13/2014 12:00\tAM",
                       b"2014-07-13 00:00:00"])
    n = len(stamps)
    batch = (np.arange(1, n + 1), np.zeros(n, dtype=int), np.full(n, 0.5), np.ones(n),
             np.array([False, True, False, False]))
    text = format_rows("csv", *batch, score=np.full(n, 0.25), time_text=stamps).decode()
    rows = list(csv.reader(text.splitlines()))
    assert [row[1] for row in rows] == [s.decode() for s in stamps]
    assert all(len(row) == 7 for row in rows)
    (tmp_path / "out.csv").write_text(text)
    assert read_scores(tmp_path / "out.csv", timed=True)["anomaly"].tolist() == \
        batch[-1].tolist()
    records = [json.loads(line) for line in format_rows(
        "jsonl", *batch, score=np.full(n, 0.25), time_text=stamps).splitlines()]
    assert [r["time"] for r in records] == [s.decode() for s in stamps]
    plain = np.array([b"2014-07-13 00:00:00"] * n)
    assert format_rows("csv", *batch, score=np.full(n, 0.25), time_text=plain) == \
        b"".join(b"%d,2014-07-13 00:00:00,0,0.500000,1.0000,0.25000000,%d\n" % (i + 1, a)
                 for i, a in enumerate(batch[-1]))
