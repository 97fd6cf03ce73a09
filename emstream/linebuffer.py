"""Cutting a byte stream into blocks of complete lines, in bounded memory.

The daemon's sources and the ``emstream`` command read chunks of bytes and hand complete lines
to the parser (:mod:`emstream.parse`); a partial last line waits for its newline.  A line that
never ends (a writer gone wrong, or an attacker) is not kept whole: past ``max_line_bytes`` its
bytes are counted and dropped as they arrive, and it reaches the parser as a line too long to
be anything but a "too long" reject.

Lines may end in LF, CRLF or a lone CR (files from classic Mac OS and some instruments): a run
of CRs before an LF is one line end (``\r\r\n``: Python on Windows writing CRLF rows through a
text-mode file), not a blank line; a CR that no LF follows (after any more CRs) ends a line of
its own, so ``\r\r`` in a lone-CR file is a blank line, as an editor shows it.  Such CRs are
read as LFs, byte for byte, so offsets stay those of the input.  CRs at the end of a chunk
wait for the next byte, since they may begin such an end.
"""

from __future__ import annotations

import numpy as np


def _lone_crs_as_lfs(chunk: bytes) -> bytes:
    """``chunk`` with every run of CRs that no LF follows made LFs (same length).

    >>> _lone_crs_as_lfs(b"1\\r2\\r\\n3\\r\\r\\n4\\r\\r5\\r")
    b'1\\n2\\r\\n3\\r\\r\\n4\\n\\n5\\n'
    """
    # Vectorised: a quarter of a regex's cost (0.5 against 2 ms per MB of a CRLF file), about
    # 1% of what the daemon spends on a megabyte.
    codes = np.frombuffer(chunk, dtype=np.uint8)
    cr = codes == 13
    before_cr = cr[:-1] & cr[1:]  # a CR with a CR after it (rare)
    lone = cr.copy()
    lone[:-1] &= (codes[1:] != 10) & ~before_cr
    if before_cr.any():
        doubled = np.flatnonzero(before_cr)
        # Each CR before another goes with the byte after its run: an LF keeps the run one
        # line end; anything else, or the chunk's end, makes every CR of it a line's end.
        others = np.flatnonzero(~cr)
        beyond = np.searchsorted(others, doubled)
        following = np.full(doubled.shape, -1)
        inside = beyond < others.size
        following[inside] = codes[others[beyond[inside]]]
        lone[doubled[following != 10]] = True
    if not lone.any():
        return chunk
    codes = codes.copy()
    codes[lone] = 10
    return codes.tobytes()


class LineBuffer:
    """Cuts a byte stream into blocks of complete lines, keeping a partial last line.

    >>> cut = LineBuffer()
    >>> cut.feed(b"1\\n2\\n3"), cut.feed(b"4\\n5"), cut.feed(b"", at_end=True)
    (b'1\\n2\\n', b'34\\n', b'5')

    At the end of input a last line without its newline is handed out as a line.  The pieces
    of a partial line are joined once, when it ends, so a long line costs linear time.

    Parameters
    ----------
    max_line_bytes : int, optional
        A partial line longer than this keeps only its first ``max_line_bytes + 1`` bytes:
        the rest is counted and dropped as it arrives, so memory stays bounded however long a
        line without a newline grows.  When its newline comes (or the input ends) the line is
        handed out as that kept start, which a parser with the same ``max_line_bytes`` rejects
        as "too long".  Such a line always leads its block, and :attr:`block_bytes` counts
        the input bytes of the block, dropped ones included, so byte offsets stay exact: the
        offset past a line after it is the offset past the block minus the bytes that follow
        in the block.  None: lines are kept whole.

    Attributes
    ----------
    block_bytes : int
        Input bytes behind the last block handed out (its length, unless it leads with a
        shortened line, or with the rest of a line end already taken: see
        :meth:`end_held_cr`).
    pending_bytes : int
        Input bytes of the partial last line read so far.

    Examples
    --------
    >>> cut = LineBuffer(max_line_bytes=16)
    >>> cut.feed(b"1\\n" + b"9" * 40), cut.block_bytes
    (b'1\\n', 2)
    >>> cut.feed(b"9" * 1000), cut.pending_bytes, len(cut.pending)
    (b'', 1040, 17)
    >>> cut.feed(b"9\\n2\\n"), cut.block_bytes
    (b'99999999999999999\\n2\\n', 1044)

    A lone CR ends a line; a CR at a chunk's end waits to see whether an LF follows:

    >>> cut = LineBuffer()
    >>> cut.feed(b"1\\r2\\r"), cut.feed(b"3\\r\\n4\\r"), cut.feed(b"", at_end=True)
    (b'1\\n', b'2\\n3\\r\\n', b'4\\n')
    """

    def __init__(self, max_line_bytes: int | None = None):
        self.limit = max_line_bytes
        self.block_bytes = 0
        self.pending_bytes = 0
        self._kept = []  # the partial line's start (all of it within the limit)
        self._kept_bytes = 0
        self._held_cr = False  # the partial line ends in CRs that may begin a CRLF
        self._held_crs = 0  # how many
        # A CR was taken for a line's end before the next byte was known: CRs and an LF that
        # come next are the same line end (CRs before anything else: lines of their own).
        self._end_owed = False
        self._skipping = False  # the rest of a line already taken is dropped (skip_rest_of_line)

    @property
    def holds_cr(self) -> bool:
        """Whether the partial line ends in a CR waiting to see if an LF follows (CRs after a
        line end already taken, which end no line but blank ones, do not count)."""
        return self._held_cr and not self._end_owed

    @property
    def pending(self) -> bytes:
        """The partial last line as kept (only its start if it outgrew the limit)."""
        return b"".join(self._kept)

    def _keep(self, piece) -> None:
        """Add ``piece`` (bytes or a memoryview) to the partial line, within the limit."""
        self.pending_bytes += len(piece)
        room = len(piece)
        if self.limit is not None:
            room = min(room, self.limit + 1 - self._kept_bytes)
        if room > 0:
            whole = room == len(piece) and isinstance(piece, bytes)
            self._kept.append(piece if whole else bytes(piece[:room]))
            self._kept_bytes += room

    def _take(self) -> list:
        kept = self._kept
        self._kept, self._kept_bytes, self.pending_bytes = [], 0, 0
        return kept

    def feed(self, chunk: bytes, at_end: bool = False) -> bytes:
        """The lines that ``chunk`` completes (and the partial last line if ``at_end``).

        Parameters
        ----------
        chunk : bytes
            The next bytes of the stream.
        at_end : bool
            The stream ends after ``chunk``.

        Returns
        -------
        bytes
            Complete lines, possibly none; :attr:`block_bytes` input bytes.
        """
        if self._skipping and chunk:
            ends = [i for i in (chunk.find(b"\n"), chunk.find(b"\r")) if i >= 0]
            if not ends:  # all of it the rest of that line
                self.block_bytes = len(chunk)
                return b""
            end = min(ends) + 1
            self._skipping = False
            self._end_owed = chunk[end - 1] == 13  # (an LF after a CR ends the same line)
            data = self.feed(chunk[end:], at_end)
            self.block_bytes += end
            return data
        if (self._held_cr or self._end_owed) and (chunk or at_end):
            lead = len(chunk) - len(chunk.lstrip(b"\r"))
            if lead == len(chunk) and not at_end:  # the run of CRs goes on: it waits too
                self._keep(chunk)
                self._held_cr, self._held_crs = True, self._held_crs + lead
                self.block_bytes = 0
                return b""
            owed = self._end_owed
            self._end_owed = False
            if lead < len(chunk) and chunk[lead] == 10:
                if owed:  # the CRs and the LF end the line already taken: no line
                    dropped = self.pending_bytes if self._held_cr else 0
                    if self._held_cr:
                        self._take()
                        self._held_cr, self._held_crs = False, 0
                    data = self.feed(chunk[lead + 1:], at_end)
                    self.block_bytes += dropped + lead + 1
                    return data
                self._held_cr, self._held_crs = False, 0  # (one line end, with the LF below)
            elif self._held_cr:  # every held CR ended a line (blank ones after the first)
                ended, ended_bytes = self._end_at_held_crs()
                data = self.feed(chunk, at_end)
                self.block_bytes += ended_bytes
                return ended + data
        if b"\r" in chunk:
            held = 0
            if not at_end and chunk.endswith(b"\r"):
                trimmed = chunk.rstrip(b"\r")
                held, chunk = len(chunk) - len(trimmed), trimmed
            chunk = _lone_crs_as_lfs(chunk)
            if held:  # the CRs join the partial line until the next byte is known
                data = self.feed(chunk)
                self._keep(b"\r" * held)
                self._held_cr, self._held_crs = True, held
                return data
        first = chunk.find(b"\n") + 1
        if not first:  # no newline: the partial line grows
            self._keep(chunk)
            if not at_end:
                self.block_bytes = 0
                return b""
            self.block_bytes = self.pending_bytes
            return b"".join(self._take())
        cut = len(chunk) if at_end else chunk.rfind(b"\n") + 1
        if self.pending_bytes:  # the partial line ends in this chunk: it leads the block
            view = memoryview(chunk)
            self._keep(view[:first - 1])
            self.block_bytes = self.pending_bytes + cut - first + 1
            data = b"".join([*self._take(), b"\n", view[first:cut]])
        else:
            self.block_bytes = cut
            data = chunk if cut == len(chunk) else chunk[:cut]
        if cut < len(chunk):
            self._keep(memoryview(chunk)[cut:])
        return data

    def end_held_cr(self) -> bytes:
        """The partial line, if it ends in a held CR, as a complete line (:attr:`block_bytes`
        its bytes): for a follower whose input has stopped after a lone CR, so that its last
        line need not wait for the next one.  The first held CR ends it; CRs and an LF that
        come next (the other held CRs among them) end the same line, and CRs before anything
        else are blank lines.

        >>> cut = LineBuffer()
        >>> cut.feed(b"1\\r2\\r"), cut.end_held_cr(), cut.feed(b"\\n3\\n"), cut.block_bytes
        (b'1\\n', b'2\\n', b'3\\n', 3)
        >>> cut.feed(b"4\\r\\r"), cut.end_held_cr(), cut.feed(b"5\\n")
        (b'', b'4\\n', b'\\n5\\n')
        """
        self.block_bytes = 0
        if not self.holds_cr:
            return b""
        held = self._held_crs
        whole = self._kept_bytes == self.pending_bytes  # else bytes were dropped past the limit
        ended_bytes = self.pending_bytes
        line = b"".join(self._take())
        self.block_bytes = ended_bytes
        self._held_cr, self._held_crs, self._end_owed = False, 0, True
        if held > 1:  # the others wait, after the line end taken
            self._keep(b"\r" * (held - 1))
            self._held_cr, self._held_crs = True, held - 1
            self.block_bytes = ended_bytes - (held - 1)
        return (line[:-held] if whole else line) + b"\n"

    def owe_line_end(self) -> None:
        """The stream resumes right after a CR that was taken for a line's end (a checkpoint
        written after :meth:`end_held_cr`, or at the end of a file): CRs and an LF that come
        first end that same line."""
        self._end_owed = True

    def skip_rest_of_line(self) -> None:
        """The stream resumes inside a line that was taken as it stood (a file's last line
        learned before its newline came): what comes up to its line end is no line of its own,
        and is dropped (:attr:`block_bytes` counts it).

        >>> cut = LineBuffer()
        >>> cut.skip_rest_of_line()
        >>> cut.feed(b"34"), cut.block_bytes, cut.feed(b"5\\n6\\n"), cut.block_bytes
        (b'', 2, b'6\\n', 4)
        """
        self._skipping = True

    def _end_at_held_crs(self) -> tuple[bytes, int]:
        """The partial line, whose last bytes are held CRs that no LF follows, as complete
        lines (each CR ends one: blank ones after the first, or after a line end already
        taken); their input bytes."""
        held = self._held_crs
        whole = self._kept_bytes == self.pending_bytes  # else CRs were dropped past the limit
        ended_bytes = self.pending_bytes
        line = b"".join(self._take())
        self._held_cr, self._held_crs = False, 0
        return (line[:-held] if whole else line.rstrip(b"\r")) + b"\n" * held, ended_bytes
