"""The `emstream` command: fit, score, inspect, diff; exit codes and messages."""

import json
import subprocess
import sys

import numpy as np
import pytest

from emstream import checkpoint
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


@pytest.mark.parametrize("argv, message", [
    (["inspect", "/nonexistent/ck.json"], "no such file"),
    (["fit", "/nonexistent/data.txt", "-k", "2", "-o", "x.json"], "cannot open"),
    (["score", SEED, SEED], "not valid JSON"),
])
def test_bad_files_exit_1_with_one_line_and_no_traceback(argv, message):
    done = subprocess.run([sys.executable, "-m", "emstream", *argv], capture_output=True,
                          text=True)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and message in done.stderr
    assert "Traceback" not in done.stderr


def test_usage_errors_exit_2_and_every_subcommand_has_help():
    done = subprocess.run([sys.executable, "-m", "emstream", "fit", SEED], capture_output=True,
                          text=True)
    assert done.returncode == 2 and "required" in done.stderr
    for sub in ("fit", "score", "inspect", "diff"):
        helped = subprocess.run([sys.executable, "-m", "emstream", sub, "--help"],
                                capture_output=True, text=True)
        assert helped.returncode == 0 and "usage: emstream " + sub in helped.stdout


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


def test_plot_without_matplotlib_says_how_to_get_it(seed_checkpoint, tmp_path, capsys,
                                                    monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["inspect", str(seed_checkpoint), "--plot", str(tmp_path / "p.png")]) == 1
    assert "pip install 'emstream[plot]'" in capsys.readouterr().err
