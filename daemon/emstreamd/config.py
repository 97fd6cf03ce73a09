"""The daemon's configuration: YAML (safe_load only), validated, with command-line overrides.

Every key is documented in the shipped config.yaml.  A bad file or value is a ``ConfigError``,
which the daemon reports in one line and exits with 78 (EX_CONFIG).
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from emstream import GaussianMixture

DEFAULTS = {
    "model": {},
    "input": {"format": "numbers", "columns": None, "fields": None, "timestamp": "auto",
              "max_line_bytes": 4096, "dead_letter": None},
    "batch": {"max_rows": 1000, "first_rows": 100, "max_wait": 0.2},
    "checkpoint": {"path": "emstreamd-state", "every_points": 100_000, "every_seconds": 60.0,
                   "keep": 3},
    "features": {"enabled": "auto", "lags": 1, "season": "auto", "volatility": False,
                 "window": 10, "calendar": False},
    "output": {"per_point": True, "path": "-", "format": "csv", "header": False,
               "anomaly_threshold": 0.9999, "episode_hold": 300, "calibration_window": 2000},
    "status": {"every_seconds": 10.0},
    "refit": {"every_points": None, "window": 10_000, "scheduler": None, "wait_at_exit": 30.0},
    "drift": {"detector": "page-hinkley", "params": {}, "block": 50, "refit_points": 500,
              "memory": 20_000},
    "metrics": {"port": None, "address": "127.0.0.1"},
}
# Sections and keys that SIGHUP may change while running.
LIVE = {"output": {"anomaly_threshold", "episode_hold"}, "status": {"every_seconds"},
        "refit": {"every_points"},
        "checkpoint": {"every_points", "every_seconds"}, "batch": {"max_wait"}}


# Keys of earlier versions, and what replaced them.
REPLACED = {("output", "anomaly_quantile"): "output.anomaly_threshold (a calibrated score in "
            "[0, 1]: 0.9999 flags what one point in 10,000 reaches)",
            ("output", "anomaly_surprise"): "output.anomaly_threshold (a calibrated score in "
            "[0, 1])"}


class ConfigError(ValueError):
    """The configuration cannot be used; the message says which key and why."""


def _check_number(section, key, value, *, low=None, integer=False, allow_none=False):
    if value is None and allow_none:
        return
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or (low is not None and value < low):
        need = "an integer" if integer else "a number"
        bound = f" >= {low}" if low is not None else ""
        raise ConfigError(f"{section}.{key} must be {need}{bound}, got {value!r}")


def validate(config: dict) -> dict:
    """Defaults filled in and every value checked; returns the full configuration."""
    if not isinstance(config, dict):
        raise ConfigError("the configuration must be a mapping of sections")
    unknown = set(config) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown section(s): {', '.join(sorted(unknown))}")
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
                raise ConfigError(f"unknown key(s) in {section}: {', '.join(sorted(extra))}")
        full[section].update(values)
    try:
        GaussianMixture(**full["model"])._check_params()
    except TypeError as exc:
        raise ConfigError(f"model: {exc}") from None
    except ValueError as exc:
        raise ConfigError(f"model: {exc}") from None
    columns = full["input"]["columns"]
    if columns is not None and (not isinstance(columns, list) or not columns or any(
            isinstance(c, bool) or not isinstance(c, (int, str)) or (isinstance(c, int) and c < 0)
            for c in columns)):
        raise ConfigError(f"input.columns must be null or a list of 0-based indices or header "
                          f"names, got {columns!r}")
    stamp = full["input"]["timestamp"]
    if stamp is not None and (isinstance(stamp, bool) or not isinstance(stamp, (int, str))
                              or (isinstance(stamp, int) and stamp < 0)):
        raise ConfigError(f"input.timestamp must be auto, a column name or 0-based index, or "
                          f"null, got {stamp!r}")
    _check_features(full["features"])
    if full["input"]["format"] not in ("numbers", "jsonl"):
        raise ConfigError(f"input.format must be numbers or jsonl, got "
                          f"{full['input']['format']!r}")
    fields = full["input"]["fields"]
    if full["input"]["format"] == "jsonl" and (not isinstance(fields, list) or not fields or any(
            not isinstance(f, str) for f in fields)):
        raise ConfigError("input.format jsonl needs input.fields: a list of field names")
    _check_number("input", "max_line_bytes", full["input"]["max_line_bytes"], low=16,
                  integer=True)
    _check_number("batch", "max_rows", full["batch"]["max_rows"], low=1, integer=True)
    _check_number("batch", "first_rows", full["batch"]["first_rows"], low=1, integer=True)
    _check_number("batch", "max_wait", full["batch"]["max_wait"], low=0)
    _check_number("checkpoint", "every_points", full["checkpoint"]["every_points"], low=1,
                  integer=True)
    _check_number("checkpoint", "every_seconds", full["checkpoint"]["every_seconds"], low=0)
    _check_number("checkpoint", "keep", full["checkpoint"]["keep"], low=1, integer=True)
    if not isinstance(full["checkpoint"]["path"], str) or not full["checkpoint"]["path"]:
        raise ConfigError("checkpoint.path must be a path")
    if full["output"]["format"] not in ("csv", "jsonl"):
        raise ConfigError(f"output.format must be csv or jsonl, got {full['output']['format']!r}")
    for key in ("per_point", "header"):
        if not isinstance(full["output"][key], bool):
            raise ConfigError(f"output.{key} must be true or false")
    threshold = full["output"]["anomaly_threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not (
            0 < threshold <= 1):
        raise ConfigError(f"output.anomaly_threshold must be a score in (0, 1], got "
                          f"{threshold!r}")
    _check_number("output", "episode_hold", full["output"]["episode_hold"], low=0,
                  integer=True)
    _check_number("output", "calibration_window", full["output"]["calibration_window"],
                  low=10, integer=True)
    _check_drift(full)
    _check_number("status", "every_seconds", full["status"]["every_seconds"], low=0)
    _check_number("refit", "every_points", full["refit"]["every_points"], low=1, integer=True,
                  allow_none=True)
    _check_number("refit", "window", full["refit"]["window"], low=1, integer=True)
    _check_number("refit", "wait_at_exit", full["refit"]["wait_at_exit"], low=0)
    _check_scheduler(full["refit"]["scheduler"])
    _check_number("metrics", "port", full["metrics"]["port"], low=0, integer=True,
                  allow_none=True)
    if not isinstance(full["metrics"]["address"], str):
        raise ConfigError("metrics.address must be a host address such as 127.0.0.1")
    if full["metrics"]["port"] is not None:
        try:
            import prometheus_client  # noqa: F401
        except ImportError:
            raise ConfigError("metrics.port needs prometheus-client: "
                              "pip install 'emstream[metrics]'") from None
    if full["refit"]["window"] < full["model"].get("n_components", 1):
        raise ConfigError("refit.window must hold at least n_components points")
    return full


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


def _check_features(f: dict) -> None:
    if f["enabled"] not in ("auto", True, False):
        raise ConfigError(f"features.enabled must be auto, true or false, got {f['enabled']!r}")
    _check_number("features", "lags", f["lags"], low=0, integer=True)
    _check_number("features", "window", f["window"], low=2, integer=True)
    season = f["season"]
    if season not in (None, "auto") and (isinstance(season, bool) or not isinstance(season, int)
                                         or season < 1):
        raise ConfigError(f"features.season must be auto, null or a period >= 1 in points, "
                          f"got {season!r}")
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
                          f"tcp://host:8786, or local:N; got {address!r}")
    import importlib.util

    if importlib.util.find_spec("distributed") is None:
        raise ConfigError("refit.scheduler needs dask: pip install 'emstream[dask]'")


def _check_drift(full: dict) -> None:
    drift = full["drift"]
    if drift["detector"] not in ("page-hinkley", "adwin", None):
        raise ConfigError(f"drift.detector must be page-hinkley, adwin or null, got "
                          f"{drift['detector']!r}")
    if drift["params"] is not None and not isinstance(drift["params"], dict):
        raise ConfigError("drift.params must be a mapping of the detector's arguments")
    from emstream.drift import DriftMonitor

    try:
        monitor = DriftMonitor(GaussianMixture(), **monitor_settings(full))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"drift: {exc}") from None
    if drift["refit_points"] < full["model"].get("n_components", 1):
        raise ConfigError("drift.refit_points must be at least n_components")
    del monitor


def parse_override(text: str):
    """``section.key=value`` (value in YAML syntax) -> (section, key, value)."""
    name, sep, raw = text.partition("=")
    section, dot, key = name.partition(".")
    if not sep or not dot or not section or not key:
        raise ConfigError(f"--set wants section.key=value, got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {name}: {exc}") from None
    return section, key, value


def load(path: str | None, overrides=()) -> dict:
    """Read, override and validate; ``ConfigError`` on any problem."""
    config = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
        try:
            config = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from None
        if not isinstance(config, dict):
            raise ConfigError(f"{path}: must hold a mapping of sections")
    for section, key, value in overrides:
        config.setdefault(section, {})
        if not isinstance(config[section], dict):
            raise ConfigError(f"section {section!r} must be a mapping")
        config[section][key] = value
    return validate(config)
