"""Many series in one daemon (``input.key``): rows routed by key, one model per key, the idle
ones in an SQLite state store.

Stages: the source and parser (:class:`emstreamd.parser.BlockParser`) are the single-series
daemon's (:class:`emstreamd.loop.Daemon`);
:mod:`emstreamd.router` groups each block's rows by key; each key's rows wait in its own
mini-batch (:class:`emstreamd.batcher.Pending`, the single series' batcher) and are learned by
its own :class:`~emstreamd.keymonitor.KeyMonitor` (the same batch sizes, warm-up, features,
score and drift monitor as a daemon fed that key's rows alone); per-point lines carry the key;
:class:`emstream.store.KeyStore` holds every key.

Exactly once, per key: a key's checkpoint document holds its model *and* the rows of its
partial mini-batch, so the position can always move past every line read.  At most
``keys.max_active`` keys stay in memory; the least recently used one is written to the store
inside the open transaction when another is needed, and read back exactly as it left.  A
checkpoint writes the keys changed since the last one, the position and the counters, and
commits them together: a crash at any moment leaves a store whose models and position agree.
"""

from __future__ import annotations

import copy
import fcntl
import logging
import os
import sqlite3
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

from emstream import checkpoint
from emstream.parse import _SNIPPET, REASONS, Rejects
from emstream.store import DamagedStore, KeyStore, StoreError, store_location

from .batcher import Pending
from .errors import EX_CANTCREAT, EX_IOERR, EX_TEMPFAIL, StartError
from .keymonitor import COUNTED, KeyMonitor
from .loop import Daemon
from .resumed import check_kept_window, warn_resumed_settings
from .router import groups
from .schedule import CheckpointSchedule

log = logging.getLogger("emstreamd")


def store_path(config: dict) -> Path:
    """Where a keyed daemon's state store is (:func:`emstream.store.store_location`)."""
    return store_location(config["checkpoint"]["path"])


def _key_rejects(parsed, refused: list, data: bytes, ends, first: int) -> Rejects:
    """The rows refused for their key as rejects, their texts spans of ``data`` (the block,
    whose first line is ``first``; ``ends``: the byte just past each of its lines, or of each
    row when the parser gave them), in line order."""
    names = tuple(REASONS) + tuple(r for r in ("too many keys",) if r not in REASONS)
    rows = np.concatenate([index for index, _ in refused])
    # (a code per group, not a Python step per row: a flood of new keys is all refused rows)
    codes = np.concatenate([np.full(len(index), names.index(reason), dtype=np.int8)
                            for index, reason in refused])
    order = np.argsort(rows, kind="stable")
    lines = parsed.lines[rows][order]
    ends = np.asarray(ends, dtype=np.int64)
    at = lines - first if parsed.line_ends is None else rows[order]
    stops = ends[at]
    starts = np.where(at > 0, ends[np.maximum(at - 1, 0)], 0)
    body = np.frombuffer(data, dtype=np.uint8)
    for end in (b"\n"[0], b"\r"[0]):  # (the line's text, without its end)
        trim = (stops > starts) & (body[np.maximum(stops - 1, 0)] == end)
        stops = stops - trim
    stops = np.minimum(stops, starts + _SNIPPET)
    return Rejects(lines, codes[order], starts, stops, data, names)


def _writable(path: Path) -> bool:
    """Whether this process may open ``path`` for writing (tried: ``os.access`` answers for
    the real user, which for root is yes whatever its capabilities)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CLOEXEC))
    except OSError:
        return False
    return True


def _stuck_sidecars(path: Path) -> str:
    """What to say of SQLite's log and shared-memory files beside the store that cannot be
    written ("" if none): a reader of the store while it was read-only (``emstream inspect``)
    leaves them read-only, and the writer then failed with "attempt to write a readonly
    database" about a store file that was writable (SQLite replaced them while failing, so
    the next start went through)."""
    stuck = [side.name for side in (path.with_name(path.name + "-wal"),
                                    path.with_name(path.name + "-shm"))
             if side.is_file() and not _writable(side)]
    if not stuck:
        return ""
    return (f"{' and '.join(stuck)} beside it cannot be written (left by a reader while the "
            "store was read-only?): make them writable, or remove them if no process has the "
            "store open")


class Series:
    """A key in memory: its monitor, its partial mini-batch, and whether the store's copy is
    stale."""

    __slots__ = ("monitor", "pending", "dirty")

    def __init__(self, monitor: KeyMonitor):
        self.monitor = monitor
        self.pending = Pending()
        self.dirty = True  # changed since the store last had it


class KeyedDaemon(Daemon):
    """One run of emstreamd over a keyed source (see the module docstring)."""

    def __init__(self, config: dict, source, reload=None, out=None):
        super().__init__(config, source, reload=reload, out=out)
        self.active = OrderedDict()  # key -> Series, least recently used first
        self.known = set()  # every key with a model (in memory or in the store)
        self.waiting = {}  # keys with waiting rows -> when the first arrived (oldest first)
        # Keys whose waiting rows are a first mini-batch too short for their features to
        # decide from (KeyMonitor.rows_to_decide): out of `waiting` until more rows come, or
        # the input ends.
        self.deciding = {}
        self.store = None
        self.store_failed = False
        self.counters["keys"] = 0
        self.recent_anomalies = {}  # key -> anomalies since the last checkpoint (metrics)
        # A commit of many keys takes seconds: checkpoints take at most keys.checkpoint_share
        # of the daemon's time.
        self.schedule = CheckpointSchedule(config["checkpoint"],
                                           share=config["keys"]["checkpoint_share"])
        self._store_lock = None  # the open store file that holds its flock

    # ------------------------------------------------------------------ start-up
    def prepare(self) -> None:
        if self.prepared:
            return
        super().prepare()
        path = store_path(self.config)
        folder = Path(self.config["checkpoint"]["path"])
        if path.parent == folder and not path.exists() and any(folder.glob("checkpoint-*.json")):
            # A single series' checkpoints: a keyed run beside them would learn the input
            # again, from its first line.
            raise checkpoint.CheckpointError(
                f"{folder} holds a single series' checkpoints (input.key was not set): unset "
                "input.key as it was, or choose another checkpoint.path")
        stuck = _stuck_sidecars(path)
        if stuck:
            raise StartError(f"checkpoint.path: cannot open the state store {path}: {stuck}",
                             EX_CANTCREAT)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_file() and path.stat().st_size == 0:
                # (what a crash while the store was being made leaves, or a truncation: no
                # key's state survives, and the input is learned again from its start)
                log.warning("the state store %s is empty (0 bytes): no key's state is kept; "
                            "starting afresh", path)
            self._lock_store(path)  # (before SQLite writes a byte: see there)
            self.store = KeyStore(path, writer=True)
            found = os.stat(path)
            self.store_file = (found.st_dev, found.st_ino)  # (see _state_intact)
        except DamagedStore as exc:  # no usable checkpoint (65), not one that cannot be written
            self._close_state()
            raise checkpoint.CheckpointError(f"{path}: not a readable state store: {exc}") \
                from None
        except (OSError, StoreError, sqlite3.Error) as exc:
            self._close_state()
            raise StartError(f"checkpoint.path: cannot open the state store {path}: {exc}",
                             EX_CANTCREAT) from None

    def _lock_store(self, path: Path) -> None:
        """Lock the store's file itself (made if missing), as well as its checkpoint path, and
        before SQLite opens it: a hard link names the same file under another path (another
        lock, another shared-memory and log file beside it), and two daemons wrote one store
        until it was malformed; a second one let in long enough to open it wrote a log of its
        own, which a later run on that name replayed over the first one's keys.  (``flock``,
        which SQLite's own ``fcntl`` locks do not see.  The descriptor stays open until the
        store is closed: closing any descriptor of a file drops the process's ``fcntl`` locks
        on it, SQLite's among them.)"""
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StartError(f"another emstreamd is using the state store {path} (under "
                             "another name: a hard link): stop it first", EX_TEMPFAIL) from None
        except OSError:  # (a file system without locks: the path's lock still serves)
            pass
        self._store_lock = fd

    def resume(self) -> None:
        """Take the store's position and counters; keys are read back when they return."""
        self.prepare()
        try:
            meta = self.store.meta("daemon")
            self.known = set(self.store.keys())
            self.waiting = dict.fromkeys(self.store.waiting(), time.monotonic())
        except (sqlite3.Error, ValueError) as exc:
            raise checkpoint.CheckpointError(f"{self.store.path}: not a readable state store: "
                                             f"{exc}") from None
        if meta is None:
            self.output_marks.begin(self.source)
            return
        checkpoint.validate_meta(meta, source=self.store.path)  # (a hand-edited store)
        self._resume_input(meta, self.store.path)
        self._warn_kept_settings()
        self.counters["keys"] = len(self.known)
        if self.metrics is not None:  # (from the start, not from the first checkpoint on)
            self.metrics.set_keys(len(self.known), len(self.active), {})
        if self.parser.layout is not None and self.parser.layout is not False and \
                self.parser.layout.key_field is None:
            raise StartError("the state store's input has no key column", EX_CANTCREAT)

    def _windows(self) -> set:
        """The keys in the store keep their window; new keys take the configuration's."""
        return {self.config["output"]["calibration_window"], self.kept_window} - {None}

    def _warn_kept_settings(self) -> None:
        """Say once, at start, which settings config.yaml changes that the keys' models keep
        (every key was made with the same settings: one key's model speaks for all)."""
        if not self.known:
            return
        key = min(self.known)
        where = f"{self.store.path} key {key!r}"
        try:
            loaded = checkpoint.loads(self.store.get(key), source=where)
        except (checkpoint.CheckpointError, sqlite3.Error, ValueError):
            return  # (said when the key returns, where it matters)
        warn_resumed_settings(loaded.model, loaded.meta, self.config, keyed=True)
        self.kept_window = check_kept_window(loaded.meta, self.config)

    # ------------------------------------------------------------------ routing
    def _take(self, data: bytes) -> None:
        parsed, ends = self._read(data)
        self._reject(parsed)
        grouped = list(groups(parsed.keys)) if parsed.rows.size and not self.halted else []
        accepted, refused = self._admit(grouped)
        if refused:  # (counted, logged and written as dead letters, as other rejects)
            first = self.position.next_line - parsed.n_lines  # (the block's first line)
            self._reject_lines(_key_rejects(parsed, refused, data, ends, first))
        if self.halted:
            return  # the position stays before this block
        if accepted:
            self._route(parsed, accepted)
            if self.metrics is not None:  # (the top keys' gauges wait for a checkpoint)
                self.metrics.keys.set(len(self.known))
                self.metrics.keys_in_memory.set(len(self.active))
        if not self.halted:
            # Every line read is applied, waiting in its key's mini-batch, or rejected.
            self.position.all_applied(self.source.offset)

    def _admit(self, grouped: list) -> tuple[list, list]:
        """A block's ``(key, rows)`` groups split into those to learn and those refused, with
        why: a key not valid text ("bad key"), or a new key past ``keys.max_known`` ("too many
        keys").  The room left goes to new keys in the order they first appear (in the
        router's order, alphabetical, the keys admitted depended on their names and on where
        blocks happened to end)."""
        room = self.config["keys"]["max_known"] - len(self.known)
        new = [(int(index[0]), key) for key, index in grouped
               if key is not None and key not in self.known]
        admitted = {key for _, key in sorted(new)[:max(room, 0)]}
        accepted, refused = [], []
        for key, index in grouped:
            if key is None:
                refused.append((index, "bad key"))
            elif key in self.known or key in admitted:
                accepted.append((key, index))
            else:
                refused.append((index, "too many keys"))
        return accepted, refused

    def _route(self, parsed, accepted: list) -> None:
        times, stamps = getattr(parsed, "times", None), getattr(parsed, "time_text", None)
        for key, index in accepted:
            if self.halted:
                # (the block is read again by the next run; loading the rest of its keys held
                # more of them in memory than keys.max_active, a failed store evicting none)
                break
            # (a block of thousands of keys' first mini-batches can take a minute: the
            # watchdog is told the daemon is alive between keys, or systemd kills it there,
            # and the restart reads the same block again; a reload and the status line are
            # not kept waiting either; checkpoints and refits come between blocks)
            self._alive()
            if self.flags.reload:
                self._reload()
            self._status()
            series = self._series(key)
            series.pending.add(parsed.rows[index], parsed.lines[index],
                               None if times is None else times[index],
                               None if stamps is None else stamps[index])
            series.dirty = True
            # Rows waiting in a key's mini-batch are state too (the position moves past them):
            # they count towards checkpoint.every_points when they arrive (once: not again when
            # learned).
            self.schedule.add(len(index))
            if key in self.deciding:
                if series.pending.count >= series.monitor.rows_to_decide():
                    self.waiting[key] = self.deciding.pop(key)
            else:
                self.waiting.setdefault(key, time.monotonic())
            while not self.halted and series.pending.count >= series.monitor.batch_rows():
                self._learn(key, series, series.monitor.batch_rows())
            self._evict()

    # ------------------------------------------------------------------ keys in memory
    def _series(self, key: str) -> Series | None:
        """The key's series, made active (read from the store, or new); None past
        ``keys.max_known``."""
        series = self.active.get(key)
        if series is not None:
            self.active.move_to_end(key)
            return series
        timed = bool(self.parser.layout) and self.parser.layout.time_field is not None
        name = f"key {key!r}: "
        if key in self.known:
            series = self._load(key, timed, name)
        else:
            if len(self.known) >= self.config["keys"]["max_known"]:
                return None
            self.known.add(key)
            self.counters["keys"] += 1
            series = Series(KeyMonitor(self.config, timed, metrics=self.metrics, name=name,
                                       alive=self.alive_hook))
        self.active[key] = series
        return series

    def _load(self, key: str, timed: bool, name: str) -> Series:
        where = f"{self.store.path} key {key!r}"
        try:
            document = self.store.get(key)
        except StoreError as exc:
            raise checkpoint.CheckpointError(f"{self.store.path}: not a readable state store: "
                                             f"{exc}") from None
        loaded = checkpoint.loads(document, source=where)
        # (checked as a single series' checkpoint is: an edited document's counters or
        # history crashed the daemon, or every commit after it, with a traceback)
        meta = checkpoint.validate_meta(loaded.meta, source=where)
        if meta.get("key", key) != key:
            # (a hand-edited store: one key's rows were learned into another's model, and it
            # was written back as this key's)
            raise checkpoint.CheckpointError(f"{self.store.path}: not a readable state store: "
                                             f"key {key!r} holds the document of key "
                                             f"{meta.get('key')!r}")
        counters = {k: int(meta.get("counters", {}).get(k, 0)) for k in COUNTED}
        monitor = KeyMonitor(self.config, timed, counters=counters, metrics=self.metrics,
                             name=name, alive=self.alive_hook)
        monitor.restore(loaded.model, meta, where=where)
        series = Series(monitor)
        try:
            series.pending.restore(meta.get("pending"), self.parser.row_width())
        except ValueError as exc:
            raise checkpoint.CheckpointError(f"{where}: meta.pending: {exc}") from None
        series.dirty = False
        return series

    def _document(self, key: str, series: Series) -> bytes:
        """The key's checkpoint document: a single series' checkpoint, with its waiting rows."""
        monitor = series.monitor
        meta = {"key": key, "counters": dict(monitor.counters), **monitor.state(),
                "pending": series.pending.state(),
                "layout": self.parser.layout.to_dict() if self.parser.layout else None}
        return checkpoint.dumps(monitor.model, meta, compact=True)

    def _put(self, key: str, series: Series) -> None:
        counters = series.monitor.counters
        self.store.put(key, self._document(key, series), points=counters["rows"],
                       updated=time.time(), anomalies=counters["anomalies"],
                       alarms=counters["alarms"], pending=series.pending.count)

    def _evict(self) -> None:
        """Write the least recently used keys beyond ``keys.max_active`` to the store (in its
        open transaction) and let them go."""
        while len(self.active) > self.config["keys"]["max_active"]:
            key, series = next(iter(self.active.items()))
            if series.dirty and not self._store_write(self._put, key, series):
                return
            del self.active[key]

    def _store_write(self, write, *args) -> bool:
        """Run ``write(*args)`` on the store; on failure (a full disk) halt: what was not
        committed is read again by the next run."""
        if self.store_failed:
            return False
        try:
            write(*args)
        except (sqlite3.Error, OSError) as exc:
            self.store_failed = True
            self._halt(EX_IOERR, "state store %s: %s: stopping; a restart resumes from the "
                       "last checkpoint", self.store.path, exc)
            return False
        return True

    # ------------------------------------------------------------------ learning
    def _learn(self, key: str, series: Series, count: int) -> None:
        """Learn the key's first ``count`` waiting rows as one mini-batch (and report them)."""
        if self.config["output"]["per_point"] and self.sink.reader_gone():
            self._lose_output(None)
            return
        batch, lines, times, stamps, _ = series.pending.take(count)
        series.dirty = True
        monitor = series.monitor
        before = [monitor.counters[k] for k in COUNTED]
        per_point = self.config["output"]["per_point"] and self.sink.open
        update = monitor.learn(batch, times, per_point=per_point)
        self._add_counts(monitor, before)
        flagged = monitor.counters["anomalies"] - before[COUNTED.index("anomalies")]
        if flagged and self.metrics is not None:
            self.recent_anomalies[key] = self.recent_anomalies.get(key, 0) + flagged
        if update.log_prob is not None and per_point and (
                exc := self.sink.write(lines, stamps, update, key=key)) is not None:
            self._lose_output(exc)
        for event in update.events:
            if event["event"] == "anomaly":
                self._alert(event, lines, stamps, key=key)
        self.status.count(len(batch))
        if series.pending.count:
            self.waiting[key] = time.monotonic()
            self.waiting[key] = self.waiting.pop(key)  # (to the end: oldest first)
        else:
            self.waiting.pop(key, None)

    def _learn_ready(self, by_count_only: bool) -> None:
        """Full mini-batches are learned as they fill (:meth:`_route`); partial ones at the
        end of the input, or (live input) once their first row has waited
        ``batch.max_wait``."""
        wait = self.config["batch"]["max_wait"]
        now = time.monotonic()
        # (keys whose first mini-batch is still deciding keep waiting at the end of the input
        # too, in their checkpointed mini-batches: learned alone, a key's few first rows turned
        # its season off for good)
        if self.source.at_end and self.waiting:
            log.info("end of input: learning the last rows of %d keys", len(self.waiting))
            # In key order: a run resumed at the end of the input has its waiting keys from
            # the store, not in the order their rows came, and wrote the last lines in another
            # order than an uninterrupted run (found by an attack helper).
            self.waiting = dict(sorted(self.waiting.items()))
        # A stop asked for meanwhile ends this (the rows left wait in their keys' checkpointed
        # mini-batches for the next run): thousands of keys' last batches can take minutes.
        while self.waiting and not self.halted and not self.flags.stop:
            self._alive()
            key, since = next(iter(self.waiting.items()))
            if not (self.source.at_end or (not by_count_only and now - since >= wait)):
                break
            series = self._series(key)
            if series.pending.count < series.monitor.rows_to_decide():
                # (a first mini-batch too short for the features to decide from waits for
                # more rows, however long, past the end of the input too)
                self.deciding[key] = self.waiting.pop(key)
                self._evict()  # (read back to be looked at: no more keys in memory than allowed)
                continue
            if series.pending.count:
                count = series.pending.count
                self._learn(key, series, count)
                if self.source.at_end:
                    # (Counted when read, possibly before the last checkpoint; learning them
                    # now is new state, which checkpoint.every_points must see for the flush
                    # to commit as it goes.)
                    self.schedule.add(count)
            else:
                self.waiting.pop(key)
            self._evict()
            if self.source.at_end and self.schedule.due():
                # The end of the input: thousands of keys learning their last rows is a long
                # stretch of work, committed as it goes (a kill does not undo all of it).
                self.save_checkpoint("scheduled")
        self.position.first_pending_at = next(iter(self.waiting.values()), None)

    def refit(self, reason: str) -> None:
        """Refit every key on its own window (SIGUSR2): those in memory, then those in the
        store, each read back in turn and let go again beyond ``keys.max_active`` (only the
        keys in memory were refitted, without a word about the rest); a stop asked for
        meanwhile ends it (thousands of keys' refits take minutes)."""
        self.flags.refit = False
        keys = list(self.active) + sorted(self.known.difference(self.active))
        for done, key in enumerate(keys):
            if self.flags.stop:
                log.warning("refit (%s) stopped after %d of %d keys: stopping", reason, done,
                            len(keys))
                return
            self._alive()
            series = self._series(key)
            before = [series.monitor.counters[k] for k in COUNTED]
            series.monitor.refit(reason)
            self._add_counts(series.monitor, before)
            series.dirty = True
            self._evict()

    def _add_counts(self, monitor, before: list) -> None:
        """Add what a key's counters gained since ``before`` (its :data:`COUNTED` values) to
        the daemon's: every refit, alarm and anomaly of a key is one of the daemon's too."""
        for name, old in zip(COUNTED, before):
            self.counters[name] += monitor.counters[name] - old

    def _apply_live(self) -> None:
        for series in self.active.values():
            series.monitor.apply_live_settings()

    @property
    def model(self):
        raise AttributeError("a keyed daemon has one model per key")

    def _first_unreported(self, meta: dict) -> int:
        """Any line: a key's waiting rows, learned after the checkpoint, may be older than
        its position (only the per-point lines' form is checked before a cut-back)."""
        return 1

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, reason: str) -> bool:
        """Write the keys changed since the last checkpoint, the position and the counters,
        and commit them together; False if nothing was committed (logged)."""
        if (self._unreported_resumable() or self.store_failed or self.store is None
                or not self._still_locked()):
            return False
        changed = [(k, s) for k, s in self.active.items() if s.dirty]
        log.debug("checkpoint (%s): writing %d keys", reason, len(changed))
        counters = self.position.counters_at(self.counters)

        def commit():
            for key, series in changed:
                self._put(key, series)
            offset = self.position.offset
            meta = {"input": {**self.source.identity(offset), "offset": offset,
                              "next_line": self.position.line(),
                              **self._file_state()},
                    "counters": counters,
                    "n_fields": self.parser.n_fields,
                    "layout": None if self.parser.layout is None else self.parser.layout.to_dict(),
                    **self.output_marks.marks(),
                    "config": self._config_to_keep()}
            self.store.set_meta("daemon", meta)
            self.store.commit()

        started = time.monotonic()
        if not self._store_write(commit):
            return False
        for _, series in changed:
            series.dirty = False
        self.saved_counters = copy.deepcopy(counters)
        took = time.monotonic() - started
        self.schedule.written(took)
        self.last_checkpoint_path = self.store.path
        if not self._checkpointed:
            self._checkpointed = True
            self.output_marks.forget_start()
        if self.metrics is not None:
            self.metrics.checkpoint_time.set_to_current_time()
            self.metrics.set_keys(len(self.known), len(self.active), self.recent_anomalies)
            self.recent_anomalies = {}
        log.info("checkpoint (%s): %d of %d keys written to %s in %.3f s, at byte %d", reason,
                 len(changed), len(self.known), self.store.path, took,
                 self.position.offset)
        return True

    def _state_intact(self) -> bool:
        """Whether the store this daemon has open is still the file at its path (removed with
        its directory, its evicted keys are gone: starting a new store would lose them)."""
        try:
            now = os.stat(self.store.path)
        except OSError:
            return False
        return (now.st_dev, now.st_ino) == self.store_file

    def _close_state(self) -> None:
        if self.store is not None:
            self.store.close()  # (what was not committed is dropped, as by a crash)
            self.store = None
        if self._store_lock is not None:
            os.close(self._store_lock)
            self._store_lock = None
