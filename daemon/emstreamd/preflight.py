"""What the configuration names must be usable before any input is read.

A checkpoint path under a regular file, or an output that is a directory, would otherwise fail
at the first write: after a whole back-fill.  Nothing is created here (``--check-config`` runs
the same checks); the daemon creates what is missing when it first writes.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from pathlib import Path

from emstream.store import STORE_NAME

from .config import ConfigError
from .lock import FILE_SUFFIXES, lock_path

KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
         (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
         (stat.S_ISSOCK, "a socket"), (stat.S_ISREG, "a regular file"))


class CannotCreate(OSError):
    """A path is fine but this process may not write there (exit 73, EX_CANTCREAT)."""


def _kind(mode: int) -> str:
    return next((name for test, name in KINDS if test(mode)), "not a regular file")


def _existing_ancestor(key: str, path: Path) -> tuple[Path, os.stat_result]:
    """The nearest part of ``path`` that exists (``path`` itself, or a parent), and its stat."""
    for candidate in (path, *path.parents):
        try:
            return candidate, os.stat(candidate)
        except (FileNotFoundError, NotADirectoryError):  # climb to what is there
            continue
        except OSError as exc:
            raise CannotCreate(f"{key}: {path}: cannot reach {candidate} "
                               f"({exc.strerror or exc})") from None
    return Path("."), os.stat(".")


def _writable_directory(key: str, path: Path, directory: Path, info) -> None:
    """``directory`` (the nearest existing one on the way to ``path``) takes new files."""
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{key}: {path}: {directory} is {_kind(info.st_mode)}, not a "
                          "directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise CannotCreate(f"{key}: {path}: cannot create files in {directory} (no write "
                           "permission, or a read-only file system)")


def _writable_store(path: Path) -> None:
    """A keyed daemon's state store that exists can be written (SQLite opens a read-only file
    read-only without a word: the first checkpoint failed, after a run's worth of work)."""
    if not os.access(path, os.W_OK):
        raise CannotCreate(f"checkpoint.path: {path}: the state store is not writable "
                           "(permission denied)")


def check_file(key: str, name: str) -> None:
    """``name`` can be appended to: an existing writable non-directory (a file, /dev/null, a
    FIFO), or a new file in an existing writable directory."""
    path = Path(name)
    found, info = _existing_ancestor(key, path)
    if found == path:
        if stat.S_ISDIR(info.st_mode):
            raise ConfigError(f"{key}: {path}: is a directory")
        if not os.access(path, os.W_OK):
            raise CannotCreate(f"{key}: {path}: not writable (permission denied)")
        return
    if found != path.parent and stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{key}: {path}: the directory {path.parent} does not exist")
    _writable_directory(key, path, found, info)


def check_checkpoint(name: str) -> None:
    """``checkpoint.path``: a directory (created if missing), a ``.json`` file or a keyed
    daemon's ``.sqlite`` state store, whose directory must take new files (each write is a
    temporary file renamed into place; a store has its journal and lock beside it)."""
    path = Path(name)
    found, info = _existing_ancestor("checkpoint.path", path)
    if path.suffix in FILE_SUFFIXES:  # (a .sqlite store that exists: a restart)
        if found == path:
            if not stat.S_ISREG(info.st_mode):
                raise ConfigError(f"checkpoint.path: {path}: is {_kind(info.st_mode)}")
            if path.suffix == ".sqlite":  # (a .json checkpoint is replaced, not written)
                _writable_store(path)
            found, info = path.parent, os.stat(path.parent)
        elif found != path.parent and stat.S_ISDIR(info.st_mode):
            raise ConfigError(f"checkpoint.path: {path}: the directory {path.parent} does not "
                              "exist")
        _writable_directory("checkpoint.path", path, found, info)
        return
    if found == path and not stat.S_ISDIR(info.st_mode):
        kind = _kind(info.st_mode)
        hint = ("; a checkpoint file's name ends in .json (a keyed state store's in .sqlite)"
                if stat.S_ISREG(info.st_mode) else "")
        raise ConfigError(f"checkpoint.path: {path}: is {kind}, not a directory{hint}")
    if found == path and (path / STORE_NAME).is_file():
        _writable_store(path / STORE_NAME)
    if found == path:
        # A directory that can be entered but not listed hides its checkpoints: the daemon
        # would start afresh, learn and report the input again from its first line.
        try:
            os.listdir(path)
        except OSError as exc:
            raise CannotCreate(f"checkpoint.path: {path}: cannot list the directory "
                               f"({exc.strerror or exc}), so its checkpoints cannot be "
                               "found") from None
    _writable_directory("checkpoint.path", path, found, info)


def check_paths(config: dict) -> None:
    """Every path the daemon will write: the checkpoint, the per-point output, the dead
    letters.  ``ConfigError`` (78) for a path that cannot be one; ``CannotCreate`` (73) for
    one this process may not write."""
    check_checkpoint(config["checkpoint"]["path"])
    output = config["output"]
    if output["per_point"] and output["path"] != "-":
        check_file("output.path", output["path"])
    if config["input"]["dead_letter"] is not None:
        check_file("input.dead_letter", config["input"]["dead_letter"])


def _identity(name: str):
    """What makes two names one file: device and inode if it exists, else its resolved path."""
    try:
        info = os.stat(name)
    except OSError:
        return ("path", os.path.realpath(name))
    if stat.S_ISCHR(info.st_mode):  # /dev/null and terminals take every writer's lines
        return None
    return ("inode", info.st_dev, info.st_ino)


def _stream_identity(fd: int):
    """The regular file a standard stream is redirected to, if it is one."""
    try:
        info = os.fstat(fd)
    except OSError:
        return None
    return ("inode", info.st_dev, info.st_ino) if stat.S_ISREG(info.st_mode) else None


def check_distinct(config: dict, input_path: str | None, config_path: str | None = None) -> None:
    """The input, the per-point output, the dead letters and the configuration file are
    different files (lines appended to the configuration broke the next start, 78).

    Writing per-point lines into the file being read appends to the operator's data (and, when
    followed, feeds them back in as input); two writers on one file interleave their lines.
    Standard input and output count too when they are redirected to regular files
    (``emstreamd --follow x.log >> x.log``).
    """
    named = []
    if input_path is not None:
        named.append(("the input", input_path, _identity(input_path)))
    else:
        named.append(("the input (standard input)", "-", _stream_identity(0)))
    output = config["output"]
    if output["per_point"]:
        if output["path"] == "-":
            named.append(("output.path (standard output)", "-", _stream_identity(1)))
        else:
            named.append(("output.path", output["path"], _identity(output["path"])))
    dead_letter = config["input"]["dead_letter"]
    if dead_letter is not None:
        named.append(("input.dead_letter", dead_letter, _identity(dead_letter)))
    if config_path is not None:
        named.append(("the configuration (--config)", config_path, _identity(config_path)))
    for i, (role, name, identity) in enumerate(named):
        for other_role, other_name, other in named[:i]:
            if identity is not None and identity == other:
                where = name if name != "-" else other_name
                raise ConfigError(f"{role} and {other_role} are the same file ({where}): "
                                  "give each its own")
    _check_outside_checkpoint(config["checkpoint"]["path"], named)


def _check_outside_checkpoint(checkpoint: str, named: list) -> None:
    """No file the daemon reads or writes is its checkpoint file, nor in (or is) its checkpoint
    directory, whose files it numbers, rotates and deletes: per-point lines written into the
    checkpoint file left it empty, and every later start failed (exit 65) until it was
    removed."""
    path = Path(checkpoint)
    if path.suffix in FILE_SUFFIXES:
        # (a state store's journal and shared memory are written beside it)
        mine = {_identity(checkpoint + suffix) for suffix in
                ("", *(("-wal", "-shm") if path.suffix == ".sqlite" else ()))} - {None}
        for role, name, identity in named:
            if identity is not None and identity in mine:
                where = name if name != "-" else checkpoint
                raise ConfigError(f"{role} and checkpoint.path are the same file ({where}): "
                                  "give each its own")
            if name != "-" and _beside_checkpoint(name, checkpoint):
                # (its lock was rewritten at the next start, its note and temporary files
                # deleted after a checkpoint: the per-point output went, with exit 0)
                raise ConfigError(f"{role} ({name}) is one of the files the daemon keeps "
                                  f"beside checkpoint.path {checkpoint} (its lock, its "
                                  "output-start note, its temporary files): give it another "
                                  "name")
        return
    directory = os.path.realpath(path)
    inside = None  # the files now in the directory, for streams redirected into it
    for role, name, identity in named:
        if name == "-":
            # A standard stream redirected into the directory (`> state/out.csv`, or onto
            # its keys.sqlite) has no name to compare: its file is looked for there.
            if identity is None:
                continue
            if inside is None:
                inside = _files_in(directory)
            if identity in inside:
                raise ConfigError(f"{role} is redirected to {inside[identity]}, inside the "
                                  f"checkpoint directory {path}, whose files the daemon "
                                  "numbers, rotates and deletes: redirect it outside")
            continue
        resolved = os.path.realpath(name)
        if resolved == directory or resolved.startswith(directory.rstrip(os.sep) + os.sep):
            raise ConfigError(f"{role} ({name}) is inside the checkpoint directory {path}, "
                              "whose files the daemon numbers, rotates and deletes: give it a "
                              "path outside")


def _beside_checkpoint(name: str, checkpoint: str) -> bool:
    """Whether ``name`` is one of the files a checkpoint file's daemon keeps beside it."""
    from .outputmarks import start_note_path

    real = os.path.realpath(checkpoint)
    resolved = os.path.realpath(name)
    kept = [lock_path(checkpoint), start_note_path(checkpoint),
            *(real + suffix for suffix in ("-wal", "-shm", "-journal"))]
    if resolved in {os.path.realpath(path) for path in kept}:
        return True
    base, folder = os.path.basename(resolved), os.path.dirname(resolved)
    return (folder == os.path.dirname(real) and base.startswith(f".{os.path.basename(real)}.")
            and base.endswith(".tmp"))  # (checkpoint.write_atomic's, cleared after a crash)


def _files_in(directory: str) -> dict:
    """The regular files of a directory by identity (device, inode): their paths."""
    found = {}
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISREG(info.st_mode):
                    found[("inode", info.st_dev, info.st_ino)] = entry.path
    except OSError:  # (no directory yet: nothing can be redirected into it)
        pass
    return found


def check_metrics_address(config: dict, *, bind: bool = True) -> None:
    """``metrics.address`` resolves and, with ``bind``, the port is free to listen on."""
    settings = config["metrics"]
    if settings["port"] is None:
        return
    address, port = settings["address"], settings["port"]
    try:
        family, kind, proto, _, where = socket.getaddrinfo(address, port,
                                                           type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(f"metrics.address: cannot resolve {address!r} ({exc})") from None
    if not bind:
        return
    with socket.socket(family, kind, proto) as probe:
        # As the HTTP server binds: SO_REUSEADDR, so a port in TIME_WAIT is not "in use".
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(where)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"metrics.port: {address}:{port} is in use by another "
                                  "process") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise ConfigError(f"metrics.address: {address} is not an address of this "
                                  "machine") from None
            raise ConfigError(f"metrics.port: cannot listen on {address}:{port} "
                              f"({exc.strerror or exc})") from None
