"""The daemon's configuration: YAML (safe loading only), validated, with command-line overrides.

Every key, its default, its check and its documentation are in :mod:`emstreamd.schema`
(``config.yaml`` is that schema rendered); a file given with --config and --set overrides
replace the defaults key by key.  A bad file or value is a ``ConfigError``, which the daemon
reports in one line and exits with 78 (EX_CONFIG).  Numbers must be finite and below a sane
bound, so that nothing valid here fails hours later.
"""

from __future__ import annotations

import copy
import os
import stat

from . import safeyaml, schema
from .schema import REPLACED, ConfigError, _show  # noqa: F401 (ConfigError: this module's)

# Every section and key with its default, and the keys SIGHUP may change: the schema's.
DEFAULTS = schema.defaults()
LIVE = schema.live()


# Unknown names listed at most (a file of 200,000 keys named one each in a 1.7 MB log line,
# on every SIGHUP; /etc/shadow given as the configuration was echoed whole).
SHOWN_NAMES = 5


def _names(value) -> str:
    names = sorted(map(str, value))
    shown = [name if name.isprintable() and len(name) <= 40 else _cut(repr(name), 40)
             for name in names[:SHOWN_NAMES]]
    more = len(names) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more else "")


def _cut(text: str, size: int) -> str:
    return text if len(text) <= size else text[:size - 3] + "..."


def validate(config: dict) -> dict:
    """Defaults filled in and every value checked; returns the full configuration."""
    if not isinstance(config, dict):
        raise ConfigError("the configuration must be a mapping of sections")
    _not_another_file(config)
    unknown = set(config) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown section(s): {_names(unknown)}")
    full = copy.deepcopy(DEFAULTS)
    for section, values in config.items():
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"section {section!r} must be a mapping of its keys (indented "
                              f"key: value lines), got {_cut(repr(values), 40)} (a file cut "
                              "short?)")
        if section == "model":
            from emstream import GaussianMixture

            # (a misspelt key reached the estimator: "GaussianMixture.__init__() got an
            # unexpected keyword argument 'n_componets'", the keys it takes not named)
            extra = set(values) - set(GaussianMixture().get_params())
            if extra:
                raise ConfigError(f"unknown key(s) in model: {_names(extra)} (the model's keys "
                                  "are scikit-learn's GaussianMixture's and emstream's: see "
                                  "config.yaml)")
        else:
            for key in values:
                if (section, key) in REPLACED:
                    raise ConfigError(f"{section}.{key} is no longer used: see "
                                      f"{REPLACED[section, key]}")
            extra = set(values) - set(DEFAULTS[section])
            if extra:
                raise ConfigError(f"unknown key(s) in {section}: {_names(extra)}")
        full[section].update(values)
    schema.check(full)
    return full


def model_settings(config: dict) -> dict:
    """GaussianMixture's keyword arguments, with the step floor that ``drift.memory`` implies
    (and with ``reg_covar: auto``, 1e-6 until a series' first rows that vary set it:
    :func:`series_parts`)."""
    settings = dict(config["model"])
    if settings.get("reg_covar") == "auto":
        settings["reg_covar"] = 1e-6  # (scikit-learn's; until the series' rows vary)
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
    """The features (None when off), calibrator, episodes, share of the first rows'
    variance that becomes ``reg_covar`` (None unless ``model.reg_covar: auto``) and the recent
    level's window for a stream, as :class:`emstream.series.SeriesMonitor` takes them;
    ``timed``: the input has a time column (``features.enabled: auto`` turns them on for
    it)."""
    from emstream.calibration import TailCalibrator
    from emstream.episodes import Episodes
    from emstream.series import REG_COVAR_SHARE  # (model.reg_covar: auto)
    from emstream.temporal import TemporalFeatures

    f, output = config["features"], config["output"]
    on = timed if f["enabled"] == "auto" else f["enabled"]
    features = None
    if on:
        features = TemporalFeatures(lags=f["lags"], season=f["season"],
                                    volatility=f["volatility"], window=f["window"],
                                    calendar=f["calendar"] and timed)
    share = REG_COVAR_SHARE if config["model"].get("reg_covar") == "auto" else None
    return (features, TailCalibrator(output["calibration_window"]),
            Episodes(threshold=float(output["anomaly_threshold"]),
                     hold=output["episode_hold"]), share, f["level_window"])


def parse_override(text: str):
    """``section.key=value`` (value in YAML syntax) -> (section, key, value)."""
    name, sep, raw = text.partition("=")
    section, dot, key = name.partition(".")
    if not sep or not dot or not section or not key:
        raise ConfigError(f"--set wants section.key=value, got {_show(text)}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # (bytes of another encoding, escaped by Python's argv)
        raise ConfigError(f"--set {_show(text)}: not UTF-8 text (bytes of another "
                          "encoding?)") from None
    try:
        value = safeyaml.load(raw, f"--set {name}") if raw else None
    except safeyaml.YAMLRefused as exc:
        raise ConfigError(str(exc)) from None
    return section, key, value


def read(path: str, *, block: bool = True, empty_ok: bool = True) -> dict:
    """The sections in the YAML file ``path`` (not yet validated).

    ``block=False`` (a reload by the running daemon): only a regular file is read, since a
    named pipe without a writer would stall the loop, signals and all (at start-up a pipe is
    fine: ``--config <(make-config)``).  ``empty_ok=False``: a file of no YAML value (empty,
    or comments alone) is refused."""
    try:
        fd = os.open(path, os.O_RDONLY | (0 if block else os.O_NONBLOCK))
        with open(fd, "rb") as handle:
            if not block and not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ConfigError(f"{path}: not a regular file (a pipe or a device would "
                                  "stall the running daemon)")
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
        if not empty_ok:
            # (an editor's or a shell's > empties the file before it writes it: every live
            # key went back to its default, said at INFO alone; {} asks for the defaults)
            raise ConfigError(f"{path} holds no settings (empty: being written?); write {{}} "
                              "for every default")
        return {}
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: must hold a mapping of sections")
    return config


def _shadowed(raw: dict, overrides) -> list:
    """The live keys (``section.key``) whose value in the file read (``raw``) a command-line
    override hides: a SIGHUP reloads the file, but the override stays in force (the file's
    edit then did nothing, silently)."""
    return [f"{section}.{key}" for section, key, value in overrides
            if key in LIVE.get(section, ()) and isinstance(raw.get(section), dict)
            and key in raw[section] and raw[section][key] != value]


def reload(path: str | None, overrides=()) -> tuple[dict, list]:
    """A running daemon's SIGHUP: the configuration (as :func:`load`, the file read without
    blocking, once: a 3 MB file took 5 s a read, and it was read twice) and the live keys
    an override hides."""
    raw = read(path, block=False, empty_ok=False) if path is not None else {}
    hidden = _shadowed(raw, overrides)
    return _validated(raw, overrides), hidden


def load(path: str | None, overrides=(), *, block: bool = True) -> dict:
    """Read (the shipped defaults alone without ``path``), override and validate;
    ``ConfigError`` on any problem (``block``: see :func:`read`)."""
    return _validated(read(path, block=block) if path is not None else {}, overrides)


def _not_another_file(config: dict) -> None:
    """Nothing of a configuration is not echoed (the wrong file given, /etc/shadow say, had its
    first entries, hashes and all, printed to the log)."""
    unknown = set(config) - set(DEFAULTS)
    if unknown and len(unknown) == len(config):
        raise ConfigError(f"none of its {len(config)} top-level key(s) is a section of the "
                          f"configuration ({', '.join(DEFAULTS)}): the wrong file?")


def _validated(config: dict, overrides) -> dict:
    """The configuration read, with the command line's overrides, checked."""
    if isinstance(config, dict):
        # (before the overrides: one --set, or the --checkpoint every service passes, made
        # the file "a configuration" with one known section, and its keys were printed)
        _not_another_file(config)
    for section, key, value in overrides:
        if config.get(section) is None:
            config[section] = {}
        if not isinstance(config[section], dict):
            raise ConfigError(f"section {section!r} must be a mapping")
        config[section][key] = value
    return validate(config)
