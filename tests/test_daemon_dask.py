"""emstreamd's scheduled refit on a dask LocalCluster, in the background (issue 7)."""

import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from emstream import checkpoint

from .conftest import ROOT

pytest.importorskip("distributed")

DAEMON = [sys.executable, "-m", "emstreamd"]


def _lines(rng, n):
    k = rng.choice(3, n, p=[0.2, 0.5, 0.3])
    values = np.array([10.0, 20.0, 35.0])[k] + rng.normal(size=n)
    return "".join(f"{v:.6f}\n" for v in values).encode()


def _wait_for(log_path, text, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log_path.read_text(errors="replace"):
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not logged within {timeout}s:\n{log_path.read_text()}")


def test_background_refit_on_a_local_cluster_while_ingesting(tmp_path):
    rng = np.random.default_rng(0)
    log_path, state = tmp_path / "stderr.txt", tmp_path / "state"
    with open(log_path, "wb") as err:
        process = subprocess.Popen(
            [*DAEMON, "--config", str(ROOT / "config.yaml"), "--checkpoint", str(state),
             "--no-output", "--set", "refit.scheduler=local:2", "--set",
             "refit.every_points=20000", "--set", "refit.window=5000", "--set",
             "batch.max_wait=0.05"], stdin=subprocess.PIPE, stderr=err)
        try:
            process.stdin.write(_lines(rng, 20_000))
            process.stdin.flush()
            _wait_for(log_path, "started on local:2")
            # Ingestion goes on while the cluster starts and refits.
            process.stdin.write(_lines(rng, 1500))
            process.stdin.flush()
            _wait_for(log_path, "re-learned")
            process.stdin.write(_lines(rng, 500))
            process.stdin.close()
            assert process.wait(timeout=120) == 0, log_path.read_text()
        finally:
            if process.poll() is None:
                process.kill()
    saved = checkpoint.load(state)
    counters, history = saved.meta["counters"], saved.meta["history"]
    assert counters["rows"] == 22_000 and counters["refits"] == 1
    (refit,) = [e for e in history if e["event"] == "refit"]
    assert refit["scheduler"] == "local:2" and refit["window"] == 5000
    assert 0 < refit["relearned"] <= 5000
    assert refit["reason"] == "schedule"
    np.testing.assert_allclose(np.sort(saved.model.means_.ravel()), [10.0, 20.0, 35.0],
                               atol=0.15)
    err = log_path.read_text()
    assert err.index("started on local:2") < err.index("re-learned")


def _on_a_silent_scheduler(tmp_path, *settings):
    """A daemon on a pipe whose refits go to an address nothing listens at (they hang
    connecting), checkpointing to tmp_path/s, with ``settings`` (key=value) on top."""
    extra = [arg for setting in settings for arg in ("--set", setting)]
    return subprocess.Popen(
        [*DAEMON, "--config", str(ROOT / "config.yaml"), "--checkpoint", str(tmp_path / "s"),
         "--no-output", "--log-level", "INFO", "--set", "refit.scheduler=tcp://127.0.0.1:1",
         "--set", "batch.max_wait=0.05", *extra],
        stdin=subprocess.PIPE, stderr=subprocess.PIPE)


def test_a_scheduler_that_does_not_answer_neither_floods_the_log_nor_delays_the_stop(tmp_path):
    """Nothing listens at the scheduler's address: the refit hangs connecting.  Each scheduled
    refit meanwhile is skipped once (old code: "skipped" at every mini-batch after, since its
    count was not reset), and the stop waits refit.wait_at_exit, not 5 s more."""
    rng = np.random.default_rng(1)
    process = _on_a_silent_scheduler(tmp_path, "refit.every_points=2000",
                                     "refit.wait_at_exit=1", "status.every_seconds=0")
    try:
        for _ in range(40):  # 20,000 points in 40 pieces, a mini-batch or more each
            process.stdin.write(_lines(rng, 500))
            process.stdin.flush()
            time.sleep(0.1)
        stop = time.monotonic()
        process.stdin.close()
        err = process.stderr.read().decode()
        assert process.wait(timeout=60) == 0, err
        waited = time.monotonic() - stop
    finally:
        if process.poll() is None:
            process.kill()
    assert "started on tcp://127.0.0.1:1" in err
    assert 1 <= err.count("skipped: the previous one is still running") <= 10, err
    assert waited < 4.5, err  # wait_at_exit (1 s) and the final checkpoint; old code: > 6 s


def test_the_stop_checkpoints_before_waiting_for_a_refit_and_a_second_signal_ends_the_wait(
        tmp_path):
    """A refit hanging on a scheduler that does not answer, and refit.wait_at_exit long: the
    stop waited all of it before its checkpoint, a second SIGTERM changed nothing, and a kill
    meanwhile lost every line read from stdin since the last checkpoint (none at all here)."""
    from .test_daemon import _wait_for as _wait_for_line

    process = _on_a_silent_scheduler(tmp_path, "refit.wait_at_exit=1000",
                                     "checkpoint.every_seconds=1000",
                                     "checkpoint.every_points=1000000")
    try:
        process.stdin.write(_lines(np.random.default_rng(2), 3000))
        process.stdin.flush()
        _wait_for_line(process, "first (provisional) model")
        process.send_signal(signal.SIGUSR2)  # a refit, which hangs connecting
        _wait_for_line(process, "started on tcp://127.0.0.1:1")
        process.send_signal(signal.SIGTERM)
        _wait_for_line(process, "waiting up to 1000s for the refit")
        # Already kept: what was learned (a kill now loses nothing).
        assert checkpoint.load(tmp_path / "s").meta["counters"]["rows"] == 3000
        stop = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        assert time.monotonic() - stop < 10
        assert "not waiting for the refit" in process.stderr.read().decode()
    finally:
        if process.poll() is None:
            process.kill()
    assert checkpoint.load(tmp_path / "s").meta["counters"]["rows"] == 3000


def test_a_client_closed_by_a_long_outage_is_replaced_at_the_next_refit(monkeypatch):
    """A scheduler away longer than the client waits for it closes the client for good; kept,
    it failed every later refit ("Client is closed") until the daemon was restarted."""
    import contextlib

    import emstream.cluster
    import emstream.distributed
    from emstreamd.background import BackgroundRefit

    class Client:
        def __init__(self):
            self.status = "running"

    made, results = [], []

    @contextlib.contextmanager
    def connect(address):
        made.append(Client())
        yield made[-1]

    def refit_on_client(model, rows, client):
        if results.pop(0) == "outage":
            client.status = "closed"
            raise RuntimeError("Client is closed")
        return model

    monkeypatch.setattr(emstream.distributed, "connect", connect)
    monkeypatch.setattr(emstream.cluster, "refit_on_client", refit_on_client)
    background = BackgroundRefit("tcp://127.0.0.1:1")
    for outcome in ("ok", "outage", "ok", "ok"):
        results.append(outcome)
        background.start(object(), np.zeros((3, 1)), reason="test", learned_at_start=0,
                         generation=0)
        background._job.done.wait(10)
        job = background.poll()
        assert (job.error is None) == (outcome == "ok")
    background.close()
    assert len(made) == 2  # one before the outage, one after it; not one per refit


def test_a_refit_whose_last_worker_is_lost_fails_in_time_and_says_why(monkeypatch):
    """A refit running when the cluster lost its last worker waited for ever (the daemon
    said "stuck" after 300 s and kept skipping refits); now it fails after the connection's
    timeout with the reason, and the next refit connects anew."""
    import functools

    from distributed import Client, LocalCluster

    import emstream.distributed
    from emstream import GaussianMixture
    from emstreamd.background import BackgroundRefit

    monkeypatch.setattr(emstream.distributed, "connect",
                        functools.partial(emstream.distributed.connect, timeout=2))
    rows = np.random.default_rng(0).normal(size=(600, 1))
    model = GaussianMixture(2, random_state=0).fit(rows)
    with LocalCluster(n_workers=1, processes=False, protocol="tcp", host="127.0.0.1",
                      dashboard_address=None, threads_per_worker=1) as cluster:
        background = BackgroundRefit(cluster.scheduler_address)
        outcomes = []
        for lose in (False, True):
            if lose:  # (a worker that still holds a result is not retired at once)
                with Client(cluster, set_as_default=False) as other:
                    deadline = time.monotonic() + 20
                    while other.scheduler_info()["workers"] and time.monotonic() < deadline:
                        other.retire_workers()
                        time.sleep(0.1)
            started = time.monotonic()
            background.start(model, rows, reason="test", learned_at_start=0, generation=0)
            assert background._job.done.wait(30)
            outcomes.append((background.poll().error, time.monotonic() - started))
        background.close()
    assert outcomes[0][0] is None
    error, seconds = outcomes[1]
    assert isinstance(error, ConnectionError) and "lost its last worker" in str(error), error
    assert 2 <= seconds < 30
    assert background._client is None  # (the next refit connects anew)


def test_dask_s_own_info_lines_are_not_logged_as_the_daemon_s(tmp_path):
    """Some thirty lines of dask's chatter per cluster started or stopped ("State start",
    "Scheduler at: ...", "Lost all workers") came out as "emstreamd INFO" lines."""
    data = tmp_path / "d.txt"
    data.write_bytes(_lines(np.random.default_rng(1), 3000))
    done = subprocess.run([*DAEMON, "--config", str(ROOT / "config.yaml"), "--input", str(data),
                           "--checkpoint", str(tmp_path / "s"), "--no-output", "--log-level",
                           "INFO", "--set", "refit.scheduler=local:1", "--set",
                           "refit.every_points=1500", "--set", "model.warmup_size=200"],
                          capture_output=True, timeout=300)
    err = done.stderr.decode()
    assert done.returncode == 0, err
    assert "refit (schedule)" in err  # (the cluster was used)
    for chatter in ("State start", "Scheduler at:", "Lost all workers", "dashboard at"):
        assert chatter not in err, err


def test_a_refit_that_never_ends_is_said_to_be_stuck(monkeypatch, caplog):
    """A scheduler that takes connections but never answers (or has no worker) kept a refit
    running for ever: the daemon only said, at INFO, that each next one was skipped."""
    import logging

    from emstream import GaussianMixture
    from emstreamd import config as config_module
    from emstreamd import keymonitor
    from emstreamd.keymonitor import KeyMonitor

    class Stuck:
        address, busy, running_for = "tcp://10.0.0.1:8786", True, 0.0

    config = config_module.load(ROOT / "config.yaml")
    monitor = KeyMonitor(config, False)
    monitor.background = Stuck()
    monitor.learn(np.random.default_rng(0).normal(size=(1500, 1)), None)
    assert isinstance(monitor.model, GaussianMixture) and monitor.model._is_fitted()
    with caplog.at_level(logging.INFO, logger="emstreamd"):
        monitor.refit("schedule")
        Stuck.running_for = keymonitor.STUCK_REFIT_SECONDS + 1
        monitor.refit("schedule")
    levels = [(r.levelname, "scheduler up, with workers" in r.getMessage())
              for r in caplog.records if "skipped" in r.getMessage()]
    assert levels == [("INFO", False), ("WARNING", True)]


def test_re_learning_after_a_background_refit_tells_the_watchdog_it_is_alive():
    """The points that arrived while a background refit ran (up to refit.window) were
    re-learned without a ping to the watchdog (noticed by an attack helper)."""
    import copy

    from emstreamd import config as config_module
    from emstreamd.background import Job
    from emstreamd.keymonitor import KeyMonitor

    class Done:
        address = "tcp://10.0.0.1:8786"

    pings = []
    config = config_module.load(ROOT / "config.yaml")
    monitor = KeyMonitor(config, False, alive=lambda: pings.append(1))
    monitor.background = Done()
    rng = np.random.default_rng(0)
    monitor.learn(rng.normal(size=(3000, 1)), None)
    model = copy.deepcopy(monitor.model)
    model.refit(rng.normal(size=(500, 1)))
    job = Job(model, np.zeros((500, 1)), "schedule", monitor.learned - 2000, monitor.generation)
    before = len(pings)
    monitor.swap_in(job, replay_step=100)
    assert len(pings) - before >= 20  # (2,000 points re-learned, 100 at a time)
