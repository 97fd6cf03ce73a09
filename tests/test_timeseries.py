"""Time series: CSV tables with timestamps, temporal features, the calibrated score, episodes,
and the daemon flagging a synthetic seasonal series' anomalies once each."""

import csv
import json
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from emstream import checkpoint
from emstream.calibration import TailCalibrator
from emstream.episodes import Episodes
from emstream.table import (Layout, LayoutError, find_layout, parse_table, series_columns,
                            settle_layout)
from emstream.temporal import TemporalFeatures, find_season
from emstream.timestamps import parse_times

from .conftest import ROOT

DAEMON = [sys.executable, "-m", "emstreamd", "--config", str(ROOT / "config.yaml")]
STEP = 600  # seconds between points: 144 a day
DAY = 86400 // STEP


# ---------------------------------------------------------------------- input
def test_times_in_every_accepted_form_and_nan_for_the_rest():
    fields = [b"2014-07-01 00:30:00", b"2014-07-01T00:30:00", b"2014-07-01T00:30:00.000Z",
              b"2014-07-01T02:30:00+02:00", b"2014-06-30T19:30:00-0500", b"1404174600",
              b"1404174600000", b"1404174600.0", b"2014-07-01 00:30",
              # epoch micro- and nanoseconds (read as milliseconds: the year 44,467)
              b"1404174600000000", b"1404174600000000000",
              # BigQuery's and PostgreSQL's exports, a logger's offset after a space
              b"2014-07-01 00:30:00 UTC", b"2014-07-01 02:30:00+02", b"2014-07-01 00:30:00 +0000",
              b"2014-07-01 00:30:00 GMT", b"2014-06-30 19:30:00-05"]
    np.testing.assert_array_equal(parse_times(fields), 1404174600.0)
    assert parse_times([b"2014-07-01"]).tolist() == [1404172800.0]
    bad = [b"July 1st", b"2014-13-45", b"", b"2014-07-01 25:00:00", b"nan", b"12:00",
           b"2014-07-01-05", b"2014-07-01 00:30:00 CET",
           # offsets no zone has (+99:99 was read as 4 days and 3 minutes)
           b"2014-07-01T02:30:00+99:99", b"2014-07-01T02:30:00+15:00",
           b"2014-07-01T02:30:00-05:60", b"2014-07-01T02:30:00+14:01"]
    assert np.isnan(parse_times(bad)).all()
    assert parse_times([b"2014-07-01T14:30:00+14:00", b"2014-06-30T12:30:00-12:00"]).tolist() \
        == [1404174600.0, 1404174600.0]


def test_a_time_column_as_an_array_is_read_as_field_by_field():
    """A table's time column comes as a byte-string array, checked in array passes when every
    field has the first one's shape; the result must be the per-field parser's, whatever the
    mix (other shapes, impossible dates, offsets, padding, epoch numbers)."""
    rng = np.random.default_rng(3)
    forms = [b"2014-07-%02d %02d:%02d:00", b"2014-07-%02dT%02d:%02d:00.250",
             b"2014-07-%02d %02d:%02d", b"2014-07-%02d %02d:%02d:00Z",
             b"2014-%02d-01 %02d:%02d:00"]
    odd = [b"2014-07-01", b"2014-07-01 7:05:00", b"2014-13-01 00:00:00", b"2014-07-01 0a:00:00",
           b"1404174600", b"2014-07-01 00:30:00+02:00", b"2014-07-32 00:00:00", b" "]
    agreed = 0
    for _ in range(300):
        form = forms[int(rng.integers(0, len(forms)))]
        fields = [form % (int(rng.integers(1, 14)), int(rng.integers(0, 24)),
                          int(rng.integers(0, 60))) for _ in range(int(rng.integers(1, 30)))]
        if rng.random() < 0.3:
            fields[int(rng.integers(0, len(fields)))] = odd[int(rng.integers(0, len(odd)))]
        column = np.array(fields, dtype=bytes)
        expected = np.array([parse_times([f])[0] for f in fields])
        np.testing.assert_array_equal(parse_times(column), expected)
        agreed += bool(np.isfinite(expected).all())
    assert agreed > 100


def test_times_as_spreadsheets_write_them():
    """Excel and LibreOffice write 7/1/2014 12:30:00 AM (US) or 01/07/2014 00:30 (Europe), and
    2014/07/01 or 01.07.2014: every row of such a file was a "bad timestamp"."""
    from emstream.timestamps import infer_day_first

    month_first = [b"7/1/2014 12:30 AM", b"07/01/2014 00:30", b"7/1/2014 12:30:00 am",
                   b"07/01/2014 00:30:00.000"]
    day_first = [b"1/7/2014 00:30", b"01/07/2014 12:30 AM"]
    either = [b"2014/07/01 00:30:00", b"01.07.2014 00:30", b"1.7.2014 12:30 AM"]
    np.testing.assert_array_equal(parse_times(month_first + either, day_first=False),
                                  1404174600.0)
    np.testing.assert_array_equal(parse_times(day_first + either, day_first=True), 1404174600.0)
    assert parse_times([b"7/1/2014 12:30 PM"], day_first=False).tolist() == [1404217800.0]
    # Without an order a day-and-month date is not a time; an impossible one never is.
    assert np.isnan(parse_times(month_first)).all()
    assert np.isfinite(parse_times(either)).all()
    bad = [b"13/13/2014", b"02/30/2014", b"7/1/2014 13:00 PM", b"1.2.3", b"7/1/2014 0:30 AM",
           b"7/1/214", b"2014/7/1/2"]
    assert np.isnan(parse_times(bad, day_first=False)).all()
    # LibreOffice writes two-digit years by default (01/07/14 12:30 AM, 01.07.14 00:30): 00-68
    # are 2000-2068, 69-99 1969-1999, as strptime's %y has it (every row was a bad timestamp).
    # Only as LibreOffice writes them (day and month in two digits, with a time of day): 14/07/01
    # alone may put the year first, 1.2.10 be a version.
    assert parse_times([b"07/01/14 12:30 AM", b"01.07.14 00:30"], day_first=False
                       ).tolist() == [1404174600.0, 1404174600.0]
    assert parse_times([b"31.12.69 00:00", b"01/01/68 00:00"], day_first=True).tolist() == [
        -86400.0, 3092601600.0]
    assert np.isnan(parse_times([b"1/7/14", b"14/07/01", b"1.2.10", b"7/1/14 12:30 AM"],
                                day_first=False)).all()
    assert infer_day_first([b"01/15/24 12:05 AM"]) is False
    # The order is what a day above 12 says, and nothing if none does (or both do).
    assert infer_day_first([b"12/31/2014", b"01/02/2014"]) is False
    assert infer_day_first([b"01/02/2014", b"31/12/2014 10:00"]) is True
    assert infer_day_first([b"01/02/2014", b"2014-07-01"]) is None
    assert infer_day_first([b"31/12/2014", b"12/31/2014"]) is None


def test_the_order_of_day_and_month_is_found_or_asked_for():
    us = b"timestamp,value\n12/30/2014 11:00 PM,1\n12/31/2014 11:00 PM,2\n"
    layout = find_layout(us)
    assert layout.day_first is False and layout.describe().endswith("dates month first")
    assert parse_table(us, layout).times.tolist() == [1419980400.0, 1420066800.0]
    assert Layout.from_dict(layout.to_dict()) == layout
    old = layout.to_dict()
    del old["day_first"]  # a checkpoint from before
    assert Layout.from_dict(old).day_first is None
    with pytest.raises(ValueError, match="day_first"):
        Layout.from_dict({**old, "day_first": "yes"})
    ambiguous = b"timestamp,value\n05/06/2014 10:00,1\n"
    with pytest.raises(LayoutError, match="set input.day_first"):
        find_layout(ambiguous)
    assert find_layout(ambiguous, day_first=True).day_first is True
    # Once the dates change, the order under which they run as a series does is the order:
    # a file from the 1st of a month had no day above 12 for days (and stopped the daemon).
    hours = range(0, 30)
    month_first = b"timestamp,value\n" + b"".join(
        b"1/%d/2024 %d:00,1\n" % (1 + h // 24, h % 24) for h in hours)
    day_first = month_first.replace(b"1/1/", b"1/1/").replace(b"1/2/2024", b"2/1/2024")
    assert find_layout(month_first).day_first is False
    assert find_layout(day_first).day_first is True
    times = parse_table(day_first, find_layout(day_first)).times
    assert np.all(np.diff(times) == 3600.0)
    # Dates that need no order leave it unset.
    assert find_layout(b"timestamp,value\n2014/07/01 10:00,1\n").day_first is None


def test_a_daemon_asks_for_the_order_of_day_and_month_when_its_input_does_not_say(tmp_path):
    data = tmp_path / "us.csv"
    # (one date only: neither a day above 12 nor a change of date says which)
    data.write_text("timestamp,value\n" + "".join(
        f"07/01/2014 {i // 60}:{i % 60:02d},{i}\n" for i in range(300)))
    done = subprocess.run([*DAEMON, "--input", str(data), "--checkpoint", str(tmp_path / "a")],
                          capture_output=True, timeout=120)
    assert done.returncode == 78
    assert done.stderr.decode().strip().splitlines()[-1] == (
        "emstreamd: the input does not fit the configuration: the times are written like "
        "'07/01/2014 0:00', day or month first, and no day above 12 says which: set "
        "input.day_first")
    done = subprocess.run([*DAEMON, "--input", str(data), "--checkpoint", str(tmp_path / "b"),
                           "--set", "input.day_first=false"], capture_output=True, timeout=120)
    assert done.returncode == 0 and "rejected: none" in done.stderr.decode()
    assert checkpoint.load(tmp_path / "b").meta["layout"]["day_first"] is False


def test_a_header_names_columns_and_the_time_column_is_found():
    data = b"timestamp,value\n2014-07-01 00:00:00,10\n2014-07-01 00:05:00,11\n"
    layout = find_layout(data)
    assert layout == Layout(("timestamp", "value"), 1, 2, True, 0, (1,))
    parsed = parse_table(data, layout)
    assert parsed.rows.tolist() == [[10.0], [11.0]] and parsed.lines.tolist() == [2, 3]
    assert parsed.rejects == () and parsed.n_lines == 3
    assert parsed.time_text.tolist() == [b"2014-07-01 00:00:00", b"2014-07-01 00:05:00"]
    # By name, another time column, columns chosen by name; epoch milliseconds.
    data = b"load,when,temp\n1.5,1404172800000,20\n2.5,1404173100000,21\n"
    layout = find_layout(data, columns=["temp", "load"], timestamp="when")
    parsed = parse_table(data, layout)
    assert parsed.rows.tolist() == [[20.0, 1.5], [21.0, 2.5]]
    assert parsed.times.tolist() == [1404172800.0, 1404173100.0]
    # Without a header, a first field that is an ISO time is the time.
    layout = find_layout(b"2014-07-01T00:00:00 5 6\n")
    assert layout.names is None and layout.time_field == 0 and layout.value_fields == (1, 2)
    # Plain numbers have no layout; a header alone decides one.
    assert find_layout(b"1,2\n3,4\n") is None and find_layout(b"1\n") is None
    assert find_layout(b"timestamp,value\n").n_fields == 2


def test_a_date_column_takes_its_time_of_day_from_the_time_column_beside_it():
    """``Date,Time,Value``, as data loggers and spreadsheets export: the date alone was the
    time (no time step, so no season and a hold of 300 points), ``Time,Date,Value`` rejected
    every row as a bad timestamp, and whitespace-separated ``date time value`` lines lost
    their first line as a header."""
    whole = b"timestamp,value\n2014-07-01 23:50:00,1.5\n2014-07-02 00:00:00,2.5\n"
    expected = parse_table(whole, find_layout(whole))
    tables = {
        b"Date,Time,Value\n2014-07-01,23:50:00,1.5\n2014-07-02,00:00:00,2.5\n": (0, 1),
        b"Time,Date,Value\n23:50,2014-07-01,1.5\n00:00,2014-07-02,2.5\n": (1, 0),
        b"Date;Time;Value\n1/7/2014;23:50:00;1,5\n2/7/2014;00:00:00;2,5\n": (0, 1),
        b"date,hour,value\n7/1/2014,11:50 PM,1.5\n7/2/2014,12:00 AM,2.5\n": (0, 1),
        b"value,date,time\n1.5,2014-07-01,23:50:00.000\n2.5,2014-07-02,00:00:00.000\n": (1, 2),
        b"2014-07-01 23:50:00 1.5\n2014-07-02 00:00:00 2.5\n": (0, 1)}
    for data, (date, clock) in tables.items():
        layout = find_layout(data, day_first=b";" in data if b"/" in data else "auto")
        assert (layout.time_field, layout.clock_field) == (date, clock), data
        assert len(layout.value_fields) == 1 and Layout.from_dict(layout.to_dict()) == layout
        parsed = parse_table(data, layout)
        assert parsed.rows.tolist() == [[1.5], [2.5]], data
        assert parsed.times.tolist() == expected.times.tolist(), data
        # (the time as written: the date, a space, its time of day)
        assert parsed.time_text[1].startswith((b"2014-07-02 00:00", b"2/7/2014 00:00",
                                               b"7/2/2014 12:00 AM")), parsed.time_text
        # A block with a line the array pass leaves to the line parser: the same rows.
        messy = data + b"junk,junk\n"
        slow = parse_table(messy, layout)
        assert slow.times.tolist() == parsed.times.tolist() and len(slow.rejects) == 1
        assert slow.time_text.tolist() == parsed.time_text.tolist()
    assert find_layout(b"Date,Time,Value\n2014-07-01,23:50,1\n").describe() == (
        "table of 3 comma-separated fields, header on line 1; values: Value; time: Date + Time")
    # Whole times stay whole; dates with no time of day beside them stay dates; a time of day
    # without dates is no time column (as before).
    for data in (b"timestamp,time,value\n2014-07-01 23:50:00,12:00,1\n",
                 b"date,value\n2014-07-01,1\n2014-07-02,2\n",
                 b"date,time,value\n2014-07-01,soon,1\n"):
        assert find_layout(data).clock_field is None, data
    assert find_layout(b"12:30 5.0\n12:31 5.1\n").time_field is None
    # Times of day decided from the first lines read later ones too: an hour without its
    # leading zero, the day's end written 24:00 (the next midnight); an empty one is a bad
    # timestamp, not midnight.  (9:05 and 24:00 were rejected as bad timestamps, for good.)
    first = b"".join(b"2024-01-01,%02d:%02d,%d\n" % (10 + i // 60, i % 60, i) for i in range(50))
    data = (b"Date,Time,Value\n" + first + b"2024-01-01,24:00,1\n2024-01-02,9:05,2\n"
            b"2024-01-02,,3\n")
    layout = find_layout(data)
    assert layout.clock_field == 1
    for block in (data, data.replace(b"2024-01-02,,3\n", b"")):  # (line by line; as arrays)
        parsed = parse_table(block, layout)
        assert parsed.rows[50:].ravel().tolist() == [1.0, 2.0]
        assert parsed.times[50:].tolist() == parse_times(
            [b"2024-01-02 00:00", b"2024-01-02 09:05"]).tolist()
        assert parsed.time_text[51] == b"2024-01-02 09:05"
    assert [(r.line, r.reason) for r in parse_table(data, layout).rejects] == [
        (54, "bad timestamp")]
    # Durations beside dates (laps, call lengths) are no times of day: out of order, or
    # beyond a day's hours and minutes.
    rng = np.random.default_rng(0)
    laps = b"".join(b"2024-01-%02d,%02d:%02d,%d\n" % (1 + i // 10, rng.integers(0, 3),
                                                      rng.integers(0, 60), i) for i in range(50))
    assert find_layout(b"date,time,value\n" + laps).clock_field is None
    assert find_layout(b"date,lap,value\n2024-01-01,25:10,1\n").clock_field is None
    assert find_layout(b"date,lap,value\n2024-01-01,12:75,1\n").clock_field is None
    with pytest.raises(ValueError, match="a clock_field needs a time_field"):
        Layout(("a", "b"), 1, 2, True, None, (1,), clock_field=0)
    with pytest.raises(ValueError, match="a field used twice"):
        Layout(("a", "b", "c"), 1, 3, True, 0, (1, 2), clock_field=1)


def test_the_time_column_is_found_where_exporters_put_it(tmp_path):
    """Found only when named timestamp, time, date, datetime or ts, or first as written text:
    Prometheus' and Datadog's points (epoch, value; no header) were plain numbers whose first
    column was learned as a feature, collectd's "epoch" and a database dump's "created_at"
    were values, an "id" and Zabbix's epoch copy of the time were learned, and a Grafana
    "Download for Excel" file's "sep=," hint was its header."""
    rng = np.random.default_rng(0)
    start, step = 1_700_000_000.123, 15.0
    epochs = start + step * np.arange(30)
    values = 50 + rng.normal(size=30)
    iso = [str(np.datetime64(int(t), "s")).replace("T", " ") for t in epochs]
    tables = {
        "".join(f"{t:.3f}\t{v:.2f}\n" for t, v in zip(epochs, values)): (0, (1,)),
        "".join(f'{t * 1000:.0f},"{v:.2f}"\n' for t, v in zip(epochs, values)): (0, (1,)),
        "epoch,value\n" + "".join(f"{t:.3f},{v:.2f}\n" for t, v in zip(epochs, values)): (0, (1,)),
        "id,created_at,value\n" + "".join(
            f"{i + 1},{d},{v:.2f}\n" for i, (d, v) in enumerate(zip(iso, values))): (1, (2,)),
        "entity_id,state,last_changed\n" + "".join(
            f"sensor.t,{v:.2f},{d}+00:00\n" for d, v in zip(iso, values)): (2, (1,)),
        "".join(f"{d} {t:.0f} {v:.2f}\n" for d, t, v in zip(iso, epochs, values)): (0, (3,)),
        "sep=;\nZeit;Wert\n" + "".join(f"{d};{v:.2f}\n".replace(".", ",")
                                        for d, v in zip(iso, values)): (0, (1,))}
    for text, (time_field, value_fields) in tables.items():
        layout = find_layout(text.encode())
        assert (layout.time_field, layout.value_fields) == (time_field, value_fields), text[:80]
        parsed = parse_table(text.encode(), layout)
        assert parsed.rows[:, 0] == pytest.approx(np.round(values, 2)), text[:80]
        assert parsed.times == pytest.approx(np.floor(epochs) if "-" in text[:30] else epochs)
    # Numbers that only grow (a counter), stand outside 2000-2100 or come under another name
    # are no times: plain numbers as before.
    counter = 1.5e9 + np.cumsum(rng.exponential(1000.0, 30))
    for text in ("".join(f"{c:.0f},{v:.2f}\n" for c, v in zip(counter, values)),
                 "".join(f"{i},{v:.2f}\n" for i, v in enumerate(values)),
                 "bytes,value\n" + "".join(f"{t:.0f},{v:.2f}\n" for t, v in zip(epochs, values))):
        layout = find_layout(text.encode())
        assert layout is None or layout.time_field is None, text[:80]
    # The daemon: Prometheus' points as jq writes them have a time step, and one value.
    data = tmp_path / "points.tsv"
    data.write_text("".join(f"{start + 300.0 * i:.3f}\t{10 + np.sin(i / 20):.3f}\n"
                            for i in range(600)))
    done = subprocess.run([*DAEMON, "--input", str(data), "--checkpoint", str(tmp_path / "s"),
                           "--log-level", "INFO", "--no-output"], capture_output=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    err = done.stderr.decode()
    assert "input: table of 2 whitespace-separated fields; values: x1; time: x0" in err
    assert "a time step of 300 s" in err and "rejected: none" in err


def test_a_column_of_whole_numbers_with_digit_grouping_is_read_as_such():
    """Excel's #,##0 (and #.##0 saved in German) writes 856 beside 1,234 (1.234): a German
    file's 1.234 was read as 1.234, a thousand times too small, and a US tab file's 1,234 was
    rejected, so the model learned the values below 1,000 alone.  Told by the column: one
    separator that only ever stands before three digits, beside whole numbers, from all of
    the first block's lines (a series that starts high shows none in its first 50)."""
    high = [1234 + 10 * i for i in range(60)]  # (the first 60 lines above 1,000)
    numbers = high + [856, 1000, 12345, 999]
    stamps = [f"2024-01-01 {i // 12:02d}:{i % 12 * 5:02d}" for i in range(len(numbers))]
    german = "Zeit;Bytes\n" + "".join(f"{t};{n:,}\n".replace(",", ".")
                                      for t, n in zip(stamps, numbers))
    us_tab = "time\tbytes\n" + "".join(f"{t}\t{n:,}\n" for t, n in zip(stamps, numbers))
    us_csv = "time,bytes\n" + "".join(f'{t},"{n:,}"\n' for t, n in zip(stamps, numbers))
    for text, mark in ((german, "."), (us_tab, ","), (us_csv, ",")):
        layout = find_layout(text.encode())
        assert layout.grouping == (mark,) and Layout.from_dict(layout.to_dict()) == layout
        parsed = parse_table(text.encode(), layout)
        assert parsed.rows.ravel().tolist() == numbers and not len(parsed.rejects), text[:60]
    # A US locale's numbers in a semicolon file (Grafana 6): grouping told by 3,237.617;
    # the text column beside it is no value.
    data = b'"Series";"Time";"Value"\n' + b"".join(
        b'"web-01";"2024-01-01T01:%02d:00+01:00";%s\n' % (i, v)
        for i, v in enumerate([b"3,237.617", b"1,234", b"987.5"]))
    layout = find_layout(data)
    assert layout.value_fields == (2,) and layout.grouping == (",",)
    assert parse_table(data, layout).rows.ravel().tolist() == [3237.617, 1234.0, 987.5]
    # Where nothing tells (no whole number, or decimals of other lengths), nothing changes:
    # 1.234 in a semicolon table is 1.234; sadf's 12.34 and 0.125 decimals stay decimals.
    for cells, values in (([b"1.234", b"2.345"], [1.234, 2.345]),
                          ([b"856", b"1.234", b"12.5"], [856.0, 1.234, 12.5]),
                          ([b"0.125", b"1.250"], [0.125, 1.25])):
        data = b"Zeit;Wert\n" + b"".join(b"2024-01-01 00:%02d;%s\n" % (i, c)
                                         for i, c in enumerate(cells))
        layout = find_layout(data)
        assert layout.grouping is None
        assert parse_table(data, layout).rows.ravel().tolist() == values
    old = find_layout(german.encode()).to_dict()
    del old["grouping"]  # (a checkpoint's layout from before)
    assert Layout.from_dict(old).grouping is None
    with pytest.raises(ValueError, match="grouping must give"):
        Layout(("t", "v"), 1, 2, True, 0, (1,), grouping=(",", "."))


def test_a_percentage_is_read_as_its_number():
    """Grafana's and spreadsheets' formatted exports write 54.0% (or 54,5 %): every row was
    rejected as non-numeric (and a column of them beside another taken for text)."""
    data = (b"Time,web-01,web-02\n2024-01-01 01:05:00,54.0%,3\n2024-01-01 01:10:00,55 %,4\n"
            b"2024-01-01 01:15:00,100%,5\n2024-01-01 01:20:00,x%,6\n")
    layout = find_layout(data)
    assert layout.value_fields == (1, 2)
    parsed = parse_table(data, layout)
    assert parsed.rows.tolist() == [[54.0, 3.0], [55.0, 4.0], [100.0, 5.0]]
    assert [(r.line, r.reason) for r in parsed.rejects] == [(5, "non-numeric")]
    data = b"Zeit;CPU\n2024-01-01 01:05:00;54,5 %\n2024-01-01 01:10:00;1.234,5%\n"
    assert parse_table(data, find_layout(data)).rows.ravel().tolist() == [54.5, 1234.5]


def test_a_layout_whose_names_do_not_fit_its_fields_is_refused():
    """A hand-edited checkpoint's layout with fewer names than fields: emstream inspect died
    of an IndexError describing it (found by an attack helper)."""
    data = b"timestamp,value\n2024-01-01 00:00,5\n"
    layout = find_layout(data).to_dict()
    for names in (["timestamp"], "x", ["a", "b", "c"]):
        with pytest.raises(ValueError, match="names must give one name per field"):
            Layout.from_dict({**layout, "names": names})


def test_tab_and_semicolon_tables_are_read_like_comma_ones():
    """A TSV's times and names hold spaces, and a semicolon file (a spreadsheet's export) has
    one field per cell: a header with tabs, or semicolons and no comma, says so (every line
    of them was rejected)."""
    comma = b"timestamp,cpu load\n2014-07-01 00:00:00,5.5\n2014-07-01 00:05:00,6\n"
    expected = parse_table(comma, find_layout(comma))
    for sep in (b"\t", b";"):
        data = comma.replace(b",", sep)
        layout = find_layout(data)
        assert layout.sep == sep and layout.names == ("timestamp", "cpu load")
        parsed = parse_table(data, layout)
        assert parsed.rows.tolist() == expected.rows.tolist() == [[5.5], [6.0]]
        assert parsed.times.tolist() == expected.times.tolist()
        assert Layout.from_dict(layout.to_dict()) == layout
    # Checkpoints from before keep their comma; a separator no parser knows is refused.
    old = find_layout(comma).to_dict()
    del old["separator"]
    assert Layout.from_dict(old).sep == b","
    with pytest.raises(ValueError, match="separator must be one of"):
        Layout.from_dict({**old, "separator": ":"})
    # Whitespace tables are as before, tabs among their spaces included.
    assert find_layout(b"2014-07-01T00:00:00\t5 6\n").comma is False
    # psql's output, unaligned and aligned (a rule under the header, padded cells): every line
    # was rejected.
    for data in (b"ts|cpu load\n2014-07-01 00:00:00|5.5\n2014-07-01 00:05:00|6\n(2 rows)\n",
                 b"         ts          | cpu load \n---------------------+----------\n"
                 b" 2014-07-01 00:00:00 |      5.5\n 2014-07-01 00:05:00 |        6\n"):
        layout = find_layout(data)
        assert layout.sep == b"|" and layout.names == ("ts", "cpu load"), data
        parsed = parse_table(data, layout)
        assert parsed.rows.tolist() == expected.rows.tolist()
        assert parsed.times.tolist() == expected.times.tolist()
        assert len(parsed.rejects) == 1  # (the rule, or psql's row count)


def test_quoted_fields_are_read_as_rfc_4180_has_them():
    """R's write.csv quotes the header and every text field, spreadsheets and QUOTE_ALL writers
    every field: each line was rejected ("bad timestamp", "non-numeric")."""
    plain = b"timestamp,cpu load\n2014-07-01 00:00:00,5.5\n2014-07-01 00:05:00,6\n"
    expected = parse_table(plain, find_layout(plain))
    r_style = b'"timestamp","cpu load"\n"2014-07-01 00:00:00",5.5\n"2014-07-01 00:05:00",6\n'
    quote_all = (b'"timestamp";"cpu load"\n"2014-07-01 00:00:00";"5.5"\n'
                 b'"2014-07-01 00:05:00" ; "6"\n')
    for data in (r_style, quote_all):
        layout = find_layout(data)
        assert layout.names == ("timestamp", "cpu load") and layout.time_field == 0
        parsed = parse_table(data, layout)
        assert parsed.rows.tolist() == expected.rows.tolist() == [[5.5], [6.0]]
        assert parsed.times.tolist() == expected.times.tolist()
        assert parsed.time_text.tolist() == expected.time_text.tolist()
        assert len(parsed.rejects) == 0
    # Semicolons separate cells where the comma is the decimal mark.
    decimal = b"timestamp;cpu load\n2014-07-01 00:00:00;5,5\n2014-07-01 00:05:00;6\n"
    parsed = parse_table(decimal, find_layout(decimal))
    assert parsed.rows.tolist() == [[5.5], [6.0]] and len(parsed.rejects) == 0
    # A quoted field may hold the separator and doubled quotes; a quoted value that is not one
    # number is non-numeric (one with digit grouping is one: below; "1,234.5" says the column
    # groups with commas, so "1,234" is 1234 too), a line that does not close its quote a
    # wrong field count.
    data = (b'host,value\n"web,3",1.5\n"say ""hi""",2\n"db",   "3"\nweb,"1,234"\n'
            b'web,"1 2"\nweb,"1,234.5"\n"web,4\n')
    parsed = parse_table(data, find_layout(data, key="host"))
    assert parsed.rows.ravel().tolist() == [1.5, 2.0, 3.0, 1234.0, 1234.5]
    assert parsed.keys.tolist() == [b"web,3", b'say "hi"', b"db", b"web", b"web"]
    assert [(r.line, r.reason) for r in parsed.rejects] == [
        (6, "non-numeric"), (8, "wrong field count")]


def test_a_decimal_comma_outside_a_semicolon_table_is_a_reject_of_its_own():
    """German Excel's "Text (Tab delimited)" writes 3,250 for 3.25: each such line was a
    "wrong field count" (the comma read as a separator), and the whole numbers beside them
    were learned alone, a biased model with a reason pointing elsewhere (found by an attack
    helper).  The reject now says what it is (a column that groups digits with commas,
    1,006.25, reads 3,250 as 3250, as before)."""
    for sep in (b"\t", b"|"):
        data = (b"timestamp\tvalue\n2024-01-01 00:00\t3,250\n2024-01-01 00:05\t4\n"
                b"2024-01-01 00:10\t-0,5\n2024-01-01 00:15\t1006.25\n").replace(b"\t", sep)
        parsed = parse_table(data, find_layout(data))
        assert parsed.rows.tolist() == [[4.0], [1006.25]]
        assert [(r.line, r.reason) for r in parsed.rejects] == [
            (2, "decimal comma"), (4, "decimal comma")]


def test_numbers_with_digit_grouping_are_read_as_spreadsheets_write_them(tmp_path):
    """A spreadsheet saves 1006.29 as displayed: "1,006.29" in a comma CSV, 1,006.29 in a tab
    one, 1.006,29 in a semicolon one.  Every value from 1,000 up was rejected as non-numeric,
    so the model learned the small values alone (and a column of them beside another was
    taken for text, and dropped)."""
    tables = {
        b'timestamp,revenue,count\n2024-01-01 00:00,"1,006.29",5\n'
        b'2024-01-01 00:05,"12,345.00",6\n2024-01-01 00:10,999.5,"-1,000,000"\n':
            [[1006.29, 5.0], [12345.0, 6.0], [999.5, -1e6]],
        b"timestamp\trevenue\n2024-01-01 00:00\t1,006.29\n2024-01-01 00:05\t2,345,678\n"
        b"2024-01-01 00:10\t999.5\n2024-01-01 00:15\t1,5\n":
            [[1006.29], [2345678.0], [999.5]],
        b'Zeit;Umsatz\n2024-01-01 00:00;1.006,29\n2024-01-01 00:05;"12,5"\n'
        b"2024-01-01 00:10;1.234.567\n2024-01-01 00:15;1.234\n2024-01-01 00:20;1.23,4\n":
            [[1006.29], [12.5], [1234567.0], [1234.0]]}  # (the column groups with dots)
    for data, rows in tables.items():
        parsed = parse_table(data, find_layout(data))
        assert parsed.rows.tolist() == rows, data
        # (a tab table's 1,5 and a semicolon table's 1.23,4 are neither way of writing one
        # number: rejected as before)
        assert len(parsed.rejects) == (b"1,5\n" in data or b"1.23,4" in data), data
    # One separator alone stays as it was: a comma CSV's quoted "1,234" or "0,125" may be a
    # decimal comma (pandas' to_csv(decimal=",") writes them so), rejected as non-numeric
    # rather than read 1000 times too large; a leading zero is no group.
    data = (b'timestamp,value\n2024-01-01 00:00,"0,125"\n2024-01-01 00:05,"1,234"\n'
            b'2024-01-01 00:10,"01,234.5"\n2024-01-01 00:15,"2,5"\n2024-01-01 00:20,7\n')
    layout = find_layout(data)
    parsed = parse_table(data, layout)
    assert layout.grouping is None
    assert parsed.rows.tolist() == [[7.0]] and len(parsed.rejects) == 4
    # Through the daemon: every row learned, none rejected.
    lines = ["timestamp,revenue"] + [
        f'2024-01-01 {i // 12:02d}:{i % 12 * 5:02d},"{500 + 10 * i:,.2f}"' for i in range(288)]
    path = tmp_path / "revenue.csv"
    path.write_text("\n".join(lines) + "\n")
    done = subprocess.run([*DAEMON, "--input", str(path), "--checkpoint", str(tmp_path / "s"),
                           "--no-output"], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    assert "288 points in" in done.stderr.decode()
    assert "rejected: none" in done.stderr.decode()


def test_quoting_the_csv_module_cannot_read_is_a_rejected_line_not_a_crash():
    """A lone carriage return after a closing quote, or a quoted field beyond the csv module's
    128 KiB, raised _csv.Error out of the parser: the daemon died on that line at every
    restart, and a header line like that killed it at start-up."""
    data = b'a,b\n1,2\n"3"\r,4\n"' + b"9" * 200_000 + b'",5\n6,7\n'
    parsed = parse_table(data, find_layout(data), max_line_bytes=1_000_000)
    assert parsed.rows.tolist() == [[1.0, 2.0], [6.0, 7.0]]
    assert [(r.line, r.reason) for r in parsed.rejects] == [
        (3, "wrong field count"), (4, "wrong field count")]
    header = b'"a"\r,b\n1,2\n3,4\n'
    assert parse_table(header, find_layout(header)).rows.tolist() == [[1.0, 2.0], [3.0, 4.0]]


@pytest.mark.parametrize("text", [
    b"My report\na,b,c\nERROR sensor offline\n" + b"1,2,3\n" * 60,  # (junk under the header)
    b"My report\nGroup A,,Group B\na,b,c\n" + b"1,2,3\n" * 60,  # (a header of groups)
    b"ab cd\nab cd ef\n" * 2500])  # (no table at all: each line a title of the next)
def test_what_is_not_a_title_over_a_header_is_read_as_before(text):
    assert find_layout(text) is None


def test_a_title_line_above_the_header_is_passed_over(tmp_path):
    """sysstat (mpstat, sar, pidstat, iostat) prints "Linux 5.15.0 (host) 03/01/2024
    _x86_64_ (2 CPU)" and a blank line above its table, and reports put their name above a
    CSV: the title was taken for a header that did not fit, and every row was rejected."""
    header = b"12:00:01 AM  CPU    %usr   %nice    %sys %iowait   %idle"
    rows = b"".join(b"12:00:%02d AM  all    %d.01    0.00    1.%d0    0.00   9%d.49\n"
                    % (i % 60, i % 7, i % 5, i % 9) for i in range(300))
    data = (b"Linux 5.15.0-91-generic (web-1) \t03/01/2024 \t_x86_64_\t(2 CPU)\n\n" + header
            + b"\n" + rows + b"Average:     all    3.01    0.00    1.20    0.00   95.79\n")
    layout = find_layout(data)
    assert layout.header_line == 3 and layout.column_names() == [
        "%usr", "%nice", "%sys", "%iowait", "%idle"]
    parsed = parse_table(data, layout)
    assert parsed.rows.shape == (300, 5) and parsed.rows[1].tolist() == [1.01, 0, 1.1, 0, 91.49]
    assert [(r.line, r.reason) for r in parsed.rejects] == [
        (1, "wrong field count"), (2, "blank"), (304, "wrong field count")]
    report = b"Monthly report, plant 7\ntime,flow,pressure\n2024-03-01 00:00,1.5,2.5\n"
    assert find_layout(report).column_names() == ["flow", "pressure"]
    # Under a title, a line of numbers is data, not a header: ping's first reply
    ping = (b"PING 1.1.1.1 (1.1.1.1) 56(84) bytes of data.\n"
            b"64 bytes from 1.1.1.1: icmp_seq=1 ttl=57 time=11.2 ms\n"
            b"64 bytes from 1.1.1.1: icmp_seq=2 ttl=57 time=11.4 ms\n")
    assert find_layout(ping) is None
    done = subprocess.run([*DAEMON, "--checkpoint", str(tmp_path / "s"), "--no-output"],
                          input=data, capture_output=True, timeout=120)
    assert done.returncode == 0 and "300 points in" in done.stderr.decode()


def test_comment_lines_are_no_header(tmp_path):
    """Lines starting with # are comments (Prometheus' exposition, gnuplot's data files,
    numpy's savetxt header): a first one was taken for the header, and every line after it
    rejected as of the wrong field count (`curl -s host:9100/metrics | grep node_load1`)."""
    scrape = b"".join(b"# HELP node_load1 1m load average.\n# TYPE node_load1 gauge\n"
                      b"node_load1 %d.%02d\n" % (1 + i % 2, i % 97) for i in range(300))
    layout = find_layout(scrape)
    assert layout.column_names() == ["%d.%02d" % (1, 0)]  # (its first line, as any such)
    parsed = parse_table(scrape, layout)
    assert parsed.rows.shape == (299, 1) and parsed.rows[0, 0] == 2.01
    assert {r.reason for r in parsed.rejects} == {"wrong field count"}  # the comments
    # numpy's savetxt(header=...): the comment right above the data names the columns
    for header in (b"# temp,load", b"# temp load", b"#temp,load"):
        sep = b"," if b"," in header else b" "
        data = header + b"\n" + b"".join(b"%d.5%s%d\n" % (i, sep, i % 7) for i in range(50))
        assert find_layout(data, columns=["load"]).value_fields == (1,), header
    # ... unless it does not fit them: a note, left out (numbers stay plain numbers), or the
    # next line is the header
    assert find_layout(b"# sensor 7, started 2024-01-01\n# units: C\n1.5\n2.5\n") is None
    assert find_layout(b"# a,b\ntime,load\n2024-01-01 00:00,1.5\n").column_names() == ["load"]
    # A header whose first column is named # (a row number) is read as before.
    numbered = b"#,time,value\n1,2024-01-01 00:00,5\n2,2024-01-01 00:05,6\n"
    assert find_layout(numbered).column_names() == ["value"]
    path = tmp_path / "scrape.txt"
    path.write_bytes(scrape)
    done = subprocess.run([*DAEMON, "--input", str(path), "--checkpoint", str(tmp_path / "s"),
                           "--no-output"], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert "299 points in" in done.stderr.decode()
    # A live stream whose first block is comments alone waits for a data line to decide.
    live = subprocess.Popen([*DAEMON, "--checkpoint", str(tmp_path / "live"), "--no-output"],
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    comments, rest = scrape.split(b"\nnode_load1", 1)
    live.stdin.write(comments + b"\n")
    live.stdin.flush()
    time.sleep(1.0)  # (read as a block of its own)
    live.stdin.write(b"node_load1" + rest)
    live.stdin.close()
    assert live.wait(timeout=120) == 0
    assert "299 points in" in live.stderr.read().decode()


def test_metric_names_taking_turns_without_times_are_said_to_be_several_series(tmp_path):
    """A scrape of two metrics (`grep -E 'node_load1|node_memory'`) has no time column, so the
    warning about several series in one stream (it needed times that repeat) never came: the
    load and the free bytes were learned as one series without a word."""
    scrape = b"".join(b"# HELP node_load1 1m load average.\nnode_load1 0.%02d\n"
                      b"node_memory_MemAvailable_bytes %d.5e+09\n" % (i % 97, 3 + i % 2)
                      for i in range(200))
    assert series_columns(scrape, find_layout(scrape)) == [("node_load1", 2)]
    # A status column stays put from line to line: no warning.
    status = b"status value\n" + b"".join(b"%s %d.5\n" % (b"WARN" if 30 <= i < 36 else b"OK",
                                                             i % 9) for i in range(100))
    assert series_columns(status, find_layout(status)) == []
    path = tmp_path / "scrape.txt"
    path.write_bytes(scrape)
    done = subprocess.run([*DAEMON, "--input", str(path), "--checkpoint", str(tmp_path / "s"),
                           "--no-output"], capture_output=True, timeout=120)
    assert done.returncode == 0
    assert "several series in one stream? They are learned as one; input.key: node_load1" \
        in done.stderr.decode()
    done = subprocess.run([*DAEMON, "--input", str(path), "--checkpoint", str(tmp_path / "k"),
                           "--no-output", "--set", "input.key=node_load1"],
                          capture_output=True, timeout=120)
    assert done.returncode == 0 and "2 keys" in done.stderr.decode()


def test_text_columns_are_not_values_unless_named():
    """A host or status column beside the values made every row non-numeric."""
    data = b"timestamp,host,status,value\n2014-07-01 00:00:00,web-1,OK,5\n"
    layout = find_layout(data)
    assert layout.column_names() == ["value"]
    assert parse_table(data, layout).rows.tolist() == [[5.0]]
    assert find_layout(data, columns=["status", "value"]).value_fields == (2, 3)
    # A missing value or a NaN is not text; a decimal comma is a number where it is one.
    assert find_layout(b"timestamp,a,b\n2014-07-01 00:00:00,,nan\n").value_fields == (1, 2)
    assert find_layout(b"timestamp;a;b\n2014-07-01 00:00:00;5,5;x\n").value_fields == (1,)
    # A first data line with no number is junk (a reject), not a table of text.
    assert find_layout(b"timestamp,value\ntimestamp,value\n").value_fields == (1,)
    # A missing first reading (N/A, NA, null) is not text: the column stays a value (judged
    # by the first line alone it was dropped from the model for good); a host is text in
    # most lines, though one host's name is a number.
    lines = [b"2014-07-01 00:0%d:00,%s,%s,%d" % (i, host, mem, i)
             for i, (host, mem) in enumerate([(b"web-1", b"N/A"), (b"7", b"NA"), (b"web-1", b"5"),
                                              (b"web-2", b"null"), (b"web-1", b"6")])]
    layout = find_layout(b"timestamp,host,mem,cpu\n" + b"\n".join(lines) + b"\n")
    assert layout.column_names() == ["mem", "cpu"]
    # A first line alone (a live stream's) whose status says N/A: text, not a value (a
    # value, every later "ok" was rejected, for good).
    assert find_layout(b"timestamp,status,value\n2024-01-01 00:00,N/A,5.0\n"
                       ).column_names() == ["value"]


def test_a_header_in_the_windows_code_page_is_a_header():
    """Excel on Windows saves "CSV (comma delimited)" in its code page: a header naming
    "Température" was not UTF-8, so it was no header, and every line was rejected."""
    data = "timestamp,Température\n2014-07-01 00:00:00,5\n".encode("cp1252")
    layout = find_layout(data)
    assert layout.names == ("timestamp", "Température") and layout.time_field == 0
    assert parse_table(data, layout).rows.tolist() == [[5.0]]
    # A first line of binary junk is still no header: the numbers after it are plain.
    assert find_layout(b"\xff\xfe\n1\n2\n") is None


def test_an_empty_field_is_a_missing_value():
    """A table row with an empty value field has all its fields: it is not a number (it was a
    "wrong field count")."""
    data = b"timestamp,a,b\n2014-07-01 00:00:00,1,\n2014-07-01 00:05:00,1,2\n"
    parsed = parse_table(data, find_layout(data))
    assert parsed.rows.tolist() == [[1.0, 2.0]]
    assert [(r.line, r.reason) for r in parsed.rejects] == [(2, "non-numeric")]


def test_a_byte_order_mark_is_not_part_of_the_first_line():
    """Spreadsheets' "CSV UTF-8" starts with a byte order mark: it was part of the first
    column's name (input.timestamp or input.columns by that name then failed) or made the
    first row non-numeric."""
    import io

    from emstream.table import parse_stream

    table = b"\xef\xbb\xbfvalue,timestamp\n5.5,2014-07-01 00:00:00\n"
    parsed = list(parse_stream(io.BytesIO(table), columns=["value"]))
    assert parsed[0].rows.tolist() == [[5.5]] and len(parsed[0].rejects) == 0
    plain = list(parse_stream(io.BytesIO(b"\xef\xbb\xbf1.5\n2.5\n")))
    assert plain[0].rows.tolist() == [[1.5], [2.5]] and len(plain[0].rejects) == 0


def test_an_unnamed_column_is_a_row_index_not_a_value():
    """pandas' to_csv and R's write.csv write the row index as a first column with no name:
    it was learned as a second feature (a counter, so every point drifted)."""
    pandas = b",value\n0,0.5\n1,0.25\n"
    r_names = b'"","value"\n"1",0.5\n"2",0.25\n'
    for data in (pandas, r_names):
        layout = find_layout(data)
        assert layout.value_fields == (1,) and layout.column_names() == ["value"]
        assert parse_table(data, layout).rows.tolist() == [[0.5], [0.25]]
    # An unnamed time index is still the time; a column named by input.columns is a value.
    assert find_layout(b",value\n2014-07-01 00:00:00,0.5\n").time_field == 0
    assert find_layout(pandas, columns=[0, 1]).value_fields == (0, 1)


def test_bad_rows_of_a_table_are_rejected_with_their_reason():
    data = (b"timestamp,value\n2014-07-01 00:00:00,1\nyesterday,2\n2014-07-01 00:10:00,x\n"
            b"2014-07-01 00:15:00\n\n2014-07-01 00:20:00,nan\n2014-07-01 00:25:00,5\n")
    parsed = parse_table(data, find_layout(data))
    assert parsed.rows.ravel().tolist() == [1.0, 5.0] and parsed.lines.tolist() == [2, 8]
    assert [(r.line, r.reason) for r in parsed.rejects] == [
        (3, "bad timestamp"), (4, "non-numeric"), (5, "wrong field count"), (6, "blank"),
        (7, "non-finite")]
    # Each reject carries its line as written (old code: "x" for the value, no time).
    assert [r.text for r in parsed.rejects] == [
        "yesterday,2", "2014-07-01 00:10:00,x", "2014-07-01 00:15:00", "",
        "2014-07-01 00:20:00,nan"]
    data = (b'timestamp,a,b\n2024-01-01 00:00:00,1,2\n2024-01-01 00:05:00,,3\n'
            b'2024-01-01 00:10:00,"1,5",3\n')
    parsed = parse_table(data, find_layout(data), first_line=1)
    assert [(r.line, r.reason, r.text) for r in parsed.rejects] == [
        (3, "non-numeric", "2024-01-01 00:05:00,,3"),
        (4, "non-numeric", '2024-01-01 00:10:00,"1,5",3')]


def test_a_flood_of_junk_in_a_table_is_rejected_in_bulk(monkeypatch):
    """Blank lines and lines with the wrong number of fields are found for the whole block at
    once: a flood of them never reaches the per-line split (benchmarks/bench_parser.py has
    the time per MB)."""
    from emstream import table

    header = b"timestamp,value\n"
    layout = find_layout(header + b"2014-07-01 00:00:00,1\n")
    # The lines parsed one by one all reach parse_lines in one block: count them there.
    parse = table.parse_lines
    calls = []
    monkeypatch.setattr(table, "parse_lines",
                        lambda data, **kw: calls.extend(data.splitlines()) or parse(data, **kw))
    for junk in (b"\n", b"\r\n", b"x\n", b"a,b,c\n", b"  \t\n"):
        data = junk * 50_000 + b"2014-07-01 00:00:00,7\n" + b"\xff\n"
        parsed = parse_table(data, layout, first_line=2)
        reason = "blank" if not junk.strip() else "wrong field count"
        assert parsed.reject_counts() == {reason: 50_001 if reason != "blank" else 50_000,
                                          **({"wrong field count": 1} if reason == "blank"
                                             else {})}
        assert parsed.rows.ravel().tolist() == [7.0] and parsed.lines.tolist() == [50_002]
        assert parsed.rejects[-1] == (50_003, "wrong field count", "\ufffd")
        assert len(calls) == 1, (junk, len(calls))  # the one valid line
        calls.clear()


def test_unknown_columns_are_a_layout_error():
    with pytest.raises(LayoutError, match="'load' is not a column"):
        find_layout(b"timestamp,value\n2014-07-01,1\n", columns=["load"])
    with pytest.raises(LayoutError, match="input.timestamp 5 out of range"):
        find_layout(b"timestamp,value\n2014-07-01,1\n", timestamp=5)
    # A name the header gives twice was read from its first column, silently.
    with pytest.raises(LayoutError, match="'a' names 2 columns of the header"):
        find_layout(b"a,a,b\n1,2,3\n", columns=["a"])
    assert find_layout(b"a,a,b\n1,2,3\n", columns=["b"]).value_fields == (2,)
    # The value column named as the time: the text columns were taken as the values, and
    # every line was rejected, exit 0 (found by an attack helper).
    table = b"timestamp,value,host\n2024-01-01 00:00:00,10.1,a\n2024-01-01 00:05:00,9.8,b\n"
    with pytest.raises(LayoutError, match="input.timestamp 'value' names a column of numbers"):
        find_layout(table, timestamp="value")
    assert find_layout(table, timestamp="timestamp").value_fields == (1,)
    # An epoch time column whose first values are missing is no such mistake.
    assert find_layout(b"t,v\n1700000000,NA\n", timestamp="t").value_fields == (1,)
    assert find_layout(b"t,v,h\n1700000000,,a\n1700000300,,b\n", timestamp="t") is not None


@pytest.mark.parametrize("setting, message", [
    ("input.timestamp=stamp", "input.timestamp 'stamp' is not a column (no header)"),
    ("input.timestamp=3", "input.timestamp 3 out of range for 1 fields per line"),
    ("input.columns=[load]", "input.columns names columns, but the input has no header line"),
])
def test_settings_the_input_does_not_fit_stop_the_daemon_in_one_line(tmp_path, setting,
                                                                      message):
    """Columns named or numbered that the first lines do not have: exit 78 and one line saying
    so (it was a LayoutError's traceback, exit 1), before anything is learned."""
    (tmp_path / "x.txt").write_text("".join(f"{v}\n" for v in range(50)))
    done = subprocess.run([*DAEMON, "--input", str(tmp_path / "x.txt"), "--checkpoint",
                           str(tmp_path / "s"), "--no-output", "--set", setting],
                          capture_output=True, timeout=60)
    err = done.stderr.decode()
    assert done.returncode == 78 and "Traceback" not in err, err
    assert err.splitlines()[-1] == f"emstreamd: the input does not fit the configuration: {message}"
    assert not list((tmp_path / "s").glob("checkpoint-*"))


# ---------------------------------------------------------------------- features
def test_features_are_causal_and_a_restart_continues_them_exactly():
    rng = np.random.default_rng(0)
    x = np.sin(2 * np.pi * np.arange(3000) / 48)[:, None] + 0.1 * rng.normal(size=(3000, 1))
    times = 1.4e9 + 1800.0 * np.arange(3000)
    settings = dict(lags=2, season="auto", volatility=True, calendar=True)
    whole = TemporalFeatures(**settings).transform(x, times)
    pieces, tf = [], TemporalFeatures(**settings)
    for start in range(0, 3000, 700):
        pieces.append(tf.transform(x[start:start + 700], times[start:start + 700]))
        tf = TemporalFeatures.from_state(json.loads(json.dumps(tf.state())))
    np.testing.assert_array_equal(np.vstack(pieces), whole)
    assert tf.season_ == 48  # a day of 30-minute points, from the timestamps
    # Causal: changing the future leaves the past's features alone.
    y = x.copy()
    y[2000:] += 100.0
    np.testing.assert_array_equal(TemporalFeatures(**settings).transform(y, times)[:2000],
                                  whole[:2000])
    # Columns: target (x, volatility), context (2 lags, the season, 4 calendar).
    assert whole.shape == (3000, 9) and tf.target_columns(1) == [0, 1]
    np.testing.assert_array_equal(whole[100:, 2], x[99:-1, 0])
    # The season: the median of the three points around t - 48 (all before t).
    np.testing.assert_array_equal(whole[100:, 4],
                                  np.median([x[51:-49, 0], x[52:-48, 0], x[53:-47, 0]], axis=0))


def test_with_times_the_season_is_a_span_of_time_across_outages_and_dropped_rows():
    """The row a season before is the row a day earlier in time, however many rows went
    missing in between; the features still continue exactly across blocks and restarts."""
    rng = np.random.default_rng(4)
    n = 3000
    x = np.sin(2 * np.pi * np.arange(n) / 48)[:, None] + 0.1 * rng.normal(size=(n, 1))
    times = 1.4e9 + 1800.0 * np.arange(n)
    kept = rng.random(n) > 0.05  # 5% of the rows dropped ...
    kept[1000:1014] = False  # ... and a 7-hour outage
    rows = np.flatnonzero(kept)
    settings = dict(lags=0, season="auto", volatility=False)
    season = TemporalFeatures(**settings).transform(x[rows], times[rows])[:, 1]
    # Where the three rows around a day earlier are all there, the context is their median.
    whole = np.r_[np.zeros(49, dtype=bool), kept[:-49] & kept[1:-48] & kept[2:-47]]
    exact = whole[rows]
    assert exact.mean() > 0.8
    a_day_before = np.median([x[rows - 49, 0], x[rows - 48, 0], x[rows - 47, 0]], axis=0)
    np.testing.assert_array_equal(season[exact], a_day_before[exact])
    # Counted in rows, most of those contexts were off by the rows dropped since.
    counted = TemporalFeatures(**settings).transform(x[rows])[:, 1]
    assert (counted[exact] != a_day_before[exact]).mean() > 0.5
    # Blocks and restarts do not change them, with times that repeat, step back or come
    # far denser than the typical step.
    t = times[rows].copy()
    t[500:520] = t[500]  # a repeated time
    t[900] -= 7200.0  # a step back
    t[1500:1800] = t[1500] + np.arange(300.0)  # a burst a second apart
    whole = TemporalFeatures(**settings).transform(x[rows], t)
    pieces, tf = [], TemporalFeatures(**settings)
    for start in range(0, rows.size, 333):
        pieces.append(tf.transform(x[rows][start:start + 333], t[start:start + 333]))
        tf = TemporalFeatures.from_state(json.loads(json.dumps(tf.state())))
    np.testing.assert_array_equal(np.vstack(pieces), whole)
    assert np.isfinite(whole).all() and len(tf.state()["history"]) <= 2 * (48 + 1)
    # A damaged clock is refused, not used.
    for damage in ({"clock": [float("nan")] * len(tf.state()["history"])}, {"clock": [0.0]},
                   {"period": -1.0}, {"start": None}):
        with pytest.raises(ValueError, match="temporal features state"):
            TemporalFeatures.from_state({**tf.state(), **damage})


def test_irregular_sampling_is_no_gap_but_an_outage_is():
    """Rows at random times (exponential steps: one in six exceeds three median steps) keep
    their previous value in the score; only the row after a 5-hour outage loses it."""
    rng = np.random.default_rng(7)
    steps = rng.exponential(300.0, size=3000)
    steps[2000] = 5 * 3600.0
    times = 1.4e9 + np.cumsum(steps)
    x = np.sin(2 * np.pi * times / 86400.0)[:, None]
    tf = TemporalFeatures(lags=1, season="auto", volatility=False)
    tf.transform(x[:100], times[:100])
    assert np.mean(np.diff(times[:100]) > 3 * np.median(np.diff(times[:100]))) > 0.05
    tf.transform(x[100:], times[100:])
    assert np.flatnonzero(tf.stale_).tolist() == [2000 - 100]
    assert tf.period_ == 86400.0


def _alerts_with_outages(tmp_path, outages):
    """A daily series of 30 days with an in-range spike (row returned), run whole and with
    the rows ``outages`` (slices) cut out: the alerts of each, as rows of the whole series,
    and which rows were kept."""
    rng = np.random.default_rng(5)
    n = 30 * DAY
    x = _seasonal(rng, n)
    spike = 22 * DAY + DAY // 2 + DAY // 4
    x[spike] = 10.9  # in range, at the trough
    kept = np.ones(n, dtype=bool)
    for outage in outages:
        kept[outage] = False
    alerts = {}
    for name, rows in (("whole", np.arange(n)), ("outages", np.flatnonzero(kept))):
        stamps = np.array(1.7e9 + STEP * rows, dtype="datetime64[s]")
        data = tmp_path / f"{name}.csv"
        data.write_text("timestamp,value\n" + "".join(
            f"{str(s).replace('T', ' ')},{v:.4f}\n" for s, v in zip(stamps, x[rows])))
        done = subprocess.run([*DAEMON, "--input", str(data), "--checkpoint",
                               str(tmp_path / name)], capture_output=True, timeout=300)
        assert done.returncode == 0, done.stderr.decode()
        alerts[name] = rows[_flags(done.stdout.decode())[0]].tolist()
    return alerts, spike, kept


def test_an_outage_raises_no_alert_when_the_data_resume(tmp_path):
    """A daily series with a spike, run whole and with two outages (7 hours, and 31 hours:
    not whole days): the outages add no alert; the rows after each compare with the same
    time of an earlier day, not with the value before the outage or the rows a day back."""
    alerts, spike, _ = _alerts_with_outages(tmp_path, [
        slice(12 * DAY + DAY // 3, 12 * DAY + DAY // 3 + 42),  # 7 hours
        slice(16 * DAY + DAY // 5, 16 * DAY + DAY // 5 + 186)])  # 31 hours
    assert spike in alerts["whole"]
    assert alerts["outages"] == alerts["whole"]


def test_an_outage_of_days_raises_no_alert_when_the_data_resume(tmp_path):
    """An outage longer than the seasons the context reaches back (four and a half days): the
    first day after it has no row near a day (or three) before it, and took the outage's edge
    as its season, one value for a whole day: 68-211 nats of surprise and a false alert.
    That day is scored without its season; the spike two days later is still found."""
    alerts, spike, kept = _alerts_with_outages(tmp_path, [
        slice(16 * DAY + DAY // 5, 16 * DAY + DAY // 5 + 9 * DAY // 2)])
    assert spike in alerts["whole"]
    assert alerts["outages"] == [a for a in alerts["whole"] if kept[a]]


def test_one_odd_point_does_not_make_the_next_season_look_odd():
    """The season context is a median of three: a spike at t shows in no context a season
    later, and a level shift shows there on the point the raw value would."""
    x = np.tile(np.sin(2 * np.pi * np.arange(24) / 24), 6)[:, None]
    x[30] += 5.0  # a spike in the second day
    season = TemporalFeatures(lags=0, season=24, volatility=False).transform(x)[:, 1]
    np.testing.assert_allclose(season[48:], np.median([x[23:-25, 0], x[24:-24, 0],
                                                       x[25:-23, 0]], axis=0))
    assert np.abs(season[54] - x[30, 0] + 5.0) < 0.3  # the spike's time, a day later
    step = np.r_[np.zeros(50), np.ones(50)][:, None]
    shifted = TemporalFeatures(lags=0, season=24, volatility=False).transform(step)[:, 1]
    assert shifted[73] == 0.0 and shifted[74:].min() == 1.0


def test_the_season_is_found_from_the_autocorrelation_or_not_at_all():
    rng = np.random.default_rng(1)
    t = np.arange(2000)
    assert find_season(np.sin(2 * np.pi * t / 37) + 0.2 * rng.normal(size=2000)) == 37
    assert find_season(rng.normal(size=2000)) is None
    assert find_season(np.cumsum(rng.normal(size=2000))) is None  # a random walk
    assert find_season(np.ones(500)) is None


# ---------------------------------------------------------------------- score
def test_the_score_is_calibrated_the_same_on_any_scale_and_shape():
    rng = np.random.default_rng(2)
    for surprise in (rng.normal(size=20_000), 1e6 + 50 * rng.gumbel(size=20_000),
                     rng.exponential(size=20_000)):
        scores = TailCalibrator().score(surprise)[2000:]
        for level in (0.9, 0.99, 0.999):
            assert abs(np.mean(scores >= level) - (1 - level)) < 0.35 * (1 - level) + 2e-4


def test_the_score_keeps_its_rate_when_fed_mini_batch_by_mini_batch():
    """As the daemon feeds it (each batch against the history before it), on single-mode
    surprises, including a 1-D Gaussian's (gamma, shape 0.5): the README's 1.0-1.5x of the
    nominal rate at 0.999 (benchmarks/bench_calibration.py prints the deeper levels)."""
    rng = np.random.default_rng(5)
    for surprise in (rng.exponential(size=300_000), rng.gamma(0.5, size=300_000),
                     rng.gumbel(size=300_000)):
        calibrator = TailCalibrator()
        scores = np.concatenate([calibrator.score(surprise[i:i + 1000])
                                 for i in range(0, surprise.size, 1000)])[5000:]
        for level, low, high in ((0.99, 0.9, 1.2), (0.999, 0.9, 1.8)):
            assert low <= np.mean(scores >= level) / (1 - level) <= high, level


def test_episodes_hold_across_batches_and_restarts():
    scores = np.zeros(1000)
    scores[[100, 150, 500, 520]] = 0.99999
    whole = Episodes(threshold=0.9999, hold=300).update(scores)
    assert np.flatnonzero(whole.flags).tolist() == [100, 500]
    assert whole.scores[150] == pytest.approx(0.5 * 0.99999)
    episodes, flags = Episodes(threshold=0.9999, hold=300), []
    for start in range(0, 1000, 130):
        flags += (start + np.flatnonzero(episodes.update(scores[start:start + 130]).flags)).tolist()
        episodes = Episodes.from_state(json.loads(json.dumps(episodes.state())))
    assert flags == [100, 500]


def test_an_episode_that_outlasts_its_hold_goes_on_without_a_new_alert():
    """Scores still high on the very point after a hold: the same episode goes on, held
    again and marked lasting (its points go into the calibration history), not alerted again;
    a gap below the threshold ends it.  The same across batches and restarts."""
    scores = np.full(11, 0.999)
    scores[[0, 9]] = [0.5, 0.2]
    whole = Episodes(threshold=0.99, hold=3).update(scores)
    assert np.flatnonzero(whole.flags).tolist() == [1, 10]
    assert whole.lasting.astype(int).tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0]
    assert whole.held.astype(int).tolist() == [0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1]
    episodes, flags, lasting = Episodes(threshold=0.99, hold=3), [], []
    for start in range(0, 11, 2):  # (a hold that runs out at the end of a batch, too)
        update = episodes.update(scores[start:start + 2])
        flags += (start + np.flatnonzero(update.flags)).tolist()
        lasting += update.lasting.astype(int).tolist()
        episodes = Episodes.from_state(json.loads(json.dumps(episodes.state())))
    assert flags == [1, 10] and lasting == whole.lasting.astype(int).tolist()


def test_a_flat_gauge_that_changes_level_once_is_not_alerted_every_day(tmp_path):
    """An integer gauge, 3 for ten days, then 4 for thirty: the change is alerted at once,
    and then not every day (old code: 24 alerts, one a day after the change: its surprises all
    alike gave the calibration a tail of no width, and the episode's points never entered it,
    so each next day was as new as the first)."""
    data = tmp_path / "gauge.csv"
    data.write_text("timestamp,value\n" + "".join(
        f"{1_704_067_200 + 300 * i},{3 if i < 2880 else 4}\n" for i in range(288 * 40)))
    done = subprocess.run([*DAEMON, "--input", str(data), "--checkpoint", str(tmp_path / "s")],
                          capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    alerts = [int(line.split(",")[0]) for line in done.stdout.decode().splitlines()
              if line.endswith(",1")]
    assert alerts[0] == 2882 and len(alerts) <= 2, alerts  # (line 2882: the first 4)
    # What the first mini-batch decided for good is said once (it was said nowhere).
    assert done.stderr.decode().count(
        "time series: a time step of 300 s; the value 86400 s back in the context (the row "
        "nearest that time; 288 points at that step); an alert holds its episode for 288 "
        "points") == 1


def test_times_that_run_backwards_are_said_to_and_the_season_counts_rows(tmp_path):
    """An export sorted newest first: no time step, said as such (it read "no timestamps")."""
    data = tmp_path / "newest_first.csv"
    x = _seasonal(np.random.default_rng(6), 3 * DAY)
    stamps = np.array(1.7e9 + STEP * np.arange(x.size)[::-1], dtype="datetime64[s]")
    data.write_text("timestamp,value\n" + "".join(
        f"{str(s).replace('T', ' ')},{v:.4f}\n" for s, v in zip(stamps, x)))
    done = subprocess.run([*DAEMON, "--input", str(data), "--checkpoint", str(tmp_path / "s")],
                          capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert "WARNING time series: times that do not move forward (a median step of -600 s); " \
           "no season in the context" in done.stderr.decode()
    assert len(done.stdout.decode().splitlines()) == x.size - 100
    # Dates without their time of day (no column holds it): warned, with why.
    data.write_text("Date,Value\n" + "".join(
        f"2014-07-{1 + i // DAY:02d},{v:.4f}\n" for i, v in enumerate(x)))
    done = subprocess.run([*DAEMON, "--input", str(data), "--checkpoint", str(tmp_path / "d")],
                          capture_output=True, timeout=300)
    assert "WARNING time series: times that do not move forward (a median step of 0 s; " \
           "dates without their time of day?" in done.stderr.decode()
    # Numbers without times never wanted a daily season: no warning.
    data.write_text("".join(f"{v:.4f}\n" for v in x))
    done = subprocess.run([*DAEMON, "--input", str(data), "--checkpoint", str(tmp_path / "p"),
                           "--set", "features.enabled=true"], capture_output=True, timeout=300)
    assert "INFO time series: no timestamps; no season" in done.stderr.decode()
    assert "features.calendar" not in done.stderr.decode()
    # features.calendar asked for without times: dropped without a word, and every restart
    # then said config.yaml differed from the checkpoint in features.calendar.
    for _ in range(2):
        done = subprocess.run([*DAEMON, "--input", str(data), "--checkpoint",
                               str(tmp_path / "c"), "--set", "features.enabled=true", "--set",
                               "features.calendar=true", "--no-output"], capture_output=True,
                              timeout=300)
        assert done.returncode == 0 and "differs" not in done.stderr.decode()
    first = subprocess.run([*DAEMON, "--input", str(data), "--checkpoint", str(tmp_path / "e"),
                            "--set", "features.enabled=true", "--set",
                            "features.calendar=true", "--no-output"], capture_output=True,
                           timeout=300)
    assert ("features.calendar is set but the input has no time column: no time of day or "
            "week in the model") in first.stderr.decode()


def test_an_episode_lasts_a_day_of_the_series_own_time():
    episodes = Episodes(threshold=0.9999)
    assert episodes.hold == "day" and episodes.hold_points == 300  # no timestamps yet
    episodes.set_time_step(3600.0)
    assert episodes.hold_points == 24
    episodes.set_time_step(300.0)  # the first time step known stays
    assert episodes.hold_points == 24
    scores = np.zeros(100)
    scores[[10, 30, 40]] = 0.99999
    assert np.flatnonzero(episodes.update(scores).flags).tolist() == [10, 40]
    # A day of per-second data would be 86,400 points: the hold stays within 1,000.
    fast = Episodes()
    fast.set_time_step(1.0)
    assert fast.hold_points == 1000
    restored = Episodes.from_state(json.loads(json.dumps(episodes.state())))
    assert (restored.hold, restored.hold_points) == ("day", 24)
    state = episodes.state() | {"time_step": -5.0}
    with pytest.raises(ValueError, match="time_step"):
        Episodes.from_state(state)
    with pytest.raises(ValueError, match="hold must be"):
        Episodes(hold="week")
    # A reloaded configuration shortens an episode under way to the new hold.
    episodes.update(np.r_[0.99999, np.zeros(3)])
    episodes.set_hold(2)
    assert episodes.remaining == 2


def test_the_series_monitor_takes_the_time_step_from_the_first_rows():
    from emstream import GaussianMixture
    from emstream.drift import DriftMonitor
    from emstream.series import SeriesMonitor

    rng = np.random.default_rng(0)
    monitor = SeriesMonitor(DriftMonitor(GaussianMixture(2, random_state=0)))
    times = 1.4e9 + 1800.0 * np.arange(200)
    monitor.update(rng.normal(size=(100, 1)), times[:100])
    assert monitor.episodes.hold_points == 48  # half-hourly: 48 points a day
    monitor.update(rng.normal(size=(100, 1)), times[100:] * 0 + 1.4e9 + 60.0 * np.arange(100))
    assert monitor.episodes.hold_points == 48


@pytest.mark.parametrize("features", [True, False], ids=["features", "plain"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, 1e101, "width"])
def test_a_refused_block_changes_nothing_in_the_series_monitor(features, bad):
    """A NaN (or a value beyond 1e100, or a row of another width) was refused after the
    features had remembered it: every later block was then refused too, and a first row of
    NaN poisoned the stream for good. Now the refused block changes nothing."""
    from emstream import GaussianMixture
    from emstream.drift import DriftMonitor
    from emstream.series import SeriesMonitor

    def run(first_bad: bool, bad_block: bool):
        rng = np.random.default_rng(4)
        monitor = SeriesMonitor(DriftMonitor(GaussianMixture(3, random_state=0)),
                                TemporalFeatures() if features else None, reg_covar_share=0.01)
        out = []
        for k in range(12):
            if bad_block and k in ((0,) if first_bad else (3, 7)):
                block = np.ones((5, 2)) if bad == "width" else np.r_[[[1.0]], [[bad]]]
                with pytest.raises(ValueError):
                    monitor.update(block)
            update = monitor.update(rng.normal(size=(60, 1)))
            out.append(None if update.score is None else update.score.tolist())
            out.append(monitor.monitor.model.reg_covar)  # (set from the first rows that vary)
        return out

    for first_bad in (False, True):
        if first_bad and bad == "width":
            continue  # (no width to differ from before the first block)
        assert run(first_bad, True) == run(first_bad, False)
    if bad == "width" and not features:
        # Before any model: a flat first block, then one of another width (it set reg_covar
        # from its own rows, then was refused).
        monitor = SeriesMonitor(DriftMonitor(GaussianMixture(3, random_state=0)),
                                reg_covar_share=0.01)
        monitor.update(np.full((5, 2), 3.0))
        before = monitor.monitor.model.reg_covar
        with pytest.raises(ValueError, match="expecting 2"):
            monitor.update(np.random.default_rng(1).normal(0, 100, (50, 3)))
        assert monitor.monitor.model.reg_covar == before


def _flat_monitor():
    from emstream import GaussianMixture
    from emstream.drift import DriftMonitor
    from emstream.series import REG_COVAR_SHARE, SeriesMonitor

    # (the daemon's defaults)
    return SeriesMonitor(DriftMonitor(GaussianMixture(3, random_state=0), anomaly_quantile=None),
                         TemporalFeatures(lags=1, season="auto", volatility=False),
                         reg_covar_share=REG_COVAR_SHARE)


def test_a_first_block_refused_for_its_times_changes_nothing():
    """A first block with a NaN time, or one time too few, was refused only after it had set
    reg_covar (2.67 instead of 0.005) and the episodes' clock from its rows: the run that
    went on differed from one that never saw it in 3,739 of 4,000 scores (found by an attack
    helper)."""
    rng = np.random.default_rng(9)
    t = np.arange(3000)
    x = (10 + 3 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 0.3, t.size))[:, None]
    times = 1.7e9 + 300.0 * t
    bad = (rng.normal(0, 50, 50) + 1000)[:, None]

    def run(refused=None):
        monitor = _flat_monitor()
        if refused is not None:
            with pytest.raises(ValueError, match="finite numbers"):
                monitor.update(*refused)
        scores = [monitor.update(x[a:a + 250], times[a:a + 250]).score
                  for a in range(0, t.size, 250)]
        return [None if s is None else s.tolist() for s in scores], monitor.model.reg_covar

    clean = run()
    assert run((bad, np.r_[times[:49], np.nan])) == clean
    assert run((bad, times[:49])) == clean


@pytest.mark.parametrize("level", [5.0, 5e-5, 5e-7])
def test_a_step_after_a_flat_start_is_alerted_in_any_units_and_any_blocks(level):
    """A flat start, then a step of a fifth: alerted at 5 and 0.05, missed at 5e-5 (the given
    reg_covar, 1e-6, served until the rows varied, and swamped the step), and at 5e-7 alerted
    or not by the block length (a column of one value "varied" by its variance's rounding,
    1.8e-40 over 1,000 rows of 5e-5, 0 over 100).  Found by an attack helper."""
    x = np.r_[np.full(10037, level), np.full(1963, 1.2 * level)][:, None]
    for block in (100, 1000):
        monitor = _flat_monitor()
        flags = np.concatenate([monitor.update(x[a:a + block]).anomaly
                                for a in range(0, x.shape[0], block)])
        assert np.flatnonzero(flags).tolist() == [10037], (level, block)


@pytest.mark.parametrize("level", [5.0, 1.5e12, 1.5e18, 5e50])
def test_a_flat_series_at_any_magnitude_raises_no_alert(level):
    """A series of one value repeated alerted at 1.5e18 and above: its variance floor was
    1/12 (a whole number's last decimal) where float64 steps by 256, and the rounding of the
    model's means alone made surprises of 80 nats (found by an attack helper)."""
    monitor = _flat_monitor()
    times = 1.7e9 + 300.0 * np.arange(3000)
    flags = [monitor.update(np.full((100, 1), level), times[a:a + 100]).anomaly.any()
             for a in range(0, 3000, 100)]
    assert not any(flags), level


def test_the_median_of_three_rows_by_comparisons_is_numpy_s_median():
    """The season's context takes the median of three rows by comparisons (a sort per row
    took most of the features' time): the same values as ``np.median``, ties included."""
    from emstream.temporal import _median_of_rows

    rng = np.random.default_rng(0)
    Z = np.round(rng.normal(size=(50, 2)), 1)  # (rounded: many ties)
    for width in (3, 5, 1):
        around = rng.integers(0, 50, size=(400, width))
        np.testing.assert_array_equal(_median_of_rows(Z, around),
                                      np.median(Z[around], axis=1))


def test_a_day_after_an_alerted_flatline_is_no_anomaly_again():
    """The same time a day after an alerted anomaly takes its season column from the anomaly:
    scored against it, an ordinary crest "given" a flat yesterday looked odd and alerted again
    as soon as the first alert's hold ended.  Such rows are scored without the season."""
    from emstream import GaussianMixture
    from emstream.drift import DriftMonitor
    from emstream.series import SeriesMonitor

    rng = np.random.default_rng(5)
    n = 20 * DAY
    x = _seasonal(rng, n)
    flat = 12 * DAY + DAY // 8
    x[flat:flat + DAY // 2] = 10.0  # half a day stuck at the mean level
    times = 1.7e9 + float(STEP) * np.arange(n)
    series = SeriesMonitor(DriftMonitor(GaussianMixture(3, random_state=0)),
                           TemporalFeatures(season="auto", volatility=False))
    flags, start, size = [], 0, 100
    while start < n:
        update = series.update(x[start:start + size, None], times[start:start + size])
        flags += (start + np.flatnonzero(update.anomaly)).tolist()
        start, size = start + size, min(1000, 2 * size)
    assert flags == [flat]
    assert series.state()["held"] == []  # (a season later nothing reaches back to it)
    assert series.features.season_rows_[-1] == n - 1 - DAY


def test_the_series_state_keeps_the_episodes_a_season_reaches_and_refuses_bad_ones():
    from emstream import GaussianMixture
    from emstream.drift import DriftMonitor
    from emstream.series import SeriesMonitor

    def monitor():
        return SeriesMonitor(DriftMonitor(GaussianMixture(2, random_state=0)),
                             TemporalFeatures(season=24, volatility=False), reg_covar_share=1e-3)

    series = monitor()
    series._held = [[100, 130]]
    state = json.loads(json.dumps(series.state()))
    assert state["held"] == [[100, 130]] and state["units_pending"] is True
    again = monitor().restore(state)
    assert again._held == [[100, 130]] and again._units_pending
    for bad in ([[5, 5]], [[1, 2, 3]], [["1", 2]], [[-1, 4]], [[True, 4]], {"a": 1}):
        with pytest.raises(ValueError, match="held"):
            monitor().restore({**state, "held": bad})
    with pytest.raises(ValueError, match="units_pending"):
        monitor().restore({**state, "units_pending": "yes"})
    old = {k: v for k, v in state.items() if k not in ("held", "units_pending")}
    restored = monitor().restore(old)  # a state from before both: nothing held, units kept
    assert restored._held == [] and not restored._units_pending
    # Features of another configuration than the model's (volatility turned on): restored,
    # the next update died of an IndexError in the model's marginals (found by an attack
    # helper).
    series = monitor()
    rng = np.random.default_rng(0)
    for _ in range(20):
        series.update(rng.normal(size=(100, 1)))
    state = json.loads(json.dumps(series.state()))
    state["features"]["volatility"] = True
    with pytest.raises(ValueError, match="features make 4 columns of each row, the model has 3"):
        SeriesMonitor(series.monitor, reg_covar_share=1e-3).restore(state)


# ---------------------------------------------------------------------- the daemon
def _seasonal(rng, n):
    t = np.arange(n)
    return 10.0 + np.sin(2 * np.pi * t / DAY) + 0.1 * rng.normal(size=n)


def _write_table(path, values, start=1.7e9):
    stamps = np.array(start + STEP * np.arange(len(values)), dtype="datetime64[s]")
    path.write_text("timestamp,value\n" + "".join(
        f"{str(s).replace('T', ' ')},{v:.4f}\n" for s, v in zip(stamps, values)))


def _flags(out_text):
    rows = [line.split(",") for line in out_text.splitlines()]
    # line, time, label, probability, surprise, score, anomaly; data row i is line i + 2
    return np.array([int(r[0]) - 2 for r in rows if r[6] == "1"]), rows


def test_a_seasonal_series_gets_one_flag_per_anomaly_and_none_elsewhere(tmp_path):
    rng = np.random.default_rng(3)
    n = 40 * DAY
    x = _seasonal(rng, n)
    windows = {}
    spike = 20 * DAY + DAY // 2 + DAY // 4  # the trough: a value of the crest is in range
    x[spike] = 10.9
    windows["in-range spike"] = (spike, spike + 10)
    flat = 24 * DAY
    x[flat:flat + DAY // 2] = 10.0  # the series' mean level, for half a day
    windows["flatline"] = (flat, flat + DAY // 2)
    double = 28 * DAY
    x[double:double + DAY] = 10.0 + 2 * (x[double:double + DAY] - 10.0)
    windows["doubled amplitude"] = (double, double + DAY)
    shift = 33 * DAY
    x[shift:] += 3.0
    windows["level shift"] = (shift, shift + 20)
    data = tmp_path / "series.csv"
    _write_table(data, x)
    done = subprocess.run([*DAEMON, "--input", str(data), "--checkpoint", str(tmp_path / "s")],
                          capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    flags, rows = _flags(done.stdout.decode())
    assert len(rows) == n - 100  # every row after the first mini-batch has a line
    assert all(r[1].startswith("20") and 0.0 <= float(r[5]) <= 1.0 for r in rows)
    for name, (lo, hi) in windows.items():
        assert ((flags >= lo) & (flags < hi)).sum() == 1, (name, flags.tolist())
    inside = np.zeros(n, dtype=bool)
    for lo, hi in windows.values():
        inside[lo:hi] = True
    assert inside[flags].all(), flags.tolist()
    saved = checkpoint.load(tmp_path / "s")
    assert saved.meta["counters"]["anomalies"] == len(windows)
    assert saved.meta["layout"]["names"] == ["timestamp", "value"]
    assert saved.meta["series"]["features"]["season_"] == DAY


def test_the_same_readings_in_other_units_get_the_same_scores_and_alerts(tmp_path):
    """Bytes or gigabytes, seconds or hours: moving the decimal point of every reading (in the
    text, so the readings keep their printed precision) changes no score and no alert.  An
    absolute reg_covar of 1e-6 swamped readings of the order of 1e-4 (NAB's series scored
    23.6 instead of 63.1), and the upkeep's re-seeding ranked components by their total
    surprise, whose sign the units decide."""
    from decimal import Decimal

    rng = np.random.default_rng(9)
    x = _seasonal(rng, 6 * DAY)
    x[3 * DAY + DAY // 3] = 12.0  # a spike
    x[5 * DAY:] += 2.0  # a level shift
    _write_table(tmp_path / "units.csv", x)
    header, *lines = (tmp_path / "units.csv").read_text().splitlines()
    runs = {}
    for places in (0, -5, 2):
        data = tmp_path / f"shifted{places}.csv"
        data.write_text("\n".join([header] + [
            f"{t},{format(Decimal(v).scaleb(places), 'f')}"
            for t, v in (line.split(",") for line in lines)]) + "\n")
        done = subprocess.run([*DAEMON, "--input", str(data), "--checkpoint",
                               str(tmp_path / f"s{places}")], capture_output=True, timeout=300)
        assert done.returncode == 0, done.stderr.decode()
        flags, rows = _flags(done.stdout.decode())
        runs[places] = (flags, np.array([float(r[5]) for r in rows]))
    assert 5e-5 < float(Decimal(lines[0].split(",")[1]).scaleb(-5)) < 2e-4  # (as written)
    flags, scores = runs[0]
    assert len(flags) >= 2  # (the spike and the shift at least)
    for places in (-5, 2):
        np.testing.assert_array_equal(runs[places][0], flags)
        np.testing.assert_allclose(runs[places][1], scores, rtol=0, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("form", ["csv", "jsonl"])
def test_a_killed_back_fill_resumes_with_the_same_scores_line_for_line(tmp_path, form):
    rng = np.random.default_rng(4)
    x = _seasonal(rng, 60 * DAY)
    x[30 * DAY:] += 2.0
    data = tmp_path / "series.csv"
    _write_table(data, x)
    settings = ["--input", str(data), "--set", "checkpoint.every_points=500", "--set",
                "batch.max_rows=200", "--set", "status.every_seconds=0"]
    if form == "jsonl":  # the same series as JSON records with a time field
        _, *rows = data.read_text().splitlines()
        data = tmp_path / "series.jsonl"
        data.write_text("".join(json.dumps({"ts": t, "v": float(v)}) + "\n"
                                for t, v in (r.split(",") for r in rows)))
        settings = [*settings[2:], "--input", str(data), "--set", "input.format=jsonl",
                    "--set", "input.fields=[v]"]
    reference = subprocess.run([*DAEMON, *settings, "--checkpoint", str(tmp_path / "ref")],
                               capture_output=True, timeout=300)
    assert reference.returncode == 0
    expected = {line.split(",")[0]: line for line in reference.stdout.decode().splitlines()}
    seen, kills = {}, 0
    out = tmp_path / "out.csv"
    out.touch()
    rng = np.random.default_rng(0)
    while True:
        # Killed once it has written 2-30 kB more (40-600 lines): between its checkpoints,
        # wherever start-up and the machine's speed put the daemon (a kill on a timer came
        # during start-up on a fast machine, and no restart had lines to repeat).
        target = out.stat().st_size + int(rng.integers(2_000, 30_000))
        with open(out, "ab") as handle:  # (one file, appended to by every run, as >> does)
            process = subprocess.Popen([*DAEMON, *settings, "--checkpoint", str(tmp_path / "s")],
                                       stdout=handle, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 300
            while process.poll() is None and time.monotonic() < deadline:
                if kills < 8 and out.stat().st_size >= target:
                    process.send_signal(signal.SIGKILL)
                    kills += 1
                    break
                time.sleep(0.002)
            process.wait()
        for line in out.read_text().splitlines():
            if "," in line:  # a killed writer may leave a partial last line
                number = line.split(",")[0]
                if line.count(",") == 6:
                    assert line == expected[number], (kills, line)
                    seen[number] = line
        if process.returncode == 0:
            break
    assert kills >= 4
    assert seen.keys() == expected.keys()
    # Each restart cut the lines written after its checkpoint (a kill's partial last line
    # too): the file is the uninterrupted run's output, byte for byte (each line once).
    assert out.read_bytes() == reference.stdout


def test_a_provisional_model_alerts_too(tmp_path):
    """A series shorter than the warm-up (NAB's ad exchange series: ~1,600 points) gets its
    alerts: the flag is the score at the threshold from the first model on, and an ordinary
    first week raises none."""
    rng = np.random.default_rng(7)
    x = _seasonal(rng, 6 * DAY)
    spike = 4 * DAY + DAY // 3
    x[spike] += 3.0
    data = tmp_path / "short.csv"
    _write_table(data, x)
    done = subprocess.run([*DAEMON, "--input", str(data), "--checkpoint", str(tmp_path / "s")],
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    saved = checkpoint.load(tmp_path / "s")
    assert saved.model._online.warming_up  # still provisional at the end
    flags, rows = _flags(done.stdout.decode())
    assert flags.tolist() == [spike]
    assert saved.meta["counters"]["anomalies"] == 1
    scores = np.array([float(r[5]) for r in rows])
    assert (scores >= 0.9999).sum() == 1  # the flag is the score at the threshold


def test_a_table_from_r_or_pandas_scores_like_the_plain_csv(tmp_path):
    """R's write.csv (quoted header and times, the row names as an unnamed first column),
    pandas' to_csv (the index, unnamed) and a logger's Date,Time,Value (the time of day in a
    column of its own: no time step, no season before) give the plain CSV's scores, line for
    line."""
    x = _seasonal(np.random.default_rng(3), 4 * DAY)
    plain = tmp_path / "plain.csv"
    _write_table(plain, x)
    head, *rows = plain.read_text().splitlines()
    r_style = tmp_path / "r.csv"
    r_style.write_text('"","timestamp","value"\n' + "".join(
        f'"{i + 1}","{t}",{v}\n' for i, (t, v) in enumerate(r.split(",") for r in rows)))
    pandas = tmp_path / "pandas.csv"
    pandas.write_text(",timestamp,value\n" + "".join(f"{i},{r}\n" for i, r in enumerate(rows)))
    # A spreadsheet's "CSV UTF-8" where the comma is the decimal mark: a byte order mark,
    # semicolons, decimal commas.
    excel = tmp_path / "excel.csv"
    excel.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(
        [head.replace(",", ";")] + [r.replace(",", ";").replace(".", ",") for r in rows]
    ).encode() + b"\r\n")
    split = tmp_path / "split.csv"
    split.write_text("Date,Time,Value\n" + "".join(r.replace(" ", ",", 1) + "\n" for r in rows))
    outputs = []
    for data in (plain, r_style, pandas, excel, split):
        done = subprocess.run([*DAEMON, "--input", str(data), "--checkpoint",
                               str(tmp_path / data.stem)], capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr.decode()
        assert "rejected: none" in done.stderr.decode()
        assert "a time step of 600 s; the value 86400 s back" in done.stderr.decode()
        assert ("input: table of 3 comma-separated fields, header on line 1; values: value; "
                "time: timestamp") in done.stderr.decode() or data in (plain, excel, split)
        outputs.append(done.stdout.decode())
    assert len(outputs[0].splitlines()) == len(x) - 100  # every row after the first batch
    assert outputs[1] == outputs[2] == outputs[3] == outputs[4] == outputs[0]


def test_the_timeline_command_draws_a_series_with_its_alerts(tmp_path):
    from emstream.cli import main
    from emstream.timeline import read_scores

    rng = np.random.default_rng(5)
    x = _seasonal(rng, 16 * DAY)
    x[14 * DAY] += 3.0  # after the warm-up: a provisional model scores but does not flag
    data, out = tmp_path / "series.csv", tmp_path / "scores.csv"
    _write_table(data, x)
    done = subprocess.run([*DAEMON, "--input", str(data), "--checkpoint", str(tmp_path / "s"),
                           "--set", f"output.path={out}", "--set", "output.header=true"],
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    assert out.read_text().startswith("line,time,label,probability,surprise,score,anomaly\n")
    scored = read_scores(out)
    assert scored["line"].tolist() == list(range(102, 16 * DAY + 2))
    assert 14 * DAY + 2 in scored["line"][scored["anomaly"]].tolist()
    assert main(["timeline", str(data), str(out), "-o", str(tmp_path / "t.png")]) == 0
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"


def test_a_point_beyond_the_gate_escalates_an_ordinary_episode_but_not_its_own():
    scores = np.zeros(600)
    scores[[10, 15, 20, 400, 405]] = 0.99999
    strong = np.zeros(600, dtype=bool)
    strong[[15, 20, 405]] = True  # 10 and 400 are ordinary alerts; 15 escalates, 20 does not
    out = Episodes(threshold=0.9999, hold=300).update(scores, strong)
    assert out.alerts.tolist() == [10, 15, 400, 405]
    assert out.scores[20] == pytest.approx(0.5 * 0.99999) and out.held[20]


# ------------------------------------------------------------------ JSON lines with times
def test_json_lines_carry_their_times():
    """A JSON record's time field: text (ISO 8601, a spreadsheet's date) or epoch seconds or
    milliseconds; a record without one is a "missing field", one that does not parse a "bad
    timestamp"."""
    from emstream.parse import TimedParsed, parse_json_lines

    data = (b'{"ts": "2014-07-01 00:30:00", "v": 1, "k": "a"}\n{"ts": 1404174600, "v": 2, '
            b'"k": "a"}\n{"ts": "yesterday", "v": 3, "k": "a"}\n{"v": 4, "k": "a"}\n'
            b'{"ts": true, "v": 5, "k": "a"}\n{"ts": 1404174600250, "v": 6, "k": "b"}\n'
            b'{"ts": {"s": 1}, "v": 7, "k": "a"}\n{"ts": "7/1/2014 12:30 AM", "v": 8, "k": "a"}\n')
    parsed = parse_json_lines(data, ["v"], time="ts", key="k", day_first=False)
    assert isinstance(parsed, TimedParsed)
    assert parsed.rows.ravel().tolist() == [1.0, 2.0, 6.0, 8.0]
    assert parsed.times.tolist() == [1404174600.0, 1404174600.0, 1404174600.25, 1404174600.0]
    assert parsed.time_text.tolist() == [b"2014-07-01 00:30:00", b"1404174600",
                                         b"1404174600250", b"7/1/2014 12:30 AM"]
    assert parsed.keys.tolist() == [b"a", b"a", b"b", b"a"]
    assert [(r.line, r.reason) for r in parsed.rejects] == [
        (3, "bad timestamp"), (4, "missing field"), (5, "bad timestamp"), (7, "bad timestamp")]
    assert parse_json_lines(b"", ["v"], time="ts").times.shape == (0,)


def test_a_json_streams_time_field_is_found_or_named():
    from emstream.records import JsonLayout, find_json_layout, layout_from_dict

    record = b'{"time": 0.25, "@timestamp": "2014-07-01T00:30:00Z", "cpu": 0.5}\n'
    layout = find_json_layout(record, ["cpu"])
    assert layout.time_field == "@timestamp"  # a "time" of 0.25 is a duration, not a date
    assert find_json_layout(b'{"ts": 1404174600, "cpu": 1}\n', ["cpu"]).time_field == "ts"
    assert find_json_layout(record, ["cpu"], timestamp=None).time_field is None
    assert find_json_layout(b'{"cpu": 1}\n', ["cpu"]).time_field is None
    # The key names a series, never its time: a key field named "date" was taken for the time
    # too, and every row of a key shared one time (found by an attack helper).
    dated = b'{"date": "2024-01-01", "cpu": 1}\n'
    assert find_json_layout(dated, ["cpu"]).time_field == "date"
    assert find_json_layout(dated, ["cpu"], key="date").time_field is None
    also = b'{"date": "2024-01-01", "clock": 1404174600, "cpu": 1}\n'
    assert find_json_layout(also, ["cpu"], key="date").time_field == "clock"
    # (a nested key is no field of values either: it made its object a place to look for the
    # time; found by a second review)
    nested = b'{"meta": {"host": "a", "ts": "2024-01-01T00:00:00Z"}, "cpu": 1.0}\n'
    assert find_json_layout(nested, ["cpu"], key="meta.host").time_field is None
    assert find_json_layout(b"junk\n[1]\n", ["cpu"]) is None  # the first record decides
    assert find_json_layout(record, ["cpu"], timestamp="when").time_field == "when"
    # Beside the values, not at the top: an Elasticsearch hit (elasticdump's lines) had no time.
    hit = (b'{"_index": "metricbeat", "_id": "a1", "_source": {"@timestamp": '
           b'"2024-01-01T00:05:00.000Z", "system": {"cpu": {"pct": 0.54}}}}\n')
    assert find_json_layout(hit, ["_source.system.cpu.pct"]).time_field == "_source.@timestamp"
    assert find_json_layout(b'{"ts": 1404174600, "m": {"ts": 5, "v": 1}}\n',
                            ["m.v"]).time_field == "ts"  # (the top first)
    us = b'{"ts": "05/06/2014 10:00", "cpu": 1}\n'
    with pytest.raises(LayoutError, match="set input.day_first"):
        find_json_layout(us, ["cpu"])
    assert find_json_layout(us + b'{"ts": "05/13/2014 10:00", "cpu": 1}\n',
                            ["cpu"]).day_first is False
    assert layout_from_dict(layout.to_dict()) == layout
    assert isinstance(layout_from_dict(find_layout(b"t,v\n2014-07-01,1\n").to_dict()), Layout)
    assert layout.describe() == "JSON lines; values: cpu; time: @timestamp"
    with pytest.raises(ValueError, match="day_first"):
        JsonLayout.from_dict({**layout.to_dict(), "day_first": 1})


def _records_of(*records) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


@pytest.mark.parametrize("records, fields, key, found", [
    # CloudWatch's get-metric-data, Azure Monitor, InfluxDB 2 and Splunk (beside the values)
    ([{"Timestamp": f"2024-03-01T00:0{i}:00Z", "Value": i} for i in range(3)], ["Value"], None,
     "Timestamp"),
    ([{"timeStamp": f"2024-03-01T00:0{i}:00Z", "average": i} for i in range(3)], ["average"],
     None, "timeStamp"),
    ([{"result": "", "_time": f"2024-03-01T00:0{i}:00Z", "_value": i} for i in range(3)],
     ["_value"], None, "_time"),
    ([{"result": {"_time": f"2024-03-01T00:0{i}:00.000+00:00", "count": str(i)}}
      for i in range(3)], ["result.count"], None, "result._time"),
    # Home Assistant: written times in order (the first such field), keys interleaved
    ([{"entity_id": f"sensor.{k}", "state": "21.5",
       "last_changed": f"2024-03-01T00:{i:02d}:0{2 - j}.388213+00:00",
       "last_updated": f"2024-03-01T00:{i:02d}:0{2 - j}.388213+00:00"}
      for i in range(3) for j, k in enumerate("abc")], ["state"], "entity_id", "last_changed"),
    ([{"state": "21.5", "last_updated_ts": 1709251200.25 + 60 * i} for i in range(3)],
     ["state"], None, "last_updated_ts"),
    # Zabbix's clock (a quoted epoch), a query's t, µs and ns epochs, a quoted ms epoch
    ([{"itemid": "23296", "clock": str(1709251200 + 60 * i), "value": "0.5", "ns": "0"}
      for i in range(3)], ["value"], None, "clock"),
    ([{"t": 1709251200.781 + 15 * i, "v": "0.5"} for i in range(3)], ["v"], None, "t"),
    ([{"ts": 1709251200_000000 + i, "value": 1} for i in range(3)], ["value"], None, "ts"),
    ([{"time": 1709251200_000000000 + i, "value": 1} for i in range(3)], ["value"], None,
     "time"),
    ([{"timestamp": str(1709251200000 + i), "value": 1} for i in range(3)], ["value"], None,
     "timestamp"),
    # No time, by name only (a field taken for the time rejects every later record without
    # one): an account's last login and a login's expiry run in order but are no record
    # times, a counter of milliseconds named *_time runs one way, a business date whose day
    # order nothing tells must not stop the stream, an epoch in the year 2511, durations.
    ([{"user": f"u{i}", "last_login": f"2024-03-01T00:0{i}:00Z", "logins": i}
      for i in range(5)], ["logins"], None, None),
    ([{"event": "login", "expires": f"2024-03-0{i + 1}T00:00:00Z", "n": i} for i in range(5)],
     ["n"], None, None),
    ([{"blk_read_time": 1709251200 + 473 * i, "xact_commit": i} for i in range(9)],
     ["xact_commit"], None, None),
    ([{"Date": f"0{i + 1}/0{i + 2}/2024", "Amount": i} for i in range(3)], ["Amount"], None,
     None),
    ([{"ts": 17092512001234 + i, "value": 1} for i in range(3)], ["value"], None, None),
    ([{"installed": "2020-01-01", "value": i} for i in range(3)], ["value"], None, None),
    ([{"time_ms": 1.5 + i, "value": i} for i in range(3)], ["value"], None, None),
    ([{"Timestamp": 1709251200 + i} for i in range(3)], ["Timestamp"], None, None),
])
def test_a_json_streams_time_field_is_found_under_the_names_and_forms_tools_write(
        records, fields, key, found):
    """The time field was looked for under six names, case and all, and as seconds or ms
    only: CloudWatch's, Azure's, InfluxDB's, Splunk's, Home Assistant's, Zabbix's, a
    Prometheus query's and Telegraf's ns streams ran untimed (no season, no clock), and
    nothing said so.  Found by name, whatever the records hold elsewhere."""
    from emstream.records import find_json_layout

    assert find_json_layout(_records_of(*records), fields, key=key).time_field == found


@pytest.mark.parametrize("text", [
    '[{"cpu": 1}, {"cpu": 2}]\n', '[\n  {\n    "cpu": 1\n  }\n]\n',
    '[{"cpu": 1},\n{"cpu": 2},\n{"cpu": 3}\n]\n', '{\n  "cpu": 1\n}\n{\n  "cpu": 2\n}\n',
    '[{"values": [1], "dstypes": ["gauge"]}]\n[{"values": [2], "dstypes": ["gauge"]}]\n'])
def test_a_json_document_that_is_no_json_lines_is_refused_at_once(tmp_path, capsys, text):
    """A JSON array (an API's list, on one line or many) or pretty-printed objects: every
    line was a rejected row, exit 0 (an array's last record, on a line of its own, was learned
    alone); `emstream fit` said "--columns 'cpu' is not a column" over 12 KB of the array."""
    from emstream.cli import main as emstream_main

    data = tmp_path / "export.json"
    data.write_text(text)
    for settings in (["--set", "input.format=jsonl", "--set", "input.fields=[cpu]"], []):
        done = subprocess.run([*DAEMON, "--input", str(data), "--checkpoint",
                               str(tmp_path / f"s{len(settings)}"), *settings],
                              capture_output=True, timeout=120)
        err = done.stderr.decode().strip().splitlines()
        assert done.returncode == 78, err
        assert err[-1].startswith("emstreamd: the input is a JSON ") and "jq -c" in err[-1]
        assert ("input.format: jsonl" in err[-1]) == (not settings)
        assert not done.stdout and not list((tmp_path / f"s{len(settings)}").glob("check*"))
    assert emstream_main(["fit", str(data), "-k", "1", "--columns", "cpu", "-o",
                          str(tmp_path / "m.json")]) == 1
    err = capsys.readouterr().err
    assert "the input is a JSON " in err and "jq -c" in err and len(err) < 300


def test_the_common_log_formats_times_are_read():
    """Apache's and nginx's access-log time ($time_local), as a JSON log format writes it: a
    bad timestamp even when named, and no time found."""
    from emstream.records import find_json_layout

    assert (parse_times([b"01/Mar/2024:00:00:00 +0000", b"1/mar/2024:01:00:00.5 +0100",
                         b"01/Foo/2024:00:00:00 +0000", b"31/Feb/2024:00:00:00 +0000"])
            - 1709251200).tolist()[:2] == [0.0, 0.5]
    assert np.isnan(parse_times([b"01/Foo/2024:00:00:00", b"31/Feb/2024:00:00:00"])).all()
    records = b"".join(json.dumps({"time_local": f"01/Mar/2024:00:00:0{i} +0000",
                                   "request_time": "0.003"}).encode() + b"\n" for i in range(3))
    assert find_json_layout(records, ["request_time"]).time_field == "time_local"


def test_times_with_a_decimal_comma_are_read(tmp_path):
    """ISO 8601 allows a comma before the fraction of a second, and Python's logging and
    log4j write one (2024-03-01 00:00:00,123): every row was a bad timestamp."""
    stamps = [f"2024-03-01 00:{i // 60:02d}:{i % 60:02d},{i % 1000:03d}" for i in range(300)]
    assert parse_times(np.array([s.encode() for s in stamps[:3]])).tolist() == \
        parse_times([s.replace(",", ".").encode() for s in stamps[:3]]).tolist()
    assert parse_times([b"2024-03-01T00:00:00,5+01:00"])[0] == 1709251200.5 - 3600
    table = tmp_path / "log.tsv"
    table.write_text("asctime\tduration\n" + "".join(f"{s}\t{0.5 + i % 7}\n"
                                                    for i, s in enumerate(stamps)))
    records = tmp_path / "log.jsonl"
    records.write_text("".join(json.dumps({"timestamp": s, "duration": 0.5 + i % 7}) + "\n"
                               for i, s in enumerate(stamps)))
    for data, settings in ((table, ["--set", "input.timestamp=asctime"]),
                           (records, ["--set", "input.format=jsonl", "--set",
                                      "input.fields=[duration]"])):
        done = subprocess.run([*DAEMON, "--input", str(data), "--checkpoint",
                               str(tmp_path / data.suffix), *settings],
                              capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        assert "300 points in" in done.stderr.decode() and "rejected: none" in \
            done.stderr.decode()
        first = next(csv.reader(done.stdout.decode().splitlines()))
        assert first[1] == stamps[100]  # (quoted in the output: it holds a comma)


def test_a_json_series_with_times_is_monitored_like_the_table(tmp_path):
    """The seasonal series as JSON lines with an "@timestamp": the temporal features are on,
    and the scores are the CSV table's, line for line (killed and resumed: the test above)."""
    x = _seasonal(np.random.default_rng(5), 8 * DAY)
    table = tmp_path / "series.csv"
    _write_table(table, x)
    _, *rows = table.read_text().splitlines()
    records = tmp_path / "series.jsonl"
    records.write_text("".join(json.dumps({"@timestamp": t, "host": {"cpu": float(v)}}) + "\n"
                               for t, v in (r.split(",") for r in rows)))
    jsonl = ["--set", "input.format=jsonl", "--set", "input.fields=[host.cpu]"]
    runs = {}
    for name, args in (("table", ["--input", str(table)]),
                       ("jsonl", ["--input", str(records), *jsonl])):
        done = subprocess.run([*DAEMON, *args, "--checkpoint", str(tmp_path / name)],
                              capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr.decode()
        runs[name] = done.stdout.decode().splitlines()
    assert len(runs["table"]) == len(x) - 100
    # (the table's lines count its header)
    assert [r.split(",", 1)[1] for r in runs["jsonl"]] == \
        [r.split(",", 1)[1] for r in runs["table"]]
    saved = checkpoint.load(tmp_path / "jsonl")
    assert saved.meta["layout"]["time_field"] == "@timestamp"
    assert saved.model.n_features_in_ > 1  # the temporal features
    # Resumed (a JSON layout has no header to settle: resuming one raised AttributeError).
    done = subprocess.run([*DAEMON, "--input", str(records), *jsonl, "--checkpoint",
                           str(tmp_path / "jsonl")], capture_output=True, timeout=120)
    assert done.returncode == 0 and not done.stdout, done.stderr.decode()


@pytest.mark.parametrize("keyed", [False, True], ids=["one series", "keyed"])
def test_a_live_stream_whose_first_row_comes_alone_keeps_its_season(tmp_path, keyed):
    """stdin: the header and one row, then a pause longer than batch.max_wait, then the rest.
    The first mini-batch was that one row, from which the features decided their season: no
    time step, so no season and no clock for the model's whole life.  It now waits for the
    rows the features decide from (``TemporalFeatures.rows_to_decide``)."""
    rng = np.random.default_rng(2)
    x = _seasonal(rng, 4 * DAY)
    rows = [("a," if keyed else "") + f"{1.7e9 + STEP * i:.0f},{v:.4f}\n"
            for i, v in enumerate(x)]
    state = tmp_path / "state"
    key = ["--set", "input.key=host"] if keyed else []
    process = subprocess.Popen([*DAEMON, "--checkpoint", str(state), "--no-output", *key,
                                "--log-level", "INFO"],
                               stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    while b"ready: reading" not in process.stderr.readline():  # (its imports take a while)
        assert process.poll() is None
    time.sleep(0.6)  # (a producer whose first line comes late: the series is still unknown)
    process.stdin.write((("host," if keyed else "") + "timestamp,value\n" + rows[0]).encode())
    process.stdin.flush()
    time.sleep(1.0)  # (batch.max_wait is 0.2 s)
    process.stdin.write("".join(rows[1:]).encode())
    process.stdin.close()
    assert process.wait(timeout=120) == 0, process.stderr.read().decode()
    if keyed:
        from emstream.store import KeyStore

        store = KeyStore(state / "keys.sqlite")
        meta = checkpoint.loads(store.get("a")).meta
        store.close()
    else:
        meta = checkpoint.load(state).meta
    features = meta["series"]["features"]
    assert (features["season_"], features["period"]) == (DAY, 86400.0)
    assert meta["counters"]["rows"] == len(x)


def test_a_header_that_comes_before_its_rows_does_not_decide_the_layout_alone(tmp_path):
    """A header line alone (a live stream's first line, a new log file) decided the layout:
    a text column (a host) became a value and dates written 7/13/2014 found no order, so every
    row was rejected, and the checkpointed layout kept rejecting them after a restart.  The
    first data lines now settle it, live and across a restart."""
    rng = np.random.default_rng(4)
    rows = "".join(f"7/{13 + i // 144}/2014 {i % 144 // 6}:{i % 6 * 10:02d},web-1,"
                   f"{10 + rng.normal():.3f}\n" for i in range(600))
    header = "created,host,value\n"  # (a time column no name says is one: the rows do)
    process = subprocess.Popen([*DAEMON, "--checkpoint", str(tmp_path / "live"),
                                "--no-output", "--log-level", "INFO"],
                               stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    while b"ready: reading" not in process.stderr.readline():
        assert process.poll() is None
    process.stdin.write(header.encode())
    process.stdin.flush()
    time.sleep(1.0)
    process.stdin.write(rows.encode())
    process.stdin.close()
    log = process.stderr.read().decode()
    assert process.wait(timeout=120) == 0, log
    assert "600 points in" in log and "rejected: none" in log, log
    assert "values: value; time: created; dates month first" in log
    assert "time series: a time step of 600 s" in log  # (features on: the series has times)
    # A back-fill of the header alone, then of its rows appended: the same.
    data = tmp_path / "grows.csv"
    data.write_text(header)
    command = [*DAEMON, "--input", str(data), "--checkpoint", str(tmp_path / "file"),
               "--no-output"]
    assert subprocess.run(command, capture_output=True, timeout=120).returncode == 0
    with open(data, "a") as handle:
        handle.write(rows)
    done = subprocess.run(command, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    assert "600 points in" in done.stderr.decode()
    assert "rejected: none" in done.stderr.decode()
    assert checkpoint.load(tmp_path / "file").model.n_features_in_ == 3  # value, lag, season


def test_one_time_far_ahead_does_not_hold_the_clock_there():
    """One row dated 2099 in a 2014 series held the clock (the running maximum of the times)
    there for good: every later row's "a day ago" was the edge of the history and no outage
    was a gap again.  Two rows back in time bring the clock back; one odd row alone (1970)
    leaves it alone, and two clocks interleaved two hours apart (a row back at every other
    row) neither crash (it recursed once per step back) nor depend on how blocks are cut."""
    rng = np.random.default_rng(6)
    n = 30 * DAY
    x = _seasonal(rng, n)[:, None]
    clean = 1.4e9 + STEP * np.arange(n)
    ahead, behind, skewed = clean.copy(), clean.copy(), clean.copy()
    ahead[12 * DAY] = 4.07e9  # 2098-12-22
    behind[12 * DAY] = 0.0  # 1970
    skewed[12 * DAY::2] -= 7200.0
    jumpy = clean.copy()  # two rows 3 hours ahead, two back, ...: 1,100 returns in a block
    jumpy[12 * DAY::4] += 10800.0
    jumpy[12 * DAY + 1::4] += 10800.0
    out = {}
    for name, times in (("clean", clean), ("ahead", ahead), ("behind", behind),
                        ("skewed", skewed), ("jumpy", jumpy)):
        for cuts in ([100], [100, 12 * DAY, 12 * DAY + 1, 13 * DAY], list(range(7, n, 333))):
            tf = TemporalFeatures(lags=1, season="auto", volatility=False)
            pieces = [(tf.transform(x[a:b], times[a:b]), tf.season_rows_, tf.stale_)
                      for a, b in zip([0, *cuts], [*cuts, n])]
            got = tuple(np.concatenate(p) for p in zip(*pieces))
            assert all(np.array_equal(a, b) for a, b in zip(got, out.setdefault(name, got)))

    def differ(name):
        return np.flatnonzero((out["clean"][0] != out[name][0]).any(axis=1)).tolist()

    # The odd row, the first row back (still under its clock), and the rows a day later
    # whose context they were.
    assert differ("ahead") == [12 * DAY, 12 * DAY + 1, 13 * DAY, 13 * DAY + 2]
    assert np.flatnonzero(out["ahead"][2]).tolist() == [12 * DAY]  # (the odd row: stale)
    assert np.array_equal(out["ahead"][1][13 * DAY + 3:], out["clean"][1][13 * DAY + 3:])
    assert differ("behind") == [12 * DAY]
    assert len(differ("skewed")) > DAY and len(differ("jumpy")) > DAY
    # A first row far ahead set the start of time there: no row was ever a season old, and
    # the season's context was off for good.  (Within the first block the clock stays up.)
    first = clean.copy()
    first[0] = 4.07e9
    tf = TemporalFeatures(lags=1, season="auto", volatility=False)
    tf.transform(x[:100], first[:100])
    tf.transform(x[100:], first[100:])
    assert np.array_equal(tf.season_rows_[-DAY:], out["clean"][1][-DAY:])

def test_a_layout_from_a_header_alone_is_settled_by_rows_not_by_a_repeated_header():
    """The first data lines settle a header-alone layout; a repeat of the header (a rotated
    file's, a restarted producer's) is no data line (taken for one, the time column and the
    order of dates were lost for good), and rows that do not fit the header are plain
    numbers, as they are when the header and rows come in one block."""
    rows = b"".join(b"7/%d/2014 0:00,%d\n" % (13 + i, i) for i in range(5))
    header = find_layout(b"created_at,value\n")
    assert not header.settled and header.time_field is None
    for data in (rows, b"created_at,value\n" + rows, b"\n\n" + rows):
        settled = settle_layout(header, data)
        assert settled.settled and settled.time_field == 0 and settled.day_first is False
        assert settled.header_line == 1
    assert settle_layout(header, b"created_at,value\n") is header  # (no row yet)
    assert settle_layout(find_layout(b"cpu mem disk\n"), b"1,2\n3,4\n") is None
    assert find_layout(b"cpu mem disk\n1,2\n3,4\n") is None



def _live(tmp_path, first: str, rest: str, *extra, stop: bool = False):
    """A daemon on stdin: ``first`` once it is up, ``rest`` a second later (then the end of
    its input, or SIGTERM); its exit code and log."""
    process = subprocess.Popen([*DAEMON, "--checkpoint", str(tmp_path / "state"),
                                "--no-output", "--log-level", "INFO", *extra],
                               stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        while b"ready: reading" not in process.stderr.readline():
            assert process.poll() is None
        process.stdin.write(first.encode())
        process.stdin.flush()
        time.sleep(1.0)
        if rest:
            process.stdin.write(rest.encode())
            process.stdin.flush()
            time.sleep(0.5)
        if stop:
            process.send_signal(signal.SIGTERM)
        process.stdin.close()
        code = process.wait(timeout=120)
    finally:
        process.kill()
    return code, process.stderr.read().decode()


def test_a_header_alone_then_rows_that_do_not_fit_it_are_plain_numbers(tmp_path):
    """Rows that do not fit a header that came alone are plain numbers, as in one block: they
    were rejected for the header's field count, for good; with input.columns naming columns
    the daemon crashed (a TypeError) where one block stops with one line."""
    rows = "".join(f"{i},{i % 7}\n" for i in range(300))
    code, log = _live(tmp_path, "cpu mem disk\n", rows)
    assert code == 0 and "300 points in" in log and "rejected: none" in log, log
    code, log = _live(tmp_path / "named", "cpu mem disk\n", rows, "--set",
                      "input.columns=[cpu]")
    assert code == 78 and "Traceback" not in log, log
    assert "input.columns names columns, but the input has no header line" in log


def test_keys_whose_first_rows_wait_stay_within_max_active(tmp_path):
    """Keys whose first mini-batch waits for more rows were read back to be looked at and
    stayed in memory: 50 of them with keys.max_active 5."""
    first = "host,timestamp,value\n" + "".join(f"k{i},{1.7e9:.0f},1.0\n" for i in range(50))
    code, log = _live(tmp_path, first, "", "--set", "input.key=host",
                      "--set", "keys.max_active=5", stop=True)
    assert code == 0, log
    held = re.search(r"50 keys, (\d+) of them in memory at exit", log)
    assert held and int(held[1]) <= 5, log


def test_a_table_resumed_on_a_new_stdin_keeps_its_first_row(tmp_path):
    """A table's checkpoint says its header was line 1; a resumed stdin numbers its lines from
    1 again, so its first row was skipped as that header: one row lost at every resume.  A
    header sent again is still skipped."""
    x = _seasonal(np.random.default_rng(9), 2 * DAY)
    rows = [f"{1.7e9 + STEP * i:.0f},{v:.4f}\n" for i, v in enumerate(x)]
    state = tmp_path / "state"

    def feed(text):
        done = subprocess.run([*DAEMON, "--checkpoint", str(state), "--no-output"],
                              input=text.encode(), capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr.decode()
        counters = checkpoint.load(state).meta["counters"]
        assert not counters["rejected"], counters  # (a header again is no reject)
        return counters["rows"]

    assert feed("timestamp,value\n" + "".join(rows[:150])) == 150
    assert feed("".join(rows[150:200])) == 200
    assert feed("timestamp,value\n" + "".join(rows[200:250])) == 250
    assert feed("timestamp,value\n" + "".join(rows[250:280])) == 280


def test_a_checkpoint_of_a_header_alone_from_before_layouts_settled_settles(tmp_path):
    """A checkpoint written by an earlier version after a header alone (its layout has no
    'settled', nothing learned) kept the header-alone layout: every row was rejected after
    the upgrade.  Its rows settle it now."""
    state = tmp_path / "state"
    run = [*DAEMON, "--checkpoint", str(state), "--no-output"]
    assert subprocess.run(run, input=b"time,host,value\n", timeout=120).returncode == 0
    loaded = checkpoint.load(state)
    assert loaded.meta["layout"].pop("settled") is False
    path = sorted(state.glob("checkpoint-*.json"))[-1]
    path.write_bytes(checkpoint.dumps(loaded.model, loaded.meta))
    rows = "".join(f"7/{13 + i // 144}/2014 {i % 144 // 6}:{i % 6 * 10:02d},web-1,{i % 5}.5\n"
                   for i in range(300))
    done = subprocess.run(run, input=rows.encode(), capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    assert checkpoint.load(state).meta["counters"]["rows"] == 300


def _log_of_a_run(tmp_path, name: str, text: str) -> str:
    """The daemon's log over a file of ``text`` (which it reads to its end, exit 0)."""
    data = tmp_path / name
    data.write_text(text)
    done = subprocess.run([*DAEMON, "--input", str(data), "--checkpoint",
                           str(tmp_path / f"{name}.state"), "--no-output"],
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return done.stderr.decode()


def test_a_column_empty_in_every_first_line_stays_a_value_and_the_misread_is_said(tmp_path):
    """speedtest-cli --csv writes its Share column empty on every row: every row is rejected
    (a sensor that starts out empty is not dropped for good), and the log says, once, that
    nothing was read, and why."""
    err = _log_of_a_run(tmp_path, "speedtest.csv", (
        "Server ID,Sponsor,Timestamp,Ping,Download,Share,IP Address\n" + "".join(
            f"21541,Vodafone,2024-03-01T{i // 12:02d}:{i % 12 * 5:02d}:00.5Z,{8 + i % 5}.5,"
            f"{9e7 + i % 7 * 1e6},,203.0.113.5\n" for i in range(240))))
    assert "values: Server ID, Ping, Download, Share" in err
    assert "none of the first 240 lines was read as a row (240 non-numeric)" in err


def test_a_column_of_numbers_with_a_unit_is_named_in_a_warning(tmp_path):
    """nvidia-smi --format=csv writes "86 %" (read) and "5057 MiB" (text): the memory column
    was left out with nothing but the INFO line's list of values to tell."""
    err = _log_of_a_run(tmp_path, "gpu.csv", (
        "timestamp, utilization.gpu [%], memory.used [MiB], name\n" + "".join(
            f"2024/03/01 12:{i // 60:02d}:{i % 60:02d}.743, {40 + i % 9} %, {5000 + i % 11} "
            f"MiB, NVIDIA A100\n" for i in range(200))))
    assert "200 points in" in err
    said = [line for line in err.splitlines() if "with a unit" in line]
    # (versions, HTTP statuses and zones are no numbers with a unit)
    assert "with a unit" not in _log_of_a_run(tmp_path, "other.csv", (
        "timestamp,version,status,zone,cpu\n" + "".join(
            f"2024-03-01 00:{i // 60:02d}:{i % 60:02d},3.2a,200 OK,1a,{i % 7}.5\n"
            for i in range(200))))
    assert len(said) == 1 and said[0].endswith(
        "input: column 'memory.used [MiB]' holds numbers with a unit ('5000 MiB'): left out as "
        "text; write them without the unit (nvidia-smi: --format=csv,nounits)")


def test_a_column_of_nothing_but_missing_words_is_left_out_with_a_warning(tmp_path):
    """A column whose first lines hold nothing but N/A-like words is text to the layout (a
    status of N/A), though it may be a sensor that starts out missing: the operator is told
    which, and how to learn it (it was left out with an INFO line alone)."""
    data = tmp_path / "na.csv"
    data.write_text("x,y\n" + "".join(f"{i}.0,NA\n" for i in range(60))
                    + "".join(f"{i}.0,{i % 7}.5\n" for i in range(300)))
    done = subprocess.run([*DAEMON, "--input", str(data), "--checkpoint", str(tmp_path / "s"),
                           "--no-output"], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    assert "WARNING input: y hold(s) nothing but missing-value words" in done.stderr.decode()
    done = subprocess.run([*DAEMON, "--input", str(data), "--checkpoint", str(tmp_path / "t"),
                           "--no-output", "--set", "input.columns=[x, y]"],
                          capture_output=True, timeout=120)
    assert "missing-value words" not in done.stderr.decode()
    assert "300 points in" in done.stderr.decode()  # (and 60 rows' NA rejected)


def test_an_input_that_ends_after_its_first_timed_row_carries_it_and_decides_later(tmp_path):
    """An input that ends after its first row (a back-fill of a log just begun, a cron job's
    first rows on stdin): learned alone, that row turned the season off for good ("one
    timestamp alone (no time step)", and every later run kept value, value[t-1] only).  It is
    carried in the checkpoint, and the next run decides the season from it and the rows after."""
    first = subprocess.run([*DAEMON, "--checkpoint", str(tmp_path / "state"), "--no-output"],
                           input=b"timestamp,value\n2014-07-01 00:00:00,10\n",
                           capture_output=True, timeout=120)
    assert first.returncode == 0, first.stderr.decode()
    said = first.stderr.decode()
    assert "1 rows of a first mini-batch wait for 10" in said and "one timestamp alone" not in said
    rows = "".join(f"2014-07-01 {i // 12:02d}:{i % 12 * 5:02d}:00,{10 + i % 7}\n"
                   for i in range(1, 600))
    again = subprocess.run([*DAEMON, "--checkpoint", str(tmp_path / "state"), "--no-output"],
                           input=("timestamp,value\n" + rows).encode(), capture_output=True,
                           timeout=120)
    assert again.returncode == 0, again.stderr.decode()
    assert "time series: one timestamp alone" not in again.stderr.decode()
    whole = subprocess.run([*DAEMON, "--checkpoint", str(tmp_path / "whole"), "--no-output"],
                           input=("timestamp,value\n2014-07-01 00:00:00,10\n" + rows).encode(),
                           capture_output=True, timeout=120)
    assert whole.returncode == 0, whole.stderr.decode()
    resumed, alone = (checkpoint.load(tmp_path / name) for name in ("state", "whole"))
    assert resumed.meta["series"] == alone.meta["series"]  # (the same features, season)
    assert resumed.meta["counters"]["rows"] == alone.meta["counters"]["rows"]
    np.testing.assert_array_equal(resumed.model.means_, alone.model.means_)


def test_several_series_in_one_table_are_pointed_out(tmp_path):
    """Rows of several hosts sampled together (host,time,value) were learned as one series
    without a word: the log now says which column would key them.  A status column of a
    single series (its times do not repeat) is no such column."""
    stamps = [f"2024-01-01 {i // 12:02d}:{i % 12 * 5:02d}" for i in range(100)]
    long = tmp_path / "long.csv"
    long.write_text("host,time,value\n" + "".join(
        f"h{k},{t},{k + np.sin(i / 9):.3f}\n" for i, t in enumerate(stamps) for k in range(3)))
    status = tmp_path / "status.csv"
    status.write_text("status,time,value\n" + "".join(
        f"{'ok' if i % 7 else 'warn'},{t},{np.sin(i / 9):.3f}\n" for i, t in enumerate(stamps)))
    said = {}
    for data in (long, status):
        done = subprocess.run([*DAEMON, "--input", str(data), "--checkpoint",
                               str(tmp_path / data.stem), "--no-output"], capture_output=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr.decode()
        said[data.stem] = done.stderr.decode()
    assert ("input: column 'host' holds text, 3 different values in the first lines: several "
            "series in one stream? They are learned as one; input.key: host gives each its "
            "own model") in said["long"]
    assert "several series" not in said["status"]


def test_the_format_guesses_stay_out_of_what_they_cannot_tell():
    """Where a layout guess (the time column, digit grouping, the order of day and month)
    has no evidence, the table is read as before; each case here was misread by a first
    version (a review found them)."""
    def layout(data):
        return find_layout(data)

    # Monthly figures step steadily read either way (a day or a month): still asked.
    for data in (b"date,sales\n1/1/2024,100\n2/1/2024,120\n3/1/2024,130\n",
                 b"date;sales\n01/01/2024;1\n01/02/2024;2\n01/03/2024;3\n"):
        with pytest.raises(LayoutError, match="set input.day_first"):
            layout(data)
    # Three decimal places beside whole numbers in a live stream's first lines: decimals.
    data = b"time;value\n2024-01-01 00:00;1.250\n2024-01-01 00:01;2\n2024-01-01 00:02;3.375\n"
    assert layout(data).grouping is None
    assert parse_table(data, layout(data)).rows.ravel().tolist() == [1.25, 2.0, 3.375]
    # Nor do many of them beside whole numbers of their own size (36.963 beside 12).
    cells = [b"36.963", b"12", b"26.051", b"25.614", b"11", b"36.257", b"5.668", b"24.743",
             b"19.344", b"16.511", b"29.601", b"11.145", b"37.199"]
    data = b"time;value\n" + b"".join(b"2024-01-01 00:%02d;%s\n" % (i, c)
                                      for i, c in enumerate(cells))
    assert layout(data).grouping is None
    assert parse_table(data, layout(data)).rows.ravel().tolist() == [float(c) for c in cells]
    # Counters named as counters are no times, nor is a training log's epoch count; a real
    # time column beats a column named epoch.
    octets = b"in_octets,out_octets\n" + b"".join(
        b"%d,%d\n" % (1_000_000_000 + 100_000 * i, 50 + i) for i in range(6))
    assert layout(octets).time_field is None and layout(octets).value_fields == (0, 1)
    assert layout(b"epoch,accuracy,loss\n1,0.5,0.9\n2,0.6,0.8\n3,0.7,0.7\n").time_field is None
    both = b"epoch,time,loss\n1,1700000000,0.5\n2,1700000060,0.4\n3,1700000120,0.3\n"
    assert layout(both).time_field == 1
    # A stock index named Index is a value; a version number is no date.
    assert layout(b"Date,Index\n2024-01-02,4742.83\n2024-01-03,4704.81\n").value_fields == (1,)
    assert layout(b"version,value\n1.2.10,5\n1.2.11,6\n1.2.12,7\n").time_field is None
    # A column of times found by its values whose order of day and month nothing tells is
    # left out rather than stopping a stream that ran without it.
    data = b"value,t,hits\n99,02/09/2018 05:30,20.0\n6,02/09/2018 05:35,17.4\n"
    assert layout(data).time_field is None
    # Excel's hint of a tab, and the grouping said in the layout's description.
    data = b"sep=\t\ntime\tvalue\n2024-01-01 00:00\t1.5\n2024-01-01 00:05\t2.5\n"
    assert layout(data).sep == b"\t" and layout(data).header_line == 2
    numbers = [1234 + 10 * i for i in range(12)] + [856]
    data = "Zeit;Bytes\n" + "".join(f"2024-01-01 00:{i:02d};{n:,}\n".replace(",", ".")
                                    for i, n in enumerate(numbers))
    assert layout(data.encode()).describe().endswith("; Bytes: digits grouped with '.'")
    # Dates alone repeat for any series sampled more than daily: no hint of several series.
    from emstream.table import series_columns
    data = (b"date,status,value\n2024-01-01,ok,1\n2024-01-01,warn,2\n2024-01-01,ok,3\n"
            b"2024-01-02,ok,4\n")
    assert series_columns(data, layout(data)) == []


def test_an_empty_block_is_the_same_clear_error_before_and_after_the_first_rows():
    """An empty first block failed inside numpy ("window shape cannot be larger than input
    array shape"); after rows, the same call said "X is empty".  Features of no rows are no
    rows, and remember nothing."""
    from emstream import GaussianMixture
    from emstream.drift import DriftMonitor
    from emstream.series import SeriesMonitor
    from emstream.temporal import TemporalFeatures

    features = TemporalFeatures(lags=1, season=24)
    assert features.transform(np.zeros((0, 2))).shape == (0, features.n_features_out(2))
    assert features.width is None and features.state() == TemporalFeatures(
        lags=1, season=24).state()
    monitor = SeriesMonitor(DriftMonitor(GaussianMixture(2, random_state=0)),
                            TemporalFeatures(lags=1))
    for rows in (0, 500):
        if rows:
            monitor.update(np.random.default_rng(0).normal(size=(rows, 1)))
        with pytest.raises(ValueError, match="X is empty"):
            monitor.update(np.zeros((0, 1)))


@pytest.mark.parametrize("bad", ["2014-02-30 00:00:00", "2014-07-09 23:59:60",
                                 "2014-13-01 00:00:00", "2014-07-09 25:00:00"])
def test_a_date_that_does_not_exist_in_a_long_time_column_is_one_bad_timestamp(tmp_path, bad):
    """One February 30 (or leap second, month 13, hour 25) among 2,000 ISO times of one shape:
    numpy 2.4's cast of the column crashed the daemon with a segmentation fault (exit 139, no
    checkpoint, and again at every restart), and `emstream fit` too."""
    times = np.datetime64("2014-07-01T00:00") + np.arange(2000) * np.timedelta64(5, "m")
    stamps = [str(t).replace("T", " ") + ":00" for t in times]
    stamps[1000] = bad
    values = np.random.default_rng(0).normal(size=2000)
    table = tmp_path / "t.csv"
    table.write_text("timestamp,value\n" + "".join(f"{t},{v:.4f}\n"
                                                   for t, v in zip(stamps, values)))
    done = subprocess.run([*DAEMON, "--input", str(table), "--checkpoint", str(tmp_path / "s"),
                           "--no-output"], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    counters = checkpoint.load(tmp_path / "s").meta["counters"]
    assert counters["rejected"] == {"bad timestamp": 1} and counters["rows"] == 1999
    parsed = parse_times(np.array([s.encode() for s in stamps]))
    assert np.isnan(parsed[1000]) and np.isfinite(np.delete(parsed, 1000)).all()


def test_one_wild_value_among_the_first_rows_does_not_set_the_series_units(tmp_path):
    """A sentinel or glitch (1e7 in a series of 50 ± 20) among the first rows makes the
    series' units (reg_covar auto: a share of their variance, 1e9 here): every later point
    looks alike, and a spike of 12 sd later in the series gets no alert."""
    rng = np.random.default_rng(3)
    n = 4000
    times = np.datetime64("2024-01-01T00:00") + np.arange(n) * np.timedelta64(5, "m")
    values = 50 + 20 * np.sin(2 * np.pi * np.arange(n) / 288) + rng.normal(0, 2, n)
    values[3000] += 25
    table = tmp_path / "t.csv"
    lines = [f"{t},{v:.3f}" for t, v in zip(times.astype(str), values)]
    for name, glitch in (("clean", None), ("glitch", 1e7)):
        if glitch is not None:
            lines[2] = f"{times[2]},{glitch}"
        table.write_text("timestamp,value\n" + "\n".join(lines) + "\n")
        done = subprocess.run([*DAEMON, "--input", str(table), "--checkpoint",
                               str(tmp_path / name)], capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        flagged = [int(row.split(",")[0]) for row in done.stdout.decode().splitlines()
                   if row.endswith(",1")]
        assert 3002 in flagged, (name, flagged)  # (line 3002: row 3000 after the header)


def test_a_start_up_burst_at_one_time_does_not_turn_the_season_off(tmp_path):
    """Sixty rows stamped with the same second (an agent's backlog flushed at start-up) among
    the first mini-batch made its median step 0: no time step, no season, for good.  The
    steps that move forward set it; a day of doubled swing later is then found as on the
    same series without the burst."""
    rng = np.random.default_rng(8)
    x = _seasonal(rng, 20 * DAY)
    x[15 * DAY:16 * DAY] = 10.0 + 2 * (x[15 * DAY:16 * DAY] - 10.0)
    data = tmp_path / "series.csv"
    _write_table(data, x)
    lines = data.read_text().splitlines()
    stamp = lines[1].split(",")[0]
    burst = [f"{stamp},{10.0 + 0.1 * rng.normal():.4f}" for _ in range(60)]
    data.write_text("\n".join([lines[0], *burst, *lines[1:]]) + "\n")
    done = subprocess.run([*DAEMON, "--input", str(data), "--checkpoint", str(tmp_path / "s")],
                          capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    log = done.stderr.decode()
    assert "a time step of 600 s; the value 86400 s back in the context" in log, log[-3000:]
    flags, _ = _flags(done.stdout.decode())
    flagged = np.asarray(flags) - 60  # (rows of the series, after the burst)
    assert ((flagged >= 15 * DAY) & (flagged < 16 * DAY)).any(), flags


def test_times_keep_their_microseconds():
    """Times were cut to milliseconds: a 10 kHz sensor's rows shared each time ten by ten,
    and the series' time step came out 0 ("times that do not move forward")."""
    from emstream.timestamps import typical_step

    stamps = np.datetime64("2024-01-01T00:00:00") + np.arange(200) * np.timedelta64(100, "us")
    for fields in (np.array([str(t).encode() for t in stamps]),  # a table's column
                   [str(t).encode() for t in stamps],  # field by field
                   [str(t).encode() + b"+01:00" for t in stamps]):  # with an offset
        times = parse_times(fields)
        assert typical_step(times) == pytest.approx(1e-4, rel=1e-2)
        assert np.all(np.diff(times) > 0)
