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

# Every C0 and C1 control and DEL, but newline and tab; and the Unicode line and paragraph
# separators and bidirectional embeddings, overrides and isolates (U+2028-202E, U+2066-2069),
# which break a line or reorder what a terminal shows (a key "EVIL\u202e..." listed
# backwards); and the invisible U+200B, U+2060-2064 and U+FEFF: the characters a series key
# may not hold (emstream.parse.is_bad_key).
_CONTROLS = {code: f"\\x{code:02x}"
             for code in (*range(0, 9), *range(11, 32), *range(127, 160))}
_CONTROLS.update({code: f"\\u{code:04x}"
                  for code in (*range(0x2028, 0x202F), *range(0x2066, 0x206A), 0x200B,
                               *range(0x2060, 0x2065), 0xFEFF)})


_ONE_LINE = {**_CONTROLS, ord("\n"): "\\n"}


def printable(text: str, *, one_line: bool = False) -> str:
    r"""``text`` with control characters other than newline and tab escaped (``\x1b``,
    ``\u202e``); with ``one_line``, newlines too (a message that is one line: a file name
    holding a newline forged a second "emstream:" line).

    >>> printable("EVIL\u202eabc\u2028x")
    'EVIL\\u202eabc\\u2028x'
    >>> printable("a\nb", one_line=True)
    'a\\nb'
    """
    return text.translate(_ONE_LINE if one_line else _CONTROLS)
