"""Checkpoints: a model and the caller's metadata in one versioned, checksummed JSON file.

A checkpoint is plain JSON, readable with ``jq`` or any language::

    {"format": "emstream-checkpoint", "version": 1,
     "sha256": "<hex digest of the canonical JSON of content>",
     "content": {"written_at": "2026-11-22T01:02:03.456789Z",
                 "model": {...emstream.state.to_dict(model)...},
                 "meta": {...whatever the caller passed...}}}

Writes are atomic and durable (temporary file in the same directory, fsync, rename, fsync of the
directory), so a crash at any instant leaves the old checkpoint or the new one, never a torn one.
Saving into a directory keeps numbered files and the newest ``keep`` of them; loading a
directory takes the newest valid one and reports the ones it skipped.  Nothing is unpickled and
nothing in a file can run code: it is parsed as JSON (``NaN``/``Infinity`` refused) and every
field of the model is checked (:func:`emstream.state.from_dict`: type, shape, finiteness,
magnitude, positive definiteness); whatever is wrong, the error is one :class:`CheckpointError`.
Only a regular file of at most :data:`MAX_BYTES` is read (a FIFO, ``/dev/zero`` or a directory
is refused before it is opened), and a file more densely nested than a checkpoint can be is
refused before it is parsed.  :func:`validate_meta` checks the metadata ``emstreamd`` resumes
from.

Example
-------
>>> import numpy as np, tempfile, os
>>> from emstream import GaussianMixture
>>> from emstream import checkpoint
>>> gm = GaussianMixture(2, random_state=0).fit(np.random.default_rng(0).normal(size=(100, 1)))
>>> folder = tempfile.mkdtemp()
>>> path = checkpoint.save(gm, folder, meta={"offset": 1234}, keep=3)
>>> os.path.basename(path)
'checkpoint-00000001.json'
>>> loaded = checkpoint.load(folder)
>>> loaded.meta, bool(np.array_equal(loaded.model.means_, gm.means_))
({'offset': 1234}, True)
>>> model, meta = loaded          # unpacks as a pair
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .mixture import GaussianMixture
from .state import from_dict, to_dict

FORMAT = "emstream-checkpoint"
VERSION = 1
# A checkpoint is parameters, statistics and a warm-up buffer: megabytes at most.  Refusing
# larger files keeps a wrong path (a data file, a disk image) from being read into memory.
MAX_BYTES = 256 * 1024 * 1024
# Parsing JSON costs ~80 bytes of memory per array or object: ``[[],[],...]`` would take 27
# times its size.  Files written here hold one per 17 bytes or more (indented rows), a
# compacted one (``jq -c``) one per 5 or more (a row ``[1],`` comes with its time ``1,``), so
# denser files are refused before parsing.
BYTES_PER_CONTAINER = 5
_SPARE_CONTAINERS = 4096
# Largest count or offset a daemon's metadata may hold when read back: half what a 64-bit
# integer can, so that a daemon resumed at the limit still writes a checkpoint it can read (a
# forged next_line of 2**63 - 1 was taken, then outgrown by the next checkpoint); no real
# stream comes near it (146 years at 10^9 lines a second).
_MAX_COUNT = 2**62
_NUMBERED = re.compile(r"^checkpoint-(\d{8,})\.json$")


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, damaged, foreign or from a newer version."""


@dataclass
class Loaded:
    """What :func:`load` returns; unpacks as ``model, meta``.

    Attributes
    ----------
    model : GaussianMixture
    meta : dict
    path : pathlib.Path
        The file the checkpoint came from.
    written_at : str
        UTC time of writing, ISO 8601.
    skipped : list of (path, reason)
        Newer files in a checkpoint directory that were not valid, newest first.
    """

    model: GaussianMixture
    meta: dict
    path: Path
    written_at: str
    skipped: list = field(default_factory=list)

    def __iter__(self):
        return iter((self.model, self.meta))


def _canonical(content: dict) -> bytes:
    return json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=False,
                      ensure_ascii=True).encode("ascii")


def dumps(model: GaussianMixture, meta: dict | None = None, *, compact: bool = False) -> bytes:
    """The checkpoint document for ``model`` and ``meta``, as bytes (see the module docstring).

    ``compact`` leaves out the indentation (half the bytes: a state store holds many)."""
    content = {
        "written_at": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "model": to_dict(model),
        "meta": {} if meta is None else meta,
    }
    try:
        canonical = _canonical(content)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the model's settings and meta must be JSON-serialisable without "
                         f"NaN or infinity: {exc}") from None
    digest = hashlib.sha256(canonical).hexdigest()
    if compact:  # the canonical text is the content's compact JSON: encoded once, not twice
        head = json.dumps({"format": FORMAT, "version": VERSION, "sha256": digest},
                          separators=(",", ":"))
        return head[:-1].encode("ascii") + b',"content":' + canonical + b"}\n"
    document = {"format": FORMAT, "version": VERSION, "sha256": digest, "content": content}
    return (json.dumps(document, indent=1, allow_nan=False) + "\n").encode("ascii")


def _refuse_constant(name):
    raise ValueError(f"{name} is not allowed")


def _one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, at most ``limit`` characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def loads(data: bytes, *, source: str = "<bytes>") -> Loaded:
    """Parse and validate a checkpoint document; :class:`CheckpointError` names the problem."""
    def fail(problem: str) -> CheckpointError:
        return CheckpointError(f"{source}: {problem}")

    if not data:
        raise fail("empty file, not a checkpoint")
    if len(data) > MAX_BYTES:
        raise fail(f"{len(data)} bytes is too large for a checkpoint (at most {MAX_BYTES})")
    containers = data.count(b"[") + data.count(b"{")
    if containers > len(data) // BYTES_PER_CONTAINER + _SPARE_CONTAINERS:
        raise fail(f"not a checkpoint ({containers} arrays or objects in {len(data)} bytes: "
                   "too densely nested to parse safely)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise fail("not a checkpoint (binary data, not JSON text)") from None
    try:
        document = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise fail(f"not valid JSON ({_one_line(exc)}); truncated or not a checkpoint") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise fail(f"not an emstream checkpoint (no \"format\": \"{FORMAT}\")")
    version = document.get("version")
    shown = str(version)[:20]  # (a crafted version may have thousands of digits)
    if not isinstance(version, int) or isinstance(version, bool):
        raise fail(f"bad version field {shown!r}")
    if version > VERSION:
        raise fail(f"written by a newer emstream (format version {shown} > {VERSION}); "
                   "upgrade emstream to read it")
    if version < 1:
        raise fail(f"unknown format version {shown}")
    content = document.get("content")
    if not isinstance(content, dict):
        raise fail("no content object")
    try:
        digest = hashlib.sha256(_canonical(content)).hexdigest()
    except (TypeError, ValueError, RecursionError):
        raise fail("content cannot be re-serialised; damaged") from None
    if digest != document.get("sha256"):
        raise fail("checksum mismatch: the file was edited or damaged")
    meta = content.get("meta")
    written_at = content.get("written_at")
    if not isinstance(meta, dict) or not isinstance(written_at, str):
        raise fail("content must hold written_at, model and meta")
    try:
        model = from_dict(content.get("model"))
    except ValueError as exc:
        raise fail(f"invalid model: {_one_line(exc)}") from None
    except MemoryError:
        raise fail("invalid model: too large to load") from None
    except Exception as exc:  # noqa: BLE001 - whatever a crafted state trips, one clean error
        raise fail(f"invalid model ({type(exc).__name__}: {_one_line(exc)})") from None
    return Loaded(model, meta, Path(source), written_at)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` by ``data`` so that a crash leaves the old file or the new, never a mix."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            _take_mode(handle.fileno(), path)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(path.parent)


def _take_mode(fd: int, path: Path) -> None:
    """Give the new file the mode of the file it replaces, else what open() gives a new file
    (mkstemp's 0600 replaced a deployed model's 0644: unreadable to the service that read it).
    Best effort: a file system without modes does not stop the write."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mode = 0o666 & ~_umask()
    try:
        os.fchmod(fd, mode)
    except OSError:
        pass


def _umask() -> int:
    """The process's umask, read without changing it (``os.umask`` sets it to read it, for
    every thread at once); 0o077 where /proc does not tell (a new file is then private, as
    mkstemp made it: never more open than a private umask asked for)."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o077


def _numbered(directory: Path) -> list[tuple[int, Path]]:
    """Checkpoint files in ``directory`` by sequence number, newest first."""
    found = []
    for entry in directory.iterdir():
        match = _NUMBERED.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry))
    return sorted(found, reverse=True)


def file_target(path: str | os.PathLike) -> Path:
    """The file a checkpoint written to ``path`` replaces: a symbolic link's target (the link
    stays and shows the new model; replacing the link left it a plain file and its target, the
    deployed model, stale).  An existing entry that is not a regular file (a device such as
    /dev/null, a named pipe, a socket) is refused: ``os.replace`` would put a file in its place.

    Raises
    ------
    IsADirectoryError, ValueError
    """
    target = Path(os.path.realpath(path)) if Path(path).is_symlink() else Path(path)
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        return target
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(f"{path} is a directory")
    if not stat.S_ISREG(mode):
        raise ValueError(f"{path} is not a regular file: a checkpoint would replace it")
    return target


def save(model: GaussianMixture, path: str | os.PathLike, *, meta: dict | None = None,
         keep: int = 3) -> Path:
    """Write a checkpoint atomically; returns the file written.

    Parameters
    ----------
    model : GaussianMixture
    path : path-like
        A file (replaced atomically) or an existing directory, which receives
        ``checkpoint-NNNNNNNN.json`` files numbered upwards, of which the newest ``keep`` stay.
    meta : dict, optional
        JSON-serialisable data stored with the model (input position, counters, history).
    keep : int
        Checkpoints kept in a directory (>= 1).
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    data = dumps(model, meta)
    if len(data) > MAX_BYTES:
        # (written, it would be refused when read back: the restart would lose everything)
        raise ValueError(f"a checkpoint of {len(data)} bytes would be too large to read back "
                         f"(at most {MAX_BYTES}): fewer features, or a smaller window")
    target = Path(path)
    if not target.is_dir():
        target = file_target(target)
        write_atomic(target, data)
        for stale in target.parent.glob(f".{target.name}.*.tmp"):  # from a crashed writer
            stale.unlink(missing_ok=True)
        return target
    existing = _numbered(target)
    number = existing[0][0] + 1 if existing else 1
    written = target / f"checkpoint-{number:08d}.json"
    write_atomic(written, data)
    # The new file is written and synced: what follows is tidying, and a failure there (an
    # entry someone else owns) must not make the caller think the checkpoint was lost.
    ours = [old for _, old in existing if _is_checkpoint_file(old)]
    for old in ours[keep - 1:]:
        try:
            old.unlink()
        except OSError:
            pass
    for stale in target.glob(".checkpoint-*.tmp"):  # left by a writer that crashed
        try:
            stale.unlink()
        except OSError:
            pass
    return written


# How a checkpoint file starts (both layouts :func:`dumps` writes: indented and compact).
_HEADS = (f'{{\n "format": "{FORMAT}"'.encode("ascii"), f'{{"format":"{FORMAT}"'.encode("ascii"))


def _is_checkpoint_file(path: Path) -> bool:
    """Whether ``path`` is a regular file that starts as a checkpoint does: only such files are
    rotated away (a directory, an empty file or someone's notes named ``checkpoint-N.json``
    are not ours to delete)."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        try:
            head = os.read(fd, 64)
        finally:
            os.close(fd)
    except OSError:
        return False
    return head.startswith(_HEADS)


_FILE_KINDS = ((stat.S_ISDIR, "is a directory"), (stat.S_ISFIFO, "is a FIFO (named pipe)"),
               (stat.S_ISCHR, "is a character device"), (stat.S_ISBLK, "is a block device"),
               (stat.S_ISSOCK, "is a socket"))


def _check_regular(path: Path, mode: int, size: int) -> None:
    """A checkpoint is a regular file of at most :data:`MAX_BYTES`; else CheckpointError."""
    if not stat.S_ISREG(mode):
        kind = next((what for test, what in _FILE_KINDS if test(mode)), "is not a regular file")
        raise CheckpointError(f"{path}: {kind}, not a checkpoint file")
    if size > MAX_BYTES:
        raise CheckpointError(f"{path}: {size} bytes is too large for a checkpoint "
                              f"(at most {MAX_BYTES})")


def read_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of a checkpoint file, read without blocking and at most :data:`MAX_BYTES`.

    Only a regular file is read: a FIFO (which would wait for a writer), a device such as
    ``/dev/zero`` (which never ends), a directory or a socket is refused before it is opened,
    and again after (in case it was swapped in between); a file that grows past the limit while
    it is read is refused too.

    Raises
    ------
    CheckpointError
        Naming the file and the problem.
    """
    path = Path(path)
    try:
        info = os.stat(path)
        _check_regular(path, info.st_mode, info.st_size)
        # O_NONBLOCK: a FIFO swapped in after the stat opens at once instead of waiting.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb", buffering=0) as handle:
            info = os.fstat(handle.fileno())
            _check_regular(path, info.st_mode, info.st_size)
            limit = MAX_BYTES + 1
            data = handle.read(min(info.st_size + 1, limit))  # +1: notice a growing file
            while len(data) < limit:
                more = handle.read(min(1 << 20, limit - len(data)))
                if not more:
                    break
                data += more
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a directory") from None
    except PermissionError:
        raise CheckpointError(f"{path}: permission denied") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except ValueError as exc:  # e.g. a NUL byte in the path
        raise CheckpointError(f"{path}: cannot read ({_one_line(exc)})") from None
    if len(data) > MAX_BYTES:
        raise CheckpointError(f"{path}: more than {MAX_BYTES} bytes is too large for a "
                              "checkpoint")
    return data


def read_file(path: Path) -> Loaded:
    """Load one checkpoint file (see :func:`read_bytes` for what is refused before parsing)."""
    return loads(read_bytes(path), source=str(path))


def load(path: str | os.PathLike) -> Loaded:
    """Load a checkpoint file, or the newest valid checkpoint in a directory.

    Raises
    ------
    CheckpointError
        Naming the file and the problem (for a directory: every file tried and why).
    """
    path = Path(path)
    if not path.is_dir():
        return read_file(path)
    try:
        candidates = _numbered(path)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot list the directory ({exc.strerror or exc})") \
            from None
    skipped = []
    for _, candidate in candidates:
        try:
            loaded = read_file(candidate)
        except CheckpointError as exc:
            skipped.append((candidate, str(exc)))
            continue
        loaded.skipped = skipped
        return loaded
    reasons = "; ".join(reason for _, reason in skipped) or "no checkpoint-*.json files"
    raise CheckpointError(f"{path}: no valid checkpoint ({reasons})")


# ---------------------------------------------------------------------------- daemon metadata
_INPUT_KINDS = ("file", "follow", "stdin")
# What a source's identity holds besides its kind and path (all or none of them).
_FILE_IDENTITY = ("device", "inode", "fingerprint", "fingerprint_bytes")
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
# Bytes of a file's start that a fingerprint may cover (the daemon uses 1,024).
_MAX_FINGERPRINT_BYTES = 1 << 20
_MAX_FIELDS = 1_000_000


def _meta_int(value, name: str, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= _MAX_COUNT:
        raise ValueError(f"{name} must be an integer in [{low}, 2**62], got "
                         f"{str(value)[:40]!r}")
    return value


def _meta_object(value, name: str) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be an object, got {type(value).__name__}")
    return value


def _meta_counters(counters) -> None:
    """Every counter a non-negative integer; ``rejected`` maps reasons to such counts."""
    for key, value in _meta_object(counters, "meta.counters").items():
        if key == "rejected":
            for reason, count in _meta_object(value, "meta.counters.rejected").items():
                _meta_int(count, f"meta.counters.rejected[{str(reason)[:40]!r}]")
        else:
            _meta_int(value, f"meta.counters.{str(key)[:40]}")


def _meta_input(saved) -> None:
    """Where the input stood: a known kind, an offset and a line number, and the file's
    identity (device, inode, sha256 fingerprint of its first bytes) complete or absent."""
    saved = _meta_object(saved, "meta.input")
    if not saved:
        return
    kind = saved.get("kind")
    if kind not in _INPUT_KINDS:
        raise ValueError(f"meta.input.kind must be one of {_INPUT_KINDS}, got "
                         f"{str(kind)[:40]!r}")
    if "path" in saved and not isinstance(saved["path"], str):
        raise ValueError("meta.input.path must be a string")
    _meta_int(saved.get("offset"), "meta.input.offset")
    _meta_int(saved.get("next_line"), "meta.input.next_line", low=1)
    present = [key for key in _FILE_IDENTITY if saved.get(key) is not None]
    if kind == "stdin" or not present:
        if present and kind == "stdin":
            raise ValueError(f"meta.input: stdin has no {present[0]}")
        if kind == "file":
            raise ValueError("meta.input: a file input needs its device, inode and fingerprint")
        return
    if len(present) != len(_FILE_IDENTITY):
        missing = [key for key in _FILE_IDENTITY if key not in present]
        raise ValueError(f"meta.input.{missing[0]} is missing (a file's identity is "
                         f"{', '.join(_FILE_IDENTITY)})")
    _meta_int(saved["device"], "meta.input.device")
    _meta_int(saved["inode"], "meta.input.inode")
    fingerprint = saved["fingerprint"]
    if not isinstance(fingerprint, str) or not _SHA256_HEX.match(fingerprint):
        raise ValueError("meta.input.fingerprint must be a sha256 hex digest (64 characters "
                         "0-9a-f)")
    size = _meta_int(saved["fingerprint_bytes"], "meta.input.fingerprint_bytes")
    if size > _MAX_FINGERPRINT_BYTES:
        raise ValueError(f"meta.input.fingerprint_bytes must be at most "
                         f"{_MAX_FINGERPRINT_BYTES}, got {size}")
    if saved.get("before") is not None or saved.get("before_bytes") is not None:
        # The bytes just before the position (a back-fill's file, since 2026-12-04).
        if not isinstance(saved.get("before"), str) or not _SHA256_HEX.match(saved["before"]):
            raise ValueError("meta.input.before must be a sha256 hex digest (64 characters "
                             "0-9a-f)")
        before = _meta_int(saved.get("before_bytes"), "meta.input.before_bytes")
        if not 0 < before <= min(_MAX_FINGERPRINT_BYTES, saved["offset"]):
            raise ValueError("meta.input.before_bytes must be in [1, min(offset, "
                             f"{_MAX_FINGERPRINT_BYTES})], got {before}")


def validate_meta(meta, *, source: str | os.PathLike = "<meta>") -> dict:
    """Check the metadata an ``emstreamd`` checkpoint holds before the daemon trusts it.

    A checkpoint's checksum proves it is intact, not that its writer was emstreamd: a crafted
    or foreign file (one written by ``emstream fit``, say) can hold anything in ``meta``.  The
    keys the daemon resumes from are checked here; absent ones are fine (the daemon starts them
    afresh), unknown ones are left alone.

    - ``counters``: an object of non-negative integers (up to 2**62); ``counters.rejected``
      an object of such counts by reason.
    - ``input``: empty, or ``kind`` (``file``, ``follow`` or ``stdin``), ``offset`` >= 0 and
      ``next_line`` >= 1 (integers), ``path`` a string; for a file, ``device`` and ``inode``
      (integers >= 0), ``fingerprint`` (a sha256 hex digest) and ``fingerprint_bytes``
      (0 to 1 MiB), all four or (following a file that did not exist yet) none; optionally
      ``before`` and ``before_bytes``, the same for the bytes just before ``offset``.
    - ``n_fields``: null or an integer in [1, 1,000,000].
    - ``history``: a list of objects.  ``monitor``, ``config``: null or objects.

    Parameters
    ----------
    meta : object
        ``Loaded.meta``.
    source : str or path-like
        The file, for the message.

    Returns
    -------
    dict
        ``meta`` itself.

    Raises
    ------
    CheckpointError
        One line naming the file and the field, e.g.
        ``state/checkpoint-00000003.json: meta.input.offset must be an integer in [0, 2**62],
        got -1``.

    Examples
    --------
    >>> validate_meta({"counters": {"rows": 10, "rejected": {"blank": 1}}})["counters"]["rows"]
    10
    >>> validate_meta({"counters": []}, source="ck.json")
    Traceback (most recent call last):
    ...
    emstream.checkpoint.CheckpointError: ck.json: meta.counters must be an object, got list
    """
    try:
        meta = _meta_object(meta, "meta")
        if "counters" in meta:
            _meta_counters(meta["counters"])
        if "input" in meta:
            _meta_input(meta["input"])
        if meta.get("n_fields") is not None:
            fields = _meta_int(meta["n_fields"], "meta.n_fields", low=1)
            if fields > _MAX_FIELDS:
                raise ValueError(f"meta.n_fields must be at most {_MAX_FIELDS}, got {fields}")
        if "history" in meta:
            history = meta["history"]
            if not isinstance(history, list) or not all(isinstance(e, dict) for e in history):
                raise ValueError("meta.history must be a list of objects")
        for key in ("monitor", "config"):
            if meta.get(key) is not None:
                _meta_object(meta[key], f"meta.{key}")
    except ValueError as exc:
        raise CheckpointError(f"{source}: {exc}") from None
    return meta
