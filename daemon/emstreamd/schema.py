"""The daemon's configuration schema: every section and key, its default, its check and its
documentation, in one place.

:mod:`emstreamd.config` takes the defaults, the checks and the keys that SIGHUP may change
(``live``) from here; ``config.yaml`` (the repository's and the package's) is this schema
rendered, and a test keeps it so.  To change a key, change it here and regenerate the file::

    python -m emstreamd.schema > config.yaml && cp config.yaml daemon/emstreamd/config.yaml

Example
-------
>>> from emstreamd import schema
>>> schema.defaults()["batch"]["max_rows"]
1000
>>> schema.find("batch", "max_rows").check("batch.max_rows", 0)
Traceback (most recent call last):
  ...
emstreamd.schema.ConfigError: batch.max_rows must be an integer >= 1, got 0
"""

from __future__ import annotations

import copy
import math
import textwrap
from dataclasses import dataclass
from typing import Any, Callable

import yaml

from emstream.calibration import MAX_HISTORY, MIN_HISTORY
from emstream.level import MAX_LEVEL_WINDOW
from emstream.temporal import MAX_LAGS, MAX_PERIOD, MAX_WINDOW


class ConfigError(ValueError):
    """The configuration cannot be used; the message says which key and why."""


SECONDS = 10**6  # about 11 days: longer waits are mistakes (and overflow some timeouts)
MAX_NAMES = 10_000  # entries of input.columns / input.fields
MAX_TEXT = 4096  # characters of a path, a column or field name, an address
WIDTH = 96  # of the rendered file's lines

Check = Callable[[str, Any], None]  # (the key's dotted name, its value); raises ConfigError


@dataclass(frozen=True)
class Key:
    """One key: its default (a YAML-ready value), its check, its documentation, and whether
    SIGHUP may change it while the daemon runs."""

    name: str
    default: Any
    check: Check | None
    doc: str = ""
    live: bool = False


@dataclass(frozen=True)
class Section:
    """A section's keys; ``check`` sees the whole section first (the model's keys are
    GaussianMixture's own, checked by it)."""

    name: str
    keys: tuple
    check: Callable[[dict], None] | None = None


def _show(value) -> str:
    """``repr(value)``, cut short: a message stays one readable line."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _cut(message: str, at: int = 300) -> str:
    """A message of the estimator's, cut short (it shows the whole value: a 3 MB setting made
    a 3 MB log line, on every SIGHUP)."""
    return message if len(message) <= at else f"{message[:at - 3]}..."


def _yaml_name(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# ---------------------------------------------------------------------- checks of one value
def number(low=None, high=None, *, integer=False, null=False) -> Check:
    """A finite number (an integer if ``integer``) in ``[low, high]``; null if ``null``."""
    def check(name, value):
        if value is None and null:
            return
        kind = int if integer else (int, float)
        ok = (not isinstance(value, bool) and isinstance(value, kind)
              and (isinstance(value, int) or math.isfinite(value)))
        if not ok or (low is not None and value < low):
            need = "an integer" if integer else "a finite number"
            bound = f" >= {low}" if low is not None else ""
            raise ConfigError(f"{name} must be {need}{bound}, got {_show(value)}")
        if high is not None and value > high:
            raise ConfigError(f"{name} must be at most {high:,}, got {_show(value)}")
    return check


def one_of(*allowed) -> Check:
    """One of ``allowed`` (true is not 1, false is not 0)."""
    words = [_yaml_name(a) for a in allowed]
    told = ", ".join(words[:-1]) + " or " + words[-1]

    def check(name, value):
        if not any(value is a or (type(value) is type(a) and value == a) for a in allowed):
            raise ConfigError(f"{name} must be {told}, got {_show(value)}")
    return check


def flag(name, value) -> None:
    """true or false."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {_show(value)}")


def text(*, null=False) -> Check:
    """A path, name or address: a non-empty string without NUL (which no system call takes)."""
    def check(name, value):
        if value is None and null:
            return
        if not isinstance(value, str) or not value or "\0" in value or len(value) > MAX_TEXT:
            need = "null or " if null else ""
            raise ConfigError(f"{name} must be {need}a non-empty string (a path or name), got "
                              f"{_show(value)}")
    return check


def _field(value) -> bool:
    """A 0-based column index or a header name."""
    return not isinstance(value, bool) and (
        (isinstance(value, int) and 0 <= value <= 10**6)
        or (isinstance(value, str) and 0 < len(value) <= MAX_TEXT))


def _columns(name, value) -> None:
    if value is not None and (not isinstance(value, list) or not value
                              or len(value) > MAX_NAMES or not all(map(_field, value))
                              or len({(type(c), c) for c in value}) < len(value)):
        raise ConfigError(f"{name} must be null or a list of distinct 0-based indices or "
                          f"header names, got {_show(value)}")


def column(told: str) -> Check:
    """Null or a column (a 0-based index or a header name); ``told`` is what the message says
    the key must be."""
    def check(name, value):
        if value is not None and not _field(value):
            raise ConfigError(f"{name} must be {told}, got {_show(value)}")
    return check


def _fields(name, value) -> None:
    if value is not None and (
            not isinstance(value, list) or not value or len(value) > MAX_NAMES
            or any(not isinstance(f, str) or not 0 < len(f) <= MAX_TEXT for f in value)
            or len(set(value)) < len(value)):
        raise ConfigError(f"{name} must be null or a list of distinct field names, got "
                          f"{_show(value)}")


def _season(name, value) -> None:
    if value not in (None, "auto") and (isinstance(value, bool) or not isinstance(value, int)
                                        or not 1 <= value <= MAX_PERIOD):
        raise ConfigError(f"{name} must be auto, null or a period in points from 1 to 10^8, "
                          f"got {_show(value)}")


def _threshold(name, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ConfigError(f"{name} must be a score in (0, 1], got {_show(value)}")


def _hold(name, value) -> None:
    if value == "day":
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10**9:
        raise ConfigError(f"{name} must be day or a number of points from 0 to 10^9, got "
                          f"{_show(value)}")


# Worker processes a local:N scheduler may start (each a Python interpreter with numpy).
MAX_LOCAL_WORKERS = 256


def _scheduler(name, value) -> None:
    if value is None:
        return
    digits = value[6:] if isinstance(value, str) and value.startswith("local:") else ""
    local = digits.isascii() and digits.isdigit() and 1 <= int(digits) <= MAX_LOCAL_WORKERS
    from emstream.distributed import scheduler_address_problem

    problem = None if local or not isinstance(value, str) else scheduler_address_problem(value)
    if not isinstance(value, str) or not local and problem is not None:
        raise ConfigError(f"{name} must be null, a dask scheduler address such as "
                          f"tcp://host:8786, or local:N with N from 1 to {MAX_LOCAL_WORKERS}; "
                          f"got {_show(value)}" + (f" ({problem})" if problem else ""))
    import importlib.util

    if importlib.util.find_spec("distributed") is None:
        raise ConfigError(f"{name} needs dask: pip install 'emstream[dask]'")


def _detector_params(name, value) -> None:
    if value is not None and not isinstance(value, dict):
        raise ConfigError(f"{name} must be a mapping of the detector's arguments")
    for key, item in (value or {}).items():
        if isinstance(item, float) and not math.isfinite(item):
            raise ConfigError(f"{name}.{key} must be finite, got {item!r}")


def _port(name, value) -> None:
    number(0, 65535, integer=True, null=True)(name, value)
    if value is not None:
        try:
            import prometheus_client  # noqa: F401
        except ImportError:
            raise ConfigError(f"{name} needs prometheus-client: "
                              "pip install 'emstream[metrics]'") from None


# ---------------------------------------------------------------------- the model section
# Bounds the daemon adds to GaussianMixture's own checks (which bound n_components, n_init,
# max_iter, warmup_size and reg_covar themselves), for the estimator's keys the shipped file
# leaves out.
MODEL_LIMITS = {"verbose_interval": 10**9}
# The most components a daemon's model may have (the library takes up to 10,000).
MAX_DAEMON_COMPONENTS = 100


def _check_model(model: dict) -> None:
    """GaussianMixture's own checks, the daemon's bounds, and the initial values' shapes."""
    import numpy as np

    from emstream import GaussianMixture

    k = model.get("n_components", 3)
    if not (isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= MAX_DAEMON_COMPONENTS):
        # (the estimator's own message gave its bound, 10,000, not the daemon's)
        raise ConfigError(f"model.n_components must be an integer in [1, "
                          f"{MAX_DAEMON_COMPONENTS}], got {_show(k)}")
    if isinstance(model.get("reg_covar"), str) and model["reg_covar"] != "auto":
        raise ConfigError(f"model.reg_covar must be auto or a finite number in [0, 1e+200], "
                          f"got {_show(model['reg_covar'])}")
    try:
        # (auto: a share of the first rows' variance, set per series; any number passes here)
        estimator = GaussianMixture(**{**model, **({"reg_covar": 1e-6}
                                                   if model.get("reg_covar") == "auto" else {})})
        estimator._check_params()
    except (TypeError, ValueError, OverflowError) as exc:  # (a 400-digit integer: Overflow)
        # (the estimator speaks Python: YAML's word for None is null)
        raise ConfigError(f"model: {_cut(str(exc).replace('None', 'null'))}") from None
    for key, high in MODEL_LIMITS.items():
        if key in model and model[key] > high:
            raise ConfigError(f"model.{key} must be at most {high:,}, got {_show(model[key])}")
    arrays = {}
    for key in ("weights_init", "means_init", "precisions_init"):
        if model.get(key) is not None:
            try:
                arrays[key] = np.asarray(model[key], dtype=float)
            except (TypeError, ValueError, OverflowError):
                raise ConfigError(f"model.{key} must be a (nested) list of numbers, got "
                                  f"{_show(model[key])}") from None
    if not arrays:
        return
    # The number of features is the data's; the initial values fix it (1 if only weights).
    n_features = 1
    means, precisions = arrays.get("means_init"), arrays.get("precisions_init")
    if means is not None and means.ndim == 2:
        n_features = means.shape[1]
    elif precisions is not None and precisions.ndim >= 2:
        n_features = precisions.shape[-1]
    try:
        estimator._checked_inits(n_features)
    except (ValueError, np.linalg.LinAlgError) as exc:
        raise ConfigError(f"model: {_cut(str(exc))}") from None


def _at_most(high) -> Check:
    """After GaussianMixture's checks (the type is right): the daemon's upper bound."""
    return number(high=high)


# ---------------------------------------------------------------------- checks across keys
def _input_rules(full: dict) -> None:
    settings = full["input"]
    fields, key = settings["fields"], settings["key"]
    jsonl = settings["format"] == "jsonl"
    if jsonl and fields is None:
        raise ConfigError("input.format jsonl needs input.fields: a list of field names")
    if fields is not None and not jsonl:  # (else silently unused: every record rejected)
        raise ConfigError("input.fields names the fields of JSON lines: it needs input.format: "
                          "jsonl (a table's columns are input.columns)")
    if jsonl and settings["columns"] is not None:  # (accepted and unused, even [b, 7])
        raise ConfigError("input.columns picks a table's columns: JSON lines name theirs in "
                          "input.fields")
    if key is not None and jsonl and not isinstance(key, str):
        raise ConfigError(f"input.key must name a JSON field for input.format jsonl, got "
                          f"{_show(key)}")
    if key is not None and jsonl and key in (fields or ()):
        raise ConfigError(f"input.key {key!r} is also in input.fields")
    stamp = settings["timestamp"]
    if jsonl and stamp not in ("auto", None) and not isinstance(stamp, str):
        raise ConfigError(f"input.timestamp must name a JSON field for input.format jsonl, got "
                          f"{_show(stamp)}")
    if jsonl and stamp in (fields or ()):
        raise ConfigError(f"input.timestamp {stamp!r} is also in input.fields")
    if jsonl and key is not None and stamp == key:
        raise ConfigError(f"input.timestamp {stamp!r} is also input.key")
    if key is not None and not jsonl and (key in (settings["columns"] or ())
                                          or key == settings["timestamp"]):
        raise ConfigError(f"input.key {key!r} is also in input.columns or input.timestamp")
    path = full["checkpoint"]["path"]
    if key is not None and path.endswith(".json"):
        raise ConfigError("checkpoint.path ending in .json is one series' checkpoint file: with "
                          "input.key give a directory or a file ending in .sqlite")
    if key is None and path.endswith(".sqlite"):
        raise ConfigError("checkpoint.path ending in .sqlite is a keyed daemon's state store: "
                          "set input.key, or give a directory or a .json file")
    if key is not None and full["refit"]["scheduler"] is not None:
        raise ConfigError("refit.scheduler (background refits) does not work with input.key "
                          "yet: each key refits in-process")


def _output_rules(full: dict) -> None:
    output = full["output"]
    if output["header"] and output["format"] == "jsonl":  # (accepted and silently unused)
        raise ConfigError("output.header writes a csv header line: JSON lines name their "
                          "fields in every line, so it needs output.format: csv (or "
                          "output.header: false)")


def _size_rules(full: dict) -> None:
    k = full["model"]["n_components"]
    if full["model"]["warmup_size"] < k:
        raise ConfigError(f"model.warmup_size must be at least model.n_components ({k}): the "
                          f"warm-up gives every component a point, got "
                          f"{full['model']['warmup_size']}")
    if full["model"]["max_iter"] < 1:
        raise ConfigError("model.max_iter must be at least 1: the daemon fits by EM (0 only "
                          "lets the library's fit(X) return its start)")
    if full["refit"]["window"] < k:
        raise ConfigError("refit.window must hold at least n_components points")
    if full["drift"]["refit_points"] < k:
        raise ConfigError("drift.refit_points must be at least n_components")
    # A history of n surprises vouches for a rarity of about one in (n + 1)² at most
    # (emstream.calibration): below that the threshold was never reached, and nothing was
    # ever flagged, without a word (found by an attack helper).
    why = unreachable(full["output"]["anomaly_threshold"], full["output"]["calibration_window"])
    if why:
        raise ConfigError(why)


def unreachable(threshold: float, window: int, whose: str = "output.calibration_window") -> str:
    """Why ``output.anomaly_threshold`` can never be reached with a calibration window of
    ``window`` points (``whose``: what that window is), or "" if it can.

    >>> unreachable(0.9999, 1000)
    ''
    >>> unreachable(0.9999999, 1000)[:60]
    'output.anomaly_threshold 0.9999999 can never be reached with'
    """
    if threshold <= 1.0 - 1.0 / (window + 1.0) ** 2:
        return ""
    least = None
    if threshold < 1:
        least = math.ceil(math.sqrt(1.0 / (1.0 - threshold)) - 1.0)
        while least > 1 and 1.0 - 1.0 / least ** 2 >= threshold:  # (rounding)
            least -= 1
    return (f"output.anomaly_threshold {threshold!r} can never be reached with {whose} "
            f"{window}: a score is at most 1 - 1/(n + 1)^2 = "
            f"{1.0 - 1.0 / (window + 1.0) ** 2:.8g}" + (
                f"; a window of {least} points or more reaches it" if least else
                "; a threshold below 1 is wanted"))


def _drift_rules(full: dict) -> None:
    """The drift monitor accepts the detector and its arguments."""
    from emstream import GaussianMixture
    from emstream.drift import DriftMonitor

    from .config import monitor_settings  # (config builds on this module)

    if full["drift"]["detector"] is None and full["drift"]["params"]:
        # (not even checked: {no_such_argument: 1, threshold: -5} passed)
        raise ConfigError("drift.params gives the detector's arguments, and drift.detector is "
                          "null (no detector): remove drift.params, or name a detector")
    try:
        DriftMonitor(GaussianMixture(), **monitor_settings(full))
    except (TypeError, ValueError, OverflowError) as exc:
        # (the detector's arguments come from drift.params: the message names that key)
        where = "drift.params" if full["drift"]["params"] else "drift"
        raise ConfigError(f"{where}: {_cut(str(exc))}") from None


RULES = (_input_rules, _output_rules, _size_rules, _drift_rules)

# Keys of earlier versions, and what replaced them.
REPLACED = {("output", "anomaly_quantile"): "output.anomaly_threshold (a calibrated score in "
            "[0, 1]: 0.9999 is meant for one ordinary point in 10,000)",
            ("output", "anomaly_surprise"): "output.anomaly_threshold (a calibrated score in "
            "[0, 1])"}


# ---------------------------------------------------------------------- the schema
HEADER = (
    "emstream configuration.\n\n"
    "emstreamd reads this file (--config config.yaml); any value can be overridden on the "
    "command line with --set section.key=value.  `model` holds emstream.GaussianMixture's "
    "hyper-parameters.  A bad value stops the daemon with exit code 78 and one line saying "
    "which key is wrong.  Keys marked (live) are re-read on SIGHUP; a broken (or empty) file "
    "on SIGHUP keeps the running values.  This file is generated from the daemon's schema "
    "(daemon/emstreamd/schema.py)."
)

SECTIONS = (
    Section("model", check=_check_model, keys=(
        Key("n_components", 3, _at_most(MAX_DAEMON_COMPONENTS),
            "Number of mixture components (K), at most 100: the warm-up's searches grow with "
            "K times its rows (NAB's nyc_taxi, 10,320 rows: 1.3 s with 30 components, 3.2 s "
            "with 100, 15 s with 300; with 10,000 the warm-up never ended, deaf to SIGTERM).  "
            "(NAB kit, standard score: 2 scored 55.2, 3 63.1, 4 57.0, 5 55.7.)"),
        Key("covariance_type", "full", None,
            "Shape of each component's covariance: full | tied | diag | spherical."),
        Key("reg_covar", "auto", None,
            "Added to every variance: no component collapses onto a repeated value or claims "
            "more precision than the data has.  auto: 1e-3 of the variance of the series' "
            "first rows that vary (each key's own; until they vary, 1e-3 of step² / 12, the "
            "variance their last printed decimal stands for; that variance at "
            "most 100 times its quartiles' ((IQR / 1.349)²), so that one wild value among them "
            "(1e7 in readings of 50 ± 20) does not blind the series), so the same readings "
            "in bytes or gigabytes get the same model and scores (with an absolute 1e-6, NAB's "
            "series with the decimal point moved five places left scored 23.6 instead of "
            "63.1).  (NAB kit, standard score of the alerts, mean of seeds 0, 1, 2: 61.9; the "
            "absolute 1e-6 60.6; with a first version of the core's re-seeding rule, shares "
            "of 1e-3 62.6, 1e-2 62.1, 1e-1 60.1, 1e-6 60.0.)  A number: that, in the data's "
            "units."),
        Key("tol", 1e-3, None,
            "Batch EM (warm-up and refits): stop when the average log-likelihood gains less "
            "than tol ..."),
        Key("max_iter", 100, _at_most(10**6), "... or after this many iterations."),
        Key("n_init", 1, _at_most(1000),
            "Batch fits from this many initialisations; the best is kept."),
        Key("init_params", "k-means++", None,
            "Initialisation: k-means++ | kmeans | random | random_from_data."),
        Key("random_state", 0, None, "Seed for the initialisation (null: different every run)."),
        Key("step_decay", 0.8, None,
            "Online EM: per-point step size gamma_t = max((t + step_offset) ** -step_decay, "
            "step_floor).  step_decay (alpha) must lie in (0.5, 1]; 0.8 ends one pass within "
            "2e-5 of batch EM.  (NAB kit: 0.7 scored 61.8 against 0.8's 63.1.)"),
        Key("step_offset", 0.0, None,
            "t0 in that step size: a larger one takes smaller first steps."),
        Key("step_floor", None, None,
            "Lower bound on the step (null: drift.memory decides; 1e-4 remembers roughly the "
            "last 10,000 points)."),
        Key("warmup_size", 1000, _at_most(10**7),
            "Points buffered and refitted (k-means++ starts and EM, chosen on held-out rows) "
            "while the model warms up; a provisional model scores and learns from 2 (D + 1) "
            "rows per component on (with many features, a first one of diagonal covariances "
            "from 10 rows per component), and is refitted on the buffer each time it has "
            "grown by half."),
        Key("outlier_gate", "auto", None,
            "A point farther than this squared Mahalanobis distance from every component is "
            "reported (as an anomaly) but not learned, so one wild value or a short burst "
            "cannot damage the model; far points that keep recurring (separate episodes at one in 2,000 "
            "points or more, ten in 20,000 and at least three, or one run of 100) are the "
            "stream's own and are learned.  auto: the "
            "distance a Gaussian point exceeds with probability 1e-15 (64.4 = 8 sigma in 1-D); "
            "null: learn every point."),
        Key("averaging", True, None,
            "Publish the average of the online parameters over the model's memory "
            "(Polyak-Ruppert since the last fit, then exponential): half the noise of the last "
            "iterate, and it lags a drifting stream no more than the iterate does."),
        Key("variance_floor", "resolution", None,
            "resolution: no variance falls below step^2 / 12 per feature, where step is the "
            "grid the feature's values lie on (1 for integer columns, 0.01 for readings with "
            "two decimals), so a component cannot collapse onto a repeated value; null: only "
            "reg_covar."),
    )),
    Section("input", keys=(
        Key("format", "numbers", one_of("numbers", "jsonl"),
            "numbers: numbers separated by whitespace and/or commas (the first valid line fixes "
            "how many), or a table with a header line (NAB's timestamp,value files; tab-, "
            "semicolon- or pipe-separated if the header is; Excel's sep=, line says so too): a "
            "first line with a field that is not a number names the columns (lines starting "
            "with # are comments, rejected: Prometheus' # HELP, gnuplot's notes; the one right "
            "above the first data line of numbers names the columns if, without its #, it "
            "fits them, as numpy's savetxt header does); jsonl: one JSON "
            "object per line, the row made of the values of `fields` (JSON lines read as "
            "numbers stop the daemon with one line naming the first record's numbers)."),
        Key("columns", None, _columns,
            "For numbers: the columns to use from each line, 0-based or by header name (null: "
            "every number on the line but the time, a row's identifier (a column the header "
            "leaves unnamed or names id, index or ..._id) and the time again as an epoch "
            "number)."),
        Key("timestamp", "auto", column("auto, a column name or 0-based index, or null"),
            "For numbers: the time column (by header name or 0-based index).  auto: a column "
            "named timestamp, time, date, datetime, ts, epoch, _time, @timestamp, time_stamp, "
            "unix_time or unixtime, or a first field that is an ISO 8601 time, or the first "
            "column of written times in order, or a first column of epoch numbers (2000 to "
            "2100) at a steady step; null: none.  For jsonl: the time field (a dotted name "
            "reaches into nested objects); auto: at the records' top, else in the object the "
            "fields start in (an Elasticsearch hit's _source.@timestamp), the first that the "
            "first record holds a time in: timestamp, @timestamp, time, ts, datetime or date; "
            "else, in any case, a column name above, t, @t, clock, asctime, time_local, "
            "time_iso8601, timegenerated, eventtime, event_time, last_changed, last_updated, "
            "last_changed_ts or last_updated_ts (CloudWatch's Timestamp, InfluxDB's _time, "
            "Zabbix's clock, Home Assistant's last_changed) if its dates need no day order or "
            "tell it; by name only, as every later record without the field is rejected; a "
            "number (bare or quoted) counts as epoch seconds, ms, us or ns from 1973 to 2286, "
            "so a duration is not taken.  "
            "Times are ISO 8601 (2014-07-01 00:30:00, a T, fractions after a point or a comma, "
            "Z, UTC or an offset: +02:00, +00), the common log format's (01/Mar/2024:00:00:00 "
            "+0000, Apache's and nginx's), epoch seconds, milliseconds, "
            "microseconds or nanoseconds (told by their size) or a spreadsheet's dates "
            "(see day_first); a line whose time does not parse is rejected (\"bad timestamp\"). "
            " A time column of dates alone (Date,Time,Value, as loggers and spreadsheets "
            "export) takes each row's time of day from the column named time, hour or clock, "
            "or else the next one, if that holds times of day (12:30, 12:30:05, 12:30 PM).  "
            "Each per-point line then carries the time as written (date and time of day with "
            "a space between)."),
        Key("day_first", "auto", one_of("auto", True, False),
            "For times written as spreadsheets write them, 07/01/2014 (with H:MM[:SS] and AM/PM "
            "or not): true, the day comes first; false, the month; auto: as a day above 12 in "
            "the first lines shows, else the order under which they run in time once their "
            "date changes (the daemon stops with one line if neither tells).  2014/07/01 "
            "and 01.07.2014 (day first) need nothing."),
        Key("fields", None, _fields,
            "For jsonl (only): the names of the numeric fields that make a row, in order (e.g. "
            "[temp, load]); a dotted name that is no field reaches into nested objects "
            "(system.cpu.pct), a number in it to a place in a list (values.0 of collectd's "
            "\"values\": [0.5]).  A number in a string (\"12.5\") counts as that number."),
        Key("max_line_bytes", 4096, number(16, 1 << 26, integer=True),
            "Longer lines are rejected (\"too long\")."),
        Key("dead_letter", None, text(null=True),
            "Append every rejected line (number, reason, text) as JSON to this file (null: "
            "don't)."),
        Key("key", None, column("null, a column name or 0-based index"),
            "Many series in one stream: the column (header name or 0-based index) or, for "
            "jsonl, the field (a string, or an integer taken as text; a dotted name reaches "
            "into nested objects, as in fields) naming each row's series (as written, the quotes "
            "of a quoted CSV field removed; read as UTF-8, else as cp1252, the Windows code page "
            "spreadsheets save CSV in, so a key is one key however it was saved; an empty key, "
            "one longer than 256 bytes, one with a control character or one that is neither "
            "is rejected as \"bad key\").  Each key gets its own model "
            "with these settings (its own warm-up, features, score and drift monitor), and all "
            "keys' models live in one SQLite state store (checkpoint.path/keys.sqlite, or "
            "checkpoint.path itself if it ends in .sqlite).  null: one series."),
    )),
    Section("batch", keys=(
        Key("max_rows", 1000, number(1, 10**7, integer=True),
            "A mini-batch is learned when it holds this many accepted rows ..."),
        Key("first_rows", 100, number(1, 10**7, integer=True),
            "... except the first ones: the first holds this many, and each next one as many "
            "rows as were learned before it (100, 100, 200, 400, 800, then max_rows), so a "
            "provisional model scores every point after the first batch."),
        Key("max_wait", 0.2, number(0, SECONDS),
            "... or (stdin, --follow) this many seconds after its first row arrived; but a "
            "time series' first mini-batch waits for the 10 rows (100 without times) its "
            "temporal features decide their season from (from its first row alone, a live "
            "series lost its season for good).  A back-fill with --input cuts batches by "
            "count alone, so it is deterministic.", live=True),
    )),
    Section("checkpoint", keys=(
        Key("path", "emstreamd-state", text(),
            "A directory (numbered checkpoint files, the newest `keep` kept) or a file ending "
            "in .json; with input.key, the state store (keys.sqlite inside it, or a file ending "
            "in .sqlite)."),
        Key("every_points", 100_000, number(1, 10**15, integer=True),
            "Checkpoint after this many points ...", live=True),
        Key("every_seconds", 60, number(0, SECONDS),
            "... or this many seconds; also at shutdown and on SIGUSR1.", live=True),
        Key("keep", 3, number(1, 10**6, integer=True),
            "Checkpoint files kept in a checkpoint directory."),
    )),
    Section("features", keys=(
        Key("enabled", "auto", one_of("auto", True, False),
            "Temporal features for time series (emstream.temporal): the model learns each "
            "value together with the previous value and the value a season ago, and the score "
            "is the surprise of the value *given* them (-log p(x_t | x_t-1, x_t-season)): a "
            "spike inside the normal range, a flatline or a changed daily shape stands out, and "
            "after a level shift the new level is predicted at once.  auto: on for a table with "
            "a time column; true/false."),
        Key("lags", 1, number(0, MAX_LAGS, integer=True),
            "Previous values in the context.  (NAB kit: 2 scored 49.8 against 1's 63.1.)"),
        Key("season", "auto", _season,
            "The value one period earlier (the median of the three values around it, so one "
            "odd value does not make the next period's look odd): a period in points; auto: a "
            "day in points (from the timestamps' typical step), or without timestamps the first "
            "batch's own period; null: none.  With timestamps the period is a span of time (a "
            "day, or that many typical steps): the value is the row nearest that time however "
            "many rows an outage or dropped readings removed (up to 3 periods back if that time "
            "fell in a gap), and a row more than 3 steps and an hour of a day after the one "
            "before it is scored without the previous value, hours old.  (NAB kit with "
            "outages and dropped rows cut into it, benchmarks/nab_gaps.py, mean of three "
            "seeds: 55.7 against 48.9 counting points; on the kit itself 63.1 against 64.1.)"),
        Key("volatility", False, flag,
            "Add the log mean absolute change over the last `window` points to what is scored "
            "(flags a flatline where no season shows it; off: on NAB it costs 8.0 points "
            "of score)."),
        Key("window", 10, number(2, MAX_WINDOW, integer=True), "Points of that mean."),
        Key("calendar", False, flag,
            "Add the time of day and of week to the context (off: on NAB it costs 9.1 points)."),
        Key("level_window", 12, number(0, MAX_LEVEL_WINDOW, integer=True),
            "Also score the recent level: the mean surprise of the last level_window values "
            "without their context (-log p(x)), calibrated by its own history; a point's "
            "score is the larger of the two.  A slow excursion (a machine warming towards "
            "failure, a holiday's traffic a notch below every other day's), each of whose "
            "points is ordinary given the one before, adds up.  Its cost is flags on ordinary "
            "points: overlapping means over-flag below the threshold (0.999 reached 8.2x as "
            "often as promised on a seasonal AR(1) stream, 1.6x without it; 0.9999 2.6x, "
            "1.9x without; benchmarks/bench_calibration.py).  0: off.  (NAB kit, standard "
            "score of the alerts, mean over model seeds 0-4: off 62.2, 12 points 64.7; with "
            "a first version, seeds 0 and 1: 3 61.1, 6 65.1, 9 65.2, 12 64.8, 18 61.4, 24 "
            "64.8, 48 63.2.)"),
    )),
    Section("output", keys=(
        Key("per_point", True, flag,
            "One line per point after the first mini-batch: line number, the time (for input "
            "with a time column, as written), label, probability of that label (6 decimals), "
            "surprise (4 decimals; -log p(x), or with features -log p(x | context)), score (8 "
            "decimals) and the anomaly flag (0/1; JSON: false/true)."),
        Key("path", "-", text(), "- for stdout, or a file to append to."),
        Key("format", "csv", one_of("csv", "jsonl"), "csv or jsonl."),
        Key("header", False, flag, "csv: a first line naming the columns."),
        Key("cut_back", True, flag,
            "A per-point output file holds each line once across crashes: a checkpoint notes "
            "where its lines end, and a restart that reads the input again from there cuts "
            "the lines written after it (a kill's partial line too) before writing them "
            "again.  Only the same file, unchanged up to there, and only whole lines of this "
            "daemon's forms in one run's order are cut, but another daemon's lines of the "
            "same form in the same file can be taken for its own: set false when several "
            "daemons append to one file (each line is then at least once), and mind that a "
            "reader following the file (tail -F) sees it cut."),
        Key("calibration_window", 1000, number(MIN_HISTORY, MAX_HISTORY, integer=True),
            "The score: 1 - p, p the upper-tail probability of the point's surprise among the "
            "last calibration_window surprises (empirical, with an exponential tail beyond "
            "their 90th percentile), so it means the same on every series: 0.9999 is meant for "
            "one ordinary point in 10,000 (measured: up to 1.9x that on synthetic one-mode "
            "streams, 6.1x on a 1-D mixture of separated components, 7.6x on NAB's real series "
            "outside their labelled windows, 18x on its ad exchange series, which lie wholly "
            "inside the warm-up; benchmarks/bench_calibration.py).  Refits do not "
            "reset it.  (On the NAB kit: 1000 scored 63.1, 500 55.2, 1500 61.1, 2000 59.4.)"),
        Key("anomaly_threshold", 0.9999, _threshold,
            "A point whose score reaches anomaly_threshold is flagged.  (NAB kit, standard "
            "score of these flags, mean of model seeds 0-4 (2026-12-06): 0.9998 65.1, "
            "0.99985 64.7, 0.9999 64.6: one plateau, since seed by seed 0.9998 scored "
            "+1.1, +1.4, -0.1, +0.9 and -1.3 against 0.9999; low-false-positive 50.3, "
            "50.8, 52.3.  With seed 0 alone: 0.99992 "
            "62.5, 0.99988 67.3: the score jumps by 2 between neighbours, so the threshold "
            "was not moved to the best of them.  Earlier code: 0.99995 57.7, 0.9997 59.6, "
            "0.9995 57.1.)", live=True),
        Key("episode_hold", "day", _hold,
            "A flag starts an episode: the next episode_hold points belong to it (their scores "
            "are halved and none is flagged), so a lasting anomaly or a level shift is one "
            "alert, not a flood.  day: a day of the series' own time in points (from the first "
            "rows' timestamps; 10 to 1,000), 300 without timestamps.  (NAB kit: day scored "
            "63.1, 300 points 57.3, 150 55.0, 500 52.3; on hourly series 300 points are 12 "
            "days, which swallowed the next anomaly.)", live=True),
    )),
    Section("keys", keys=(
        Key("max_active", 10_000, number(1, 10**7, integer=True),
            "Keyed input (input.key): models held in memory at most; the least recently used "
            "idle ones are written to the state store and read back, exactly as they left, "
            "when their key returns."),
        Key("max_known", 100_000, number(1, 10**9, integer=True),
            "Keys known at most: rows of further new keys are rejected (\"too many keys\") and "
            "counted, so a key column that explodes in cardinality cannot take the host down."),
        Key("checkpoint_share", 0.1, number(0.001, 1),
            "A checkpoint writes every key changed since the last one (about 5 ms each): with "
            "thousands of keys it takes seconds, so scheduled checkpoints wait until they would "
            "take at most this share of the daemon's time (0.1: a checkpoint of 2 s comes at "
            "most every 20 s)."),
    )),
    Section("status", keys=(
        Key("every_seconds", 10, number(0, SECONDS),
            "One status line on stderr this often (0: never).  A back-fill's line ends with its "
            "progress (share of the file, rate, time left), every second when stderr is a "
            "terminal.", live=True),
    )),
    Section("refit", keys=(
        Key("every_points", None, number(1, 10**15, integer=True, null=True),
            "Batch EM over the last `window` learned points, from the current state, through "
            "the same core; online learning then continues from the refitted statistics and "
            "component labels are kept (components matched by the Hungarian assignment).  "
            "Every this many points (null: only on SIGUSR2).", live=True),
        Key("window", 10_000, number(1, 10**8, integer=True), "Points of that window."),
        Key("scheduler", None, _scheduler,
            "Run scheduled and SIGUSR2 refits on a dask cluster instead, in the background: a "
            "scheduler address (tcp://host:8786, workers need emstream installed) or local:N "
            "(a local cluster of N worker processes on 127.0.0.1).  Ingestion goes on "
            "meanwhile; when the refit is done its model is swapped in and the points learned "
            "meanwhile are learned again into it.  null: refit in-process, pausing ingestion.  "
            "Needs pip install 'emstream[dask]'.  Not with input.key."),
        Key("wait_at_exit", 30, number(0, SECONDS),
            "At shutdown, wait this many seconds for a background refit to finish (else drop "
            "it); a checkpoint is written before the wait, and a second stop signal ends it."),
    )),
    Section("drift", keys=(
        Key("detector", "page-hinkley", one_of("page-hinkley", "adwin", None),
            "A river drift detector watches each point's surprise (-log p(x), scored before "
            "learning it) for a rise or a fall, and a test of the recent points' share per "
            "component against the weights watches for mass that moves between components: "
            "page-hinkley | adwin | null (no alarms).  On an alarm the daemon logs it, collects "
            "the next refit_points points and refits on them (EM from the current model and "
            "from fresh starts, chosen on held-out rows; the current model is kept unless a "
            "candidate beats it; labels matched to the old components; step-size schedule "
            "restarted).  Alarms and refits go to the checkpoint's history and the metrics."),
        Key("params", {}, _detector_params,
            "The detector's river arguments; for page-hinkley they are per point, in units of "
            "the surprise's robust spread under the current model (0.45 nats for a 1-D "
            "Gaussian component): defaults delta: 0.5, threshold: 100, min_instances: 30, "
            "alpha: 1.0, mode: both."),
        Key("block", 50, number(1, 10**6, integer=True),
            "Points averaged into each detector update (page-hinkley is rescaled to match), "
            "which keeps the detector's cost per point small.  (NAB kit: 100 scored 62.9 "
            "against 50's 63.1.)"),
        Key("refit_points", 500, number(1, 10**8, integer=True),
            "Points collected after an alarm for its refit."),
        Key("memory", 20_000, number(2, 10**12, integer=True, null=True),
            "If model.step_floor is null, it becomes 1 / memory, so the model can follow a "
            "slowly moving stream (null: never forget)."),
    )),
    Section("metrics", keys=(
        Key("port", None, _port,
            "Serve Prometheus metrics (points, rejects by reason, batches, refits, last "
            "checkpoint time, average log-likelihood) on this port (null: off; 0: any free "
            "port, logged).  Needs pip install 'emstream[metrics]'."),
        Key("address", "127.0.0.1", text(),
            "Listen address; the default keeps the metrics on this machine."),
    )),
)


# ---------------------------------------------------------------------- reading the schema
def find(section: str, name: str) -> Key:
    """The key ``section.name``; KeyError if the schema has none."""
    for part in SECTIONS:
        if part.name == section:
            for key in part.keys:
                if key.name == name:
                    return key
    raise KeyError(f"{section}.{name}")


def defaults() -> dict:
    """Every section and key with its default (a fresh copy)."""
    return {s.name: {k.name: copy.deepcopy(k.default) for k in s.keys} for s in SECTIONS}


def live() -> dict:
    """Per section, the keys SIGHUP may change while the daemon runs."""
    found = {s.name: {k.name for k in s.keys if k.live} for s in SECTIONS}
    return {section: keys for section, keys in found.items() if keys}


def check(full: dict) -> None:
    """Every section's and key's check on a complete configuration, then the rules across
    keys; ConfigError at the first problem."""
    for section in SECTIONS:
        values = full[section.name]
        if section.check is not None:
            section.check(values)
        for key in section.keys:
            if key.check is not None:
                key.check(f"{section.name}.{key.name}", values[key.name])
    for rule in RULES:
        rule(full)


# ---------------------------------------------------------------------- the rendered file
def _literal(value) -> str:
    """The value as YAML source on one line."""
    text_ = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    return text_[:-4].rstrip() if text_.endswith("\n...") else text_


def _comment(doc: str, indent: str) -> list:
    lines = []
    for paragraph in doc.split("\n\n"):
        if lines:
            lines.append(indent + "#")
        lines += textwrap.wrap(paragraph, WIDTH - len(indent) - 2, initial_indent=indent + "# ",
                               subsequent_indent=indent + "# ", break_on_hyphens=False)
    return lines


def render() -> str:
    """config.yaml: every key with its default, its documentation above it."""
    lines = _comment(HEADER, "")
    for section in SECTIONS:
        lines += ["", f"{section.name}:"]
        for key in section.keys:
            doc = key.doc + (" (live)" if key.live else "")
            lines += _comment(doc.strip(), "  ")
            lines.append(f"  {key.name}: {_literal(key.default)}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(render())
