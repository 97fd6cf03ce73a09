"""The daemon's main loop: read, parse, learn, report, checkpoint; signals only set flags.

Exactly-once on resumable inputs: a checkpoint holds the model and the byte offset just past
the last line whose effect is in the model (and the counters as of that line) in one atomic
write, so a restart from it re-reads precisely the lines that were not yet applied.
"""

from __future__ import annotations

import copy
import logging
import signal
import time
import weakref
from pathlib import Path

from emstream import GaussianMixture, checkpoint
from emstream._blas import single_thread_blas
from emstream.parse import Rejects
from emstream.store import STORE_NAME

from . import config as config_module
from . import early, lock
from .errors import EX_CANTCREAT, EX_CONFIG, EX_IOERR, EX_TEMPFAIL, StartError
from .keymonitor import KeyMonitor, batch_rows
from .notify import Watchdog, notify
from .outputmarks import OutputMarks, first_unreported
from .parser import BlockParser
from .position import InputPosition
from .rejects import DeadLetters, log_rejects, say_if_nothing_read
from .reload import reload_live
from .resumed import check_kept_window, warn_resumed_settings
from .schedule import CheckpointSchedule
from .sinks import PointSink
from .status import StatusLine

log = logging.getLogger("emstreamd")
# /healthz answers 503 when the main loop has not turned for this long (a write that blocks, a
# refit that does not end).
STALL_SECONDS = 60.0
# Longest wait for input in one turn of the loop: signals, reloads and the watchdog are acted
# on between turns.
IDLE_WAIT = 0.2


class Flags:
    """What signal handlers ask of the loop (handlers only set these)."""

    def __init__(self):
        self.stop = False
        self.stops = 0  # stop signals so far (a second one cuts the wait for a refit short)
        self.checkpoint = False
        self.reload = False
        self.refit = False

    def install(self) -> None:
        def stop(signum, frame):
            self.stop = True
            self.stops += 1

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGUSR1, lambda s, f: setattr(self, "checkpoint", True))
        signal.signal(signal.SIGHUP, lambda s, f: setattr(self, "reload", True))
        signal.signal(signal.SIGUSR2, lambda s, f: setattr(self, "refit", True))
        for signum in early.take():  # (those that came while the daemon started)
            if signum in (signal.SIGTERM, signal.SIGINT):
                self.stop = True
            else:
                setattr(self, {signal.SIGUSR1: "checkpoint", signal.SIGHUP: "reload",
                               signal.SIGUSR2: "refit"}[signum], True)


def _import_ahead(config: dict) -> None:
    """Import before READY what the first mini-batches would import on their way (scipy's
    k-means for the warm-up and its Hungarian matching of a refreshed model's components to
    the last one's, pyarrow's reader for one number per line): ~0.5 s here, which would
    otherwise hold up a live stream's first outputs."""
    import scipy.cluster.vq  # noqa: F401
    import scipy.optimize  # noqa: F401

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
    reload : callable returning a new validated configuration (for SIGHUP), and the live
        keys whose value in the file a command-line override hides (``config.shadowed``)
    out : binary stream for per-point output
    """

    def __init__(self, config: dict, source, reload=None, out=None):
        self.config = config
        self.source = source
        source.max_line_bytes = config["input"]["max_line_bytes"]  # bounds a partial line
        self.reload_config = reload
        self.sink = PointSink(out, config["output"])  # per-point lines
        self.output_marks = OutputMarks(self.sink, config)  # where they stand at checkpoints
        self.flags = Flags()
        # (a stalled reader does not hold a SIGTERM; the flags, not the daemon, are held: a
        # cycle through the daemon kept a dropped one's lock until the garbage collector ran)
        flags = self.flags
        self.sink.stop = lambda: flags.stop
        # The series' monitor (model, drift monitor, scorer), made when the first block shows
        # whether the input has times; until then a checkpoint's model and meta wait here.
        self.key = None
        self._restored = None
        self.kept_window = None  # the calibration window a resumed model keeps
        # The parser stage: decides the input's layout from its first lines and keeps it.
        # (It names lines through a weak reference: a daemon dropped without run()'s end
        # frees its checkpoint's lock at once, not at the next garbage collection.)
        where = weakref.WeakMethod(self._where)
        self.parser = BlockParser(config["input"], lambda line: where()(line))
        # (the same for the monitors' refits, which tell the watchdog the daemon is alive)
        alive = weakref.WeakMethod(self._alive)
        self.alive_hook = lambda: alive()()
        self.counters = {"lines": 0, "rows": 0, "batches": 0, "anomalies": 0, "refits": 0,
                         "gated": 0, "alarms": 0, "rejected": {}}
        # The counters the last checkpoint holds (restored or written): what a restart sees.
        self.saved_counters = copy.deepcopy(self.counters)
        self.background = None
        if config["refit"]["scheduler"] is not None:
            from .background import BackgroundRefit

            self.background = BackgroundRefit(config["refit"]["scheduler"])
        # The line and byte a checkpoint may claim, and the rows and rejects waiting before
        # them (rows of a first mini-batch a stop caught still deciding are carried).
        self.position = InputPosition(source.offset)
        self.rows_read = 0  # (this run: with none, a run of rejects says why, once)
        self.run_rejects: dict = {}  # this run's rejected lines by reason (blank ones aside)
        self.schedule = CheckpointSchedule(config["checkpoint"])  # when the next one is due
        self.last_checkpoint_path = None
        self._checkpointed = False  # this run has written one (the start's note is gone)
        self.status = StatusLine(config["status"])  # when the next status line is due
        self.dead_letters = None  # input.dead_letter's DeadLetters, opened by prepare()
        self.alerts = 0  # anomalous episodes this run
        self.started = self.ready_at = time.monotonic()
        self.metrics = None
        self.watchdog = Watchdog()  # pinged every turn of the loop, not with status lines
        self.progress = None  # a back-fill's emstreamd.progress.Progress, set by __main__
        self.prepared = False
        self.lock = lock.CheckpointLock(config["checkpoint"]["path"])  # taken by prepare()
        # Set when a write fails (the per-point output, the dead letters): nothing more is
        # learned, and the run ends with exit_code.
        self.halted = None
        self.exit_code = 0
        self.heartbeat = time.monotonic()  # the main loop's last turn, for /healthz

    # ------------------------------------------------------------------ start-up
    def prepare(self) -> None:
        """Take what the run needs before any input is read, so that a daemon that cannot run
        stops at once with one line (:class:`StartError`, with its exit code): the
        checkpoint's lock (a second daemon on the same checkpoint refuses to start), the
        dead-letter file and the metrics server.  Idempotent; :meth:`resume` calls it."""
        if self.prepared:
            return
        self.prepared = True
        self.lock.take()
        path = self.config["input"]["dead_letter"]
        if path is not None:
            self.dead_letters = DeadLetters(path)
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
            host = settings["address"]
            host = f"[{host}]" if ":" in host else host  # (an IPv6 address, as a URL has it)
            log.info("metrics on http://%s:%d/metrics", host, self.metrics.port)

    def _health(self) -> tuple[bool, str]:
        """What /healthz says: whether the main loop turns."""
        age = time.monotonic() - self.heartbeat
        if age > STALL_SECONDS:
            return False, f"stalled: the main loop last turned {age:.0f} s ago"
        return True, f"ok: {self.counters['rows']} points"

    # ------------------------------------------------------------------ resume
    def resume(self) -> None:
        """Load the newest valid checkpoint, if any, and seek the source past applied lines
        (after :meth:`prepare`: the checkpoint is this daemon's)."""
        self.prepare()
        path = Path(self.config["checkpoint"]["path"])
        if (path / STORE_NAME).exists():
            # Starting afresh beside it would learn the input again, from its first line.
            raise checkpoint.CheckpointError(
                f"{path} holds a keyed daemon's state store ({STORE_NAME}) but input.key is not "
                "set: set input.key as it was, or choose another checkpoint.path")
        if not path.exists() or (path.is_dir() and not any(path.glob("checkpoint-*.json"))):
            self.output_marks.begin(self.source)
            return
        loaded = checkpoint.load(path)
        checkpoint.validate_meta(loaded.meta, source=loaded.path)
        for skipped, reason in loaded.skipped:
            log.warning("skipped checkpoint %s: %s", skipped, reason)
        meta = loaded.meta
        warn_resumed_settings(loaded.model, meta, self.config)
        self.kept_window = check_kept_window(meta, self.config)
        self._restored = (loaded.model, meta, str(loaded.path))
        self._resume_input(meta, str(loaded.path))
        try:
            self.position.carried.restore(meta.get("carried"), self.parser.row_width())
        except ValueError as exc:
            raise checkpoint.CheckpointError(f"{loaded.path}: meta.carried: {exc}") from None
        if self.parser.layout is not None and getattr(self.parser.layout, "settled", True):
            self._make_key()  # (a layout from a header alone waits for its rows: they decide
            # whether the series has a time column, so whether it has features)

    def _resume_input(self, meta: dict, where: str) -> None:
        """Take a checkpoint's counters, input layout and position; seek the source past the
        lines applied."""
        for key, value in meta.get("counters", {}).items():
            self.counters[key] = value
        self.saved_counters = copy.deepcopy(self.counters)
        self.parser.restore(meta, where, learned=bool(self.counters.get("rows")))
        saved = meta.get("input", {})
        position = self.position
        resumed = self.source.resume(saved)
        if resumed:
            position.restart(self.source.offset, int(saved["next_line"]))
            first = saved.get("file_first_line", 1)
            position.file_first_line = first if isinstance(first, int) and 1 <= first <= \
                position.next_line else 1
            foreign = saved.get("foreign_header")
            if isinstance(foreign, list) and all(isinstance(n, str) for n in foreign):
                self.parser.foreign_header = tuple(foreign)
            log.info("resumed from %s at byte %d (line %d)", where, self.source.offset,
                     position.next_line)
            # The lines after the position are read and learned again: their per-point lines
            # too, so the ones written after the checkpoint go.
            self.output_marks.cut_back(meta, self._first_unreported(meta))
        else:
            if saved.get("kind") == "follow" and self.source.kind == "follow":
                if saved.get("inode") is not None:  # (None: it was waiting for a file)
                    same = (self.source.device, self.source.inode) == (
                        saved.get("device"), saved.get("inode"))
                    # (The same file, truncated and written again while the daemon was down,
                    # was said to be "gone".)
                    log.warning("the checkpointed file (inode %s) %s: any lines written "
                                "to it after byte %s are lost; reading %s from its start",
                                saved.get("inode"),
                                "was truncated and written again since, with no copy of it "
                                "beside it" if same else "is gone", saved.get("offset"),
                                self.source.reading)
                # Line numbers count the followed stream across its files: they go on.
                position.restart(self.source.offset, int(saved.get("next_line", 1)))
                position.file_first_line = position.next_line
            again = (self.source.identity().get("regular_file")
                     if self.source.kind == "stdin" else None)
            if again is not None and saved.get("regular_file") == again:
                # (a file redirected to stdin twice was learned twice, said at INFO only; a
                # cron job's file of the day, another file each day, is not warned about)
                log.warning("resumed the model from %s; standard input is the regular file "
                            "the checkpoint read last, read again from its start: its rows "
                            "are learned again (--input FILE resumes where the checkpoint "
                            "left it)", where)
            else:
                log.info("resumed the model from %s; reading the input from its start", where)
        self.parser.resume_at(position.next_line, self.source.offset, meta.get("n_fields"),
                              same_input=resumed)

    def _read(self, data: bytes):
        """A block's parse (its rows and rejects) and the byte offset just past each line;
        its lines counted."""
        first = self.position.next_line
        ready = getattr(self.source, "parsed", None)  # parsed ahead by a reader thread
        parsed, ends = ready if ready is not None else self.parser.parse(
            data, first, self.parser.n_fields)
        self.parser.n_fields = self.parser.n_fields or parsed.n_fields
        self.rows_read += parsed.rows.shape[0]
        self.position.read(parsed.n_lines)
        self.counters["lines"] += parsed.n_lines
        if self.metrics is not None:
            self.metrics.lines.inc(parsed.n_lines)
        return parsed, ends

    def _reject(self, parsed) -> None:
        """Count a block's rejected lines (and write their dead letters)."""
        self._reject_lines(Rejects.of(parsed.rejects))

    def _reject_lines(self, rejects: Rejects) -> None:
        """Count rejected lines, log the first ones and write their dead letters."""
        if rejects and self.dead_letters is not None:
            # A reject whose dead letter could not be written is not counted: the position
            # stays before it, so a restart reads it (and writes it) again.
            written, exc = self.dead_letters.write(rejects)
            if exc is not None:
                self._halt(EX_IOERR, "input.dead_letter %s: %s: stopping; the checkpoint "
                           "stays before line %d, whose dead letter was not written",
                           self.dead_letters.path, exc.strerror or exc,
                           int(rejects.lines[written]))
            rejects = rejects.take(slice(written))
        if rejects:
            self._count_rejects(rejects)

    def _take(self, data: bytes) -> None:
        base = self.source.offset - len(data)
        position = self.position
        first = position.next_line
        parsed, ends = self._read(data)
        if parsed.rows.size:
            # With line ends from the parser every line is a row: no gather needed.
            position.pending.add(parsed.rows, parsed.lines, getattr(parsed, "times", None),
                                 getattr(parsed, "time_text", None),
                                 base + (ends if parsed.line_ends is not None
                                         else ends[parsed.lines - first]))
            if position.first_pending_at is None:
                position.first_pending_at = time.monotonic()
        self._reject(parsed)
        if not position.pending.count and not self.halted:
            # Every line so far is applied or rejected: the position can move past them all.
            position.all_applied(self.source.offset)

    def _count_rejects(self, rejects: Rejects) -> None:
        """Count a block's rejects by reason (lifetime and this run), keep them pending, and
        log them (:func:`~emstreamd.rejects.log_rejects`)."""
        rejected, run = self.counters["rejected"], self.run_rejects
        before = sum(rejected.values())
        unread = sum(run.values())  # (this run's: a resumed run may read another input)
        for reason, n in rejects.counts().items():
            rejected[reason] = rejected.get(reason, 0) + n
            if reason != "blank":  # (blank lines are no input misread)
                run[reason] = run.get(reason, 0) + n
            if self.metrics is not None:
                self.metrics.reject(reason, n)
        self.position.rejects.add(rejects)
        log_rejects(rejects, before, self._where)
        say_if_nothing_read(run, unread, self.rows_read)

    def _halt(self, code: int, message: str, *args) -> None:
        """Stop after a failed write: nothing more is learned, the run ends with ``code``
        (logged as one line)."""
        log.error(message, *args)
        self.halted = message % args
        self.exit_code = code
        self.flags.stop = True

    # ------------------------------------------------------------------ learning
    def _batch_rows(self) -> int:
        return max(batch_rows(self.config, self.counters["rows"]), self._rows_to_decide())

    def _rows_to_decide(self) -> int:
        """Rows the first mini-batch must hold before ``batch.max_wait`` may cut it
        (:meth:`KeyMonitor.rows_to_decide`); 0 while no row is pending.  (The series' monitor
        is made with the first rows, whose layout says whether it has times: made before
        them, a live series whose first line came late had no features at all.)"""
        if not self.position.waiting():
            return 0
        if self.key is None:
            self._make_key()
        return self.key.rows_to_decide()

    def _apply(self, limit: int) -> None:
        """Learn the first ``limit`` waiting rows as one mini-batch (and report them)."""
        if self.halted:
            return
        if self.config["output"]["per_point"] and self.sink.reader_gone():
            # Found before the batch is learned: its rows stay unapplied, and the checkpoint
            # stays after the last line reported.
            self._lose_output(None)
            return
        taken = self.position.take(limit, self.counters)
        batch, lines, times, stamps, _ = taken
        if self.key is None:
            self._make_key()
        per_point = self.config["output"]["per_point"] and self.sink.open
        update = self.key.learn(batch, times, per_point=per_point)
        if update.log_prob is not None and per_point and (
                exc := self.sink.write(lines, stamps, update)) is not None:
            self._lose_output(exc)
        for event in update.events:
            if event["event"] == "anomaly":
                self._alert(event, lines, stamps)
        self.schedule.add(len(batch))
        self.status.count(len(batch))
        self.position.applied(taken, self.source.offset, time.monotonic())

    def _learn_ready(self, by_count_only: bool) -> None:
        """Learn the full mini-batches pending, and a partial one at the end of the input or
        (live input) once its first row has waited ``batch.max_wait``."""
        while not self.halted and self.position.waiting() >= self._batch_rows():
            if by_count_only and self.flags.stop:
                # A back-fill stops after the batch at hand: the rest is read again next run
                # (with slow fits it learned every batch of its block first, minutes of them).
                return
            self._apply(self._batch_rows())
            self._between_batches()
        first_at = self.position.first_pending_at
        waited = (first_at is not None and time.monotonic() - first_at
                  >= self.config["batch"]["max_wait"])
        if (self.position.waiting() and not self.halted and not self._deciding()
                and (self.source.at_end or (waited and not by_count_only))):
            self._apply(self.position.waiting())

    def _between_batches(self) -> None:
        """What the signals and the clocks ask for, between two mini-batches of a block.

        A block holds up to 1 MiB of lines (a back-fill's: 100,000 numbers or more), so
        checkpoints come every ``checkpoint.every_points``, not once per block; and SIGUSR1's
        checkpoint, SIGUSR2's refit, SIGHUP's reload and the status line are not kept waiting
        for the rest of it (they waited for the whole block: a refit asked for came after the
        last line was learned, and no status line came in a 100,000-line back-fill)."""
        self._alive()  # (a block's batches and checkpoints may take longer than a ping)
        if self.flags.reload:
            self._reload()
        if self.flags.refit:
            self.refit("SIGUSR2")
        if self.flags.checkpoint:
            self.flags.checkpoint = False
            self.save_checkpoint("SIGUSR1")
        elif self.schedule.due():
            self.save_checkpoint("scheduled")
        self._status()

    def _deciding(self) -> bool:
        """Whether the waiting rows are a first mini-batch too short for the features to
        decide from: they wait for more, however long (``batch.max_wait`` does not cut it)."""
        return bool(self.position.waiting()) and self.position.waiting() < self._rows_to_decide()

    @property
    def model(self) -> GaussianMixture:
        """The series' model (a fresh one before the first batch)."""
        if self.key is not None:
            return self.key.model
        if self._restored is not None:
            return self._restored[0]
        return GaussianMixture(**config_module.model_settings(self.config))

    def refit(self, reason: str) -> None:
        """Refit the series' model on its window (see :meth:`KeyMonitor.refit`)."""
        self.flags.refit = False
        if self.key is None:
            log.info("refit (%s) skipped: the model is still warming up", reason)
            return
        self.key.refit(reason)

    def _file_state(self) -> dict:
        """What a checkpoint keeps of the file being read beyond its position."""
        state = {"file_first_line": self.position.file_first_line}
        if self.parser.foreign_header is not None:
            state["foreign_header"] = list(self.parser.foreign_header)
        return state

    def _where(self, line: int) -> str:
        """`` (FILE line N)``: where a stream line is in the file being read (followed streams
        number lines across rotations, so an operator needs both)."""
        # (the file being read: after a rename or copytruncate, a rotated file or the copy)
        path = getattr(self.source, "reading", None) or getattr(self.source, "path", None)
        first = self.position.file_first_line
        if path is None or line < first:
            return ""
        return f" ({path} line {line - first + 1})"

    def _alert(self, event: dict, lines, stamps, key: str | None = None) -> None:
        """Log the first point of an anomalous episode (the first 20, then every 1000th);
        ``key``: the series it belongs to, in a keyed stream (also a field of a JSON log)."""
        self.alerts += 1
        if self.alerts <= 20 or self.alerts % 1000 == 0:
            i = event["index"]
            when = "" if stamps is None else f" ({stamps[i].decode()})"
            of = "" if key is None else f" of key {key!r}"
            log.warning("anomaly%s at line %d%s%s: score %.6f [%d episodes this run]", of,
                        int(lines[i]), self._where(int(lines[i])), when, event["score"],
                        self.alerts, extra={} if key is None else {"key": key})

    def _make_key(self) -> None:
        """The series' monitor, once the input's layout is known (features for tables with a
        time column, under ``features.enabled: auto``), with the checkpoint's state if any."""
        timed = bool(self.parser.layout) and self.parser.layout.time_field is not None
        self.key = KeyMonitor(self.config, timed, counters=self.counters, metrics=self.metrics,
                              background=self.background, alive=self.alive_hook)
        if self._restored is not None:
            model, meta, where = self._restored
            self._restored = None
            self.key.restore(model, meta, where=where)

    def _lose_output(self, exc: OSError | None) -> None:
        """The per-point output is gone (``exc`` None: found before learning the batch).

        A batch whose lines were not all written was learned: its checkpoint would claim lines
        as reported that were not, so for a re-readable input no checkpoint is written after it
        (a restart resumes from the last one and reports again from there).  Stdin cannot be
        re-read: its final checkpoint keeps what was learned."""
        self.sink.close_lost(exc)
        gone = exc is None or isinstance(exc, (BrokenPipeError, ConnectionResetError))
        what = "closed by its reader" if gone else f"failed ({exc.strerror or exc})"
        if self._unreported_resumable():
            after = ("no checkpoint after the batch being written: a restart resumes from the "
                     "last one and reports again from there")
        elif exc is not None and self.source.kind == "stdin":
            after = "the batch being written is learned, its lines cannot be read again"
        else:
            after = (f"the checkpoint stays after line {self.position.line() - 1}, the "
                     "last one reported")
        self._halt(1 if gone else EX_IOERR, "per-point output %s: stopping; %s", what, after)

    def _unreported_resumable(self) -> bool:
        """Whether a learned batch went unreported on an input a restart reads again."""
        return self.sink.unreported and self.source.kind != "stdin"

    # ------------------------------------------------------------------ checkpoints
    def _still_locked(self) -> bool:
        """Whether this daemon may write its checkpoint (:meth:`CheckpointLock.ours`); if
        another daemon took the path meanwhile, or the state is gone, this one halts (exit 75)
        and writes nothing more there."""
        lost_before = self.lock.lost is not None
        if self.lock.ours(self._state_intact):
            return True
        if not lost_before:
            self._halt(EX_TEMPFAIL, "%s", self.lock.lost)
        return False

    def _first_unreported(self, meta: dict) -> int:
        """The first input line whose per-point line a checkpoint's run may have written after
        its mark (:func:`~emstreamd.outputmarks.first_unreported`)."""
        return first_unreported(meta, self.position.next_line)

    def _state_intact(self) -> bool:
        """Whether the checkpoint's state is still where this daemon writes it (a single
        series writes a whole checkpoint each time: always)."""
        return True

    def _config_to_keep(self) -> dict:
        """The configuration a checkpoint records: this run's, but the input settings its
        layout was decided with (a restart compares config.yaml with those; recording this
        run's made a changed setting warned about once, then silent, then the right one
        warned against)."""
        kept = {k: v for k, v in self.config.items() if k != "model"}
        kept["input"] = {**kept["input"], **self.parser.layout_settings}
        return kept

    def save_checkpoint(self, reason: str) -> bool:
        """Write a checkpoint of what is applied; False if none was written (logged): after a
        batch whose per-point lines were lost (see :meth:`_lose_output`), on a write error
        (a full disk, no file descriptor left), which leaves the last one in place, or when
        the checkpoint's lock was lost to another daemon (:meth:`_still_locked`)."""
        if self._unreported_resumable() or not self._still_locked():
            return False
        counters = self.position.counters_at(self.counters)
        offset = self.position.offset
        meta = {"input": {**self.source.identity(offset), "offset": offset,
                          "next_line": self.position.line(),
                          **self._file_state()},
                "counters": counters, **self.parser.state(),
                **self._key_state(),
                "carried": (self.position.carried.state() if self.position.carried.count
                            else None),
                **self.output_marks.marks(),
                "config": self._config_to_keep()}
        target = Path(self.config["checkpoint"]["path"])
        try:
            if target.suffix != ".json":
                target.mkdir(parents=True, exist_ok=True)
            self.last_checkpoint_path = checkpoint.save(self.model, target, meta=meta,
                                                        keep=self.config["checkpoint"]["keep"])
        except OSError as exc:
            self.schedule.failed()
            log.error("checkpoint (%s) not written: %s: %s; the last one is %s", reason,
                      exc.filename or target, exc.strerror or exc, self.last_checkpoint_path)
            return False
        except ValueError as exc:  # (a state that will not encode: a bug, but not a crash)
            self.schedule.failed()
            log.error("checkpoint (%s) not written: %s; the last one is %s", reason, exc,
                      self.last_checkpoint_path)
            return False
        self.schedule.written()
        self.saved_counters = copy.deepcopy(counters)
        if self.metrics is not None:
            self.metrics.checkpoint_time.set_to_current_time()
        log.info("checkpoint (%s): %s at byte %d", reason, self.last_checkpoint_path, offset)
        if not self._checkpointed:
            self._checkpointed = True
            self.output_marks.forget_start()
        return True

    def _key_state(self) -> dict:
        """The series' meta fields: its monitor's, or a restored checkpoint's not yet used."""
        if self.key is not None:
            return self.key.state()
        meta = self._restored[1] if self._restored is not None else {}
        return {"history": meta.get("history", []), "monitor": meta.get("monitor"),
                "series": meta.get("series"), "since_refit": meta.get("since_refit", 0)}

    # ------------------------------------------------------------------ control
    def _reload(self) -> None:
        """SIGHUP: the live keys of the configuration file (:func:`reload_live`)."""
        self.flags.reload = False
        if self.reload_config is not None:
            reload_live(self.config, self.reload_config, apply=self._apply_live,
                        windows=self._windows())

    def _windows(self) -> set:
        """The calibration windows of the models that score: a resumed one keeps its own,
        a new one takes the configuration's."""
        return {self.kept_window or self.config["output"]["calibration_window"]}

    def _apply_live(self) -> None:
        """Hand the reloaded live settings to the series' monitor."""
        if self.key is not None:
            self.key.apply_live_settings()

    def _close_state(self) -> None:
        """Let go of the checkpoint's state before its lock (nothing to close here: every
        checkpoint file is closed once written)."""

    def _status(self) -> None:
        if not self.status.due(watched_back_fill=self.progress is not None):
            return
        # (before this run's first checkpoint, the time since the start was given as its age)
        saved = (f"last checkpoint {self.schedule.age():.0f}s ago"
                 if self.last_checkpoint_path is not None else "no checkpoint yet this run")
        # (the bytes learned, not the bytes read: the reader runs ahead by a block, and a
        # status line said 100% with a seventh of a 100,000-line file learned)
        progress = self.progress.describe(self.position.offset, self.ready_at) \
            if self.progress else ""
        log.info("status: %.0f points/s, %d points, %d rejected, %s%s", self.status.rate(),
                 self.counters["rows"], sum(self.counters["rejected"].values()), saved, progress)
        self.status.said()

    # ------------------------------------------------------------------ run
    def run(self) -> int:
        """Read, learn and checkpoint until the input ends or a stop is asked for; exit code."""
        self.flags.install()  # from the start: a SIGTERM during the imports still checkpoints
        self.prepare()
        if self.source.kind == "file":
            # A back-fill starts reading and parsing now: pyarrow parses without the GIL while
            # the imports below run (0.4 s of them are scipy's).
            from .prefetch import PrefetchedFile

            self.source = PrefetchedFile(self.source, self.parser.parse, self.position.next_line,
                                         self.parser.n_fields)
        # Imports first: the limit below applies to the BLAS libraries loaded when it is taken.
        _import_ahead(self.config)
        # One BLAS thread for the whole run, taken once: the core would otherwise switch
        # threadpoolctl's limits around every mini-batch (~0.1 ms each, 8% of a back-fill).
        with single_thread_blas():
            return self._run()

    def _alive(self) -> None:
        """The loop is making progress: ping systemd's watchdog, stamp /healthz's heartbeat
        (every turn, and inside long stretches of work such as a keyed end-of-input flush)."""
        self.watchdog.ping()
        self.heartbeat = time.monotonic()

    def _run(self) -> int:
        notify("READY=1")
        self.ready_at = time.monotonic()
        log.info("ready: reading %s", getattr(self.source, "path", "stdin"))
        settings = self.config["batch"]
        by_count_only = self.source.kind == "file"  # a back-fill (PrefetchedFile)
        while True:
            self._alive()
            if self.flags.reload:
                self._reload()
            if self.flags.stop:
                break
            timeout = IDLE_WAIT
            if self.watchdog.interval is not None:
                # An idle turn must not outlast the ping interval (half systemd's period): a
                # short WATCHDOG_USEC would otherwise see pings 0.2 s apart and kill the daemon.
                timeout = min(timeout, self.watchdog.interval / 2)
            first_at = self.position.first_pending_at
            if first_at is not None and not by_count_only and not self._deciding():
                timeout = max(0.0, min(timeout, first_at + settings["max_wait"]
                                       - time.monotonic()))
            data = self.source.read(timeout)
            if data:
                self._take(data)
            if self.source.boundary and not self.halted:
                # The next bytes come from another file: positions restart there, so nothing
                # may stay pending from this one.
                if self.position.waiting():
                    self._apply(self.position.waiting())
                if self.halted:
                    break
                self.source.next_file()
                self.position.all_applied(self.source.offset)
                if getattr(self.source, "continues", False):
                    # The copy of a copytruncated file, read on from the same position: its
                    # lines are numbered as the file's were (they were counted from where
                    # reading resumed, and credited to the truncated file).
                    log.info("now reading %s (the copy of the truncated %s) from stream line "
                             "%d", self.source.reading, self.source.path,
                             self.position.next_line)
                else:
                    self.position.file_first_line = self.position.next_line
                    self.parser.next_file()
                    log.info("now reading %s (rotated or truncated) from stream line %d",
                             self.source.reading, self.position.next_line)
            self._learn_ready(by_count_only)
            if self.halted:
                break
            if self.background is not None and (job := self.background.poll()) is not None:
                self.key.swap_in(job, self.config["batch"]["max_rows"])
            self._between_batches()
            if self.source.at_end:
                break
        notify("STOPPING=1")
        # A back-fill stopped by a signal leaves its partial mini-batch unlearned, behind the
        # checkpoint's position, to be read again: the resumed run then learns the batches an
        # uninterrupted one does (learned early, as a short batch, they changed the model and
        # later labels and flags).  Elsewhere the lines read may not come again: learn them,
        # unless they are a first mini-batch still deciding (learned alone, the one row of a
        # live series that a deploy restarted in its first minutes turned its daily season
        # off for good, and so did a back-fill of a log just begun, or a cron job's first few
        # rows on stdin, at the end of their input): those are carried in the checkpoint, to
        # be learned first next run.
        keep_partial = by_count_only and self.flags.stop and not self.source.at_end
        if not self.halted and not keep_partial and self._deciding():
            log.info("%d rows of a first mini-batch wait for %d before the season is decided: "
                     "carried in the checkpoint, learned first next run",
                     self.position.waiting(), self._rows_to_decide())
            self.position.carry(self.source.offset)
        elif self.position.waiting() and not self.halted and not keep_partial:
            self._apply(self.position.waiting())
        if self.background is not None:
            if self.background.running_for and not self.halted:
                # What is learned is kept before the wait (a kill during it lost everything
                # read since the last checkpoint: a stdin stream's lines for good), and a
                # further stop signal ends it (only SIGKILL did, up to refit.wait_at_exit).
                self.save_checkpoint("before waiting for the refit")
            stops = self.flags.stops
            self.background.wait(self.config["refit"]["wait_at_exit"],
                                 give_up=lambda: self.flags.stops > stops)
            if (job := self.background.poll()) is not None:
                self.key.swap_in(job, self.config["batch"]["max_rows"])
            self.background.close()
        saved = self.save_checkpoint("halted" if self.halted else "shutdown" if self.flags.stop
                                     else "end of input")
        if not saved and not self.exit_code and not self._unreported_resumable():
            self.exit_code = EX_CANTCREAT  # the final checkpoint could not be written
        if getattr(self.source, "error", None) is not None and not self.exit_code:
            self.exit_code = EX_IOERR  # standard input failed (what came before it is kept)
        if self.halted or keep_partial:  # lines read but not applied: read again next run
            self.counters = self.position.counters_at(self.counters)
        if by_count_only:
            self.source.close()  # stops the reader thread
        if self.dead_letters is not None:
            self.dead_letters.close()
        if self.metrics is not None:
            self.metrics.close()
        self._close_state()
        self.lock.close()  # after the last checkpoint: another daemon may take over
        return self.exit_code

