"""The daemon's parser stage alone (emstreamd.parser.BlockParser): no daemon, no files."""

from __future__ import annotations

import numpy as np
import pytest

from emstream.checkpoint import CheckpointError
from emstreamd import config as config_module
from emstreamd.errors import StartError
from emstreamd.parser import BlockParser


def _parser(**input_settings) -> BlockParser:
    overrides = [("input", name, value) for name, value in input_settings.items()]
    return BlockParser(config_module.load(None, overrides)["input"],
                       where=lambda line: f" (file line {line})")


def test_plain_numbers_decide_no_layout_and_the_first_line_fixes_the_width():
    parser = _parser()
    parsed, ends = parser.parse(b"1,2\n3,4\n5\nx,y\n", first=1, n_fields=None)
    assert parser.layout is False
    assert parsed.rows.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert parsed.lines.tolist() == [1, 2]
    assert ends.tolist() == [4, 8, 10, 14]
    assert parsed.reject_counts() == {"wrong field count": 1, "non-numeric": 1}


def test_a_table_with_times_keeps_its_layout_through_a_checkpoint():
    parser = _parser()
    block = b"timestamp,value\n2024-01-01 00:00:00,1.5\n2024-01-01 00:05:00,2.5\n"
    parsed, ends = parser.parse(block, first=1, n_fields=None)
    assert parser.layout.time_field is not None and parser.layout.names == ("timestamp",
                                                                            "value")
    assert parsed.rows.ravel().tolist() == [1.5, 2.5] and parsed.lines.tolist() == [2, 3]
    assert parser.row_width() == 1
    # A restart reads on with the layout the checkpoint kept, and its next block has no header.
    resumed = _parser()
    resumed.restore(parser.state(), "ck.json", learned=True)
    assert resumed.layout == parser.layout
    parsed, _ = resumed.parse(b"2024-01-01 00:10:00,3.5\n", first=4, n_fields=None)
    assert parsed.rows.ravel().tolist() == [3.5] and parsed.lines.tolist() == [4]


def test_a_rotated_file_that_repeats_the_header_skips_it_and_one_of_other_columns_is_rejected(
        caplog):
    parser = _parser()
    parser.parse(b"timestamp,value\n2024-01-01 00:00:00,1\n", first=1, n_fields=None)
    parser.next_file()
    parsed, _ = parser.parse(b"timestamp,value\n2024-01-01 00:05:00,2\n", first=3,
                             n_fields=None)
    assert parsed.rows.ravel().tolist() == [2.0] and not parsed.reject_counts()
    parser.next_file()
    parsed, _ = parser.parse(b"timestamp,load\n2024-01-01 00:10:00,3\n", first=5,
                             n_fields=None)
    assert parsed.rows.size == 0 and parsed.reject_counts() == {"columns changed": 2}
    assert "line 5 (file line 5) is a header of other columns" in caplog.text
    parser.next_file()  # the next file's own header decides again
    parsed, _ = parser.parse(b"timestamp,value\n2024-01-01 00:15:00,4\n", first=7,
                             n_fields=None)
    assert parsed.rows.ravel().tolist() == [4.0]


@pytest.mark.parametrize("above", [b"", b"# exporter v2\n", b"\n# exporter v2\n\n"])
def test_a_new_file_s_reordered_header_is_read_by_name_even_below_comment_lines(above, caplog):
    """The next file (a rotation, or a new standard input) names the columns in another
    order: its rows are read by name.  A comment line above that header hid it, and the rows
    were learned by position, their columns swapped, without a word."""
    parser = _parser()
    parser.parse(b"timestamp,cpu,mem\n2024-01-01 00:00:00,10,90\n", first=1, n_fields=None)
    parser.next_file()
    block = above + b"timestamp,mem,cpu\n2024-01-01 00:05:00,91,11\n"
    first = 3
    parsed, _ = parser.parse(block, first=first, n_fields=None)
    assert parsed.rows.tolist() == [[11.0, 91.0]]  # (cpu, mem), as the stream's columns
    header_line = first + above.count(b"\n")
    assert f"line {header_line} (file line {header_line}) is a header of other columns" \
        in caplog.text
    rejected = {k: n for k, n in parsed.reject_counts().items() if k != "blank"}
    assert sum(rejected.values()) == above.count(b"#")  # (the comment line alone)


def test_restore_refuses_a_malformed_layout_and_one_of_the_other_format():
    with pytest.raises(CheckpointError, match="bad input layout"):
        _parser().restore({"layout": {"names": 3}}, "ck.json", learned=True)
    jsonl = _parser(format="jsonl", fields=["v"])
    jsonl.parse(b'{"v": 1}\n', first=1, n_fields=None)
    with pytest.raises(StartError, match="input.format: jsonl"):
        _parser().restore(jsonl.state(), "ck.json", learned=True)


def test_wide_text_and_compressed_bytes_stop_before_anything_is_read():
    with pytest.raises(StartError, match="UTF-16"):
        _parser().parse("1\n2\n".encode("utf-16"), first=1, n_fields=None)
    with pytest.raises(StartError, match="gzip-compressed"):
        _parser().parse(b"\x1f\x8b\x08\x00rest\n", first=1, n_fields=None)
    assert np.isfinite(_parser().parse(b"7\n", first=1, n_fields=None)[0].rows).all()


def test_a_resume_refuses_columns_beyond_the_checkpoint_s_width_and_expects_a_new_header():
    parser = _parser(columns=[0, 3])
    parser.restore({"layout": "plain"}, "ck.json", learned=True)
    with pytest.raises(StartError, match="needs 4 fields per line"):
        parser.resume_at(10, 123, n_fields=2)
    table = _parser()
    table.parse(b"timestamp,value\n2024-01-01 00:00:00,1\n", first=1, n_fields=None)
    # A new standard input (numbered from 1 again) may start with the header again, or with
    # a row, which is not skipped as the header (one row lost at every restart).
    for block, values in ((b"timestamp,value\n2024-01-01 00:05:00,2\n", [2.0]),
                          (b"2024-01-01 00:05:00,2\n2024-01-01 00:10:00,3\n", [2.0, 3.0])):
        resumed = _parser()
        resumed.restore(table.state(), "ck.json", learned=True)
        resumed.resume_at(1, 0, n_fields=None)
        parsed, _ = resumed.parse(block, first=1, n_fields=None)
        assert parsed.rows.ravel().tolist() == values and not parsed.reject_counts()
