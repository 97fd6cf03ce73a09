"""The router of a keyed stream: a parsed block's rows grouped by key, in one pass of array
operations (a sort of the keys), not a Python step per row.

Example
-------
>>> import numpy as np
>>> keys = np.array([b"b", b"a", b"b", b"\\xff"])
>>> [(key, rows.tolist()) for key, rows in groups(keys)]
[('a', [1]), ('b', [0, 2]), (None, [3])]
"""

from __future__ import annotations

import numpy as np


def groups(keys: np.ndarray):
    """The rows of each key, in the order they came.

    Parameters
    ----------
    keys : ndarray of bytes, shape (n,)
        Each row's key as written.

    Yields
    ------
    key : str or None
        The key (UTF-8); None, last, for the rows whose key is not valid UTF-8 (rejected as
        "bad key": a key is stored as text).
    rows : ndarray of int, shape (m,)
        Indices of its rows, increasing.
    """
    if len(keys) == 0:
        return
    names, inverse = np.unique(keys, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse, minlength=len(names)))
    bad = []
    start = 0
    for name, stop in zip(names.tolist(), bounds.tolist()):
        try:
            text = name.decode("utf-8")
        except UnicodeDecodeError:
            bad.append(order[start:stop])
        else:
            yield text, order[start:stop]
        start = stop
    if bad:
        yield None, np.sort(np.concatenate(bad))
