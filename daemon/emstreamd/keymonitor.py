"""One series' monitor: its model, drift monitor, scorer, refit window and history.

The daemon holds one :class:`KeyMonitor` per series (per key of a keyed stream; a single series
is the keyed case with one key).  It learns a mini-batch, counts what happened into its
``counters`` and logs its drift events; it knows nothing of the input, its position or the
output, which stay with the daemon.  :meth:`state` and :meth:`restore` turn it into the
checkpoint's JSON and back, so an evicted key returns exactly as it left.

Example
-------
>>> import numpy as np
>>> from emstreamd import config
>>> monitor = KeyMonitor(config.validate({"features": {"enabled": False}}), timed=False)
>>> update = monitor.learn(np.random.default_rng(0).normal(size=(100, 1)), None)
>>> monitor.counters["rows"], monitor.model._is_fitted()
(100, True)
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as StillRunning

import numpy as np

from emstream import GaussianMixture
from emstream.drift import DriftMonitor
from emstream.exceptions import InitialValuesError
from emstream.ring import RingBuffer
from emstream.series import SeriesMonitor
from emstream.temporal import MAX_SEASON, MIN_SEASON
from emstream.timestamps import typical_step

from . import config as config_module
from .errors import EX_CONFIG, EX_DATAERR, StartError

log = logging.getLogger("emstreamd")

# What a monitor counts (the daemon adds lines and rejects, which belong to the input).
COUNTED = ("rows", "batches", "anomalies", "gated", "refits", "alarms")
# A background refit running this long when the next one is due is said to be stuck (a
# WARNING): a refit of refit.window points takes seconds on a working cluster.
STUCK_REFIT_SECONDS = 300.0
# Values per row a model learns at most (the input's columns, with their temporal features).
# Full covariances cost D² per component and their statistics D²/2 per row in a mini-batch:
# 1,000 columns took 6.9 GB and wrote 354 MB checkpoints, larger than a checkpoint may be read
# back (emstream.checkpoint.MAX_BYTES), so the restart lost everything; at 256, about 0.5 GB.
MAX_FEATURES = 256
# An in-process refit of a large refit.window runs for seconds, or minutes (1.6 s for a
# million 3-D points with K=8 here; the window may be 10^8): it runs in a worker thread while
# this one tells the daemon it is alive this often (systemd's watchdog killed the daemon
# mid-refit, and again at each restart).
REFIT_PING_SECONDS = 0.1


def while_alive(work, alive, *args):
    """``work(*args)``, run in a worker thread while ``alive()`` is called every
    :data:`REFIT_PING_SECONDS` in this one; its result (or its exception).

    >>> calls = []
    >>> while_alive(sum, lambda: calls.append(1), [1, 2, 3])
    6
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="emstreamd-refit") as pool:
        job = pool.submit(work, *args)
        while True:
            try:
                return job.result(timeout=REFIT_PING_SECONDS)
            except StillRunning:
                alive()


def held_out_change(before, after) -> str:
    """How a refit's held-out average log-likelihood moved, for the log; a refit with no row to
    judge by (a window of one row, every row beyond the gate) says so instead of -inf -> -inf.

    >>> held_out_change(-1.23456, -1.1), held_out_change(float("-inf"), float("-inf"))
    ('held-out average log-likelihood -1.235 -> -1.1', 'no held-out rows to judge by')
    """
    values = [float("nan") if v is None else float(v) for v in (before, after)]
    if not any(math.isfinite(v) for v in values):
        return "no held-out rows to judge by"
    return f"held-out average log-likelihood {values[0]:.4g} -> {values[1]:.4g}"


def batch_rows(config: dict, learned: int) -> int:
    """Rows of the next full mini-batch after ``learned`` rows: ``batch.first_rows`` at first,
    then as many as were learned before (doubling), up to ``batch.max_rows``.  A model exists
    after the first small batch, so every later point is scored; the size depends only on the
    rows learned (checkpointed), so a resumed back-fill cuts the same batches."""
    settings = config["batch"]
    return int(min(settings["max_rows"], max(settings["first_rows"], learned)))


class KeyMonitor:
    """The model of one series and everything learned with it.

    Parameters
    ----------
    config : dict
        Validated configuration (:mod:`emstreamd.config`).
    timed : bool
        Whether the series' rows come with times (features on under ``features.enabled:
        auto``).
    counters : dict, optional
        Where to count (the keys of ``COUNTED``); a fresh dict by default.
    metrics : emstreamd.metrics.Metrics, optional
    background : emstreamd.background.BackgroundRefit, optional
        Runs refits elsewhere (single series only).
    name : str
        Prefix of its log lines (``key 'web-3': ``); empty for a single series.
    alive : callable, optional
        Tells the daemon it is making progress (its watchdog), during in-process refits.
    """

    def __init__(self, config: dict, timed: bool, counters: dict | None = None, metrics=None,
                 background=None, name: str = "", alive=None):
        self.config = config
        self.timed = timed
        self.counters = counters if counters is not None else dict.fromkeys(COUNTED, 0)
        self.metrics = metrics
        self.background = background
        self.name = name
        self.alive = alive
        self.model = GaussianMixture(**config_module.model_settings(config))
        self.monitor = DriftMonitor(self.model, **config_module.monitor_settings(config))
        self.series = SeriesMonitor(self.monitor, *config_module.series_parts(config, timed))
        self.apply_live_settings()
        self.window = RingBuffer(config["refit"]["window"])  # recent learned rows, for refits
        self.learned = 0  # rows ever put in the window (to find those after a snapshot)
        self.generation = 0  # bumped by drift refits: older background refits are stale
        self.since_refit = 0
        self.history = []

    # ------------------------------------------------------------------ learning
    def _check_width(self, n_values: int) -> None:
        """A resumed model (``emstream fit``'s, say, which names no input) must take rows of
        the width this input gives: one line and exit 65 if not, not a traceback later."""
        features = self.series.features
        width = n_values if features is None else features.n_features_out(n_values)
        if width != self.model.n_features_in_:
            made = "" if features is None else \
                f" (its {n_values} with their temporal features)"
            raise StartError(f"the input gives the model rows of {width} values{made}, the "
                             f"checkpoint's model takes {self.model.n_features_in_}: it learned "
                             "another input (see input.columns and features.enabled; remove "
                             "the checkpoint to start a new model)", EX_DATAERR)

    def _check_not_too_wide(self, n_values: int) -> None:
        """One line and exit 78 for an input wider than a model learns (:data:`MAX_FEATURES`),
        before anything is learned."""
        features = self.series.features
        width = n_values if features is None else features.n_features_out(n_values)
        if width > MAX_FEATURES:
            made = "" if features is None else f" ({n_values} with their temporal features)"
            raise StartError(f"the input gives the model rows of {width} values{made}, more than "
                             f"the {MAX_FEATURES} a model learns (full covariances grow as the "
                             "square): pick the columns to learn with input.columns",
                             EX_CONFIG)

    def batch_rows(self) -> int:
        """Rows of the series' next full mini-batch (:func:`batch_rows`; the first at least
        :meth:`rows_to_decide`)."""
        return max(batch_rows(self.config, self.counters["rows"]), self.rows_to_decide())

    def rows_to_decide(self) -> int:
        """Rows the first mini-batch must hold before ``batch.max_wait`` may cut it short:
        the temporal features decide their season from it (a live stream's first row alone,
        cut after 0.2 s, turned the season and the clock off for good)."""
        features = self.series.features
        return 0 if features is None else features.rows_to_decide(self.timed)

    def learn(self, batch: np.ndarray, times, *, per_point: bool = False):
        """Score and learn one mini-batch; returns the :class:`emstream.series` update (its
        ``events`` include the anomalous episodes' first points, for the daemon to log).

        Parameters
        ----------
        batch : ndarray of shape (n, n_columns)
        times : ndarray of float, shape (n,), or None
            Seconds since the epoch.
        per_point : bool
            Compute each row's responsibilities and score (for per-point output).
        """
        model = self.model
        fitted = model._is_fitted()
        if fitted:
            self._check_width(batch.shape[1])
        elif not self.counters["rows"]:
            self._check_not_too_wide(batch.shape[1])
        warming = not fitted or model._learner().warming_up
        try:
            update = self.series.update(batch, times, with_resp=per_point,
                                        with_scores=per_point)
        except InitialValuesError as exc:  # (at the first rows: nothing learned yet)
            raise StartError(f"the input does not fit the configuration: model.{exc}",
                             EX_CONFIG) from None
        counters = self.counters
        if update.log_prob is not None:
            anomalies, gated = int(update.anomaly.sum()), int(update.gated.sum())
            counters["anomalies"] += anomalies
            counters["gated"] += gated
            if self.metrics is not None:
                self.metrics.log_likelihood.set(float(update.log_prob.mean()))
                self.metrics.anomalies.inc(anomalies)
                self.metrics.gated.inc(gated)
        # (A keyed stream's thousands of keys would flood the log: their own lines are debug.)
        level = logging.DEBUG if self.name else logging.INFO
        if not fitted and self.model._is_fitted():
            log.log(level, "%sfirst (provisional) model after %d points", self.name,
                    self.model.n_seen_)
        if warming and self.model._is_fitted() and not self.model._learner().warming_up:
            log.log(level, "%swarm-up complete after %d points", self.name, self.model.n_seen_)
        for event in update.events:
            if event["event"] != "anomaly":
                self._drift_event(event, len(batch))
        if not counters["rows"] and self.series.features is not None:
            self._log_time_setup(level, times)
        counters["rows"] += len(batch)
        counters["batches"] += 1
        if self.metrics is not None:
            self.metrics.points.inc(len(batch))
            self.metrics.batches.inc()
        learned = update.rows  # the model's rows (the features, when they are on)
        self._remember(learned[~update.gated] if update.gated.any() else learned)
        every = self.config["refit"]["every_points"]
        if every is not None and self.since_refit >= every:  # at batch boundaries: determinate
            self.refit("schedule")
        return update

    def _log_time_setup(self, level: int, times) -> None:
        """Say what the first mini-batch decided for good: the time step, the season in the
        context and the episode's hold (an odd first batch, say a start-up burst of
        one-second rows, can switch the season off; the operator should see it)."""
        features, episodes = self.series.features, self.series.episodes
        step = episodes.time_step
        if step is None and times is not None and len(times) > 1:
            # (Times that stand still or run backwards: an export sorted newest first, or
            # two sensors' rows in one file, said so rather than "no timestamps".)
            median = typical_step(times)
            clock = f"times that do not move forward (a median step of {median:g} s" + (
                "; dates without their time of day? no column beside them holds it)"
                if median == 0 else ")")
        elif step is None and times is not None and len(times) == 1:
            # (a series whose input ended after its first row: times, but no step yet)
            clock = "one timestamp alone (no time step)"
        else:
            clock = f"a time step of {step:g} s" if step else "no timestamps"
        season = features.season_
        if season is not None and features.period_:
            what = (f"the value {features.period_:g} s back in the context (the row nearest "
                    f"that time; {season} points at that step)")
        elif season is not None:
            what = f"the value {season} points back in the context"
        elif features.season == "auto" and step:
            what = (f"no season in the context (a day is {86400 / step:.0f} points, outside "
                    f"{MIN_SEASON} to {MAX_SEASON})")
        else:
            what = "no season in the context"
        if season is None and features.season == "auto" and self.timed \
                and level == logging.INFO:
            level = logging.WARNING  # (the daily season was wanted and is off for good)
        calendar = ("; features.calendar is set but the input has no time column: no time of "
                    "day or week in the model" if self.config["features"]["calendar"]
                    and not self.timed else "")  # (dropped without a word)
        log.log(level, "%stime series: %s; %s; an alert holds its episode for %d points%s",
                self.name, clock, what, episodes.hold_points, calendar)

    def _remember(self, batch: np.ndarray) -> None:
        """Keep the last ``refit.window`` learned rows."""
        self.window.extend(batch)
        self.learned += len(batch)
        self.since_refit += len(batch)

    # ------------------------------------------------------------------ refits
    def refit(self, reason: str) -> None:
        """Refit on the window (:meth:`GaussianMixture.refit`: the current model is kept
        unless a candidate beats it on held-out rows); labels kept; online EM goes on."""
        model = self.model
        if not model._is_fitted():
            log.info("%srefit (%s) skipped: the model is still warming up", self.name, reason)
            return
        if len(self.window) < model.n_components:
            # (a model resumed with more components than refit.window holds rows: every refit
            # was skipped as "still warming up", after thousands of points)
            log.info("%srefit (%s) skipped: its window holds %d rows, fewer than the model's "
                     "%d components (refit.window %d)", self.name, reason, len(self.window),
                     model.n_components, self.config["refit"]["window"])
            return
        recent = self.window.recent()
        if self.background is not None:
            if self.background.busy:
                # The next scheduled one is refit.every_points later, not at the next batch (a
                # scheduler that does not answer made this line a flood, one per batch).
                self.since_refit = 0
                running = self.background.running_for
                # (a scheduler that takes connections but never answers, or has no worker,
                # keeps a refit running for ever: no error ever comes, so this says it)
                log.log(logging.WARNING if running >= STUCK_REFIT_SECONDS else logging.INFO,
                        "refit (%s) skipped: the previous one is still running on %s (for "
                        "%.0f s%s)", reason, self.background.address, running,
                        "; is the scheduler up, with workers?"
                        if running >= STUCK_REFIT_SECONDS else "")
                return
            self.background.start(model, recent, reason=reason, learned_at_start=self.learned,
                                  generation=self.generation)
            self.since_refit = 0
            log.info("refit (%s): batch EM on the last %d points started on %s", reason,
                     len(recent), self.background.address)
            return
        if self.alive is None:
            model.refit(recent)
        else:
            while_alive(model.refit, self.alive, recent)
        outcome = model.last_refit_
        self._count_refit()
        if outcome["replaced"]:
            self.generation += 1
        self.history.append({"event": "refit", "reason": reason, "rows": self.counters["rows"],
                             "window": len(recent), "replaced": outcome["replaced"],
                             "candidate": outcome["candidate"],
                             "iterations": outcome["iterations"]})
        log.info("%srefit (%s) on the last %d points: %s (%s candidate); %s", self.name, reason,
                 len(recent), "model replaced" if outcome["replaced"] else "model kept",
                 outcome["candidate"], held_out_change(outcome["log_likelihood_before"],
                                                       outcome["log_likelihood_after"]))

    def swap_in(self, job, replay_step: int) -> None:
        """Adopt a finished background refit; re-learn the points that arrived meanwhile."""
        address = self.background.address
        if job.error is not None:
            log.error("refit (%s) on %s failed: %s: %s", job.reason, address,
                      type(job.error).__name__, job.error)
            return
        if job.generation != self.generation:
            log.warning("refit (%s) from %s discarded: the model was replaced while it ran "
                        "(a drift refit or the learner's upkeep)", job.reason, address)
            return
        model, since = job.model, self.learned - job.learned_at_start
        if since > len(self.window):
            log.warning("refit (%s) from %s discarded: %d points arrived while it ran, more "
                        "than refit.window holds to re-learn", job.reason, address, since)
            return
        replay = self.window.recent(since) if since else np.empty((0, model.n_features_in_))
        for start in range(0, len(replay), replay_step):
            model.partial_fit(replay[start:start + replay_step])
            if self.alive is not None:  # (up to refit.window points: the watchdog is told)
                self.alive()
        self.model = self.monitor.model = model
        self._count_refit()
        outcome = model.last_refit_
        self.history.append({"event": "refit", "reason": job.reason,
                             "rows": self.counters["rows"], "window": len(job.rows),
                             "replaced": outcome["replaced"], "candidate": outcome["candidate"],
                             "iterations": outcome["iterations"], "scheduler": address,
                             "seconds": round(job.seconds, 3), "relearned": len(replay)})
        log.info("refit (%s) on %s: %d points, %s, %.1fs; %d points that arrived meanwhile "
                 "re-learned", job.reason, address, len(job.rows),
                 "model replaced" if outcome["replaced"] else "model kept", job.seconds,
                 len(replay))

    def _count_refit(self) -> None:
        self.counters["refits"] += 1
        if self.metrics is not None:
            self.metrics.refits.inc()
        self.since_refit = 0

    def _drift_event(self, event: dict, batch_rows: int) -> None:
        """Log, count and record an alarm, a drift refit or an upkeep of the monitor."""
        # event["point"] counts the monitor's points (from this run's start); "rows" in the
        # history counts the learned rows, as refit records do.
        batch_start = self.monitor.n_points_ - batch_rows
        record = {**event, "rows": self.counters["rows"] + event["point"] - batch_start}
        del record["point"]
        self.history.append(record)
        kind = event["event"]
        if kind == "drift":
            self.counters["alarms"] += 1
            if self.metrics is not None:
                self.metrics.alarms.inc()
            log.warning("%sdrift alarm (%s, %s) at point %d: recent surprise %.3g nats",
                        self.name, event["detector"], event.get("change", "surprise"),
                        record["rows"], event["recent_surprise"])
            return
        if kind == "upkeep":
            # The learner replaced its model (a birth, a better structure): refits started
            # before it are stale.
            self.generation += 1
            log.info("%supkeep (%s): model replaced by the %s candidate; %s", self.name,
                     event["reason"], event["candidate"],
                     held_out_change(event["log_likelihood_before"],
                                     event["log_likelihood_after"]))
            return
        self.generation += 1
        if event.get("replaced", True):
            self._count_refit()
            # Points before the change would pull a scheduled refit back to the old regime.
            self.window.clear()
        log.warning("%sdrift refit on the %d points after the alarm: %s (%s); %s", self.name,
                    event["points"],
                    "model replaced" if event.get("replaced", True) else "model kept",
                    event.get("candidate"), held_out_change(event["log_likelihood_before"],
                                                            event["log_likelihood_after"]))

    # ------------------------------------------------------------------ settings and state
    def apply_live_settings(self) -> None:
        """The SIGHUP-live output settings (threshold, episode hold)."""
        output = self.config["output"]
        self.series.episodes.threshold = float(output["anomaly_threshold"])
        self.series.episodes.set_hold(output["episode_hold"])

    def state(self) -> dict:
        """The checkpoint's meta fields of this series (JSON-ready); the model is saved beside
        it (:func:`emstream.checkpoint.dumps`)."""
        return {"monitor": self.monitor.state(), "series": self.series.state(),
                "history": self.history, "since_refit": self.since_refit}

    def restore(self, model: GaussianMixture, meta: dict, *, where: str) -> None:
        """Take a checkpoint's model and meta fields (``where`` names it in errors).

        Raises
        ------
        emstream.checkpoint.CheckpointError
            The series' state does not fit its model.
        """
        from emstream.checkpoint import CheckpointError

        self.model = model
        learner = model.__dict__.get("_online")
        if learner is not None:
            # The refit window is not checkpointed (refit.window rows for every key); the
            # learner's recent rows, which are, stand in for it: a refit after a restart, or
            # of a key read back from the store, was skipped as "still warming up".  During
            # the warm-up its rows wait in the warm-up buffer (SIGUSR2 refitted a key on its
            # 667 rows, and skipped it with "0 rows" once it had been evicted).
            recent = (learner.window.recent() if len(learner.window) else
                      np.concatenate(learner.buffer) if learner.buffer else None)
            if recent is not None and len(recent):
                self.window.extend(recent[-self.window.capacity:])
        settings = config_module.monitor_settings(self.config)
        # The resumed model keeps its components (config.yaml's other count is warned about):
        # a refit needs one row for each of them, whatever drift.refit_points now says.
        settings["refit_points"] = max(settings["refit_points"], model.n_components)
        self.monitor = DriftMonitor(model, **settings)
        if meta.get("monitor") is not None:
            try:
                self.monitor.restore(meta["monitor"])
            except ValueError as exc:
                log.warning("%sdrift monitor starts afresh: %s", self.name, exc)
        self.history = meta.get("history", [])
        # Rows towards the next scheduled refit (refit.every_points): they started again from
        # 0 at every restart and every reload of an evicted key, whose refits then never came.
        since = meta.get("since_refit", 0)
        if not isinstance(since, int) or isinstance(since, bool) or since < 0:
            log.warning("%srows since the last refit start afresh: %s is not a count",
                        self.name, repr(since)[:40])
            since = 0
        self.since_refit = since
        self.series = SeriesMonitor(self.monitor,
                                    *config_module.series_parts(self.config, self.timed))
        if meta.get("series") is not None:
            try:
                self.series.restore(meta["series"])
            except ValueError as exc:
                raise CheckpointError(f"{where}: {exc}") from None
        self.apply_live_settings()
