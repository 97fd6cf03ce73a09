"""Why the daemon cannot start or stopped early, each with its exit code (sysexits.h)."""

from __future__ import annotations

from emstream.checkpoint import CheckpointError

EX_DATAERR = 65  # no usable checkpoint, or an input that no longer holds what it learned
EX_IOERR = 74  # the per-point output or the dead-letter file failed (a full disk), or stdin
EX_CANTCREAT = 73  # a checkpoint, lock or dead-letter file cannot be created
EX_TEMPFAIL = 75  # another daemon holds the checkpoint: try again once it has stopped
EX_CONFIG = 78  # a setting cannot be used (a metrics port in use)


class StartError(CheckpointError):
    """The daemon cannot start: one line for the operator, and ``exit_code``.

    A :class:`~emstream.checkpoint.CheckpointError`, so that a caller that only knows those
    still reports it in one line (with exit code 1).
    """

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code
