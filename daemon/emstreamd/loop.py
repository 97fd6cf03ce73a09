"""The daemon's main loop: read, parse, learn, report, checkpoint; signals only set flags.

Exactly-once on resumable inputs: a checkpoint holds the model and the byte offset just past
the last line whose effect is in the model (and the counters as of that line) in one atomic
write, so a restart from it re-reads precisely the lines that were not yet applied.
"""

from __future__ import annotations

import json
import logging
import os
import re
import select
import signal
import stat
import sys
import time
from pathlib import Path

import numpy as np

from emstream import GaussianMixture, checkpoint
from emstream._blas import single_thread_blas
from emstream.drift import DriftMonitor
from emstream.parse import Rejects, parse_json_lines, parse_lines
from emstream.report import format_rows
from emstream.ring import RingBuffer
from emstream.series import SeriesMonitor
from emstream.table import Layout, LayoutError, find_layout, parse_table

from . import config as config_module
from . import lock
from .columns import parse_with_columns
from .errors import EX_CANTCREAT, EX_CONFIG, EX_IOERR, StartError
from .notify import Watchdog, notify

log = logging.getLogger("emstreamd")
# stderr is a terminal (someone is watching): a back-fill's status line comes every second.
_TERMINAL = sys.stderr.isatty()

# /healthz answers 503 when the main loop has not turned for this long (a write that blocks, a
# refit that does not end).
STALL_SECONDS = 60.0
# A checkpoint that failed (a full disk) is tried again after this many seconds, not at once.
CHECKPOINT_RETRY_SECONDS = 5.0
# Rejected lines logged: the first ones, then one in so many (counted over the daemon's life).
LOGGED_REJECTS = 20
LOG_REJECT_EVERY = 1000


def _same(a, b) -> bool:
    """Equal settings, arrays and lists included."""
    if isinstance(a, (list, np.ndarray)) or isinstance(b, (list, np.ndarray)):
        try:
            return bool(np.array_equal(np.asarray(a, dtype=float), np.asarray(b, dtype=float)))
        except (TypeError, ValueError):
            return False
    return a == b


class Flags:
    """What signal handlers ask of the loop (handlers only set these)."""

    def __init__(self):
        self.stop = False
        self.checkpoint = False
        self.reload = False
        self.refit = False

    def install(self) -> None:
        def stop(signum, frame):
            self.stop = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGUSR1, lambda s, f: setattr(self, "checkpoint", True))
        signal.signal(signal.SIGHUP, lambda s, f: setattr(self, "reload", True))
        signal.signal(signal.SIGUSR2, lambda s, f: setattr(self, "refit", True))


class PendingRejects:
    """The rejected lines read after the last applied row: their numbers and reasons, kept as
    the parser's arrays (a flood of them costs a few bytes a line, not an object a line).

    A checkpoint's position stays before the first of them while a row read before them is
    unapplied, and its counters leave them out."""

    def __init__(self):
        self._parts = []  # (lines, codes, reasons) of successive blocks, lines increasing

    def add(self, rejects: Rejects) -> None:
        if len(rejects):  # (not the Rejects themselves: they hold on to their block's bytes)
            self._parts.append((rejects.lines, rejects.codes, rejects.reasons))

    def __bool__(self) -> bool:
        return bool(self._parts)

    def first_line(self) -> int:
        return int(self._parts[0][0][0])

    def drop_through(self, line: int) -> None:
        """Forget the rejects up to and including ``line`` (now behind the position)."""
        kept = []
        for lines, codes, reasons in self._parts:
            if lines[-1] > line:
                start = int(np.searchsorted(lines, line, side="right"))
                kept.append((lines[start:], codes[start:], reasons))
        self._parts = kept

    def counts(self) -> dict:
        """Rejects by reason."""
        total = {}
        for _, codes, reasons in self._parts:
            for code, n in enumerate(np.bincount(codes).tolist()):
                if n:
                    total[reasons[code]] = total.get(reasons[code], 0) + n
        return total


_VISIBLE = re.compile(rb"\S")  # what bytes.strip() leaves


def _head(data: bytes) -> bytes:
    """The start of a block through its second non-blank line: all that ``find_layout`` reads
    (a header, the first data line), without splitting a block of a million lines."""
    end = 0
    for _ in range(2):
        found = _VISIBLE.search(data, end)
        if found is None:
            return data
        end = data.find(b"\n", found.start()) + 1
        if not end:
            return data
    return data[:end]


def _indices(columns) -> bool:
    """Whether ``input.columns`` picks columns by 0-based index (not by header name)."""
    return bool(columns) and all(isinstance(c, int) for c in columns)


def _split_front(parts: list, count: int) -> tuple[np.ndarray, list]:
    """The first ``count`` items of a list of arrays, and the list of what is left.

    A view when the first array holds them all (the usual case: a parsed block holds many
    mini-batches); otherwise only the pieces that make up those items are joined.
    """
    first = parts[0]
    if len(first) >= count:
        return first[:count], ([first[count:]] if len(first) > count else []) + parts[1:]
    taken, n = [], 0
    for i, part in enumerate(parts):
        if n + len(part) > count:
            taken.append(part[:count - n])
            return np.concatenate(taken), [part[count - n:]] + parts[i + 1:]
        taken.append(part)
        n += len(part)
    return np.concatenate(taken), []


def _import_ahead(config: dict) -> None:
    """Import before READY what the first mini-batch would import on its way (scipy's k-means
    for the warm-up, pyarrow's reader for one number per line): ~0.5 s here, which would
    otherwise hold up a live stream's first output."""
    import scipy.cluster.vq  # noqa: F401

    if config["input"]["format"] != "jsonl":
        from emstream.parse import _arrow_reader

        _arrow_reader()


class Daemon:
    """One run of emstreamd over one source.

    Parameters
    ----------
    config : dict
        Validated configuration (see :mod:`emstreamd.config`).
    source : a source from :mod:`emstreamd.sources`
    reload : callable returning a new validated configuration (for SIGHUP)
    out : binary stream for per-point output
    """

    def __init__(self, config: dict, source, reload=None, out=None):
        self.config = config
        self.source = source
        source.max_line_bytes = config["input"]["max_line_bytes"]  # bounds a partial line
        self.reload_config = reload
        self.out = out
        self.output_lost = False  # the per-point output's reader went away
        self.flags = Flags()
        self.model = GaussianMixture(**config_module.model_settings(config))
        self.monitor = DriftMonitor(self.model, **config_module.monitor_settings(config))
        self.series = None  # made when the first block shows whether the input has times
        self.layout = None  # a time-series table's Layout; False: plain numbers; None: unknown
        self.counters = {"lines": 0, "rows": 0, "batches": 0, "anomalies": 0, "refits": 0,
                         "gated": 0, "alarms": 0, "rejected": {}}
        self.window = RingBuffer(config["refit"]["window"])  # recent learned rows, for refits
        self.learned = 0  # rows ever put in the window (to find those after a snapshot)
        self.generation = 0  # bumped by drift refits: older background refits are stale
        self.background = None
        if config["refit"]["scheduler"] is not None:
            from .background import BackgroundRefit

            self.background = BackgroundRefit(config["refit"]["scheduler"])
        self.since_refit = 0
        self.history = []
        self.next_line = 1
        self.applied_offset = source.offset
        self.pending_rows, self.pending_lines, self.pending_ends = [], [], []
        self.pending_times, self.pending_stamps = [], []  # seconds, and the text as written
        self.pending_rejects = PendingRejects()  # rejected after the last applied row
        self.first_pending_at = None
        self.since_checkpoint = 0
        self.last_checkpoint = time.monotonic()
        self.last_checkpoint_path = None
        self.last_status = time.monotonic()
        self.status_rows = 0
        self.dead_letter = None
        self.header_written = False
        self.file_first_line = 1  # the stream's line number of the current file's first line
        self.alerts = 0  # anomalous episodes this run
        self.n_fields = None
        self.started = self.ready_at = time.monotonic()
        self.metrics = None
        self.watchdog = Watchdog()  # pinged every turn of the loop, not with status lines
        self.progress = None  # a back-fill's emstreamd.progress.Progress, set by __main__
        self.prepared = False
        self.lock = None  # the checkpoint's lock file, held while this daemon runs
        # Set when a write fails (the per-point output, the dead letters): nothing more is
        # learned, and the run ends with exit_code.
        self.halted = None
        self.exit_code = 0
        self.unreported = False  # a batch was learned whose per-point lines were not written
        self.heartbeat = time.monotonic()  # the main loop's last turn, for /healthz
        self._output_kind = None  # "file", "stream" (a pipe, socket, terminal) or "other"
        self._output_poll = None
        self._output_size = 0  # the output file's size before the batch being written
        self._checkpoint_failed_at = -float("inf")

    # ------------------------------------------------------------------ start-up
    def prepare(self) -> None:
        """Take what the run needs before any input is read, so that a daemon that cannot run
        stops at once with one line (:class:`StartError`, with its exit code): the
        checkpoint's lock (a second daemon on the same checkpoint refuses to start), the
        dead-letter file and the metrics server.  Idempotent; :meth:`resume` calls it."""
        if self.prepared:
            return
        self.prepared = True
        self.lock = lock.acquire(self.config["checkpoint"]["path"])
        path = self.config["input"]["dead_letter"]
        if path is not None:
            try:
                self.dead_letter = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT
                                           | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise StartError(f"input.dead_letter: cannot open {path}: {exc.strerror}",
                                 EX_CANTCREAT) from None
        settings = self.config["metrics"]
        if settings["port"] is not None:
            try:
                from .metrics import Metrics

                self.metrics = Metrics(settings["port"], settings["address"],
                                       health=self._health)
            except ImportError:
                raise StartError("metrics.port is set but prometheus_client is not installed "
                                 "(pip install 'emstream[metrics]')", EX_CONFIG) from None
            except OSError as exc:
                raise StartError(f"metrics.port: cannot listen on {settings['address']}:"
                                 f"{settings['port']} ({exc.strerror or exc})",
                                 EX_CONFIG) from None
            log.info("metrics on http://%s:%d/metrics", settings["address"], self.metrics.port)

    def _health(self) -> tuple[bool, str]:
        """What /healthz says: whether the main loop turns."""
        age = time.monotonic() - self.heartbeat
        if age > STALL_SECONDS:
            return False, f"stalled: the main loop last turned {age:.0f} s ago"
        return True, f"ok: {self.counters['rows']} points learned"

    # ------------------------------------------------------------------ resume
    def resume(self) -> None:
        """Load the newest valid checkpoint, if any, and seek the source past applied lines
        (after :meth:`prepare`: the checkpoint is this daemon's)."""
        self.prepare()
        path = Path(self.config["checkpoint"]["path"])
        if not path.exists() or (path.is_dir() and not any(path.glob("checkpoint-*.json"))):
            return
        loaded = checkpoint.load(path)
        checkpoint.validate_meta(loaded.meta, source=loaded.path)
        for skipped, reason in loaded.skipped:
            log.warning("skipped checkpoint %s: %s", skipped, reason)
        self.model = loaded.model
        self.monitor = DriftMonitor(self.model, **config_module.monitor_settings(self.config))
        meta = loaded.meta
        saved_params = loaded.model.get_params()
        changed = [k for k, v in config_module.model_settings(self.config).items()
                   if k in saved_params and not _same(saved_params[k], v)]
        if changed:
            log.warning("the checkpoint's model keeps its own settings; config.yaml differs in "
                        "%s (remove the checkpoint to start a new model)", changed)
        if meta.get("monitor") is not None:
            try:
                self.monitor.restore(meta["monitor"])
            except ValueError as exc:
                log.warning("drift monitor starts afresh: %s", exc)
        for key, value in meta.get("counters", {}).items():
            self.counters[key] = value
        self.history = meta.get("history", [])
        layout = meta.get("layout")
        if layout is not None:
            try:
                self.layout = False if layout == "plain" else Layout.from_dict(layout)
            except (KeyError, TypeError, ValueError) as exc:
                raise checkpoint.CheckpointError(f"{loaded.path}: bad input layout: {exc}")
        if meta.get("series") is not None and self.layout is not None:
            self._make_series()
            try:
                self.series.restore(meta["series"])
            except ValueError as exc:
                raise checkpoint.CheckpointError(f"{loaded.path}: {exc}") from None
            self._apply_live_series_settings()
        saved = meta.get("input", {})
        if self.source.resume(saved):
            self.applied_offset = self.source.offset
            self.next_line = int(saved["next_line"])
            first = saved.get("file_first_line", 1)
            self.file_first_line = first if isinstance(first, int) and 1 <= first <= \
                self.next_line else 1
            log.info("resumed from %s at byte %d (line %d)", loaded.path, self.source.offset,
                     self.next_line)
        else:
            if saved.get("kind") == "follow" and self.source.kind == "follow":
                if saved.get("inode") is not None:  # (None: it was waiting for a file)
                    log.warning("the checkpointed file (inode %s) is gone: lines after byte "
                                "%s of it are lost; reading %s from its start",
                                saved.get("inode"), saved.get("offset"), self.source.path)
                # Line numbers count the followed stream across its files: they go on.
                self.next_line = self.file_first_line = int(saved.get("next_line", 1))
            log.info("resumed the model from %s; reading the input from its start",
                     loaded.path)
        self.n_fields = meta.get("n_fields")
        columns = self.config["input"]["columns"]
        if (self.n_fields and not self.layout and _indices(columns)
                and max(columns) >= self.n_fields):
            raise StartError(f"input.columns {columns} needs {max(columns) + 1} fields per "
                             f"line, but the checkpoint's input has {self.n_fields} (remove "
                             "the checkpoint to start a new model)", EX_CONFIG)

    # ------------------------------------------------------------------ parsing
    def _parse_block(self, data: bytes, first: int, n_fields: int | None):
        """Rows of a block of lines, and the byte offset just past each line (in the block)."""
        settings = self.config["input"]
        if settings["format"] == "jsonl":
            parsed = parse_json_lines(data, settings["fields"], first_line=first,
                                      max_line_bytes=settings["max_line_bytes"])
        else:
            if self.layout is None and data.strip():
                # The first block decides: a table with a header and/or a time column, or
                # plain numbers.
                self.layout = find_layout(_head(data), columns=settings["columns"],
                                          timestamp=settings["timestamp"],
                                          first_line=first) or False
                if self.layout is False and any(isinstance(c, str)
                                                for c in settings["columns"] or ()):
                    raise LayoutError("input.columns names columns, but the input has no "
                                      "header line")
            if self.layout:
                parsed = parse_table(data, self.layout, first_line=first,
                                     max_line_bytes=settings["max_line_bytes"])
            elif n_fields is None and _indices(settings["columns"]) and max(settings["columns"]):
                # Lines without every configured column are rejects, not the width.
                parsed = parse_with_columns(data, settings["columns"], first_line=first,
                                            max_line_bytes=settings["max_line_bytes"])
            else:
                parsed = parse_lines(data, n_fields=n_fields, columns=settings["columns"],
                                     first_line=first, max_line_bytes=settings["max_line_bytes"])
        ends = parsed.line_ends
        if ends is None:
            ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10) + 1
            if ends.size < parsed.n_lines:
                ends = np.append(ends, len(data))
        return parsed, ends

    def _take(self, data: bytes) -> None:
        base = self.source.offset - len(data)
        first = self.next_line
        ready = getattr(self.source, "parsed", None)  # parsed ahead by a reader thread
        parsed, ends = ready if ready is not None else self._parse_block(data, first,
                                                                          self.n_fields)
        self.n_fields = self.n_fields or parsed.n_fields
        self.next_line += parsed.n_lines
        self.counters["lines"] += parsed.n_lines
        if self.metrics is not None:
            self.metrics.lines.inc(parsed.n_lines)
        if parsed.rows.size:
            self.pending_rows.append(parsed.rows)
            self.pending_lines.append(parsed.lines)
            # With line ends from the parser every line is a row: no gather needed.
            self.pending_ends.append(base + (ends if parsed.line_ends is not None
                                             else ends[parsed.lines - first]))
            if getattr(parsed, "times", None) is not None:
                self.pending_times.append(parsed.times)
                self.pending_stamps.append(parsed.time_text)
            if self.first_pending_at is None:
                self.first_pending_at = time.monotonic()
        rejects = Rejects.of(parsed.rejects)
        if rejects and self.dead_letter is not None:
            # A reject whose dead letter could not be written is not counted: the position
            # stays before it, so a restart reads it (and writes it) again.
            rejects = rejects.take(slice(self._dead_letters(rejects)))
        if rejects:
            self._count_rejects(rejects)
        if not self.pending_rows and not self.halted:
            # Every line so far is applied or rejected: the position can move past them all.
            self.applied_offset = self.source.offset
            self.pending_rejects = PendingRejects()

    def _count_rejects(self, rejects: Rejects) -> None:
        """Count a block's rejects by reason, keep them pending, and log the first
        ``LOGGED_REJECTS`` of the daemon's life and every ``LOG_REJECT_EVERY``-th after."""
        rejected = self.counters["rejected"]
        before = sum(rejected.values())
        for reason, n in rejects.counts().items():
            rejected[reason] = rejected.get(reason, 0) + n
            if self.metrics is not None:
                self.metrics.reject(reason, n)
        self.pending_rejects.add(rejects)
        first = range(min(len(rejects), max(0, LOGGED_REJECTS - before)))
        every = range(-(before + 1) % LOG_REJECT_EVERY, len(rejects), LOG_REJECT_EVERY)
        for i in sorted(set(first).union(every)):
            reject = rejects[i]
            log.warning("line %d%s rejected (%s): %r [%d rejected so far]", reject.line,
                        self._where(reject.line), reject.reason, reject.text, before + i + 1)

    def _dead_letters(self, rejects: Rejects) -> int:
        """Append a block's rejects to ``input.dead_letter``, one JSON line each, in one write
        (more if the kernel takes less); returns how many were written.  On a write error (a
        full disk) the record cut short is removed, so the file holds whole lines only, and
        the run halts."""
        blob, ends = rejects.to_json_lines()
        blob = memoryview(blob)
        written = 0
        size = os.fstat(self.dead_letter).st_size
        try:
            while written < len(blob):
                written += os.write(self.dead_letter, blob[written:])
        except OSError as exc:
            whole = int(np.searchsorted(ends, written, side="right"))
            try:
                os.ftruncate(self.dead_letter, size + (int(ends[whole - 1]) if whole else 0))
            except OSError:
                pass
            self._halt(EX_IOERR, "input.dead_letter %s: %s: stopping; the checkpoint stays "
                       "before line %d, whose dead letter was not written",
                       self.config["input"]["dead_letter"], exc.strerror or exc,
                       int(rejects.lines[whole]))
            return whole
        return len(rejects)

    def _halt(self, code: int, message: str, *args) -> None:
        """Stop after a failed write: nothing more is learned, the run ends with ``code``
        (logged as one line)."""
        log.error(message, *args)
        self.halted = message % args
        self.exit_code = code
        self.flags.stop = True

    # ------------------------------------------------------------------ learning
    def _pending_count(self) -> int:
        return sum(len(r) for r in self.pending_rows)

    def _batch_rows(self) -> int:
        """Rows of the next full mini-batch: ``batch.first_rows`` at first, then as many as
        were learned before (doubling), up to ``batch.max_rows``.  A model exists after the
        first small batch, so every later point is scored; the size depends only on the rows
        learned (checkpointed), so a resumed back-fill cuts the same batches."""
        settings = self.config["batch"]
        return int(min(settings["max_rows"], max(settings["first_rows"], self.counters["rows"])))

    def _apply(self, limit: int) -> None:
        """Learn the first ``limit`` pending rows as one mini-batch (and report them)."""
        if self.halted:
            return
        if self.config["output"]["per_point"] and self.out is not None and self._reader_gone():
            # Found before the batch is learned: its rows stay unapplied, and the checkpoint
            # stays after the last line reported.
            self._lose_output(None)
            return
        batch, self.pending_rows = _split_front(self.pending_rows, limit)
        lines, self.pending_lines = _split_front(self.pending_lines, limit)
        ends, self.pending_ends = _split_front(self.pending_ends, limit)
        times = stamps = None
        if self.pending_times:
            times, self.pending_times = _split_front(self.pending_times, limit)
            stamps, self.pending_stamps = _split_front(self.pending_stamps, limit)
        if self.series is None:
            self._make_series()
        fitted = self.model._is_fitted()
        warming = not fitted or self.model._learner().warming_up
        per_point = self.config["output"]["per_point"] and self.out is not None
        update = self.series.update(batch, times, with_resp=per_point, with_scores=per_point)
        if update.log_prob is not None:
            anomalies, gated = int(update.anomaly.sum()), int(update.gated.sum())
            self.counters["anomalies"] += anomalies
            self.counters["gated"] += gated
            if self.config["output"]["per_point"]:
                self._report(lines, stamps, update)
            if self.metrics is not None:
                self.metrics.log_likelihood.set(float(update.log_prob.mean()))
                self.metrics.anomalies.inc(anomalies)
                self.metrics.gated.inc(gated)
        if not fitted and self.model._is_fitted():
            log.info("first (provisional) model after %d points", self.model.n_seen_)
        if warming and self.model._is_fitted() and not self.model._learner().warming_up:
            log.info("warm-up complete after %d points", self.model.n_seen_)
        for event in update.events:
            if event["event"] == "anomaly":
                self._alert(event, lines, stamps)
            else:
                self._drift_event(event, len(batch))
        self.counters["rows"] += len(batch)
        self.counters["batches"] += 1
        if self.metrics is not None:
            self.metrics.points.inc(len(batch))
            self.metrics.batches.inc()
        self.since_checkpoint += len(batch)
        self.status_rows += len(batch)
        learned = update.rows  # the model's rows (the features, when they are on)
        self._remember(learned[~update.gated] if update.gated.any() else learned)
        every = self.config["refit"]["every_points"]
        if every is not None and self.since_refit >= every:  # at batch boundaries: determinate
            self.refit("schedule")
        last_line = int(lines[-1])
        self.applied_offset = int(ends[-1])
        self.pending_rejects.drop_through(last_line)
        if self.pending_rows:
            self.first_pending_at = time.monotonic()
        else:
            # Every line read so far is applied or rejected: the position moves past them all.
            self.first_pending_at = None
            self.pending_rejects = PendingRejects()
            self.applied_offset = self.source.offset

    def _remember(self, batch: np.ndarray) -> None:
        """Keep the last ``refit.window`` learned rows."""
        self.window.extend(batch)
        self.learned += len(batch)
        self.since_refit += len(batch)

    def refit(self, reason: str) -> None:
        """Refit on the window (:meth:`GaussianMixture.refit`: the current model is kept
        unless a candidate beats it on held-out rows); labels kept; online EM goes on."""
        self.flags.refit = False
        model = self.model
        if not model._is_fitted() or len(self.window) < model.n_components:
            log.info("refit (%s) skipped: the model is still warming up", reason)
            return
        recent = self.window.recent()
        if self.background is not None:
            if self.background.busy:
                log.info("refit (%s) skipped: the previous one is still running on %s", reason,
                         self.background.address)
                return
            self.background.start(model, recent, reason=reason, learned_at_start=self.learned,
                                  generation=self.generation)
            self.since_refit = 0
            log.info("refit (%s): batch EM on the last %d points started on %s", reason,
                     len(recent), self.background.address)
            return
        model.refit(recent)
        outcome = model.last_refit_
        self._count_refit()
        if outcome["replaced"]:
            self.generation += 1
        self.history.append({"event": "refit", "reason": reason, "rows": self.counters["rows"],
                             "window": int(len(recent)), "replaced": outcome["replaced"],
                             "candidate": outcome["candidate"],
                             "iterations": outcome["iterations"]})
        log.info("refit (%s) on the last %d points: %s (%s candidate); held-out average "
                 "log-likelihood %.4g -> %.4g", reason, len(recent),
                 "model replaced" if outcome["replaced"] else "model kept", outcome["candidate"],
                 outcome["log_likelihood_before"], outcome["log_likelihood_after"])

    def _swap_in(self, job) -> None:
        """Adopt a finished background refit; re-learn the points that arrived meanwhile."""
        if job.error is not None:
            log.error("refit (%s) on %s failed: %s: %s", job.reason, self.background.address,
                      type(job.error).__name__, job.error)
            return
        if job.generation != self.generation:
            log.warning("refit (%s) from %s discarded: a drift refit replaced the model while "
                        "it ran", job.reason, self.background.address)
            return
        model, since = job.model, self.learned - job.learned_at_start
        if since > len(self.window):
            log.warning("refit (%s) from %s discarded: %d points arrived while it ran, more "
                        "than refit.window holds to re-learn", job.reason,
                        self.background.address, since)
            return
        replay = self.window.recent(since) if since else np.empty((0, model.n_features_in_))
        step = self.config["batch"]["max_rows"]
        for start in range(0, len(replay), step):
            model.partial_fit(replay[start:start + step])
        self.model = self.monitor.model = model
        self._count_refit()
        outcome = model.last_refit_
        self.history.append({"event": "refit", "reason": job.reason,
                             "rows": self.counters["rows"], "window": int(len(job.rows)),
                             "replaced": outcome["replaced"], "candidate": outcome["candidate"],
                             "iterations": outcome["iterations"],
                             "scheduler": self.background.address,
                             "seconds": round(job.seconds, 3), "relearned": int(len(replay))})
        log.info("refit (%s) on %s: %d points, %s, %.1fs; %d points that arrived meanwhile "
                 "re-learned", job.reason, self.background.address, len(job.rows),
                 "model replaced" if outcome["replaced"] else "model kept", job.seconds,
                 len(replay))

    def _count_refit(self) -> None:
        self.counters["refits"] += 1
        if self.metrics is not None:
            self.metrics.refits.inc()
        self.since_refit = 0

    def _where(self, line: int) -> str:
        """`` (FILE line N)``: where a stream line is in the file being read (followed streams
        number lines across rotations, so an operator needs both)."""
        path = getattr(self.source, "path", None)
        if path is None or line < self.file_first_line:
            return ""
        return f" ({path} line {line - self.file_first_line + 1})"

    def _alert(self, event: dict, lines, stamps) -> None:
        """Log the first point of an anomalous episode (the first 20, then every 1000th)."""
        self.alerts += 1
        if self.alerts <= 20 or self.alerts % 1000 == 0:
            i = event["index"]
            when = "" if stamps is None else f" ({stamps[i].decode()})"
            log.warning("anomaly at line %d%s%s: score %.6f [%d episodes this run]",
                        int(lines[i]), self._where(int(lines[i])), when, event["score"],
                        self.alerts)

    def _drift_event(self, event: dict, batch_rows: int) -> None:
        """Log, count and record an alarm, a drift refit or an upkeep of the monitor."""
        # event["point"] counts the monitor's points (from this run's start); "rows" in the
        # history counts the daemon's learned rows, as refit records do.
        batch_start = self.monitor.n_points_ - batch_rows
        record = {**event, "rows": self.counters["rows"] + event["point"] - batch_start}
        del record["point"]
        self.history.append(record)
        kind = event["event"]
        if kind == "drift":
            self.counters["alarms"] += 1
            if self.metrics is not None:
                self.metrics.alarms.inc()
            log.warning("drift alarm (%s, %s) at point %d: recent surprise %.3g nats",
                        event["detector"], event.get("change", "surprise"), record["rows"],
                        event["recent_surprise"])
            return
        if kind == "upkeep":
            # The learner replaced its model (a birth, a better structure): refits started
            # before it are stale.
            self.generation += 1
            log.info("upkeep (%s): model replaced by the %s candidate; held-out average "
                     "log-likelihood %.4g -> %.4g", event["reason"], event["candidate"],
                     event["log_likelihood_before"], event["log_likelihood_after"])
            return
        self.generation += 1
        if event.get("replaced", True):
            self._count_refit()
            # Points before the change would pull a scheduled refit back to the old regime.
            self.window.clear()
        log.warning("drift refit on the %d points after the alarm: %s (%s); held-out "
                    "average log-likelihood %.4g -> %.4g", event["points"],
                    "model replaced" if event.get("replaced", True) else "model kept",
                    event.get("candidate"), event["log_likelihood_before"],
                    event["log_likelihood_after"])

    def _make_series(self) -> None:
        """The per-stream scorer, once the input's layout is known (features for tables with
        a time column, under ``features.enabled: auto``)."""
        timed = bool(self.layout) and self.layout.time_field is not None
        self.series = SeriesMonitor(self.monitor,
                                    *config_module.series_parts(self.config, timed))

    def _apply_live_series_settings(self) -> None:
        output = self.config["output"]
        self.series.episodes.threshold = float(output["anomaly_threshold"])
        self.series.episodes.set_hold(output["episode_hold"])

    def _report(self, lines, stamps, update) -> None:
        if self.out is None:
            return
        output = self.config["output"]
        resp = update.resp
        labels = resp.argmax(axis=1)
        probability = resp[np.arange(len(labels)), labels]
        text = format_rows(output["format"], lines, labels, probability, update.surprise,
                           update.anomaly, score=update.score, time_text=stamps)
        if output["header"] and not self.header_written and output["format"] == "csv":
            text = (b"line," + (b"time," if stamps is not None else b"")
                    + b"label,probability,surprise,score,anomaly\n" + text)
        try:
            if self._output_kind == "file":
                self._output_size = os.fstat(self.out.fileno()).st_size
            self.out.write(text)
            self.out.flush()
        except OSError as exc:  # the reader went away (| head), a full disk
            self._lose_output(exc)
            return
        self.header_written = True

    def _output_fd(self) -> int | None:
        """The per-point output's descriptor, its kind noted on first use."""
        try:
            fd = self.out.fileno()
        except (AttributeError, OSError, ValueError):  # not a real file (a test's BytesIO)
            self._output_kind = "other"
            return None
        if self._output_kind is None:
            mode = os.fstat(fd).st_mode
            self._output_kind = "file" if stat.S_ISREG(mode) else "stream"
        return fd

    def _reader_gone(self) -> bool:
        """Whether the per-point output is a pipe or socket whose reader has gone (poll says
        POLLERR or POLLHUP): asked before each batch is learned."""
        if self._output_poll is None:
            fd = self._output_fd()
            if fd is None or self._output_kind != "stream":
                self._output_poll = False  # a file or /dev/null: no reader to lose
                return False
            self._output_poll = select.poll()
            self._output_poll.register(fd, 0)  # POLLERR and POLLHUP are always reported
        if self._output_poll is False:
            return False
        return any(events & (select.POLLERR | select.POLLHUP)
                   for _, events in self._output_poll.poll(0))

    def _lose_output(self, exc: OSError | None) -> None:
        """The per-point output is gone (``exc`` None: found before learning the batch).

        A batch whose lines were not all written was learned: its checkpoint would claim lines
        as reported that were not, so for a re-readable input no checkpoint is written after it
        (a restart resumes from the last one and reports again from there).  Stdin cannot be
        re-read: its final checkpoint keeps what was learned."""
        fd = self._output_fd()
        if exc is not None and fd is not None:
            self.unreported = True
            if self._output_kind == "file":
                try:  # no half batch left in the file: a restart writes it again, whole
                    os.ftruncate(fd, self._output_size)
                except OSError:
                    pass
        if fd is not None:
            # Bytes still in the stream's buffer would fail again when its owner closes it.
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)
        self.out = None
        self.output_lost = True
        gone = exc is None or isinstance(exc, (BrokenPipeError, ConnectionResetError))
        what = "closed by its reader" if gone else f"failed ({exc.strerror or exc})"
        if self._unreported_resumable():
            after = ("no checkpoint after the batch being written: a restart resumes from the "
                     "last one and reports again from there")
        elif exc is not None and self.source.kind == "stdin":
            after = "the batch being written is learned, its lines cannot be read again"
        else:
            after = (f"the checkpoint stays after line {self._line_at_position() - 1}, the "
                     "last one reported")
        self._halt(1 if gone else EX_IOERR, "per-point output %s: stopping; %s", what, after)

    def _unreported_resumable(self) -> bool:
        """Whether a learned batch went unreported on an input a restart reads again."""
        return self.unreported and self.source.kind != "stdin"

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, reason: str) -> bool:
        """Write a checkpoint of what is applied; False if none was written (logged): after a
        batch whose per-point lines were lost (see :meth:`_lose_output`), or on a write error
        (a full disk, no file descriptor left), which leaves the last one in place."""
        if self._unreported_resumable():
            return False
        counters = self._counters_at_position()
        meta = {"input": {**self.source.identity(), "offset": self.applied_offset,
                          "next_line": self._line_at_position(),
                          "file_first_line": self.file_first_line},
                "counters": counters, "n_fields": self.n_fields, "history": self.history,
                "monitor": self.monitor.state(),
                "layout": (None if self.layout is None else "plain" if self.layout is False
                           else self.layout.to_dict()),
                "series": None if self.series is None else self.series.state(),
                "config": {k: v for k, v in self.config.items() if k != "model"}}
        target = Path(self.config["checkpoint"]["path"])
        try:
            if target.suffix != ".json":
                target.mkdir(parents=True, exist_ok=True)
            self.last_checkpoint_path = checkpoint.save(self.model, target, meta=meta,
                                                        keep=self.config["checkpoint"]["keep"])
        except OSError as exc:
            self._checkpoint_failed_at = time.monotonic()
            log.error("checkpoint (%s) not written: %s: %s; the last one is %s", reason,
                      exc.filename or target, exc.strerror or exc, self.last_checkpoint_path)
            return False
        self.since_checkpoint = 0
        self.last_checkpoint = time.monotonic()
        if self.metrics is not None:
            self.metrics.checkpoint_time.set_to_current_time()
        log.info("checkpoint (%s): %s at byte %d", reason, self.last_checkpoint_path,
                 self.applied_offset)
        return True

    def _counters_at_position(self) -> dict:
        """The counters as of the applied position (lines read after it are not counted)."""
        counters = json.loads(json.dumps(self.counters))
        for reason, n in self.pending_rejects.counts().items():  # not behind the position yet
            counters["rejected"][reason] -= n
            if not counters["rejected"][reason]:
                del counters["rejected"][reason]
        counters["lines"] = self._line_at_position() - 1
        return counters

    def _line_at_position(self) -> int:
        """Number of the first line not behind the saved position."""
        first = [self.pending_rejects.first_line()] if self.pending_rejects else []
        if self.pending_lines:
            return min([int(self.pending_lines[0][0])] + first)
        return first[0] if first else self.next_line

    def _checkpoint_due(self) -> bool:
        settings = self.config["checkpoint"]
        if time.monotonic() - self._checkpoint_failed_at < CHECKPOINT_RETRY_SECONDS:
            return False
        return (self.since_checkpoint >= settings["every_points"]
                or (self.since_checkpoint and time.monotonic() - self.last_checkpoint
                    >= settings["every_seconds"]))

    # ------------------------------------------------------------------ control
    def _reload(self) -> None:
        self.flags.reload = False
        if self.reload_config is None:
            return
        try:
            fresh = self.reload_config()
        except config_module.ConfigError as exc:
            log.error("SIGHUP: keeping the running configuration: %s", exc)
            return
        for section, keys in config_module.LIVE.items():
            for key in keys:
                self.config[section][key] = fresh[section][key]
        if self.series is not None:
            self._apply_live_series_settings()
        log.info("SIGHUP: configuration reloaded (live keys only)")

    def _status(self) -> None:
        now = time.monotonic()
        every = self.config["status"]["every_seconds"]
        if every and self.progress and _TERMINAL:
            every = min(every, 1.0)  # a back-fill watched on a terminal: progress every second
        if not every or now - self.last_status < every:
            return
        rate = self.status_rows / (now - self.last_status)
        age = now - self.last_checkpoint
        progress = self.progress.describe(self.source.offset, self.ready_at) if self.progress \
            else ""
        log.info("status: %.0f points/s, %d points, %d rejected, last checkpoint %.0fs ago%s",
                 rate, self.counters["rows"], sum(self.counters["rejected"].values()), age,
                 progress)
        self.last_status, self.status_rows = now, 0

    # ------------------------------------------------------------------ run
    def run(self) -> int:
        """Read, learn and checkpoint until the input ends or a stop is asked for; exit code."""
        self.flags.install()  # from the start: a SIGTERM during the imports still checkpoints
        self.prepare()
        if self.source.kind == "file":
            # A back-fill starts reading and parsing now: pyarrow parses without the GIL while
            # the imports below run (0.4 s of them are scipy's).
            from .prefetch import PrefetchedFile

            self.source = PrefetchedFile(self.source, self._parse_block, self.next_line,
                                         self.n_fields)
        # Imports first: the limit below applies to the BLAS libraries loaded when it is taken.
        _import_ahead(self.config)
        # One BLAS thread for the whole run, taken once: the core would otherwise switch
        # threadpoolctl's limits around every mini-batch (~0.1 ms each, 8% of a back-fill).
        with single_thread_blas():
            return self._run()

    def _run(self) -> int:
        notify("READY=1")
        self.ready_at = time.monotonic()
        log.info("ready: reading %s", getattr(self.source, "path", "stdin"))
        settings = self.config["batch"]
        by_count_only = self.source.kind == "file"  # a back-fill (PrefetchedFile)
        while True:
            self.watchdog.ping()
            self.heartbeat = time.monotonic()
            if self.flags.reload:
                self._reload()
            if self.flags.stop:
                break
            timeout = 0.2
            if self.first_pending_at is not None and not by_count_only:
                timeout = max(0.0, min(timeout, self.first_pending_at + settings["max_wait"]
                                       - time.monotonic()))
            data = self.source.read(timeout)
            if data:
                self._take(data)
            if self.source.boundary and not self.halted:
                # The next bytes come from another file: positions restart there, so nothing
                # may stay pending from this one.
                if self.pending_rows:
                    self._apply(self._pending_count())
                if self.halted:
                    break
                self.source.next_file()
                self.applied_offset = self.source.offset
                self.pending_rejects = PendingRejects()
                self.file_first_line = self.next_line
                log.info("now reading %s (rotated or truncated) from stream line %d",
                         self.source.path, self.next_line)
            while not self.halted and self._pending_count() >= self._batch_rows():
                self._apply(self._batch_rows())
            waited = (self.first_pending_at is not None
                      and time.monotonic() - self.first_pending_at >= settings["max_wait"])
            if (self.pending_rows and not self.halted
                    and (self.source.at_end or (waited and not by_count_only))):
                self._apply(self._pending_count())
            if self.halted:
                break
            if self.flags.refit:
                self.refit("SIGUSR2")
            if self.background is not None and (job := self.background.poll()) is not None:
                self._swap_in(job)
            if self.flags.checkpoint:
                self.flags.checkpoint = False
                self.save_checkpoint("SIGUSR1")
            elif self._checkpoint_due():
                self.save_checkpoint("scheduled")
            self._status()
            if self.source.at_end:
                break
        notify("STOPPING=1")
        if self.pending_rows and not self.halted:  # stopping mid-stream: learn what was read
            self._apply(self._pending_count())
        if self.background is not None:
            self.background.wait(self.config["refit"]["wait_at_exit"])
            if (job := self.background.poll()) is not None:
                self._swap_in(job)
            self.background.close()
        saved = self.save_checkpoint("halted" if self.halted else "shutdown" if self.flags.stop
                                     else "end of input")
        if not saved and not self.exit_code and not self._unreported_resumable():
            self.exit_code = EX_CANTCREAT  # the final checkpoint could not be written
        if self.halted:  # lines read but not applied are read again by the next run
            self.counters = self._counters_at_position()
        if by_count_only:
            self.source.close()  # stops the reader thread
        if self.dead_letter is not None:
            os.close(self.dead_letter)
            self.dead_letter = None
        if self.metrics is not None:
            self.metrics.close()
        if self.lock is not None:
            self.lock.close()  # after the last checkpoint: another daemon may take over
            self.lock = None
        return self.exit_code

    def summary(self) -> str:
        """A few lines for the operator at exit."""
        c = self.counters
        rejected = ", ".join(f"{n} {r}" for r, n in sorted(c["rejected"].items())) or "none"
        seconds = time.monotonic() - self.ready_at
        lines = [f"emstreamd: {c['rows']} points learned in {c['batches']} batches from "
                 f"{c['lines']} lines in {seconds:.3f} s after start-up; rejected: {rejected}; anomalies: {c['anomalies']} "
                 f"({c['gated']} not learned); drift alarms: {c['alarms']}; "
                 f"refits: {c['refits']}; "
                 f"checkpoint: {self.last_checkpoint_path}"]
        model = self.model
        if model._is_fitted():
            order = np.argsort(model.means_[:, 0])
            lines.append("  component  weight  mean")
            for k in order:
                mean = " ".join(f"{v:.4g}" for v in model.means_[k])
                lines.append(f"  {k:9d}  {model.weights_[k]:6.3f}  {mean}")
        else:
            learner = model.__dict__.get("_online")
            buffered = learner.buffered if learner is not None else 0
            lines.append(f"  still warming up ({buffered} of {model.warmup_size} points)")
        return "\n".join(lines)

