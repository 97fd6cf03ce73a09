"""One daemon per checkpoint: an exclusive ``flock`` on a lock file beside the checkpoints.

Two daemons writing one checkpoint directory would number, rotate and clean up each other's
files.  The kernel drops the lock when its process ends however it ends (SIGKILL, OOM), so a
restart after a crash is never blocked and there is no stale pid file to clean up; the pid in
the file only names the holder in the second daemon's message.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

from emstream.store import STORE_NAME

from .errors import EX_CANTCREAT, EX_CONFIG, EX_TEMPFAIL, StartError

log = logging.getLogger("emstreamd")

LOCK_NAME = "emstreamd.lock"
# A checkpoint path naming a file, not a directory: a single series' checkpoint or a keyed
# daemon's state store.
FILE_SUFFIXES = (".json", ".sqlite")


def lock_path(checkpoint_path: str | os.PathLike) -> Path:
    """The lock file of a checkpoint: inside a checkpoint directory, beside a ``.json`` file or
    a keyed daemon's ``.sqlite`` state store.  A store named by its own file inside a
    checkpoint directory (``state/keys.sqlite``) is locked as that directory is: the two names
    are one store, and a second daemon must be told that another one holds it.  A symbolic
    link to a checkpoint file or store is locked as what it names (checkpoints are written
    through it: two daemons on the link and on its target wrote one file)."""
    path = Path(checkpoint_path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    if path.name == STORE_NAME:
        return path.parent / LOCK_NAME
    if path.suffix in FILE_SUFFIXES:
        return path.with_name(path.name + ".lock")
    return path / LOCK_NAME


def acquire(checkpoint_path: str | os.PathLike):
    """Lock ``checkpoint_path`` for this process (a directory is created if missing).

    Returns the open lock file: the lock lasts as long as it stays open (or the process
    lives).  Raises :class:`StartError` (exit 75) if another process holds it, or (exit 73)
    if the lock file cannot be created.
    """
    path = lock_path(checkpoint_path)
    inside = Path(os.path.realpath(checkpoint_path)).parent / LOCK_NAME
    if Path(checkpoint_path).suffix == ".json" and inside.exists():
        # A checkpoint file among a directory daemon's numbered checkpoints: its own lock
        # did not meet that daemon's, and on its next start the other daemon resumed from
        # this file (the newest there) and learned its input again from the start.
        raise StartError(f"the checkpoint file {checkpoint_path} lies in another daemon's "
                         f"checkpoint directory ({inside} is there): give it a place of its "
                         "own", EX_CONFIG)
    try:
        if Path(checkpoint_path).suffix not in FILE_SUFFIXES:
            path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise StartError(f"cannot create the checkpoint lock {path}: {exc.strerror}",
                         EX_CANTCREAT) from None
    handle = os.fdopen(fd, "r+")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = handle.read(32).strip()
        handle.close()
        who = f" (pid {holder})" if holder.isdigit() else ""
        raise StartError(f"another emstreamd{who} is using the checkpoint "
                         f"{checkpoint_path} (lock {path}): stop it first", EX_TEMPFAIL) from None
    except OSError as exc:  # a file system without locks
        handle.close()
        raise StartError(f"cannot lock {path}: {exc.strerror}", EX_CANTCREAT) from None
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def held(handle, checkpoint_path: str | os.PathLike) -> bool:
    """Whether ``handle`` (from :func:`acquire`) still locks ``checkpoint_path``: its lock file
    is still the one at that path.  Not so once someone removed the checkpoint directory (or
    the lock file) while the daemon ran: a second daemon could then lock the path anew and
    both would write there."""
    try:
        now = os.stat(lock_path(checkpoint_path))
    except OSError:
        return False
    mine = os.fstat(handle.fileno())
    return (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino)


class CheckpointLock:
    """A daemon's hold on its checkpoint path while it runs: taken before any input is read
    (:meth:`take`), checked before each checkpoint (:meth:`ours`), let go after the last one.

    Example
    -------
    >>> import tempfile
    >>> first = CheckpointLock(tempfile.mkdtemp())
    >>> first.take()
    >>> try:
    ...     CheckpointLock(first.path).take()
    ... except StartError as exc:
    ...     exc.exit_code
    75
    >>> first.ours(lambda: True)
    True
    >>> first.close()
    """

    def __init__(self, path: str | os.PathLike):
        self.path = path
        self.handle = None  # the open lock file (None before take() and after close())
        self.lost = None  # once another daemon took the path: why this one writes nothing

    def take(self) -> None:
        """Lock the path (see :func:`acquire`; :class:`StartError` if another daemon holds
        it)."""
        self.handle = acquire(self.path)

    def ours(self, intact) -> bool:
        """Whether this daemon may write its checkpoint: it still holds the path's lock, or
        (its directory or lock file was removed while it ran) has taken it again.  ``intact``
        () -> bool says whether the checkpoint's state is still where this daemon writes it (a
        keyed daemon's store file).  False for good once the path is another's, or the state
        is gone (:attr:`lost` says why)."""
        if self.handle is None:
            return self.lost is None
        if held(self.handle, self.path) and intact():
            return True
        self.close()
        if not intact():
            # (checked with the lock held too: a keyed store's file removed alone, its lock
            # left, took every later commit into the deleted file, and the daemon exited 0)
            self.lost = (f"checkpoint.path {self.path}: the state store was removed or "
                         "replaced while this daemon ran: stopping (what it learned since its "
                         "last checkpoint is not written)")
            return False
        try:
            self.handle = acquire(self.path)
        except StartError as exc:
            self.lost = (f"checkpoint.path {self.path} was removed while this daemon ran and "
                         f"is now another's ({exc}): stopping, nothing more written there")
            return False
        log.warning("checkpoint.path %s: its lock was gone (the directory removed while this "
                    "daemon ran?): locked again; checkpoints go on there", self.path)
        return True

    def close(self) -> None:
        """Let the lock go (after the last checkpoint: another daemon may take over)."""
        if self.handle is not None:
            self.handle.close()
            self.handle = None
