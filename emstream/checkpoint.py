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
array is checked for shape, finiteness and positive definiteness.

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


def dumps(model: GaussianMixture, meta: dict | None = None) -> bytes:
    """The checkpoint document for ``model`` and ``meta``, as bytes (see the module docstring)."""
    content = {
        "written_at": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "model": to_dict(model),
        "meta": {} if meta is None else meta,
    }
    try:
        digest = hashlib.sha256(_canonical(content)).hexdigest()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"meta must be JSON-serialisable without NaN or infinity: {exc}") from None
    document = {"format": FORMAT, "version": VERSION, "sha256": digest, "content": content}
    return (json.dumps(document, indent=1, allow_nan=False) + "\n").encode("ascii")


def _refuse_constant(name):
    raise ValueError(f"{name} is not allowed")


def loads(data: bytes, *, source: str = "<bytes>") -> Loaded:
    """Parse and validate a checkpoint document; :class:`CheckpointError` names the problem."""
    def fail(problem: str) -> CheckpointError:
        return CheckpointError(f"{source}: {problem}")

    if not data:
        raise fail("empty file, not a checkpoint")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise fail("not a checkpoint (binary data, not JSON text)") from None
    try:
        document = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise fail(f"not valid JSON ({exc}); truncated or not a checkpoint") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise fail(f"not an emstream checkpoint (no \"format\": \"{FORMAT}\")")
    version = document.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise fail(f"bad version field {version!r}")
    if version > VERSION:
        raise fail(f"written by a newer emstream (format version {version} > {VERSION}); "
                   "upgrade emstream to read it")
    if version < 1:
        raise fail(f"unknown format version {version}")
    content = document.get("content")
    if not isinstance(content, dict):
        raise fail("no content object")
    try:
        digest = hashlib.sha256(_canonical(content)).hexdigest()
    except (TypeError, ValueError):
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
        raise fail(f"invalid model: {exc}") from None
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


def _numbered(directory: Path) -> list[tuple[int, Path]]:
    """Checkpoint files in ``directory`` by sequence number, newest first."""
    found = []
    for entry in directory.iterdir():
        match = _NUMBERED.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry))
    return sorted(found, reverse=True)


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
    target = Path(path)
    if not target.is_dir():
        write_atomic(target, data)
        for stale in target.parent.glob(f".{target.name}.*.tmp"):  # from a crashed writer
            stale.unlink(missing_ok=True)
        return target
    existing = _numbered(target)
    number = existing[0][0] + 1 if existing else 1
    written = target / f"checkpoint-{number:08d}.json"
    write_atomic(written, data)
    for _, old in existing[keep - 1:]:
        old.unlink(missing_ok=True)
    for stale in target.glob(".checkpoint-*.tmp"):  # left by a writer that crashed
        stale.unlink(missing_ok=True)
    return written


def read_file(path: Path) -> Loaded:
    """Load one checkpoint file."""
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise CheckpointError(f"{path}: {size} bytes is too large for a checkpoint")
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a directory") from None
    except PermissionError:
        raise CheckpointError(f"{path}: permission denied") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror})") from None
    return loads(data, source=str(path))


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
    skipped = []
    for _, candidate in _numbered(path):
        try:
            loaded = read_file(candidate)
        except CheckpointError as exc:
            skipped.append((candidate, str(exc)))
            continue
        loaded.skipped = skipped
        return loaded
    reasons = "; ".join(reason for _, reason in skipped) or "no checkpoint-*.json files"
    raise CheckpointError(f"{path}: no valid checkpoint ({reasons})")
