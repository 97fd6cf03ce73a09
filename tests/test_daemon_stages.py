"""The reload and status stages alone, without a daemon (the loop wires them)."""

from __future__ import annotations

import copy
import logging

from emstreamd import config as config_module
from emstreamd.reload import reload_live
from emstreamd.status import StatusLine


def _running() -> dict:
    return config_module.validate({})


def test_a_reload_takes_the_live_keys_and_names_each_change(caplog):
    running, applied = _running(), []
    fresh = copy.deepcopy(running)
    fresh["status"]["every_seconds"] = 5.0
    fresh["batch"]["max_rows"] = 7  # not live: waits for a restart
    fresh["model"]["n_components"] = 4  # waits for a new model
    with caplog.at_level(logging.INFO, logger="emstreamd"):
        assert reload_live(running, lambda: (fresh, ["output.anomaly_threshold"]),
                           apply=lambda: applied.append(running["status"]["every_seconds"]))
    assert running["status"]["every_seconds"] == 5.0
    assert running["batch"]["max_rows"] != 7 and running["model"]["n_components"] != 4
    assert applied == [5.0]  # the monitors are handed the new values, once
    text = caplog.text
    assert "status.every_seconds 10 -> 5.0" in text
    assert "batch.max_rows changed but only take(s) effect on a restart" in text
    assert "model.n_components changed but only take(s) effect for a new model" in text
    assert "output.anomaly_threshold keep(s) the value given with --set" in text


def test_a_reload_says_what_the_model_keeps_and_what_a_restart_refuses(caplog):
    """The temporal features and the calibration window were said to "take effect on a
    restart", which keeps them as the model began; a new input.key too, which a restart
    refuses beside this checkpoint (found by an attack helper)."""
    running = _running()
    fresh = copy.deepcopy(running)
    fresh["features"]["lags"] = 2
    fresh["output"]["calibration_window"] = 500
    fresh["input"]["key"] = "host"
    with caplog.at_level(logging.INFO, logger="emstreamd"):
        assert reload_live(running, lambda: (fresh, []), apply=lambda: None)
    text = caplog.text
    assert ("features.lags, output.calibration_window changed but only take(s) effect for a "
            "new model") in text
    assert "input.key changed: a restart refuses it beside this checkpoint" in text
    assert "effect on a restart" not in text


def test_a_reload_refuses_a_threshold_the_running_models_window_cannot_reach(caplog):
    """calibration_window is not live: a file raising it with a threshold only the larger
    window reaches passed its own check, the threshold was taken, and nothing was ever
    flagged again (found by an attack helper)."""
    running = _running()
    before = copy.deepcopy(running)
    fresh = copy.deepcopy(running)
    fresh["output"]["calibration_window"] = 100_000
    fresh["output"]["anomaly_threshold"] = 0.9999999
    with caplog.at_level(logging.INFO, logger="emstreamd"):
        assert not reload_live(running, lambda: (fresh, []), apply=lambda: 1 / 0,
                               windows={running["output"]["calibration_window"]})
    assert running == before
    assert ("keeping the running configuration: output.anomaly_threshold 0.9999999 can never "
            "be reached with the calibration window the running model keeps, 1000") in caplog.text


def test_the_windows_a_reload_checks_are_those_of_the_models_that_score():
    """A resumed single series scores with the window its model keeps, not config.yaml's:
    counting that one refused a threshold the running model reaches (found by a review);
    a keyed daemon's new keys take config.yaml's, its stored keys keep theirs."""
    from types import SimpleNamespace

    from emstreamd.keyed import KeyedDaemon
    from emstreamd.loop import Daemon

    config = {"output": {"calibration_window": 100}}
    assert Daemon._windows(SimpleNamespace(kept_window=1000, config=config)) == {1000}
    assert Daemon._windows(SimpleNamespace(kept_window=None, config=config)) == {100}
    assert KeyedDaemon._windows(SimpleNamespace(kept_window=1000, config=config)) == {100, 1000}


def test_a_reload_of_a_broken_file_keeps_the_running_configuration(caplog):
    running = _running()
    before = copy.deepcopy(running)

    def broken():
        raise config_module.ConfigError("batch: not a mapping")

    def crashing():
        raise RuntimeError("a bug in the checks")

    with caplog.at_level(logging.INFO, logger="emstreamd"):
        assert not reload_live(running, broken, apply=lambda: 1 / 0)
        assert not reload_live(running, crashing, apply=lambda: 1 / 0)
    assert running == before
    assert "keeping the running configuration: batch: not a mapping" in caplog.text
    assert "the new one could not be checked" in caplog.text


def test_the_status_line_is_due_every_period_and_rates_the_points_since_the_last():
    now = [100.0]
    settings = {"every_seconds": 10}
    status = StatusLine(settings, clock=lambda: now[0])
    status.count(3000)
    now[0] = 109.9
    assert not status.due()
    now[0] = 110.0
    assert status.due() and status.rate() == 300.0
    status.said()
    assert not status.due() and status.rows == 0
    settings["every_seconds"] = 0  # a reload turned status lines off
    now[0] = 1000.0
    assert not status.due()
