"""Text for a person's terminal: control characters escaped.

A file name, a header or a key quoted in a message can hold ESC sequences that clear the
screen, recolour it or fake lines of output (``ESC [2J``).  JSON output needs nothing: it
escapes them itself.

Example
-------
>>> from emstream.terminal import printable
>>> printable("x\\x1b[2J.txt\\tok")
'x\\\\x1b[2J.txt\\tok'
"""

from __future__ import annotations

# Every C0 and C1 control and DEL, but newline and tab.
_CONTROLS = {code: f"\\x{code:02x}"
             for code in (*range(0, 9), *range(11, 32), *range(127, 160))}


def printable(text: str) -> str:
    """``text`` with control characters other than newline and tab escaped (``\\x1b``)."""
    return text.translate(_CONTROLS)
