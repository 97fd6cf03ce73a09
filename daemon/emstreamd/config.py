"""The daemon's configuration: YAML (safe loading only), validated, with command-line overrides.

The shipped config.yaml (inside the package) holds every key and its default; a file given with
--config and --set overrides replace values in it key by key.  A bad file or value is a
``ConfigError``, which the daemon reports in one line and exits with 78 (EX_CONFIG).  Numbers
must be finite and below a sane bound, so that nothing valid here fails hours later.
"""

from __future__ import annotations

import copy
import math
from importlib import resources

import numpy as np

from emstream import GaussianMixture

from . import safeyaml


class ConfigError(ValueError):
    """The configuration cannot be used; the message says which key and why."""


def _packaged() -> dict:
    text = resources.files(__package__).joinpath("config.yaml").read_text(encoding="utf-8")
    return safeyaml.load(text, "config.yaml")


# Every section and key with its default: the shipped config.yaml.
DEFAULTS = _packaged()
# Sections and keys that SIGHUP may change while running.
LIVE = {"output": {"anomaly_threshold", "episode_hold"}, "status": {"every_seconds"},
        "refit": {"every_points"},
        "checkpoint": {"every_points", "every_seconds"}, "batch": {"max_wait"}}

# Keys of earlier versions, and what replaced them.
REPLACED = {("output", "anomaly_quantile"): "output.anomaly_threshold (a calibrated score in "
            "[0, 1]: 0.9999 is meant for one ordinary point in 10,000)",
            ("output", "anomaly_surprise"): "output.anomaly_threshold (a calibrated score in "
            "[0, 1])"}

SECONDS = 10**6  # about 11 days: longer waits are mistakes (and overflow some timeouts)
# (section, key): (low, high, integer, null allowed).  The upper bounds keep memory and time
# finite: a window is allocated whole, a batch is held in memory.
NUMBERS = {
    ("input", "max_line_bytes"): (16, 1 << 26, True, False),
    ("keys", "max_active"): (1, 10**7, True, False),
    ("keys", "max_known"): (1, 10**9, True, False),
    ("keys", "checkpoint_share"): (0.001, 1, False, False),
    ("batch", "max_rows"): (1, 10**7, True, False),
    ("batch", "first_rows"): (1, 10**7, True, False),
    ("batch", "max_wait"): (0, SECONDS, False, False),
    ("checkpoint", "every_points"): (1, 10**15, True, False),
    ("checkpoint", "every_seconds"): (0, SECONDS, False, False),
    ("checkpoint", "keep"): (1, 10**6, True, False),
    ("features", "lags"): (0, 100, True, False),
    ("features", "window"): (2, 10**6, True, False),
    ("output", "calibration_window"): (10, 10**8, True, False),
    ("status", "every_seconds"): (0, SECONDS, False, False),
    ("refit", "every_points"): (1, 10**15, True, True),
    ("refit", "window"): (1, 10**8, True, False),
    ("refit", "wait_at_exit"): (0, SECONDS, False, False),
    ("drift", "block"): (1, 10**6, True, False),
    ("drift", "refit_points"): (1, 10**8, True, False),
    ("drift", "memory"): (2, 10**12, True, True),
    ("metrics", "port"): (0, 65535, True, True),
}
# Bounds the daemon adds to GaussianMixture's own checks (which set no upper limits).
MODEL_LIMITS = {"n_components": 10_000, "n_init": 1000, "max_iter": 10**6,
                "warmup_size": 10**7, "verbose_interval": 10**9}
MAX_NAMES = 10_000  # entries of input.columns / input.fields
MAX_TEXT = 4096  # characters of a path, a column or field name, an address


def _show(value) -> str:
    """``repr(value)``, cut short: a message stays one readable line."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_number(section, key, value, *, low=None, high=None, integer=False,
                  allow_none=False):
    if value is None and allow_none:
        return
    kind = int if integer else (int, float)
    ok = (not isinstance(value, bool) and isinstance(value, kind)
          and (isinstance(value, int) or math.isfinite(value)))
    if not ok or (low is not None and value < low):
        need = "an integer" if integer else "a finite number"
        bound = f" >= {low}" if low is not None else ""
        raise ConfigError(f"{section}.{key} must be {need}{bound}, got {_show(value)}")
    if high is not None and value > high:
        raise ConfigError(f"{section}.{key} must be at most {high:,}, got {_show(value)}")


def _check_text(name: str, value, *, allow_none=False) -> None:
    """A path, name or address: a non-empty string without NUL (which no system call takes)."""
    if value is None and allow_none:
        return
    if not isinstance(value, str) or not value or "\0" in value or len(value) > MAX_TEXT:
        need = "null or " if allow_none else ""
        raise ConfigError(f"{name} must be {need}a non-empty string (a path or name), got "
                          f"{_show(value)}")


def _names(value) -> str:
    return ", ".join(sorted(map(str, value)))


def validate(config: dict) -> dict:
    """Defaults filled in and every value checked; returns the full configuration."""
    if not isinstance(config, dict):
        raise ConfigError("the configuration must be a mapping of sections")
    unknown = set(config) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown section(s): {_names(unknown)}")
    full = copy.deepcopy(DEFAULTS)
    for section, values in config.items():
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"section {section!r} must be a mapping")
        if section != "model":
            for key in values:
                if (section, key) in REPLACED:
                    raise ConfigError(f"{section}.{key} is no longer used: see "
                                      f"{REPLACED[section, key]}")
            extra = set(values) - set(DEFAULTS[section])
            if extra:
                raise ConfigError(f"unknown key(s) in {section}: {_names(extra)}")
        full[section].update(values)
    _check_model(full["model"])
    for (section, key), (low, high, integer, allow_none) in NUMBERS.items():
        _check_number(section, key, full[section][key], low=low, high=high, integer=integer,
                      allow_none=allow_none)
    _check_input(full["input"])
    _check_features(full["features"])
    _check_hold(full["output"]["episode_hold"])
    _check_text("checkpoint.path", full["checkpoint"]["path"])
    _check_text("output.path", full["output"]["path"])
    if full["output"]["format"] not in ("csv", "jsonl"):
        raise ConfigError(f"output.format must be csv or jsonl, got "
                          f"{_show(full['output']['format'])}")
    for key in ("per_point", "header"):
        if not isinstance(full["output"][key], bool):
            raise ConfigError(f"output.{key} must be true or false")
    threshold = full["output"]["anomaly_threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not (
            0 < threshold <= 1):
        raise ConfigError(f"output.anomaly_threshold must be a score in (0, 1], got "
                          f"{_show(threshold)}")
    _check_drift(full)
    _check_scheduler(full["refit"]["scheduler"])
    if full["input"]["key"] is not None and full["refit"]["scheduler"] is not None:
        raise ConfigError("refit.scheduler (background refits) does not work with input.key "
                          "yet: each key refits in-process")
    _check_text("metrics.address", full["metrics"]["address"])
    if full["metrics"]["port"] is not None:
        try:
            import prometheus_client  # noqa: F401
        except ImportError:
            raise ConfigError("metrics.port needs prometheus-client: "
                              "pip install 'emstream[metrics]'") from None
    if full["refit"]["window"] < full["model"]["n_components"]:
        raise ConfigError("refit.window must hold at least n_components points")
    return full


def _check_model(model: dict) -> None:
    """GaussianMixture's own checks, the daemon's bounds, and the initial values' shapes."""
    try:
        estimator = GaussianMixture(**model)
        estimator._check_params()
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model: {exc}") from None
    for key, high in MODEL_LIMITS.items():
        if key in model and model[key] > high:
            raise ConfigError(f"model.{key} must be at most {high:,}, got {_show(model[key])}")
    arrays = {}
    for key in ("weights_init", "means_init", "precisions_init"):
        if model.get(key) is not None:
            try:
                arrays[key] = np.asarray(model[key], dtype=float)
            except (TypeError, ValueError):
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
        raise ConfigError(f"model: {exc}") from None


def _check_input(settings: dict) -> None:
    if settings["format"] not in ("numbers", "jsonl"):
        raise ConfigError(f"input.format must be numbers or jsonl, got "
                          f"{_show(settings['format'])}")
    columns = settings["columns"]
    if columns is not None and (not isinstance(columns, list) or not columns
                                or len(columns) > MAX_NAMES or any(
            isinstance(c, bool) or not isinstance(c, (int, str))
            or (isinstance(c, int) and not 0 <= c <= 10**6)
            or (isinstance(c, str) and not 0 < len(c) <= MAX_TEXT) for c in columns)):
        raise ConfigError(f"input.columns must be null or a list of 0-based indices or header "
                          f"names, got {_show(columns)}")
    stamp = settings["timestamp"]
    if stamp is not None and (isinstance(stamp, bool) or not isinstance(stamp, (int, str))
                              or (isinstance(stamp, int) and not 0 <= stamp <= 10**6)
                              or (isinstance(stamp, str) and not 0 < len(stamp) <= MAX_TEXT)):
        raise ConfigError(f"input.timestamp must be auto, a column name or 0-based index, or "
                          f"null, got {_show(stamp)}")
    fields = settings["fields"]
    if fields is not None and (not isinstance(fields, list) or not fields
                               or len(fields) > MAX_NAMES or any(
            not isinstance(f, str) or not 0 < len(f) <= MAX_TEXT for f in fields)
            or len(set(fields)) < len(fields)):
        raise ConfigError(f"input.fields must be null or a list of distinct field names, got "
                          f"{_show(fields)}")
    if settings["format"] == "jsonl" and fields is None:
        raise ConfigError("input.format jsonl needs input.fields: a list of field names")
    key = settings["key"]
    if key is not None and (isinstance(key, bool) or not isinstance(key, (int, str))
                            or (isinstance(key, int) and not 0 <= key <= 10**6)
                            or (isinstance(key, str) and not 0 < len(key) <= MAX_TEXT)):
        raise ConfigError(f"input.key must be null, a column name or 0-based index, got "
                          f"{_show(key)}")
    if key is not None and settings["format"] == "jsonl" and not isinstance(key, str):
        raise ConfigError(f"input.key must name a JSON field for input.format jsonl, got "
                          f"{_show(key)}")
    if key is not None and settings["format"] == "jsonl" and key in (fields or ()):
        raise ConfigError(f"input.key {key!r} is also in input.fields")
    if key is not None and settings["format"] != "jsonl" and (
            key in (columns or ()) or key == stamp):
        raise ConfigError(f"input.key {key!r} is also in input.columns or input.timestamp")
    _check_text("input.dead_letter", settings["dead_letter"], allow_none=True)


def model_settings(config: dict) -> dict:
    """GaussianMixture's keyword arguments, with the step floor that ``drift.memory`` implies."""
    settings = dict(config["model"])
    memory = config["drift"]["memory"]
    if settings.get("step_floor") is None and memory is not None:
        settings["step_floor"] = 1.0 / memory
    return settings


def monitor_settings(config: dict) -> dict:
    """Keyword arguments of :class:`emstream.drift.DriftMonitor` from a validated config
    (anomalies are flagged from the calibrated score instead: see :func:`series_parts`)."""
    drift = config["drift"]
    return {"detector": drift["detector"], "detector_params": dict(drift["params"] or {}),
            "block": drift["block"], "refit_points": drift["refit_points"],
            "memory": drift["memory"], "anomaly_surprise": None, "anomaly_quantile": None}


def series_parts(config: dict, timed: bool) -> tuple:
    """The features (None when off), calibrator and episodes for a stream; ``timed``: the
    input has a time column (``features.enabled: auto`` turns them on for it)."""
    from emstream.calibration import TailCalibrator
    from emstream.episodes import Episodes
    from emstream.temporal import TemporalFeatures

    f, output = config["features"], config["output"]
    on = timed if f["enabled"] == "auto" else f["enabled"]
    features = None
    if on:
        features = TemporalFeatures(lags=f["lags"], season=f["season"],
                                    volatility=f["volatility"], window=f["window"],
                                    calendar=f["calendar"] and timed)
    return (features, TailCalibrator(output["calibration_window"]),
            Episodes(threshold=float(output["anomaly_threshold"]),
                     hold=output["episode_hold"]))


def _check_hold(hold) -> None:
    if hold == "day":
        return
    if isinstance(hold, bool) or not isinstance(hold, int) or not 0 <= hold <= 10**9:
        raise ConfigError(f"output.episode_hold must be day or a number of points from 0 to "
                          f"10^9, got {_show(hold)}")


def _check_features(f: dict) -> None:
    if f["enabled"] not in ("auto", True, False):
        raise ConfigError(f"features.enabled must be auto, true or false, got "
                          f"{_show(f['enabled'])}")
    season = f["season"]
    if season not in (None, "auto") and (isinstance(season, bool) or not isinstance(season, int)
                                         or not 1 <= season <= 10**8):
        raise ConfigError(f"features.season must be auto, null or a period in points from 1 "
                          f"to 10^8, got {_show(season)}")
    for key in ("volatility", "calendar"):
        if not isinstance(f[key], bool):
            raise ConfigError(f"features.{key} must be true or false")


def _check_scheduler(address) -> None:
    if address is None:
        return
    if not isinstance(address, str) or not (
            address.startswith(("tcp://", "tls://", "inproc://", "ucx://"))
            or (address.startswith("local:") and address[6:].isdigit()
                and int(address[6:]) >= 1)):
        raise ConfigError(f"refit.scheduler must be null, a dask scheduler address such as "
                          f"tcp://host:8786, or local:N; got {_show(address)}")
    import importlib.util

    if importlib.util.find_spec("distributed") is None:
        raise ConfigError("refit.scheduler needs dask: pip install 'emstream[dask]'")


def _check_drift(full: dict) -> None:
    drift = full["drift"]
    if drift["detector"] not in ("page-hinkley", "adwin", None):
        raise ConfigError(f"drift.detector must be page-hinkley, adwin or null, got "
                          f"{_show(drift['detector'])}")
    if drift["params"] is not None and not isinstance(drift["params"], dict):
        raise ConfigError("drift.params must be a mapping of the detector's arguments")
    for key, value in (drift["params"] or {}).items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"drift.params.{key} must be finite, got {value!r}")
    from emstream.drift import DriftMonitor

    try:
        monitor = DriftMonitor(GaussianMixture(), **monitor_settings(full))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"drift: {exc}") from None
    if drift["refit_points"] < full["model"]["n_components"]:
        raise ConfigError("drift.refit_points must be at least n_components")
    del monitor


def parse_override(text: str):
    """``section.key=value`` (value in YAML syntax) -> (section, key, value)."""
    name, sep, raw = text.partition("=")
    section, dot, key = name.partition(".")
    if not sep or not dot or not section or not key:
        raise ConfigError(f"--set wants section.key=value, got {_show(text)}")
    try:
        value = safeyaml.load(raw, f"--set {name}") if raw else None
    except safeyaml.YAMLRefused as exc:
        raise ConfigError(str(exc)) from None
    return section, key, value


def read(path: str) -> dict:
    """The sections in the YAML file ``path`` (not yet validated)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(safeyaml.MAX_BYTES + 1)  # a FIFO or /dev/zero ends here too
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        config = safeyaml.load(text, path)
    except safeyaml.YAMLRefused as exc:
        raise ConfigError(str(exc)) from None
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: must hold a mapping of sections")
    return config


def load(path: str | None, overrides=()) -> dict:
    """Read (the shipped defaults alone without ``path``), override and validate;
    ``ConfigError`` on any problem."""
    config = read(path) if path is not None else {}
    for section, key, value in overrides:
        if config.get(section) is None:
            config[section] = {}
        if not isinstance(config[section], dict):
            raise ConfigError(f"section {section!r} must be a mapping")
        config[section][key] = value
    return validate(config)
