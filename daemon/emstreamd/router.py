"""The router of a keyed stream: a parsed block's rows grouped by key, in one pass of array
operations (a sort of the keys), not a Python step per row.

Example
-------
>>> import numpy as np
>>> keys = np.array([b"b", b"a", b"b", b"\\x81", b"\\xe9", "é".encode()])
>>> [(key, rows.tolist()) for key, rows in groups(keys)]
[('a', [1]), ('b', [0, 2]), ('é', [4, 5]), (None, [3])]
"""

from __future__ import annotations

import numpy as np

from emstream.parse import MAX_KEY_BYTES, key_text


def groups(keys: np.ndarray):
    """The rows of each key, in the order they came.

    Parameters
    ----------
    keys : ndarray of bytes, shape (n,)
        Each row's key as written.

    Yields
    ------
    key : str or None
        The key as text (:func:`emstream.parse.key_text`: UTF-8, else cp1252, so one key
        however a spreadsheet saved it); None, last, for the rows whose key is neither
        (rejected as "bad key": a key is stored as text) or longer than
        :data:`~emstream.parse.MAX_KEY_BYTES` in UTF-8.
    rows : ndarray of int, shape (m,)
        Indices of its rows, increasing.
    """
    if len(keys) == 0:
        return
    names, inverse = np.unique(keys, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse, minlength=len(names)))
    bad, found = [], {}
    start = 0
    for name, stop in zip(names.tolist(), bounds.tolist()):
        text = key_text(name)
        # (the length limit holds for the key as stored, in UTF-8: 200 "é" saved in cp1252 are
        # 200 bytes as written but 400 stored, and the same key saved in UTF-8 was refused)
        if text is None or len(text.encode("utf-8")) > MAX_KEY_BYTES:
            bad.append(order[start:stop])
        else:
            found.setdefault(text, []).append(order[start:stop])
        start = stop
    for text, parts in found.items():
        # A key written two ways in one block (UTF-8 and cp1252): one key, rows in order.
        yield text, parts[0] if len(parts) == 1 else np.sort(np.concatenate(parts))
    if bad:
        yield None, np.sort(np.concatenate(bad))
