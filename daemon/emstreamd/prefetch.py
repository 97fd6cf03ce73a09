"""Read and parse a back-fill file in a second thread while the loop learns.

A back-fill is bound by parsing and learning in turn; pyarrow's reader and numpy release the GIL
for most of their work, so on two cores the next block is parsed while the current one is
learned.  The wrapper hands blocks out in order, and its ``offset`` and ``at_end`` describe the
last block handed out (not how far the thread has read), so the loop's exactly-once bookkeeping
sees exactly what it would see without the thread.
"""

from __future__ import annotations

import queue
import threading


class PrefetchedFile:
    """A :class:`~emstreamd.sources.FileInput` read ahead by a thread, blocks parsed on the way.

    Parameters
    ----------
    source : FileInput
        Already positioned (after a resume).
    parse : callable ``(data, first_line, n_fields) -> (Parsed, line ends)``
    first_line : int
        Number of the first line the source will hand out.
    n_fields : int or None
        Fields per line, if already known.
    depth : int
        Blocks (of up to 1 MiB) read ahead.
    """

    kind = "file"
    boundary = False

    def __init__(self, source, parse, first_line: int, n_fields: int | None, depth: int = 2):
        self.source = source
        self.path = source.path
        self.offset = source.offset
        self.at_end = False
        self.parsed = None
        self._parse = parse
        self._line = first_line
        self._n_fields = n_fields
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="emstreamd-read", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                data = self.source.read(0.0)
                parsed = self._parse(data, self._line, self._n_fields) if data else None
                if parsed is not None:
                    self._line += parsed[0].n_lines
                    self._n_fields = self._n_fields or parsed[0].n_fields
                item = (data, parsed, self.source.offset, self.source.at_end)
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self.source.at_end:
                    return
        except BaseException as exc:  # handed to the loop, which raises it
            self._queue.put((exc, None, None, None))

    def read(self, timeout: float) -> bytes:
        """The next block of complete lines (``parsed`` holds its parse)."""
        data, parsed, offset, at_end = self._queue.get()
        if isinstance(data, BaseException):
            raise data
        self.parsed, self.offset, self.at_end = parsed, offset, at_end
        return data

    def identity(self, offset: int | None = None) -> dict:
        return self.source.identity(offset)

    def next_file(self) -> None:  # pragma: no cover - a plain file has no successor
        raise RuntimeError("a back-fill file has no next file")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self.source.close()
