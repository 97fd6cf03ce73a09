"""A keyed emstreamd (``input.key``): throughput, state-store checkpoints, memory per key, a
key column that explodes, and SIGKILLs during checkpoints.

Usage::

    python benchmarks/bench_keys.py [--lines 10000000] [--quick] [--part NAME ...]

Parts (all by default):

throughput
    ``--lines`` lines of ``key value`` (1-D, K=3, the shipped config, no per-point output)
    over 10^3 and over 10^4 keys, against the same values without keys through the
    single-series daemon; rates over the time after start-up (the daemon's summary), and the
    ratios (targets: >= 0.5 over 10^3 keys, >= 0.3 over 10^4).
checkpoint
    A store of 10^5 keys, each holding a real fitted key's document: the commit after 100
    keys changed, against writing every key (target: <= 5%).
memory
    Peak RSS of the daemon for 10^4 and 10^5 keys (a few rows each; keys.max_active 10^4), and
    RSS per key: flat if the per-key cost does not grow.
explode
    10^6 distinct keys, one row each (keys.max_known 10^5): rows of keys past the limit are
    rejected and counted, no crash, peak RSS reported.
kills
    SIGKILLs 0-0.8 s after a checkpoint began writing (one of all 5,000 keys takes about 1 s),
    until 100 of them came before that checkpoint's commit was done (its completion line not
    yet logged), and 20 at random moments, of back-fills of 5,000 keys that checkpoint after
    every block they read:
    after each, the store must load and its models agree with its position (every key's
    points plus its waiting rows = the rows of that key before the position).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import print_machine  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DAEMON = [sys.executable, "-m", "emstreamd", "--config", str(ROOT / "config.yaml"),
          "--no-output", "--set", "status.every_seconds=0", "--log-level", "WARNING"]


def write_keyed(path: Path, n: int, n_keys: int, seed: int = 0, keyed: bool = True) -> None:
    """``n`` lines of ``key value`` (or ``value`` alone), keys round-robin in random order."""
    rng = np.random.default_rng(seed)
    with open(path, "w") as handle:
        for start in range(0, n, 1_000_000):
            size = min(1_000_000, n - start)
            labels = rng.choice(3, size, p=[0.2, 0.5, 0.3])
            values = np.array([-4.0, 0.0, 5.0])[labels] + rng.normal(size=size)
            if keyed:
                keys = rng.integers(0, n_keys, size=size)
                handle.write("".join(f"k{k} {v:.6f}\n" for k, v in zip(keys, values)))
            else:
                handle.write("".join(f"{v:.6f}\n" for v in values))


def run(path: Path, *extra: str, state: str | None = None) -> tuple[float, int, str]:
    """Seconds after start-up (the daemon's summary), peak RSS (KiB) and stderr."""
    own = state is None
    state = state or tempfile.mkdtemp(dir=path.parent)
    with open(Path(state + ".err"), "wb") as err:
        process = subprocess.Popen([*DAEMON, "--input", str(path), "--checkpoint", state,
                                    *extra], stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
    text = Path(state + ".err").read_text()
    if own:  # (its store and log were left in /tmp, 50 MB a run)
        shutil.rmtree(state, ignore_errors=True)
        Path(state + ".err").unlink()
    if status != 0:
        raise SystemExit(f"emstreamd failed:\n{text[-2000:]}")
    steady = float(re.search(r"lines in ([0-9.]+) s after start-up", text)[1])
    return steady, usage.ru_maxrss, text


def part_throughput(lines: int, folder: Path) -> None:
    plain = folder / "plain.txt"
    write_keyed(plain, lines, 1, keyed=False)
    single, _, _ = run(plain)
    print(f"single series: {lines:,} lines in {single:.2f} s after start-up "
          f"({lines / single:,.0f} points/s)")
    for n_keys, target in ((1000, 0.5), (10_000, 0.3)):
        path = folder / f"keyed{n_keys}.txt"
        write_keyed(path, lines, n_keys)
        seconds, rss, _ = run(path, "--set", "input.key=0")
        print(f"{n_keys:>6,} keys ({lines // n_keys:,} rows each): {seconds:.2f} s "
              f"({lines / seconds:,.0f} points/s), ratio to single {single / seconds:.3f} "
              f"(target >= {target}), peak RSS {rss / 1024:.0f} MiB")


def part_checkpoint(folder: Path, n_keys: int = 100_000, changed: int = 100) -> None:
    from emstream.store import KeyStore

    sample = folder / "sample.txt"
    write_keyed(sample, 3000, 1)
    state = str(folder / "sample")
    run(sample, "--set", "input.key=0", state=state)
    store = KeyStore(Path(state) / "keys.sqlite")
    document = store.get("k0")
    store.close()
    print(f"a key's document: {len(document):,} bytes (a fitted 1-D model, K=3, its score's "
          "window of 1,000 surprises included)")
    path = folder / "big.sqlite"
    big = KeyStore(path, writer=True)
    started = time.perf_counter()
    for i in range(n_keys):
        big.put(f"k{i}", document, points=3000)
    big.commit()
    every = time.perf_counter() - started
    times = []
    for round_ in range(5):
        started = time.perf_counter()
        for i in range(changed):
            big.put(f"k{(round_ * 7919 + i * 997) % n_keys}", document, points=3001)
        big.set_meta("daemon", {"round": round_})
        big.commit()
        times.append(time.perf_counter() - started)
    big.close()
    some = float(np.median(times))
    print(f"store of {n_keys:,} keys ({path.stat().st_size / 2**20:.0f} MiB): writing every key "
          f"{every:.2f} s; a checkpoint of {changed} changed keys {some * 1000:.1f} ms "
          f"(median of 5); ratio {some / every:.4f} (target <= 0.05)")


def part_memory(folder: Path) -> None:
    for n_keys in (10_000, 100_000):
        path = folder / f"mem{n_keys}.txt"
        write_keyed(path, 3 * n_keys, n_keys, seed=n_keys)
        seconds, rss, _ = run(path, "--set", "input.key=0",
                              "--set", f"keys.max_known={2 * n_keys}")
        print(f"{n_keys:>7,} keys, {3 * n_keys:,} rows: peak RSS {rss / 1024:.0f} MiB, "
              f"{rss * 1024 / n_keys:,.0f} bytes per key; {seconds:.1f} s")


def part_explode(folder: Path, n_keys: int = 1_000_000) -> None:
    path = folder / "explode.txt"
    with open(path, "w") as handle:
        handle.write("".join(f"u{i} 1.5\n" for i in range(n_keys)))
    seconds, rss, text = run(path, "--set", "input.key=0")
    rejected = re.search(r"rejected: ([^;]*);", text)[1]
    print(f"{n_keys:,} distinct keys: {seconds:.1f} s, rejected: {rejected}; peak RSS "
          f"{rss / 1024:.0f} MiB")


def _consistent(state: Path, data: Path) -> tuple[int, int]:
    """Load the store; check each key's rows (learned + waiting) against the position."""
    from emstream import checkpoint
    from emstream.store import KeyStore

    if not (state / "keys.sqlite").exists():
        return 0, 0  # killed before it made its store
    store = KeyStore(state / "keys.sqlite")
    try:
        meta = store.meta("daemon")
        if meta is None:
            return 0, 0
        with open(data, "rb") as handle:
            head = handle.read(meta["input"]["offset"])
        expected = {}
        for line in head.splitlines():
            key = line.split()[0].decode()
            expected[key] = expected.get(key, 0) + 1
        keys = store.keys()
        for key in keys:
            loaded = checkpoint.loads(store.get(key))
            held = loaded.meta["counters"]["rows"] + len(loaded.meta["pending"]["lines"])
            if held != expected.get(key, 0):
                raise SystemExit(f"key {key}: {held} rows in the store, {expected.get(key)} "
                                 f"before the position")
        assert sum(expected.values()) == meta["counters"]["rows"] + sum(
            len(checkpoint.loads(store.get(k)).meta["pending"]["lines"]) for k in keys)
        return len(keys), meta["input"]["offset"]
    finally:
        store.close()


def part_kills(folder: Path, inside_target: int = 100, random_target: int = 20) -> None:
    data = folder / "kills.txt"
    # 5,000 keys of at most 99 rows: no key fills its first mini-batch, so every block read
    # changes every key and a run spends most of its time committing them.
    rng = np.random.default_rng(7)
    keys = np.repeat(np.arange(5000), 99)
    rng.shuffle(keys)
    with open(data, "w") as handle:
        handle.write("".join(f"k{k} {v:.4f}\n" for k, v in zip(keys, rng.normal(size=keys.size))))
    command = [*DAEMON, "--input", str(data), "--set", "input.key=0", "--set",
               "checkpoint.every_points=1", "--set", "keys.checkpoint_share=1"]
    state = folder / "kills"
    _, _, log = run(data, "--set", "input.key=0", "--set", "checkpoint.every_points=1",
                    "--set", "keys.checkpoint_share=1", "--log-level", "INFO",
                    state=str(folder / "whole"))
    committing = sum(float(s) for s in re.findall(r"keys written to \S+ in ([0-9.]+) s", log))
    steady = float(re.search(r"lines in ([0-9.]+) s after start-up", log)[1])
    print(f"an uninterrupted run: {steady:.1f} s after start-up, {committing:.1f} s of it "
          f"({committing / steady:.0%}) inside checkpoints")
    done = cycles = checked = inside = confirmed = 0
    while confirmed < inside_target or done - inside < random_target:
        # Kills while a checkpoint is being written (after its "writing N keys" line, within
        # the time a checkpoint takes), and others at random moments, alternately.  A kill
        # counts as inside a checkpoint only if the checkpoint's completion line ("N of M keys
        # written to ...", logged after its commit) had not come.
        during = confirmed < inside_target and (done % 2 == 1 or done - inside >= random_target)
        level = ["--log-level", "DEBUG"] if during else []
        process = subprocess.Popen([*command, *level, "--checkpoint", str(state)],
                                   stderr=subprocess.PIPE if during else subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, text=True)
        deadline = time.monotonic() + float(rng.uniform(0.8, 3.5))
        killed = False
        if during:
            for line in process.stderr:
                if "DEBUG checkpoint (" in line and "writing" in line:
                    time.sleep(float(rng.uniform(0, 0.8)))
                    killed = process.poll() is None
                    break
        else:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                killed = True
        if killed:
            process.send_signal(signal.SIGKILL)
        # (What the line iterator had read ahead is in its buffer: read on through it.)
        rest = process.stderr.read() if during else ""
        process.communicate()
        if not killed:
            cycles += 1  # the input is done: start again from an empty store
            _consistent(state, data)
            subprocess.run(["rm", "-rf", str(state)], check=True)
            continue
        done += 1
        inside += during
        confirmed += during and "keys written to" not in rest
        _consistent(state, data)
        checked += 1
    print(f"{done} SIGKILLs ({inside} of them 0-0.8 s after a checkpoint began writing, "
          f"{confirmed} of those before its commit was done, the others at random moments) over "
          f"{cycles} completed passes of the input: after each, the store loaded and every key's "
          f"rows (learned + waiting) matched its rows before the stored position ({checked} "
          "checks)")


def main() -> None:
    print_machine()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=10_000_000)
    parser.add_argument("--quick", action="store_true", help="1,000,000 lines")
    parser.add_argument("--part", nargs="*", default=["throughput", "checkpoint", "memory",
                                                      "explode", "kills"])
    args = parser.parse_args()
    lines = 1_000_000 if args.quick else args.lines
    with tempfile.TemporaryDirectory() as name:  # (inputs of 10^7 lines: removed after)
        folder = Path(name)
        for part in args.part:
            print(f"--- {part}", flush=True)
            if part == "throughput":
                part_throughput(lines, folder)
            elif part == "checkpoint":
                part_checkpoint(folder)
            elif part == "memory":
                part_memory(folder)
            elif part == "explode":
                part_explode(folder)
            elif part == "kills":
                part_kills(folder)
            sys.stdout.flush()


if __name__ == "__main__":
    main()
