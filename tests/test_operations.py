"""emstreamd as an operator runs it: start-up checks and exit codes, --check-config, --version,
the shipped defaults, log formats, the exit summary, back-fill progress, the systemd watchdog
and the shipped unit.  The real daemon runs as a subprocess."""

import configparser
import json
import os
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

import emstream
from emstream import checkpoint

from .conftest import ROOT, watchdog_pings

DAEMON = [sys.executable, "-m", "emstreamd"]
CONFIG = str(ROOT / "config.yaml")
SENSOR = str(ROOT / "examples" / "sensor.txt")


def _run(*args, timeout=120, **kwargs):
    return subprocess.run([*DAEMON, *args], capture_output=True, timeout=timeout, **kwargs)


def _one_line(done) -> str:
    err = done.stderr.decode()
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def _bomb() -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    return "\n".join(lines) + "\ninput:\n  fields: *a9\n"


# ---------------------------------------------------------------------------- fail at start
@pytest.fixture()
def places(tmp_path):
    (tmp_path / "a-file").write_text("x\n")
    (tmp_path / "a-dir").mkdir()
    (tmp_path / "mine.yaml").write_text("output:\n  header: true\n")
    (tmp_path / "bomb.yaml").write_text(_bomb())
    (tmp_path / "tag.yaml").write_text("input:\n  fields: !!python/object/apply:os.system "
                                       "[echo owned]\n")
    return tmp_path


@pytest.mark.parametrize("args, message", [
    (["--set", "checkpoint.every_seconds=.inf"], "checkpoint.every_seconds must be a finite"),
    (["--set", "batch.max_wait=.nan"], "batch.max_wait must be a finite number"),
    (["--set", "status.every_seconds=.inf"], "status.every_seconds must be a finite number"),
    (["--set", "refit.wait_at_exit=.inf"], "refit.wait_at_exit must be a finite number"),
    (["--set", "input.fields=[1]"], "input.fields must be null or a list"),
    (["--set", "input.dead_letter=[]"], "input.dead_letter must be null or a non-empty"),
    (["--set", "model.weights_init=[1]"], "model: weights_init must have shape (3,)"),
    (["--set", "metrics.port=65536"], "metrics.port must be at most 65,535"),
    (["--set", "metrics.port=0", "--set", "metrics.address=no-such-host.invalid"],
     "metrics.address: cannot resolve"),
    (["--set", "refit.window=1000000000000000000000000000000"], "refit.window must be at most"),
    (["--set", "drift.block=1000000000000000000000000000000"], "drift.block must be at most"),
    (["--set", "model.n_init=1000000000000000000000000000000"], "model: n_init must be an integer in"),
    (["--config", "{tmp}/bomb.yaml"], "aliases are expanded"),
    (["--config", "{tmp}/tag.yaml"], "the tag !!python/object/apply:os.system is not allowed"),
    (["--output", "{tmp}/a-dir"], "output.path: {tmp}/a-dir: is a directory"),
    (["--set", "input.dead_letter={tmp}/a-dir"], "input.dead_letter: {tmp}/a-dir: is a directory"),
    (["--set", "input.dead_letter={tmp}/missing/dead.jsonl"],
     "input.dead_letter: {tmp}/missing/dead.jsonl: the directory {tmp}/missing does not exist"),
    (["--checkpoint", "{tmp}/a-file/state"], "{tmp}/a-file is a regular file, not a directory"),
    (["--checkpoint", "{tmp}/a-file"], "a checkpoint file's name ends in .json"),
    (["--checkpoint", "{tmp}/a-dir/sub/state.json"], "the directory {tmp}/a-dir/sub does not"),
    (["--output", "{tmp}/out.csv", "--set", "input.dead_letter={tmp}/./out.csv"],
     "input.dead_letter and output.path are the same file ({tmp}/./out.csv)"),
    # Per-point lines into the checkpoint file emptied it: every later start exited 65.
    (["--checkpoint", "{tmp}/s.json", "--output", "{tmp}/./s.json"],
     "output.path and checkpoint.path are the same file ({tmp}/./s.json)"),
    # Lines appended to the configuration file: every later start failed (78, not YAML).
    (["--config", "{tmp}/mine.yaml", "--output", "{tmp}/./mine.yaml"],
     "the configuration (--config) and output.path are the same file ({tmp}/mine.yaml)"),
    (["--config", "{tmp}/mine.yaml", "--set", "input.dead_letter={tmp}/mine.yaml"],
     "the configuration (--config) and input.dead_letter are the same file"),
    (["--checkpoint", "{tmp}/a-dir", "--set", "input.dead_letter={tmp}/a-dir/dead.jsonl"],
     "input.dead_letter ({tmp}/a-dir/dead.jsonl) is inside the checkpoint directory"),
    # A checkpoint file's lock, note and temporary files: rewritten at the next start, or
    # deleted after a checkpoint, the per-point output went with exit 0.
    (["--checkpoint", "{tmp}/s.json", "--output", "{tmp}/s.json.lock"],
     "output.path ({tmp}/s.json.lock) is one of the files the daemon keeps beside"),
    (["--checkpoint", "{tmp}/s.json", "--output", "{tmp}/.s.json.out.tmp"],
     "output.path ({tmp}/.s.json.out.tmp) is one of the files the daemon keeps beside"),
    (["--checkpoint", "{tmp}/s.json", "--output", "{tmp}/s.json.output-start.json"],
     "is one of the files the daemon keeps beside"),
    (["--checkpoint", "{tmp}/k.sqlite", "--set", "input.key=0", "--set",
      "input.dead_letter={tmp}/k.sqlite.lock"],
     "input.dead_letter ({tmp}/k.sqlite.lock) is one of the files the daemon keeps beside"),
    # (a store named inside its directory is locked as the directory is)
    (["--checkpoint", "{tmp}/a-dir/keys.sqlite", "--set", "input.key=0", "--output",
      "{tmp}/a-dir/emstreamd.lock"],
     "output.path ({tmp}/a-dir/emstreamd.lock) is one of the files the daemon keeps beside"),
])
def test_bad_values_stop_the_daemon_at_start_with_78_and_one_line(places, args, message):
    # stdin stays open and empty: a daemon that got past its start-up would wait on it.
    args = [a.replace("{tmp}", str(places)) for a in args]
    done = _run("--checkpoint", str(places / "state"), *args, stdin=subprocess.PIPE,
                timeout=60)
    err = _one_line(done)
    assert done.returncode == 78, err
    assert err.startswith("emstreamd: configuration error: ")
    assert message.replace("{tmp}", str(places)) in err
    assert not (places / "state").exists() and not done.stdout


def test_the_input_is_never_written_to(tmp_path):
    """Per-point lines or dead letters into the file being read would append to the operator's
    data (and, followed, feed it back as input): refused at start, the input untouched, however
    the same file is named (a link, a redirection of stdin or stdout)."""
    data = tmp_path / "data.txt"
    text = "\n".join(f"{v:.4f}" for v in np.random.default_rng(0).normal(size=500)) + "\n"
    data.write_text(text)
    (tmp_path / "link.txt").symlink_to(data)
    state = str(tmp_path / "state")
    runs = [
        (["--input", str(data), "--output", str(data)], None, "output.path and the input"),
        (["--follow", str(data), "--output", str(tmp_path / "link.txt")], None,
         "output.path and the input"),
        (["--input", str(data), "--set", f"input.dead_letter={data}"], None,
         "input.dead_letter and the input"),
        (["--output", str(data)], "stdin", "output.path and the input (standard input)"),
        (["--input", str(tmp_path / "link.txt")], "stdout",
         "output.path (standard output) and the input"),
    ]
    for args, redirect, message in runs:
        with open(data, "rb") as source, open(data, "ab") as sink:
            done = subprocess.run(
                [*DAEMON, "--config", CONFIG, "--checkpoint", state, *args],
                stdin=source if redirect == "stdin" else subprocess.DEVNULL,
                stdout=sink if redirect == "stdout" else subprocess.PIPE,
                stderr=subprocess.PIPE, timeout=60)
        err = done.stderr.decode()
        assert done.returncode == 78 and err.count("\n") == 1 and message in err, (args, err)
        assert data.read_text() == text and not os.path.exists(state)
    # /dev/null for both outputs is fine.
    done = _run("--config", CONFIG, "--checkpoint", state, "--input", str(data), "--output",
                "/dev/null", "--set", "input.dead_letter=/dev/null")
    assert done.returncode == 0 and data.read_text() == text


def test_standard_output_redirected_into_the_checkpoint_is_refused(tmp_path):
    """`emstreamd ... --checkpoint state > state/keys.sqlite` (or into any file of the
    checkpoint directory, or onto a store's file) was accepted: SQLite wrote over the
    per-point lines, lost with exit 0 (found by an attack helper)."""
    data = tmp_path / "data.txt"
    data.write_text("".join(f"k{i % 3} {v:.4f}\n" for i, v in
                            enumerate(np.random.default_rng(0).normal(size=300))))
    state = tmp_path / "state"
    _run("--config", CONFIG, "--input", str(data), "--set", "input.key=0", "--checkpoint",
         str(state), "--no-output")
    store = state / "keys.sqlite"
    before = store.read_bytes()
    cases = [(state, store, "is redirected to"), (state, state / "y.csv", "is redirected to"),
             (tmp_path / "other.sqlite", tmp_path / "other.sqlite", "are the same file"),
             (tmp_path / "s.sqlite", tmp_path / "s.sqlite-wal", "are the same file")]
    for checkpoint, target, message in cases:
        with open(target, "ab") as sink:
            done = subprocess.run([*DAEMON, "--config", CONFIG, "--input", str(data), "--set",
                                   "input.key=0", "--checkpoint", str(checkpoint)],
                                  stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.PIPE,
                                  timeout=60)
        err = done.stderr.decode()
        assert done.returncode == 78 and err.count("\n") == 1, (target, err)
        assert "output.path (standard output)" in err and message in err, err
    assert store.read_bytes() == before


@pytest.mark.parametrize("key", [False, True], ids=["single", "keyed"])
def test_initial_means_of_another_width_than_the_input_stop_it_with_78(tmp_path, key):
    """model.means_init fixes the width; rows of another width stop the daemon at its first
    batch with one line (it had crashed with a traceback), its input position not moved."""
    rows = np.random.default_rng(0).normal(size=(300, 2))
    data = tmp_path / "data.txt"
    data.write_text("".join((f"k{i % 3} " if key else "") + f"{a:.4f} {b:.4f}\n"
                            for i, (a, b) in enumerate(rows)))
    state = tmp_path / "state"
    extra = ["--log-level", "WARNING"] + (["--set", "input.key=0"] if key else [])
    done = _run("--config", CONFIG, "--input", str(data), "--checkpoint", str(state),
                "--no-output", "--set", "model.means_init=[[1], [2], [3]]", *extra)
    assert done.returncode == 78
    assert "model.means_init must have shape (3, 2), got (3, 1)" in _one_line(done)
    # Fitting means (a start of the first fit): every row is learned, none was passed over.
    done = _run("--config", CONFIG, "--input", str(data), "--checkpoint", str(state),
                "--no-output", "--set", "model.means_init=[[1, 1], [2, 2], [3, 3]]", *extra)
    assert done.returncode == 0, done.stderr.decode()
    assert "this run: 300 points in" in done.stderr.decode()


@pytest.mark.parametrize("which", ["output", "dead_letter"])
def test_a_fifo_without_a_reader_is_said_then_waited_for(tmp_path, which):
    """Opening a FIFO for writing blocks until a reader comes: the daemon says so first (it
    hung before "ready" without a word), then goes on once one does."""
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    data = tmp_path / "data.txt"
    data.write_text("\n".join(["1.5", "oops"] + [f"{v:.4f}" for v in np.random.default_rng(
        0).normal(size=300)]) + "\n")
    where = (["--output", str(fifo)] if which == "output"
             else ["--no-output", "--set", f"input.dead_letter={fifo}"])
    process = subprocess.Popen([*DAEMON, "--config", CONFIG, "--input", str(data),
                                "--checkpoint", str(tmp_path / "state"), "--log-level",
                                "WARNING", *where], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        # (A daemon that blocks without a word writes nothing: wait for the line, not forever.)
        assert select.select([process.stderr], [], [], 30)[0], "nothing said in 30 s"
        first = process.stderr.readline().decode()
        assert "is a FIFO with no reader: waiting for a process to open it" in first, first
        with open(fifo, "rb") as reader:
            received = reader.read().decode().splitlines()
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
        process.wait()
    if which == "output":
        assert len(received) == 201  # every row after the first mini-batch of 100
    else:
        assert len(received) == 1 and "oops" in received[0]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_a_daemon_waiting_for_a_fifo_reader_stops_on_sigterm_or_sigint(tmp_path, signum):
    """Signals are caught from the daemon's first line (emstreamd.early), but once its imports
    are done a SIGTERM or SIGINT must stop it where it waits (for a FIFO's reader here), as a
    start-up stopped: exit 0 and one line.  (SIGTERM killed it, exit 143; SIGINT printed a
    KeyboardInterrupt traceback, exit 130.)"""
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    data = tmp_path / "data.txt"
    data.write_text("1.5\n2.5\n")
    process = subprocess.Popen([*DAEMON, "--config", CONFIG, "--input", str(data),
                                "--checkpoint", str(tmp_path / "state"), "--output",
                                str(fifo)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert select.select([process.stderr], [], [], 30)[0], "nothing said in 30 s"
        assert "FIFO with no reader" in process.stderr.readline().decode()
        process.send_signal(signum)
        assert process.wait(timeout=30) == 0
        rest = process.stderr.read().decode()
        assert "stopped while starting" in rest and "Traceback" not in rest
        assert not (tmp_path / "state").exists() or not any((tmp_path / "state").iterdir())
    finally:
        process.kill()
        process.wait()


def test_a_checkpoint_under_a_file_fails_before_the_back_fill_not_after(tmp_path):
    data = tmp_path / "big.txt"
    data.write_text("\n".join(f"{v:.4f}" for v in np.random.default_rng(0).normal(
        size=300_000)) + "\n")
    (tmp_path / "file").write_text("")
    done = _run("--input", str(data), "--checkpoint", str(tmp_path / "file" / "state"))
    assert done.returncode == 78 and not done.stdout  # not a line was read
    assert "checkpoint.path" in _one_line(done)


@pytest.mark.skipif(os.access("/proc/sys", os.W_OK), reason="needs a read-only directory")
def test_a_path_that_cannot_be_written_exits_73():
    done = _run("--checkpoint", "/proc/sys/emstreamd-state", stdin=subprocess.DEVNULL)
    assert done.returncode == 73
    assert "checkpoint.path: /proc/sys/emstreamd-state: cannot create files in /proc/sys" in \
        _one_line(done)


def test_a_metrics_port_in_use_is_a_configuration_error_at_start(tmp_path):
    pytest.importorskip("prometheus_client")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _run("--checkpoint", str(tmp_path / "s"), "--set", f"metrics.port={port}",
                    stdin=subprocess.PIPE, timeout=60)
        assert done.returncode == 78
        assert f"metrics.port: 127.0.0.1:{port} is in use" in _one_line(done)
        # --check-config does not bind (a running daemon holds the port).
        assert _run("--check-config", "--set", f"metrics.port={port}").returncode == 0


def test_usage_and_missing_input_exit_codes(tmp_path):
    done = _run("--no-such-option")
    assert done.returncode == 64 and b"unrecognized arguments" in done.stderr
    assert _run("--input", "a", "--follow", "b").returncode == 64
    # An empty path (``--input "$FILE"`` with FILE unset) read stdin, or wrote to
    # ./emstreamd-state, and the run looked like a success.
    for flag in ("--config", "--input", "--follow", "--checkpoint", "--output"):
        done = _run(flag, "", "--checkpoint", str(tmp_path / "e")) if flag != "--checkpoint" \
            else _run(flag, "")
        assert done.returncode == 64 and f"{flag} names no path".encode() in done.stderr
    assert not (tmp_path / "e").exists()
    done = _run("--input", str(tmp_path / "missing.txt"), "--checkpoint", str(tmp_path / "s"))
    assert done.returncode == 66
    assert "cannot open input" in _one_line(done) and "No such file" in done.stderr.decode()


def test_an_unusable_checkpoint_exits_65_with_one_line(tmp_path):
    bad = tmp_path / "state.json"
    bad.write_text("{not json")
    done = _run("--input", SENSOR, "--checkpoint", str(bad), "--no-output")
    assert done.returncode == 65, done.stderr.decode()
    err = done.stderr.decode()
    assert "Traceback" not in err and err.splitlines()[-1].startswith(f"emstreamd: {bad}: ")


# ---------------------------------------------------------------------------- check-config
def test_check_config_prints_the_effective_configuration_which_loads_back(tmp_path):
    done = _run("--config", CONFIG, "--check-config", "--set", "batch.max_rows=250",
                "--checkpoint", str(tmp_path / "state"), "--no-output")
    assert done.returncode == 0, done.stderr.decode()
    effective = yaml.safe_load(done.stdout)
    assert effective["batch"]["max_rows"] == 250 and effective["output"]["per_point"] is False
    assert effective["checkpoint"]["path"] == str(tmp_path / "state")
    assert effective["model"]["n_components"] == 3 and effective["features"]["lags"] == 1
    assert not (tmp_path / "state").exists()  # nothing created, nothing read
    saved = tmp_path / "effective.yaml"
    saved.write_bytes(done.stdout)
    again = _run("--config", str(saved), "--check-config")
    assert yaml.safe_load(again.stdout) == effective
    bad = _run("--check-config", "--set", "checkpoint.every_seconds=.nan")
    assert bad.returncode == 78 and not bad.stdout and _one_line(bad)


# ---------------------------------------------------------------------------- version
def test_both_commands_print_the_one_version():
    for command in (DAEMON, [sys.executable, "-m", "emstream"]):
        done = subprocess.run([*command, "--version"], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0
        assert done.stdout.split() == [command[-1], emstream.__version__]
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject
    assert 'version = { attr = "emstream.__version__" }' in pyproject


# ---------------------------------------------------------------------------- defaults
def test_without_config_the_shipped_defaults_apply_and_state_goes_to_the_working_dir(tmp_path):
    done = subprocess.run([*DAEMON, "--input", SENSOR, "--no-output"], cwd=tmp_path,
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    loaded = checkpoint.load(tmp_path / "emstreamd-state")
    shipped = yaml.safe_load((ROOT / "config.yaml").read_text())["model"]
    assert loaded.model.n_components == shipped["n_components"] == 3
    assert loaded.model.random_state == shipped["random_state"]
    assert f"checkpoints in {tmp_path / 'emstreamd-state'}" in done.stderr.decode()


# ---------------------------------------------------------------------------- logs
def test_json_logs_are_one_object_per_line_with_a_summary(tmp_path):
    done = _run("--input", SENSOR, "--no-output", "--checkpoint", str(tmp_path / "s"),
                "--log-format", "json")
    assert done.returncode == 0
    entries = [json.loads(line) for line in done.stderr.decode().splitlines()]
    assert all({"time", "level", "message"} <= set(e) for e in entries)
    assert any(e["level"] == "WARNING" and "rejected" in e["message"] for e in entries)
    summary = entries[-1]
    assert summary["message"] == "summary"
    assert summary["this_run"]["rows"] == summary["lifetime"]["rows"] == 4996
    assert len(summary["components"]) == 3
    bad = _run("--log-format", "json", "--set", "batch.max_rows=0")
    assert bad.returncode == 78
    error = json.loads(_one_line(bad))
    assert error["level"] == "ERROR" and error["exit_code"] == 78
    assert error["message"].startswith("configuration error: batch.max_rows")


def _stderr_lines(tmp_path, journal: bool) -> list[str]:
    err_path = tmp_path / f"stderr-{journal}.txt"
    with open(err_path, "wb") as err:
        info = os.fstat(err.fileno())
        env = dict(os.environ)
        # A JOURNAL_STREAM naming another stream (an inherited variable) changes nothing.
        env["JOURNAL_STREAM"] = f"{info.st_dev}:{info.st_ino if journal else info.st_ino + 1}"
        subprocess.run([*DAEMON, "--input", SENSOR, "--no-output", "--checkpoint",
                        str(tmp_path / f"s{journal}")], stderr=err, env=env, timeout=120,
                       check=True)
    return err_path.read_text().splitlines()


def test_under_journald_lines_carry_a_priority_and_no_time(tmp_path):
    lines = _stderr_lines(tmp_path, journal=True)
    logged = [line for line in lines if line.startswith("<")]
    assert any(line.startswith("<6>INFO ready: reading") for line in logged)
    assert any(line.startswith("<4>WARNING line 1235 (") and "line 1235) rejected" in line
               for line in logged)
    plain = _stderr_lines(tmp_path, journal=False)
    assert any(line[:4].isdigit() and " emstreamd INFO ready" in line for line in plain)


# ---------------------------------------------------------------------------- summary, progress
def test_the_exit_summary_separates_this_run_from_the_lifetime(tmp_path):
    data = tmp_path / "data.txt"
    shutil.copy(SENSOR, data)
    state = str(tmp_path / "state")
    first = _run("--input", str(data), "--checkpoint", state, "--no-output")
    assert first.returncode == 0
    with open(data, "a") as handle:
        handle.write("\n".join(f"{v:.3f}" for v in np.random.default_rng(1).normal(
            20, 1, 1000)) + "\nnot a number\n")
    second = _run("--input", str(data), "--checkpoint", state, "--no-output").stderr.decode()
    this_run = next(line for line in second.splitlines() if "this run:" in line)
    lifetime = next(line for line in second.splitlines() if "lifetime:" in line)
    assert "1000 points in" in this_run and "from 1001 lines in" in this_run
    assert "rejected: 1 non-numeric;" in this_run
    assert "5996 points in" in lifetime and "from 6001 lines;" in lifetime
    assert "rejected: 1 blank, 2 non-finite, 2 non-numeric;" in lifetime


def test_a_back_fill_status_line_shows_progress(tmp_path):
    data = tmp_path / "data.txt"
    data.write_text("\n".join(f"{v:.5f}" for v in np.random.default_rng(2).normal(
        size=400_000)) + "\n")
    done = _run("--input", str(data), "--no-output", "--checkpoint", str(tmp_path / "s"),
                "--set", "status.every_seconds=0.02", "--set", "batch.max_rows=2000")
    assert done.returncode == 0
    status = [line for line in done.stderr.decode().splitlines() if "status:" in line]
    assert status, done.stderr.decode()
    shares = [float(line.split("; ")[-1].split("%")[0]) for line in status]
    assert all(f"% of {data}, " in line and " MB/s" in line for line in status)
    # (the first line may come after the first mini-batch: 100 points, 0.0% of the file)
    assert shares == sorted(shares) and 0 <= shares[0] and 0 < shares[-1] <= 100
    assert any(line.endswith(" left") for line in status)
    # Before this run's first checkpoint there is no checkpoint to give the age of (it said
    # "last checkpoint 0s ago", the time since the start).
    done = _run("--input", str(data), "--no-output", "--checkpoint", str(tmp_path / "t"),
                "--set", "status.every_seconds=0.02", "--set", "batch.max_rows=2000",
                "--set", "checkpoint.every_points=10000000", "--set",
                "checkpoint.every_seconds=1000")
    status = [line for line in done.stderr.decode().splitlines() if "status:" in line]
    assert status and all("no checkpoint yet this run" in line for line in status)


def test_signals_and_status_lines_do_not_wait_for_the_rest_of_a_back_fill_block(tmp_path):
    """A back-fill reads up to 1 MiB of lines as one block; SIGUSR1, SIGUSR2 and SIGHUP were
    acted on only after the whole block was learned (a refit asked for came after the last
    line), no status line came meanwhile, and the status line's share counted the bytes read,
    not learned (100% with a seventh learned; found by an attack helper)."""
    import signal
    import time

    data = tmp_path / "data.txt"
    data.write_text("".join(f"{v:.4f}\n" for v in np.random.default_rng(3).normal(size=40_000)))
    size = data.stat().st_size
    log = tmp_path / "log.txt"
    with open(log, "w") as err:  # (a file, not a pipe: the run logs many lines)
        process = subprocess.Popen(
            [*DAEMON, "--config", CONFIG, "--input", str(data), "--no-output", "--checkpoint",
             str(tmp_path / "s"), "--set", "batch.max_rows=100", "--set",
             "refit.every_points=200", "--set", "status.every_seconds=0.3", "--set",
             "checkpoint.every_points=10000000", "--set", "checkpoint.every_seconds=1000"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 60
        while "ready:" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        for number in (signal.SIGHUP, signal.SIGUSR2, signal.SIGUSR1):
            process.send_signal(number)
        assert process.wait(timeout=120) == 0
    text = log.read_text()
    saved = [line for line in text.splitlines() if "checkpoint (SIGUSR1)" in line]
    assert len(saved) == 1 and int(saved[0].rsplit(" ", 1)[1]) < size, saved
    assert "SIGHUP: configuration reloaded" in text and "refit (SIGUSR2)" in text
    status = [line for line in text.splitlines() if "status:" in line]
    assert status, text[-2000:]
    for line in status:  # the share of the file is the share learned
        points = int(line.split(" points, ")[0].rsplit(" ", 1)[1])
        share = float(line.split("; ")[-1].split("%")[0])
        assert abs(share - 100 * points / 40_000) < 2, line


# ---------------------------------------------------------------------------- systemd
def test_the_watchdog_is_pinged_without_status_lines(tmp_path):
    address = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(address)
    server.settimeout(0.1)
    env = {**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000"}
    process = subprocess.Popen([*DAEMON, "--checkpoint", str(tmp_path / "s"), "--set",
                                "status.every_seconds=0"], stdin=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        messages, deadline, ready_at = [], time.monotonic() + 60, None
        while time.monotonic() < deadline and (ready_at is None
                                               or time.monotonic() < ready_at + 3.0):
            try:
                messages.append(server.recv(100).decode())
            except TimeoutError:
                continue
            if messages[-1] == "READY=1":
                ready_at = time.monotonic()
        after_ready = messages[messages.index("READY=1"):]
        # Every 0.1 s (half of 0.2 s) on an idle stdin, whose wait for input is cut to 0.05 s
        # (it was 0.2 s: pings as far apart as the period itself): about 30 in 3 s, and room
        # for a loaded machine's stalls.
        assert after_ready.count("WATCHDOG=1") >= 20, messages
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
        server.close()
    assert process.returncode == 0


def test_the_watchdog_is_pinged_between_the_mini_batches_of_a_long_block(tmp_path):
    """A back-fill's block (up to 1 MiB: 120,000 numbers here) is learned in one turn of the
    loop; with checkpoint.every_points 100 it writes 1,200 checkpoints there, seconds without
    a ping when only the loop's turns pinged: under the shipped unit (WatchdogSec=60) a slow
    disk would have had systemd kill the daemon in the middle of a block, for ever."""
    data = tmp_path / "numbers.txt"
    np.savetxt(data, np.random.default_rng(0).normal(size=120_000), fmt="%.3f")
    assert data.stat().st_size < 1 << 20
    code, pings, err = watchdog_pings(["--config", CONFIG, "--input", str(data),
                                       "--checkpoint", str(tmp_path / "s"), "--no-output",
                                       "--set", "batch.max_rows=100",
                                       "--set", "checkpoint.every_points=100"], tmp_path)
    assert code == 0, err
    assert err.count("checkpoint (scheduled)") > 1000
    assert pings[-1] - pings[0] > 1.5  # (the block took seconds: the test means something)
    assert np.diff(pings).max() < 1.0, np.diff(pings).max()


def test_no_watchdog_pings_for_another_process_or_without_a_period():
    from emstreamd.notify import watchdog_interval

    assert watchdog_interval({"WATCHDOG_USEC": "60000000"}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "60000000",
                              "WATCHDOG_PID": str(os.getpid())}) == 30.0
    assert watchdog_interval({}) is None and watchdog_interval({"WATCHDOG_USEC": "x"}) is None
    # (WATCHDOG_USEC=1: 20,000 pings a second from an idle daemon)
    assert watchdog_interval({"WATCHDOG_USEC": "1"}) == 0.01


def test_notify_messages_wait_a_second_at_most_and_pings_not_at_all(tmp_path, monkeypatch):
    """READY=1 and STOPPING=1 wait for room in a full notify socket a second at most (it may
    be full for a moment: systemd's queue is shared); a watchdog ping does not wait."""
    from emstreamd.notify import notify

    path = tmp_path / "n.sock"
    deaf = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    deaf.bind(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    try:
        sent = [notify("WATCHDOG=1") for _ in range(50)]
        assert sent[0] and not sent[-1]  # (the queue filled)
        started = time.monotonic()
        assert not notify("WATCHDOG=1") and time.monotonic() - started < 0.5
        started = time.monotonic()
        assert not notify("STOPPING=1")
        assert 0.5 < time.monotonic() - started < 3
        while True:  # room again: sent at once
            try:
                deaf.recv(100, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
        assert notify("READY=1") and deaf.recv(100) == b"READY=1"
    finally:
        deaf.close()


def test_a_notify_socket_that_is_never_read_does_not_hold_the_daemon(tmp_path):
    """A datagram socket that never reads fills after ten messages; the blocking send then
    held the main loop for good: rows appended were never read and SIGTERM could not stop it
    (found by an attack helper)."""
    path = tmp_path / "notify.sock"
    deaf = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    deaf.bind(str(path))
    data = tmp_path / "in.txt"
    data.write_text("".join(f"{v:.4f}\n" for v in np.random.default_rng(0).normal(size=500)))
    env = dict(os.environ, NOTIFY_SOCKET=str(path), WATCHDOG_USEC="20000")
    process = subprocess.Popen([*DAEMON, "--config", str(ROOT / "config.yaml"), "--follow",
                                str(data), "--checkpoint", str(tmp_path / "ck"), "--no-output",
                                "--log-level", "INFO"], env=env, stderr=subprocess.PIPE)
    try:
        time.sleep(3)  # (hundreds of pings: the socket's queue is long full)
        with open(data, "a") as handle:
            handle.write("".join(f"{v:.4f}\n" for v in np.random.default_rng(1).normal(
                size=500)))
        time.sleep(2)
        process.send_signal(signal.SIGTERM)
        err = process.communicate(timeout=30)[1].decode()
    finally:
        process.kill()
        deaf.close()
    assert process.returncode == 0, err[-2000:]
    assert "this run: 1000 points" in err, err[-2000:]


def _unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(interpolation=None, strict=True)
    unit.optionxform = str  # systemd's keys are case-sensitive
    unit.read(ROOT / "daemon" / "emstreamd.service")
    return unit


def test_the_shipped_unit_follows_a_file_into_its_state_directory_hardened():
    service = _unit()["Service"]
    command = shlex.split(service["ExecStart"].replace("%S", "/var/lib"))
    assert command[0].endswith("/emstreamd")
    from emstreamd.__main__ import build_parser

    args = build_parser().parse_args(command[1:])
    assert args.follow and not args.input
    assert args.checkpoint.startswith(f"/var/lib/{service['StateDirectory']}/")
    assert service["StateDirectory"] == "emstreamd" and service["Type"] == "notify"
    assert "78" in service["RestartPreventExitStatus"].split()
    assert int(service["WatchdogSec"]) > 0
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict",
                       "PrivateTmp": "yes", "DynamicUser": "yes", "PrivateDevices": "yes",
                       "CapabilityBoundingSet": ""}.items():
        assert service[key] == value, key


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_accepts_the_shipped_unit(tmp_path):
    text = (ROOT / "daemon" / "emstreamd.service").read_text()
    unit = tmp_path / "emstreamd.service"  # the binary is not installed here: /bin/true
    unit.write_text(text.replace("/usr/local/bin/emstreamd", shutil.which("true")))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


@pytest.mark.slow
def test_a_back_fill_watched_on_a_terminal_shows_its_progress_every_second(tmp_path):
    import pty

    data = tmp_path / "big.txt"
    data.write_text("\n".join(f"{v:.4f}" for v in
                              np.random.default_rng(2).normal(size=1_000_000)) + "\n")
    master, slave = pty.openpty()
    process = subprocess.Popen([*DAEMON, "--config", str(ROOT / "config.yaml"), "--input",
                                str(data), "--checkpoint", str(tmp_path / "s"), "--no-output",
                                "--set", "batch.max_rows=50"],
                               stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    seen = b""
    try:
        while process.poll() is None:
            try:
                seen += os.read(master, 65536)
            except OSError:  # the terminal closed
                break
    finally:
        process.wait(timeout=300)
        os.close(master)
    status = [line for line in seen.decode(errors="replace").splitlines() if "status:" in line]
    assert process.returncode == 0
    assert len(status) >= 2 and all("% of" in line and "left" in line for line in status)


def test_signals_while_the_daemon_starts_are_kept_for_its_loop():
    """emstreamd catches signals from its first line (emstreamd.early): a SIGTERM or SIGHUP
    during its imports (a quarter to half a second) killed it unannounced (exit 143, 129);
    now the loop takes them when it installs its handlers: a clean stop, a reload."""
    import os
    import signal

    from emstreamd import early
    from emstreamd.loop import Flags

    saved = {s: signal.getsignal(s) for s in early.SIGNALS}
    try:
        early.catch()
        os.kill(os.getpid(), signal.SIGHUP)
        os.kill(os.getpid(), signal.SIGTERM)
        flags = Flags()
        flags.install()
        assert flags.stop and flags.reload and not flags.refit and not flags.checkpoint
        assert early.pending == []
        # Once the imports are done, a SIGTERM that came during them stops the start-up at
        # once, rather than waiting for a loop that may be far off.
        early.catch()
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(early.Stop):
            early.main()
        early.take()
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def test_control_characters_reach_the_log_escaped_and_unknown_names_are_bounded(tmp_path):
    """A file name (or a configuration key) holding ESC [2J cleared the operator's terminal
    when the daemon named it; a configuration of 200,000 unknown sections made one 1.7 MB
    error line (and /etc/shadow given as the configuration was echoed whole)."""
    name = tmp_path / "x\x1b[2J\x1b[31m.txt"
    name.write_text("".join(f"{i % 7}.5\n" for i in range(300)))
    done = _run("--input", str(name), "--checkpoint", str(tmp_path / "s"), "--no-output")
    assert done.returncode == 0 and b"\x1b" not in done.stderr
    assert "x\\x1b[2J\\x1b[31m.txt" in done.stderr.decode()
    shown = subprocess.run([sys.executable, "-m", "emstream", "inspect", str(tmp_path / "s")],
                           capture_output=True, timeout=60)
    assert shown.returncode == 0 and b"\x1b" not in shown.stdout
    assert "x\\x1b[2J\\x1b[31m.txt" in shown.stdout.decode()
    config = tmp_path / "c.yaml"
    config.write_text("batch:\n  \"a\\x1b[2Jb\": 1\n")
    done = _run("--check-config", "--config", str(config))
    assert done.returncode == 78 and b"\x1b" not in done.stderr
    assert "unknown key(s) in batch: 'a\\x1b[2Jb'" in _one_line(done)
    config.write_text("batch:\n  max_rows: 5\n" + "".join(f"s{i}: 1\n" for i in range(200_000)))
    done = _run("--check-config", "--config", str(config))
    assert done.returncode == 78
    assert _one_line(done).endswith("unknown section(s): s0, s1, s10, s100, s1000 and 199995 "
                                    "more\n")
    # A file with nothing of a configuration is not echoed at all (its first names, cut to
    # 40 characters, still showed a password hash's salt and start).
    config.write_text("admin: $6$Xs9Lk2$abcdefghijklmnopqrstuv\nbob: $6$x\n")
    # (with an override too, as the shipped service's --checkpoint and --no-output: merged
    # in first, they made the file "a configuration" whose unknown sections were echoed)
    for extra in ([], ["--no-output", "--checkpoint", str(tmp_path / "s2")],
                  ["--set", "batch.max_rows=5"]):
        done = _run("--check-config", "--config", str(config), *extra)
        assert done.returncode == 78 and b"$6$" not in done.stderr and b"admin" not in done.stderr
        assert "none of its 2 top-level key(s) is a section" in _one_line(done)


def test_unicode_line_separators_and_bidi_overrides_reach_the_log_escaped(tmp_path):
    """A file name holding U+202E (right-to-left override) or U+2028 (line separator) reached
    the terminal as it was: the rest of the line read backwards, or a fake line began."""
    name = tmp_path / "x\u202eabc\u2028.txt"
    name.write_text("".join(f"{i % 7}.5\n" for i in range(300)))
    done = _run("--input", str(name), "--checkpoint", str(tmp_path / "s"), "--no-output")
    assert done.returncode == 0
    assert "\u202e".encode() not in done.stderr and "\u2028".encode() not in done.stderr
    assert "x\\u202eabc\\u2028.txt" in done.stderr.decode()
    shown = subprocess.run([sys.executable, "-m", "emstream", "inspect", str(tmp_path / "s")],
                           capture_output=True, timeout=60)
    assert shown.returncode == 0 and "\u202e".encode() not in shown.stdout
    assert "x\\u202eabc\\u2028.txt" in shown.stdout.decode()
    # A newline in a name a one-line message quotes forged a line of its own.
    forged = tmp_path / "x\nemstreamd: all is well.txt"
    forged.write_text("".join(f"{i % 7}.5\n" for i in range(300)))
    done = _run("--input", str(forged), "--checkpoint", str(tmp_path / "s2"), "--no-output")
    assert done.returncode == 0
    assert not any(line.startswith("emstreamd: all is well")
                   for line in done.stderr.decode().splitlines())
    assert "x\\nemstreamd: all is well.txt" in done.stderr.decode()
    done = subprocess.run([sys.executable, "-m", "emstream", "fit", "nope\nemstream: fine",
                           "-k", "2", "-o", str(tmp_path / "m.json")], capture_output=True,
                          timeout=60)
    assert done.returncode != 0 and len(done.stderr.decode().splitlines()) == 1, done.stderr


def test_check_config_prints_a_configuration_that_loads_back_as_it_was(tmp_path):
    """Text that reads as a number (a checkpoint path "1e3", "0o17", "+1e5") was printed
    unquoted, by YAML 1.1's rules, and came back from --config as a number (exit 78)."""
    for text in ("1e3", "0o17", "1e-4", "+1e5", ".5e1", "0x1F"):
        printed = _run("--check-config", "--set", f'checkpoint.path="{text}"')
        assert printed.returncode == 0, printed.stderr
        (tmp_path / "effective.yaml").write_bytes(printed.stdout)
        again = _run("--check-config", "--config", str(tmp_path / "effective.yaml"))
        assert again.returncode == 0, again.stderr
        assert again.stdout.split(b"\n", 1)[1] == printed.stdout.split(b"\n", 1)[1]
        assert f"path: '{text}'".encode() in printed.stdout


def test_the_watchdog_is_pinged_while_a_large_window_is_refitted_in_process(tmp_path):
    """refit.window 1,000,000 (3-D, K=8) refitted in-process (no refit.scheduler) pauses the
    loop for seconds (1.6 s here; minutes at the schema's 10^8): the watchdog is pinged
    meanwhile, or systemd (WatchdogSec=60) kills the daemon mid-refit, and again at each
    restart's refit."""
    data = tmp_path / "numbers.txt"
    rng = np.random.default_rng(1)
    values = np.array([-4.0, 0.0, 5.0])[rng.choice(3, 1_100_000)][:, None] \
        + rng.normal(size=(1_100_000, 3))
    np.savetxt(data, values, fmt="%.3f")
    code, pings, err = watchdog_pings(["--config", CONFIG, "--input", str(data),
                                       "--checkpoint", str(tmp_path / "s"), "--no-output",
                                       "--set", "refit.window=1000000",
                                       "--set", "refit.every_points=1000000",
                                       "--set", "features.enabled=false",
                                       "--set", "model.n_components=8"], tmp_path)
    assert code == 0, err
    assert err.count("refit (schedule) on the last 1000000 points") == 1, err[-3000:]
    assert np.diff(pings).max() < 1.0, np.diff(pings).max()
