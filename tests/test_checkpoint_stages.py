"""The daemon's checkpoint helpers as stages of their own, without a daemon: the lock on the
checkpoint path (:class:`emstreamd.lock.CheckpointLock`), the per-point output's marks
(:class:`emstreamd.outputmarks.OutputMarks`), when a checkpoint is due
(:class:`emstreamd.schedule.CheckpointSchedule`) and the input's position
(:class:`emstreamd.position.InputPosition`)."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from emstreamd.errors import EX_TEMPFAIL, StartError
from emstreamd.lock import CheckpointLock
from emstreamd.outputmarks import OutputMarks, first_unreported
from emstreamd.position import InputPosition
from emstreamd.schedule import RETRY_SECONDS, CheckpointSchedule
from emstreamd.sinks import PointSink

SETTINGS = {"format": "csv", "header": False, "cut_back": True}


def _update(n: int):
    return SimpleNamespace(resp=np.ones((n, 1)), surprise=np.zeros(n), anomaly=np.zeros(n, bool),
                           score=np.zeros(n))


def _write(sink: PointSink, first: int, n: int) -> None:
    assert sink.write(np.arange(first, first + n), None, _update(n)) is None


def _config(state, cut_back=True) -> dict:
    return {"output": {**SETTINGS, "cut_back": cut_back}, "input": {"key": None},
            "checkpoint": {"path": str(state)}}


def _file_source(path):
    identity = {"kind": "file", "path": str(path), "device": 1, "inode": 2, "fingerprint": "f"}
    return SimpleNamespace(kind="file", identity=lambda: dict(identity))


def test_the_lock_refuses_a_second_holder_and_passes_on_after_close(tmp_path):
    first = CheckpointLock(tmp_path / "s")
    first.take()
    with pytest.raises(StartError) as refused:
        CheckpointLock(tmp_path / "s").take()
    assert refused.value.exit_code == EX_TEMPFAIL
    assert first.ours(lambda: True)
    first.close()
    second = CheckpointLock(tmp_path / "s")
    second.take()
    second.close()


def test_a_removed_directory_is_locked_again_unless_another_daemon_took_it(tmp_path):
    state = tmp_path / "s"
    mine = CheckpointLock(state)
    mine.take()
    shutil.rmtree(state)
    assert mine.ours(lambda: True) and mine.lost is None  # locked again, at a new lock file
    shutil.rmtree(state)
    other = CheckpointLock(state)
    other.take()  # (another daemon started on the free path)
    assert not mine.ours(lambda: True)
    assert "is now another's" in mine.lost
    assert not mine.ours(lambda: True)  # for good: nothing more is written there
    other.close()


def test_state_gone_under_a_held_lock_is_lost_for_good(tmp_path):
    mine = CheckpointLock(tmp_path / "s")
    mine.take()
    assert not mine.ours(lambda: False)
    assert "removed or replaced" in mine.lost and mine.handle is None
    assert not mine.ours(lambda: True)


def test_a_restart_cuts_the_output_back_to_its_checkpoints_mark(tmp_path):
    with open(tmp_path / "points.csv", "wb") as out:
        marks = OutputMarks(PointSink(out, SETTINGS), _config(tmp_path / "s"))
        _write(marks.sink, 1, 5)
        mark = marks.marks()
        assert mark["output"] is not None
        _write(marks.sink, 6, 3)  # (written after the checkpoint, then killed)
    with open(tmp_path / "points.csv", "ab") as out:
        restarted = OutputMarks(PointSink(out, SETTINGS), _config(tmp_path / "s"))
        restarted.cut_back(mark, first_line=6)
        _write(restarted.sink, 6, 3)  # (the resumed run reports those rows again)
    lines = (tmp_path / "points.csv").read_text().splitlines()
    assert [int(line.split(",")[0]) for line in lines] == list(range(1, 9))


def test_no_cut_back_keeps_every_line(tmp_path):
    with open(tmp_path / "points.csv", "wb") as out:
        marks = OutputMarks(PointSink(out, SETTINGS), _config(tmp_path / "s", cut_back=False))
        _write(marks.sink, 1, 5)
        assert marks.marks() == {"output": None}
        marks.cut_back({"output": None}, 1)
    assert len((tmp_path / "points.csv").read_text().splitlines()) == 5


def test_a_run_killed_before_its_first_checkpoint_is_cut_by_the_next_run_of_that_input(
        tmp_path):
    state = tmp_path / "s"
    state.mkdir()
    source = _file_source(tmp_path / "in.txt")
    with open(tmp_path / "points.csv", "wb") as out:
        marks = OutputMarks(PointSink(out, SETTINGS), _config(state))
        marks.begin(source)
        assert marks.start_note.exists()
        _write(marks.sink, 1, 4)  # (then killed: no checkpoint says where its lines end)
    with open(tmp_path / "points.csv", "ab") as out:
        again = OutputMarks(PointSink(out, SETTINGS), _config(state))
        again.begin(source)  # reads the input from its start: the 4 lines go
        _write(again.sink, 1, 6)
        again.forget_start()  # (its first checkpoint)
        assert not again.start_note.exists()
    lines = (tmp_path / "points.csv").read_text().splitlines()
    assert [int(line.split(",")[0]) for line in lines] == list(range(1, 7))


def test_a_note_of_another_input_or_from_a_standard_input_cuts_nothing(tmp_path):
    state = tmp_path / "s"
    state.mkdir()
    with open(tmp_path / "points.csv", "wb") as out:
        marks = OutputMarks(PointSink(out, SETTINGS), _config(state))
        marks.begin(_file_source(tmp_path / "a.txt"))
        _write(marks.sink, 1, 4)
    with open(tmp_path / "points.csv", "ab") as out:
        other = OutputMarks(PointSink(out, SETTINGS), _config(state))
        other.begin(_file_source(tmp_path / "b.txt"))
        _write(other.sink, 1, 2)
    assert len((tmp_path / "points.csv").read_text().splitlines()) == 6
    with open(tmp_path / "points.csv", "ab") as out:
        piped = OutputMarks(PointSink(out, SETTINGS), _config(state))
        piped.begin(SimpleNamespace(kind="stdin"))
        assert not piped.start_note.exists()  # (a standard input's lines come once)
    assert len((tmp_path / "points.csv").read_text().splitlines()) == 6


def test_the_first_unreported_line_is_a_carried_rows_if_it_comes_first():
    assert first_unreported({"carried": {"lines": [3, 4]}}, 10) == 3
    assert first_unreported({"carried": None}, 10) == 10
    assert first_unreported({"carried": {"lines": ["x"]}}, 10) == 10


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_checkpoint_is_due_by_points_or_by_seconds_with_new_state():
    clock = _Clock()
    schedule = CheckpointSchedule({"every_points": 100, "every_seconds": 60}, clock=clock)
    clock.now += 3600
    assert not schedule.due()  # (an hour, but nothing new to keep)
    schedule.add(1)
    assert schedule.due()
    schedule.written()
    schedule.add(99)
    assert not schedule.due()
    schedule.add(1)
    assert schedule.due()


def test_a_failed_checkpoint_is_retried_after_a_pause_not_at_once():
    clock = _Clock()
    schedule = CheckpointSchedule({"every_points": 10, "every_seconds": 60}, clock=clock)
    schedule.add(50)
    schedule.failed()
    clock.now += RETRY_SECONDS - 0.1
    assert not schedule.due()
    clock.now += 0.2
    assert schedule.due() and schedule.rows == 50  # (the rows still wait for a checkpoint)


def test_a_keyed_daemons_checkpoints_take_at_most_their_share_of_its_time():
    clock = _Clock()
    settings = {"every_points": 10, "every_seconds": 60}
    schedule = CheckpointSchedule(settings, share=0.1, clock=clock)
    schedule.written(took=2.0)  # (a commit of many keys: 2 s, so 18 s of other work first)
    schedule.add(1000)
    clock.now += 17.9
    assert not schedule.due()
    clock.now += 0.2
    assert schedule.due()
    settings["every_points"] = 10_000  # (a SIGHUP's reload changes the section in place)
    assert not schedule.due()


def _rows(lines, ends):
    return np.ones((len(lines), 1)), np.array(lines), np.array(ends)


def test_the_position_s_line_is_the_line_at_its_byte_offset_whatever_waits_after_it():
    # A header (line 1, bytes 0-15), then rows on lines 2 and 3 still waiting (a first
    # mini-batch deciding): the position is byte 0, line 1, not the first waiting row's line.
    position = InputPosition(offset=0)
    position.read(3)
    rows, lines, ends = _rows([2, 3], [20, 24])
    position.pending.add(rows, lines, ends=ends)
    assert (position.offset, position.line()) == (0, 1)
    counters = position.counters_at({"lines": 3, "rejected": {}})
    assert counters["lines"] == 0  # (a restart reads all three again)
    # Rows 2 and 3 learned: the position is past line 3.
    position.applied(position.take(2, {}), read_offset=24, now=0.0)
    assert (position.offset, position.line()) == (24, 4)


def test_a_line_neither_waiting_nor_counted_keeps_its_own_number_at_the_position():
    # Lines 1-200 learned; line 201 a reject whose dead letter could not be written (not
    # counted, not waiting), rows 202-203 waiting: the position is line 201, not 202.
    position = InputPosition(offset=0)
    position.read(200)
    position.all_applied(1500)
    position.read(3)
    rows, lines, ends = _rows([202, 203], [1510, 1515])
    position.pending.add(rows, lines, ends=ends)
    assert (position.offset, position.line()) == (1500, 201)
    assert position.counters_at({"lines": 203, "rejected": {}})["lines"] == 200


def test_a_resumed_position_starts_at_the_checkpoint_s_line():
    position = InputPosition(offset=0)
    position.restart(4096, 312)
    assert (position.offset, position.line(), position.next_line) == (4096, 312, 312)
    position.read(5)
    assert position.line() == 312 and position.counters_at({"lines": 5, "rejected": {}})[
        "lines"] == 0
