"""config.yaml is complete and valid for the daemon and for GaussianMixture; bad values and
hostile YAML are refused at start, in one line naming the key."""

import resource
import time

import numpy as np
import pytest
import yaml

from emstream import GaussianMixture
from emstreamd import config as daemon_config

from .conftest import ROOT, mixture_1d


def _shipped():
    with open(ROOT / "config.yaml", encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def test_model_section_builds_a_valid_estimator():
    model = daemon_config.model_settings(daemon_config.validate(_shipped()))
    gm = GaussianMixture(**model)
    assert gm.get_params()["n_components"] == model["n_components"]
    X = mixture_1d(3000, np.random.default_rng(0))
    gm.partial_fit(X[:1500]).partial_fit(X[1500:])  # validates every parameter on the way
    assert gm.n_seen_ == 3000


def test_shipped_file_sets_every_daemon_key():
    shipped = _shipped()
    for section, keys in daemon_config.DEFAULTS.items():
        if section != "model":
            assert set(shipped[section]) == set(keys), section
    assert daemon_config.validate(shipped)["batch"]["max_rows"] == 1000


@pytest.mark.parametrize("override, message", [
    ("batch.max_rows=0", "batch.max_rows must be an integer >= 1"),
    ("output.format=xml", "output.format must be csv or jsonl"),
    # (the daemon's bound, not the library's 10,000; found by an attack helper)
    ("model.n_components=0", r"model.n_components must be an integer in \[1, 100\], got 0"),
    ("model.reg_covar=Auto", "model.reg_covar must be auto or a finite number"),
    ("model.n_componets=3", "unknown key\\(s\\) in model: n_componets"),
    ("output.per_point=yes", "output.per_point must be true or false, got 'yes'"),
    ("model.outlier_gate=wide",
     "model: outlier_gate must be a finite number > 0, \"auto\" or null"),
    ("model.n_compnents=3", "model: .*n_compnents"),
    ("batch.max_rowz=3", "unknown key"),
    ("input.columns=[-1]", "input.columns"),
    ("nonsense", "--set wants section.key=value"),
    ("refit.scheduler=ftp://host", "refit.scheduler must be null, a dask scheduler address"),
    ("refit.scheduler=local:0", "refit.scheduler must be"),
    ("refit.scheduler=tcp://", "refit.scheduler must be null, a dask scheduler address"),
    ("refit.scheduler=tcp://host:99999", "refit.scheduler must be"),
    ("refit.scheduler=local:１", "refit.scheduler must be"),
    ("refit.scheduler=local:99999999999", r"local:N with N from 1 to 256"),
    # (these passed the check and failed at every refit; found by an attack helper)
    ("refit.scheduler=inproc://x", r"inside one process only"),
    ("refit.scheduler=tcp://127.0.0.1:8786/../x", r"nothing after host:port wanted"),
    ("refit.scheduler=tls://127.0.0.1:8786", r"tls:// needs dask's TLS settings"),
    ("drift.detector=cusum", "drift.detector must be page-hinkley, adwin or null"),
    ("drift.block=0", "drift.block must be an integer >= 1"),
    ("model.outlier_gate=-1", "model: outlier_gate"),
    ("output.anomaly_quantile=0.001", "output.anomaly_quantile is no longer used"),
    ("output.anomaly_threshold=2", "output.anomaly_threshold must be a score in"),
    ("features.season=0", "features.season must be"),
    ("input.timestamp=[1]", "input.timestamp must be"),
    ("output.episode_hold=week", "output.episode_hold must be day or a number of points"),
    ("output.episode_hold=-1", "output.episode_hold must be day or a number of points"),
    ("output.episode_hold=true", "output.episode_hold must be day or a number of points"),
    ("model.warmup_size=2", r"model.warmup_size must be at least model.n_components \(3\)"),
    ("model.max_iter=0", "model.max_iter must be at least 1"),
    # (the detector's own message, which said "drift: page-hinkley has no argument(s) a")
    ("drift.params={a: 1}", "drift.params: page-hinkley has no argument"),
    ("input.columns=[0,0]", "input.columns must be null or a list of distinct"),
    ("input.columns=[value,value]", "input.columns must be null or a list of distinct"),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(daemon_config.ConfigError, match=message):
        daemon_config.load(str(ROOT / "config.yaml"),
                           [daemon_config.parse_override(override)])


def test_the_shipped_threshold_is_the_librarys_default():
    """One anomaly threshold: the daemon's config and the library's Episodes, timeline and
    ``emstream timeline`` agree (the value was chosen on the NAB kit; see config.yaml)."""
    from emstream.episodes import DEFAULT_THRESHOLD, Episodes

    shipped = daemon_config.load(str(ROOT / "config.yaml"))["output"]["anomaly_threshold"]
    assert shipped == DEFAULT_THRESHOLD == Episodes().threshold


def test_config_yaml_is_the_schema_rendered():
    """The repository's and the package's config.yaml are the schema (defaults, documentation)
    rendered: they cannot drift from what the daemon checks and uses."""
    from emstreamd import schema

    for path in (ROOT / "config.yaml", ROOT / "daemon" / "emstreamd" / "config.yaml"):
        assert path.read_text(encoding="utf-8") == schema.render(), (
            f"{path} is stale: python -m emstreamd.schema > config.yaml && "
            "cp config.yaml daemon/emstreamd/config.yaml")
    assert yaml.safe_load(schema.render()) == schema.defaults() == daemon_config.DEFAULTS


def test_every_key_of_the_schema_has_a_check_and_documentation():
    from emstreamd import schema

    for section in schema.SECTIONS:
        for key in section.keys:
            name = f"{section.name}.{key.name}"
            assert key.doc.strip(), f"{name} is not documented"
            # Model keys are GaussianMixture's, checked by it (the section's check).
            assert key.check is not None or section.check is not None, name
            if key.check is not None:
                key.check(name, key.default)  # the default passes its own check
    # The rendered file says "(live)" exactly for the keys SIGHUP changes.
    section, said = None, set()
    lines = schema.render().splitlines()
    for above, line in zip(lines, lines[1:]):
        if line and not line.startswith(" "):
            section = line.rstrip(":")
        elif line.startswith("  ") and not line.startswith("  #") and above.endswith("(live)"):
            said.add((section, line.split(":")[0].strip()))
    assert said == {(s, k) for s, keys in daemon_config.LIVE.items() for k in keys}
    assert daemon_config.LIVE["output"] == {"anomaly_threshold", "episode_hold"}


def test_checks_tell_true_from_one():
    with pytest.raises(daemon_config.ConfigError, match="features.enabled must be auto, true"):
        daemon_config.validate({"features": {"enabled": 1}})  # (old code: taken as true)


def test_without_a_file_the_shipped_defaults_apply_and_a_partial_file_keeps_the_rest(tmp_path):
    assert daemon_config.load(None) == daemon_config.validate(_shipped())
    assert daemon_config.load(None)["model"]["n_components"] == 3
    partial = tmp_path / "partial.yaml"
    partial.write_text("batch:\n  max_rows: 50\nmodel:\n  n_components: 2\n")
    config = daemon_config.load(str(partial))
    assert config["batch"] == {**_shipped()["batch"], "max_rows": 50}
    assert config["model"] == {**_shipped()["model"], "n_components": 2}


@pytest.mark.parametrize("overrides, message", [
    (["input.format=jsonl", "input.fields=[a]", "input.columns=[b, 7]"],
     "input.columns picks a table's columns: JSON lines name theirs in input.fields"),
    (["drift.detector=null", "drift.params={no_such_argument: 1}"],
     "drift.params gives the detector's arguments, and drift.detector is null"),
    (["output.format=jsonl", "output.header=true"],
     "output.header writes a csv header line: JSON lines name their fields"),
    (["input.format=jsonl", "input.fields=[v]", "input.key=date", "input.timestamp=date"],
     "input.timestamp 'date' is also input.key"),
])
def test_settings_that_would_go_unused_are_refused(overrides, message):
    """Accepted and silently unused (found by an attack helper)."""
    with pytest.raises(daemon_config.ConfigError, match=message):
        daemon_config.load(None, [daemon_config.parse_override(o) for o in overrides])


@pytest.mark.parametrize("overrides, message", [
    (["output.calibration_window=10"], "a window of 99 points or more reaches it"),
    (["output.calibration_window=98"], "a window of 99 points or more reaches it"),
    (["output.anomaly_threshold=1"], "a threshold below 1 is wanted"),
    (["output.calibration_window=1000", "output.anomaly_threshold=0.9999995"],
     "a window of 1414 points or more reaches it")])
def test_a_threshold_the_calibrated_score_can_never_reach_is_refused(overrides, message):
    """A score is at most 1 - 1/(n + 1)² for a history of n surprises: windows of 10 to 98
    were accepted and never flagged anything at the default threshold, nor a threshold of 1
    at any window (found by an attack helper)."""
    with pytest.raises(daemon_config.ConfigError, match="can never be reached") as refused:
        daemon_config.load(None, [daemon_config.parse_override(o) for o in overrides])
    assert message in str(refused.value)
    daemon_config.load(None, [daemon_config.parse_override("output.calibration_window=99")])


def test_a_restart_whose_threshold_the_checkpoint_s_window_cannot_reach_stops(tmp_path):
    """A restart raising calibration_window (kept by the checkpoint's model, as it began) and
    the threshold with it: the threshold was taken, the window not, and nothing was ever
    flagged again, exit 0 (found by an attack helper).  Now one line and exit 78."""
    import subprocess
    import sys

    data = tmp_path / "data.txt"
    data.write_text("".join(f"{v:.4f}\n" for v in np.random.default_rng(0).normal(size=1500)))
    command = [sys.executable, "-m", "emstreamd", "--config", str(ROOT / "config.yaml"),
               "--input", str(data), "--checkpoint", str(tmp_path / "state"), "--no-output"]
    assert subprocess.run(command, capture_output=True, timeout=120).returncode == 0
    done = subprocess.run([*command, "--set", "output.calibration_window=100000", "--set",
                           "output.anomaly_threshold=0.9999999"], capture_output=True,
                          timeout=120)
    assert done.returncode == 78, done.stderr.decode()
    assert ("can never be reached with the calibration window the checkpoint's model keeps, "
            "1000") in done.stderr.decode()


NON_FINITE = [".inf", "-.inf", ".nan"]


@pytest.mark.parametrize("key", ["checkpoint.every_seconds", "batch.max_wait",
                                 "status.every_seconds", "refit.wait_at_exit"])
@pytest.mark.parametrize("value", NON_FINITE)
def test_seconds_must_be_finite(key, value):
    with pytest.raises(daemon_config.ConfigError, match=f"^{key} must be a finite number"):
        daemon_config.load(None, [daemon_config.parse_override(f"{key}={value}")])


@pytest.mark.parametrize("override, message", [
    ("refit.window=1000000000000000000000000000000", "refit.window must be at most 100,000,000"),
    ("drift.block=1000000000000000000000000000000", "drift.block must be at most 1,000,000"),
    ("model.n_init=1000000000000000000000000000000",
     r"model: n_init must be an integer in \[1, 1000\]"),
    ("model.n_components=100000", r"model.n_components must be an integer in \[1, 100\]"),
    # (10,000 components: the warm-up never ended, deaf to SIGTERM; found by an attack helper)
    ("model.n_components=101", r"model.n_components must be an integer in \[1, 100\]"),
    ("batch.max_rows=1e30", "batch.max_rows must be an integer"),
    ("features.lags=1000000", "features.lags must be at most 100"),
    ("features.season=1000000000", "features.season must be"),
    ("metrics.port=65536", "metrics.port must be at most 65,535"),
    ("metrics.address=", "metrics.address must be a non-empty string"),
    ("metrics.address=[1]", "metrics.address must be a non-empty string"),
    ("input.fields=[1, 2]", "input.fields must be null or a list of distinct field names"),
    ("input.fields=[a, a]", "input.fields must be null or a list of distinct field names"),
    ("input.fields=a", "input.fields must be null or a list"),
    ("input.dead_letter=[x]", "input.dead_letter must be null or a non-empty string"),
    ("input.dead_letter=''", "input.dead_letter must be null or a non-empty string"),
    ("output.path=", "output.path must be a non-empty string"),
    ("checkpoint.path=7", "checkpoint.path must be a non-empty string"),
    ("model.weights_init=[1]", r"model: weights_init must have shape \(3,\)"),
    ("model.weights_init=[0.5, 0.5, .nan]", "model: weights_init must hold finite values"),
    ("model.means_init=[[1], [2, 3], [4]]", "model.means_init must be a .*list of numbers"),
    ("model.means_init=[[1], [2], [x]]", "model.means_init must be a .*list of numbers"),
    ("model.means_init=[1, 2, 3]", r"model: means_init must have shape \(3, 1\)"),
    ("model.precisions_init=[[[1]], [[-1]], [[1]]]", "model: precisions_init must be positive"),
    ("drift.params={delta: .inf}", "drift.params.delta must be finite"),
    ("drift.memory=1", "drift.memory must be an integer >= 2"),
])
def test_values_that_used_to_fail_later_are_refused_now(override, message):
    with pytest.raises(daemon_config.ConfigError, match=message) as caught:
        daemon_config.load(None, [daemon_config.parse_override(override)])
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 200


@pytest.mark.parametrize("override, message", [
    ("model.means_init=[[{huge}], [2], [3]]", "model.means_init must be a .*list"),
    ("model.weights_init=[{huge}, 1, 1]", "model.weights_init must be a .*list"),
    ("drift.params={{min_instances: {huge}}}", "drift.params: "),
], ids=["means_init", "weights_init", "drift.params"])
def test_an_integer_beyond_float_is_a_configuration_error(override, message):
    """A 400-digit integer overflowed float() with a traceback (exit 1, not 78; on SIGHUP the
    daemon died without a final checkpoint)."""
    with pytest.raises(daemon_config.ConfigError, match=message) as caught:
        daemon_config.load(None, [daemon_config.parse_override(override.format(huge="1" * 400))])
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 200


def test_consistent_initial_values_are_accepted():
    config = daemon_config.load(None, [daemon_config.parse_override(text) for text in (
        "model.weights_init=[0.2, 0.3, 0.5]", "model.means_init=[[0, 1], [2, 3], [4, 5]]",
        "model.precisions_init=[[[1, 0], [0, 1]], [[2, 0], [0, 2]], [[1, 0.5], [0.5, 1]]]")])
    assert config["model"]["means_init"] == [[0, 1], [2, 3], [4, 5]]


def test_keys_that_are_not_strings_are_named_not_a_crash(tmp_path):
    odd = tmp_path / "odd.yaml"
    odd.write_text("batch:\n  1: 2\n  max_rows: 5\n3: {}\n")
    with pytest.raises(daemon_config.ConfigError, match="unknown section.*3"):
        daemon_config.load(str(odd))


def _bomb(levels: int = 9) -> str:
    """The 'billion laughs' in YAML: ten lines, 9**levels strings once expanded."""
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + f"\ninput:\n  fields: *a{levels}\n"


def test_an_alias_bomb_is_refused_cheaply(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(_bomb())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.thread_time()  # a hang guard: expanding the bomb would take hours of CPU
    with pytest.raises(daemon_config.ConfigError, match="more than 1,000,000 values once its "
                       "aliases are expanded"):
        daemon_config.load(str(bomb))
    assert time.thread_time() - start < 10
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB
    flow = ", ".join(["&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"] + [
        f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)])
    with pytest.raises(daemon_config.ConfigError, match="^--set input.fields: more than"):
        daemon_config.parse_override(f"input.fields=[{flow}]")


@pytest.mark.parametrize("text, message", [
    # (PyYAML 6.0.4 has a nesting limit of its own and stops first: one line either way)
    ("input:\n  fields: " + "[" * 100_000 + "]" * 100_000 + "\n",
     "nested deeper than 64|exceeded maximum nesting depth"),
    ("input:\n  fields: &x [a, *x]\n", "the alias \\*x refers to itself or to nothing"),
    ("input:\n  fields: !!python/object/apply:os.system [echo hi]\n",
     r"line 2, column 11: the tag !!python/object/apply:os.system is not allowed"),
    ("batch: [this is not a mapping\n", "not valid YAML: line 2"),
    ("a: 1\n---\nb: 2\n", "expected a single document"),
    ("# " + "x" * (5 << 20) + "\n", "more than a configuration holds"),
    # The last of two sections silently won: the first one's settings were dropped.
    ("model:\n  n_components: 5\n\nmodel:\n  warmup_size: 2000\n",
     "line 4, column 1: while reading a mapping: 'model' is given twice \\(first on line 1\\)"),
    ("batch:\n  max_rows: 10\n  max_rows: 20\n", "'max_rows' is given twice"),
    # An explicit tag on a value it cannot build: PyYAML's constructors raised Python's own
    # errors, a traceback and exit 1 instead of one line and exit 78.
    *[(f"batch:\n  max_rows: {value}\n", "a tagged value that cannot be read")
      for value in ("!!int 1e3", "!!float 0,5", "!!float", "!!int 0x", "!!bool maybe",
                    "!!timestamp notatime", "!!timestamp 2020-13-45", "!!map [1]",
                    "!!set [1]", "!<tag:yaml.org,2002:int> 1e3")],
])
def test_hostile_yaml_is_one_line_naming_the_file(tmp_path, text, message):
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    with pytest.raises(daemon_config.ConfigError, match=message) as caught:
        daemon_config.load(str(path))
    assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)


def test_numbers_are_read_as_people_write_them(tmp_path):
    """``1e-4`` is a number (YAML 1.1 read it as text, which a setting then refused as "not a
    finite number, got '1e-4'"), ``010`` is ten (not octal eight); a time-like ``1:30`` is
    text, not ninety; merge keys still override."""
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  reg_covar: 1e-4\n  n_components: 010\nbatch:\n"
                    "  max_wait: 5E-1\n")
    config = daemon_config.load(str(path))
    assert config["model"]["reg_covar"] == 1e-4 and config["batch"]["max_wait"] == 0.5
    assert config["model"]["n_components"] == 10
    assert daemon_config.load(None, [daemon_config.parse_override("model.tol=1e-6")])[
        "model"]["tol"] == 1e-6
    from emstreamd import safeyaml

    assert safeyaml.load("a: 1:30\nb: 0x1F\nc: -.5\nd: .inf\ne: true\nf: 1_000") == {
        "a": "1:30", "b": 31, "c": -0.5, "d": float("inf"), "e": True, "f": 1000}


def test_only_true_and_false_are_booleans_as_in_yaml_1_2():
    """YAML 1.1's yes, no, on and off were booleans: a column named "no" or "on" could not be
    input.key ("must be a column name ... got False"; found by an attack helper)."""
    from emstreamd import safeyaml

    assert safeyaml.load("a: [yes, no, on, off, Yes, OFF]\nb: [true, False, TRUE]") == {
        "a": ["yes", "no", "on", "off", "Yes", "OFF"], "b": [True, False, True]}
    config = daemon_config.load(None, [daemon_config.parse_override("input.key=no")])
    assert config["input"]["key"] == "no"
    with pytest.raises(daemon_config.ConfigError, match="averaging must be True or False"):
        daemon_config.load(None, [daemon_config.parse_override("model.averaging=yes")])
    # --check-config's YAML reads back as it was
    assert safeyaml.load(safeyaml.dump({"key": "no", "flag": False})) == {"key": "no",
                                                                         "flag": False}
    assert safeyaml.load("x: &m {a: 1, b: 2}\ny:\n  <<: *m\n  b: 3") == {
        "x": {"a": 1, "b": 2}, "y": {"a": 1, "b": 3}}


def test_a_file_that_is_not_utf8_or_is_empty(tmp_path):
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"batch:\n  max_rows: 5 # \xe9\n")
    with pytest.raises(daemon_config.ConfigError, match="not UTF-8 text"):
        daemon_config.load(str(latin))
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert daemon_config.load(str(empty)) == daemon_config.load(None)


# Values some keys accept by design: booleans, and free text (paths, names, addresses).
_VALID_BY_DESIGN = {True: {("model", "averaging"), ("features", "enabled"),
                           ("features", "volatility"), ("features", "calendar"),
                           ("output", "per_point"), ("output", "header"), ("output", "cut_back"),
                           ("input", "day_first")},
                    "free text": {("input", "timestamp"), ("input", "dead_letter"),
                                  ("input", "key"), ("checkpoint", "path"), ("output", "path"),
                                  ("metrics", "address")}}


def test_every_key_of_the_shipped_config_is_validated():
    """Each documented key refuses a value of the wrong shape with a ConfigError naming it
    (never a crash, never silently kept): the shipped config.yaml is the schema's list of
    keys, and the checks cover all of it."""
    from emstreamd import config as config_module

    for section, keys in config_module.DEFAULTS.items():
        for key in keys:
            for bad in ([[1]], {"a": 1}, -7.5, True, "free text"):
                if not isinstance(bad, (list, dict)) and (section, key) in \
                        _VALID_BY_DESIGN.get(bad, ()):
                    continue
                with pytest.raises(config_module.ConfigError):
                    config_module.validate({section: {key: bad}})


def test_the_daemon_modules_examples_run():
    """The ``>>>`` examples in emstreamd's docstrings (pytest's --doctest-modules covers only
    the emstream package)."""
    import doctest
    import importlib
    import pkgutil

    import emstreamd

    ran = 0
    for module in pkgutil.iter_modules(emstreamd.__path__):
        if module.name == "__main__":
            continue
        result = doctest.testmod(importlib.import_module(f"emstreamd.{module.name}"),
                                 optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0, module.name
        ran += result.attempted
    assert ran >= 17


def test_a_huge_model_value_is_cut_in_its_message():
    """The estimator's message shows the whole value: a 5,000-character (or 3 MB) setting
    made a line as long, in the log of every SIGHUP."""
    with pytest.raises(daemon_config.ConfigError, match="model: covariance_type") as error:
        daemon_config.load(str(ROOT / "config.yaml"),
                           [daemon_config.parse_override("model.covariance_type=" + "x" * 5000)])
    assert len(str(error.value)) < 400


def test_a_set_value_that_is_not_utf8_says_so():
    """Bytes of another encoding on the command line (Python escapes them in argv) gave "not
    valid YAML: a tagged value that cannot be read (UnicodeEncodeError ...)"."""
    with pytest.raises(daemon_config.ConfigError, match="not UTF-8 text"):
        daemon_config.parse_override("batch.max_wait=\udcff")


def test_a_section_that_is_no_mapping_says_what_was_found():
    """A half-written file (``output:`` then a key cut short) was refused as "section 'output'
    must be a mapping", which names neither what was found nor why (found by an attack
    helper)."""
    with pytest.raises(daemon_config.ConfigError, match=r"section 'output' must be a mapping of "
                       r"its keys \(indented key: value lines\), got 'anomaly_thr' \(a file "
                       r"cut short\?\)"):
        daemon_config.validate({"output": "anomaly_thr"})
