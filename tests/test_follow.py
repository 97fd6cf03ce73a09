"""emstreamd --follow: appends, rotation by rename, copytruncate, a missing file, a partial last
line, and SIGKILLs at random moments while a writer appends, rotates and copytruncates (with a
checkpoint asked for right after each copytruncate)."""

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from emstream import checkpoint

from .conftest import ROOT, STARTED, until as _until
from .test_daemon import _wait_for

DAEMON = [sys.executable, "-m", "emstreamd"]


def _lines(n, start):
    rng = np.random.default_rng(start)
    values = np.array([10.0, 20.0, 35.0])[rng.choice(3, n)] + rng.normal(size=n)
    return "".join(f"{v:.6f}\n" for v in values)


def _daemon(log, state, extra=()):
    settings = ["--config", str(ROOT / "config.yaml"), "--follow", str(log), "--checkpoint",
                str(state), "--no-output", "--set", "model.warmup_size=200", "--set",
                "batch.max_wait=0.05", "--set", "checkpoint.every_points=500",
                "--set", "checkpoint.every_seconds=0.2", "--set", "status.every_seconds=0",
                *extra]
    process = subprocess.Popen([*DAEMON, *settings], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    STARTED.append(process)
    return process


def _rows(state):
    try:
        return checkpoint.load(state).meta["counters"]["rows"]
    except Exception:
        return -1


def _stop(process):
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, process.stderr.read().decode()


def test_appends_rename_rotation_copytruncate_and_a_missing_file(tmp_path):
    log, state = tmp_path / "app.log", tmp_path / "state"
    process = _daemon(log, state)  # the file does not exist yet
    _wait_for(process, "ready")  # (and still does not: the daemon waits for it)
    log.write_text(_lines(1000, 1))
    assert _until(lambda: _rows(state) == 1000)
    with open(log, "a") as handle:  # append, with a partial last line finished later
        handle.write(_lines(500, 2) + "12.5")
        handle.flush()
        time.sleep(0.5)
        handle.write("\n")
    assert _until(lambda: _rows(state) == 1501)
    os.rename(log, tmp_path / "app.log.1")  # rotation by rename, then a new file
    with open(tmp_path / "app.log.1", "a") as old:
        old.write(_lines(100, 3))  # the writer still finishes into the old file
    log.write_text(_lines(400, 4))
    assert _until(lambda: _rows(state) == 2001)
    shutil.copy(log, tmp_path / "app.log.2")  # copytruncate (writer paused)
    with open(log, "r+") as handle:
        handle.truncate(0)
    time.sleep(0.3)
    with open(log, "a") as handle:
        handle.write(_lines(300, 5))
    assert _until(lambda: _rows(state) == 2301), _rows(state)
    _stop(process)
    assert _rows(state) == 2301


def _prelude_then_readings(n_zeros, n, start):
    """A sensor's file: ``n_zeros`` idle zeros (byte for byte the same in every file it
    starts), then ``n`` readings."""
    return "0\n" * n_zeros + _lines(n, start)


@pytest.mark.parametrize("while_down", [False, True])
def test_a_copytruncate_refilled_past_the_position_with_the_same_first_bytes(tmp_path,
                                                                            while_down):
    """The file is copytruncated and written past the position before the daemon looks (or
    while it is down), and its first KiB is what it was (a sensor's idle prelude): only the
    bytes before the position tell.  The position was taken as the new file's: 700 of 1,700
    lines were lost, the copy's unread lines and the new file's first ones (found by an
    attack helper)."""
    log, state = tmp_path / "app.log", tmp_path / "state"
    log.write_text(_prelude_then_readings(600, 50, 1))
    process = _daemon(log, state)
    assert _until(lambda: _rows(state) == 650)
    with open(log, "a") as handle:
        handle.write(_lines(50, 2))
    if while_down:
        _stop(process)
    else:
        assert _until(lambda: _rows(state) == 700)
    new = _prelude_then_readings(600, 400, 3)
    shutil.copy(log, tmp_path / "app.log.1")
    with open(log, "r+") as handle:  # copytruncate, and the writer refills it at once
        handle.truncate(0)
        handle.write(new)
    if while_down:
        process = _daemon(log, state)
    assert _until(lambda: _rows(state) == 1700), _rows(state)
    time.sleep(0.5)  # (enough for lines taken twice to show)
    _stop(process)
    assert _rows(state) == 1700


@pytest.mark.parametrize("while_down", [False, True])
def test_a_line_rewritten_in_place_is_no_copytruncate(tmp_path, while_down):
    """An export that updates its last row in place, then appends: the bytes before the
    position changed, with no copy beside the file, and the reader took it for a copytruncate
    refilled past the position and read the whole file again (2,000 rows twice; a regression
    of the check above, found in review).  It reads on from the position."""
    log, state = tmp_path / "app.log", tmp_path / "state"
    log.write_text("".join(f"{10 + (i % 7) * 0.5:.6f}\n" for i in range(2000)))
    process = _daemon(log, state)
    assert _until(lambda: _rows(state) == 2000)
    if while_down:
        _stop(process)
    with open(log, "r+") as handle:  # the last row updated in place (as long as it was)
        handle.seek(1999 * 10)
        handle.write("11.111111\n")
    time.sleep(0.5)
    with open(log, "a") as handle:
        handle.write("".join(f"{20 + i:.6f}\n" for i in range(10)))
    if while_down:
        process = _daemon(log, state)
    assert _until(lambda: _rows(state) == 2010), _rows(state)
    time.sleep(0.5)  # (enough for the file read again to show)
    _stop(process)
    assert _rows(state) == 2010


def test_after_a_rename_rotation_only_rotated_files_are_taken_for_the_next(tmp_path):
    """A dead-letter file and a backup beside the log are not its next file: taken for it
    (any newer app.log.* was), the daemon read its own dead letters back, rejected them again
    and grew the file without end, or learned the backup's lines a second time, and never
    read the new app.log."""
    log, state = tmp_path / "app.log", tmp_path / "state"
    log.write_text(_lines(600, 1) + "oops\n")
    process = _daemon(log, state, ("--set", f"input.dead_letter={tmp_path / 'app.log.rejected'}"))
    assert _until(lambda: _rows(state) == 600)
    shutil.copy(log, tmp_path / "app.log.bak")  # an operator's backup
    os.rename(log, tmp_path / "app.log.1")  # logrotate's rename, then a new file
    log.write_text(_lines(300, 2))
    assert _until(lambda: _rows(state) == 900), _rows(state)
    time.sleep(1.5)  # (enough for a wrong next file to be read)
    _stop(process)
    meta = checkpoint.load(state).meta
    assert meta["counters"]["rows"] == 900 and meta["counters"]["rejected"] == {"non-numeric": 1}
    assert len((tmp_path / "app.log.rejected").read_text().splitlines()) == 1
    assert meta["input"]["path"] == str(log)


def test_lines_drained_from_a_renamed_file_are_named_by_its_new_name(tmp_path):
    """After logrotate's rename the writer finishes into the renamed file, which the daemon
    drains: its lines were named by the followed path ("app.log line 601"), where an
    operator finds nothing (the path holds the new file, or nothing yet)."""
    log, state = tmp_path / "app.log", tmp_path / "state"
    log.write_text(_lines(600, 1))
    process = _daemon(log, state)
    assert _until(lambda: _rows(state) == 600)
    os.rename(log, tmp_path / "app.log.1")
    time.sleep(0.5)  # (the daemon polls the path meanwhile, and finds it gone)
    with open(tmp_path / "app.log.1", "a") as old:
        old.write("oops\n")
    seen = "".join(_wait_for(process, "rejected (non-numeric)"))
    assert f"line 601 ({tmp_path / 'app.log.1'} line 601) rejected" in seen, seen
    log.write_text(_lines(10, 2) + "bad\n")
    seen = "".join(_wait_for(process, "'bad'"))
    assert f"line 612 ({log} line 11) rejected" in seen, seen
    _stop(process)


def test_a_quiet_log_renamed_is_drained_until_its_writer_writes_to_the_new_file(tmp_path):
    """A log quieter than a second: the old file was left as soon as the rename was seen, and
    the line its writer wrote there before reopening (logrotate's postrotate HUP) was lost,
    with nothing logged; a SIGTERM meanwhile moved the checkpoint into the new file too."""
    log, state = tmp_path / "app.log", tmp_path / "state"
    log.write_text(_lines(600, 1))
    process = _daemon(log, state)
    assert _until(lambda: _rows(state) == 600)
    time.sleep(1.5)  # (a log quiet for longer than the rotation's quiet second)
    with open(log, "a") as writer:  # the application's descriptor
        os.rename(log, tmp_path / "app.log.1")
        log.write_text("")  # logrotate's create
        time.sleep(1.5)  # (its reopen, a service's reload, comes after the quiet second)
        writer.write(_lines(1, 2))
    log.write_text(_lines(10, 3))  # reopened: it writes to the new file
    assert _until(lambda: _rows(state) == 611), _rows(state)
    _stop(process)


def _table(n, start, header=True):
    """A time-series table (5-minute rows from ``start`` rows after a fixed time)."""
    t0 = np.datetime64("2024-01-01T00:00") + np.timedelta64(5 * start, "m")
    times = t0 + np.arange(n) * np.timedelta64(5, "m")
    values = _lines(n, start).splitlines()
    return ("timestamp,value\n" if header else "") + "".join(
        f"{t},{v}\n" for t, v in zip(times.astype(str), values))


def test_a_rotated_table_that_starts_with_its_header_again_rejects_nothing(tmp_path):
    """A CSV log whose writer starts every file with the header: each rename rotation and
    each copytruncate counted the new file's header as a rejected line (and logged a
    warning), though the first file's header was skipped as a header."""
    log, state = tmp_path / "app.csv", tmp_path / "state"
    log.write_text(_table(600, 0))
    process = _daemon(log, state)
    assert _until(lambda: _rows(state) == 600)
    os.rename(log, tmp_path / "app.csv.1")  # rotation by rename: a new file, its header
    log.write_text("\n" + _table(300, 600))  # (a blank line first: the header is then line 2)
    assert _until(lambda: _rows(state) == 900), _rows(state)
    with open(log, "r+") as handle:  # copytruncate, and the writer starts over, header first
        handle.truncate(0)
    time.sleep(0.3)
    log.write_text(_table(200, 900))
    assert _until(lambda: _rows(state) == 1100), _rows(state)
    os.rename(log, tmp_path / "app.csv.2")  # a file without its header: nothing skipped
    log.write_text(_table(100, 1100, header=False) + "timestamp,value\n")
    assert _until(lambda: _rows(state) == 1200), _rows(state)
    _stop(process)
    meta = checkpoint.load(state).meta
    # (the header line in the middle of a file is no header: rejected; a blank line is counted)
    assert meta["counters"]["rows"] == 1200
    assert meta["counters"]["rejected"] == {"blank": 1, "non-numeric": 1}
    assert meta["counters"]["lines"] == 1 + 600 + 2 + 300 + 1 + 200 + 101
    # The checkpoint keeps the stream's own header line: a rotated file's, kept there, made
    # any input read later from its start skip that line number's data row.
    assert meta["layout"]["header_line"] == 1
    archive = tmp_path / "archive.csv"
    archive.write_text(_table(1000, 5000))
    done = subprocess.run([*DAEMON, "--config", str(ROOT / "config.yaml"), "--input",
                           str(archive), "--checkpoint", str(state), "--no-output"],
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    after = checkpoint.load(state).meta["counters"]
    assert after["rows"] == 1200 + 1000 and after["rejected"] == meta["counters"]["rejected"]


def _reordered(n, start, header):
    """``_table``'s rows with the columns of ``header`` (timestamp and value where it names
    them, a host and a counter in its other columns)."""
    names = header.split(",")
    fields = {"host": ["web-1"] * n, "extra": [str(i) for i in range(n)]}
    for line in _table(n, start, header=False).splitlines():
        stamp, value = line.split(",")
        fields.setdefault("timestamp", []).append(stamp)
        fields.setdefault("value", []).append(value)
        fields.setdefault("reading", []).append(value)
    return header + "\n" + "".join(",".join(fields[name][i] for name in names) + "\n"
                                   for i in range(n))


def test_a_rotated_file_whose_header_moves_or_adds_columns_is_read_by_name(tmp_path):
    """A writer restarted with more columns (logrotate's new file under a new header): every
    line of the new file was rejected ("wrong field count", 301 of 301), with no word about
    why.  The stream's columns are now found by name in the new header, after a restart
    too.  (Features off: the model is then over the values, which the check below needs.)"""
    log, state = tmp_path / "app.csv", tmp_path / "state"
    log.write_text(_table(600, 0))
    raw = ("--set", "features.enabled=false")
    process = _daemon(log, state, raw)
    assert _until(lambda: _rows(state) == 600)
    os.rename(log, tmp_path / "app.csv.1")
    log.write_text(_reordered(300, 600, "host,value,extra,timestamp"))
    assert _until(lambda: _rows(state) == 900), _rows(state)
    _stop(process)
    err = process.stderr.read().decode()
    assert "line 602 (" in err and "app.csv line 1) is a header of other columns (host, " \
        "value, extra, timestamp): the stream's columns are taken from it by name" in err
    with open(log, "a") as handle:  # more of the new file, read by a restarted daemon
        handle.write(_reordered(200, 900, "host,value,extra,timestamp").split("\n", 1)[1])
    process = _daemon(log, state, raw)
    assert _until(lambda: _rows(state) == 1100), _rows(state)
    _stop(process)
    meta = checkpoint.load(state).meta
    assert meta["counters"]["rejected"] == {} and meta["counters"]["lines"] == 1102
    assert meta["layout"]["names"] == ["host", "value", "extra", "timestamp"]
    # The same values in one table: the same model, but for mini-batch boundaries (the
    # counter column, 0 to 299, taken for the values would put a mean near 150).
    straight = tmp_path / "straight.csv"
    straight.write_text(_table(1100, 0))
    done = subprocess.run([*DAEMON, "--config", str(ROOT / "config.yaml"), "--input",
                           str(straight), "--checkpoint", str(tmp_path / "straight.json"),
                           "--no-output", "--set", "model.warmup_size=200", *raw],
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    followed = checkpoint.load(state).model
    alone = checkpoint.load(tmp_path / "straight.json").model
    np.testing.assert_allclose(np.sort(followed.means_[:, 0]), np.sort(alone.means_[:, 0]),
                               atol=0.5)


def test_a_rotated_file_without_the_learned_column_is_rejected_not_learned(tmp_path):
    """A new file whose header renames the learned column (timestamp,reading after
    timestamp,value) has as many fields as the old one: its readings were learned as the
    old column's values without a word.  Now its lines are rejected as "columns changed",
    with one error naming the missing column, also after a restart inside that file, until a
    file with the column comes."""
    log, state = tmp_path / "app.csv", tmp_path / "state"
    log.write_text(_table(600, 0))
    process = _daemon(log, state)
    assert _until(lambda: _rows(state) == 600)
    os.rename(log, tmp_path / "app.csv.1")
    log.write_text(_reordered(300, 600, "timestamp,reading"))
    _wait_for(process, "is a header of other columns (timestamp, reading), without 'value'")
    _stop(process)  # (a checkpoint of the rejects: the restart is inside the file)
    assert checkpoint.load(state).meta["counters"]["lines"] == 902
    assert "header of other columns" not in process.stderr.read().decode()  # (said once)
    with open(log, "a") as handle:
        handle.write(_reordered(50, 900, "timestamp,reading").split("\n", 1)[1])
    process = _daemon(log, state)
    _wait_for(process, "ready")
    os.rename(log, tmp_path / "app.csv.2")
    log.write_text(_table(100, 950))
    assert _until(lambda: _rows(state) == 700), _rows(state)
    _stop(process)
    counters = checkpoint.load(state).meta["counters"]
    assert counters["rejected"] == {"columns changed": 351}
    assert counters["lines"] == 952 + 101
    assert counters["rows"] == 700


def test_a_checkpoint_directory_removed_under_a_running_daemon(tmp_path):
    """Removed while the daemon runs ("remove the checkpoint to start a new model"), the
    directory is made and locked again, so a second daemon cannot start on it; if another
    process locked it first, the daemon stops (75) rather than write there too.  (It went on
    writing without the lock: a second daemon started, both wrote the same files.)"""
    from emstreamd import lock

    log, state = tmp_path / "app.log", tmp_path / "state"
    log.write_text(_lines(600, 1))
    extra = ("--set", "checkpoint.every_seconds=1")
    process = _daemon(log, state, extra)
    assert _until(lambda: _rows(state) == 600)
    shutil.rmtree(state)
    with open(log, "a") as handle:
        handle.write(_lines(200, 2))
    assert _until(lambda: _rows(state) == 800), "no checkpoint written again"
    with pytest.raises(lock.StartError):
        lock.acquire(state)  # the daemon holds it again
    shutil.rmtree(state)
    other = lock.acquire(state)  # another process takes the path first
    with open(log, "a") as handle:
        handle.write(_lines(200, 3))
    try:
        assert process.wait(timeout=30) == 75
        assert "is now another's" in process.stderr.read().decode()
        assert not list(state.glob("checkpoint-*.json"))  # nothing written beside the other
    finally:
        other.close()


def test_a_symlink_switched_while_the_daemon_was_down(tmp_path):
    """Following a symlink that was moved on to a new file while the daemon was down: the
    rest of the old target is read first, then the new one (the old target's unread lines were
    lost, with a warning that its inode was gone though the file was still there)."""
    old, new, link, state = (tmp_path / "a.log", tmp_path / "b.log", tmp_path / "current",
                             tmp_path / "state")
    old.write_text(_lines(500, 1))
    link.symlink_to(old)
    process = _daemon(link, state)
    assert _until(lambda: _rows(state) == 500)
    _stop(process)
    with open(old, "a") as handle:
        handle.write(_lines(200, 2))  # written to the old target while the daemon was down
    new.write_text(_lines(300, 3))
    link.unlink()
    link.symlink_to(new)
    process = _daemon(link, state)
    assert _until(lambda: _rows(state) == 1000), _rows(state)
    _stop(process)
    assert "is gone" not in process.stderr.read().decode()


def test_a_back_filled_file_then_followed_goes_on_where_it_was(tmp_path):
    """--input then --follow on the same file (and back): each goes on from the other's
    position; a checkpoint of the other kind was taken for another file, and every line was
    learned again."""
    log, state = tmp_path / "app.log", tmp_path / "state"
    log.write_text(_lines(500, 1))
    done = subprocess.run([*DAEMON, "--config", str(ROOT / "config.yaml"), "--input", str(log),
                           "--checkpoint", str(state), "--no-output"], capture_output=True,
                          timeout=60)
    assert done.returncode == 0 and _rows(state) == 500
    process = _daemon(log, state)
    _wait_for(process, "ready")
    with open(log, "a") as handle:
        handle.write(_lines(300, 2))
    assert _until(lambda: _rows(state) == 800), _rows(state)
    _stop(process)
    with open(log, "a") as handle:
        handle.write(_lines(100, 3))
    done = subprocess.run([*DAEMON, "--config", str(ROOT / "config.yaml"), "--input", str(log),
                           "--checkpoint", str(state), "--no-output"], capture_output=True,
                          timeout=60)
    assert done.returncode == 0 and _rows(state) == 900


def test_a_back_fill_s_last_line_without_newline_is_not_learned_again_in_pieces_when_followed(
        tmp_path):
    """A back-fill learns a last line without its newline as it stands ("1.2"); followed
    after it, the file's "34\\n" written on was learned as a point of its own (a value the file
    never held), and every later line number was one too high.  --input skipped it already."""
    log, state = tmp_path / "app.log", tmp_path / "state"
    log.write_text(_lines(500, 1) + "1.2")
    done = subprocess.run([*DAEMON, "--config", str(ROOT / "config.yaml"), "--input", str(log),
                           "--checkpoint", str(state), "--no-output"], capture_output=True,
                          timeout=60)
    assert done.returncode == 0 and _rows(state) == 501
    process = _daemon(log, state)
    seen = _wait_for(process, "ready")
    assert any("had no newline when the last run ended" in line for line in seen), seen
    with open(log, "a") as handle:
        handle.write("34")  # (the rest of that line comes in two writes)
        handle.flush()
        time.sleep(0.3)
        handle.write("\n" + _lines(299, 2))
    assert _until(lambda: _rows(state) == 800), _rows(state)
    _stop(process)
    counters = checkpoint.load(state).meta["counters"]
    assert counters["rows"] == 800 and counters["lines"] == 800, counters


def test_the_nul_hole_of_a_copytruncate_under_a_writer_not_in_append_mode_is_skipped(tmp_path):
    """A writer without O_APPEND goes on at its old offset after a copytruncate: the file then
    starts with a hole of NULs, read as one line (too long) that took the first real line
    with it; that value was nowhere, not even in the dead letters."""
    log, state = tmp_path / "app.log", tmp_path / "state"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT)  # (the writer: no O_APPEND)
    try:
        os.write(fd, _lines(500, 1).encode())
        process = _daemon(log, state)
        _wait_for(process, "ready")
        assert _until(lambda: _rows(state) == 500), _rows(state)
        shutil.copyfile(log, tmp_path / "app.log.1")
        os.truncate(log, 0)
        time.sleep(0.3)
        os.write(fd, _lines(300, 2).encode())  # at byte ~5,000: a hole before it
    finally:
        os.close(fd)
    assert _until(lambda: _rows(state) == 800), _rows(state)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    err = process.stderr.read().decode()
    assert err.count("NUL bytes from byte 0 skipped") == 1 and "rejected (" not in err, err


def test_a_file_truncated_before_it_was_read_to_its_end_without_a_copy_is_a_warning(
        tmp_path, caplog):
    """A copytruncate whose copy goes elsewhere (logrotate's olddir) while the reader is behind:
    the unread backlog was dropped with an INFO line only."""
    from emstreamd.sources import FollowInput

    log = tmp_path / "app.log"
    log.write_text(_lines(400_000, 1))  # more than one read block
    source = FollowInput(str(log), poll=0.01)
    assert source.read(0.0)
    shutil.copyfile(log, tmp_path / "elsewhere")
    os.truncate(log, 0)
    with caplog.at_level("INFO", logger="emstreamd"):
        source.read(0.0)
    assert source.boundary
    assert "was truncated before it was read to its end" in caplog.text
    caplog.clear()
    source.next_file()  # caught up, then truncated: nothing unread is said lost
    log.write_text(_lines(10, 2))
    while source.read(0.0):
        pass
    os.truncate(log, 0)
    with caplog.at_level("INFO", logger="emstreamd"):
        source.read(0.0)
    assert source.boundary and "was truncated" not in caplog.text
    source.close()
    # Truncated and refilled past the read position (a writer not in append mode): the block
    # read from the new file is not handed out, nor counted as read (the loss went unsaid).
    log.write_text(_lines(160_000, 1))  # (1 to 2 read blocks: the refill outgrows it)
    assert (1 << 20) < log.stat().st_size < (2 << 20)
    source = FollowInput(str(log), poll=0.01)
    assert source.read(0.0)
    os.truncate(log, 0)
    log.write_bytes(b"\0" * (3 << 20) + b"1.0\n")
    caplog.clear()
    with caplog.at_level("INFO", logger="emstreamd"):
        source.read(0.0)
    assert source.boundary and "was truncated before it was read to its end" in caplog.text
    source.close()
    # A file of exactly one read block, read to its end, then truncated: nothing is lost (a
    # full block read said "behind" until the next non-empty read).
    from emstreamd.sources import READ_BYTES

    log.write_bytes(b"12.345678\n" * (READ_BYTES // 10) + b"\n" * (READ_BYTES % 10))
    source = FollowInput(str(log), poll=0.01)
    while source.read(0.0):
        pass
    os.truncate(log, 0)
    caplog.clear()
    with caplog.at_level("INFO", logger="emstreamd"):
        source.read(0.0)
    assert source.boundary and "was truncated" not in caplog.text
    source.close()


def test_a_file_rewritten_while_the_daemon_was_down_is_not_said_to_be_gone(tmp_path):
    """Truncated and written again in place (the same inode) while the daemon was down: the
    warning said the file "is gone", and an operator looked for a deleted file."""
    log, state = tmp_path / "app.log", tmp_path / "state"
    log.write_text(_lines(300, 1))
    process = _daemon(log, state)
    assert _until(lambda: _rows(state) == 300), _rows(state)
    _stop(process)
    with open(log, "w") as rewrite:  # O_TRUNC: the same inode
        rewrite.write(_lines(500, 2))
    process = _daemon(log, state)
    assert _until(lambda: _rows(state) == 800), _rows(state)
    _stop(process)
    err = process.stderr.read().decode()
    assert "was truncated and written again since" in err and "is gone" not in err, err


def test_a_followed_path_that_goes_away_while_its_file_is_read_is_said_once(tmp_path, caplog):
    """Deleted (or a path that cannot be looked up) while the open file is read on: nothing
    was logged while the follower waited for a file at the path."""
    from emstreamd.sources import FollowInput

    log = tmp_path / "app.log"
    log.write_text(_lines(10, 1))
    source = FollowInput(str(log), poll=0.01)
    assert source.read(0.0)
    log.unlink()
    with caplog.at_level("INFO", logger="emstreamd"):
        for _ in range(3):
            assert source.read(0.0) == b""
    assert caplog.text.count("gone (deleted or renamed, nothing in its place yet); reading on") == 1
    source.close()


def test_a_quiet_log_rotated_and_compressed_at_once_is_left_for_the_new_file(tmp_path):
    """Rotated with create and compress (the old file deleted at once) while the new file
    stays empty: a follower that waited for the new file to hold something stayed on the
    deleted one, and the restart warned that lines written to it were lost."""
    import gzip

    log, state = tmp_path / "app.log", tmp_path / "state"
    log.write_text(_lines(600, 1))
    process = _daemon(log, state)
    assert _until(lambda: _rows(state) == 600)
    os.rename(log, tmp_path / "app.log.1")
    log.write_text("")
    with open(tmp_path / "app.log.1", "rb") as old, gzip.open(tmp_path / "app.log.1.gz",
                                                                "wb") as packed:
        shutil.copyfileobj(old, packed)
    os.unlink(tmp_path / "app.log.1")
    _wait_for(process, "now reading")  # (after the old file's quiet second)
    _stop(process)
    assert checkpoint.load(state).meta["input"]["inode"] == log.stat().st_ino
    process = _daemon(log, state)
    seen = "".join(_wait_for(process, "ready"))
    _stop(process)
    assert "WARNING" not in seen + process.stderr.read().decode()


def test_many_nul_holes_cost_linear_time_and_ten_warnings(tmp_path, caplog):
    """A NUL after every line: each hole logged its own warning (80,000 lines), and each split
    copied the rest of the block (quadratic time)."""
    from emstreamd.sources import FollowInput

    log = tmp_path / "app.log"
    log.write_bytes(b"1.0\n\0" * 20_000)
    source = FollowInput(str(log), poll=0.01)
    lines = 0
    with caplog.at_level("WARNING", logger="emstreamd"):
        for _ in range(40_000):
            data = source.read(0.0)
            lines += data.count(b"\n")
            if not data and lines == 20_000:
                break
    assert lines == 20_000 and source.offset == log.stat().st_size
    assert caplog.text.count("NUL bytes from byte") == 10
    assert caplog.text.count("further holes in this file are skipped without a word") == 1
    source.close()


def test_a_nul_hole_after_a_line_inside_a_block_is_skipped_too(tmp_path):
    """A hole that does not begin a read block (crash garbage in the middle of a file, or
    after a line in one write) was glued to the line after it: that line was rejected with
    the NULs as "too long", and the value lost."""
    log, state = tmp_path / "app.log", tmp_path / "state"
    log.write_bytes(_lines(300, 1).encode() + b"\0" * 5000 + _lines(50, 2).encode())
    process = _daemon(log, state)
    assert _until(lambda: _rows(state) == 350), _rows(state)
    with open(log, "ab") as writer:  # one write: a line, a hole, more lines
        writer.write(b"5.0\n" + b"\0" * 300 + _lines(49, 3).encode())
    assert _until(lambda: _rows(state) == 400), _rows(state)
    _stop(process)
    err = process.stderr.read().decode()
    assert err.count("NUL bytes from byte") == 2 and "rejected (" not in err, err


def test_two_rotations_while_the_daemon_was_down_lose_no_file(tmp_path):
    """logrotate with compress and delaycompress, rotating twice while the daemon is down: the
    checkpointed file ends compressed (gone as a file to read on), and the restart read the
    file at the path, skipping the whole file rotated in between (3,000 lines) while its
    warning named no loss there."""
    import gzip

    log, state = tmp_path / "app.log", tmp_path / "state"
    log.write_text(_lines(500, 1))
    process = _daemon(log, state)
    assert _until(lambda: _rows(state) == 500), _rows(state)
    _stop(process)
    os.rename(log, tmp_path / "app.log.1")  # the first rotation
    log.write_text(_lines(300, 2))
    time.sleep(0.05)  # (the files' times in their order)
    first = tmp_path / "app.log.1"  # the second: .1 -> .2.gz, the path -> .1
    (tmp_path / "app.log.2.gz").write_bytes(gzip.compress(first.read_bytes()))
    first.unlink()
    os.rename(log, first)
    log.write_text(_lines(100, 3))
    process = _daemon(log, state)
    assert _until(lambda: _rows(state) == 900), _rows(state)
    _stop(process)
    err = process.stderr.read().decode()
    assert f"reading {first} from its start" in err, err


def test_a_followed_file_of_lone_cr_line_ends_learns_its_last_line_without_waiting(tmp_path):
    """A writer ending lines in a lone CR: the last line was held until the next line came
    (its CR might have begun a CRLF). Now, once the file stops after a CR, that CR ends the
    line; an LF written after it is that line's (a CRLF in two writes), not a blank line."""
    log, state = tmp_path / "mac.log", tmp_path / "state"
    log.write_bytes(_lines(1000, 1).replace("\n", "\r").encode())
    process = _daemon(log, state)
    assert _until(lambda: _rows(state) == 1000), _rows(state)
    with open(log, "ab") as handle:  # one line in two writes, a pause between them
        handle.write(b"12.5\r")
        handle.flush()
        assert _until(lambda: _rows(state) == 1001), _rows(state)
        handle.write(b"\n")
        handle.flush()
        time.sleep(0.3)
        handle.write(_lines(9, 2).replace("\n", "\r\n").encode())
    assert _until(lambda: _rows(state) == 1010), _rows(state)
    # Stopped between the two writes of a line end, and restarted: the rest of that end is
    # no blank line (a fresh reader took the LF for one).
    with open(log, "ab") as handle:
        handle.write(b"13.5\r")
        handle.flush()
        assert _until(lambda: _rows(state) == 1011), _rows(state)
        _stop(process)
        handle.write(b"\r\n" + _lines(9, 3).replace("\n", "\r\n").encode())
    process = _daemon(log, state)
    assert _until(lambda: _rows(state) == 1020), _rows(state)
    _stop(process)
    meta = checkpoint.load(state).meta
    assert meta["counters"]["lines"] == 1020 and not meta["counters"]["rejected"]
    assert meta["input"]["offset"] == log.stat().st_size


def test_a_partial_line_beyond_max_line_bytes_is_dropped_as_it_arrives(tmp_path):
    """A writer's line that grows without a newline is not kept whole: once longer than
    input.max_line_bytes its bytes are dropped as they are read, it counts as one "too long"
    line when it ends, and positions still count its bytes (a restart resumes exactly)."""
    log, state = tmp_path / "app.log", tmp_path / "state"
    log.write_text(_lines(500, 1))
    extra = ("--set", "input.max_line_bytes=1000")
    process = _daemon(log, state, extra)
    assert _until(lambda: _rows(state) == 500)
    with open(log, "ab") as handle:
        for _ in range(40):  # 4 MB, read in many pieces
            handle.write(b"7" * 100_000)
            handle.flush()
            time.sleep(0.01)
        handle.write(b"\n" + _lines(300, 2).encode())
    assert _until(lambda: _rows(state) == 800), _rows(state)
    _stop(process)
    meta = checkpoint.load(state).meta
    assert meta["counters"]["rejected"] == {"too long": 1}
    assert meta["input"]["offset"] == log.stat().st_size
    assert meta["input"]["next_line"] == 802
    with open(log, "a") as handle:
        handle.write(_lines(100, 3))
    process = _daemon(log, state, extra)
    assert _until(lambda: _rows(state) == 900), _rows(state)
    _stop(process)
    meta = checkpoint.load(state).meta
    assert meta["counters"]["lines"] == 901 and meta["counters"]["rejected"] == {"too long": 1}


@pytest.mark.slow
def test_sigkill_while_a_writer_appends_rotates_and_copytruncates_applies_every_line_once(
        tmp_path):
    import threading
    log, state = tmp_path / "app.log", tmp_path / "state"
    log.write_text("")
    process = _daemon(log, state)
    written = {"lines": 0, "text": []}
    running = {"process": process}  # the daemon of the moment, for the writer's SIGUSR1

    def writer():
        rng = np.random.default_rng(1)
        generation = 0
        for step in range(400):
            text = _lines(int(rng.integers(20, 120)), step)
            with open(log, "a") as handle:
                handle.write(text)
            written["lines"] += text.count("\n")
            written["text"].append(text)
            if step % 40 == 39:  # rotate by rename; a new file takes over
                generation += 1
                os.rename(log, tmp_path / f"app.log.{generation}")
                log.write_text("")
            elif step % 40 == 19:  # copytruncate, the writer paused meanwhile
                generation += 1
                shutil.copy(log, tmp_path / f"app.log.{generation}")
                with open(log, "r+") as handle:
                    handle.truncate(0)
                # A checkpoint at once, most likely before the reader has seen the
                # truncation: it must record the bytes read, not the truncated file's.
                # (Before the handlers are installed it ends the daemon: one more kill.)
                running["process"].send_signal(signal.SIGUSR1)
            time.sleep(float(rng.uniform(0.01, 0.08)))

    first = _lines(300, 999)
    with open(log, "a") as handle:  # a first checkpoint, so that restarts know the file
        handle.write(first)
    written["lines"] += 300
    written["text"].insert(0, first)
    assert _until(lambda: _rows(state) == 300)
    thread = threading.Thread(target=writer)
    thread.start()
    rng = np.random.default_rng(0)
    kills = 0
    while thread.is_alive() or kills < 50:
        time.sleep(float(rng.uniform(0.2, 0.9)))
        process.kill()
        process.wait()
        kills += 1
        process = running["process"] = _daemon(log, state)
    thread.join()
    _wait_for(process, "ready")
    assert _until(lambda: _rows(state) == written["lines"], timeout=60), (
        _rows(state), written["lines"])
    _stop(process)
    assert kills >= 50
    assert _rows(state) == written["lines"]
    # Line numbers count the stream across files and restarts: they never started over.
    assert checkpoint.load(state).meta["counters"]["lines"] == written["lines"]
    # The same lines in one uninterrupted back-fill: the same model up to mini-batch boundaries.
    everything = tmp_path / "everything.txt"
    everything.write_text("".join(written["text"]))
    done = subprocess.run([*DAEMON, "--config", str(ROOT / "config.yaml"), "--input",
                           str(everything), "--checkpoint", str(tmp_path / "straight.json"),
                           "--no-output", "--set", "model.warmup_size=200"],
                          capture_output=True, timeout=120)
    assert done.returncode == 0
    followed = checkpoint.load(state).model
    straight = checkpoint.load(tmp_path / "straight.json").model
    order_f, order_s = np.argsort(followed.means_[:, 0]), np.argsort(straight.means_[:, 0])
    sd = np.sqrt(straight.covariances_.reshape(3, -1)[order_s, 0])
    shift = np.abs(followed.means_[order_f, 0] - straight.means_[order_s, 0]) / sd
    assert shift.max() < 0.05, shift


@pytest.mark.parametrize("live", ["follow", "stdin"])
def test_a_stop_while_the_first_mini_batch_waits_keeps_its_rows_for_the_next_run(tmp_path, live):
    """A live series stopped (a deploy, a config change) while its first mini-batch waited for
    the rows its features decide from learned the one row it had as a mini-batch of one: no
    time step, so no daily season and no clock for the model's whole life, across restarts.
    The rows are now carried in the checkpoint, past its position, and learned first next run:
    the model is the one an uninterrupted run makes, and no line is lost or read twice."""
    table = _table(400, 0).splitlines(keepends=True)
    log, state = tmp_path / "app.csv", tmp_path / "state"
    if live == "follow":
        log.write_text("".join(table[:2]))  # the header and the first row
        process = _daemon(log, state, ["--log-level", "INFO"])
    else:
        process = subprocess.Popen([*DAEMON, "--config", str(ROOT / "config.yaml"),
                                    "--checkpoint", str(state), "--no-output",
                                    "--log-level", "INFO"],
                                   stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        STARTED.append(process)
        process.stdin.write("".join(table[:2]).encode())
        process.stdin.flush()
    while b"input: table" not in process.stderr.readline():  # (the row was read)
        assert process.poll() is None
    time.sleep(0.5)  # (batch.max_wait is 0.05 / 0.2 s: the row waits for more)
    _stop(process)
    meta = checkpoint.load(state).meta
    assert meta["counters"]["rows"] == 0 and meta["carried"]["lines"] == [2]
    if live == "follow":
        with open(log, "a") as handle:
            handle.write("".join(table[2:]))
        process = _daemon(log, state)
        assert _until(lambda: _rows(state) == 400), _rows(state)
        _stop(process)
    else:
        done = subprocess.run([*DAEMON, "--config", str(ROOT / "config.yaml"), "--checkpoint",
                               str(state), "--no-output"], input="".join(table[2:]).encode(),
                              capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr.decode()
    meta = checkpoint.load(state).meta
    assert meta["counters"]["rows"] == 400 and meta.get("carried") is None
    assert meta["counters"]["lines"] == 401 and meta["counters"]["rejected"] == {}
    features = meta["series"]["features"]
    assert (features["season_"], features["period"]) == (288, 86400.0)
    whole = tmp_path / "whole"
    log.write_text("".join(table))
    done = subprocess.run([*DAEMON, "--config", str(ROOT / "config.yaml"), "--input", str(log),
                           "--checkpoint", str(whole), "--no-output"], capture_output=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    assert checkpoint.load(whole).meta["series"]["features"]["season_"] == 288


def test_carried_rows_that_are_not_what_a_daemon_writes_are_refused_in_one_line(tmp_path):
    from emstreamd.batcher import Pending

    good = {"rows": [[1.0], [2.0]], "lines": [2, 3], "times": [1.7e9, 1.7e9 + 300],
            "stamps": ["a", "b"]}
    pending = Pending()
    pending.restore(good)
    assert pending.state() == good
    for bad in ({"rows": [[1.0]], "lines": [2, 3], "times": None}, {**good, "lines": [0, 1]},
                {**good, "rows": [[1.0], [float("nan")]]}, {**good, "rows": [[1.0], [1e300]]}, {**good, "rows": [1.0, 2.0]},
                {**good, "times": [1.0]}, {**good, "stamps": None}, {**good, "stamps": ["é", 1]},
                {**good, "lines": "23"}, {"lines": [1]}, [1, 2], {**good, "rows": [["x"], [1]]}):
        with pytest.raises(ValueError, match="waiting rows"):
            Pending().restore(bad)
    state = tmp_path / "state"
    table = _table(5, 0)
    done = subprocess.run([*DAEMON, "--config", str(ROOT / "config.yaml"), "--checkpoint",
                           str(state), "--no-output"], input=table.encode(),
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    loaded = checkpoint.load(state)
    # (rows of another width than the table's one value: learned, they made a two-feature
    # model of a one-column table, and the next run failed with a traceback)
    for carried in ({**good, "lines": [0, 1]}, {**good, "rows": [[], []]},
                    {**good, "rows": [[1.0, 2.0], [3.0, 4.0]]}):
        checkpoint.save(loaded.model, state, meta={**loaded.meta, "carried": carried})
        done = subprocess.run([*DAEMON, "--config", str(ROOT / "config.yaml"), "--checkpoint",
                               str(state), "--no-output"], input=b"", capture_output=True,
                              timeout=120)
        assert done.returncode == 65, done.stderr.decode()
        assert "meta.carried: waiting rows" in done.stderr.decode()
        assert "Traceback" not in done.stderr.decode()


def test_a_follower_killed_before_its_first_checkpoint_writes_each_line_once(tmp_path):
    """Killed before its first checkpoint, a follower starts the file again: the lines its
    first run wrote are cut (as a back-fill's are), or every line it had written came twice."""
    log, state, out = tmp_path / "app.log", tmp_path / "state", tmp_path / "points.csv"
    log.write_text(_lines(3000, 1))
    extra = ["--set", f"output.path={out}", "--set", "checkpoint.every_points=1000000000",
             "--set", "checkpoint.every_seconds=3600"]

    def numbers():
        return [line.split(",")[0] for line in out.read_text().splitlines()] \
            if out.exists() else []

    def follower():
        process = subprocess.Popen([*DAEMON, "--config", str(ROOT / "config.yaml"), "--follow",
                                    str(log), "--checkpoint", str(state),
                                    "--set", "status.every_seconds=0", *extra],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        STARTED.append(process)
        return process

    first = follower()
    assert _until(lambda: len(numbers()) >= 1000)
    first.kill()
    first.wait(timeout=30)
    assert not list(state.glob("checkpoint-*.json"))  # (killed before its first checkpoint)
    second = follower()
    assert _until(lambda: "3000" in numbers())
    _stop(second)
    written = numbers()
    assert len(written) == len(set(written)) and written[-1] == "3000"


@pytest.mark.parametrize("first_lines", [0, 20])
def test_a_follower_started_on_a_small_log_and_killed_writes_each_line_once(tmp_path,
                                                                          first_lines):
    """A log empty or under 1 KiB at start: the start note fingerprinted what it held, the log
    grew, and compared whole the note was never this file's again, so a run killed before its
    first checkpoint had its per-point lines written twice (found by a review)."""
    log, state, out = tmp_path / "app.log", tmp_path / "state", tmp_path / "points.csv"
    log.write_text(_lines(first_lines, 1) if first_lines else "")

    def follower():
        process = subprocess.Popen([*DAEMON, "--config", str(ROOT / "config.yaml"), "--follow",
                                    str(log), "--checkpoint", str(state), "--set",
                                    f"output.path={out}", "--set", "status.every_seconds=0",
                                    "--set", "checkpoint.every_points=1000000000", "--set",
                                    "checkpoint.every_seconds=3600"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        STARTED.append(process)
        return process

    first = follower()
    _wait_for(first, "ready")
    with open(log, "a") as writer:
        writer.write(_lines(1000, 2))
    assert _until(lambda: out.exists() and len(out.read_text().splitlines()) >= 500)
    first.kill()
    first.wait(timeout=30)
    second = follower()
    total = first_lines + 1000
    _wait_for(second, "ready")
    time.sleep(1.5)  # (the whole log is read again, the first run's lines cut back)
    _stop(second)
    numbers = [line.split(",")[0] for line in out.read_text().splitlines()]
    assert len(numbers) == len(set(numbers)) and numbers[-1] == str(total)


def test_a_follower_killed_before_its_first_checkpoint_then_rotated_reads_the_old_file(
        tmp_path):
    """Killed before its first checkpoint, then the log rotated while it was down: the restart
    read only the new file, and the 3,500 lines of the old one (learned by no checkpoint)
    were never learned, without a word; its per-point lines 21-500 came twice."""
    log, state, out = tmp_path / "app.log", tmp_path / "state", tmp_path / "points.csv"
    log.write_text(_lines(3000, 1))

    def follower(*extra):
        process = subprocess.Popen([*DAEMON, "--config", str(ROOT / "config.yaml"), "--follow",
                                    str(log), "--checkpoint", str(state), "--set",
                                    f"output.path={out}", "--set", "status.every_seconds=0",
                                    "--set", "checkpoint.every_points=1000000000", *extra],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        STARTED.append(process)
        return process

    first = follower("--set", "checkpoint.every_seconds=3600")
    assert _until(lambda: out.exists() and len(out.read_text().splitlines()) >= 1000)
    first.kill()
    first.wait(timeout=30)
    assert not list(state.glob("checkpoint-*.json"))
    with open(log, "a") as writer:
        writer.write(_lines(500, 2))
    os.rename(log, tmp_path / "app.log.1")
    log.write_text(_lines(500, 3))
    second = follower("--set", "checkpoint.every_seconds=0.2")
    assert _until(lambda: _rows(state) == 4000), _rows(state)
    _stop(second)
    numbers = [line.split(",")[0] for line in out.read_text().splitlines()]
    assert len(numbers) == len(set(numbers)) and numbers[-1] == "4000"
    # Another path followed with the same checkpoint and output: its file is not the
    # note's file's past (the other log's 4,000 lines were learned into it).
    shutil.rmtree(state)
    out.unlink()
    first = follower("--set", "checkpoint.every_seconds=3600")
    assert _until(lambda: out.exists() and len(out.read_text().splitlines()) >= 300)
    first.kill()
    first.wait(timeout=30)
    other = tmp_path / "other.log"
    other.write_text(_lines(200, 4))
    log = other  # (follower() follows log)
    third = follower("--set", "checkpoint.every_seconds=0.2")
    assert _until(lambda: _rows(state) == 200), _rows(state)
    time.sleep(0.5)
    _stop(third)
    assert _rows(state) == 200
