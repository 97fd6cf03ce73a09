"""The `emstream` command: fit, score, inspect, diff; exit codes and messages."""

import json
import os
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

from emstream import GaussianMixture, checkpoint
from emstream.cli import main

from .conftest import ROOT, mixture_2d

SEED = str(ROOT / "examples" / "seed_series.txt")


@pytest.fixture()
def seed_checkpoint(tmp_path):
    path = tmp_path / "seed.json"
    assert main(["fit", SEED, "-k", "3", "-o", str(path)]) == 0
    return path


def _permuted_copy(path, order, target):
    """The same model with its components relabelled (checksum recomputed)."""
    import hashlib
    document = json.loads(path.read_text())
    fitted = document["content"]["model"]["online"]["model"]
    for key in ("weights", "means", "covariances", "precisions_cholesky", "recent_counts"):
        fitted[key] = [fitted[key][i] for i in order]
    for key in ("counts", "means", "scatter"):
        fitted["stats"][key] = [fitted["stats"][key][i] for i in order]
    document["sha256"] = hashlib.sha256(
        checkpoint._canonical(document["content"])).hexdigest()
    target.write_text(json.dumps(document))
    return target


def test_fit_then_inspect_shows_the_three_components(seed_checkpoint, capsys):
    capsys.readouterr()
    assert main(["inspect", str(seed_checkpoint)]) == 0
    text = capsys.readouterr().out
    rows = [line.split() for line in text.splitlines() if line.strip()[:1].isdigit()]
    assert [row[0] for row in rows] == ["0", "1", "2"]
    means = sorted(float(row[3]) for row in rows)
    np.testing.assert_allclose(means, [24.566, 37.55, 44.34], atol=0.05)
    assert "written" in text and '"rows": 50' in text


@pytest.mark.parametrize("option, message", [
    (["-k", "0"], "-k: n_components must be"), (["-k", "2", "--n-init", "0"], "--n-init: "),
    (["-k", "2", "--tol", "-1"], "--tol: tol must be"),
    (["-k", "2", "--reg-covar", "nan"], "--reg-covar: reg_covar must be"),
    (["-k", "2", "--random-state", "-1"], "--random-state: random_state must be")])
def test_a_bad_fit_option_is_a_usage_error_before_the_data_are_read(tmp_path, capsys, option,
                                                                     message):
    """-k 0 and the like exited 1 (a bad file's code), the data file's name in front of the
    option's error, once the whole file had been read (found by an attack helper)."""
    missing = tmp_path / "not-read.txt"
    assert main(["fit", str(missing), "-o", str(tmp_path / "m.json"), *option]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"emstream: error: {message}") and err.count("\n") == 1, err
    assert str(missing) not in err


def test_compressed_bytes_on_standard_input_are_said_in_one_line(tmp_path, seed_checkpoint):
    """gzip data piped in were read as text: lines of binary junk rejected as invalid utf-8,
    then "no numeric rows found" (fit) or a table of no rows, exit 0 (score); found by an
    attack helper."""
    import gzip

    packed = gzip.compress(b"1\n2\n3\n4\n5\n")
    for command in (["fit", "-", "-k", "2", "-o", str(tmp_path / "m.json")],
                    ["score", str(seed_checkpoint), "-"]):
        done = subprocess.run([sys.executable, "-m", "emstream", *command], input=packed,
                              capture_output=True, timeout=120)
        assert done.returncode == 1 and done.stdout == b"", (command, done)
        assert done.stderr.decode() == ("emstream: error: standard input is gzip-compressed: "
                                        "decompress it first (zcat FILE | emstream ...), or "
                                        "give the file's name, which is read decompressed\n")
    # zstd is not read by name either: no such hint (found in review)
    done = subprocess.run([sys.executable, "-m", "emstream", "fit", "-", "-k", "2", "-o",
                           str(tmp_path / "z.json")], input=b"\x28\xb5\x2f\xfd" + b"abc",
                          capture_output=True, timeout=120)
    assert done.returncode == 1 and done.stderr.decode() == (
        "emstream: error: standard input is zstd-compressed: decompress it first "
        "(zstd -dc FILE | emstream ...)\n")


def test_score_refusing_data_of_another_width_writes_no_header(tmp_path, seed_checkpoint,
                                                                 capsys):
    """Rows of another width than the model's were refused after the csv header had gone to
    standard output: a pipeline got a table of no rows (found by an attack helper)."""
    width = checkpoint.load(seed_checkpoint).model.n_features_in_
    data = tmp_path / "wide.csv"
    np.savetxt(data, np.random.default_rng(0).normal(size=(50, width + 1)), delimiter=",")
    assert main(["score", str(seed_checkpoint), str(data)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and f"the model expects {width}" in err


def test_inspect_plot_without_matplotlib_prints_nothing_but_the_error(seed_checkpoint, tmp_path,
                                                                      capsys, monkeypatch):
    """Without matplotlib, inspect --plot printed the whole summary, then the error: as
    though the summary were the answer (found by an attack helper)."""
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else find_spec(name, *a))
    assert main(["inspect", str(seed_checkpoint), "--plot", str(tmp_path / "m.png")]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "--plot needs matplotlib" in err


def test_max_iter_is_offered_within_the_model_s_bound(tmp_path, capsys):
    """--max-iter 0 was told "1 to 9223372036854775807", where the model refuses beyond
    1,000,000 (found by an attack helper)."""
    for bad in ("0", "1000001"):
        with pytest.raises(SystemExit) as stopped:
            main(["fit", str(tmp_path / "d.txt"), "-k", "2", "-o", str(tmp_path / "m.json"),
                  "--max-iter", bad])
        assert stopped.value.code == 2
        assert "--max-iter: wants a whole number from 1 to 1000000" in capsys.readouterr().err


def test_inspect_a_model_with_no_batch_fit(seed_checkpoint, tmp_path, capsys):
    """The format allows ``"batch": null`` (a model learned online from the start): inspect
    failed with an AttributeError traceback on n_iter_ (found by an attack helper)."""
    import hashlib

    document = json.loads(seed_checkpoint.read_text())
    document["content"]["model"]["batch"] = None
    document["sha256"] = hashlib.sha256(checkpoint._canonical(document["content"])).hexdigest()
    edited = tmp_path / "online-only.json"
    edited.write_text(json.dumps(document))
    capsys.readouterr()
    assert main(["inspect", str(edited)]) == 0
    assert "batch fit   none" in capsys.readouterr().out
    assert main(["inspect", str(edited), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["last_batch_fit"] is None


def test_inspect_json_parses_and_matches_the_model(seed_checkpoint, capsys):
    capsys.readouterr()
    assert main(["inspect", str(seed_checkpoint), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    model = checkpoint.load(seed_checkpoint).model
    assert info["n_components"] == 3 and info["n_features"] == 1
    for component in info["components"]:
        i = component["index"]
        assert component["weight"] == model.weights_[i]
        assert component["mean"] == model.means_[i].tolist()
        assert component["covariance"] == model.covariances_[i].tolist()
    assert info["meta"]["source"]["rows"] == 50


def test_diff_with_itself_is_zero_and_with_a_permuted_copy_is_a_relabelling(
        seed_checkpoint, tmp_path, capsys):
    capsys.readouterr()
    assert main(["diff", str(seed_checkpoint), str(seed_checkpoint), "--json"]) == 0
    same = json.loads(capsys.readouterr().out)
    assert not same["relabelled"] and same["divergence"] == 0.0
    assert all(p["weight_change"] == 0 and p["mean_change"] == [0.0] for p in same["pairs"])
    permuted = _permuted_copy(seed_checkpoint, [2, 0, 1], tmp_path / "permuted.json")
    assert main(["diff", str(seed_checkpoint), str(permuted), "--json"]) == 0
    moved = json.loads(capsys.readouterr().out)
    assert moved["relabelled"]
    assert [(p["a"], p["b"]) for p in moved["pairs"]] == [(0, 1), (1, 2), (2, 0)]
    assert all(p["weight_change"] == 0 and p["mean_change"] == [0.0] for p in moved["pairs"])
    assert moved["divergence"] < 1e-12
    assert main(["diff", str(seed_checkpoint), str(permuted)]) == 0
    assert "relabelled: 0->1, 1->2, 2->0" in capsys.readouterr().out


def test_diff_sees_a_real_change(tmp_path, capsys):
    X = mixture_2d(2000, np.random.default_rng(0))
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    np.savetxt(a, X, delimiter=",")
    np.savetxt(b, X + [0.5, 0.0], delimiter=",")
    for src in (a, b):
        assert main(["fit", str(src), "-k", "3", "-o", str(src) + ".json"]) == 0
    capsys.readouterr()
    assert main(["diff", str(a) + ".json", str(b) + ".json", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose([p["mean_change"] for p in result["pairs"]],
                               [[0.5, 0.0]] * 3, atol=0.1)
    assert result["divergence"] > 0.01


def test_inspect_shows_a_wide_diag_model_without_its_dense_covariances(tmp_path, capsys,
                                                                        monkeypatch):
    """A valid 100,000-feature diag checkpoint: ``inspect`` built every component's D x D
    covariance (74.5 GiB) to print its standard deviations, a MemoryError traceback (found by
    an attack helper).  The text needs none; where one is needed (--json, diff), the lack of
    memory is said in one line."""
    X = np.random.default_rng(0).normal(size=(12, 100_000))
    wide = GaussianMixture(2, covariance_type="diag", random_state=0, warmup_size=2).fit(X)
    path = checkpoint.save(wide, tmp_path / "wide.json")
    capsys.readouterr()
    assert main(["inspect", str(path)]) == 0
    rows = capsys.readouterr().out.splitlines()[-2:]
    for i, row in enumerate(rows):
        assert row.split()[:2] == [str(i), f"{wide.weights_[i]:.4f}"]

    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr("emstream.cli.full_covariances", no_memory)
    assert main(["inspect", str(path), "--json"]) == 1
    assert capsys.readouterr().err.startswith("emstream: error: not enough memory (a model of")
    monkeypatch.setattr(GaussianMixture, "fit", no_memory)  # (another command: no such hint)
    assert main(["fit", SEED, "-k", "2", "-o", str(tmp_path / "x.json")]) == 1
    assert capsys.readouterr().err == "emstream: error: not enough memory\n"


def test_diff_of_components_too_far_apart_for_a_float_says_inf_and_writes_json(tmp_path):
    """N(0, 1e-120) against N(1e99, 1e-130): their distances overflow.  ``--json`` printed
    ``Infinity`` (no JSON reader takes it) and numpy's overflow warnings reached the terminal
    (found by an attack helper)."""
    rng = np.random.default_rng(0)
    settings = {"reg_covar": 1e-130, "variance_floor": None, "random_state": 0}
    near = GaussianMixture(1, **settings).fit(rng.normal(0, 1e-60, (500, 1)))
    far = GaussianMixture(1, **settings).fit(np.full((500, 1), 1e99))
    checkpoint.save(near, tmp_path / "a.json")
    checkpoint.save(far, tmp_path / "b.json")
    command = [sys.executable, "-m", "emstream", "diff", str(tmp_path / "a.json"),
               str(tmp_path / "b.json")]
    done = subprocess.run([*command, "--json"], capture_output=True, timeout=60)
    assert done.returncode == 0 and not done.stderr
    result = json.loads(done.stdout, parse_constant=lambda name: pytest.fail(name))
    assert result["divergence"] is None and result["pairs"][0]["bhattacharyya"] is None
    done = subprocess.run(command, capture_output=True, timeout=60)
    assert done.returncode == 0 and not done.stderr
    assert done.stdout.decode().splitlines()[-1].endswith(": inf")


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_score_outputs_label_probability_and_surprise(seed_checkpoint, fmt, capsys):
    capsys.readouterr()
    assert main(["score", str(seed_checkpoint), SEED, "--format", fmt]) == 0
    out = capsys.readouterr().out.splitlines()
    model = checkpoint.load(seed_checkpoint).model
    X = np.loadtxt(SEED)[:, None]
    if fmt == "csv":
        assert out[0] == "line,label,probability,surprise"
        records = [dict(zip(["line", "label", "probability", "surprise"], map(float, r.split(","))))
                   for r in out[1:]]
    else:
        records = [json.loads(r) for r in out]
    assert [r["line"] for r in records] == list(range(1, 51))
    np.testing.assert_array_equal([r["label"] for r in records], model.predict(X))
    # Fixed point: probability to 6 decimals, surprise to 4 (emstream/report.py).
    np.testing.assert_allclose([r["surprise"] for r in records], -model.score_samples(X),
                               rtol=0, atol=5e-5)
    np.testing.assert_allclose([r["probability"] for r in records],
                               model.predict_proba(X).max(axis=1), rtol=0, atol=5e-7)


def test_fit_and_score_read_the_daemons_tables_and_keys(tmp_path, capsys):
    """A CSV with a header and a time column (NAB's files), and a keyed stream's lines, read
    as emstreamd reads them (every line of them was rejected as non-numeric)."""
    rng = np.random.default_rng(2)
    values = np.r_[rng.normal(0, 1, 200), rng.normal(8, 1, 200)]
    table = tmp_path / "series.csv"
    table.write_text("timestamp,value\n" + "".join(
        f"2024-01-01 {i // 60:02d}:{i % 60:02d}:00,{v:.5f}\n" for i, v in enumerate(values)))
    assert main(["fit", str(table), "-k", "2", "-o", str(tmp_path / "t.json")]) == 0
    model = checkpoint.load(tmp_path / "t.json").model
    reference = GaussianMixture(2, random_state=0).fit(np.round(values, 5)[:, None])
    np.testing.assert_allclose(np.sort(model.means_.ravel()),
                               np.sort(reference.means_.ravel()), atol=1e-6)
    capsys.readouterr()
    assert main(["score", str(tmp_path / "t.json"), str(table), "--no-header"]) == 0
    lines = [int(row.split(",")[0]) for row in capsys.readouterr().out.splitlines()]
    assert lines == list(range(2, 402))  # the data lines, after the header
    # A keyed stream: one key's rows, scored with that key's model from a state store.
    keyed = tmp_path / "keyed.txt"
    keyed.write_text("".join(f"{'ab'[i % 2]} {v:.5f}\n" for i, v in enumerate(values)))
    done = subprocess.run([sys.executable, "-m", "emstreamd", "--config",
                           str(ROOT / "config.yaml"), "--input", str(keyed), "--checkpoint",
                           str(tmp_path / "state"), "--no-output", "--set", "input.key=0"],
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    capsys.readouterr()
    assert main(["score", str(tmp_path / "state"), str(keyed), "--key", "b", "--format",
                 "jsonl"]) == 0
    records = [json.loads(r) for r in capsys.readouterr().out.splitlines()]
    assert [r["line"] for r in records] == list(range(2, 401, 2))
    from emstream.cli import load_any

    model = load_any(str(tmp_path / "state"), "b").model
    np.testing.assert_allclose([r["surprise"] for r in records],
                               -model.score_samples(np.round(values[1::2], 5)[:, None]),
                               atol=5e-5)


def test_columns_by_name_and_json_lines_read_as_the_daemon_reads_them(tmp_path, capsys):
    """``--columns`` names a table's columns (as input.columns does; only indices were taken)
    and JSON lines are read with their fields named (every line was "non-numeric")."""
    rng = np.random.default_rng(4)
    values = np.round(np.c_[np.r_[rng.normal(0, 1, 150), rng.normal(8, 1, 150)],
                            rng.normal(0, 1, 300)], 5)
    table = tmp_path / "t.csv"
    table.write_text("timestamp,cpu,mem\n" + "".join(
        f"2024-01-01 {i // 60:02d}:{i % 60:02d}:00,{a:.5f},{b:.5f}\n"
        for i, (a, b) in enumerate(values)))
    stream = tmp_path / "m.jsonl"
    stream.write_text("".join(json.dumps({"ts": f"2024-01-01T{i // 60:02d}:{i % 60:02d}:00Z",
                                          "host": "ab"[i % 2], "mem": b, "cpu": a}) + "\n"
                              for i, (a, b) in enumerate(values)))
    fits = {}
    for name, data, columns in (("by index", table, "1"), ("by name", table, "cpu"),
                                ("json", stream, "cpu")):
        assert main(["fit", str(data), "-k", "2", "--columns", columns, "-o",
                     str(tmp_path / f"{name}.json")]) == 0
        fits[name] = checkpoint.load(tmp_path / f"{name}.json").model
    reference = GaussianMixture(2, random_state=0).fit(values[:, :1])
    for model in fits.values():
        np.testing.assert_array_equal(model.means_, fits["by index"].means_)
    np.testing.assert_allclose(np.sort(fits["json"].means_.ravel()),
                               np.sort(reference.means_.ravel()), atol=1e-6)
    # Both fields, in the order named; one key's rows.
    assert main(["fit", str(stream), "-k", "2", "--columns", "mem,cpu", "-o",
                 str(tmp_path / "two.json")]) == 0
    two = checkpoint.load(tmp_path / "two.json").model
    np.testing.assert_allclose(np.sort(two.means_[:, 1]), np.sort(reference.means_.ravel()),
                               atol=1e-3)
    capsys.readouterr()
    assert main(["score", str(tmp_path / "two.json"), str(stream), "--columns", "mem,cpu",
                 "--no-header"]) == 0
    scored = capsys.readouterr().out.splitlines()
    assert [int(row.split(",")[0]) for row in scored] == list(range(1, 301))
    np.testing.assert_allclose([float(row.split(",")[3]) for row in scored],
                               -two.score_samples(values[:, ::-1]), atol=5e-5)
    from emstream.timeline import read_series

    series = read_series(stream, "b", "host", column="cpu")
    np.testing.assert_array_equal(series["value"], values[1::2, 0])
    assert series["time"][0] == np.datetime64("2024-01-01T00:01:00")
    # JSON lines without field names: one line saying what to do.
    assert main(["fit", str(stream), "-k", "2", "-o", str(tmp_path / "x.json")]) == 1
    assert "JSON lines: name the fields" in capsys.readouterr().err


def test_score_says_why_it_cannot_score_a_model_of_temporal_features(tmp_path, capsys):
    """A daemon's model of a time series learns each value with its context (the shipped
    features): raw rows cannot be scored by it, and the message says so (it said the rows had
    too few values, "see --columns")."""
    rng = np.random.default_rng(6)
    table = tmp_path / "series.csv"
    table.write_text("timestamp,value\n" + "".join(
        f"2024-01-01 {i // 60:02d}:{i % 60:02d}:00,{v:.4f}\n"
        for i, v in enumerate(rng.normal(size=400))))
    for features in ("auto", "false"):
        done = subprocess.run([sys.executable, "-m", "emstreamd", "--config",
                               str(ROOT / "config.yaml"), "--input", str(table), "--checkpoint",
                               str(tmp_path / features), "--no-output", "--set",
                               f"features.enabled={features}"], capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr.decode()
    capsys.readouterr()
    assert main(["score", str(tmp_path / "auto"), str(table)]) == 1
    err = capsys.readouterr().err
    assert "temporal features" in err and "features.enabled: false" in err
    assert main(["score", str(tmp_path / "false"), str(table), "--no-header"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 400
    # inspect names the features (it gave their number alone).
    assert main(["inspect", str(tmp_path / "auto"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["feature_names"] == ["value", "value[t-1]"]
    assert main(["inspect", str(tmp_path / "auto")]) == 0
    assert "features    2: value, value[t-1]\n" in capsys.readouterr().out


def test_plotting_a_model_still_warming_up_or_data_of_another_width_says_so(tmp_path,
                                                                           capsys):
    """``inspect --plot`` of a checkpoint still warming up, or with ``--data`` of another width
    than the model: one line (tracebacks, or the wrong columns drawn)."""
    pytest.importorskip("matplotlib")
    (tmp_path / "few.txt").write_text("1\n2\n3\n")
    done = subprocess.run([sys.executable, "-m", "emstreamd", "--config",
                           str(ROOT / "config.yaml"), "--input", str(tmp_path / "few.txt"),
                           "--checkpoint", str(tmp_path / "warm"), "--no-output"],
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "warm"), "--plot", str(tmp_path / "p.png")]) == 1
    assert "still warming up" in capsys.readouterr().err
    rng = np.random.default_rng(1)
    (tmp_path / "two.txt").write_text("".join(f"{a:.3f} {b:.3f}\n"
                                              for a, b in rng.normal(size=(200, 2))))
    assert main(["fit", str(tmp_path / "two.txt"), "-k", "2", "-o",
                 str(tmp_path / "two.json")]) == 0
    for width in (1, 3):
        (tmp_path / "data.txt").write_text("".join(" ".join(["1.5"] * width) + "\n"
                                                   for _ in range(10)))
        capsys.readouterr()
        assert main(["inspect", str(tmp_path / "two.json"), "--plot",
                     str(tmp_path / "p.png"), "--data", str(tmp_path / "data.txt")]) == 1
        assert "the model has 2 features" in capsys.readouterr().err


def test_timeline_says_which_score_lines_it_could_not_draw(tmp_path, capsys):
    """The per-point output of a 3,000-line stream drawn over a 400-line file: another series'
    scores were drawn, its alert left out of the legend's count, without a word."""
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(0)
    (tmp_path / "short.txt").write_text("".join(f"{v:.4f}\n" for v in rng.normal(size=400)))
    (tmp_path / "scores.csv").write_text("line,label,prob,surprise,score,anomaly\n" + "".join(
        f"{i},0,1.0,1.0,{0.99999 if i == 2501 else 0.5},{int(i == 2501)}\n"
        for i in range(101, 3001)))
    capsys.readouterr()
    assert main(["timeline", str(tmp_path / "short.txt"), str(tmp_path / "scores.csv"), "-o",
                 str(tmp_path / "p.png")]) == 0
    err = capsys.readouterr().err
    assert "2,600 of the 2,900 lines" in err and "(1 alert among them)" in err


def test_timeline_refuses_score_lines_and_thresholds_it_cannot_draw(tmp_path, capsys):
    """A JSON score line without a score (or with null or text), a threshold of 1 or NaN:
    one line each (tracebacks; a divide-by-zero and no threshold drawn)."""
    from emstream.timeline import read_scores

    path = tmp_path / "s.jsonl"
    for text in ('{"line": 1, "anomaly": false}', '{"line": 1, "score": null}',
                 '{"line": 1, "score": "x"}', '{"line": 1, "score": 2.0}'):
        path.write_text(text + "\n")
        with pytest.raises(ValueError, match="not emstreamd's per-point output"):
            read_scores(path)
    path.write_text('{"line": 1, "score": 0.5, "anomaly": false}\n')
    assert read_scores(path)["score"].tolist() == [0.5]
    # A line number beyond 64 bits (OverflowError, a traceback), an anomaly given as text
    # ("false" was drawn as an alert).
    big = "99999999999999999999999"
    # A CR inside an unquoted field of a line with quotes (csv.Error: a traceback).
    for text in ('{"line": %s, "score": 0.5}' % big, '{"line": 1, "score": 0.5, "anomaly": '
                 '"false"}', f"{big},0,1,1,0.5,0", "0,0,1,1,0.5,0", '2,x\ry,"q",1,1,0.5,0'):
        path.write_text(text + "\n")
        with pytest.raises(ValueError, match="not emstreamd's per-point output"):
            read_scores(path)
    for threshold in ("1", "nan", "0"):
        with pytest.raises(SystemExit) as exit_info:
            main(["timeline", "a", "b", "-o", "p.png", "--threshold", threshold])
        assert exit_info.value.code == 2
        assert "strictly between 0 and 1" in capsys.readouterr().err


def test_timeline_refuses_keyed_csv_lines_without_a_key_and_scores_out_of_range(tmp_path):
    """A keyed daemon's csv lines (line, key, label, ...) have as many fields as a timed
    series' (line, time, label, ...): without --key the keys were read as times and the keys'
    series drawn as one.  CSV scores of 7 or nan were drawn; no lines at all drew an empty
    picture."""
    from emstream.timeline import read_scores

    path = tmp_path / "s.csv"
    path.write_text("1,web-1,0,0.5,1.0,0.25,0\n2,web-2,1,0.5,1.0,0.5,0\n")
    with pytest.raises(ValueError, match="name the series with --key"):
        read_scores(path, timed=False)
    assert read_scores(path, "web-2", timed=False)["score"].tolist() == [0.5]
    # A key with a comma (or quotes) is quoted as csv quotes it: split on every comma, such a
    # line made the file unreadable for every key.
    with open(path, "a") as handle:
        handle.write('3,"db,eu",0,0.5,1.0,0.75,1\n4,"say ""hi""",0,0.5,1.0,0.125,0\n')
    assert read_scores(path, "web-2", timed=False)["score"].tolist() == [0.5]
    assert read_scores(path, "db,eu", timed=False)["anomaly"].tolist() == [True]
    assert read_scores(path, 'say "hi"', timed=False)["score"].tolist() == [0.125]
    for bad in ("7", "nan", "-0.1"):
        path.write_text(f"1,0,0.5,1.0,{bad},0\n")
        with pytest.raises(ValueError, match="a score in \\[0, 1\\]"):
            read_scores(path, timed=False)
    path.write_text("")
    with pytest.raises(ValueError, match="no per-point lines"):
        read_scores(path)
    data = tmp_path / "d.txt"
    data.write_text("1\n2\n")
    path.write_text("1,web-1,0,0.5,1.0,0.25,0\n")
    assert main(["timeline", str(data), str(path), "-o", str(tmp_path / "p.png")]) == 1
    assert not (tmp_path / "p.png").exists()


def test_rejected_lines_are_counted_and_shown(tmp_path, capsys):
    data = tmp_path / "dirty.txt"
    data.write_bytes(b"1\n2\nabc\n3\nnan\n4\n5\n6\n")
    assert main(["fit", str(data), "-k", "2", "-o", str(tmp_path / "c.json")]) == 0
    err = capsys.readouterr().err
    assert "skipped 2 line(s): 1 non-finite, 1 non-numeric" in err
    assert "line 3: non-numeric: 'abc'" in err


def test_fit_reads_stdin_and_writes_numbered_checkpoints(tmp_path):
    folder = tmp_path / "ck"
    folder.mkdir()
    command = [sys.executable, "-m", "emstream", "fit", "-", "-k", "2", "-o", str(folder)]
    for _ in range(2):
        done = subprocess.run(command, input=b"1\n2\n3\n10\n11\n12\n", capture_output=True)
        assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint-00000001.json",
                                                        "checkpoint-00000002.json"]


def test_fit_checks_where_it_writes_before_fitting(tmp_path, capsys, monkeypatch):
    import emstream.cli as cli

    fitted = []
    real = cli._fit_logged
    monkeypatch.setattr(cli, "_fit_logged", lambda *a: fitted.append(1) or real(*a))
    # A missing directory or a zero --keep is said at once, not after the fit.
    assert main(["fit", SEED, "-k", "2", "-o", str(tmp_path / "no" / "c.json")]) == 1
    assert "no directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stopped:
        main(["fit", SEED, "-k", "2", "-o", str(tmp_path / "c.json"), "--keep", "0"])
    assert stopped.value.code == 2 and not fitted
    # A name ending in a slash is a directory of numbered checkpoints, made if need be.
    assert main(["fit", SEED, "-k", "2", "-o", str(tmp_path / "new") + "/"]) == 0
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["checkpoint-00000001.json"]


def test_fit_writes_through_a_link_and_refuses_a_pipe_or_its_own_data(tmp_path, capsys):
    """``-o`` onto a named pipe (or a device: the same test) or onto the data file put the
    checkpoint in its place; onto a symbolic link it replaced the link, leaving its target (the
    deployed model) stale."""
    import os
    import shutil

    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    assert main(["fit", SEED, "-k", "2", "-o", str(pipe)]) == 1
    assert "not a regular file" in capsys.readouterr().err and pipe.is_fifo()
    data = tmp_path / "data.txt"
    shutil.copy(SEED, data)
    before = data.read_bytes()
    assert main(["fit", str(data), "-k", "2", "-o", str(data)]) == 1
    assert "is the data file" in capsys.readouterr().err and data.read_bytes() == before
    # The same file piped in (fit - -o data.txt < data.txt): it was replaced.
    with open(data, "rb") as piped:
        done = subprocess.run([sys.executable, "-m", "emstream", "fit", "-", "-k", "2", "-o",
                               str(data)], stdin=piped, capture_output=True, timeout=120)
    assert done.returncode == 1 and data.read_bytes() == before
    assert b"is the data file read on standard input" in done.stderr
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "v1.json").write_text("{}")
    (tmp_path / "current.json").symlink_to("models/v1.json")
    assert main(["fit", SEED, "-k", "2", "-o", str(tmp_path / "current.json")]) == 0
    assert (tmp_path / "current.json").is_symlink()
    assert checkpoint.load(tmp_path / "current.json").model.n_components == 2
    # The deployed model keeps its mode: mkstemp's 0600 replaced its 0644, unreadable to the
    # service that read it (found by an attack helper); a new file gets what open() gives.
    for mode in (0o644, 0o640):
        os.chmod(tmp_path / "models" / "v1.json", mode)
        assert main(["fit", SEED, "-k", "2", "-o", str(tmp_path / "current.json")]) == 0
        assert stat.S_IMODE(os.stat(tmp_path / "models" / "v1.json").st_mode) == mode
    previous = os.umask(0o027)
    try:
        assert main(["fit", SEED, "-k", "2", "-o", str(tmp_path / "new.json")]) == 0
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(tmp_path / "new.json").st_mode) == 0o640


def test_a_new_checkpoint_is_private_where_the_umask_cannot_be_read(tmp_path, monkeypatch):
    """Without /proc (macOS, some containers) the umask was taken for 0o022: under a private
    umask a new file came out 0o644 (found by a review).  Now it is 0o600, as mkstemp made
    it."""
    real_open = open

    def no_proc(path, *args, **kwargs):
        if str(path).startswith("/proc/"):
            raise FileNotFoundError(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "open", no_proc, raising=False)
    previous = os.umask(0o022)
    try:
        checkpoint.save(GaussianMixture(2, random_state=0).fit(mixture_2d(300, np.random
                                                                          .default_rng(0))),
                        tmp_path / "m.json")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(tmp_path / "m.json").st_mode) == 0o600


@pytest.mark.parametrize("argv, message", [
    (["inspect", "/nonexistent/ck.json"], "no such file"),
    (["fit", "/nonexistent/data.txt", "-k", "2", "-o", "x.json"], "cannot open"),
    (["score", SEED, SEED], "not valid JSON"),
    # (a device was read for ever, without a word; found by an attack helper)
    (["fit", "/dev/zero", "-k", "2", "-o", "x.json"], "is a character device"),
    # (a terminal device not this process's standard input: taken for one, read for ever)
    (["fit", "/dev/ptmx", "-k", "2", "-o", "x.json"], "is a character device"),
])
def test_bad_files_exit_1_with_one_line_and_no_traceback(argv, message):
    done = subprocess.run([sys.executable, "-m", "emstream", *argv], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and message in done.stderr
    assert "Traceback" not in done.stderr


def test_a_terminal_named_as_the_data_file_is_read_to_ctrl_d(tmp_path):
    """Devices are refused (/dev/zero was read for ever), but not a terminal: ``emstream fit
    /dev/stdin`` typed into ends at Ctrl-D (a review found it refused)."""
    import pty

    main_fd, child_fd = pty.openpty()
    try:
        process = subprocess.Popen([sys.executable, "-m", "emstream", "fit", "-k", "1", "-o",
                                    str(tmp_path / "m.json"), "/dev/stdin"], stdin=child_fd,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(1.0)
        os.write(main_fd, b"1\n2\n3\n")
        time.sleep(0.3)
        for _ in range(3):  # (Ctrl-D at a line's start ends the input)
            os.write(main_fd, b"\x04")
            time.sleep(0.3)
        _, err = process.communicate(timeout=60)
    finally:
        os.close(main_fd)
        os.close(child_fd)
    assert process.returncode == 0, err.decode()
    assert "fitted 1 components to 3 rows" in err.decode()


def test_usage_errors_exit_2_and_every_subcommand_has_help():
    done = subprocess.run([sys.executable, "-m", "emstream", "fit", SEED], capture_output=True,
                          text=True)
    assert done.returncode == 2 and "required" in done.stderr
    for sub in ("fit", "score", "inspect", "diff", "timeline"):
        helped = subprocess.run([sys.executable, "-m", "emstream", sub, "--help"],
                                capture_output=True, text=True)
        assert helped.returncode == 0 and "usage: emstream " + sub in helped.stdout


def test_fit_makes_a_model_whose_warm_up_holds_every_component():
    """-k 1001 (the bound is 10,000) was fitted for half a minute, then refused at saving:
    "warmup_size must be at least n_components", an option fit does not have."""
    from emstream.cli import _fit_model, build_parser

    for k, warmup in ((3, 1000), (1001, 1001), (10_000, 10_000)):
        args = build_parser().parse_args(["fit", "d.txt", "-k", str(k), "-o", "m.json"])
        model = _fit_model(args)
        model._validate_params()
        assert model.warmup_size == warmup


def test_too_few_rows_is_a_clear_error(tmp_path, capsys):
    data = tmp_path / "two.txt"
    data.write_text("1\n2\n")
    assert main(["fit", str(data), "-k", "3", "-o", str(tmp_path / "c.json")]) == 1
    assert "fewer than 3" in capsys.readouterr().err


def test_progress_is_printed_when_the_fit_takes_a_while(tmp_path, capsys, monkeypatch):
    import emstream.cli as cli
    clock = iter(range(0, 10_000, 5))
    monkeypatch.setattr(cli.time, "monotonic", lambda: float(next(clock)))
    assert main(["fit", SEED, "-k", "3", "-o", str(tmp_path / "c.json")]) == 0
    assert "EM iteration 2: average log-likelihood" in capsys.readouterr().err


def test_a_slow_start_does_not_make_a_quick_fit_print_its_iterations(tmp_path, capsys,
                                                                    monkeypatch):
    """The second counts from the first iteration: imports and seeding before it (a second on
    a loaded machine) made even the 50-row seed fit print every iteration."""
    import emstream.cli as cli
    from emstream import GaussianMixture

    now = [0.0]
    monkeypatch.setattr(cli.time, "monotonic", lambda: now[0])
    fit = GaussianMixture.fit

    def slow_start(self, X, y=None):
        now[0] += 100.0  # (the clock then stands still: the fit itself is instant)
        return fit(self, X, y)

    monkeypatch.setattr(GaussianMixture, "fit", slow_start)
    assert main(["fit", SEED, "-k", "3", "-o", str(tmp_path / "c.json")]) == 0
    assert "EM iteration" not in capsys.readouterr().err


@pytest.mark.parametrize("columns", [None, "0,1"])
def test_plot_draws_1d_and_2d(tmp_path, seed_checkpoint, columns):
    pytest.importorskip("matplotlib")
    if columns is None:
        ck, data = seed_checkpoint, SEED
    else:
        data = tmp_path / "two.csv"
        np.savetxt(data, mixture_2d(500, np.random.default_rng(1)), delimiter=",")
        ck = tmp_path / "two.json"
        assert main(["fit", str(data), "-k", "3", "-o", str(ck)]) == 0
    out = tmp_path / "plot.png"
    assert main(["inspect", str(ck), "--plot", str(out), "--data", str(data)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_names_the_file_it_writes(tmp_path, seed_checkpoint, capsys, monkeypatch):
    """--plot dd wrote dd.png and said "wrote dd"; --plot '' drew nothing without a word; a
    directory became DIR.png beside it."""
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    assert main(["inspect", str(seed_checkpoint), "--plot", "dd"]) == 0
    assert "emstream: wrote dd.png" in capsys.readouterr().err
    assert (tmp_path / "dd.png").read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "folder").mkdir()
    for target, said in (("", "--plot names no file"), ("folder", "folder: is a directory")):
        assert main(["inspect", str(seed_checkpoint), "--plot", target]) == 1
        assert said in capsys.readouterr().err
        assert main(["diff", str(seed_checkpoint), str(seed_checkpoint), "--plot",
                     target]) == 1
        assert said in capsys.readouterr().err
    assert not (tmp_path / "folder.png").exists()


def test_plot_without_matplotlib_says_how_to_get_it(seed_checkpoint, tmp_path, capsys,
                                                    monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["inspect", str(seed_checkpoint), "--plot", str(tmp_path / "p.png")]) == 1
    assert "pip install 'emstream[plot]'" in capsys.readouterr().err


# ---------------------------------------------------------------------------- options
def _options(parser):
    """Every (parser name, option) of ``parser`` and its subcommands."""
    import argparse
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _options(sub)
        elif not isinstance(action, (argparse._HelpAction,)):
            yield parser.prog, action


def test_every_option_of_both_commands_has_help_text():
    from emstream.cli import build_parser
    from emstreamd.__main__ import build_parser as daemon_parser

    missing = [(prog, action.dest) for parser in (build_parser(), daemon_parser())
               for prog, action in _options(parser) if not action.help]
    assert not missing
    for command, option in ((["emstreamd"], "--check-config"), (["emstream"], "--version"),
                            (["emstream", "score"], "--header, --no-header"),
                            (["emstream", "diff"], "--plot FILE.png")):
        shown = subprocess.run([sys.executable, "-m", *command, "--help"], capture_output=True,
                               text=True, timeout=60).stdout
        assert option in shown, shown


def test_version(capsys):
    import emstream
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out == f"emstream {emstream.__version__}\n"


def test_score_header_is_optional(seed_checkpoint, capsys):
    capsys.readouterr()
    assert main(["score", str(seed_checkpoint), SEED, "--no-header"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 50 and out[0].startswith("1,")
    assert main(["score", str(seed_checkpoint), SEED, "--header"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "line,label,probability,surprise"


# ---------------------------------------------------------------------------- daemon checkpoints
@pytest.fixture(scope="module")
def daemon_checkpoint(tmp_path_factory):
    """emstreamd's checkpoint after the bundled example, with scheduled refits in its history."""
    state = tmp_path_factory.mktemp("daemon") / "state"
    done = subprocess.run([sys.executable, "-m", "emstreamd", "--config",
                           str(ROOT / "config.yaml"), "--input",
                           str(ROOT / "examples" / "sensor.txt"), "--checkpoint", str(state),
                           "--no-output", "--set", "refit.every_points=2000"],
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    return state


def test_inspect_pretty_prints_a_daemon_checkpoints_metadata(daemon_checkpoint, capsys):
    capsys.readouterr()
    assert main(["inspect", str(daemon_checkpoint)]) == 0
    text = capsys.readouterr().out
    lines = {line[:12].strip(): line[12:] for line in text.splitlines() if line[:1].isalpha()}
    meta = checkpoint.load(daemon_checkpoint).meta
    size = (ROOT / "examples" / "sensor.txt").stat().st_size
    assert lines["counters"].startswith("4996 points in 9 batches from 5000 lines; "
                                        "rejected 4 (1 blank, 2 non-finite, 1 non-numeric)")
    # (the gated count beside the anomalies: "anomalies 0 (8 of them kept out ...)" read as
    # a part of them, which gated points need not be)
    c = meta["counters"]
    assert f"; anomalies {c['anomalies']}; kept out of the model by the outlier gate " \
           f"{c['gated']}; drift alarms " in lines["counters"]
    assert lines["input"] == (f"file {ROOT / 'examples' / 'sensor.txt'}: byte {size}, next line "
                              f"5001 (device {meta['input']['device']}, inode "
                              f"{meta['input']['inode']})")
    assert lines["layout"] == "plain numbers, 1 number per line"
    refits = [e for e in meta["history"] if e["event"] == "refit"]
    assert len(refits) == 2 and lines["history"].startswith(
        f"{sum(e['replaced'] for e in refits)} refit (model replaced)"
        if all(e["replaced"] for e in refits) else "")
    assert lines["history"].endswith(f"last: refit (schedule) at point {refits[-1]['rows']}")
    assert '"monitor"' not in text  # the detector's and calibrator's states stay out


def test_inspect_shows_a_tables_layout(tmp_path, capsys):
    data = tmp_path / "series.csv"
    values = np.random.default_rng(0).normal(size=600)
    data.write_text("timestamp,value\n" + "".join(
        f"2024-01-01 {i // 60:02d}:{i % 60:02d}:00,{v:.4f}\n" for i, v in enumerate(values)))
    state = tmp_path / "state.json"
    done = subprocess.run([sys.executable, "-m", "emstreamd", "--input", str(data),
                           "--checkpoint", str(state), "--no-output", "--set",
                           "features.enabled=false"], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    capsys.readouterr()
    assert main(["inspect", str(state)]) == 0
    layout = next(line for line in capsys.readouterr().out.splitlines()
                  if line.startswith("layout"))
    assert layout == ("layout      table of 2 comma-separated fields, header on line 1; "
                      "values: value; time: timestamp")


# ---------------------------------------------------------------------------- plots
def _three_d(tmp_path, shift=0.0):
    from .conftest import mixture_3d
    data = tmp_path / f"three{shift}.csv"
    np.savetxt(data, mixture_3d(900, np.random.default_rng(2)) + shift, delimiter=",")
    ck = tmp_path / f"three{shift}.json"
    assert main(["fit", str(data), "-k", "3", "-o", str(ck)]) == 0
    return data, ck


def test_three_features_are_drawn_as_a_grid_of_exact_projections(tmp_path):
    pytest.importorskip("matplotlib")
    from matplotlib.patches import Ellipse

    from emstream.plot import draw
    _, ck = _three_d(tmp_path)
    model = checkpoint.load(ck).model
    fig = draw([model])
    axes = np.array(fig.axes).reshape(3, 3)
    for row in range(3):
        for col in range(3):
            ax = axes[row, col]
            if row == col:  # the feature's own density: the mixture of its 1-D marginals
                line = next(li for li in ax.lines if li.get_label() == "mixture")
                x, y = line.get_data()
                sd = np.sqrt(model.covariances_[:, row, row])
                expected = (model.weights_ * np.exp(-0.5 * ((x[:, None] - model.means_[:, row])
                                                            / sd) ** 2)
                            / (sd * np.sqrt(2 * np.pi))).sum(axis=1)
                np.testing.assert_allclose(y, expected, rtol=1e-12)
                assert abs(np.trapezoid(y, x) - 1) < 1e-3
                continue
            # Off the diagonal: x is the column's feature, y the row's; one 1-sd ellipse per
            # component, from the covariance's 2 x 2 block.
            ellipses = [p for p in ax.patches if isinstance(p, Ellipse)][::2]
            assert len(ellipses) == 3
            for k, ellipse in enumerate(ellipses):
                block = model.covariances_[k][np.ix_([col, row], [col, row])]
                small, large = np.sqrt(np.linalg.eigvalsh(block))
                np.testing.assert_allclose([ellipse.width, ellipse.height],
                                           [2 * large, 2 * small], rtol=1e-10)
                np.testing.assert_allclose(ellipse.center,
                                           model.means_[k][[col, row]], rtol=1e-12)
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_inspect_and_diff_plot_more_than_two_features(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    data, a = _three_d(tmp_path)
    _, b = _three_d(tmp_path, shift=0.5)
    for argv in (["inspect", str(a), "--plot", str(tmp_path / "pairs.png"), "--data", str(data)],
                 ["inspect", str(a), "--plot", str(tmp_path / "two.png"), "--features", "0,2"],
                 ["diff", str(a), str(b), "--plot", str(tmp_path / "diff.png")]):
        assert main(argv) == 0
        assert (tmp_path / argv[argv.index("--plot") + 1]).read_bytes()[:8] == \
            b"\x89PNG\r\n\x1a\n"
    assert main(["inspect", str(a), "--plot", str(tmp_path / "x.png"), "--features", "0,3"]) == 1
    assert "features to plot must lie in 0..2" in capsys.readouterr().err


def test_score_refuses_a_header_in_another_order_than_the_fit_s(tmp_path, capsys):
    """The checkpoint kept no column names: a model fitted with --columns mem,cpu scored the
    same file without --columns in file order (cpu, mem), every surprise about 3,000 times
    too high, with exit 0."""
    data = tmp_path / "load.csv"
    data.write_text("cpu,mem\n1,100\n2,101\n3,99\n2,100\n1,102\n3,98\n")
    ckpt = tmp_path / "m.json"
    assert main(["fit", str(data), "-k", "1", "-o", str(ckpt), "--columns", "mem,cpu"]) == 0
    capsys.readouterr()
    assert main(["score", str(ckpt), str(data), "--columns", "mem,cpu"]) == 0
    explicit = capsys.readouterr().out
    assert main(["score", str(ckpt), str(data)]) == 1
    refused = capsys.readouterr()
    assert "its columns are cpu, mem; the model was fitted on mem, cpu: give --columns " \
        "mem,cpu" in refused.err and refused.out == ""  # (not even the CSV header)
    swapped = tmp_path / "swapped.csv"  # (the fit's order: scored as it is)
    swapped.write_text("mem,cpu\n100,1\n101,2\n99,3\n100,2\n102,1\n98,3\n")
    assert main(["score", str(ckpt), str(swapped)]) == 0
    assert capsys.readouterr().out == explicit
    plain = tmp_path / "plain.txt"  # (no header: columns by position, as before)
    plain.write_text("100,1\n101,2\n99,3\n100,2\n102,1\n98,3\n")
    assert main(["score", str(ckpt), str(plain)]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [
        line.replace(f"{n + 2},", f"{n + 1},", 1)
        for n, line in enumerate(explicit.splitlines()[1:])]
    assert main(["inspect", str(ckpt), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["feature_names"] == ["mem", "cpu"]


def test_titles_and_file_names_are_drawn_as_written(tmp_path, capsys):
    """matplotlib reads text between two dollar signs as mathematics: ``diff --plot`` of a
    file named ``a$x^$.json`` and ``timeline --title '$x^$'`` failed with a parser's trace."""
    pytest.importorskip("matplotlib")
    _, a = _three_d(tmp_path)
    odd = a.with_name("a$x^$.json")
    odd.write_bytes(a.read_bytes())
    for features in ("0,1", "0,1,2"):  # (one legend in the axes, one over the grid)
        assert main(["diff", str(odd), str(a), "--plot", str(tmp_path / "d.png"),
                     "--features", features]) == 0, capsys.readouterr().err
    data, scores = tmp_path / "d.txt", tmp_path / "s.csv"
    data.write_text("".join(f"{v}\n" for v in range(1, 31)))
    scores.write_text("".join(f"{line},0,0.5,1.0,0.25,0\n" for line in range(1, 31)))
    assert main(["timeline", str(data), str(scores), "-o", str(tmp_path / "t.png"),
                 "--title", "$x^$ and \\frac{"]) == 0, capsys.readouterr().err


def test_diff_draws_both_mixtures_overlaid(tmp_path):
    pytest.importorskip("matplotlib")
    from matplotlib.patches import Ellipse

    from emstream.plot import draw
    X = mixture_2d(1500, np.random.default_rng(4))
    a = GaussianMixture(3, random_state=0).fit(X)
    b = GaussianMixture(3, random_state=0).fit(X + [1.0, 0.0])
    fig = draw([a, b], labels=["A", "B"])
    ellipses = [p for p in fig.axes[0].patches if isinstance(p, Ellipse)]
    assert len(ellipses) == 2 * 3 * 2  # two mixtures, three components, 1 and 2 sd
    solid = [e.center for e in ellipses if e.get_linestyle() == "-"][::2]
    dashed = [e.center for e in ellipses if e.get_linestyle() == "--"][::2]
    np.testing.assert_allclose(solid, a.means_)
    np.testing.assert_allclose(dashed, b.means_)
    one = draw([a.fit(X[:, :1]), GaussianMixture(2, random_state=0).fit(X[:, :1] + 2)])
    assert [line.get_label() for line in one.axes[0].lines] == ["A", "B"]
    import matplotlib.pyplot as plt
    plt.close("all")


def test_many_features_ask_for_a_choice(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    X = np.random.default_rng(0).normal(size=(400, 9))
    data = tmp_path / "nine.csv"
    np.savetxt(data, X, delimiter=",")
    ck = tmp_path / "nine.json"
    assert main(["fit", str(data), "-k", "2", "-o", str(ck)]) == 0
    capsys.readouterr()
    assert main(["inspect", str(ck), "--plot", str(tmp_path / "p.png")]) == 1
    assert "choose at most 8 to plot (--features 0,1,...)" in capsys.readouterr().err
    assert main(["inspect", str(ck), "--plot", str(tmp_path / "p.png"), "--features",
                 "0,4,8"]) == 0


def test_a_data_file_after_an_option_is_taken(tmp_path, capsys):
    """``emstream score CKPT --format jsonl DATA`` failed with "unrecognized arguments: DATA"
    (argparse gives an optional positional nothing once an option follows the one before);
    likewise ``diff A --json B``.  Anything else left over is still refused."""
    model = tmp_path / "m.json"
    assert main(["fit", SEED, "-k", "2", "-o", str(model)]) == 0
    capsys.readouterr()
    assert main(["score", "--format", "jsonl", str(model), SEED]) == 0
    before = capsys.readouterr().out
    assert main(["score", str(model), "--format", "jsonl", SEED]) == 0
    assert capsys.readouterr().out == before and before.startswith('{"line": 1')
    # (a csv header asked for JSON lines was accepted and silently unused; found by a review)
    assert main(["score", str(model), "--format", "jsonl", "--header", SEED]) == 2
    assert "--header writes a csv header line" in capsys.readouterr().err
    assert main(["score", str(model), SEED]) == 0
    assert capsys.readouterr().out.startswith("line,label,probability,surprise\n")
    assert main(["score", str(model), "--no-header", SEED]) == 0
    assert capsys.readouterr().out.startswith("1,")
    other = tmp_path / "o.json"
    assert main(["fit", SEED, "-k", "3", "-o", str(other)]) == 0
    capsys.readouterr()
    assert main(["diff", str(model), "--json", str(other)]) == 0
    assert json.loads(capsys.readouterr().out)["divergence"] > 0
    for extra in (["--bogus", SEED], [SEED, "more"]):
        with pytest.raises(SystemExit) as usage:
            main(["score", str(model), *extra])
        assert usage.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err


def test_fit_refuses_a_column_twice_and_max_iter_0_before_it_fits(tmp_path, capsys):
    """--columns a,a (or 0,a: the same column) fitted a degenerate model of one column twice
    over; --max-iter 0 fitted, then failed when the model was saved."""
    data = tmp_path / "t.csv"
    data.write_text("a,b\n" + "".join(f"{i % 7},{i % 5}\n" for i in range(60)))
    out = tmp_path / "m.json"
    for argv in (["--columns", "a,a"], ["--max-iter", "0"]):
        with pytest.raises(SystemExit) as stop:
            main(["fit", str(data), "-k", "2", "-o", str(out), *argv])
        assert stop.value.code == 2
    assert main(["fit", str(data), "-k", "2", "--columns", "0,a", "-o", str(out)]) == 1
    assert "names a column twice" in capsys.readouterr().err
    assert not out.exists()


def test_score_of_a_file_without_a_fitted_column_does_not_suggest_it(tmp_path, capsys):
    """A file lacking one of the fit's columns was told to give --columns with it
    ("--columns a,b" for a file of column a alone)."""
    data = tmp_path / "two.csv"
    data.write_text("a,b\n" + "".join(f"{i % 7},{i % 5}\n" for i in range(60)))
    ckpt = tmp_path / "m.json"
    assert main(["fit", str(data), "-k", "2", "-o", str(ckpt)]) == 0
    one = tmp_path / "one.csv"
    one.write_text("a\n1\n2\n3\n")
    capsys.readouterr()
    assert main(["score", str(ckpt), str(one)]) == 1
    err = capsys.readouterr().err
    assert "the model was fitted on a, b: it has no b" in err and "--columns a,b" not in err


def test_score_with_its_standard_output_closed_says_so_in_one_line(tmp_path):
    """`emstream score CKPT DATA >&-`: an AttributeError traceback (None has no write)."""
    model = tmp_path / "seed.json"
    fitted = subprocess.run([sys.executable, "-m", "emstream", "fit", SEED, "-k", "3", "-o",
                             str(model)], capture_output=True, timeout=120)
    assert fitted.returncode == 0, fitted.stderr.decode()
    done = subprocess.run(f"{sys.executable} -m emstream score {model} {SEED} >&-", shell=True,
                          capture_output=False, stderr=subprocess.PIPE, timeout=120)
    assert done.returncode == 1 and b"Traceback" not in done.stderr, done.stderr
    assert b"standard output is closed" in done.stderr
