"""Hostile checkpoints (issue 16, item 11): whatever a checkpoint holds, loading it either gives
a model that scores finite values, or raises a one-line CheckpointError; nothing reads forever,
grows memory out of proportion, or makes the daemon trust bad metadata.

The fuzz takes real checkpoints (the daemon's, batch and online fits of each covariance type, a
model still warming up, a schema-1 state), replaces every field in turn by hostile values (wrong
types, null, 1e308, 10**400, negative numbers, "NaN" strings, wrong-length and nested-empty lists,
non-symmetric matrices), deletes it, and recomputes the checksum as the writer does: a forger's
file, not a damaged one.
"""

import collections
import copy
import hashlib
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from emstream import GaussianMixture, checkpoint
from emstream.checkpoint import CheckpointError
from emstream.state import from_dict, to_dict

from .conftest import ROOT, mixture_2d

DAEMON = [sys.executable, "-m", "emstreamd"]
CONFIG = str(ROOT / "config.yaml")
# Deeper than numpy's 64 dimensions, shallower than the JSON parser's recursion limit.
DEEP = json.loads("[" * 200 + "]" * 200)
# Replacements tried for every field.
HOSTILE = [None, True, 0, -1, 0.5, 1e308, 10**400, "NaN", "", [], [[]], [[[]]], {}, {"a": 1},
           [None], [[1e308]], [[] for _ in range(50)], DEEP]
# Replacements for an item inside an array (the array itself gets all of the above).
HOSTILE_ITEM = [None, True, -1, 1e308, 10**400, "NaN", [], [[]], {}]


def _env() -> dict:
    """The daemon's source root on the path, whether or not the package is installed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "daemon"), str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def _reseal(document: dict) -> bytes:
    """The document as a forger writes it: checksum recomputed the way the writer does."""
    content = checkpoint._canonical(document["content"])
    envelope = {key: value for key, value in document.items() if key != "content"}
    envelope["sha256"] = hashlib.sha256(content).hexdigest()
    # The canonical bytes are the content's JSON: reusing them saves encoding it twice.
    return json.dumps(envelope).encode()[:-1] + b', "content": ' + content + b"}"


# ---------------------------------------------------------------------------- mutations
def _fields(node, path=(), nested=False):
    """Every field's path: each key of each object; the first and last item of each array,
    the first item of each array inside it."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _fields(value, path + (key,))
    elif isinstance(node, list) and node:
        for index in [0] if nested else sorted({0, len(node) - 1}):
            yield from _fields(node[index], path + (index,), nested=True)


def _numeric(node):
    try:
        arr = np.array(node, dtype=float)
    except (TypeError, ValueError, OverflowError):
        return None
    return arr if arr.size and np.all(np.isfinite(arr)) else None


def _variants(node, item: bool) -> list:
    """Hostile replacements for one field (``item``: of an array), shaped after what it holds."""
    out = list(HOSTILE_ITEM if item else HOSTILE)
    if isinstance(node, bool):
        out += [not node, int(node)]
    elif isinstance(node, (int, float)):
        out += [-node, node + 1, node * 10, node * 1e300, str(node),
                float(node) if isinstance(node, int) else int(node)]
    elif isinstance(node, str):
        out += [node + "x", node.upper()]
    elif isinstance(node, dict):
        out += [{**node, "unexpected": 1}]
    elif isinstance(node, list) and node:
        out += [node[:-1], node + node[-1:], [node]]
        arr = _numeric(node)
        if arr is not None:
            for factor in (-1.0, 0.0, 1e-300, 1e99, 1e200):
                out.append((arr * factor).tolist())
            out.append(arr.T.tolist())
            flat = arr.copy().reshape(-1)
            flat[0] = -abs(flat[0]) - 1.0
            out.append(flat.reshape(arr.shape).tolist())
            if arr.ndim >= 2 and arr.shape[-1] == arr.shape[-2] >= 2:
                for bump in (1.0, 1e-3 * float(np.abs(arr).max())):
                    skew = arr.copy()
                    skew[..., 0, 1] += bump  # no longer symmetric
                    out.append(skew.tolist())
    return out


def _with(content: dict, path: tuple, value=None, delete: bool = False) -> dict:
    """``content`` with the field at ``path`` replaced (or deleted); other fields are shared."""
    top = copy.copy(content)
    parent = top
    for key in path[:-1]:
        parent[key] = copy.copy(parent[key])
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return top


def _mutations(content: dict, under: tuple):
    """(path, what, forged content) for every field below each path in ``under``."""
    for start in under:
        node = content
        for key in start:
            node = node[key]
        for path, value in _fields(node, start):
            yield from _forged(content, path, value)


def _forged(content: dict, path: tuple, node):
    for value in _variants(node, item=isinstance(path[-1], int)):
        yield path, repr(value)[:60], _with(content, path, value)
    if isinstance(path[-1], str):
        yield path, "<deleted>", _with(content, path, delete=True)


# ---------------------------------------------------------------------------- checks
def _scores_badly(model: GaussianMixture, X: np.ndarray) -> bool:
    if not model._is_fitted():  # still warming up: nothing to score yet
        return False
    scores, proba = model.score_samples(X), model.predict_proba(X)
    return not (np.all(np.isfinite(scores)) and np.all(np.isfinite(proba))
                and np.allclose(proba.sum(axis=1), 1.0))


def _usable(model: GaussianMixture, X: np.ndarray) -> str | None:
    """Why a loaded model is not usable (None if it is).  It must do what the daemon does next:
    score finite values, learn a mini-batch, score finite values again, and hold a state that
    loads again (its next checkpoint)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        if _scores_badly(model, X):
            return "loaded, then scores NaN or infinity"
        model.partial_fit(X[:50])
        if _scores_badly(model, X):
            return "loaded, then scores NaN or infinity after learning a mini-batch"
        from_dict(to_dict(model))  # raises if the next checkpoint would not load
    return None


def _fuzz(document: dict, X: np.ndarray, under: tuple) -> tuple[collections.Counter, list]:
    """Outcome counts (loaded and usable, clean CheckpointError, other) and the failures."""
    outcomes, failures = collections.Counter(), []
    for path, what, content in _mutations(document["content"], under):
        forged = {**document, "content": content}
        try:
            data = _reseal(forged)
        except ValueError:  # a field times 1e300 can be infinite: JSON has no such number
            outcomes["not JSON"] += 1
            continue
        field = ".".join(map(str, path))
        try:
            loaded = checkpoint.loads(data, source="forged.json")
        except CheckpointError as exc:
            if "\n" in str(exc) or not str(exc).startswith("forged.json: "):
                failures.append((field, what, f"message not one line: {exc}"))
                outcomes["other"] += 1
            else:
                outcomes["refused"] += 1
            continue
        except Exception as exc:  # noqa: BLE001 - exactly what must not happen
            failures.append((field, what, f"{type(exc).__name__}: {exc}"[:200]))
            outcomes["other"] += 1
            continue
        try:
            problem = _usable(loaded.model, X)
        except Exception as exc:  # noqa: BLE001
            problem = f"loaded, then {type(exc).__name__}: {exc}"[:200]
        if problem is None:
            outcomes["loaded"] += 1
        else:
            failures.append((field, what, problem))
            outcomes["other"] += 1
    return outcomes, failures


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def daemon_run(tmp_path_factory):
    """A real checkpoint of emstreamd after 800 two-feature lines; the data file; the rows."""
    folder = tmp_path_factory.mktemp("daemon")
    X = mixture_2d(800, np.random.default_rng(5))
    data = folder / "input.txt"
    data.write_text("".join(f"{a:.5f},{b:.5f}\n" for a, b in X))
    ck = folder / "state.json"
    done = subprocess.run([*DAEMON, "--config", CONFIG, "--input", str(data), "--checkpoint",
                           str(ck), "--no-output", "--set", "model.warmup_size=200"],
                          capture_output=True, timeout=120, env=_env())
    assert done.returncode == 0, done.stderr.decode()
    return ck, data, X


def _schema_1(document: dict) -> dict:
    """A schema-1 state (as written before the learner had a window), from a schema-2 one."""
    model = document["content"]["model"]
    online, batch = model["online"], model["batch"]
    stored = online["model"]
    fitted = {name: stored[name] for name in ("weights", "means", "covariances",
                                              "precisions_cholesky", "stats", "recent_counts")}
    fitted.update(t=online["t"], n_seen=online["n_seen"], n_updates=online["n_updates"],
                  converged=batch["converged"], n_iter=batch["n_iter"],
                  lower_bound=batch["lower_bound"], n_features_in=online["n_features"],
                  moved_online=online["moved_online"])
    params = {k: v for k, v in model["params"].items()
              if k not in ("outlier_gate", "averaging", "variance_floor")}
    old = copy.deepcopy(document)
    old["content"]["model"] = {"schema": "emstream.GaussianMixture/1", "params": params,
                               "warmup": None, "fitted": fitted}
    return old


def _base(name: str, daemon_run) -> tuple[dict, np.ndarray]:
    X = mixture_2d(600, np.random.default_rng(1))
    if name == "daemon":
        ck, _, rows = daemon_run
        document = json.loads(ck.read_bytes())
        # Only the model is forged here (the metadata is, below): a small stub of it is enough.
        document["content"]["meta"] = {"input": document["content"]["meta"]["input"]}
        window = document["content"]["model"]["online"]["window"]
        for key in ("rows", "times"):  # the last 20 rows: more would only cost time
            window[key] = window[key][-20:]
        return document, rows[:300]
    if name == "warming-up":
        model = GaussianMixture(2, warmup_size=500, random_state=0).partial_fit(X[:120])
    elif name == "schema-1":  # a batch fit, written as before the learner had a window
        model = GaussianMixture(3, warmup_size=200, random_state=np.random.RandomState(3)).fit(X)
    elif name == "online-diag":
        model = GaussianMixture(3, covariance_type="diag", warmup_size=200,
                                means_init=[[0, 0], [5, 1], [1, 6]],
                                random_state=np.random.default_rng(3)).fit(X)
        for start in range(0, 300, 100):
            model.partial_fit(X[start:start + 100])
    else:  # "tied" or "spherical", fitted online from the start
        model = GaussianMixture(3, covariance_type=name, warmup_size=200, random_state=0)
        for start in range(0, 400, 100):
            model.partial_fit(X[start:start + 100])
    document = json.loads(checkpoint.dumps(model, {"from": name}))
    online = document["content"]["model"]["online"]
    for key in ("rows", "times"):  # the last 20 rows: more would only cost time
        online["window"][key] = online["window"][key][-20:]
    if name == "schema-1":
        document = _schema_1(document)
    return document, X


# ---------------------------------------------------------------------------- the fuzz
# What is forged in each base: everything in the daemon's and in the schema-1 state (whose
# layout differs); elsewhere what depends on the covariance type or the warm-up (the
# parameters, schedule and upkeep are read the same way in every state).
MODEL = ("model",)
ONLINE_MODEL = ("model", "online", "model")
FORGED = {"daemon": [MODEL], "schema-1": [MODEL],
          "online-diag": [ONLINE_MODEL, ("model", "params", "means_init"),
                          ("model", "params", "random_state")],
          "tied": [ONLINE_MODEL], "spherical": [ONLINE_MODEL],
          "warming-up": [("model", "online", key) for key in ("warmup", "model", "n_seen")]}


@pytest.mark.parametrize("base", list(FORGED))
def test_every_forged_field_is_refused_cleanly_or_loads_a_usable_model(base, daemon_run):
    document, X = _base(base, daemon_run)
    checkpoint.loads(_reseal(copy.deepcopy(document)))  # the base itself is valid
    assert _usable(checkpoint.loads(_reseal(copy.deepcopy(document))).model, X) is None
    outcomes, failures = _fuzz(document, X, FORGED[base])
    print(f"\n{base}: {sum(outcomes.values())} mutations: {dict(outcomes)}")
    assert not failures, f"{len(failures)} of {sum(outcomes.values())}: {failures[:10]}"
    # The fuzz did reach both outcomes, on hundreds of fields.
    assert outcomes["refused"] > 500 and outcomes["loaded"] > 50


def test_forged_model_fields_are_named_in_one_line(daemon_run):
    document = json.loads(daemon_run[0].read_bytes())
    cases = [
        (("online", "model", "means"), [[1e300, 0.0]] * 3, "online.model.means"),
        (("online", "model", "stats", "counts"), [1e308, 0.0, 0.0], "online.model.stats.counts"),
        (("online", "model", "stats", "scatter"), [[[1.0, 5.0], [0.0, 1.0]]] * 3,
         "online.model.stats.scatter is not symmetric"),
        (("online", "model", "weights"), "NaN", "online.model.weights"),
        (("online", "window", "rows"), [[0.0, 0.0]] * 5000,
         "online.window.rows has 5000 entries, more than the 2000"),
        (("online", "far", "rows"), [[]] * 100_000, "too densely nested"),
        (("online", "moved_online"), "yes", "online.moved_online must be true or false"),
        (("params", "warmup_size"), 1, "params.warmup_size must be at least"),
        (("online", "n_seen"), 10**400, "online.n_seen"),
        (("online", "model", "covariances"), [[[1e300, 0.0], [0.0, 1e300]]] * 3,
         "online.model.covariances holds values beyond"),
        (("online", "model", "stats", "means"), [[1e99, 0.0]] * 3,
         "online.model.stats.means do not match online.model.iterate.means"),
        (("params", "n_init"), 10**9, "params: n_init must be an integer in [1, 1000]"),
        (("params", "reg_covar"), 1e308, "params: reg_covar must be a finite number in [0, "),
        (("params", "random_state"), 2**128, "random_state must be a non-negative integer"),
    ]
    for path, value, message in cases:
        content = _with(document["content"], ("model",) + path, value)
        with pytest.raises(CheckpointError) as info:
            checkpoint.loads(_reseal({**document, "content": content}), source="ck.json")
        assert message in str(info.value) and "\n" not in str(info.value)


def test_a_schema_1_warm_up_with_forged_rows_is_refused():
    model = GaussianMixture(2, warmup_size=500, random_state=0)
    old = {"schema": "emstream.GaussianMixture/1",
           "params": {k: v for k, v in to_dict(model)["params"].items()
                      if k not in ("outlier_gate", "averaging", "variance_floor")},
           "fitted": None, "warmup": {"n_features": 1, "rows": [[1.0], [2.0]]}}
    document = {"format": "emstream-checkpoint", "version": 1,
                "content": {"written_at": "now", "meta": {}, "model": old}}
    assert checkpoint.loads(_reseal(document)).model._learner().buffered == 2
    for rows, message in [(5, "warmup.rows must be a non-empty"), ([[1.0]] * 600,
                                                                  "online.warmup.rows has 600")]:
        old["warmup"]["rows"] = rows
        with pytest.raises(CheckpointError, match=message):
            checkpoint.loads(_reseal(document))


# ---------------------------------------------------------------------------- files
def _run_python(code: str, *args, timeout=30) -> subprocess.CompletedProcess:
    """A child process, so that a read that never ends fails the test instead of hanging it."""
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                          timeout=timeout, env=_env())


LOAD = ("import sys\nfrom emstream import checkpoint\ntry:\n    checkpoint.load(sys.argv[1])\n"
        "except checkpoint.CheckpointError as exc:\n    print(exc)\n    sys.exit(3)\n")


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "ck.json"
    os.mkfifo(path)
    return path


def test_dev_zero_fifo_and_directory_are_refused_before_reading(tmp_path, fifo):
    for path, kind in [("/dev/zero", "character device"), (fifo, "FIFO")]:
        done = _run_python(LOAD, str(path), timeout=20)  # would read forever or block
        assert done.returncode == 3, done.stderr.decode()
        assert f"{path}: is a {kind}" in done.stdout.decode()
    with pytest.raises(CheckpointError, match="is a directory"):
        checkpoint.read_file(tmp_path)
    with pytest.raises(CheckpointError, match="character device"):
        checkpoint.read_bytes("/dev/zero")


def test_a_fifo_in_a_checkpoint_directory_is_skipped(tmp_path):
    gm = GaussianMixture(2, random_state=0).fit(np.arange(30.0)[:, None])
    checkpoint.save(gm, tmp_path, meta={"i": 1})
    os.mkfifo(tmp_path / "checkpoint-00000002.json")
    loaded = checkpoint.load(tmp_path)
    assert loaded.meta == {"i": 1}
    assert "FIFO" in loaded.skipped[0][1]


def test_a_file_beyond_the_size_cap_is_refused_without_reading_it(tmp_path):
    big = tmp_path / "big.json"
    with open(big, "wb") as handle:
        handle.truncate(checkpoint.MAX_BYTES + 1)  # sparse: no disk space, no reading
    with pytest.raises(CheckpointError, match="too large for a checkpoint"):
        checkpoint.load(big)


def test_densely_nested_json_is_refused_before_it_is_parsed(tmp_path):
    hostile = tmp_path / "lists.json"
    hostile.write_bytes(b"[" + b"[]," * 8_000_000 + b"[]]")  # 24 MB; parsed: ~650 MB
    code = LOAD.replace("try:", "import resource\n"
                        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\ntry:")
    code += ("finally:\n    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before\n"
             "    print('grown_kib', grown)\n")
    done = _run_python(code, str(hostile))
    assert done.returncode == 3, done.stderr.decode()
    out = done.stdout.decode()
    assert "too densely nested" in out
    grown_kib = int(out.split("grown_kib")[1])
    assert grown_kib * 1024 < 2 * hostile.stat().st_size, out  # the bytes read, not 27 times


@pytest.fixture
def seed_ck(tmp_path):
    gm = GaussianMixture(2, random_state=0).fit(np.arange(30.0)[:, None])
    return checkpoint.save(gm, tmp_path / "seed.json")


def test_emstream_inspect_and_diff_refuse_devices_and_fifos_in_one_line(seed_ck, fifo, capsys):
    from emstream.cli import main

    for argv in (["inspect", "/dev/zero"], ["diff", str(seed_ck), "/dev/zero"],
                 ["score", "/dev/zero", os.devnull]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "/dev/zero: is a character device" in err
    for argv in (["inspect", str(fifo)], ["diff", str(fifo), str(seed_ck)]):
        done = subprocess.run([sys.executable, "-m", "emstream", *argv], capture_output=True,
                              timeout=30, env=_env())
        err = done.stderr.decode()
        assert done.returncode == 1 and err.count("\n") == 1, err
        assert f"{fifo}: is a FIFO" in err and "Traceback" not in err


# ---------------------------------------------------------------------------- daemon meta
def test_validate_meta_accepts_what_the_daemon_writes_and_names_bad_fields(daemon_run):
    meta = checkpoint.load(daemon_run[0]).meta
    assert checkpoint.validate_meta(meta) is meta
    assert checkpoint.validate_meta({"command": "fit", "source": {}}) == {"command": "fit",
                                                                         "source": {}}
    cases = [
        ({"counters": []}, "meta.counters must be an object"),
        ({"counters": {"rows": -1}}, "meta.counters.rows must be an integer"),
        ({"counters": {"rows": True}}, "meta.counters.rows"),
        ({"counters": {"rows": 1.5}}, "meta.counters.rows"),
        ({"counters": {"rejected": {"blank": -2}}}, "meta.counters.rejected['blank']"),
        ({"counters": {"rejected": []}}, "meta.counters.rejected must be an object"),
        ({"input": {**meta["input"], "offset": -1}}, "meta.input.offset"),
        ({"input": {**meta["input"], "offset": 2**64}}, "meta.input.offset"),
        ({"input": {**meta["input"], "next_line": 0}}, "meta.input.next_line"),
        ({"input": {**meta["input"], "kind": "socket"}}, "meta.input.kind"),
        ({"input": {**meta["input"], "fingerprint": 12}}, "meta.input.fingerprint"),
        ({"input": {**meta["input"], "fingerprint": "abc"}}, "meta.input.fingerprint"),
        ({"input": {**meta["input"], "fingerprint_bytes": -1}}, "meta.input.fingerprint_bytes"),
        ({"input": {**meta["input"], "fingerprint_bytes": 10**9}},
         "meta.input.fingerprint_bytes"),
        ({"input": {k: v for k, v in meta["input"].items() if k != "inode"}},
         "meta.input.inode is missing"),
        ({"input": {**meta["input"], "device": "sda"}}, "meta.input.device"),
        ({"input": []}, "meta.input must be an object"),
        ({"n_fields": 0}, "meta.n_fields"),
        ({"n_fields": "2"}, "meta.n_fields"),
        ({"history": {}}, "meta.history must be a list of objects"),
        ({"history": [1]}, "meta.history must be a list of objects"),
        ({"monitor": []}, "meta.monitor must be an object"),
        ([], "meta must be an object"),
    ]
    for bad, message in cases:
        with pytest.raises(CheckpointError) as info:
            checkpoint.validate_meta(bad, source="ck.json")
        text = str(info.value)
        assert text.startswith("ck.json: ") and message in text and "\n" not in text, text


def _fuzz_resume(document: dict, config: dict, data, paths, values, then):
    """Each value at each path of ``document``, resealed where ``config`` keeps its checkpoint,
    resumed (see :func:`_resume_forged`): the outcomes counted, and what went wrong."""
    target = config["checkpoint"]["path"]
    outcomes, failures = collections.Counter(), []
    for path in paths:
        for value in values:
            content = _with(document["content"], path, value)
            with open(target, "wb") as f:
                f.write(_reseal({**document, "content": content}))
            outcome, failure = _resume_forged(config, data, then)
            outcomes[outcome] += 1
            if failure is not None:
                failures.append((path, repr(value)[:60], failure))
    return outcomes, failures


def _read_on(daemon) -> None:
    """Run the resumed daemon to the end of its input (what it returns is its exit code)."""
    daemon.run()


def _resume_forged(config: dict, data, then) -> tuple[str, str | None]:
    """Resume a daemon on ``data`` from the (forged) checkpoint ``config`` names, then call
    ``then(daemon)``: ("refused", None) for a one-line CheckpointError, ("ran", what ``then``
    found wrong or None), or ("failed", the exception that must not happen)."""
    from emstreamd.loop import Daemon
    from emstreamd.sources import FileInput

    source = FileInput(str(data))
    try:
        daemon = Daemon(copy.deepcopy(config), source)
        daemon.resume()
        return "ran", then(daemon)
    except CheckpointError as exc:
        assert "\n" not in str(exc)
        return "refused", None
    except Exception as exc:  # noqa: BLE001 - exactly what must not happen
        return "failed", f"{type(exc).__name__}: {exc}"[:200]
    finally:
        source.close()


def test_forged_meta_fields_never_crash_the_daemons_resume(daemon_run, tmp_path):
    """Every field the daemon reads back, forged: resume either refuses the checkpoint with
    a CheckpointError or resumes with counters and a position that make sense."""
    from emstreamd import config as config_module

    ck, data, _ = daemon_run
    document = json.loads(ck.read_bytes())
    window = document["content"]["model"]["online"]["window"]
    for key in ("rows", "times"):  # the last 20 rows: more would only cost time
        window[key] = window[key][-20:]
    target = tmp_path / "forged.json"
    config = config_module.load(CONFIG, [("checkpoint", "path", str(target)),
                                         ("model", "warmup_size", 200)])
    meta = document["content"]["meta"]
    paths = [("meta", key) for key in ("counters", "input", "n_fields", "history", "monitor")]
    paths += [("meta", "counters", key) for key in meta["counters"]]
    paths += [("meta", "input", key) for key in meta["input"]]
    values = [None, True, -1, 0.5, 2**63, 10**400, "x", [], {}, [1], {"a": -1}]

    def sane(daemon):
        counters = [v for k, v in daemon.counters.items() if k != "rejected"]
        counters += list(daemon.counters.get("rejected", {}).values())
        if not all(isinstance(c, int) and c >= 0 for c in counters) or not (
                0 <= daemon.source.offset and daemon.position.next_line >= 1):
            return (f"resumed with {daemon.counters}, offset {daemon.source.offset}, "
                    f"line {daemon.position.next_line}")
        return None

    outcomes, failures = _fuzz_resume(document, config, data, paths, values, sane)
    assert not failures, failures[:10]
    assert outcomes["refused"] > 50 and outcomes["ran"] > 5


def _daemon_error(*args, timeout=60) -> str:
    done = subprocess.run([*DAEMON, "--config", CONFIG, "--no-output", *args],
                          capture_output=True, timeout=timeout, env=_env())
    err = done.stderr.decode()
    assert done.returncode not in (0, None) and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("edit, message", [
    (lambda meta: meta.update(counters=[]), "meta.counters must be an object"),
    (lambda meta: meta["input"].update(offset=-1), "meta.input.offset must be an integer"),
], ids=["counters=[]", "offset=-1"])
def test_the_daemon_refuses_forged_meta_with_a_clear_error(daemon_run, tmp_path, edit, message):
    ck, data, _ = daemon_run
    document = json.loads(ck.read_bytes())
    edit(document["content"]["meta"])
    forged = tmp_path / "forged.json"
    forged.write_bytes(_reseal(document))
    err = _daemon_error("--input", str(data), "--checkpoint", str(forged))
    assert f"{forged}: {message}" in err


def test_the_daemon_refuses_a_device_or_fifo_as_its_checkpoint(daemon_run, fifo):
    _, data, _ = daemon_run
    for path, kind in [("/dev/zero", "character device"), (fifo, "FIFO")]:
        err = _daemon_error("--input", str(data), "--checkpoint", str(path), timeout=30)
        assert f"{path}: is a {kind}" in err, err



def test_a_model_of_another_width_is_refused_in_one_line(tmp_path):
    """A checkpoint ``emstream fit`` wrote for rows of two values (it names no input) resumed on
    a stream of one: exit 65 and one line, not a traceback at the first mini-batch."""
    from emstream.cli import main

    rng = np.random.default_rng(9)
    (tmp_path / "two.txt").write_text("".join(f"{a:.4f} {b:.4f}\n"
                                              for a, b in rng.normal(size=(300, 2))))
    (tmp_path / "one.txt").write_text("".join(f"{a:.4f}\n" for a in rng.normal(size=300)))
    assert main(["fit", str(tmp_path / "two.txt"), "-k", "2", "-o",
                 str(tmp_path / "two.json")]) == 0
    done = subprocess.run([*DAEMON, "--config", CONFIG, "--no-output", "--input",
                           str(tmp_path / "one.txt"), "--checkpoint", str(tmp_path / "two.json")],
                          capture_output=True, timeout=60, env=_env())
    err = done.stderr.decode()
    assert done.returncode == 65 and "Traceback" not in err, err
    assert "the checkpoint's model takes 2" in err.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def series_run(tmp_path_factory):
    """A real checkpoint of emstreamd part-way through a CSV time series (a layout, temporal
    features, episodes in its state); the file then grows, so a resume reads on."""
    folder = tmp_path_factory.mktemp("series")
    rng = np.random.default_rng(3)
    t = np.arange(1400)
    values = 10 + 3 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 0.5, t.size)
    stamps = np.datetime64("2024-01-01T00:00") + t * np.timedelta64(5, "m")
    lines = [f"{str(s).replace('T', ' ')},{v:.3f}\n" for s, v in zip(stamps, values)]
    data = folder / "series.csv"
    data.write_text("timestamp,value\n" + "".join(lines[:1000]))
    ck = folder / "state.json"
    done = subprocess.run([*DAEMON, "--config", CONFIG, "--input", str(data), "--checkpoint",
                           str(ck), "--no-output"], capture_output=True, timeout=120, env=_env())
    assert done.returncode == 0, done.stderr.decode()
    with open(data, "a") as f:
        f.write("".join(lines[1000:]))
    return ck, data


def test_forged_layout_and_series_state_never_crash_the_daemon(series_run, tmp_path):
    """The input layout and the series' temporal features and episodes, forged one field at a
    time: the daemon refuses the checkpoint in one line (exit 65) or resumes and reads on;
    never a traceback.  (Six such fields, among them layout.value_fields = [] and
    series.features.season_ = -1, resumed and then crashed in the parser or the features.)"""
    from emstreamd import config as config_module

    ck, data = series_run
    document = json.loads(ck.read_bytes())
    meta = document["content"]["meta"]
    paths = [("meta", "layout", key) for key in meta["layout"]]
    paths += [("meta", "series", "features", key) for key in meta["series"]["features"]]
    paths += [("meta", "series", "episodes", key) for key in meta["series"]["episodes"]]
    paths += [("meta", "series", "features", "history", -1, 0)]
    # (10**400: an integer beyond any float, a period or time step that raised
    # OverflowError, a traceback; found by an attack helper)
    values = [None, True, -1, 0, 1e-320, 1e308, 10**19, 10**400, "x", [], [1], {}]
    target = tmp_path / "forged.json"
    config = config_module.load(CONFIG, [("checkpoint", "path", str(target)),
                                         ("output", "per_point", False)])
    outcomes, failures = _fuzz_resume(document, config, data, paths, values, _read_on)
    assert not failures, failures[:10]
    assert outcomes["refused"] > 50 and outcomes["ran"] > 20


@pytest.mark.parametrize("field", ["period", "start"])
def test_inspect_of_a_feature_state_beyond_any_float_names_no_traceback(series_run, tmp_path,
                                                                        capsys, field):
    """A features' period of 10**400 (an integer JSON reads exactly) raised OverflowError in
    emstream inspect, which names the model's features (found by an attack helper)."""
    from emstream.cli import main as emstream_main

    ck, _ = series_run
    document = json.loads(ck.read_bytes())
    features = document["content"]["meta"]["series"]["features"]
    assert features.get(field) is not None  # (a timed series: its season goes by time)
    features[field] = 10**400
    target = tmp_path / "forged.json"
    target.write_bytes(_reseal(document))
    assert emstream_main(["inspect", str(target), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["n_features"] >= 2
