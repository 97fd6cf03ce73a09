"""A state store for many series: one SQLite file holding every key's checkpoint document.

A keyed ``emstreamd`` keeps one model per key.  Their checkpoints live in one SQLite database
(standard library, write-ahead log), readable with standard tools::

    sqlite3 state.sqlite "select key, points, anomalies, alarms from keys order by points desc"

Tables
------
``keys(key TEXT PRIMARY KEY, document TEXT, points, updated, anomalies, alarms, pending)``
    ``document`` is the key's checkpoint exactly as :func:`emstream.checkpoint.dumps` writes a
    single series' (so ``emstream inspect STORE --key K --json`` prints what ``emstream
    inspect CKPT --json`` prints for one series); the other columns summarise it for listing.
``meta(name TEXT PRIMARY KEY, value TEXT)``
    JSON values: ``daemon`` holds the input's position and the counters.

Atomicity: the writer keeps one transaction open between checkpoints.  Keys written meanwhile
(an idle key evicted from memory) are visible to the writer at once and to nobody else;
:meth:`KeyStore.commit` makes them durable together with the position, so a crash at any
moment leaves the store as of the last commit, models and position consistent.  A commit
costs in proportion to what was written since the last one, not to the keys stored.

Example
-------
>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "state.sqlite")
>>> store = KeyStore(path, writer=True)
>>> store.put("web-1", b'{"format": "x"}', points=10)
>>> store.set_meta("daemon", {"offset": 123})
>>> store.commit()
>>> reader = KeyStore(path)
>>> reader.get("web-1"), reader.meta("daemon"), [row["key"] for row in reader.listing()]
(b'{"format": "x"}', {'offset': 123}, ['web-1'])
>>> store.close(); reader.close()
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import stat
import urllib.parse
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    key TEXT PRIMARY KEY,
    document TEXT NOT NULL,
    points INTEGER NOT NULL DEFAULT 0,
    updated REAL,
    anomalies INTEGER NOT NULL DEFAULT 0,
    alarms INTEGER NOT NULL DEFAULT 0,
    pending INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""
# Each table's columns, as SCHEMA makes them.
COLUMNS = {"keys": {"key", "document", "points", "updated", "anomalies", "alarms", "pending"},
           "meta": {"name", "value"}}
# The first bytes of every SQLite 3 database file.
MAGIC = b"SQLite format 3\x00"


STORE_NAME = "keys.sqlite"  # a keyed daemon's store inside its checkpoint directory


def _text(key):
    """A stored key, which the daemon writes as text (ValueError otherwise: a BLOB or a
    number put there by hand)."""
    if not isinstance(key, str):
        raise ValueError(f"a key stored as {type(key).__name__}, not as text: {key!r:.60}")
    return key


def store_location(checkpoint_path: str | os.PathLike) -> Path:
    """Where a keyed daemon keeps its state store for ``checkpoint.path``: the path itself if
    it ends in ``.sqlite``, else ``keys.sqlite`` inside that directory."""
    path = Path(checkpoint_path)
    return path if path.suffix == ".sqlite" else path / STORE_NAME


class StoreError(ValueError):
    """The file is not a state store, or cannot be opened as one."""


class DamagedStore(StoreError):
    """The file is damaged or is no SQLite database at all (not merely unwritable)."""


def is_store(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a regular file that starts like an SQLite database (a FIFO or a
    device is never opened: a FIFO would block)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb") as handle:
            return handle.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


class KeyStore:
    """Every key's checkpoint document and the daemon's position, in one SQLite file.

    Parameters
    ----------
    path : str or path-like
    writer : bool
        Create the file if needed and hold a write transaction open (see the module
        docstring); a reader sees the last commit only.
    """

    def __init__(self, path: str | os.PathLike, *, writer: bool = False):
        self.path = os.fspath(path)
        self.writer = writer
        if not writer and not is_store(self.path):
            raise StoreError(f"{self.path}: not a state store (an SQLite file)")
        try:
            self._db = self._connect(writer)
            if writer:
                self._refuse_foreign()
                self._db.execute("PRAGMA journal_mode=WAL")
                # A commit is on disk when it returns (the position must not run ahead of it).
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.executescript(SCHEMA)
                self._db.execute("BEGIN IMMEDIATE")
            else:
                try:
                    self._refuse_foreign()
                except DamagedStore as exc:  # (the daemon names the path itself; a reader not)
                    raise DamagedStore(f"{self.path}: {exc}") from None
                self._db.execute("SELECT count(*) FROM keys").fetchone()
        except sqlite3.OperationalError as exc:  # (permissions, a read-only file system, locks)
            raise StoreError(f"{self.path}: {exc}") from None
        except sqlite3.Error as exc:  # "file is not a database", "disk image is malformed"
            raise DamagedStore(f"{self.path}: {exc}") from None

    def _refuse_foreign(self) -> None:
        """Refuse a database that holds tables of its own (another program's): the writer
        would add its tables beside them and switch it to write-ahead logging for good."""
        tables = {row[0] for row in self._db.execute(  # (SQLite's own: ANALYZE's statistics)
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' "
            "ESCAPE '\\'")}
        foreign = sorted(tables - {"keys", "meta"})
        # (Tables of our names are ours only with our columns: another program's "meta" was
        # taken over, its "keys" switched to write-ahead logging before the first query
        # failed.)
        foreign += [f"{name}({', '.join(sorted(columns))})" for name, columns in (
            (name, self._columns(name)) for name in sorted(tables & set(COLUMNS)))
            if columns != COLUMNS[name]]
        ours = tables & set(COLUMNS)
        if len(ours) == 1 and self._db.execute(f"SELECT 1 FROM {min(ours)} LIMIT 1").fetchone():
            # (a store makes both at once: one alone that holds rows is another program's)
            foreign.append(f"{min(ours)} alone")
        if foreign:
            self._db.close()
            raise DamagedStore(f"an SQLite database that is not a state store (its tables: "
                               f"{', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''})")

    def _columns(self, table: str) -> set:
        return {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}

    def _connect(self, writer: bool) -> sqlite3.Connection:
        # The path as a URI: quoted, or a '#', '?' or '%' in it cut it short (a directory
        # "state#1" opened, and created, a database named "state"); quoted as the bytes the
        # file system holds, or a name that is not UTF-8 (b"st\xff") raised a traceback.
        uri = "file:" + urllib.parse.quote_from_bytes(os.fsencode(os.path.abspath(self.path)))
        if writer:
            return sqlite3.connect(uri, uri=True, isolation_level=None,
                                   check_same_thread=False)
        try:
            db = sqlite3.connect(uri + "?mode=ro", uri=True, isolation_level=None,
                                 check_same_thread=False)
            try:
                db.execute("SELECT count(*) FROM keys").fetchone()
            except sqlite3.OperationalError:
                if db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                    return db  # (another program's tables: the caller names them)
                # (a WAL database whose tables are still in its -wal: "no such table")
                db.close()
                raise StoreError(
                    f"{self.path}: an SQLite file with no tables: a state store copied "
                    "before its daemon's first commit reached the file, or without its "
                    "-wal file; nothing to read (copy it again, with its -wal file)") from None
            return db
        except sqlite3.OperationalError:
            if os.access(os.path.dirname(os.path.abspath(self.path)), os.W_OK):
                raise
        # A read-only file system (a snapshot, a backup): a reader of a WAL database needs to
        # create its shared-memory file, which it cannot; nothing writes there, so the file
        # is opened as immutable.  Immutable, SQLite ignores the write-ahead log: its commits
        # (after a SIGKILL, possibly all of them) would be missing without a word.
        wal = self.path + "-wal"
        if os.path.isfile(wal) and os.path.getsize(wal) > 0:
            raise StoreError(f"{self.path}: its write-ahead log {wal} holds commits that "
                             "cannot be read in a read-only place without its shared-memory "
                             "file; copy the store with its -wal file somewhere writable")
        return sqlite3.connect(uri + "?mode=ro&immutable=1", uri=True, isolation_level=None,
                               check_same_thread=False)

    # ------------------------------------------------------------------ keys
    def get(self, key: str) -> bytes | None:
        """The key's checkpoint document, or None if it has none (DamagedStore if the file
        cannot give it: a damaged page, text that is not UTF-8)."""
        try:
            row = self._db.execute("SELECT document FROM keys WHERE key = ?",
                                   (key,)).fetchone()
        except sqlite3.Error as exc:
            raise DamagedStore(f"key {key!r}: {exc}") from None
        if row is None:
            return None
        document = row[0]
        # Written as ASCII JSON; anything else (an edit, a BLOB, a number) fails the checksum
        # or the parse of checkpoint.loads, which names the key, rather than crash here.
        if isinstance(document, str):
            return document.encode("utf-8", "surrogatepass")
        return document if isinstance(document, bytes) else b""

    def put(self, key: str, document: bytes, *, points: int = 0, updated: float | None = None,
            anomalies: int = 0, alarms: int = 0, pending: int = 0) -> None:
        """Write (or replace) a key's document, within the open transaction."""
        self._db.execute(
            "INSERT OR REPLACE INTO keys (key, document, points, updated, anomalies, alarms, "
            "pending) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key, document.decode("ascii"), points, updated, anomalies, alarms, pending))

    def keys(self) -> list[str]:
        """Every stored key (ValueError if one is not text: an edited store)."""
        return [_text(row[0]) for row in self._db.execute("SELECT key FROM keys")]

    def waiting(self) -> list[str]:
        """Keys whose document holds rows not yet learned (a partial mini-batch)."""
        return [_text(row[0])
                for row in self._db.execute("SELECT key FROM keys WHERE pending > 0")]

    # What a listing may be sorted by: the key (ascending), or the most first.
    ORDERS = {"key": "key", "points": "points DESC, key", "anomalies": "anomalies DESC, key",
              "alarms": "alarms DESC, key", "updated": "updated DESC, key",
              "waiting": "pending DESC, key"}

    def listing(self, order: str = "key", limit: int | None = None) -> list[dict]:
        """One summary per key (points, last update, anomalies, alarms, rows waiting), sorted
        by ``order`` (one of :attr:`ORDERS`), the first ``limit`` only if given."""
        sql = ("SELECT key, points, updated, anomalies, alarms, pending FROM keys ORDER BY "
               + self.ORDERS[order])  # (a fixed string per order: nothing of the caller's)
        rows = self._db.execute(sql + " LIMIT ?", (-1 if limit is None else int(limit),))
        names = ("key", "points", "updated", "anomalies", "alarms", "pending")
        listed = [dict(zip(names, row)) for row in rows]
        for row in listed:
            _text(row["key"])
            for name in names[1:]:
                value = row[name]
                if value is None and name == "updated":  # (a key never updated)
                    continue
                if (value is None or isinstance(value, bool)
                        or not isinstance(value, (int, float)) or not math.isfinite(value)):
                    # (an infinite count made `inspect --keys --json` print Infinity: no JSON)
                    raise ValueError(f"key {row['key']!r}: {name} is {value!r:.60}, not a "
                                     "finite number")
        return listed

    def __len__(self) -> int:
        return self._db.execute("SELECT count(*) FROM keys").fetchone()[0]

    # ------------------------------------------------------------------ meta
    def meta(self, name: str):
        """A meta value (JSON), or None; :class:`DamagedStore` if it is not JSON, or nested
        deeper than Python can read (a hand-edited store)."""
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        try:
            # (NaN, Infinity and 1e400 are no JSON numbers: `inspect --keys --json` printed
            # them as they came, which no JSON reader takes, and the text said "at byte nan";
            # an integer of 400 digits is no count either)
            return json.loads(row[0], parse_constant=_no_constant, parse_float=_finite_float,
                              parse_int=_bounded_int)
        except RecursionError:
            raise DamagedStore(f"meta {name!r} is nested too deeply to read") from None
        except (TypeError, ValueError) as exc:
            raise DamagedStore(f"meta {name!r} is not JSON ({exc})") from None

    def set_meta(self, name: str, value) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
                         (name, json.dumps(value, allow_nan=False)))

    # ------------------------------------------------------------------ transactions
    def commit(self) -> None:
        """Make everything written since the last commit durable, at once; a new
        transaction starts."""
        self._db.execute("COMMIT")
        # The commit into the store's file too, not only its write-ahead log: the file alone
        # (a copy, a backup, its -wal lost) held nothing but empty tables until SQLite's own
        # checkpoint at 1,000 pages, and a restart on it learned every key again from the
        # start, silently (found by an attack helper).
        try:
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:  # (as SQLite's own: the commit is durable in the -wal already)
            pass
        self._db.execute("BEGIN IMMEDIATE")

    def close(self) -> None:
        """Close without committing (what was not committed is dropped, as by a crash)."""
        if self.writer and self._db.in_transaction:
            self._db.execute("ROLLBACK")
        self._db.close()


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _bounded_int(text: str) -> int:
    """An integer a float can hold (offsets, lines and counters are far below; a 400-digit one
    was printed by `inspect --keys`, where the daemon refuses the store)."""
    if len(text.lstrip("-")) > 19 or abs(int(text)) > 2**63:
        raise ValueError(f"{text[:40]} is beyond any count")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is beyond any float")
    return value
