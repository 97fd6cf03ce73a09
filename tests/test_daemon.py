"""emstreamd end to end: the real daemon as a subprocess."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from emstream import checkpoint

from .conftest import ROOT

DAEMON = [sys.executable, "-m", "emstreamd"]
CONFIG = str(ROOT / "config.yaml")


def _write_stream(path, n, seed=0, bad_every=None):
    """A 1-D three-regime series; optionally a malformed line of each kind every `bad_every`."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(3, n, p=[0.2, 0.5, 0.3])
    values = np.array([10.0, 20.0, 35.0])[labels] + rng.normal(size=n)
    lines = [f"{v:.6f}".encode() for v in values]
    kinds = [b"oops", b"nan", b"1e999", b"1 2", b"", b"\xff\xfe", b"9" * 5000, b"1_000",
             b"1e200"]
    reasons = ["non-numeric", "non-finite", "non-finite", "wrong field count", "blank",
               "invalid utf-8", "too long", "non-numeric", "out of range"]
    injected = {}
    out = []
    for i, line in enumerate(lines):
        out.append(line)
        if bad_every and i % bad_every == bad_every - 1:
            k = (i // bad_every) % len(kinds)
            out.append(kinds[k])
            injected[reasons[k]] = injected.get(reasons[k], 0) + 1
    path.write_bytes(b"\n".join(out) + b"\n")
    return injected


def _run(*args, **kwargs):
    return subprocess.run([*DAEMON, *args], capture_output=True, timeout=120, **kwargs)


def test_runs_on_the_bundled_example_and_prints_labels_and_a_summary(tmp_path):
    done = _run("--config", CONFIG, "--input", str(ROOT / "examples" / "sensor.txt"),
                "--checkpoint", str(tmp_path / "state"))
    assert done.returncode == 0, done.stderr.decode()
    rows = done.stdout.decode().splitlines()
    assert len(rows) == 5000 - 4 - 100  # 4 bad lines; every point after the first batch (100)
    line, label, probability, surprise, score, anomaly = rows[0].split(",")
    assert int(label) in (0, 1, 2) and 0 < float(probability) <= 1 and 0 <= float(score) <= 1
    err = done.stderr.decode()
    assert "4996 points in" in err and "component" in err
    assert re.search(r"; anomalies: \d+; kept out of the model by the outlier gate: \d+; drift "
                     r"alarms: ", err), err


def test_malformed_lines_are_counted_and_the_model_equals_the_clean_one(tmp_path):
    dirty, clean = tmp_path / "dirty.txt", tmp_path / "clean.txt"
    injected = _write_stream(dirty, 20_000, bad_every=100)
    _write_stream(clean, 20_000)
    settings = ["--config", CONFIG, "--no-output", "--set", "batch.max_rows=250"]
    for name in ("dirty", "clean"):
        done = _run(*settings, "--input", str(tmp_path / f"{name}.txt"),
                    "--checkpoint", str(tmp_path / f"{name}.json"))
        assert done.returncode == 0, done.stderr.decode()
    a, b = checkpoint.load(tmp_path / "dirty.json"), checkpoint.load(tmp_path / "clean.json")
    assert a.meta["counters"]["rejected"] == injected
    assert a.meta["counters"]["rows"] == b.meta["counters"]["rows"] == 20_000
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_array_equal(getattr(a.model, name), getattr(b.model, name))


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_and_repeats_nothing(tmp_path):
    data = tmp_path / "data.txt"
    n = 400_000  # (30 kills land anywhere in it: the length adds nothing but time)
    injected = _write_stream(data, n, seed=1, bad_every=997)
    state, reference = tmp_path / "state", tmp_path / "reference.json"
    # Small batches and frequent checkpoints: many kills land mid-batch and mid-checkpoint.
    settings = ["--config", CONFIG, "--no-output", "--input", str(data), "--set",
                "batch.max_rows=50", "--set", "checkpoint.every_points=2000", "--set",
                "status.every_seconds=0"]
    process = subprocess.Popen([*DAEMON, *settings, "--checkpoint", str(reference)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_for(process, "ready")
    started = time.monotonic()
    assert process.wait(timeout=300) == 0
    learning = time.monotonic() - started  # the run after its start-up
    # Kill at a random moment after the start-up (a kill before it lands in the imports, not
    # in a batch or a checkpoint): 30 kills take about 40% of the file on any machine, and a
    # last run finishes it.
    rng = np.random.default_rng(0)
    kills = 0
    while True:
        process = subprocess.Popen([*DAEMON, *settings, "--checkpoint", str(state)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if kills < 30:
            _wait_for(process, "ready", timeout=120)
        delay = float(rng.uniform(0.0, learning / 40))
        try:
            process.wait(timeout=delay if kills < 30 else 120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            kills += 1
            continue
        assert process.returncode == 0, process.stderr.read().decode()
        break
    assert kills >= 30
    resumed, straight = checkpoint.load(state), checkpoint.load(reference)
    assert resumed.meta["counters"]["rows"] == n
    assert resumed.meta["counters"]["rejected"] == injected
    assert resumed.meta["counters"]["lines"] == straight.meta["counters"]["lines"]
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_array_equal(getattr(resumed.model, name),
                                      getattr(straight.model, name))


def _start_on_a_pipe(tmp_path, *extra):
    process = subprocess.Popen([*DAEMON, "--config", CONFIG, "--checkpoint",
                                str(tmp_path / "state"), "--set", "model.warmup_size=100",
                                "--set", "batch.max_wait=0.05", *extra],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    _send(process, np.random.default_rng(2).normal(0, 1, 300))
    return process


def _send(process, values):
    process.stdin.write("".join(f"{v}\n" for v in values).encode())
    process.stdin.flush()


def _readline(stream, deadline):
    """The next line of a subprocess's pipe, or "" if none comes by ``deadline``.

    A buffered reader's ``readline`` can take several lines into its buffer at once, where
    ``select`` (which sees only the pipe) misses them: the buffer is looked at first."""
    import select
    if b"\n" in _buffered(stream):
        return stream.readline().decode()
    ready, _, _ = select.select([stream], [], [], max(0.0, deadline - time.monotonic()))
    return stream.readline().decode() if ready else ""


def _buffered(stream) -> bytes:
    """What a buffered reader holds (or a non-blocking read of the pipe brings), unread."""
    if not hasattr(stream, "peek"):
        return b""
    fd = stream.fileno()
    os.set_blocking(fd, False)
    try:
        return stream.peek()
    except BlockingIOError:
        return b""
    finally:
        os.set_blocking(fd, True)


def _wait_for(process, text, timeout=30):
    """Read stderr lines until one contains `text` (or fail after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = _readline(process.stderr, deadline)
        seen.append(line)
        if text in line:
            return seen
    process.kill()
    raise AssertionError(f"{text!r} not logged; saw {seen[-5:]}")


def test_a_closed_output_pipe_ends_the_run_with_a_checkpoint_not_a_traceback(tmp_path):
    """``emstreamd ... | head -1``: the reader goes away; the daemon logs it, stops learning,
    exits 1, and no checkpoint claims lines whose output was not written (at-least-once)."""
    state = tmp_path / "state"
    daemon = subprocess.Popen(
        DAEMON + ["--config", CONFIG, "--input", str(ROOT / "examples" / "sensor.txt"),
                  "--checkpoint", str(state), "--set", "batch.max_rows=100"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert daemon.stdout.readline()  # one line, then the reader is gone
    daemon.stdout.close()
    _, err = daemon.communicate(timeout=60)
    err = err.decode()
    assert daemon.returncode == 1, err
    assert "per-point output closed by its reader" in err and "Traceback" not in err
    if any(state.glob("checkpoint-*.json")):
        loaded = checkpoint.load(state)
        assert loaded.meta["counters"]["rows"] == loaded.model.n_seen_ < 4996


def test_sigterm_finishes_the_batch_and_leaves_a_final_checkpoint(tmp_path):
    process = _start_on_a_pipe(tmp_path)
    _wait_for(process, "warm-up complete")
    _send(process, np.random.default_rng(3).normal(8, 1, 300))
    deadline, line = time.monotonic() + 30, "-"
    while line and not line.startswith("600,"):  # the last point's line: all 600 learned
        line = _readline(process.stdout, deadline)
    assert line.startswith("600,"), line
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    loaded = checkpoint.load(tmp_path / "state")
    assert loaded.meta["counters"]["rows"] == 600
    assert loaded.model.n_seen_ == 600


def _reloaded_with(tmp_path, text: str):
    """A daemon on a pipe, past its warm-up, sent SIGHUP after its config file became
    ``text``; the process and its log lines up to the reload's."""
    config = tmp_path / "config.yaml"
    config.write_text((ROOT / "config.yaml").read_text())
    process = _start_on_a_pipe(tmp_path, "--config", str(config))
    _wait_for(process, "warm-up complete")
    config.write_text(text)
    process.send_signal(signal.SIGHUP)
    return process, _wait_for(process, "SIGHUP")


def _checkpointed_and_stopped(process) -> None:
    """The daemon still answers: SIGUSR1 checkpoints, SIGTERM stops it cleanly."""
    process.send_signal(signal.SIGUSR1)
    _wait_for(process, "checkpoint (SIGUSR1)")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0


def test_sighup_names_each_live_change_and_refuses_an_emptied_file(tmp_path):
    """A configuration file emptied by a half-done edit (an editor, a shell's >) is valid
    YAML: every live key went back to its default with nothing in the log but "configuration
    reloaded", then (found by an attack helper) with the changes said at INFO alone.  It is
    refused; {} asks for the defaults, and each change is named."""
    config = tmp_path / "config.yaml"
    config.write_text((ROOT / "config.yaml").read_text().replace(
        "anomaly_threshold: 0.9999", "anomaly_threshold: 0.5"))
    process = _start_on_a_pipe(tmp_path, "--config", str(config))
    _wait_for(process, "warm-up complete")
    for empty in ("", "# being written\n"):
        config.write_text(empty)
        process.send_signal(signal.SIGHUP)
        seen = _wait_for(process, "SIGHUP")[-1]
        assert "holds no settings" in seen and "keeping the running configuration" in seen, seen
    config.write_text("{}\n")
    process.send_signal(signal.SIGHUP)
    seen = _wait_for(process, "SIGHUP")[-1]
    assert "reloaded (live keys only): output.anomaly_threshold 0.5 -> 0.9999" in seen, seen
    process.send_signal(signal.SIGHUP)  # (the same file again: nothing changes)
    assert "reloaded (live keys only), none changed" in _wait_for(process, "SIGHUP")[-1]
    _checkpointed_and_stopped(process)


def test_sighup_with_a_broken_config_keeps_the_old_one(tmp_path):
    process, seen = _reloaded_with(tmp_path, "batch: [this is not a mapping\n")
    assert "keeping the running configuration" in seen[-1]
    _checkpointed_and_stopped(process)


def test_sighup_with_a_value_beyond_float_keeps_the_old_one(tmp_path):
    """A 400-digit integer in model.means_init raised OverflowError out of the reload: the
    daemon died with a traceback, nothing learned since its last checkpoint saved."""
    process, seen = _reloaded_with(tmp_path, f"model:\n  means_init: [[{'1' * 400}], [2], [3]]\n")
    assert "keeping the running configuration" in seen[-1]
    _checkpointed_and_stopped(process)


def test_sighup_refuses_a_pipe_and_names_the_keys_that_wait_for_a_restart(tmp_path):
    """A named pipe put where the config was: opening it blocked the loop until a writer came
    (signals and all: only SIGKILL stopped it).  A change to a key that is not live was
    dropped without a word."""
    config = tmp_path / "config.yaml"
    text = (ROOT / "config.yaml").read_text()
    config.write_text(text)
    process = _start_on_a_pipe(tmp_path, "--config", str(config))
    _wait_for(process, "warm-up complete")
    config.unlink()
    os.mkfifo(config)
    process.send_signal(signal.SIGHUP)
    seen = _wait_for(process, "SIGHUP", timeout=10)
    assert "keeping the running configuration" in seen[-1] and "not a regular file" in seen[-1]
    config.unlink()
    config.write_text(text.replace("n_components: 3", "n_components: 5")
                      .replace("anomaly_threshold: 0.9999", "anomaly_threshold: 0.999"))
    process.send_signal(signal.SIGHUP)
    seen = _wait_for(process, "SIGHUP: configuration reloaded")
    seen += _wait_for(process, "new model", timeout=10)
    # (a restart resumes the checkpoint, which keeps its model's settings: said so)
    assert ("SIGHUP: model.n_components changed but only take(s) effect for a new model"
            in seen[-1])
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0


def test_sighup_with_a_model_key_the_running_config_lacks(tmp_path):
    """A valid model key the shipped file leaves out (model.verbose) added, then SIGHUP: it is
    named as waiting for a restart (the daemon died with KeyError, no final checkpoint)."""
    process, seen = _reloaded_with(tmp_path, "model:\n  verbose: 0\n  n_components: 3\n")
    assert "SIGHUP: configuration reloaded" in seen[-1]
    _checkpointed_and_stopped(process)


def test_configuration_errors_exit_78_with_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("batch:\n  max_rows: many\n")
    done = _run("--config", str(bad), "--input", os.devnull)
    assert done.returncode == 78
    assert done.stderr.decode().strip() == (
        "emstreamd: configuration error: batch.max_rows must be an integer >= 1, got 'many'")
    assert _run("--config", str(tmp_path / "missing.yaml")).returncode == 78


def test_sd_notify_ready_and_stopping(tmp_path):
    import socket
    address = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(address)
    server.settimeout(10)
    data = tmp_path / "d.txt"
    _write_stream(data, 2000)
    done = _run("--config", CONFIG, "--no-output", "--input", str(data), "--checkpoint",
                str(tmp_path / "s"), env={**os.environ, "NOTIFY_SOCKET": address})
    assert done.returncode == 0
    messages = [server.recv(64) for _ in range(2)]
    server.close()
    assert messages == [b"READY=1", b"STOPPING=1"]


def test_checkpoint_records_where_the_input_stood(tmp_path):
    data = tmp_path / "d.txt"
    _write_stream(data, 3000)
    done = _run("--config", CONFIG, "--no-output", "--input", str(data), "--checkpoint",
                str(tmp_path / "c.json"))
    assert done.returncode == 0
    meta = json.loads((tmp_path / "c.json").read_text())["content"]["meta"]
    assert meta["input"]["offset"] == data.stat().st_size
    assert meta["input"]["next_line"] == 3001 and meta["input"]["kind"] == "file"


def test_a_back_fill_checkpoints_every_points_inside_a_block_and_resumes_from_each(tmp_path):
    """60,000 numbers are one block of the reader (up to 1 MiB): checkpoint.every_points 5,000
    wrote one checkpoint per block (two in all) before; now one every ~5,000 points, each at
    a line end, and resuming from one in the middle ends with the uninterrupted model."""
    data = tmp_path / "d.txt"
    _write_stream(data, 60_000)
    settings = ["--config", CONFIG, "--no-output", "--input", str(data),
                "--set", "checkpoint.every_points=5000", "--set", "checkpoint.keep=100"]
    done = _run(*settings, "--checkpoint", str(tmp_path / "all"))
    assert done.returncode == 0, done.stderr.decode()
    saved = sorted((tmp_path / "all").glob("checkpoint-*.json"))
    assert len(saved) >= 11, [p.name for p in saved]
    text = data.read_bytes()
    for path in saved:
        where = json.loads(path.read_text())["content"]["meta"]["input"]
        assert text[where["offset"] - 1:where["offset"]] == b"\n"
        assert text.count(b"\n", 0, where["offset"]) + 1 == where["next_line"]
    middle = tmp_path / "middle"
    middle.mkdir()
    (middle / "checkpoint-00000001.json").write_bytes(saved[len(saved) // 2].read_bytes())
    done = _run(*settings, "--checkpoint", str(middle))
    assert done.returncode == 0, done.stderr.decode()
    whole, resumed = checkpoint.load(saved[-1]), checkpoint.load(middle)
    assert resumed.meta["counters"] == whole.meta["counters"]
    for name in ("weights_", "means_", "covariances_"):
        assert np.array_equal(getattr(resumed.model, name), getattr(whole.model, name)), name


def test_scheduled_refits_keep_labels_and_are_recorded(tmp_path):
    data = tmp_path / "d.txt"
    _write_stream(data, 30_000, seed=4)
    common = ["--config", CONFIG, "--no-output", "--input", str(data), "--set",
              "batch.max_rows=500", "--set", "batch.first_rows=500"]
    done = _run(*common, "--checkpoint", str(tmp_path / "refit.json"), "--set",
                "refit.every_points=5000", "--set", "refit.window=4000")
    assert done.returncode == 0, done.stderr.decode()
    plain = _run(*common, "--checkpoint", str(tmp_path / "plain.json"))
    assert plain.returncode == 0
    refitted = checkpoint.load(tmp_path / "refit.json")
    baseline = checkpoint.load(tmp_path / "plain.json")
    assert refitted.meta["counters"]["refits"] == 6  # after 5,000 .. 30,000 learned points
    events = [e for e in refitted.meta["history"] if e["event"] == "refit"]
    assert [e["rows"] for e in events] == [5000, 10000, 15000, 20000, 25000, 30000]
    assert all(e["window"] == 4000 for e in events)
    # Same data, same labels: component k means the same regime with and without refits.
    np.testing.assert_allclose(refitted.model.means_, baseline.model.means_, atol=0.2)


def test_sigusr2_refits_a_running_daemon(tmp_path):
    process = _start_on_a_pipe(tmp_path)
    _wait_for(process, "warm-up complete")
    _send(process, np.random.default_rng(5).normal(0, 1, 300))
    assert _readline(process.stdout, time.monotonic() + 30)
    process.send_signal(signal.SIGUSR2)
    _wait_for(process, "refit (SIGUSR2)")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert checkpoint.load(tmp_path / "state").meta["counters"]["refits"] == 1


def test_json_lines_with_named_fields(tmp_path):
    data = tmp_path / "d.jsonl"
    rng = np.random.default_rng(6)
    lines = [json.dumps({"t": i, "temp": float(v), "unit": "C"})
             for i, v in enumerate(np.r_[rng.normal(0, 1, 800), rng.normal(6, 1, 800)])]
    lines[10] = '{"t": 10, "temp": "hot"}'
    lines[20] = '{"t": 20}'
    lines[30] = "not json"
    lines[40] = '{"temp": NaN}'
    data.write_text("\n".join(lines) + "\n")
    done = _run("--config", CONFIG, "--input", str(data), "--no-output", "--checkpoint",
                str(tmp_path / "c.json"), "--set", "input.format=jsonl", "--set",
                "input.fields=[temp]", "--set", "model.warmup_size=200")
    assert done.returncode == 0, done.stderr.decode()
    meta = checkpoint.load(tmp_path / "c.json").meta
    assert meta["counters"]["rows"] == 1596
    assert meta["counters"]["rejected"] == {"non-numeric": 1, "missing field": 1,
                                            "invalid json": 1, "non-finite": 1}


def test_an_ipv6_metrics_address_is_logged_as_a_url_has_it(tmp_path):
    """``metrics.address: ::1`` was logged as http://::1:PORT/metrics, which no browser or
    scraper takes: an IPv6 address goes in brackets."""
    import socket
    import urllib.request
    pytest.importorskip("prometheus_client")
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    process = _start_on_a_pipe(tmp_path, "--set", "metrics.port=0", "--set",
                               "metrics.address=::1", "--no-output")
    try:
        seen = _wait_for(process, "metrics on http://")
        url = seen[-1].split("metrics on ", 1)[1].strip()
        assert url.startswith("http://[::1]:") and url.endswith("/metrics"), url
        assert b"emstreamd_" in urllib.request.urlopen(url, timeout=10).read()
    finally:
        process.terminate()
        process.communicate(timeout=60)


def test_prometheus_metrics_on_localhost(tmp_path):
    import re
    import urllib.request
    pytest.importorskip("prometheus_client")
    process = _start_on_a_pipe(tmp_path, "--set", "metrics.port=0", "--no-output")
    seen = _wait_for(process, "metrics on http://127.0.0.1:")
    port = int(re.search(r"127\.0\.0\.1:(\d+)/metrics", seen[-1]).group(1))
    _wait_for(process, "warm-up complete")
    _send(process, [1.0, 2.0, "oops"])
    deadline = time.monotonic() + 20
    text = ""
    while time.monotonic() < deadline:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        text = text.decode()
        if "emstreamd_points_total 302.0" in text:
            break
        time.sleep(0.1)
    assert "emstreamd_points_total 302.0" in text
    assert 'emstreamd_rejected_lines_total{reason="non_numeric"} 1.0' in text
    assert "emstreamd_average_log_likelihood" in text
    assert "emstreamd_drift_alarms_total 0.0" in text
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0


def test_sighup_says_when_a_set_on_the_command_line_hides_the_files_edit(tmp_path):
    """A live key given with --set stays at that value when the file is edited and reloaded:
    right, but the log said only "reloaded", and the operator's edit did nothing, silently."""
    config = tmp_path / "config.yaml"
    text = (ROOT / "config.yaml").read_text()
    config.write_text(text)
    process = _start_on_a_pipe(tmp_path, "--config", str(config),
                               "--set", "output.anomaly_threshold=0.9999")
    _wait_for(process, "warm-up complete")
    config.write_text(text.replace("anomaly_threshold: 0.9999", "anomaly_threshold: 0.5"))
    process.send_signal(signal.SIGHUP)
    seen = _wait_for(process, "SIGHUP: configuration reloaded")
    seen += _wait_for(process, "--set", timeout=10)
    # (batch.max_wait too: _start_on_a_pipe sets it)
    assert "SIGHUP: batch.max_wait, output.anomaly_threshold keep(s) the value given with " \
           "--set" in seen[-1]
    _checkpointed_and_stopped(process)
