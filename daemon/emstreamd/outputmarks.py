"""Where the per-point output stands against the checkpoints, so each line is in it once.

A checkpoint records where the per-point output file ends (:meth:`OutputMarks.marks`); a
restart reads the lines after the checkpoint's position again, and learns and reports them
again, so it first cuts the output back to that mark (:meth:`OutputMarks.cut_back`).  A run
with no checkpoint yet notes where its lines begin in a file beside the checkpoint's lock
(:meth:`OutputMarks.begin`): killed before its first checkpoint, the next run reads the input
from its start and cuts what this one wrote.  The first checkpoint makes the note useless, and
it goes (:meth:`OutputMarks.forget_start`).  Dead letters stay at-least-once: several daemons
run from one configuration share its ``input.dead_letter``, and one daemon's letters cannot be
told from another's.

Example
-------
>>> import io, tempfile
>>> from emstreamd.sinks import PointSink
>>> settings = {"output": {"cut_back": True, "format": "csv", "header": True},
...             "input": {"key": None}, "checkpoint": {"path": tempfile.mkdtemp()}}
>>> marks = OutputMarks(PointSink(io.BytesIO(), settings["output"]), settings)
>>> marks.marks()  # (a BytesIO is no file: nothing to cut back)
{'output': None}
>>> marks.start_note.name
'emstreamd.output-start.json'
"""

from __future__ import annotations

import json
import logging
import os

from emstream import checkpoint

from . import lock

log = logging.getLogger("emstreamd")

# Beside the checkpoint's lock: where the per-point lines of a run with no checkpoint yet
# begin.  (emstreamd.output-start.json in a checkpoint directory; state.json.output-start.json)
OUTPUT_START = ".output-start.json"
# What of the input's identity says a note is this input's (a standard input's lines cannot be
# read again; a followed path may lead to another file after a rotation).
_SAME_INPUT = ("kind", "path", "device", "inode", "fingerprint")
# ...and what finds that file again among rotated siblings (FollowInput.resume).
_NOTED = _SAME_INPUT + ("fingerprint_bytes", "target")


def start_note_path(checkpoint_path):
    """Where a run with no checkpoint yet notes where its per-point lines begin: beside the
    checkpoint's lock (``emstreamd.output-start.json`` in a checkpoint directory)."""
    held = lock.lock_path(checkpoint_path)
    return held.with_name(held.name.removesuffix(".lock") + OUTPUT_START)


def _same_file(source, noted: dict, identity: dict) -> bool:
    """Whether the start note ``noted`` is of the file ``source`` reads (``identity``): its
    first bytes compared over as many as the note fingerprinted (a log started small, or
    empty, has grown since: compared whole, the note was never this file's, and a run killed
    before its first checkpoint wrote its lines twice)."""
    if any(noted.get(k) != identity.get(k) for k in _SAME_INPUT if k != "fingerprint"):
        return False
    size = noted.get("fingerprint_bytes")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0 \
            or source.kind != "follow":
        return noted.get("fingerprint") == identity.get("fingerprint")
    from .sources import fingerprint

    return fingerprint(source.reading, size) == (noted.get("fingerprint"), size)


def _read_again(source, noted: dict) -> bool:
    """Whether ``source`` (a follower) found the file of the start's note ``noted`` (now a
    rotated sibling) and reads it from its start."""
    if (noted.get("device"), noted.get("inode")) == (source.device, source.inode):
        return False  # (the same file, rewritten since: not the file that was read)
    if noted.get("path") != os.path.abspath(source.path):
        return False  # (another followed path: its file is not this one's past)
    try:
        return bool(source.resume({**noted, "offset": 0}))
    except (KeyError, TypeError, ValueError):  # (a note not written by this version)
        return False


class OutputMarks:
    """The per-point output's marks for checkpoints and restarts.

    Parameters
    ----------
    sink : emstreamd.sinks.PointSink
    config : dict
        The validated configuration (``output.cut_back``, ``input.key``,
        ``checkpoint.path``).
    """

    def __init__(self, sink, config: dict):
        self.sink = sink
        self.enabled = bool(config["output"]["cut_back"])
        self.keyed = config["input"]["key"] is not None
        self.start_note = start_note_path(config["checkpoint"]["path"])

    def marks(self) -> dict:
        """The checkpoint's ``output`` field: where the per-point output file ends (None for a
        pipe, no output, or ``output.cut_back: false``)."""
        return {"output": self.sink.mark() if self.enabled else None}

    def cut_back(self, marks: dict, first_line: int) -> None:
        """At a restart that reads the input again from the checkpoint's position: the lines
        written after ``marks`` (:meth:`marks`) go, since the rows they are for are learned,
        and reported, again.  ``first_line``: the first input line whose per-point line may
        follow the mark (only lines of it or later are cut)."""
        if self.enabled:
            self.sink.cut_back(marks.get("output"), first_line, keyed=self.keyed)

    def begin(self, source) -> None:
        """A run with no checkpoint yet, reading ``source``: cut the lines an earlier run of the
        same file wrote before it was killed (it left no checkpoint to say where they end), and
        note where this run's begin.  A note of another input is not used: a standard input,
        or a followed path that leads to another file now (rotated) or one rewritten since."""
        try:
            noted = json.loads(self.start_note.read_bytes())
        except (OSError, ValueError):
            noted = None  # (none, or not readable: nothing is cut)
        if source.kind not in ("file", "follow"):
            self.forget_start()
            return
        current = source.identity()
        identity = {k: v for k, v in current.items() if k in _SAME_INPUT}
        mine = noted.get("input") if isinstance(noted, dict) else None
        if isinstance(mine, dict) and _same_file(source, mine, identity):
            self.cut_back(noted, 1)
            current = mine
        elif (isinstance(mine, dict) and source.kind == "follow" and mine.get("kind") == "follow"
              and isinstance(mine.get("fingerprint_bytes"), int) and _read_again(source, mine)):
            # Killed before its first checkpoint, then rotated while down: the file it began
            # with is a rotated sibling now, and the restart read only the new file (the old
            # one's lines, learned by no checkpoint, were never learned).  Read from its start.
            log.info("no checkpoint yet: reading %s again from its start, the file the last "
                     "run began with (rotated since)", source.reading)
            self.cut_back(noted, 1)
            current = mine
        note = self.marks()
        note["input"] = {k: v for k, v in current.items() if k in _NOTED}
        if note["output"]:
            try:
                checkpoint.write_atomic(self.start_note, json.dumps(note).encode())
            except OSError as exc:
                log.warning("per-point output: where this run's lines begin not noted (%s: "
                            "%s): if it is killed before its first checkpoint, the next run "
                            "writes its lines again", self.start_note, exc.strerror or exc)

    def forget_start(self) -> None:
        """The first checkpoint says where the lines end from now on: the start's note goes
        (kept, it cut every later run's lines once the checkpoints were removed)."""
        try:
            self.start_note.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("%s not removed: %s", self.start_note, exc.strerror or exc)


def first_unreported(meta: dict, next_line: int) -> int:
    """The number of the first input line whose per-point line a checkpoint's run may have
    written after its mark: its position's (``next_line``), or a carried row's before it.

    >>> first_unreported({"carried": {"lines": [7, 8]}}, 12), first_unreported({}, 12)
    (7, 12)
    """
    carried = meta.get("carried")
    lines = carried.get("lines") if isinstance(carried, dict) else None
    numbers = [n for n in lines or () if isinstance(n, int)]
    return min([next_line, *numbers[:1]])


__all__ = ["OUTPUT_START", "OutputMarks", "first_unreported"]
