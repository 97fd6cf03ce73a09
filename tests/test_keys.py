"""Many series in one daemon (input.key): each key learns exactly as if it ran alone, through
eviction and SIGKILLs; new keys past the hard limit are rejected; the state store is read by
``emstream inspect`` and ``emstream diff``."""

import copy
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from emstream import checkpoint
from emstream.cli import main as emstream_main
from emstream.store import KeyStore

from .conftest import STARTED, watchdog_pings, without_root_override

ROOT = Path(__file__).resolve().parent.parent
DAEMON = [sys.executable, "-m", "emstreamd", "--config", str(ROOT / "config.yaml"),
          "--log-level", "ERROR"]
STEP = 300  # seconds between a key's points
COUNTED = ("rows", "batches", "anomalies", "gated", "refits", "alarms")


def _keyed_table(path: Path, n_keys: int, rows_per_key, rng, round_robin=False) -> dict:
    """A CSV ``host,timestamp,value`` of ``n_keys`` seasonal series, interleaved (at random,
    each key's rows in order; or round-robin).  Returns each key's lines as written, without
    the key column."""
    counts = rng.integers(*rows_per_key, size=n_keys) if not round_robin else \
        np.full(n_keys, rows_per_key[0])
    own = {}
    arrivals = []
    for k, n in enumerate(counts):
        t = np.arange(n)
        level = rng.uniform(-50, 50)
        values = level + np.sin(2 * np.pi * t / 288) + 0.1 * rng.normal(size=n)
        values[rng.integers(n - n // 4, n, size=2)] += rng.choice([-6, 6])  # a spike or two
        key = f"host-{k:03d}"
        own[key] = [f"{1.7e9 + STEP * i:.0f},{v:.4f}\n" for i, v in enumerate(values)]
        when = t + (k / n_keys if round_robin else rng.uniform(0, 1, size=n) * 3)
        arrivals += [(w, key, i) for i, w in enumerate(np.maximum.accumulate(when))]
    arrivals.sort()
    with open(path, "w") as handle:
        handle.write("host,timestamp,value\n")
        handle.writelines(f"{key},{own[key][i]}" for _, key, i in arrivals)
    return own


def _run(args, **kwargs):
    done = subprocess.run([*DAEMON, *args], capture_output=True, timeout=600, **kwargs)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return done


def _content(document: bytes) -> str:
    """A checkpoint document without its time of writing."""
    content = json.loads(document)["content"]
    del content["written_at"]
    return json.dumps(content, sort_keys=True)


def _store(path) -> dict:
    store = KeyStore(path)
    try:
        return {key: _content(store.get(key)) for key in store.keys()}, store.meta("daemon")
    finally:
        store.close()


def _lines_by_key(text: str) -> dict:
    """Per key, its per-point lines without the line number and key (a key run alone numbers
    its own lines)."""
    out = defaultdict(list)
    for line in text.splitlines():
        _, key, rest = line.split(",", 2)
        out[key].append(rest)
    return out


def test_a_keyed_table_s_time_column_is_found_in_each_key_s_order(tmp_path):
    """A time column not named as one (``created_at``) was taken for a time only if its first
    lines ran in order: several keys interleaved, or a few short keys first in a table sorted
    by key, step back at every change of key, and every key lost its times and temporal
    features, unlike each run alone, without a word (found by an attack helper).  Dates
    written day first are told by a key's own steps too."""
    import datetime

    from emstream.table import find_layout

    for form, day_first in (("%Y-%m-%d %H:%M:%S", None), ("%d/%m/%Y %H:%M", True)):
        rows = ["host,created_at,latency"]
        for i in range(40):
            for host, day in (("a", 1), ("b", 3)):
                when = datetime.datetime(2024, 5, day) + datetime.timedelta(hours=i)
                rows.append(f"{host},{when:{form}},{i % 7}.5")
        layout = find_layout(("\n".join(rows) + "\n").encode(), key="host")
        assert (layout.time_field, layout.day_first) == (1, day_first), form
    # Without evidence in the keys' own runs (one row per key, one value per key) the column
    # as a whole decides, as before: epoch times in order stay the time; a host's constant
    # first_seen and install dates in no order are no time (found by a second review).
    rng = np.random.default_rng(0)
    epochs = "".join(f"{1704067200000 + 1000 * i},h{i},{rng.random():.3f}\n" for i in range(60))
    assert find_layout(("time_ms,host,load\n" + epochs).encode(), key="host").time_field == 0
    seen = {k: f"2023-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d}" for k in range(10)}
    rows = "".join(f"h{k},{seen[k]},{rng.random():.3f}\n" for _ in range(40) for k in range(10))
    assert find_layout(("host,first_seen,load\n" + rows).encode(), key="host").time_field \
        is None
    rows = "".join(f"h{i},2023-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d},1\n"
                   for i in range(60))
    assert find_layout(("host,installed,load\n" + rows).encode(), key="host").time_field is None
    rng = np.random.default_rng(2)
    table = ["host,created_at,latency"]
    for host, n in (("new-0", 12), ("new-1", 12), ("web-0", 150)):  # sorted by host
        for i in range(n):
            when = datetime.datetime(2024, 5, 1) + datetime.timedelta(hours=i)
            table.append(f"{host},{when:%Y-%m-%d %H:%M:%S},{5 * np.sin(i / 4) + rng.normal():.3f}")
    (tmp_path / "all.csv").write_text("\n".join(table) + "\n")
    (tmp_path / "web.csv").write_text("\n".join([table[0], *table[25:]]) + "\n")
    together, alone = (_run(["--input", str(tmp_path / name), "--checkpoint",
                             str(tmp_path / name) + ".state", "--set", "input.key=host"])
                       for name in ("all.csv", "web.csv"))
    assert _lines_by_key(together.stdout.decode())["web-0"] == \
        _lines_by_key(alone.stdout.decode())["web-0"]
    assert "2024-05-07 05:00:00" in _lines_by_key(together.stdout.decode())["web-0"][-1]


@pytest.mark.slow
def test_every_key_of_an_interleaved_backfill_learns_exactly_as_if_it_ran_alone(tmp_path):
    rng = np.random.default_rng(0)
    # (Some keys end in their warm-up, with a partial last mini-batch; others are flagged.)
    own = _keyed_table(tmp_path / "fleet.csv", 50, (150, 2600), rng)
    done = _run(["--input", str(tmp_path / "fleet.csv"), "--checkpoint", str(tmp_path / "k"),
                 "--set", "input.key=host"])
    keyed, meta = _store(tmp_path / "k" / "keys.sqlite")
    lines = _lines_by_key(done.stdout.decode())
    assert sorted(keyed) == sorted(own)
    total = dict.fromkeys(COUNTED, 0)
    solos = []
    for key, rows in own.items():
        (tmp_path / f"{key}.csv").write_text("timestamp,value\n" + "".join(rows))
        solos.append(subprocess.Popen(
            [*DAEMON, "--input", str(tmp_path / f"{key}.csv"), "--checkpoint",
             str(tmp_path / key)], stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    for key, process in zip(own, solos):
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, err.decode()
        alone = checkpoint.load(tmp_path / key)
        mine = json.loads(keyed[key])
        # The model, array for array (JSON holds every float exactly), and the monitor's,
        # scorer's and features' state.
        assert json.dumps(checkpoint.to_dict(alone.model), sort_keys=True) == \
            json.dumps(mine["model"], sort_keys=True), key
        for part in ("monitor", "series", "history"):
            assert json.dumps(alone.meta[part], sort_keys=True) == \
                json.dumps(mine["meta"][part], sort_keys=True), (key, part)
        counters = {name: alone.meta["counters"][name] for name in COUNTED}
        assert counters == {name: mine["meta"]["counters"][name] for name in COUNTED}, key
        assert mine["meta"]["pending"]["lines"] == []  # the last partial batch was learned
        # Its per-point lines, but for the line number.
        assert [line.split(",", 1)[1] for line in out.decode().splitlines()] == lines[key], key
        for name in COUNTED:
            total[name] += counters[name]
    assert {name: meta["counters"][name] for name in COUNTED} == total
    assert total["anomalies"] > 0  # the spikes: the comparison covers flags, not only quiet rows
    assert meta["counters"]["lines"] == 1 + sum(len(rows) for rows in own.values())


def test_evicting_idle_keys_changes_nothing(tmp_path):
    rng = np.random.default_rng(1)
    _keyed_table(tmp_path / "fleet.csv", 200, (130, 131), rng, round_robin=True)
    outputs, stores = [], []
    for active in (10, 1000):
        done = _run(["--input", str(tmp_path / "fleet.csv"), "--checkpoint",
                     str(tmp_path / f"a{active}"), "--set", "input.key=host", "--set",
                     f"keys.max_active={active}", "--set", "checkpoint.every_points=5000"])
        outputs.append(done.stdout)
        stores.append(_store(tmp_path / f"a{active}" / "keys.sqlite"))
    assert outputs[0] == outputs[1]  # the same lines in the same order
    assert stores[0][0] == stores[1][0]
    assert len(stores[0][0]) == 200
    assert stores[0][1]["counters"] == stores[1][1]["counters"]


def test_scheduled_refits_come_alike_whether_keys_are_evicted_or_not(tmp_path):
    """The rows towards a key's next scheduled refit (refit.every_points) were not saved: they
    started again from 0 each time the key was read back from the store, so a key evicted
    more often than every_points of its rows was never refitted (0 refits against 2; found
    by an attack helper).  A restart lost them the same way."""
    rng = np.random.default_rng(3)
    _keyed_table(tmp_path / "two.csv", 2, (60_000, 60_001), rng)  # 4 blocks of 1 MiB
    refits = []
    for active in (1, 1000):
        _run(["--input", str(tmp_path / "two.csv"), "--checkpoint", str(tmp_path / f"a{active}"),
              "--set", "input.key=host", "--set", f"keys.max_active={active}", "--set",
              "refit.every_points=25000", "--no-output"])
        keyed, meta = _store(tmp_path / f"a{active}" / "keys.sqlite")
        refits.append(({key: json.loads(doc)["meta"]["counters"]["refits"]
                        for key, doc in keyed.items()}, meta["counters"]["refits"]))
    assert refits[0] == refits[1] and refits[1][1] >= 4, refits


@pytest.mark.slow
def test_sigkills_during_a_keyed_backfill_apply_every_row_once_per_key(tmp_path):
    rng = np.random.default_rng(2)
    _keyed_table(tmp_path / "fleet.csv", 60, (150, 500), rng)
    settings = ["--input", str(tmp_path / "fleet.csv"), "--set", "input.key=host", "--set",
                "keys.max_active=7", "--set", "checkpoint.every_points=700"]
    started = time.monotonic()
    reference = _run([*settings, "--checkpoint", str(tmp_path / "ref")])
    whole = time.monotonic() - started
    expected = {line.split(",")[0]: line for line in reference.stdout.decode().splitlines()}
    seen, kills = {}, 0
    out = tmp_path / "out.csv"
    while True:
        with open(out, "wb") as handle:
            process = subprocess.Popen([*DAEMON, *settings, "--checkpoint", str(tmp_path / "s")],
                                       stdout=handle, stderr=subprocess.DEVNULL)
            try:
                process.wait(timeout=0.8 + float(rng.uniform(0, whole / 4)) if kills < 20
                             else 600)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
                process.wait()
                kills += 1
        for line in out.read_text().splitlines():
            if line.count(",") == 7:  # a killed writer may leave a partial last line
                assert line == expected[line.split(",")[0]], (kills, line)
                seen[line.split(",")[0]] = line
        if process.returncode == 0:
            if kills >= 20:
                break
            # (The machine ran fast for a while, and a run finished before the 20th kill: the
            # back-fill again from scratch, so the kills always come.)
            shutil.rmtree(tmp_path / "s")
            seen = {}
    assert seen.keys() == expected.keys()
    (resumed, meta), (whole_run, whole_meta) = (_store(tmp_path / d / "keys.sqlite")
                                                for d in ("s", "ref"))
    assert resumed == whole_run  # every key's model, state and counters
    assert meta["counters"] == whole_meta["counters"]
    assert meta["input"]["offset"] == whole_meta["input"]["offset"]


def test_rows_of_new_keys_past_the_hard_limit_are_rejected_and_counted(tmp_path):
    lines = ["host,value\n"]
    lines += [f"k{i % 30},{i % 7}.5\n" for i in range(3000)]  # 30 keys, 100 rows each
    lines += [f"new{i},1.0\n" for i in range(5000)]  # 5,000 distinct keys, one row each
    lines += ["k\x811,2.0\n"]  # neither UTF-8 nor cp1252 (0x81 is undefined there)
    (tmp_path / "keys.csv").write_bytes("".join(lines).encode("utf-8").replace(
        "k\x811".encode(), b"k\x811"))
    done = _run(["--input", str(tmp_path / "keys.csv"), "--checkpoint", str(tmp_path / "k"),
                 "--set", "input.key=host", "--set", "keys.max_known=40", "--set",
                 "keys.max_active=5"])
    keyed, meta = _store(tmp_path / "k" / "keys.sqlite")
    assert len(keyed) == 40
    assert meta["counters"]["rejected"] == {"too many keys": 4990, "bad key": 1}
    assert meta["counters"]["rows"] == 3010
    assert "rejected: 1 bad key, 4990 too many keys" in done.stderr.decode()


def test_a_key_saved_in_the_windows_code_page_is_the_same_key_as_in_utf8(tmp_path):
    """Excel saves CSV in cp1252: a host named Zürich there is the key Zürich (not a "bad key"
    whose every row is rejected), and the same key written in UTF-8 elsewhere in the stream
    is the same series, its rows in the order they came."""
    rng = np.random.default_rng(5)
    values = np.r_[rng.normal(0, 1, 300), rng.normal(6, 1, 300)][rng.permutation(600)]
    names = ["Zürich" if i % 3 else "Köln" for i in range(600)]
    encodings = ["utf-8" if i % 5 == 0 else "cp1252" for i in range(600)]
    body = b"".join(f"{n},{v:.4f}\n".encode(e) for n, v, e in zip(names, values, encodings))
    (tmp_path / "excel.csv").write_bytes(b"host,value\n" + body)
    alone = "".join(f"{n},{v:.4f}\n" for n, v in zip(names, values) if n == "Zürich")
    (tmp_path / "alone.csv").write_text("host,value\n" + alone, encoding="utf-8")
    runs = {}
    for name in ("excel", "alone"):
        done = _run(["--input", str(tmp_path / f"{name}.csv"), "--checkpoint",
                     str(tmp_path / name), "--set", "input.key=host"])
        runs[name] = (_lines_by_key(done.stdout.decode("utf-8")),
                      *_store(tmp_path / name / "keys.sqlite"))
    (lines, models, meta), (lines_alone, models_alone, _) = runs["excel"], runs["alone"]
    assert meta["counters"]["rejected"] == {}
    assert sorted(models) == ["Köln", "Zürich"]
    assert meta["counters"]["rows"] == 600
    assert len(lines["Zürich"]) == 300  # (no line for a key's first mini-batch of 100)
    assert lines["Zürich"] == lines_alone["Zürich"]  # every score, in the order the rows came
    assert models["Zürich"] == models_alone["Zürich"]
    # emstream timeline --key draws the key however its rows were written.
    from emstream.timeline import read_series

    assert len(read_series(tmp_path / "excel.csv", "Zürich", "host")["value"]) == 400
    # A key typed in a cp1252 terminal (argv bytes that are not UTF-8) names the same key;
    # it was "not a readable state store", blaming the store.
    store = str(tmp_path / "excel" / "keys.sqlite")
    typed = os.fsdecode("Zürich".encode("cp1252"))
    assert emstream_main(["inspect", store, "--key", typed, "--json"]) == 0
    assert emstream_main(["diff", store, "--key", typed, "--key-b", "Köln"]) == 0


def test_per_point_lines_carry_the_key_in_csv_and_jsonl(tmp_path):
    rows = "".join(f"{k},{i},{float(i % 5)}\n" for i in range(400) for k in ("a b", 'x"y'))
    (tmp_path / "t.txt").write_text("name,time,v\n" + rows)
    csv = _run(["--input", str(tmp_path / "t.txt"), "--checkpoint", str(tmp_path / "c"),
                "--set", "input.key=name", "--set", "output.header=true"]).stdout.decode()
    head = csv.splitlines()[0]
    assert head == "line,key,time,label,probability,surprise,score,anomaly"
    assert {line.split(",")[1] for line in csv.splitlines()[1:]} == {"a b", '"x""y"'}
    jsonl = _run(["--input", str(tmp_path / "t.txt"), "--checkpoint", str(tmp_path / "j"),
                  "--set", "input.key=0", "--set", "output.format=jsonl"]).stdout.decode()
    records = [json.loads(line) for line in jsonl.splitlines()]
    assert {r["key"] for r in records} == {"a b", 'x"y'} and len(records) == 600


def test_inspect_and_diff_read_a_state_store(tmp_path, capsys):
    rng = np.random.default_rng(3)
    own = _keyed_table(tmp_path / "fleet.csv", 3, (300, 400), rng)
    _run(["--input", str(tmp_path / "fleet.csv"), "--checkpoint", str(tmp_path / "k"),
          "--set", "input.key=host"])
    store = str(tmp_path / "k" / "keys.sqlite")
    assert emstream_main(["inspect", store, "--keys", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert [row["key"] for row in listing["keys"]] == ["host-000", "host-001", "host-002"]
    assert all(row["points"] >= 300 for row in listing["keys"])
    # The keys with the most points first, the first two only (a fleet's busiest keys).
    assert emstream_main(["inspect", store, "--keys", "--sort", "points", "--top", "2",
                          "--json"]) == 0
    top = json.loads(capsys.readouterr().out)
    most = sorted(listing["keys"], key=lambda row: (-row["points"], row["key"]))[:2]
    assert top["keys"] == most and top["n_keys"] == 3
    assert emstream_main(["inspect", store, "--keys", "--sort", "points", "--top", "2"]) == 0
    assert "3 keys, the first 2 by points" in capsys.readouterr().out
    with pytest.raises(SystemExit) as usage:  # (it blamed the store: "not a readable ...")
        emstream_main(["inspect", store, "--keys", "--top", "9" * 20])
    assert usage.value.code == 2 and "--top: wants a whole number" in capsys.readouterr().err
    assert emstream_main(["inspect", store, "--key", "host-001", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    document = KeyStore(store).get("host-001")
    (tmp_path / "one.json").write_bytes(document)  # the key's document is a checkpoint file
    assert emstream_main(["inspect", str(tmp_path / "one.json"), "--json"]) == 0
    alone = json.loads(capsys.readouterr().out)
    assert {k: v for k, v in shown.items() if k != "file"} == \
        {k: v for k, v in alone.items() if k != "file"}
    assert emstream_main(["inspect", store, "--key", "host-001"]) == 0
    assert "key         'host-001'" in capsys.readouterr().out
    # The key as the daemon reads it, surrounding spaces left out (it said "no key").
    assert emstream_main(["inspect", store, "--key", " host-001\t"]) == 0
    assert "key         'host-001'" in capsys.readouterr().out
    with pytest.raises(SystemExit) as usage:  # (--key was ignored: every key was listed)
        emstream_main(["inspect", store, "--keys", "--key", "host-001"])
    assert usage.value.code == 2 and "not allowed with" in capsys.readouterr().err
    assert emstream_main(["diff", store, "--key", "host-000", "--key-b", "host-000",
                          "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["divergence"] == pytest.approx(0, abs=1e-12)
    assert emstream_main(["diff", store, store, "--key", "host-000", "--key-b", "host-002",
                          "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["divergence"] > 1
    assert emstream_main(["inspect", store]) == 1
    assert "name one with --key" in capsys.readouterr().err
    assert emstream_main(["inspect", store, "--key", "nobody"]) == 1
    assert "no key 'nobody'" in capsys.readouterr().err
    # The daemon's --checkpoint directory names its store too (it said "no checkpoint-*.json").
    directory = str(tmp_path / "k")
    assert emstream_main(["inspect", directory, "--keys", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == listing
    assert emstream_main(["inspect", directory, "--key", "host-001", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == shown
    assert emstream_main(["diff", directory, "--key", "host-000", "--key-b", "host-002",
                          "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["divergence"] > 1
    # A single series against one key: --key names the key of the side that is a store.
    (tmp_path / "one.txt").write_text("timestamp,value\n" + "".join(own["host-001"]))
    _run(["--input", str(tmp_path / "one.txt"), "--checkpoint", str(tmp_path / "solo")])
    for sides in ([str(tmp_path / "solo"), directory], [directory, str(tmp_path / "solo")]):
        assert emstream_main(["diff", *sides, "--key", "host-001", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["divergence"] == pytest.approx(0, abs=1e-12)


def test_the_timeline_command_draws_one_key_of_a_keyed_stream(tmp_path):
    pytest.importorskip("matplotlib")
    from emstream.timeline import read_scores, read_series

    own = _keyed_table(tmp_path / "fleet.csv", 3, (300, 400), np.random.default_rng(4))
    scores = tmp_path / "scores.csv"
    _run(["--input", str(tmp_path / "fleet.csv"), "--checkpoint", str(tmp_path / "k"),
          "--set", "input.key=host", "--set", f"output.path={scores}"])
    series = read_series(tmp_path / "fleet.csv", "host-001", "host")
    assert series["value"].tolist() == [float(line.split(",")[1]) for line in own["host-001"]]
    scored = read_scores(scores, "host-001")
    assert len(scored["line"]) == len(own["host-001"]) - 100  # after the first mini-batch
    assert set(scored["line"].tolist()) <= set(series["line"].tolist())
    picture = tmp_path / "t.png"
    assert emstream_main(["timeline", str(tmp_path / "fleet.csv"), str(scores), "-o",
                          str(picture), "--key", "host-001", "--key-column", "host"]) == 0
    assert picture.read_bytes()[:4] == b"\x89PNG"
    # Without --key it says why instead of drawing an empty picture (as it did).
    assert emstream_main(["timeline", str(tmp_path / "fleet.csv"), str(scores), "-o",
                          str(picture)]) == 1


def test_json_lines_are_keyed_by_a_field(tmp_path):
    lines = []
    for i in range(300):
        lines += [json.dumps({"host": "web-1", "ms": 10 + i % 7}),
                  json.dumps({"host": 2, "ms": 50 + i % 5, "other": "x"})]
    lines += ['{"ms": 1}', '{"host": null, "ms": 1}', '{"host": "web-1", "ms": "slow"}']
    rows = ("\n".join(lines) + "\n").encode()
    done = _run(["--set", "input.key=host", "--set", "input.format=jsonl", "--set",
                 "input.fields=[ms]", "--checkpoint", str(tmp_path / "j")], input=rows)
    keyed, meta = _store(tmp_path / "j" / "keys.sqlite")
    assert sorted(keyed) == ["2", "web-1"]
    # (a null key is there but no key: "bad key"; a record without one, "missing field")
    assert meta["counters"]["rejected"] == {"missing field": 1, "bad key": 1,
                                            "non-numeric": 1}
    assert {line.split(",")[1] for line in done.stdout.decode().splitlines()} == {"2", "web-1"}
    alone = _run(["--set", "input.format=jsonl", "--set", "input.fields=[ms]", "--checkpoint",
                  str(tmp_path / "alone")], input=("\n".join(lines[1:600:2]) + "\n").encode())
    assert json.loads(keyed["2"])["model"] == checkpoint.to_dict(
        checkpoint.load(tmp_path / "alone").model)
    assert [line.split(",", 2)[2] for line in done.stdout.decode().splitlines()
            if line.split(",")[1] == "2"] == \
        [line.split(",", 1)[1] for line in alone.stdout.decode().splitlines()]


@pytest.mark.parametrize("setting, message", [
    ("input.key=true", "input.key must be null, a column name or 0-based index"),
    ("keys.max_active=0", "keys.max_active must be an integer >= 1"),
    ("keys.max_known=-1", "keys.max_known must be an integer >= 1"),
])
def test_bad_key_settings_stop_the_daemon_with_one_line(tmp_path, setting, message):
    done = subprocess.run([*DAEMON, "--set", setting, "--checkpoint", str(tmp_path / "k")],
                          input=b"", capture_output=True, timeout=60)
    assert done.returncode == 78
    assert message in done.stderr.decode()


def test_a_key_column_the_header_does_not_have_stops_the_daemon(tmp_path):
    (tmp_path / "t.csv").write_text("host,value\na,1\n")
    done = subprocess.run([*DAEMON, "--input", str(tmp_path / "t.csv"), "--checkpoint",
                           str(tmp_path / "k"), "--set", "input.key=hostname"],
                          capture_output=True, timeout=60)
    assert done.returncode == 78 and "Traceback" not in done.stderr.decode()
    assert "input.key 'hostname' is not a column" in done.stderr.decode()


def test_metrics_label_only_the_keys_with_the_most_recent_anomalies():
    pytest.importorskip("prometheus_client")
    from prometheus_client import generate_latest

    from emstreamd.metrics import TOP_KEYS, Metrics

    metrics = Metrics(0)
    try:
        metrics.set_keys(5000, 100, {f"host-{i}": i for i in range(1000)})
        text = generate_latest(metrics.registry).decode()
        labelled = [line for line in text.splitlines()
                    if line.startswith("emstreamd_key_recent_anomalies{")]
        assert len(labelled) == TOP_KEYS
        assert 'emstreamd_key_recent_anomalies{key="host-999"} 999.0' in labelled
        assert "emstreamd_keys 5000.0" in text and "emstreamd_keys_in_memory 100.0" in text
        metrics.set_keys(5000, 100, {"quiet": 1})  # the next checkpoint's: the old ones go
        text = generate_latest(metrics.registry).decode()
        assert text.count("emstreamd_key_recent_anomalies{") == 1
    finally:
        metrics.close()


def test_a_damaged_store_or_key_stops_the_daemon_with_one_line_naming_it(tmp_path):
    import sqlite3

    (tmp_path / "k").mkdir()
    (tmp_path / "k" / "keys.sqlite").write_bytes(b"SQLite format 3\x00" + b"\x07" * 5000)
    done = subprocess.run([*DAEMON, "--set", "input.key=0", "--checkpoint", str(tmp_path / "k")],
                          input=b"a 1\n", capture_output=True, timeout=60)
    # No usable checkpoint (65, which systemd does not restart on), not an unwritable path
    # (73): it said 73, "cannot open the state store".
    assert done.returncode == 65
    assert "not a readable state store" in done.stderr.decode()
    rows = "".join(f"{k} {i % 9}\n" for i in range(300) for k in "ab").encode()
    _run(["--set", "input.key=0", "--checkpoint", str(tmp_path / "s")], input=rows)
    with sqlite3.connect(tmp_path / "s" / "keys.sqlite") as db:  # someone edits a model
        db.execute("UPDATE keys SET document = replace(document, '\"n_seen\"', '\"n_Seen\"') "
                   "WHERE key = 'b'")
    done = subprocess.run([*DAEMON, "--set", "input.key=0", "--checkpoint", str(tmp_path / "s")],
                          input=b"b 1\n", capture_output=True, timeout=60)
    assert done.returncode not in (0, -signal.SIGSEGV)
    assert "key 'b'" in done.stderr.decode() and "checksum mismatch" in done.stderr.decode()
    assert "Traceback" not in done.stderr.decode()
    assert emstream_main(["inspect", str(tmp_path / "s" / "keys.sqlite"), "--key", "a"]) == 0
    with sqlite3.connect(tmp_path / "s" / "keys.sqlite") as db:  # or the position
        meta = json.loads(db.execute("SELECT value FROM meta").fetchone()[0])
        meta["input"]["next_line"] = -5
        db.execute("UPDATE meta SET value = ?", (json.dumps(meta),))
    done = subprocess.run([*DAEMON, "--set", "input.key=0", "--checkpoint", str(tmp_path / "s")],
                          input=b"a 1\n", capture_output=True, timeout=60)
    assert done.returncode not in (0, 1) and "next_line" in done.stderr.decode()
    assert "Traceback" not in done.stderr.decode()
    # NaN, Infinity and 1e400 are no JSON: `inspect --keys --json` printed them as they came
    # (no JSON reader takes them back), the text "at byte nan" (found by an attack helper).
    for forged in ('"offset": NaN', '"offset": Infinity', '"offset": 1e400',
                   '"offset": 1' + "0" * 400):
        meta["input"]["next_line"], meta["input"]["offset"] = 2, 0
        with sqlite3.connect(tmp_path / "s" / "keys.sqlite") as db:
            db.execute("UPDATE meta SET value = ?",
                       (json.dumps(meta).replace('"offset": 0', forged),))
        listing = subprocess.run([sys.executable, "-m", "emstream", "inspect",
                                  str(tmp_path / "s"), "--keys", "--json"],
                                 capture_output=True, timeout=60)
        assert listing.returncode != 0 and not listing.stdout, forged
        assert "not a readable state store" in listing.stderr.decode(), forged
        assert "Traceback" not in listing.stderr.decode()


def test_the_array_parser_of_clean_blocks_agrees_with_the_line_parser(monkeypatch):
    """Tables (keyed or not) are parsed in array passes when clean; every block it takes must
    come out as parse_table's line-by-line parse gives it (rows, lines, keys, times); blocks
    with any malformed line go to parse_table."""
    import emstream.table as table

    rng = np.random.default_rng(4)
    fast_blocks = unkeyed_blocks = 0
    stamp_forms = ["2014-07-01 00:{:02d}:00", "2014-07-01T00:{:02d}:00.250",
                   "2014-07-01 00:{:02d}", "2014-07-01 00:{:02d}:00Z"]
    for _ in range(600):
        keyed = rng.random() < 0.7
        stamp_form = stamp_forms[int(rng.integers(0, len(stamp_forms)))]
        sep = [b",", b" ", b"\t", b";"][int(rng.integers(0, 4))]
        comma = sep != b" "  # (one separating character; tab and semicolon need a header)
        timed, n_values = rng.random() < 0.5, int(rng.integers(1, 4))
        key_at = int(rng.integers(0, n_values + 1))
        quoted = comma and rng.random() < 0.1
        decimal_comma = rng.random() < 0.5
        lines = []
        for i in range(int(rng.integers(1, 40))):
            values = [f"{x:.{int(rng.integers(1, 8))}g}".encode()
                      for x in rng.normal(size=n_values) * 10.0 ** rng.integers(-3, 5)]
            if sep == b";" and decimal_comma:  # where the comma is the decimal mark
                values = [v.replace(b".", b",") for v in values]
            key = [b"web-1", b"db 2" if comma else b"db2", "été".encode(), b"x"][
                int(rng.integers(0, 4))]
            fields = [*values[:key_at], key, *values[key_at:]] if keyed else list(values)
            if timed:
                stamp = stamp_form.format(i % 60)
                if rng.random() < 0.05:  # another shape, or no date at all
                    stamp = ["2014-07-01 0:05:00", "2014-13-01 00:05:00", "2014-07-01"][
                        int(rng.integers(0, 3))]
                fields.insert(0 if key_at or not keyed else 1, stamp.encode()
                              if comma else f"{1.4e9 + i:.0f}".encode())
            line = sep.join(fields)
            if not comma and rng.random() < 0.2:
                line = b"  " + line.replace(b" ", b"\t", 1) + b" "
            if comma and rng.random() < 0.2:
                line = line.replace(sep, b" " + sep + b" ", 1) + b"\r"
            if quoted and rng.random() < 0.5:  # a quoted key: such blocks are parse_table's
                line = line.replace(key, b'"' + key + b'"', 1)
            if rng.random() < 0.03:
                line = [b"", b"garbage", line + sep + b"1", line.replace(values[0], b"nan", 1)][
                    int(rng.integers(0, 4))]
            lines.append(line)
        key_field = key_at + (1 if timed and key_at >= 1 else 0) if keyed else None
        names = [f"v{j}".encode() for j in range(len(fields))]
        if keyed:
            names[key_field] = b"host"
        header = sep.join(names) + b"\n" if sep in (b"\t", b";") else b""
        data = b"\n".join(lines) + (b"\n" if rng.random() < 0.8 else b"")
        try:
            layout = table.find_layout(
                header + data, key=key_field,
                timestamp=(1 if keyed and key_at == 0 else 0) if timed else None)
        except table.LayoutError:
            continue
        if layout is None:  # (plain numbers, or a first time that is none: not a table)
            continue
        if header:  # (the block after the header: the header line is not in it)
            layout = replace(layout, header_line=None)
        if layout.comma != comma or (comma and layout.sep != sep):
            assert layout.n_fields == 1 and not keyed  # (one column: no separator to see)
            continue
        first = int(rng.integers(1, 1000))
        fast = table._parse_clean_block(data, layout, first, 4096)
        if fast is None:
            continue
        fast_blocks += 1
        unkeyed_blocks += not keyed
        with monkeypatch.context() as patch:
            patch.setattr(table, "_parse_clean_block", lambda *args: None)
            slow = table.parse_table(data, layout, first_line=first)
        assert np.array_equal(fast.rows, slow.rows) and np.array_equal(fast.lines, slow.lines)
        if keyed:
            assert fast.keys.tolist() == slow.keys.tolist()
        else:
            assert fast.keys is None and slow.keys is None
        if timed:
            assert np.array_equal(fast.times, slow.times)
            assert fast.time_text.tolist() == slow.time_text.tolist()
        assert len(slow.rejects) == 0 and fast.n_lines == slow.n_lines
    assert fast_blocks > 150 and unkeyed_blocks > 50


def test_rows_waiting_in_mini_batches_still_move_the_checkpoint_forward(tmp_path):
    """Keys that never fill a mini-batch learn nothing, yet their waiting rows are state: the
    scheduled checkpoints must come (old code: none, so a crash re-read the whole stream)."""
    rng = np.random.default_rng(6)
    keys = np.repeat(np.arange(170), 90)  # 90 rows a key: no mini-batch fills
    rng.shuffle(keys)
    # (Long keys: the 15,300 lines span four of the daemon's 1 MiB reads.)
    assert _scheduled_checkpoints(tmp_path, keys, rng, "host" * 60, every=1000) >= 3


def _scheduled_checkpoints(tmp_path, keys, rng, prefix: str, every: int) -> int:
    """Back-fill one row per entry of ``keys`` (named ``prefix-K``) with
    ``checkpoint.every_points: every`` and no pacing; the scheduled checkpoints it logged
    (every row checked to be in the store at the end)."""
    (tmp_path / "k.txt").write_text("".join(f"{prefix}-{k} {v:.3f}\n" for k, v in
                                            zip(keys, rng.normal(size=keys.size))))
    done = subprocess.run([*DAEMON[:-2], "--log-level", "INFO", "--input",
                           str(tmp_path / "k.txt"), "--checkpoint", str(tmp_path / "k"),
                           "--set", "input.key=0", "--set", f"checkpoint.every_points={every}",
                           "--set", "keys.checkpoint_share=1", "--no-output"],
                          capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert _store(tmp_path / "k" / "keys.sqlite")[1]["counters"]["rows"] == keys.size
    return done.stderr.decode().count("checkpoint (scheduled)")


def test_a_first_line_with_no_value_column_is_a_layout_error_not_a_crash():
    from emstream.table import LayoutError, find_layout, parse_table

    with pytest.raises(LayoutError, match="none is a value column"):
        find_layout(b"garbage\nweb-1 0.5\n", key=0)  # (old code: a layout parse_table crashed on)
    layout = find_layout(b"web-1 0.5\n", key=0)
    assert parse_table(b"web-1 0.5\nweb-2 x\n", layout).rows.tolist() == [[0.5]]


def test_checkpoint_every_points_counts_each_keyed_row_once(tmp_path):
    """``checkpoint.every_points`` counts the rows read.  (Old code counted a keyed row when it
    arrived and again when its mini-batch was learned: checkpoints came twice as often.)"""
    rng = np.random.default_rng(8)
    keys = rng.integers(100, 200, size=30_000)
    # (~100-byte lines: the daemon's 1 MiB reads cut the file into three blocks.)
    scheduled = _scheduled_checkpoints(tmp_path, keys, rng, "host" * 22, every=15_000)
    assert 1 <= scheduled <= 30_000 // 15_000, scheduled


def _stop_when_logged(process, text: str) -> str:
    """SIGTERM ``process`` as soon as its stderr (text) shows ``text``; what it logs after.
    It must exit 0."""
    for line in process.stderr:
        if text in line:
            process.send_signal(signal.SIGTERM)
            break
    rest = process.stderr.read()
    assert process.wait(timeout=120) == 0, rest[-2000:]
    return rest


@pytest.mark.slow
def test_a_stop_during_the_end_of_input_flush_is_prompt_and_loses_nothing(tmp_path):
    """At the end of a back-fill every key learns its partial mini-batch: 600 keys take
    seconds (thousands, minutes).  A SIGTERM then stops the daemon after the key it is on
    (old code: only once every key was done); the rest wait in the store, and the next run
    learns them: the same store as an uninterrupted run."""
    rng = np.random.default_rng(9)
    keys = np.repeat(np.arange(600), 30)  # 30 rows a key: every key waits for the flush
    rng.shuffle(keys)
    path = tmp_path / "k.txt"
    path.write_text("".join(f"k{k} {v:.3f}\n" for k, v in zip(keys, rng.normal(size=keys.size))))
    args = ["--input", str(path), "--set", "input.key=0", "--no-output"]
    _run([*args, "--checkpoint", str(tmp_path / "whole")])
    stopped = subprocess.Popen([*DAEMON[:-2], "--log-level", "INFO", *args, "--checkpoint",
                                str(tmp_path / "stopped")], stderr=subprocess.PIPE, text=True)
    rest = _stop_when_logged(stopped, "end of input: learning the last rows of 600 keys")
    assert "checkpoint (shutdown)" in rest
    meta = _store(tmp_path / "stopped" / "keys.sqlite")[1]
    assert meta["counters"]["batches"] < 600, meta["counters"]  # stopped part-way
    assert meta["counters"]["lines"] == keys.size  # every line read is kept
    _run([*args, "--checkpoint", str(tmp_path / "stopped")])
    assert _store(tmp_path / "stopped" / "keys.sqlite")[0] == _store(
        tmp_path / "whole" / "keys.sqlite")[0]
    resumed_meta, whole_meta = (_store(tmp_path / name / "keys.sqlite")[1]
                                for name in ("stopped", "whole"))
    assert resumed_meta["counters"] == whole_meta["counters"]


@pytest.mark.parametrize("header", [b"host,value\n", b"host value\n"])
def test_empty_keys_and_keys_with_control_characters_are_bad_keys(header):
    """A row whose key is empty or holds a control character is rejected as "bad key" (old
    code: an empty key made a series named "", and a key ending in NUL bytes was silently
    merged with the key without them)."""
    from emstream.parse import parse_json_lines
    from emstream.table import find_layout, parse_table

    comma = b"," in header
    sep = b"," if comma else b" "
    layout = find_layout(header + b"web-1" + sep + b"1\n", key="host")
    keys = [b"web-1", b"k\x00", b"\x00k", b"k\x1b[0m", b"a\x7fb", b"web-2",
            "\u009b31mRED".encode(), "a\u0085b".encode(), "5°C".encode()]  # (C1: CSI, NEL)
    if comma:
        keys += [b"", b" \t ", b" web-3 "]
    block = header + b"".join(k + sep + str(i).encode() + b"\n" for i, k in enumerate(keys))
    for first in (1, 2):  # the header in the block (line parser) or not (array parser first)
        parsed = parse_table(block if first == 1 else block[len(header):], layout,
                             first_line=first)
        good = [b"web-1", b"web-2", "5°C".encode()] + ([b"web-3"] if comma else [])
        assert parsed.keys.tolist() == good
        assert sorted(r.reason for r in parsed.rejects) == ["bad key"] * (len(keys) - len(good))
    lines = b"".join(json.dumps({"k": k, "v": 1}).encode() + b"\n" for k in
                     ["web-1", "", "  ", "a\x00", "a\x00\x00", "\x1b", "\u009b", "b"])
    parsed = parse_json_lines(lines, ["v"], key="k")
    assert parsed.keys.tolist() == [b"web-1", b"b"]
    assert [r.reason for r in parsed.rejects] == ["bad key"] * 6


def test_a_checkpoint_of_the_other_kind_stops_the_daemon_instead_of_starting_afresh(tmp_path):
    """Adding or dropping input.key on an existing checkpoint.path must not start a new model
    beside the old state (old code: the input was learned again from its first line, the old
    state ignored)."""
    (tmp_path / "t.csv").write_text("host,value\n" + "".join(f"h{i % 2},{i}\n"
                                                             for i in range(300)))
    args = ["--input", str(tmp_path / "t.csv"), "--no-output"]
    _run([*args, "--checkpoint", str(tmp_path / "keyed"), "--set", "input.key=host"])
    _run([*args, "--checkpoint", str(tmp_path / "single"), "--set", "input.columns=[value]"])
    for state, setting, said in (("keyed", "input.columns=[value]", "input.key is not set"),
                                 ("single", "input.key=host", "single series' checkpoints")):
        before = sorted(p.name for p in (tmp_path / state).iterdir())
        done = subprocess.run([*DAEMON, *args, "--checkpoint", str(tmp_path / state), "--set",
                               setting], capture_output=True, timeout=60)
        assert done.returncode == 65 and said in done.stderr.decode(), done.stderr.decode()
        assert sorted(p.name for p in (tmp_path / state).iterdir()) == before
    for setting, path, said in (("input.key=host", "s.json", "ending in .json"),
                                ("input.columns=[value]", "s.sqlite", "ending in .sqlite")):
        done = subprocess.run([*DAEMON, *args, "--checkpoint", str(tmp_path / path), "--set",
                               setting], capture_output=True, timeout=60)
        assert done.returncode == 78 and said in done.stderr.decode(), done.stderr.decode()


def test_a_stop_during_a_refit_of_every_key_is_prompt(tmp_path):
    """SIGUSR2 refits every key in memory, which takes seconds for hundreds of keys (minutes
    for thousands); a SIGTERM meanwhile stops it after the key at hand (old code: only once
    every key was refitted)."""
    rng = np.random.default_rng(10)
    keys = np.repeat(np.arange(400), 100)  # one full first mini-batch a key
    rng.shuffle(keys)
    process = subprocess.Popen([*DAEMON[:-2], "--log-level", "INFO", "--checkpoint",
                                str(tmp_path / "k"), "--set", "input.key=0", "--no-output",
                                "--set", "status.every_seconds=0.5"],
                               stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdin.write("".join(f"k{k} {v:.3f}\n" for k, v in
                                zip(keys, rng.normal(size=keys.size))))
    process.stdin.flush()
    for line in process.stderr:
        if ", 40000 points," in line:  # a status line: every row learned
            break
    process.send_signal(signal.SIGUSR2)
    rest = _stop_when_logged(process, "refit (SIGUSR2)")
    assert "refit (SIGUSR2) stopped after" in rest
    assert rest.count("refit (SIGUSR2) on the last") < 399


def _refit_every_key(tmp_path, keys: int, rows: int, seed: int, *settings) -> str:
    """Rows of ``keys`` keys on stdin; once every row is learned, SIGUSR2, a refit line per
    key awaited, and the input ended: what the daemon said after the refits."""
    rng = np.random.default_rng(seed)
    process = subprocess.Popen([*DAEMON[:-2], "--log-level", "INFO", "--checkpoint",
                                str(tmp_path / "k"), "--set", "input.key=0", "--no-output",
                                "--set", "status.every_seconds=0.5", *settings],
                               stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdin.write("".join(f"k{i % keys} {v + 3 * (i % keys):.4f}\n"
                                for i, v in enumerate(rng.normal(size=rows))))
    process.stdin.flush()
    for line in process.stderr:
        if f", {rows} points," in line:  # a status line: every row learned
            break
    process.send_signal(signal.SIGUSR2)
    refits = 0
    for line in process.stderr:
        refits += "refit (SIGUSR2)" in line
        if refits == keys:
            break
    process.stdin.close()  # the end of the input: the daemon checkpoints and stops
    rest = process.stderr.read()
    assert process.wait(timeout=120) == 0, rest[-2000:]
    return rest


def test_sigusr2_refits_are_counted_by_the_daemon_too(tmp_path):
    """Every key's SIGUSR2 refit counts in the daemon's summary and stored counters, as a
    single series' does (old code: each key counted its own, the daemon said "refits: 0")."""
    rest = _refit_every_key(tmp_path, 5, 6000, 12)
    assert "refits: 5;" in rest.split("lifetime:")[1]
    assert _store(tmp_path / "k" / "keys.sqlite")[1]["counters"]["refits"] == 5


def test_sigusr2_refits_the_keys_in_the_store_too(tmp_path):
    """With more keys than ``keys.max_active``, SIGUSR2 refitted only the keys in memory (5
    of 40 here, which ones depending on the order rows came in) and said nothing of the
    rest; and a key read back from the store had no rows to refit on (its refit window is
    not stored): "skipped: the model is still warming up"."""
    rest = _refit_every_key(tmp_path, 40, 80_000, 13, "--set", "keys.max_active=5")
    assert "refits: 40;" in rest.split("lifetime:")[1], rest.split("lifetime:")[1][:400]
    stored = KeyStore(tmp_path / "k" / "keys.sqlite")
    try:
        refitted = [json.loads(stored.get(key))["content"]["meta"]["counters"]["refits"]
                    for key in stored.keys()]
    finally:
        stored.close()
    assert refitted == [1] * 40


def test_sigusr2_refits_keys_read_back_from_the_store_during_their_warm_up(tmp_path):
    """A key evicted during its warm-up came back with an empty refit window (its rows wait in
    the learner's warm-up buffer, not in its recent rows): "skipped: its window holds 0 rows",
    where a key kept in memory was refitted on its 600 points (found by an attack helper)."""
    rest = _refit_every_key(tmp_path, 20, 12_000, 14, "--set", "keys.max_active=5")
    assert "refits: 20;" in rest.split("lifetime:")[1], rest.split("lifetime:")[1][:400]
    assert "window holds 0 rows" not in rest


def test_the_end_of_input_flush_commits_as_it_goes(tmp_path):
    """Thousands of keys learning their last rows take minutes: checkpoint.every_points counts
    the rows they learn, so the flush is committed as it goes and a kill does not undo all of
    it.  (An intermediate version counted only rows read: no checkpoint during the flush.)"""
    rng = np.random.default_rng(11)
    keys = np.repeat(np.arange(300), 30)  # 9,000 rows, all learned by the flush
    rng.shuffle(keys)
    (tmp_path / "k.txt").write_text("".join(f"k{k} {v:.3f}\n" for k, v in
                                            zip(keys, rng.normal(size=keys.size))))
    done = subprocess.run([*DAEMON[:-2], "--log-level", "INFO", "--input",
                           str(tmp_path / "k.txt"), "--checkpoint", str(tmp_path / "k"),
                           "--set", "input.key=0", "--set", "checkpoint.every_points=2000",
                           "--set", "keys.checkpoint_share=1", "--no-output"],
                          capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    flush = done.stderr.decode().split("end of input: learning the last rows")[1]
    assert flush.count("checkpoint (scheduled)") >= 3


@pytest.mark.parametrize("damage", [
    "UPDATE meta SET value = '\"x\"'",
    "UPDATE keys SET updated = 1e300 WHERE key = 'a'",
    "DROP TABLE meta",
    "UPDATE keys SET document = CAST(document AS BLOB) WHERE key = 'b'",
    "UPDATE keys SET document = replace(document, '\"format\"', '\"f\u00f6rmat\"') "
    "WHERE key = 'a'",
    "DROP TABLE keys; CREATE TABLE keys (k TEXT)",
    "INSERT INTO keys (key, document) VALUES (x'ff', 'x')",
    "UPDATE keys SET points = x'00' WHERE key = 'a'",
    "UPDATE meta SET value = json_set(value, '$.input', 'x') WHERE name = 'daemon'",
], ids=["meta-not-object", "updated-1e300", "no-meta", "blob", "non-ascii", "foreign-keys",
        "blob-key", "blob-points", "input-not-object"])
def test_inspect_and_diff_of_a_damaged_store_say_so_in_one_line(tmp_path, capsys, damage):
    """A state store edited by hand or by another program: inspect and diff answer (a listing
    with what is readable) or exit 1 with one line naming the file, never a traceback."""
    import shutil
    import sqlite3

    rows = "".join(f"{'ab'[i % 2]},{np.sin(i):.4f}\n" for i in range(400))
    (tmp_path / "k.csv").write_text("key,v\n" + rows)
    _run(["--input", str(tmp_path / "k.csv"), "--checkpoint", str(tmp_path / "st"),
          "--set", "input.key=key", "--no-output"])
    shutil.copytree(tmp_path / "st", tmp_path / "d")
    store = str(tmp_path / "d" / "keys.sqlite")
    db = sqlite3.connect(store)
    db.executescript(damage)
    db.close()
    for command in (["inspect", store, "--keys"], ["inspect", store, "--key", "a"],
                    ["inspect", store, "--key", "b", "--json"],
                    ["diff", store, "--key", "a", "--key-b", "b"]):
        code = emstream_main(command)
        err = capsys.readouterr().err
        assert code in (0, 1), (command, code)
        if code == 1:
            assert len(err.strip().splitlines()) == 1 and store in err, (command, err)
    # The daemon resumes it, or refuses it in one line (a BLOB key crashed it in a sort).
    done = subprocess.run([*DAEMON, "--input", str(tmp_path / "k.csv"), "--checkpoint",
                           str(tmp_path / "d"), "--set", "input.key=key", "--no-output"],
                          capture_output=True, timeout=120)
    err = done.stderr.decode()
    assert done.returncode in (0, 65) and "Traceback" not in err, err[-2000:]


def test_inspect_of_a_store_copied_before_its_first_commit_says_so(tmp_path, capsys):
    """A store copied while its tables were still in its -wal file alone: "no such table:
    keys", SQLite's words (found by an attack helper)."""
    db = sqlite3.connect(tmp_path / "keys.sqlite")
    db.execute("PRAGMA journal_mode=WAL")
    db.close()
    for args in (["--keys"], ["--key", "a"]):
        assert emstream_main(["inspect", str(tmp_path), *args]) == 1
        err = capsys.readouterr().err
        assert "an SQLite file with no tables: a state store copied before its daemon's " \
               "first commit" in err and "no such table" not in err
    # Another program's database, as the daemon says it (inspect said "no such table: keys")
    db = sqlite3.connect(tmp_path / "app.sqlite")
    db.execute("CREATE TABLE users (name TEXT)")
    db.commit()
    db.close()
    assert emstream_main(["inspect", str(tmp_path / "app.sqlite"), "--keys"]) == 1
    assert "an SQLite database that is not a state store (its tables: users)" in \
        capsys.readouterr().err


def test_emstream_fit_refuses_to_write_over_or_beside_a_state_store(tmp_path, capsys):
    """fit -o keys.sqlite replaced every key's model with one checkpoint; fit -o on the store's
    directory hid the store from inspect --keys."""
    (tmp_path / "k.csv").write_text("key,v\n" + "".join(f"{'ab'[i % 2]},{np.sin(i):.4f}\n"
                                                       for i in range(400)))
    _run(["--input", str(tmp_path / "k.csv"), "--checkpoint", str(tmp_path / "st"),
          "--set", "input.key=key", "--no-output"])
    (tmp_path / "x.txt").write_text("".join(f"{np.cos(i):.4f}\n" for i in range(200)))
    before = (tmp_path / "st" / "keys.sqlite").read_bytes()
    for output in ("st", "st/keys.sqlite"):
        assert emstream_main(["fit", str(tmp_path / "x.txt"), "-k", "2", "-o",
                              str(tmp_path / output)]) == 1
        assert "state store" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "st").iterdir() if p.suffix == ".json") == []
    assert (tmp_path / "st" / "keys.sqlite").read_bytes() == before
    assert emstream_main(["inspect", str(tmp_path / "st"), "--keys"]) == 0


def test_a_plotted_diff_of_two_keys_names_the_keys(tmp_path, monkeypatch):
    """diff STORE --key A --key-b B --plot drew a legend of "A STORE" and "B None"."""
    from emstream import plot

    (tmp_path / "k.csv").write_text("key,v\n" + "".join(f"{'ab'[i % 2]},{np.sin(i):.4f}\n"
                                                       for i in range(400)))
    _run(["--input", str(tmp_path / "k.csv"), "--checkpoint", str(tmp_path / "st"),
          "--set", "input.key=key", "--no-output"])
    drawn = []
    monkeypatch.setattr(plot, "plot_diff", lambda *args, **kwargs: drawn.append(kwargs))
    assert emstream_main(["diff", str(tmp_path / "st"), "--key", "a", "--key-b", "b", "--plot",
                          str(tmp_path / "d.png")]) == 0
    a, b = drawn[0]["labels"]
    assert a.startswith("A ") and a.endswith("key 'a'") and b.endswith("key 'b'")


def test_inspect_of_a_key_draws_that_key_s_rows_of_the_data_alone(tmp_path, monkeypatch,
                                                                   capsys):
    """inspect STORE --key a --plot P --data DATA drew every key's rows under key a's mixture,
    without a word (found by an attack helper): --key-column draws key a's rows alone, and
    without it the whole file is drawn, as a file of one key's rows needs (a default key
    column refused those: the review helper), and said so."""
    from emstream import plot

    (tmp_path / "k.csv").write_text("key,v\n" + "".join(
        f"{'ab'[i % 2]},{i % 2 * 50 + np.sin(i):.4f}\n" for i in range(2400)))
    _run(["--input", str(tmp_path / "k.csv"), "--checkpoint", str(tmp_path / "st"),
          "--set", "input.key=key", "--no-output"])
    drawn = []
    monkeypatch.setattr(plot, "plot_mixture", lambda model, target, data, **kw: drawn.append(data))
    inspect = ["inspect", str(tmp_path / "st"), "--key", "a", "--plot", str(tmp_path / "a.png"),
               "--data"]
    for key_column in ("0", "key"):
        assert emstream_main([*inspect, str(tmp_path / "k.csv"), "--key-column",
                              key_column]) == 0
        assert drawn[-1].shape == (1200, 1) and drawn[-1].max() < 2
    capsys.readouterr()
    assert emstream_main([*inspect, str(tmp_path / "k.csv")]) == 0
    assert drawn[-1].shape == (2400, 1)
    assert "drawn whole under key 'a''s mixture; --key-column C" in capsys.readouterr().err
    # A file of key a's values alone, with no key column
    (tmp_path / "a.csv").write_text("v\n" + "".join(f"{np.sin(i):.4f}\n" for i in range(99)))
    assert emstream_main([*inspect, str(tmp_path / "a.csv")]) == 0
    assert drawn[-1].shape == (99, 1)
    (tmp_path / "b.csv").write_text("key,v\nb,1\nb,2\n")
    assert emstream_main([*inspect, str(tmp_path / "b.csv"), "--key-column", "0"]) == 1
    assert "no numeric rows found for key 'a'" in capsys.readouterr().err


def test_an_anomaly_logged_in_a_keyed_stream_names_its_key(tmp_path):
    """The anomaly log line said which line but not which series; with --log-format json the
    key is a field of its own."""
    rng = np.random.default_rng(0)
    rows = [f"web-{i % 3},{v:.3f}" for i, v in enumerate(rng.normal(0, 1, 1200))]
    rows.append("web-2,1000")
    done = subprocess.run([*DAEMON[:-2], "--set", "input.key=0", "--checkpoint",
                           str(tmp_path / "st"), "--no-output", "--log-format", "json"],
                          input="\n".join(rows).encode() + b"\n", capture_output=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    logged = [json.loads(line) for line in done.stderr.decode().splitlines()
              if line.startswith("{")]
    alerts = [entry for entry in logged if entry["message"].startswith("anomaly")]
    spike = [entry for entry in alerts if "line 1201:" in entry["message"]]
    assert len(spike) == 1 and spike[0]["key"] == "web-2"
    assert "anomaly of key 'web-2' at line 1201" in spike[0]["message"]
    assert all(entry["message"].startswith(f"anomaly of key {entry['key']!r}")
               for entry in alerts)


def test_rows_refused_for_their_key_are_dead_letters_like_other_rejects(tmp_path):
    """Rows of a key past keys.max_known, or whose key is no text, go to input.dead_letter
    with their text, and their log lines name the file (they were counted and logged only,
    with neither)."""
    (tmp_path / "k.jsonl").write_text(
        '{"k":"a","v":1}\n{"k":"b","v":2}\n{"k":"c","v":3}\n{"k":"\\udc81","v":4}\n'
        '{"k":"","v":5}\n{"k":1.5,"v":6}\n{"v":7}\n{"k":"a","v":8}\n')
    done = _run(["--input", str(tmp_path / "k.jsonl"), "--checkpoint", str(tmp_path / "st"),
                 "--set", "input.key=k", "--set", "input.format=jsonl", "--set",
                 "input.fields=[v]", "--set", "keys.max_known=2", "--set",
                 f"input.dead_letter={tmp_path / 'dead'}", "--log-level", "WARNING"])
    letters = [json.loads(line) for line in (tmp_path / "dead").read_text().splitlines()]
    assert sorted((d["line"], d["reason"]) for d in letters) == [
        (3, "too many keys"), (4, "bad key"), (5, "bad key"), (6, "bad key"),
        (7, "missing field")]
    assert {d["line"]: d["text"] for d in letters}[3] == '{"k":"c","v":3}'
    assert "k.jsonl line 3) rejected (too many keys): '{\"k\":\"c\",\"v\":3}'" in \
        done.stderr.decode()
    _, meta = _store(tmp_path / "st" / "keys.sqlite")
    assert meta["counters"]["rows"] == 3 and meta["counters"]["rejected"] == {
        "too many keys": 1, "bad key": 3, "missing field": 1}
    (tmp_path / "k.csv").write_text("host,v\na,1\nb,2\nc,3\nd,4\na,5\n")
    _run(["--input", str(tmp_path / "k.csv"), "--checkpoint", str(tmp_path / "st2"),
          "--set", "input.key=host", "--set", "keys.max_known=2", "--set",
          f"input.dead_letter={tmp_path / 'dead2'}"])
    assert [json.loads(line)["text"] for line in
            (tmp_path / "dead2").read_text().splitlines()] == ["c,3", "d,4"]
    # The room goes to the keys that come first, whatever their names (alphabetical order
    # decided: zeta and yank came first, alpha was admitted).
    (tmp_path / "z.csv").write_text("host,v\n" + "zeta,1\nyank,2\nalpha,3\n" * 50)
    _run(["--input", str(tmp_path / "z.csv"), "--checkpoint", str(tmp_path / "st3"),
          "--set", "input.key=host", "--set", "keys.max_known=2"])
    keyed, meta = _store(tmp_path / "st3" / "keys.sqlite")
    assert sorted(keyed) == ["yank", "zeta"]
    assert meta["counters"]["rejected"] == {"too many keys": 50}


def test_a_long_key_or_time_is_refused_and_does_not_widen_its_block():
    """A block's keys (and times) are held as one array as wide as the longest: one 4,000-byte
    key made every line of its block cost 4 KB (1.9 GB of RSS for a file of short lines). A
    key longer than 256 bytes is a "bad key", a time field longer than 64 a "bad timestamp",
    and the block's arrays stay narrow: tables and JSON lines alike."""
    import io

    from emstream.table import parse_stream

    rows = [f"k{i % 20},{i % 10}" for i in range(5000)]
    rows[3] = "X" * 4000 + ",1"
    json_rows = [json.dumps({"host": f"k{i % 20}", "v": i % 10}) for i in range(5000)]
    json_rows[3] = json.dumps({"host": "X" * 4000, "v": 1})
    times = [f"2024-01-01 00:{i // 60 % 60:02d}:{i % 60:02d},{i % 10}" for i in range(5000)]
    times[3] = "2024-01-01" + " " * 3000 + "00:00:00,1"
    for text, key, columns, reason in (
            ("host,v\n" + "\n".join(rows), "host", None, "bad key"),
            ("\n".join(json_rows), "host", ["v"], "bad key"),
            ("timestamp,v\n" + "\n".join(times), None, None, "bad timestamp")):
        blocks = list(parse_stream(io.BytesIO((text + "\n").encode()), key=key,
                                   columns=columns))
        assert sum(b.rows.shape[0] for b in blocks) == 4999
        assert [r.reason for b in blocks for r in b.rejects] == [reason]
        for block in blocks:
            for array in (block.keys, getattr(block, "time_text", None)):
                assert array is None or array.dtype.itemsize <= 256


def test_a_store_named_by_its_sqlite_file_resumes_and_a_path_may_hold_uri_characters(tmp_path):
    """``checkpoint.path: .../keys.sqlite`` (the store's own file): the restart exited 78
    ("a regular file, not a directory"), so a crashed daemon never resumed.  A directory named
    ``state#1`` (or with ``?``, ``%``) was cut short as an SQLite URI: exit 73, and stray
    ``state``, ``state-wal`` files beside it."""
    rng = np.random.default_rng(3)
    table = tmp_path / "in.csv"
    _keyed_table(table, 3, (300, 301), rng)
    for store in (tmp_path / "keys.sqlite", tmp_path / "state#1?x%41"):
        args = ["--input", str(table), "--set", "input.key=host", "--no-output",
                "--checkpoint", str(store)]
        _run(args)
        second = _run(args)
        assert "0 points in" in second.stderr.decode()
        assert subprocess.run([*DAEMON, "--check-config", *args[2:4], "--checkpoint",
                               str(store)], capture_output=True).returncode == 0
    keys, meta = _store(tmp_path / "keys.sqlite")
    assert sorted(keys) == ["host-000", "host-001", "host-002"]
    assert _store(tmp_path / "state#1?x%41" / "keys.sqlite")[0] == keys
    names = {p.name for p in tmp_path.iterdir()} - {"keys.sqlite-wal", "keys.sqlite-shm"}
    assert names == {"in.csv", "keys.sqlite", "emstreamd.lock", "state#1?x%41"}


def test_a_store_path_that_is_not_utf8_works(tmp_path):
    """A checkpoint directory whose name is not UTF-8 (bytes a Linux file name may hold) gave
    a traceback (UnicodeEncodeError, exit 1) and left an empty store behind; ``emstream
    inspect`` said only "'utf-8' codec can't encode"."""
    rng = np.random.default_rng(3)
    table = tmp_path / "in.csv"
    _keyed_table(table, 3, (300, 301), rng)
    store = os.fsdecode(os.fsencode(str(tmp_path)) + b"/st\xff")
    args = ["--input", str(table), "--set", "input.key=host", "--no-output",
            "--checkpoint", store]
    first = _run(args)
    assert "0 points in" in _run(args).stderr.decode(), first.stderr.decode()
    keys, _ = _store(os.path.join(store, "keys.sqlite"))
    assert sorted(keys) == ["host-000", "host-001", "host-002"]
    listing = subprocess.run([sys.executable, "-m", "emstream", "inspect", store, "--keys"],
                             capture_output=True)
    assert listing.returncode == 0 and b"host-002" in listing.stdout, listing.stderr


def test_a_store_file_removed_under_a_running_daemon_stops_it(tmp_path):
    """keys.sqlite removed alone (its directory and lock left): the daemon committed every
    later checkpoint into the deleted file, said it wrote them, and exited 0; a restart
    learned everything again.  Now it stops (75), as when the directory is removed."""
    state = tmp_path / "state"
    process = subprocess.Popen([*DAEMON, "--set", "input.key=0", "--no-output",
                                "--checkpoint", str(state), "--log-level", "INFO"],
                               stdin=subprocess.PIPE, stderr=subprocess.PIPE)

    def wait_for(text: bytes) -> None:
        deadline, seen = time.monotonic() + 60, b""
        while text not in seen and time.monotonic() < deadline:
            seen += process.stderr.readline()
        assert text in seen, seen

    wait_for(b"ready")  # (signal handlers are in place)
    process.stdin.write("".join(f"k{i % 3},{i % 7}.5\n" for i in range(600)).encode())
    process.stdin.flush()
    process.send_signal(signal.SIGUSR1)
    wait_for(b"checkpoint (SIGUSR1)")
    (state / "keys.sqlite").unlink()
    process.send_signal(signal.SIGUSR1)
    try:
        assert process.wait(timeout=30) == 75
    finally:
        process.kill()
    assert b"removed or replaced" in process.stderr.read()


def test_a_store_named_two_ways_is_locked_once(tmp_path):
    """One daemon on ``state``, a second on ``state/keys.sqlite`` (the same store, as the
    README says): they took two different lock files, and the second only failed on SQLite's
    own lock (exit 73, "database is locked") instead of being told that a daemon holds it."""
    state = tmp_path / "state"
    alias = tmp_path / "alias.sqlite"  # (a link to the store: written through, the same store)
    alias.symlink_to(state / "keys.sqlite")
    for first_path, second_path in ((state, state / "keys.sqlite"),
                                    (state / "keys.sqlite", state), (state, alias)):
        first = subprocess.Popen([*DAEMON, "--set", "input.key=0", "--no-output",
                                  "--checkpoint", str(first_path), "--log-level", "INFO"],
                                 stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            seen = b""
            while b"ready" not in seen:
                line = first.stderr.readline()
                assert line, seen
                seen += line
            second = subprocess.run([*DAEMON, "--set", "input.key=0", "--no-output",
                                     "--checkpoint", str(second_path)],
                                    input=b"k1,1.5\n", capture_output=True, timeout=60)
            assert second.returncode == 75, second.stderr.decode()
            assert f"pid {first.pid}" in second.stderr.decode()
        finally:
            first.kill()
            first.wait()


def test_an_input_setting_changed_on_a_restart_is_named(tmp_path):
    """input.key changed between runs: the resumed layout keeps keying by the old column (as
    it must, the keys' models are the old column's), but said nothing."""
    table = tmp_path / "in.csv"
    table.write_text("host,dc,value\n" + "".join(f"h{i % 3},dc{i % 2},{i % 7}.5\n"
                                                 for i in range(600)))
    common = ["--input", str(table), "--no-output", "--checkpoint", str(tmp_path / "st"),
              "--log-level", "WARNING"]
    assert "input layout" not in _run([*common, "--set", "input.key=host"]).stderr.decode()
    # Named every time it differs from what the layout was decided with, and only then (the
    # store recorded each run's setting: warned once, then silent, then the right one warned).
    for key, warned in [("dc", True), ("dc", True), ("host", False), ("host", False)]:
        with open(table, "a") as handle:
            handle.write("h1,dc0,2.5\n")
        err = _run([*common, "--set", f"input.key={key}"]).stderr.decode()
        said = "keeps the input layout it began with; config.yaml differs in ['input.key']"
        assert (said in err) is warned, (key, err)
        assert ("differs in" in err) is warned
    keyed, _ = _store(tmp_path / "st" / "keys.sqlite")
    assert sorted(keyed) == ["h0", "h1", "h2"]


@pytest.mark.parametrize("how", [["--set", "input.format=jsonl", "--set", "input.fields=[v]"],
                                 ["--set", "input.columns=[v]"]], ids=["fields", "columns"])
def test_named_input_settings_unchanged_on_a_restart_are_not_warned_about(tmp_path, how):
    """Names in input.fields or input.columns compared as numbers: every restart said
    config.yaml differs though nothing changed."""
    source = tmp_path / ("in.jsonl" if "jsonl" in how[1] else "in.csv")
    rows = [json.dumps({"v": i % 7 + 0.5}) if "jsonl" in how[1] else f"{i % 7}.5"
            for i in range(300)]
    source.write_text(("" if "jsonl" in how[1] else "v\n") + "\n".join(rows) + "\n")
    common = ["--input", str(source), "--no-output", "--checkpoint", str(tmp_path / "st"),
              "--log-level", "WARNING", *how]
    for _ in range(2):
        done = _run(common)
        assert done.returncode == 0, done.stderr.decode()
        assert "differs in" not in done.stderr.decode()


def test_json_keys_lose_only_ascii_whitespace_as_table_keys_do():
    """A JSON key was stripped of Unicode spaces (str.strip()): "\\u00a0a" and "a" were one
    series in JSON lines and two in a CSV."""
    from emstream.parse import parse_json_lines

    lines = [json.dumps({"host": k, "v": 1}) for k in ("\u00a0a\u00a0", " a\t", "\u3000b", "b")]
    parsed = parse_json_lines(("\n".join(lines) + "\n").encode(), ["v"], key="host")
    assert [k.decode() for k in parsed.keys] == ["\u00a0a\u00a0", "a", "\u3000b", "b"]


def test_a_quoted_table_key_loses_only_ascii_whitespace_as_an_unquoted_one_does(tmp_path):
    """A quoted key went through str.strip(): '"\u00a0web"' became 'web' while the same key
    unquoted stayed '\u00a0web' (found by an attack helper)."""
    # (a quoted value keeps losing any whitespace at its edges, as quoted cells always have:
    # a spreadsheet's "5.5\u00a0")
    lines = ["host,value"] + [f'{key},"{i % 7}.5\u00a0"' for i in range(100)
                              for key in ("web", '"\u00a0web"', "\u00a0web", '" web\t"',
                                          '"web\u3000"')]
    data = tmp_path / "q.csv"
    data.write_text("\n".join(lines) + "\n")
    _run(["--input", str(data), "--set", "input.key=host", "--checkpoint", str(tmp_path / "s"),
          "--no-output"])
    keyed, meta = _store(tmp_path / "s" / "keys.sqlite")
    points = {key: json.loads(doc)["meta"]["counters"]["rows"] for key, doc in keyed.items()}
    assert points == {"web": 200, "\u00a0web": 200, "web\u3000": 100}
    assert meta["counters"]["rejected"] == {}


def test_the_key_length_limit_holds_for_the_key_as_stored():
    """256 bytes at most as stored (UTF-8): 200 "é" saved in cp1252 are 200 bytes as written
    and were stored as a 400-byte key, while the same key saved in UTF-8 was refused."""
    from emstreamd.router import groups

    keys = np.array([("é" * 200).encode("cp1252"), b"a", ("é" * 128).encode("cp1252")])
    assert [(key, rows.tolist()) for key, rows in groups(keys)] == [
        ("a", [1]), ("é" * 128, [2]), (None, [0])]


def _keyed_text(n_keys: int, rows: int) -> str:
    """``host,timestamp,value`` rows of ``n_keys`` keys in step (round-robin), 5 minutes apart."""
    return "host,timestamp,value\n" + "".join(
        f"h{k},{1.7e9 + STEP * i:.0f},{10 + np.sin(i / 40) + 0.01 * ((i * 7 + k) % 13):.4f}\n"
        for i in range(rows) for k in range(n_keys))


def test_the_watchdog_is_pinged_between_the_keys_of_a_long_block(tmp_path):
    """One block of a fleet's readings (every key's first mini-batch and warm-up) ran 40-75 s
    without a ping: under the shipped unit (WatchdogSec=60) systemd would kill the daemon
    there, and the restart read the same block again, for ever."""
    data = tmp_path / "fleet.csv"
    data.write_text(_keyed_text(350, 101))  # (under the 1 MiB a back-fill reads at once)
    assert data.stat().st_size < 1 << 20
    code, pings, err = watchdog_pings(["--input", str(data), "--set", "input.key=host",
                                       "--checkpoint", str(tmp_path / "s"), "--no-output"],
                                      tmp_path)
    assert code == 0, err
    assert pings[-1] - pings[0] > 1.5  # (the block took seconds: the test means something)
    assert np.diff(pings).max() < 1.0, np.diff(pings).max()


def _stopped(done) -> str:
    err = done.stderr.decode()
    assert "Traceback" not in err, err
    return err


def _keyed_back_fill(data, state) -> subprocess.CompletedProcess:
    """A keyed back-fill of ``data`` into ``state`` with no per-point output."""
    return subprocess.run([*DAEMON, "--input", str(data), "--set", "input.key=0", "--checkpoint",
                           str(state), "--no-output"], capture_output=True, timeout=120)


def _store_edited(tmp_path, sql: str) -> tuple:
    """A keyed daemon's store of two lines of key a, then ``sql`` run on it by hand, and a third
    line of key a appended to its input: (input, checkpoint directory)."""
    data, state = tmp_path / "k.txt", tmp_path / "s"
    data.write_text("a 1\na 2\n")
    _run(["--input", str(data), "--set", "input.key=0", "--checkpoint", str(state),
          "--no-output"])
    db = sqlite3.connect(state / "keys.sqlite")
    db.execute(sql)
    db.commit()
    db.close()
    with open(data, "a") as handle:
        handle.write("a 3\n")
    return data, state


def test_a_damaged_document_stops_the_daemon_in_one_line(tmp_path):
    data, state = _store_edited(
        tmp_path, "UPDATE keys SET document = CAST(x'7bff7d' AS TEXT) WHERE key = 'a'")
    done = _keyed_back_fill(data, state)
    assert done.returncode == 65
    assert "not a readable state store" in _stopped(done) and "key 'a'" in _stopped(done)


def test_read_only_sidecar_files_are_named_when_the_store_cannot_be_opened(tmp_path):
    """``emstream inspect`` of a read-only store in a writable folder leaves read-only -wal and
    -shm files beside it; made writable again, the store failed to open with "attempt to write
    a readonly database", which named a file that was writable (and the next start went
    through: SQLite replaced them while failing).  Now the start is refused before SQLite
    opens the store, naming them."""
    prefix = without_root_override()
    data = tmp_path / "k.txt"
    data.write_text("".join(f"{k} {v:.3f}\n" for k, v in zip("ab" * 300, range(600))))
    state = tmp_path / "s"
    _run(["--input", str(data), "--set", "input.key=0", "--checkpoint", str(state),
          "--no-output"])
    # (what a reader leaves when the store file was read-only: sidecars made read-only too)
    (state / "keys.sqlite-shm").unlink(missing_ok=True)
    (state / "keys.sqlite-shm").touch(mode=0o444)
    done = subprocess.run([*prefix, *DAEMON, "--input", str(data), "--set", "input.key=0",
                           "--checkpoint", str(state), "--no-output"], capture_output=True,
                          timeout=120)
    assert done.returncode == 73, done.stderr
    assert "keys.sqlite-shm" in _stopped(done) and "cannot be written" in _stopped(done)


def test_another_programs_sqlite_database_is_not_taken_over(tmp_path):
    """Given as checkpoint.path, an application's database got the store's tables beside its
    own and was switched to write-ahead logging for good."""
    app = tmp_path / "app.sqlite"
    db = sqlite3.connect(app)
    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    db.execute("INSERT INTO users (name) VALUES ('alice')")
    db.commit()
    db.close()
    before = app.read_bytes()
    data = tmp_path / "k.txt"
    data.write_text("a 1\na 2\n")
    done = _keyed_back_fill(data, app)
    assert done.returncode == 65
    assert "not a state store (its tables: users)" in _stopped(done)
    assert app.read_bytes() == before and not Path(str(app) + "-wal").exists()


def test_a_store_someone_ran_analyze_on_is_still_the_daemon_s(tmp_path):
    """SQLite's own statistics table (ANALYZE's sqlite_stat1) is no other program's."""
    data, state = _store_edited(tmp_path, "ANALYZE")
    _run(["--input", str(data), "--set", "input.key=0", "--checkpoint", str(state),
          "--no-output"])
    assert _store(state / "keys.sqlite")[1]["counters"]["rows"] == 3


def test_an_empty_store_file_is_said_to_start_afresh(tmp_path):
    data, state = tmp_path / "k.txt", tmp_path / "s"
    data.write_text("a 1\na 2\n")
    state.mkdir()
    (state / "keys.sqlite").write_bytes(b"")
    done = subprocess.run([*DAEMON[:-2], "--log-level", "WARNING", "--input", str(data),
                           "--set", "input.key=0", "--checkpoint", str(state), "--no-output"],
                          capture_output=True, timeout=120)
    assert done.returncode == 0
    assert "is empty (0 bytes): no key's state is kept; starting afresh" in _stopped(done)


def test_a_read_only_store_is_refused_before_any_input_is_read(tmp_path):
    data, state = tmp_path / "k.txt", tmp_path / "s"
    data.write_text("a 1\na 2\n")
    _run(["--input", str(data), "--set", "input.key=0", "--checkpoint", str(state),
          "--no-output"])
    prefix = without_root_override()
    store = state / "keys.sqlite"
    store.chmod(0o444)
    try:
        done = subprocess.run([*prefix, *DAEMON, "--input", str(data), "--set", "input.key=0",
                               "--checkpoint", str(state), "--no-output"], capture_output=True,
                              timeout=120)
    finally:
        store.chmod(0o644)
    assert done.returncode == 73
    assert "the state store is not writable" in _stopped(done)
    # A single series' .json checkpoint is replaced, not written: read-only, it is no reason
    # to stop (only its directory must take new files).
    single = tmp_path / "model.json"
    _run(["--input", str(data), "--checkpoint", str(single), "--no-output"])
    single.chmod(0o444)
    try:
        done = subprocess.run([*prefix, *DAEMON, "--input", str(data), "--checkpoint",
                               str(single), "--no-output"], capture_output=True, timeout=120)
    finally:
        single.chmod(0o644)
    assert done.returncode == 0, _stopped(done)


def test_keys_with_unicode_line_separators_or_bidi_controls_are_bad_keys(tmp_path):
    """Such a key split a per-point line for readers that split lines the Unicode way, or
    made a listing's row read in another order."""
    data = tmp_path / "u.jsonl"
    # (and the invisible ones: "\u200bweb" was listed as "web", a second series of that name)
    keys = ["x\u2028999", "\u202eabc", "ok", "a\u2066b", "\u200bok", "o\u2060k", "o\ufeffk"]
    data.write_text("".join(json.dumps({"k": k, "v": float(i)}) + "\n"
                            for i in range(30) for k in keys))
    done = _run(["--input", str(data), "--set", "input.key=k", "--set", "input.format=jsonl",
                 "--set", "input.fields=[v]", "--checkpoint", str(tmp_path / "s")])
    meta = _store(tmp_path / "s" / "keys.sqlite")[1]
    assert meta["counters"]["rejected"] == {"bad key": 180}
    assert all(line.split(",")[1] == "ok" for line in done.stdout.decode().splitlines())
    # A table's, by the line parser and by the array parser of clean blocks alike
    for clean in (False, True):
        table = tmp_path / f"t{clean}.csv"
        rows = [f"{k},{i}" for i in range(30) for k in ("ok", "\u200bok", "o\ufeffk")]
        table.write_text("k,v\n" + "\n".join(rows if clean else rows + ["ok,x"]) + "\n")
        _run(["--input", str(table), "--set", "input.key=k", "--no-output", "--checkpoint",
              str(tmp_path / f"t{clean}")])
        keyed, meta = _store(tmp_path / f"t{clean}" / "keys.sqlite")
        assert list(keyed) == ["ok"] and meta["counters"]["rejected"]["bad key"] == 60


def test_a_store_in_a_read_only_place_with_commits_in_its_log_is_refused_not_read_stale(
        tmp_path):
    """A snapshot of a store whose last commits are still in its write-ahead log (after a
    SIGKILL, possibly all of them), without the shared-memory file: opened as immutable,
    SQLite ignored the log and `inspect` showed an old state as the current one."""
    live = tmp_path / "live.sqlite"
    store = KeyStore(live, writer=True)
    store.put("a", b'{"x": 1}', points=1)
    store.set_meta("daemon", {"offset": 1})
    store.commit()
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    shutil.copy(live, snapshot / "keys.sqlite")
    shutil.copy(str(live) + "-wal", snapshot / "keys.sqlite-wal")  # (no -shm)
    store.close()
    assert (snapshot / "keys.sqlite-wal").stat().st_size > 0
    prefix = without_root_override()
    snapshot.chmod(0o555)
    try:
        done = subprocess.run([*prefix, sys.executable, "-m", "emstream", "inspect",
                               str(snapshot), "--keys"], capture_output=True, timeout=60)
    finally:
        snapshot.chmod(0o755)
    assert done.returncode != 0 and "Traceback" not in done.stderr.decode()
    assert "holds commits that cannot be read in a read-only place" in done.stderr.decode()


def test_a_hard_link_to_a_store_does_not_let_a_second_daemon_write_it(tmp_path):
    """The lock went by the path's name: a daemon on each of two hard links to one store
    wrote it together until it was malformed; and a second daemon refused only after SQLite
    had opened the store wrote a log of its own (the first one's tables were still in its
    log), which a later run on that name replayed over the first one's keys."""
    data, store, link = tmp_path / "k.txt", tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    data.write_text("a 1\na 2\nb 3\n")
    first = subprocess.Popen([*DAEMON[:-2], "--log-level", "INFO", "--follow", str(data),
                              "--set", "input.key=0", "--checkpoint", str(store),
                              "--no-output"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    STARTED.append(first)
    try:
        while b"ready: reading" not in first.stderr.readline():
            assert first.poll() is None
        os.link(store, link)
        done = subprocess.run([*DAEMON, "--input", str(data), "--set", "input.key=0",
                               "--checkpoint", str(link), "--no-output"],
                              capture_output=True, timeout=120)
        assert done.returncode == 75
        assert "another emstreamd is using the state store" in _stopped(done)
        assert not Path(str(link) + "-wal").exists()  # (nothing written under the link)
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=60) == 0
    with open(data, "a") as handle:
        handle.write("c 4\n")
    _run(["--input", str(data), "--set", "input.key=0", "--checkpoint", str(link),
          "--no-output"])  # (free once the first one stopped; it goes on from its position)
    keys, meta = _store(store)
    assert sorted(keys) == ["a", "b", "c"] and meta["counters"]["rows"] == 4

def _resumed_with_key_a_forged(tmp_path, **meta):
    """A keyed daemon resumed on a store (:func:`_store_edited`) whose key a's document has
    ``meta``'s fields instead (its checksum made good): its completed process."""
    data, state = _store_edited(tmp_path, "SELECT 1")
    db = sqlite3.connect(state / "keys.sqlite")
    loaded = checkpoint.loads(db.execute("SELECT document FROM keys WHERE key = 'a'")
                              .fetchone()[0].encode())
    forged = checkpoint.dumps(loaded.model, {**loaded.meta, **meta}, compact=True)
    waiting = len(meta["pending"]["lines"]) if "pending" in meta else 0
    db.execute("UPDATE keys SET document = ?, pending = ? WHERE key = 'a'",
               (forged.decode(), waiting))
    db.commit()
    db.close()
    return _keyed_back_fill(data, state)


def test_a_key_s_waiting_rows_that_no_daemon_wrote_stop_it_in_one_line(tmp_path):
    """A key's document whose partial mini-batch does not fit the input (an edited or crafted
    store) was read into it anyway: a row of two numbers became two rows of one, under one line
    number, and was learned."""
    done = _resumed_with_key_a_forged(tmp_path, pending={
        "rows": [[1.0, 2.0]], "lines": [3], "times": None, "stamps": None})
    assert done.returncode == 65
    assert "key 'a': meta.pending: waiting rows: 1 rows of finite numbers within ±1e+100 expected, 1 each" \
        in _stopped(done)


@pytest.mark.parametrize("field, value, said", [
    ("counters", "x", "meta.counters must be an object, got str"),
    ("counters", {"rows": 1e300}, "meta.counters.rows must be an integer in [0, 2**62]"),
    ("counters", {"anomalies": -5}, "meta.counters.anomalies must be an integer in [0, 2**62]"),
    ("history", "x", "meta.history must be a list of objects")])
def test_a_key_s_edited_counters_or_history_stop_the_daemon_in_one_line(tmp_path, field, value,
                                                                        said):
    """A key's document is checked as a single series' checkpoint is: edited counters or
    history (checksum made good) crashed the keyed daemon with a traceback (exit 1, restarted
    by systemd for ever), or every commit after it (a count of 1e300 that SQLite refused)."""
    done = _resumed_with_key_a_forged(tmp_path, **{field: value})
    assert done.returncode == 65
    assert f"key 'a': {said}" in _stopped(done)


@pytest.mark.parametrize("settled", ["false", "null", "0", "[]"])
def test_a_headerless_layout_forged_unsettled_stops_the_daemon_in_one_line(tmp_path, settled):
    """A layout without a header's names whose "settled" was edited to anything but true was
    settled against names it has not: a TypeError once the input was read (found by an attack
    helper)."""
    data, state = _store_edited(
        tmp_path, "UPDATE meta SET value = json_set(value, '$.layout.settled', "
                  f"json('{settled}')) WHERE name = 'daemon'")
    done = _keyed_back_fill(data, state)
    assert done.returncode == 65 and "Traceback" not in done.stderr.decode()
    assert "bad input layout" in _stopped(done)


def test_a_key_s_time_step_beyond_any_float_stops_the_daemon_in_one_line(tmp_path):
    """An episodes' time step of 10**400 (an integer JSON reads exactly) raised OverflowError,
    a traceback (found by an attack helper)."""
    data, state = _store_edited(tmp_path, "SELECT 1")
    db = sqlite3.connect(state / "keys.sqlite")
    loaded = checkpoint.loads(db.execute("SELECT document FROM keys WHERE key = 'a'")
                              .fetchone()[0].encode())
    db.close()
    series = copy.deepcopy(loaded.meta["series"])
    series["episodes"]["time_step"] = 10**400
    (tmp_path / "forged").mkdir()
    done = _resumed_with_key_a_forged(tmp_path / "forged", series=series)
    assert done.returncode == 65 and "Traceback" not in done.stderr.decode()
    assert "time_step 1000000000" in _stopped(done)


def test_a_store_whose_daemon_meta_is_nested_too_deeply_is_refused_in_one_line(tmp_path):
    """A hand-edited store's daemon meta nested 100,000 deep: `inspect --keys` and the
    daemon's resume stopped with a RecursionError traceback."""
    data, state = _store_edited(tmp_path, "UPDATE meta SET value = '" + "[" * 100_000
                                + "]" * 100_000 + "' WHERE name = 'daemon'")
    done = _keyed_back_fill(data, state)
    assert done.returncode == 65
    assert "meta 'daemon' is nested too deeply to read" in _stopped(done)
    shown = subprocess.run([sys.executable, "-m", "emstream", "inspect", str(state), "--keys"],
                           capture_output=True, timeout=120)
    assert shown.returncode == 1 and b"Traceback" not in shown.stderr
    assert b"nested too deeply" in shown.stderr


def test_inspect_refuses_an_infinite_count_rather_than_print_json_that_is_none(tmp_path):
    _, state = _store_edited(tmp_path, "UPDATE keys SET points = 9e999 WHERE key = 'a'")
    shown = subprocess.run([sys.executable, "-m", "emstream", "inspect", str(state), "--keys",
                            "--json"], capture_output=True, timeout=120)
    assert shown.returncode == 1 and b"Traceback" not in shown.stderr, shown.stderr
    assert b"not a finite number" in shown.stderr and b"Infinity" not in shown.stdout


def test_a_keyed_back_fill_says_its_status_and_takes_a_reload_inside_a_block(tmp_path):
    """A keyed back-fill's block (up to 1 MiB of lines) of hundreds of keys' first mini-batches
    takes seconds; SIGHUP's reload and the status line waited for all of it (found by an
    attack helper, for the single-series daemon)."""
    import signal
    import time

    rng = np.random.default_rng(0)
    keys = rng.permutation(np.repeat(np.arange(400), 100))
    data = tmp_path / "k.txt"
    data.write_text("".join(f"k{k} {v:.2f}\n" for k, v in zip(keys, rng.normal(size=keys.size))))
    assert data.stat().st_size < 1 << 20  # (one block)
    log = tmp_path / "log.txt"
    with open(log, "w") as err:
        process = subprocess.Popen([*DAEMON, "--input", str(data), "--set", "input.key=0",
                                    "--checkpoint", str(tmp_path / "s"), "--no-output",
                                    "--set", "status.every_seconds=0.2", "--log-level", "INFO"],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=err)
        deadline = time.monotonic() + 120
        while ("status:" not in log.read_text() and process.poll() is None
               and time.monotonic() < deadline):
            time.sleep(0.02)
        process.send_signal(signal.SIGHUP)  # (at the first status line: inside the block)
        assert process.wait(timeout=300) == 0
    lines = log.read_text().splitlines()
    last_checkpoint = max(i for i, line in enumerate(lines) if "checkpoint (" in line)
    status = [i for i, line in enumerate(lines) if "status:" in line]
    reload = [i for i, line in enumerate(lines) if "SIGHUP: configuration reloaded" in line]
    # (the block's one checkpoint comes at its end: everything before it was inside the block)
    assert len([i for i in status if i < last_checkpoint]) >= 2, lines[-20:]
    assert reload and reload[0] < last_checkpoint, lines[-20:]


def test_a_failed_store_s_summary_gives_the_committed_lifetime_and_holds_the_key_limit(tmp_path):
    """The state store cannot grow (RLIMIT_FSIZE, as on a full disk): exit 74, and the summary
    said "lifetime: 3051 points" though the store held none of them; loading the rest of the
    block's keys after the failure kept 14 keys in memory with keys.max_active 1 (found by an
    attack helper)."""
    import resource

    rng = np.random.default_rng(0)

    def rows(n_keys, per_key):
        keys = rng.permutation(np.repeat(np.arange(n_keys), per_key))
        return "".join(f"h{k} {v:.4f}\n" for k, v in zip(keys, rng.normal(size=keys.size)))

    data, state = tmp_path / "k.txt", tmp_path / "s"
    data.write_text(rows(40, 150))
    command = [*DAEMON, "--input", str(data), "--set", "input.key=0", "--checkpoint", str(state),
               "--no-output", "--set", "keys.max_active=1"]
    assert subprocess.run(command, capture_output=True, timeout=300).returncode == 0
    store = state / "keys.sqlite"
    db = sqlite3.connect(store)
    committed = json.loads(db.execute("SELECT value FROM meta WHERE name = 'daemon'")
                           .fetchone()[0])["counters"]
    db.close()
    with open(data, "a") as handle:
        handle.write(rows(400, 150))
    limit = store.stat().st_size + 2_000_000  # (room for a few dozen keys' documents)

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = subprocess.run(command, capture_output=True, timeout=300, preexec_fn=small_files,
                          text=True)
    assert done.returncode == 74 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "disk I/O error" in done.stderr or "database or disk is full" in done.stderr
    lifetime = next(line for line in done.stderr.splitlines() if "emstreamd: lifetime" in line)
    assert committed["rows"] == 40 * 150 and "as of the last checkpoint" in lifetime
    assert "emstreamd: this run, whose work since the last checkpoint the next run does " \
           "again: " in done.stderr
    assert (f": {committed['rows']} points in {committed['batches']} batches from "
            f"{committed['lines']} lines") in lifetime, lifetime
    # (the key whose write failed stays, beside the one it made room for: no more)
    in_memory = int(done.stderr.split(" of them in memory at exit")[0].rsplit(" ", 1)[1])
    assert in_memory <= 2, done.stderr[-500:]


def test_a_store_failing_mid_block_loads_no_more_of_the_block_s_keys(tmp_path):
    """An eviction's write fails in the middle of a block (a full disk while SQLite spills its
    cache): the daemon halts there, and does not go on loading the block's other keys into
    memory past keys.max_active (a failed store evicts none of them)."""
    hook = tmp_path / "hook"
    hook.mkdir()
    # (the 31st write of a key's document fails, as a full disk would make it)
    (hook / "sitecustomize.py").write_text(
        "import sqlite3\n"
        "from emstream.store import KeyStore\n"
        "_put, _calls = KeyStore.put, [0]\n"
        "def put(self, *args, **kwargs):\n"
        "    _calls[0] += 1\n"
        "    if _calls[0] > 30:\n"
        "        raise sqlite3.OperationalError('database or disk is full')\n"
        "    return _put(self, *args, **kwargs)\n"
        "KeyStore.put = put\n")
    rng = np.random.default_rng(0)
    keys = rng.permutation(np.repeat(np.arange(300), 4))
    data = tmp_path / "k.txt"
    data.write_text("".join(f"h{k} {v:.4f}\n" for k, v in zip(keys, rng.normal(size=keys.size))))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(hook), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run([*DAEMON, "--input", str(data), "--set", "input.key=0",
                           "--checkpoint", str(tmp_path / "s"), "--no-output",
                           "--set", "keys.max_active=1"],
                          capture_output=True, timeout=300, text=True, env=env)
    assert done.returncode == 74 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "database or disk is full" in done.stderr, done.stderr[-2000:]
    in_memory = int(done.stderr.split(" of them in memory at exit")[0].rsplit(" ", 1)[1])
    assert in_memory <= 2, done.stderr[-500:]


def test_the_last_partial_batches_are_learned_in_key_order(tmp_path):
    """At the end of the input the keys' last partial mini-batches were learned in the order
    their rows came; a run stopped there and resumed has its waiting keys from the store, in
    another order, and its last per-point lines came out in another order than an
    uninterrupted run's (found by an attack helper).  Both now learn them in key order."""
    rng = np.random.default_rng(0)
    # Each key: 100 + 100 rows learned, then the rest waiting; b's first (lines padded past
    # the first block of 1 MiB) in a block before a's and c's, which a block routes in key
    # order.
    rows = [f"b {v:.4f}{' ' * 4080}\n" for v in rng.normal(size=300)]
    rows += [f"{k} {v:.4f}\n" for k, v in zip(np.tile(["c", "a"], 250), rng.normal(size=500))]
    data = tmp_path / "k.txt"
    data.write_text("".join(rows))
    out = tmp_path / "out.csv"
    _run(["--input", str(data), "--set", "input.key=0", "--checkpoint", str(tmp_path / "s"),
          "--output", str(out), "--set", "output.header=false"])
    last = [line.split(",")[1] for line in out.read_text().splitlines()[-200:]]
    assert last == ["a"] * 50 + ["b"] * 100 + ["c"] * 50


def test_the_store_s_file_alone_holds_every_commit(tmp_path):
    """Between SQLite's own checkpoints (every 1,000 pages) the commits lived in keys.sqlite-wal
    alone: the file copied or backed up without it, or its -wal lost after a kill, held empty
    tables, and a restart learned every key again from the start, its per-point lines written
    twice, without a word (found by an attack helper)."""
    path = tmp_path / "keys.sqlite"
    store = KeyStore(path, writer=True)
    store.put("host-1", b'{"model": 1}', points=5)
    store.set_meta("daemon", {"input": {"offset": 123}})
    store.commit()
    copy = tmp_path / "copy.sqlite"
    shutil.copy(path, copy)  # the file alone, as a backup takes it while the daemon runs
    store.close()
    found = KeyStore(copy)
    assert found.get("host-1") == b'{"model": 1}'
    assert found.meta("daemon") == {"input": {"offset": 123}}


def test_a_key_holding_another_keys_document_is_a_damaged_store(tmp_path):
    """A hand-edited store whose key b held key a's document: the daemon learned b's rows into
    a's model and wrote it back as b's, and inspect --key b showed a's model as b's (found by
    an attack helper)."""
    data, state = _store_edited(tmp_path, "INSERT INTO keys (key, document) SELECT 'b', "
                                "document FROM keys WHERE key = 'a'")
    with open(data, "a") as handle:
        handle.write("b 4\n")
    done = _keyed_back_fill(data, state)
    assert done.returncode == 65
    assert "key 'b' holds the document of key 'a'" in _stopped(done)
    shown = subprocess.run([sys.executable, "-m", "emstream", "inspect", str(state), "--key",
                            "b"], capture_output=True, timeout=120, text=True)
    assert shown.returncode == 1 and "Traceback" not in shown.stderr
    assert "key 'b' holds the document of key 'a'" in shown.stderr


def test_inspect_refuses_a_missing_count_and_escapes_newlines_in_the_listing(tmp_path):
    """A hand-made store with nullable count columns made `inspect --keys` a TypeError
    traceback; a key or an input path holding a newline forged rows of the listing (found by
    an attack helper)."""
    _, state = _store_edited(tmp_path, "UPDATE keys SET key = 'fake' || char(10) || "
                             "'k9   99999' WHERE key = 'a'")
    shown = subprocess.run([sys.executable, "-m", "emstream", "inspect", str(state), "--keys"],
                           capture_output=True, timeout=120, text=True)
    assert shown.returncode == 0, shown.stderr
    rows = shown.stdout.splitlines()
    assert len(rows) == 4 and rows[-1].startswith("fake\\nk9"), rows  # (title, input, head)
    db = sqlite3.connect(state / "keys.sqlite")
    db.executescript("CREATE TABLE loose (key TEXT PRIMARY KEY, document TEXT, points INTEGER, "
                     "updated REAL, anomalies INTEGER, alarms INTEGER, pending INTEGER); "
                     "INSERT INTO loose SELECT * FROM keys; UPDATE loose SET points = NULL; "
                     "DROP TABLE keys; ALTER TABLE loose RENAME TO keys;")
    db.close()
    shown = subprocess.run([sys.executable, "-m", "emstream", "inspect", str(state), "--keys"],
                           capture_output=True, timeout=120, text=True)
    assert shown.returncode == 1 and "Traceback" not in shown.stderr, shown.stderr
    assert "points is None, not a finite number" in shown.stderr


@pytest.mark.parametrize("bad", ["a\u202eb", "x\u2028y", "z\u2066w", "c\u0085d"])
def test_keys_with_separators_or_bidirectional_overrides_are_bad_wherever_the_block_ends(
        tmp_path, bad):
    """The block parser checked a key's single-byte controls and C1, not the line and
    paragraph separators or the bidirectional overrides that the line parser rejects: rows
    of key 'a\\u202eb' past a table's first lines were learned, and per-point lines carried
    the raw U+202E (or a U+2028 that splits a line for readers that split the Unicode way)."""
    rows = f"{bad},1.5\n" + "".join(f"ok,{i % 7}.5\n" for i in range(200_000))
    rows += "".join(f"{bad},{i % 5}.5\n" for i in range(300))
    (tmp_path / "k.csv").write_text("host,value\n" + rows, encoding="utf-8")
    done = _run(["--input", str(tmp_path / "k.csv"), "--checkpoint", str(tmp_path / "s"),
                 "--set", "input.key=host"])
    keyed, meta = _store(tmp_path / "s" / "keys.sqlite")
    assert sorted(keyed) == ["ok"] and meta["counters"]["rejected"] == {"bad key": 301}
    assert bad.encode() not in done.stdout


@pytest.mark.parametrize("tables", [
    ["CREATE TABLE meta (name TEXT, value TEXT)",
     "INSERT INTO meta VALUES ('schema_version', '3')"],
    ["CREATE TABLE keys (key TEXT, value TEXT)"]])
def test_another_program_s_database_with_a_table_of_the_store_s_names_is_left_untouched(
        tmp_path, tables):
    """Only tables other than keys and meta made a database another program's: one holding
    a meta table of its own was taken over as the state store (write-ahead logging, a keys
    table and the daemon's row added); one with a keys table of other columns was switched to
    write-ahead logging and given a meta table before the first query failed (65)."""
    db_path = tmp_path / "app.sqlite"
    db = sqlite3.connect(db_path)
    for sql in tables:
        db.execute(sql)
    db.commit()
    db.close()
    before = db_path.read_bytes()
    (tmp_path / "t.csv").write_text("host,value\na,1\nb,2\n")
    done = subprocess.run([*DAEMON, "--input", str(tmp_path / "t.csv"), "--set",
                           "input.key=host", "--checkpoint", str(db_path)],
                          capture_output=True, timeout=60)
    assert done.returncode == 65, done.stderr.decode()
    assert "not a state store" in done.stderr.decode()
    assert db_path.read_bytes() == before and not (tmp_path / "app.sqlite-wal").exists()
    assert emstream_main(["inspect", str(db_path)]) == 1


def test_a_date_column_named_as_the_key_says_how_to_key_by_it(tmp_path):
    """input.key naming the column taken as the time stopped the daemon (78) with no hint
    that input.timestamp decides the time column; with it set to null the dates are keys."""
    data = tmp_path / "d.csv"
    data.write_text("day,reading\n" + "".join(f"2024-01-{i % 28 + 1:02d},{i}\n"
                                              for i in range(60)))
    refused = subprocess.run([*DAEMON, "--input", str(data), "--checkpoint",
                              str(tmp_path / "a"), "--set", "input.key=day"],
                             capture_output=True, timeout=120)
    err = refused.stderr.decode()
    assert refused.returncode == 78 and "set input.timestamp" in err, err
    done = _run(["--input", str(data), "--checkpoint", str(tmp_path / "b"), "--no-output",
                 "--set", "input.key=day", "--set", "input.timestamp=null"])
    assert "28 keys" in done.stderr.decode()


def test_a_keyed_daemon_halted_by_its_dead_letters_resumes_with_true_line_numbers(tmp_path):
    """A reject whose dead letter cannot be written (a full disk) halts the keyed daemon
    before the block is routed: its checkpoint keeps the position before the block, with that
    line's number and the counters as of it (it kept the block's: a restart read the block
    again numbered from past its end, and counted its lines twice)."""
    rng = np.random.default_rng(3)
    lines = [f"k{i % 3},{v:.4f}\n" for i, v in enumerate(rng.normal(size=500))]
    lines.insert(200, "k1,abc\n")
    data = tmp_path / "keyed.csv"
    data.write_text("host,value\n" + "".join(lines))
    common = ["--input", str(data), "--set", "input.key=host", "--no-output"]
    halted = subprocess.run([*DAEMON, *common, "--checkpoint", str(tmp_path / "s"),
                             "--set", "input.dead_letter=/dev/full"], capture_output=True,
                            timeout=600)
    assert halted.returncode == 74, halted.stderr.decode()[-2000:]
    _, meta = _store(tmp_path / "s" / "keys.sqlite")
    assert meta["input"]["next_line"] == 1 + (meta["input"]["offset"] > 0)
    _run([*common, "--checkpoint", str(tmp_path / "s"),
          "--set", f"input.dead_letter={tmp_path / 'dead-1.jsonl'}"])
    _run([*common, "--checkpoint", str(tmp_path / "ref"),
          "--set", f"input.dead_letter={tmp_path / 'dead-2.jsonl'}"])
    resumed, meta = _store(tmp_path / "s" / "keys.sqlite")
    alone, reference = _store(tmp_path / "ref" / "keys.sqlite")
    assert meta["counters"] == reference["counters"] and meta["counters"]["lines"] == 502
    assert meta["input"]["next_line"] == reference["input"]["next_line"] == 503
    assert resumed == alone
    assert (tmp_path / "dead-1.jsonl").read_text() == (tmp_path / "dead-2.jsonl").read_text()


def test_a_key_whose_input_ends_after_its_first_timed_row_keeps_it_for_the_next_run(tmp_path):
    """A key with one timed row when the input ended learned it alone, and its season was off
    for good: the row waits in the key's mini-batch in the store, and the next run decides
    the key's season from it and the rows after, as an uninterrupted run does."""
    def rows(start, stop):
        return "".join(f"k{i % 2},2014-07-01 {i // 24:02d}:{(i // 2) % 12 * 5:02d}:00,"
                       f"{10 + i % 7}\n" for i in range(start, stop))

    log, whole = tmp_path / "log.csv", tmp_path / "whole.csv"
    log.write_text("host,timestamp,value\n" + rows(0, 2))  # (a log just begun)
    whole.write_text("host,timestamp,value\n" + rows(0, 1200))
    common = ["--set", "input.key=host", "--no-output"]
    _run(["--input", str(log), "--checkpoint", str(tmp_path / "s"), *common])
    _, meta = _store(tmp_path / "s" / "keys.sqlite")
    assert meta["counters"]["rows"] == 0  # (both keys' rows wait)
    with open(log, "a") as handle:
        handle.write(rows(2, 1200))
    _run(["--input", str(log), "--checkpoint", str(tmp_path / "s"), *common])
    _run(["--input", str(whole), "--checkpoint", str(tmp_path / "ref"), *common])
    resumed, meta = _store(tmp_path / "s" / "keys.sqlite")
    alone, reference = _store(tmp_path / "ref" / "keys.sqlite")
    assert resumed == alone and meta["counters"] == reference["counters"]
