"""What a resumed checkpoint keeps against what config.yaml now says.

A checkpoint's model keeps the hyper-parameters, temporal features, calibration window and
input layout it began with; a changed setting on a restart would otherwise do nothing,
silently.  These functions name the settings that differ, and log them once at start.
"""

from __future__ import annotations

import logging

import numpy as np

from . import config as config_module

log = logging.getLogger("emstreamd")


def same_setting(a, b) -> bool:
    """Equal settings, arrays and lists (of numbers or of names) included.

    >>> same_setting([[1, 2.0]], np.array([[1.0, 2.0]])), same_setting(["v"], "v")
    (True, False)
    """
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        try:
            return bool(np.array_equal(np.asarray(a, dtype=float), np.asarray(b, dtype=float)))
        except (TypeError, ValueError):
            return False
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple))
                and len(a) == len(b) and all(same_setting(x, y) for x, y in zip(a, b)))
    return a == b


def warn_resumed_settings(model, meta: dict, config: dict, keyed: bool = False) -> list:
    """Log (and return) what config.yaml sets otherwise than a resumed model keeps: the
    model's hyper-parameters, its temporal features and its calibration window (a change to
    them on a resumed checkpoint did nothing, silently).  ``keyed``: ``model`` and ``meta`` are
    one key's of a state store, standing for every key it holds."""
    saved_params = model.get_params()
    auto = {"reg_covar"} if config["model"].get("reg_covar") == "auto" else set()
    differ = [_setting_name(k, config) for k, v in config_module.model_settings(config).items()
              if k in saved_params and k not in auto and not same_setting(saved_params[k], v)]
    layout = meta.get("layout") if isinstance(meta, dict) else None
    differ += kept_settings_differ(
        meta, config, timed=None if not isinstance(layout, dict)
        else layout.get("time_field") is not None)
    if differ:
        if keyed:
            log.warning("the keys in the state store keep the settings their models began "
                        "with; config.yaml differs in %s, which only new keys take (remove "
                        "the state store to start every key afresh)", differ)
        else:
            log.warning("the checkpoint keeps the settings its model began with; config.yaml "
                        "differs in %s (remove the checkpoint to start a new model with them)",
                        differ)
    return differ


# The input settings a checkpoint's layout fixes (the columns read, the key, the time).
LAYOUT_SETTINGS = ("format", "columns", "fields", "key", "timestamp", "day_first")


def warn_layout_settings(meta: dict, settings: dict) -> list:
    """Log (and return) the input settings config.yaml changed since the checkpoint's layout
    was decided: the resumed layout keeps reading as before (input.key changed on a restart
    went on keying by the old column, without a word)."""
    saved = (meta.get("config") or {}).get("input") if isinstance(meta, dict) else None
    if not isinstance(saved, dict):
        return []
    differ = [f"input.{name}" for name in LAYOUT_SETTINGS
              if name in saved and not same_setting(saved[name], settings.get(name))]
    if differ:
        log.warning("the checkpoint keeps the input layout it began with; config.yaml "
                    "differs in %s (remove the checkpoint to read the input anew)", differ)
    return differ


def _setting_name(parameter: str, config: dict) -> str:
    """The config key a model parameter comes from (the step floor: from drift.memory unless
    model.step_floor is set)."""
    if parameter == "step_floor" and config["model"].get("step_floor") is None:
        return "drift.memory"
    return f"model.{parameter}"


def kept_settings_differ(meta: dict, config: dict, timed: bool | None = None) -> list:
    """The settings config.yaml sets otherwise than the checkpoint's state keeps them (its
    temporal features, its calibration window).  ``timed``: whether the input has times (for
    ``features.enabled: auto``; None: not known yet, not compared)."""
    series = meta.get("series") if isinstance(meta, dict) else None
    if not isinstance(series, dict):
        return []
    differ = []
    kept, wanted = series.get("features"), config["features"]
    enabled = wanted["enabled"] if wanted["enabled"] != "auto" else timed
    if isinstance(kept, dict):
        # Without a time column there is no calendar, however features.calendar is set (every
        # restart said config.yaml differed in it from the checkpoint that it made).
        want = dict(wanted, calendar=wanted["calendar"] and (timed is not False))
        differ += [f"features.{name}" for name in ("lags", "season", "volatility", "window",
                                                        "calendar")
                   if name in kept and not same_setting(kept[name], want[name])
                   and not (name == "calendar" and timed is None and not kept[name])]
        if enabled is False:
            differ.append("features.enabled")
    elif kept is None and enabled is True:
        differ.append("features.enabled")
    calibrator = series.get("calibrator")
    if isinstance(calibrator, dict) and calibrator.get("size") not in (
            None, config["output"]["calibration_window"]):
        differ.append("output.calibration_window")
    return differ


def kept_window(meta: dict) -> int | None:
    """The calibration window a checkpoint's model keeps (None if the checkpoint has none)."""
    series = meta.get("series") if isinstance(meta, dict) else None
    calibrator = series.get("calibrator") if isinstance(series, dict) else None
    size = calibrator.get("size") if isinstance(calibrator, dict) else None
    return size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else None


def check_kept_window(meta: dict, config: dict) -> int | None:
    """The calibration window a resumed model keeps, if it has one; exit 78 if config.yaml's
    threshold can never be reached with it (a threshold raised with a larger window on a
    restart was taken, the window not: nothing was ever flagged again, with exit 0)."""
    from .errors import EX_CONFIG, StartError
    from .schema import unreachable

    window = kept_window(meta)
    if window is not None:
        why = unreachable(config["output"]["anomaly_threshold"], window,
                          "the calibration window the checkpoint's model keeps,")
        if why:
            raise StartError(f"{why} (remove the checkpoint to start a new model with "
                             "config.yaml's window)", EX_CONFIG)
    return window
