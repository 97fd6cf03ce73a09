"""Shared fixtures: the seed series and synthetic mixtures with known parameters."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


# Daemons a test started as subprocesses (tests append theirs): killed when it ends, so that a
# test failing half-way leaves none running (one left by a failed run spun a core for hours).
STARTED = []


@pytest.fixture(autouse=True)
def _no_daemon_left():
    yield
    while STARTED:
        process = STARTED.pop()
        if process.poll() is None:
            process.kill()
            process.wait()


def until(predicate, timeout=30.0) -> bool:
    """Whether ``predicate()`` came true within ``timeout`` seconds (polled every 50 ms): for
    tests that wait on a daemon in another process."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def watchdog_pings(args: list, folder: Path, timeout: float = 300.0) -> tuple:
    """Run ``emstreamd ARGS`` under a systemd watchdog of 0.2 s (pings due every 0.1 s) and
    collect its pings: (exit code, times of the WATCHDOG=1 pings, stderr).  Its stderr goes to
    a file (thousands of log lines would fill a pipe read only at the end)."""
    address = str(folder / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(address)
    server.settimeout(0.05)
    env = {**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000"}
    log = folder / "stderr.txt"
    with open(log, "wb") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "emstreamd", *args],
                                   stdout=subprocess.DEVNULL, stderr=stderr, env=env)
    STARTED.append(process)
    pings = []
    try:
        deadline = time.monotonic() + timeout
        while process.poll() is None and time.monotonic() < deadline:
            try:
                if server.recv(100) == b"WATCHDOG=1":
                    pings.append(time.monotonic())
            except TimeoutError:
                continue
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=60)
        server.close()
    return process.returncode, pings, log.read_text()


def without_root_override() -> list:
    """A command prefix that runs a process without root's power to read and write any file
    (``setpriv`` dropping the DAC capabilities), [] when not root; skips the test if root has
    no setpriv.  For tests of what the daemon does with a file it may not read or write."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]


@pytest.fixture(scope="session")
def seed_series() -> np.ndarray:
    """The 50-point time series from the project's origin (shared/seeds/003), shape (50, 1)."""
    return np.loadtxt(ROOT / "examples" / "seed_series.txt")[:, None]


def mixture_1d(n: int, rng: np.random.Generator) -> np.ndarray:
    """Means -4, 0, 5; sd 1; weights .2/.5/.3 — the issue's stationary 1-D stream, shape (n, 1)."""
    comp = rng.choice(3, n, p=[0.2, 0.5, 0.3])
    return (np.array([-4.0, 0.0, 5.0])[comp] + rng.normal(size=n))[:, None]


def mixture_2d(n: int, rng: np.random.Generator) -> np.ndarray:
    """Three 2-D components with full, correlated covariances, shape (n, 2)."""
    means = np.array([[0.0, 0.0], [5.0, 1.0], [1.0, 6.0]])
    covs = np.array([[[1.0, 0.6], [0.6, 1.0]], [[2.0, -0.5], [-0.5, 0.5]], [[0.7, 0.0], [0.0, 1.5]]])
    comp = rng.choice(3, n, p=[0.4, 0.35, 0.25])
    chol = np.linalg.cholesky(covs)
    z = rng.normal(size=(n, 2))
    return means[comp] + np.einsum("nij,nj->ni", chol[comp], z)


def mixture_3d(n: int, rng: np.random.Generator) -> np.ndarray:
    """Three 3-D components (one correlated), shape (n, 3)."""
    return np.vstack([
        rng.multivariate_normal([0, 0, 0], np.eye(3), n // 2),
        rng.multivariate_normal([4, 4, 0], [[1, .5, 0], [.5, 1, 0], [0, 0, 2]], n // 3),
        rng.multivariate_normal([-3, 5, 2], np.eye(3) * .5, n - n // 2 - n // 3),
    ])
