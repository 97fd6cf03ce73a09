"""SIGHUP: re-read the configuration and take its live keys, saying what changed.

Only the keys :data:`emstreamd.config.LIVE` names change in a running daemon; the others are
reported as waiting for a restart (or, for ``model.*``, for a new model).  A file that does not
load or check is logged and ignored: a reload never stops a daemon that runs well.

Example
-------
>>> import copy, logging
>>> from emstreamd import config as config_module
>>> running = config_module.validate({})
>>> fresh = copy.deepcopy(running); fresh["status"]["every_seconds"] = 5.0
>>> reload_live(running, lambda: (fresh, []), apply=lambda: None)
True
>>> running["status"]["every_seconds"]
5.0
"""

from __future__ import annotations

import logging

from . import config as config_module
from .resumed import same_setting
from .schema import unreachable

log = logging.getLogger("emstreamd")

_ABSENT = object()


# What a resumed checkpoint keeps as its model began with (see resumed.kept_settings_differ).
KEPT_BY_THE_MODEL = ("model.", "features.", "output.calibration_window")


def reload_live(config: dict, fetch, apply, windows=()) -> bool:
    """Take the live keys of a freshly read configuration into ``config``, in place.

    Parameters
    ----------
    config : dict
        The running configuration (its sections are the dicts the stages read).
    fetch : callable
        Returns ``(fresh, shadowed)``: the new validated configuration, and the live keys a
        command-line ``--set`` hides (their file value is not taken); raises
        :class:`emstreamd.config.ConfigError` for a file that does not check.
    apply : callable
        Hands the new live settings to the model's monitors, once they are in ``config``.
    windows : iterable of int
        The calibration windows of the running models: a threshold that one of them cannot
        reach is refused.

    Returns
    -------
    bool
        Whether the new configuration was taken (False: logged, the running one stays).
    """
    try:
        fresh, shadowed = fetch()
    except config_module.ConfigError as exc:
        log.error("SIGHUP: keeping the running configuration: %s", exc)
        return False
    except Exception:  # a reload must never stop a daemon that runs well
        log.exception("SIGHUP: keeping the running configuration: the new one could not "
                      "be checked")
        return False
    for window in windows:
        # (calibration_window is not live: the running models keep theirs, and a threshold
        # only a larger window reaches was taken, after which nothing was ever flagged)
        why = unreachable(fresh["output"]["anomaly_threshold"], window,
                          "the calibration window the running model keeps,")
        if why:
            log.error("SIGHUP: keeping the running configuration: %s", why)
            return False
    live = {(section, key) for section, keys in config_module.LIVE.items() for key in keys}
    # Each live change said (a file emptied by a half-done edit put every live key back to
    # its default with nothing but "reloaded" in the log).
    changed = sorted(f"{section}.{key} {config[section][key]!r} -> {fresh[section][key]!r}"
                     for section, key in live
                     if not same_setting(fresh[section][key], config[section][key]))
    for section, key in live:
        config[section][key] = fresh[section][key]
    # (a key the running configuration does not hold, model.verbose say, is a change too)
    waiting = [f"{section}.{key}" for section, values in fresh.items()
               for key, value in values.items()
               if (section, key) not in live
               and not same_setting(value, config.get(section, {}).get(key, _ABSENT))]
    apply()
    log.info("SIGHUP: configuration reloaded (live keys only)%s",
             ": " + "; ".join(changed) if changed else ", none changed")
    if shadowed:
        log.warning("SIGHUP: %s keep(s) the value given with --set on the command line, "
                    "not the file's (drop the --set for the file to decide)",
                    ", ".join(shadowed))
    # A restart resumes the checkpoint's model with the settings it began with: model keys,
    # the temporal features and the calibration window wait for a new model, not for a
    # restart (the warning said "restart" for all; a restart kept them); a new input.key is
    # another kind of state, which a restart refuses beside this one.
    model_keys = sorted(key for key in waiting if key.startswith(KEPT_BY_THE_MODEL))
    key_change = [key for key in waiting if key == "input.key"]
    others = sorted(key for key in waiting
                    if not key.startswith(KEPT_BY_THE_MODEL) and key != "input.key")
    if others:
        log.warning("SIGHUP: %s changed but only take(s) effect on a restart", ", ".join(others))
    if key_change:
        log.warning("SIGHUP: input.key changed: a restart refuses it beside this checkpoint "
                    "(one series and keys are stored apart; give another checkpoint.path)")
    if model_keys:
        log.warning("SIGHUP: %s changed but only take(s) effect for a new model (a restart "
                    "resumes the checkpoint's model with the settings it began with; "
                    "remove the checkpoint to start a new one)", ", ".join(model_keys))
    return True
