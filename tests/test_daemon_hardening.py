"""emstreamd under operations that used to crash it, hang it or lose lines (issue 16 items 1,
5, 6, 8, 9 and 12, and the metrics an operator expects): the real daemon as a subprocess."""

import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from emstream import checkpoint

from .conftest import ROOT, STARTED, until as _until, without_root_override
from .test_daemon import _wait_for

DAEMON = [sys.executable, "-m", "emstreamd"]
CONFIG = str(ROOT / "config.yaml")
QUIET = ["--set", "status.every_seconds=0"]


def _run(*args, input=b"", timeout=60, **kwargs):
    return subprocess.run([*DAEMON, "--config", CONFIG, *QUIET, *args], input=input, check=False,
                          capture_output=True, timeout=timeout, **kwargs)


def _start(*args, **kwargs):
    process = subprocess.Popen([*DAEMON, "--config", CONFIG, *QUIET, *args],
                               stdout=kwargs.pop("stdout", subprocess.DEVNULL),
                               stderr=subprocess.PIPE, **kwargs)
    STARTED.append(process)
    return process


def _values(n, seed=0):
    rng = np.random.default_rng(seed)
    return np.array([10.0, 20.0, 35.0])[rng.choice(3, n)] + rng.normal(size=n)


def _text(n, seed=0):
    return "".join(f"{v:.6f}\n" for v in _values(n, seed))


def _meta(state):
    try:
        return checkpoint.load(state).meta
    except checkpoint.CheckpointError:
        return None


def _rows(state):
    meta = _meta(state)
    return -1 if meta is None else meta["counters"]["rows"]


def _freeze(process):
    """SIGSTOP the daemon and wait until every thread of it has stopped: the signal is
    delivered asynchronously, and a thread woken in a pipe write (because the test drains
    the pipe) can hand over more bytes before it stops."""
    process.send_signal(signal.SIGSTOP)

    def stopped():
        tasks = f"/proc/{process.pid}/task"
        states = []
        for task in os.listdir(tasks):
            try:
                with open(f"{tasks}/{task}/stat") as handle:
                    states.append(handle.read().rsplit(")", 1)[1].split()[0])
            except FileNotFoundError:  # a thread that ended meanwhile
                continue
        return all(state in "Tt" for state in states)

    assert _until(stopped, timeout=10), "the daemon did not stop on SIGSTOP"


def _stop(process, code=0):
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == code, process.stderr.read().decode()
    return process.stderr.read().decode()


def _output_lines(path):
    """Line numbers of the per-point lines in an output file (all of them whole lines)."""
    text = path.read_text()
    assert text == "" or text.endswith("\n")
    return [int(line.split(",")[0]) for line in text.splitlines()]


# ------------------------------------------------------------------ item 1
def test_stopping_before_any_row_exits_0_with_a_checkpoint_a_restart_resumes(tmp_path):
    """Empty input, every line rejected, SIGTERM on an idle --follow: exit 0, a summary, no
    traceback, and a checkpoint the next run resumes from."""
    for name, data in (("empty", b""), ("rejected", b"nan\n\nabc def\n")):
        done = _run("--checkpoint", str(tmp_path / name), "--no-output", input=data)
        err = done.stderr.decode()
        assert done.returncode == 0 and "Traceback" not in err, err
        assert "0 points in" in err
        assert _meta(tmp_path / name)["counters"]["rows"] == 0
    assert _meta(tmp_path / "rejected")["counters"]["rejected"] == {"non-finite": 1, "blank": 1,
                                                                    "non-numeric": 1}
    done = _run("--checkpoint", str(tmp_path / "rejected"), "--no-output",
                input=_text(300).encode())
    assert done.returncode == 0 and "resumed" in done.stderr.decode()
    meta = _meta(tmp_path / "rejected")
    assert meta["counters"]["rows"] == 300 and sum(meta["counters"]["rejected"].values()) == 3

    log, state = tmp_path / "idle.log", tmp_path / "idle"
    log.write_text("")
    settings = ["--follow", str(log), "--checkpoint", str(state), "--no-output", "--set",
                "batch.max_wait=0.05", "--set", "checkpoint.every_seconds=0.2"]
    process = _start(*settings)
    _wait_for(process, "ready")
    err = _stop(process)
    assert "Traceback" not in err and "0 points in" in err
    log.write_text(_text(200))
    process = _start(*settings)  # resumes from the idle run's checkpoint
    assert _until(lambda: _rows(state) == 200)
    _stop(process)
    assert _meta(state)["input"]["next_line"] == 201


def test_a_back_fill_stopped_by_sigterm_resumes_as_if_never_stopped(tmp_path):
    """SIGTERM made a back-fill learn its partial mini-batch early, as a short batch: the
    resumed run then cut other batches than an uninterrupted one (60,000 of 100,000 output
    lines differed, anomaly flags moved).  Now that batch is read again by the next run."""
    data = tmp_path / "data.txt"
    data.write_text(_text(150_000, seed=3))  # (several blocks of input: output comes per block)
    settings = ["--input", str(data), "--set", "batch.max_rows=50"]
    reference = _run(*settings, "--checkpoint", str(tmp_path / "ref"), timeout=300)
    assert reference.returncode == 0
    out = tmp_path / "out.csv"
    with open(out, "wb") as handle:
        process = _start(*settings, "--checkpoint", str(tmp_path / "s"), stdout=handle)
        assert _until(lambda: out.stat().st_size > 0 or process.poll() is not None)
        _stop(process)
    first = out.read_bytes()
    assert 0 < len(first) < len(reference.stdout)  # (stopped before the end of its input)
    rest = _run(*settings, "--checkpoint", str(tmp_path / "s"), timeout=300)
    assert rest.returncode == 0 and first + rest.stdout == reference.stdout
    stopped, whole = checkpoint.load(tmp_path / "s").model, checkpoint.load(tmp_path / "ref").model
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_array_equal(getattr(stopped, name), getattr(whole, name))


def test_a_back_fill_of_slow_fits_stops_after_the_batch_at_hand(tmp_path):
    """Fits of seconds each (20 components, 50 starts, no tolerance: all valid settings): a
    SIGTERM after the first mini-batch was honoured only once every batch of the block read
    was learned (8 batches, seconds later; minutes with larger settings).  Now the back-fill
    stops after the batch at hand; the rest is read again by the next run."""
    data = tmp_path / "data.txt"
    data.write_text(_text(5000, seed=4))
    process = _start("--input", str(data), "--checkpoint", str(tmp_path / "s"), "--log-level",
                     "INFO", "--set", "model.n_components=20", "--set", "model.n_init=50",
                     "--set", "model.tol=0", "--set", "model.max_iter=1000000")
    _wait_for(process, "first (provisional) model")
    err = _stop(process)
    counters = _meta(tmp_path / "s")["counters"]
    assert counters["batches"] <= 2, err
    assert counters["rows"] == counters["lines"] <= 200


@pytest.mark.parametrize("threshold, rate", [(0.9, 0.1), (0.99, 0.01)])
def test_a_low_threshold_flags_its_share_of_points_however_long_the_stream(tmp_path,
                                                                           threshold, rate):
    """Flagged points were kept out of the calibration history whatever the threshold: at
    0.9 (no hold) the history lost its upper tail, and the share flagged grew with the
    stream (65% of the last 10,000 i.i.d. points at 0.9, 12.5% at 0.99).  Only episodes
    opened by a rare score (0.9999) stay out of it now; the default threshold's are all."""
    data = tmp_path / "iid.txt"
    data.write_text("".join(f"{v:.5f}\n" for v in np.random.default_rng(0).normal(size=20000)))
    done = _run("--input", str(data), "--checkpoint", str(tmp_path / "s"), "--set",
                "model.warmup_size=100", "--set", f"output.anomaly_threshold={threshold}",
                "--set", "output.episode_hold=0", timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    flags = np.array([line.rsplit(b",", 1)[1] == b"1" for line in done.stdout.splitlines()])
    assert 0.7 * rate <= flags[-10000:].mean() <= 1.4 * rate, flags[-10000:].mean()


def test_restarts_on_standard_input_keep_counting_lines(tmp_path):
    """Each run on standard input numbers its lines from 1: the lifetime line count was set
    to the last run's position (3,001 lines, then 2 after one more line: fewer than points)."""
    state = str(tmp_path / "state")
    assert _run("--checkpoint", state, "--no-output", input=_text(300).encode()).returncode == 0
    for more in (1, 2):
        assert _run("--checkpoint", state, "--no-output", input=b"0.5\n").returncode == 0
        counters = _meta(tmp_path / "state")["counters"]
        assert counters["rows"] == counters["lines"] == 300 + more


# ------------------------------------------------------------------ item 5
def test_a_first_line_without_a_configured_column_is_a_reject_not_a_crash(tmp_path):
    rows = [f"{a:.3f},{b:.3f},{c:.3f}\n" for a, b, c in _values(600).reshape(200, 3)]
    data = "5\n7 8\n" + "".join(rows[:100]) + "9\n" + "".join(rows[100:])
    done = _run("--set", "input.columns=[0,2]", "--checkpoint", str(tmp_path / "s"),
                "--no-output", input=data.encode())
    err = done.stderr.decode()
    assert done.returncode == 0 and "Traceback" not in err, err
    meta = _meta(tmp_path / "s")
    assert meta["counters"]["rows"] == 200 and meta["n_fields"] == 3
    assert meta["counters"]["rejected"] == {"wrong field count": 3}
    assert checkpoint.load(tmp_path / "s").model.n_features_in_ == 2


# ------------------------------------------------------------------ item 6
def _follow(log, state, *extra):
    return _start("--follow", str(log), "--checkpoint", str(state), "--no-output", "--set",
                  "model.warmup_size=200", "--set", "batch.max_wait=0.05", "--set",
                  "checkpoint.every_seconds=1000", *extra)


def test_a_checkpoint_between_a_copytruncate_and_the_reader_noticing_it_loses_nothing(
        tmp_path):
    """The worst moment: the daemon is frozen (SIGSTOP) while 300 lines are appended and the
    file is copied and truncated, and a checkpoint (SIGUSR1) is its first act on waking, before
    the reader looks at the file; then SIGKILL.  The restart finds the copy and reads its 300
    unread lines, then the truncated file from its start; line numbers go on."""
    log, state = tmp_path / "app.log", tmp_path / "state"
    log.write_text(_text(1000, 1))
    process = _follow(log, state)
    _wait_for(process, "ready")
    for _ in range(100):  # each checkpoint's log line read, so the one awaited below is new
        process.send_signal(signal.SIGUSR1)
        _wait_for(process, "checkpoint (SIGUSR1)")
        if _rows(state) == 1000:
            break
    _freeze(process)
    with open(log, "a") as handle:
        handle.write(_text(300, 2))  # unread: only the copy will hold them
    shutil.copy(log, tmp_path / "app.log.1")
    with open(log, "r+") as handle:
        handle.truncate(0)
    log.write_text(_text(200, 3))  # the new file: shorter than the position
    process.send_signal(signal.SIGUSR1)
    process.send_signal(signal.SIGCONT)
    _wait_for(process, "checkpoint (SIGUSR1)")
    process.kill()
    process.wait()
    process = _follow(log, state, "--set", "checkpoint.every_seconds=0.2")
    assert _until(lambda: _rows(state) == 1500), _rows(state)
    time.sleep(0.5)
    _stop(process)
    meta = _meta(state)
    assert meta["counters"]["rows"] == 1500  # every line once
    assert meta["counters"]["lines"] == 1500 and meta["input"]["next_line"] == 1501


def test_a_copytruncated_file_written_past_the_position_is_read_from_its_start(tmp_path):
    """Truncated and written past the reader's position before the reader looked (it only
    compared sizes): the copy's unread lines, then the new file from its first line."""
    log, state = tmp_path / "app.log", tmp_path / "state"
    log.write_text(_text(500, 1))
    process = _follow(log, state, "--set", "checkpoint.every_seconds=0.2")
    assert _until(lambda: _rows(state) == 500)
    _freeze(process)
    with open(log, "a") as handle:
        handle.write(_text(100, 2))
    shutil.copy(log, tmp_path / "app.log-20261203")
    with open(log, "r+") as handle:
        handle.truncate(0)
    log.write_text(_text(2000, 3))  # four times the old position
    process.send_signal(signal.SIGCONT)
    assert _until(lambda: _rows(state) == 2600), _rows(state)
    time.sleep(0.5)
    _stop(process)
    assert _rows(state) == 2600


# ------------------------------------------------------------------ item 8
def test_output_reader_gone_checkpoint_never_passes_the_last_line_written(tmp_path):
    """``emstreamd --input FILE | head``: the reader reads some lines and goes away while the
    daemon is blocked writing.  No checkpoint claims lines whose output was not written: the
    restart's output starts at or before the line after the last one read, and every point is
    learned exactly once over the two runs."""
    n = 20_000
    data, state = tmp_path / "d.txt", tmp_path / "state"
    data.write_text(_text(n))
    common = ["--input", str(data), "--checkpoint", str(state), "--set", "batch.max_rows=100",
              "--set", "checkpoint.every_points=1000"]
    process = _start(*common, stdout=subprocess.PIPE)
    seen = b""
    while seen.count(b"\n") < 3000:  # read a while, then stop reading: the pipe fills up
        chunk = os.read(process.stdout.fileno(), 65536)
        assert chunk, process.stderr.read().decode()  # (an early exit: fail, do not spin)
        seen += chunk
    time.sleep(1.0)
    _freeze(process)  # so that what was handed over is exactly what is read
    os.set_blocking(process.stdout.fileno(), False)
    try:
        while chunk := os.read(process.stdout.fileno(), 65536):
            seen += chunk
    except BlockingIOError:
        pass
    process.stdout.close()
    process.send_signal(signal.SIGCONT)
    assert process.wait(timeout=30) == 1
    err = process.stderr.read().decode()
    assert "per-point output closed by its reader" in err and "Traceback" not in err, err
    last_read = int(seen[:seen.rindex(b"\n")].rsplit(b"\n", 1)[-1].split(b",")[0])
    assert last_read < n // 2
    meta = _meta(state)  # None: no checkpoint yet (a back-fill checkpoints between blocks)
    assert meta is None or meta["counters"]["rows"] <= last_read  # not n: the rest unlearned
    out = tmp_path / "out.csv"
    done = _run(*common, "--output", str(out))
    assert done.returncode == 0, done.stderr.decode()
    numbers = _output_lines(out)
    assert numbers[0] <= last_read + 1 and numbers[-1] == n
    assert numbers == list(range(numbers[0], n + 1))
    assert _meta(state)["counters"]["rows"] == n


# ------------------------------------------------------------------ item 9
def test_a_second_daemon_on_the_same_checkpoint_refuses_to_start(tmp_path):
    for name in ("state", "state.json"):
        target = tmp_path / name
        first = _start("--checkpoint", str(target), "--no-output", stdin=subprocess.PIPE)
        _wait_for(first, "ready")
        # (A second daemon that waited for the lock would never return: _run's timeout.)
        second = _run("--checkpoint", str(target), "--no-output", input=_text(100).encode())
        err = second.stderr.decode()
        assert second.returncode == 75 and "Traceback" not in err, err
        [line] = [x for x in err.splitlines() if "another emstreamd" in x]
        assert f"pid {first.pid}" in line and str(target) in line
        first.kill()  # a crash must not leave the checkpoint locked
        first.wait()
        third = _run("--checkpoint", str(target), "--no-output", input=_text(300).encode())
        assert third.returncode == 0, third.stderr.decode()
        assert _meta(target)["counters"]["rows"] == 300


# ------------------------------------------------------------------ item 12
def test_a_full_disk_under_the_dead_letters_stops_with_a_consistent_checkpoint(tmp_path):
    """Dead letters on /dev/full: one line, exit 74, a checkpoint before the first reject it
    could not write; the restart (with a dead-letter file) applies every line exactly once."""
    data, state = tmp_path / "d.txt", tmp_path / "state"
    lines = _text(3000).splitlines()
    for i in (700, 1500, 2500):
        lines[i] = "oops"
    data.write_text("\n".join(lines) + "\n")
    common = ["--input", str(data), "--checkpoint", str(state), "--no-output"]
    done = _run(*common, "--set", "input.dead_letter=/dev/full")
    err = done.stderr.decode()
    assert done.returncode == 74 and "Traceback" not in err, err
    assert len([x for x in err.splitlines() if "input.dead_letter" in x]) == 1
    meta = _meta(state)
    assert meta["input"]["next_line"] <= 701 and meta["counters"]["rejected"] == {}
    letters = tmp_path / "dead.jsonl"
    done = _run(*common, "--set", f"input.dead_letter={letters}")
    assert done.returncode == 0, done.stderr.decode()
    meta = _meta(state)
    assert meta["counters"]["rows"] == 2997 and meta["counters"]["rejected"] == {
        "non-numeric": 3}
    assert [line.count('"oops"') for line in letters.read_text().splitlines()] == [1, 1, 1]


def test_a_dead_letter_that_cannot_be_written_right_after_learned_rows_leaves_a_true_position(
        tmp_path):
    """200 rows learned, then a reject whose dead letter cannot be written (a full disk) comes
    first in the next block: the checkpoint pairs the byte offset after line 200 with line
    201.  It said 202 (inferred from the first row waiting), and every later line, dead
    letter and counter was numbered one too high, for good."""
    state, out = tmp_path / "state", tmp_path / "points.csv"
    first, rest = _text(200, seed=1), _text(300, seed=2)
    daemon = _start("--checkpoint", str(state), "--set", f"output.path={out}",
                    "--set", "input.dead_letter=/dev/full", "--set", "features.enabled=false",
                    stdin=subprocess.PIPE)
    daemon.stdin.write(first.encode())
    daemon.stdin.flush()
    # (the first mini-batch of 100 has no per-point lines: rows 101-200 do)
    assert _until(lambda: out.exists() and out.read_bytes().count(b"\n") >= 100)
    daemon.stdin.write(b"abc\n" + rest.encode())
    daemon.stdin.close()
    assert daemon.wait(timeout=60) == 74, daemon.stderr.read().decode()
    meta = _meta(state)
    assert meta["input"]["next_line"] == 201 and meta["counters"]["lines"] == 200
    assert meta["counters"]["rows"] == 200 and meta["counters"]["rejected"] == {}


def test_a_link_to_a_checkpoint_file_is_locked_as_the_file_it_names(tmp_path):
    """One daemon on state.json and a second on link.json -> state.json: each took its own
    lock file (state.json.lock, link.json.lock), and both wrote state.json (checkpoints are
    written through a link)."""
    target, link = tmp_path / "state.json", tmp_path / "link.json"
    link.symlink_to(target)
    first = _start("--checkpoint", str(target), "--no-output", stdin=subprocess.PIPE)
    _wait_for(first, "ready")
    try:
        second = _run("--checkpoint", str(link), "--no-output", input=_text(100).encode())
        err = second.stderr.decode()
        assert second.returncode == 75 and f"pid {first.pid}" in err, err
    finally:
        first.kill()
        first.wait()


def test_a_checkpoint_file_inside_another_daemons_directory_is_refused(tmp_path):
    """A second daemon on state/checkpoint-99999999.json locked that file alone and wrote it
    among the first daemon's checkpoints; the first then resumed from it (the newest there)
    and learned its whole input again, with the other input's model."""
    state = tmp_path / "state"
    assert _run("--checkpoint", str(state), "--no-output",
                input=_text(300).encode()).returncode == 0
    before = sorted(p.name for p in state.iterdir())
    done = _run("--checkpoint", str(state / "checkpoint-99999999.json"), "--no-output",
                input=_text(300).encode())
    err = done.stderr.decode()
    assert done.returncode == 78 and "lies in another daemon's checkpoint directory" in err, err
    assert "Traceback" not in err and sorted(p.name for p in state.iterdir()) == before


def test_a_full_disk_under_the_output_stops_without_losing_output(tmp_path):
    """The per-point output file cannot grow (RLIMIT_FSIZE: EFBIG, as ENOSPC would fail): one
    line, exit 74, no half line in the file, no checkpoint past the lines written; the restart
    reports the rest, and every point is learned once."""
    n = 20_000
    data, state, out = tmp_path / "d.txt", tmp_path / "state", tmp_path / "out.csv"
    data.write_text(_text(n))
    common = ["--input", str(data), "--checkpoint", str(state), "--output", str(out), "--set",
              "batch.max_rows=500", "--set", "checkpoint.every_points=2000"]

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    done = _run(*common, preexec_fn=small_files)
    err = done.stderr.decode()
    assert done.returncode == 74 and "Traceback" not in err, err
    assert "per-point output failed" in err
    first = _output_lines(out)
    assert first == list(range(101, first[-1] + 1)) and first[-1] < n // 2
    meta = _meta(state)
    assert meta is None or meta["input"]["next_line"] <= first[-1] + 1
    done = _run(*common)
    assert done.returncode == 0, done.stderr.decode()
    numbers = _output_lines(out)
    assert set(numbers) == set(range(101, n + 1))  # at least once
    assert _meta(state)["counters"]["rows"] == n  # learned once


def test_a_checkpoint_that_cannot_be_written_is_logged_not_a_crash(tmp_path):
    """Checkpoint files cannot grow (RLIMIT_FSIZE, as on a full disk): each failure is one
    line and the daemon goes on; the final one failing ends the run with exit 73."""
    data = tmp_path / "d.txt"
    data.write_text(_text(5000))

    def tiny_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    done = _run("--input", str(data), "--checkpoint", str(tmp_path / "s"), "--no-output",
                preexec_fn=tiny_files)
    err = done.stderr.decode()
    assert done.returncode == 73 and "Traceback" not in err, err
    assert "checkpoint (end of input) not written" in err
    assert not list((tmp_path / "s").glob("*checkpoint*"))  # no temporary file left either


@pytest.mark.parametrize("stream", [1, 2], ids=["stdout", "stderr"])
def test_a_daemon_started_with_a_standard_stream_closed(tmp_path, stream):
    """``>&-`` with per-point output to stdout: one line, exit 73, not a traceback.  ``2>&-``:
    the run ends as usual (exit 0; it raised printing its summary), and nothing meant for
    stderr lands in a file the daemon opened on the free descriptor."""
    data, state = tmp_path / "d.txt", tmp_path / "s"
    data.write_text(_text(3000))
    done = subprocess.run([*DAEMON, "--config", CONFIG, *QUIET, "--input", str(data),
                           "--checkpoint", str(state)], capture_output=stream == 1,
                          stdout=None if stream == 1 else subprocess.PIPE, timeout=60,
                          preexec_fn=lambda: os.close(stream))
    if stream == 1:
        err = done.stderr.decode()
        assert done.returncode == 73 and "Traceback" not in err, err
        assert "standard output is closed" in err
        assert not state.exists() or _meta(state) is None  # nothing learned
        return
    assert done.returncode == 0
    assert len(done.stdout.decode().splitlines()) > 2800  # the per-point lines, as usual
    assert _meta(state)["counters"]["rows"] == 3000
    for path in state.iterdir():  # no log line in the lock or a checkpoint
        assert b"emstreamd" not in path.read_bytes(), path


def test_a_daemon_started_with_standard_input_closed_and_no_input_file_says_so(tmp_path):
    """``<&-`` with no --input: read as an empty input, a checkpoint of nothing and exit 0,
    without a word (found by an attack helper).  With --input, stdin is not needed."""
    data, state = tmp_path / "d.txt", tmp_path / "s"
    data.write_text(_text(300))
    closed = subprocess.run([*DAEMON, "--config", CONFIG, *QUIET, "--checkpoint", str(state)],
                            capture_output=True, timeout=60, preexec_fn=lambda: os.close(0))
    assert closed.returncode == 66 and b"standard input is closed" in closed.stderr
    assert not state.exists() or _meta(state) is None
    named = subprocess.run([*DAEMON, "--config", CONFIG, *QUIET, "--checkpoint", str(state),
                            "--input", str(data), "--no-output"], capture_output=True,
                           timeout=60, preexec_fn=lambda: os.close(0))
    assert named.returncode == 0 and _meta(state)["counters"]["rows"] == 300


def test_a_checkpoint_directory_that_cannot_be_listed_is_refused_at_start(tmp_path):
    """A directory that can be entered but not listed (mode 0311) hid its checkpoints: the
    daemon started afresh, learned and reported the whole input again, and only then failed to
    write (exit 73).  Now it refuses to start, in one line, before reading any input."""
    data, state = tmp_path / "d.txt", tmp_path / "s"
    data.write_text(_text(3000))
    assert _run("--input", str(data), "--checkpoint", str(state), "--no-output").returncode == 0
    prefix = without_root_override()
    state.chmod(0o311)
    try:
        done = subprocess.run([*prefix, *DAEMON, "--config", CONFIG, *QUIET, "--input", str(data),
                               "--checkpoint", str(state)], capture_output=True, timeout=60)
    finally:
        state.chmod(0o755)
    err = done.stderr.decode()
    assert done.returncode == 73 and "Traceback" not in err, err
    assert "cannot list the directory" in err and done.stdout == b""
    assert _meta(state)["counters"]["rows"] == 3000  # the checkpoint as it was


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_the_followed_file_replaced_by_a_directory_or_a_fifo_is_waited_out(tmp_path, kind):
    log, state = tmp_path / "app.log", tmp_path / "state"
    log.write_text(_text(300, 1))
    process = _follow(log, state, "--set", "checkpoint.every_seconds=0.2")
    assert _until(lambda: _rows(state) == 300)
    os.rename(log, tmp_path / "app.log.1")
    if kind == "fifo":
        os.mkfifo(log)
    else:
        log.mkdir()
    seen = _wait_for(process, "not a regular file")
    assert ("a FIFO" if kind == "fifo" else "a directory") in seen[-1]
    time.sleep(0.5)
    assert process.poll() is None
    if kind == "fifo":  # SIGTERM still stops it, promptly
        started = time.monotonic()
        _stop(process)
        assert time.monotonic() - started < 5
        return
    log.rmdir()
    log.write_text(_text(200, 2))
    assert _until(lambda: _rows(state) == 500), _rows(state)
    err = _stop(process)
    assert "Traceback" not in err and err.count("not a regular file") == 0


def test_the_followed_path_led_to_the_daemon_s_own_dead_letters_is_not_read(tmp_path):
    """The followed log renamed away and a symlink to the daemon's own dead-letter file put in
    its place: each rejected line was written there again and read again, the file growing
    by about 2,000 lines a second without end (the start-up refuses that set-up; a rotation
    brought it about)."""
    log, state, dead = tmp_path / "app.log", tmp_path / "state", tmp_path / "dead.jsonl"
    log.write_text(_text(300, 1) + "junk\n")
    process = _follow(log, state, "--set", "checkpoint.every_seconds=0.2", "--set",
                      f"input.dead_letter={dead}")
    assert _until(lambda: _rows(state) == 300 and dead.exists() and dead.stat().st_size)
    os.rename(log, tmp_path / "app.log.1")
    log.symlink_to(dead)
    seen = _wait_for(process, "the daemon's own file")
    assert str(dead) in seen[-1] and "not read" in seen[-1]
    size = dead.stat().st_size
    time.sleep(1.5)
    assert dead.stat().st_size == size and process.poll() is None
    log.unlink()
    log.write_text(_text(200, 2))
    assert _until(lambda: _rows(state) == 500), _rows(state)
    _stop(process)


def test_a_followed_path_that_does_not_exist_is_said_and_its_arrival_too(tmp_path):
    """A mistyped --follow path said nothing but "ready" and status lines of 0 points."""
    log, state = tmp_path / "app.log", tmp_path / "state"
    process = _follow(log, state, "--set", "checkpoint.every_seconds=0.2")
    seen = _wait_for(process, "does not exist (yet): waiting for it")
    assert "WARNING" in seen[-1] and str(log) in seen[-1]
    log.write_text(_text(300, 1))
    _wait_for(process, "has appeared: reading it")
    assert _until(lambda: _rows(state) == 300), _rows(state)
    _stop(process)


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_input_that_is_not_a_regular_file_is_refused_at_once(tmp_path, kind):
    """--input of a FIFO blocked the start without a word (and released its writer, then
    failed as "not seekable"); --input /dev/zero was read at full speed for ever."""
    path = "/dev/zero"
    if kind == "fifo":
        path = tmp_path / "pipe"
        os.mkfifo(path)
    started = time.monotonic()
    done = subprocess.run([*DAEMON, "--input", str(path), "--checkpoint", str(tmp_path / "s")],
                          capture_output=True, timeout=60)
    err = done.stderr.decode()
    assert done.returncode == 66 and time.monotonic() - started < 30, err
    assert ("is a FIFO" if kind == "fifo" else "is a character device") in err
    assert "pipe a stream to standard input instead" in err and "Traceback" not in err


# ------------------------------------------------------------------ metrics
def _metrics_port(process):
    seen = _wait_for(process, "/metrics")
    return int(re.search(r":(\d+)/metrics", seen[-1]).group(1))


def _get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_metrics_counters_health_and_no_created_series(tmp_path):
    pytest.importorskip("prometheus_client")
    process = _start("--checkpoint", str(tmp_path / "s"), "--no-output", "--set",
                     "metrics.port=0", "--set", "batch.max_wait=0.05", stdin=subprocess.PIPE)
    port = _metrics_port(process)
    values = list(_values(300)) + [1e6, "oops", "1 2"]
    process.stdin.write("".join(f"{v}\n" for v in values).encode())
    process.stdin.flush()
    assert _until(lambda: "emstreamd_lines_total 303.0" in _get(port, "/metrics")[1])
    status, text = _get(port, "/metrics")
    assert status == 200
    assert "emstreamd_points_total" in text and "emstreamd_anomalies_total" in text
    assert "emstreamd_gated_points_total" in text
    assert 'emstreamd_rejected_lines_total{reason="non_numeric"} 1.0' in text
    assert 'emstreamd_rejected_lines_total{reason="wrong_field_count"} 1.0' in text
    build = re.search(r"emstreamd_build_info\{(.*)\} 1\.0", text).group(1)
    assert 'python="' in build and 'version="' in build
    assert "process_cpu_seconds_total" in text and "process_open_fds" in text
    assert "_created" not in text
    assert _get(port, "/healthz")[0] == 200
    assert _get(port, "/")[0] == 404 and _get(port, "/metrics/x")[0] == 404
    _stop(process)


def test_a_keyed_daemon_reports_its_keys_from_the_start(tmp_path):
    """emstreamd_keys counts the store's keys as soon as the daemon is up (it read 0 until the
    first checkpoint, up to a minute after a restart)."""
    pytest.importorskip("prometheus_client")
    data = tmp_path / "k.txt"
    data.write_text("".join(f"k{i % 7} {v:.4f}\n" for i, v in enumerate(_values(700))))
    assert _run("--input", str(data), "--checkpoint", str(tmp_path / "s"), "--no-output",
                "--set", "input.key=0").returncode == 0
    process = _start("--follow", str(data), "--checkpoint", str(tmp_path / "s"),
                     "--no-output", "--set", "input.key=0", "--set", "metrics.port=0",
                     "--log-level", "INFO")
    port = _metrics_port(process)
    assert _until(lambda: "emstreamd_keys 7.0" in _get(port, "/metrics")[1], 10)
    _stop(process)


def test_a_keyed_daemon_counts_new_keys_before_its_first_checkpoint(tmp_path):
    """emstreamd_keys and emstreamd_keys_in_memory were set at checkpoints only: a keyed
    back-fill's scrapes read 0 keys while it learned them."""
    pytest.importorskip("prometheus_client")
    data = tmp_path / "k.txt"
    data.write_text("".join(f"k{i % 7} {v:.4f}\n" for i, v in enumerate(_values(700))))
    process = _start("--follow", str(data), "--checkpoint", str(tmp_path / "s"),
                     "--no-output", "--set", "input.key=0", "--set", "metrics.port=0",
                     "--set", "checkpoint.every_seconds=3600", "--log-level", "INFO")
    port = _metrics_port(process)
    assert _until(lambda: "emstreamd_keys 7.0" in _get(port, "/metrics")[1], 10)
    assert "emstreamd_keys_in_memory 7.0" in _get(port, "/metrics")[1]
    _stop(process)


def test_a_metrics_port_in_use_stops_the_daemon_at_once_with_one_line(tmp_path):
    pytest.importorskip("prometheus_client")
    data = tmp_path / "d.txt"
    data.write_text(_text(2000))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        done = _run("--input", str(data), "--checkpoint", str(tmp_path / "s"), "--no-output",
                    "--set", f"metrics.port={taken.getsockname()[1]}")
    err = done.stderr.decode()
    assert done.returncode == 78 and "Traceback" not in err, err
    assert len([x for x in err.splitlines() if "metrics" in x]) == 1, err
    assert not (tmp_path / "s").exists() or not list((tmp_path / "s").glob("checkpoint-*"))


def test_idle_metrics_connections_cannot_exhaust_file_descriptors(tmp_path):
    """300 silent connections with 128 file descriptors: the daemon serves a bounded number,
    closes the rest at once, and its checkpoints and stop still work."""
    pytest.importorskip("prometheus_client")

    def few_files():
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))

    state = tmp_path / "s"
    process = _start("--checkpoint", str(state), "--no-output", "--set", "metrics.port=0",
                     "--set", "batch.max_wait=0.05", stdin=subprocess.PIPE,
                     preexec_fn=few_files)
    port = _metrics_port(process)
    idle = []
    for _ in range(300):
        connection = socket.create_connection(("127.0.0.1", port), timeout=5)
        idle.append(connection)
    shut = set()

    def closed() -> int:  # (polled: the server's thread may still be accepting)
        for connection in idle:
            if connection not in shut:
                connection.settimeout(0.001)
                try:
                    if connection.recv(1) == b"":
                        shut.add(connection)
                except TimeoutError:
                    pass
        return len(shut)

    # (within 5 s: the idle timeout, 10 s, would close them all anyway)
    assert _until(lambda: closed() >= 250, timeout=5), len(shut)  # closed, not held
    process.stdin.write(_text(500).encode())
    process.stdin.flush()
    process.send_signal(signal.SIGUSR1)
    _wait_for(process, "checkpoint (SIGUSR1)")
    err = _stop(process)
    assert "Traceback" not in err
    assert _rows(state) == 500
    for connection in idle:
        connection.close()


def test_the_metrics_server_closes_an_idle_connection():
    pytest.importorskip("prometheus_client")
    from emstreamd.metrics import Metrics

    metrics = Metrics(0, idle_timeout=0.3)
    try:
        started = time.monotonic()  # (before: the server's timer may start before we return)
        with socket.create_connection(("127.0.0.1", metrics.port), timeout=5) as silent:
            assert silent.recv(1) == b""  # closed by the server after its idle timeout
            assert 0.2 < time.monotonic() - started < 3
        assert _get(metrics.port, "/healthz") == (200, "ok\n")
    finally:
        metrics.close()


def test_a_trickling_metrics_client_is_closed_at_the_deadline():
    """A client that sends a header line every little while (never silent for the idle
    timeout) is closed when the whole request's time is up: it held its slot as long as it
    liked, and 16 such clients shut out every scrape and health check."""
    pytest.importorskip("prometheus_client")
    from emstreamd.metrics import Metrics

    metrics = Metrics(0, idle_timeout=0.5, max_connections=2)
    clients = []
    try:
        started = time.monotonic()
        for _ in range(2):  # every slot taken
            client = socket.create_connection(("127.0.0.1", metrics.port), timeout=5)
            client.sendall(b"GET /metrics HTTP/1.0\r\n")
            clients.append(client)
        closed = False
        while time.monotonic() - started < 3 and not closed:
            time.sleep(0.1)
            for client in clients:
                try:
                    client.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    closed = True
        assert closed and time.monotonic() - started < 2.5
        assert _get(metrics.port, "/healthz") == (200, "ok\n")
    finally:
        for client in clients:
            client.close()
        metrics.close()


def test_silent_metrics_clients_cannot_keep_a_health_check_out():
    """Every slot held by a client that connected and said nothing: a health check takes the
    oldest one's place (it was closed at once: 16 silent clients, reconnecting as they were
    closed, kept /healthz down for as long as they liked)."""
    pytest.importorskip("prometheus_client")
    from emstreamd.metrics import Metrics

    metrics = Metrics(0, idle_timeout=30, max_connections=2)
    silent = []
    try:
        for _ in range(2):
            silent.append(socket.create_connection(("127.0.0.1", metrics.port), timeout=5))
            time.sleep(0.05)  # (arrival order)
        assert _get(metrics.port, "/healthz") == (200, "ok\n")
        assert silent[0].recv(1) == b""  # the oldest was closed to make room ...
        silent[1].settimeout(0.2)
        with pytest.raises(TimeoutError):  # ... and only it
            silent[1].recv(1)
    finally:
        for client in silent:
            client.close()
        metrics.close()


def _following_three_lines(tmp_path):
    """A daemon following values.log, which holds three lines: (its path, the process)."""
    path = tmp_path / "values.log"
    path.write_text("1\n2\n3\n")
    process = subprocess.Popen([*DAEMON, "--config", CONFIG, "--follow", str(path),
                                "--checkpoint", str(tmp_path / "state"), "--no-output"],
                               stderr=subprocess.PIPE)
    return path, process


def test_rejects_name_the_file_and_the_line_within_it_after_a_rotation(tmp_path):
    """Followed streams number lines across files; a log line also says which file and where."""
    path, process = _following_three_lines(tmp_path)
    try:
        seen = _wait_for(process, "ready")  # the first file is open (the follower opens it first)
        path.rename(tmp_path / "values.log.1")
        path.write_text("4\nnot a number\n5\n")
        seen += _wait_for(process, "rejected (non-numeric)")
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    err = "".join(seen) + err.decode()
    assert f"line 5 ({path} line 2) rejected (non-numeric)" in err, err


def test_lines_read_from_a_copytruncate_s_copy_are_named_by_the_copy_and_its_line(tmp_path):
    """After a copytruncate the unread lines come from the copy; a reject there was credited to
    the truncated file, at a line counted from where reading resumed ("values.log line 2" for
    line 5 of values.log.1)."""
    path, process = _following_three_lines(tmp_path)
    try:
        seen = _wait_for(process, "ready")
        time.sleep(0.5)  # (the first three lines read)
        _freeze(process)  # the append and the copytruncate happen before the reader looks
        with open(path, "a") as handle:
            handle.write("4\nnot a number\n")
        shutil.copyfile(path, tmp_path / "values.log.1")
        os.truncate(path, 0)
        process.send_signal(signal.SIGCONT)
        seen += _wait_for(process, "rejected (non-numeric)")
    finally:
        process.send_signal(signal.SIGCONT)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    err = "".join(seen) + err.decode()
    assert f"line 5 ({path}.1 line 5) rejected (non-numeric)" in err, err
    assert f"now reading {path}.1 (the copy of the truncated {path})" in err, err


def test_a_compressed_back_fill_s_last_line_is_not_learned_again_in_pieces(tmp_path):
    """The same for a gzip file grown by a member appended after the run: "34.5\\n" of
    "1234.5" was learned as a point of its own, without a word."""
    import gzip

    data, state = tmp_path / "d.txt.gz", tmp_path / "ck"
    rng = np.random.default_rng(8)
    lines = [f"{v:.4f}\n" for v in np.r_[rng.normal(0, 1, 300), rng.normal(9, 1, 300)]]
    data.write_bytes(gzip.compress(("".join(lines[:500]) + "12").encode()))
    assert _run("--input", str(data), "--checkpoint", str(state), "--no-output").returncode == 0
    with open(data, "ab") as handle:
        handle.write(gzip.compress(("34.5\n" + "".join(lines[500:])).encode()))
    done = _run("--input", str(data), "--checkpoint", str(state), "--no-output")
    assert done.returncode == 0
    assert "(decompressed) had no newline when the last run ended" in done.stderr.decode()
    meta = checkpoint.load(state).meta
    assert meta["counters"]["rows"] == meta["counters"]["lines"] == 601  # the file's lines


def test_a_back_fill_resumes_only_in_a_file_that_still_holds_what_it_learned(tmp_path):
    """--input resumes at the checkpoint's position only if the file still holds, up to it,
    the bytes that were read (not just the same first KiB): a file cut, or rewritten before
    the position, stops the daemon (65) with one line, instead of silently learning nothing or
    starting mid-line (a value that is in no line); a line learned without its newline at the
    end of a run is not learned again in two pieces ("12" then "34.5" for "1234.5")."""
    data, state = tmp_path / "d.txt", tmp_path / "ck"
    rng = np.random.default_rng(8)
    lines = [f"{v:.4f}\n" for v in np.r_[rng.normal(0, 1, 300), rng.normal(9, 1, 300)]]
    data.write_text("".join(lines[:500]) + "12")  # a last line without its newline
    assert _run("--input", str(data), "--checkpoint", str(state), "--no-output").returncode == 0
    with open(data, "a") as handle:
        handle.write("34.5\n" + "".join(lines[500:]))
    done = _run("--input", str(data), "--checkpoint", str(state), "--no-output")
    assert done.returncode == 0
    assert "the 5 bytes written on after it are skipped" in done.stderr.decode()
    meta = checkpoint.load(state).meta
    assert meta["counters"]["rows"] == meta["counters"]["lines"] == 601  # the file's lines
    # The same bytes under a new inode (copied back): resumes, nothing to learn.
    shutil.copy(data, tmp_path / "copy.txt")
    os.replace(tmp_path / "copy.txt", data)
    assert _run("--input", str(data), "--checkpoint", str(state), "--no-output").returncode == 0
    assert checkpoint.load(state).meta["counters"]["rows"] == 601
    # Cut below the position, or a line before it rewritten longer: one line, exit 65.
    for text, why in (("".join(lines[:300]), "fewer than the checkpoint's position"),
                      (data.read_text().replace(lines[400], "1" + lines[400]),
                       "the bytes before the checkpoint's position")):
        data.write_text(text)
        done = _run("--input", str(data), "--checkpoint", str(state), "--no-output")
        assert done.returncode == 65 and why in done.stderr.decode()
        assert len(done.stderr.decode().strip().splitlines()[-1]) > 0
        assert checkpoint.load(state).meta["counters"]["rows"] == 601


@pytest.mark.parametrize("keyed", [False, True], ids=["one series", "keyed"])
def test_a_resumed_model_with_more_components_than_drift_refit_points(tmp_path, keyed):
    """A checkpoint of 8 components resumed under n_components 3 and drift.refit_points 5
    (valid for 3): the drift monitor refused the kept model, and the daemon died with a
    traceback (a keyed one when the key came back)."""
    data, state = tmp_path / "d.csv", tmp_path / "ck"
    rng = np.random.default_rng(3)
    rows = lambda n: "".join(("h1," if keyed else "") + f"{v:.4f}\n" for v in rng.normal(size=n))
    data.write_text(("host,value\n" if keyed else "") + rows(3000))
    key = ["--set", "input.key=host"] if keyed else []
    assert _run("--input", str(data), "--checkpoint", str(state), "--no-output", *key,
                "--set", "model.n_components=8").returncode == 0
    with open(data, "a") as handle:
        handle.write(rows(300))
    done = _run("--input", str(data), "--checkpoint", str(state), "--no-output", *key,
                "--set", "model.n_components=3", "--set", "drift.refit_points=5")
    err = done.stderr.decode()
    assert done.returncode == 0 and "Traceback" not in err, err[-2000:]
    assert "model.n_components" in err  # (the kept count is said)


@pytest.mark.parametrize("keyed", [False, True], ids=["one series", "keyed"])
def test_a_resume_says_which_changed_settings_the_checkpoint_keeps(tmp_path, keyed):
    """The model's settings, features.*, the calibration window and the input's layout stay
    as the checkpoint began with: changing them on a resume did nothing, silently; now one
    warning names them (old code: the model's alone, and for a keyed state store nothing)."""
    data, state = tmp_path / "d.csv", tmp_path / "ck"
    rng = np.random.default_rng(3)
    data.write_text(("host," if keyed else "") + "timestamp,value\n" + "".join(
        ("h1," if keyed else "") + f"2024-01-01 {i // 60:02d}:{i % 60:02d}:00,{v:.4f}\n"
        for i, v in enumerate(rng.normal(size=600))))
    key = ["--set", "input.key=host"] if keyed else []
    assert _run("--input", str(data), "--checkpoint", str(state), "--no-output",
                *key).returncode == 0
    done = _run("--input", str(data), "--checkpoint", str(state), "--no-output", *key,
                "--set", "features.lags=5", "--set", "output.calibration_window=500",
                "--set", "model.n_components=4", "--set", "drift.memory=5000",
                "--set", "features.calendar=true")
    assert done.returncode == 0
    warned = [line for line in done.stderr.decode().splitlines() if "differs in" in line]
    assert len(warned) == 1
    assert ("['model.n_components', 'drift.memory', 'features.lags', 'features.calendar', "
            "'output.calibration_window']") in warned[0]
    assert ("only new keys take" in warned[0]) is keyed
    quiet = _run("--input", str(data), "--checkpoint", str(state), "--no-output", *key)
    assert "differs in" not in quiet.stderr.decode()


def test_an_input_cut_while_it_is_read_leaves_checkpoints_that_resume(tmp_path):
    """A back-fill's file truncated after the daemon read it: the bytes before the position
    were fingerprinted as they then were (none), every checkpoint failed the daemon's own
    check (before_bytes 0) and the model of 100,000 points could not be resumed, not even on
    the file restored as it was read."""
    from emstream.checkpoint import validate_meta
    from emstreamd.sources import FINGERPRINT_BYTES, FileInput

    data = tmp_path / "data.txt"
    data.write_text(_text(2000))
    size = data.stat().st_size
    source = FileInput(str(data))
    try:
        whole = source.identity(size)
        assert whole["before_bytes"] == min(size, FINGERPRINT_BYTES)
        os.truncate(data, 0)
        cut = source.identity(size)
        assert "before" not in cut and "before_bytes" not in cut
        validate_meta({"input": {**cut, "offset": size, "next_line": 2001}})
    finally:
        source.close()


def test_an_input_too_wide_for_a_model_stops_in_one_line_before_learning(tmp_path):
    """1,000 columns of one digit (2 KB lines, within input.max_line_bytes) took 6.9 GB and
    wrote 354 MB checkpoints that the restart refused (everything lost), or died of a numpy
    MemoryError traceback: now one line, exit 78, before anything is learned."""
    data = tmp_path / "wide.csv"
    np.savetxt(data, np.random.default_rng(0).integers(0, 10, size=(200, 300)), fmt="%d",
               delimiter=",")
    done = _run("--input", str(data), "--checkpoint", str(tmp_path / "s"), "--no-output")
    err = done.stderr.decode()
    assert done.returncode == 78 and "Traceback" not in err, err
    assert "rows of 300 values, more than the 256 a model learns" in err
    assert "input.columns" in err


def _daemon_writing_to_a_pipe(tmp_path, nonblocking: bool):
    """A daemon back-filling 20,000 values with per-point output to a pipe (made non-blocking
    on the daemon's side if asked, as node.js does): the process and the pipe's read end."""
    import fcntl

    data = tmp_path / "in.txt"
    data.write_text("".join(f"{v:.4f}\n" for v in np.random.default_rng(0).normal(size=20_000)))
    read_end, write_end = os.pipe()
    if nonblocking:
        flags = fcntl.fcntl(write_end, fcntl.F_GETFL)
        fcntl.fcntl(write_end, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    process = subprocess.Popen([*DAEMON, "--config", str(ROOT / "config.yaml"), "--input",
                                str(data), "--checkpoint", str(tmp_path / "ck")],
                               stdout=write_end, stderr=subprocess.PIPE)
    os.close(write_end)
    return process, read_end


def test_per_point_lines_to_a_non_blocking_pipe_are_all_written(tmp_path):
    """A parent that made the pipe non-blocking (node.js does) got 1,727 of 19,900 lines and
    exit 0: the buffered write came back short and the rest of the batch was dropped.  (A
    signal while a blocking pipe was full cut a batch the same way; found by an attack
    helper.)"""
    process, read_end = _daemon_writing_to_a_pipe(tmp_path, nonblocking=True)
    time.sleep(2)  # (the pipe fills: the daemon's writes meet EAGAIN)
    got = b""
    while chunk := os.read(read_end, 1 << 16):
        got += chunk
    os.close(read_end)
    err = process.communicate(timeout=120)[1].decode()
    assert process.returncode == 0, err[-2000:]
    numbers = [int(line.split(b",")[0]) for line in got.splitlines()]
    assert numbers == list(range(numbers[0], 20_001)) and numbers[0] <= 200


def test_a_failed_read_of_standard_input_checkpoints_what_was_learned(tmp_path):
    """A socket on stdin reset by its peer: the OSError went up to the exit (74) with no
    checkpoint, and the 5,000 points learned from it were lost (found by an attack helper)."""
    import struct

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    client = socket.create_connection(server.getsockname())
    conn, _ = server.accept()
    server.close()
    process = subprocess.Popen([*DAEMON, "--config", str(ROOT / "config.yaml"), "--checkpoint",
                                str(tmp_path / "ck"), "--no-output", "--log-level", "INFO",
                                "--set", "status.every_seconds=0.2"], stdin=conn,
                               stderr=subprocess.PIPE, text=True)
    conn.close()
    rng = np.random.default_rng(0)
    # (and an unfinished last line, which the reset cuts short: not a value to learn)
    client.sendall("".join(f"{v:.4f}\n" for v in rng.normal(size=5000)).encode() + b"99")
    said = []
    for line in process.stderr:  # (a status line: every row read and learned)
        said.append(line)
        if ", 5000 points," in line:
            break
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()  # a reset, not an end of input
    err = "".join(said) + process.communicate(timeout=60)[1]
    assert process.returncode == 74, err[-2000:]
    assert "reading standard input failed" in err and "Traceback" not in err
    assert "the unfinished last line (2 bytes) is dropped" in err
    assert "this run: 5000 points" in err, err[-1500:]
    assert checkpoint.load(tmp_path / "ck").meta["counters"]["rows"] == 5000


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_an_unwritable_stderr_or_stdout_keeps_the_documented_exit_codes(tmp_path):
    """stderr on a full disk (or a pipe whose reader went, journald restarted): the last
    report raised OSError and every exit was 1, a configuration error's 78 too, which the
    shipped unit does not restart on; --check-config to a full stdout was a traceback (found
    by an attack helper)."""
    data = tmp_path / "in.txt"
    data.write_text("".join(f"{v:.4f}\n" for v in np.random.default_rng(0).normal(size=300)))
    base = [*DAEMON, "--config", str(ROOT / "config.yaml")]
    with open("/dev/full", "wb") as full:
        ok = subprocess.run([*base, "--input", str(data), "--checkpoint", str(tmp_path / "a"),
                             "--no-output"], stderr=full, timeout=120)
        bad = subprocess.run([*base, "--set", "batch.max_rows=-5", "--input", str(data),
                              "--checkpoint", str(tmp_path / "b")], stderr=full, timeout=120)
        check = subprocess.run([*base, "--check-config"], stdout=full, stderr=subprocess.PIPE,
                               timeout=120)
    assert ok.returncode == 0 and bad.returncode == 78
    assert checkpoint.load(tmp_path / "a").meta["counters"]["rows"] == 300
    assert check.returncode == 74 and b"Traceback" not in check.stderr
    assert b"--check-config: cannot write standard output" in check.stderr
    # (>&-: written to the /dev/null put in its place, exit 0; found by the review helper)
    closed = subprocess.run([*base, "--check-config"], stderr=subprocess.PIPE, timeout=120,
                            preexec_fn=lambda: os.close(1))
    assert closed.returncode == 73 and b"standard output is closed" in closed.stderr


def test_a_file_redirected_to_stdin_again_after_a_checkpoint_is_warned_about(tmp_path):
    """A file redirected to standard input twice is learned twice (a pipe cannot be told
    apart from its repeat): it was said at INFO only, "reading the input from its start"
    (found by an attack helper)."""
    data = tmp_path / "in.txt"
    data.write_text("".join(f"{v:.4f}\n" for v in np.random.default_rng(0).normal(size=300)))
    command = [*DAEMON, "--config", str(ROOT / "config.yaml"), "--checkpoint",
               str(tmp_path / "ck"), "--no-output"]
    said = []
    for _ in range(2):
        with open(data, "rb") as stdin:
            done = subprocess.run(command, stdin=stdin, capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        said.append(done.stderr.decode())
    assert "standard input is the regular file" not in said[0]
    assert "WARNING resumed the model from" in said[1] and \
        "standard input is the regular file the checkpoint read last" in said[1]
    other = tmp_path / "day2.txt"  # (a cron job's file of the day: another file)
    other.write_bytes(data.read_bytes())
    with open(other, "rb") as stdin:
        next_day = subprocess.run(command, stdin=stdin, capture_output=True, timeout=120)
    assert "standard input is the regular file" not in next_day.stderr.decode()
    piped = subprocess.run(command, input=data.read_bytes(), capture_output=True, timeout=120)
    assert "standard input is the regular file" not in piped.stderr.decode()


@pytest.mark.parametrize("nonblocking", [False, True], ids=["blocking", "non-blocking"])
def test_a_sigterm_stops_a_daemon_whose_output_reader_takes_nothing(tmp_path, nonblocking):
    """A reader that stopped reading held a SIGTERM for ever: the write (or, on a pipe its
    parent made non-blocking, the wait for room) was retried after the signal (found by the
    review helper).  Now it gives up, and the batch it was writing is not claimed as
    reported: a restart reads on from the last checkpoint."""
    process, read_end = _daemon_writing_to_a_pipe(tmp_path, nonblocking)
    try:
        time.sleep(3)  # (the pipe is full, nothing reads it)
        process.send_signal(signal.SIGTERM)
        err = process.communicate(timeout=20)[1].decode()
    finally:
        process.kill()
        os.close(read_end)
    assert process.returncode == 74 and "Traceback" not in err, err[-2000:]
    assert "its reader takes nothing, and a stop was asked" in err
