"""A fixed-capacity buffer of the most recent rows (or values), oldest overwritten first.

Example
-------
>>> import numpy as np
>>> from emstream.ring import RingBuffer
>>> ring = RingBuffer(3)
>>> ring.extend(np.array([1.0, 2.0])); ring.extend(np.array([3.0, 4.0]))
>>> len(ring), ring.recent().tolist(), ring.recent(2).tolist()
(3, [2.0, 3.0, 4.0], [3.0, 4.0])
"""

from __future__ import annotations

import numpy as np


class RingBuffer:
    """The last ``capacity`` items extended into it, oldest first on the way out.

    Parameters
    ----------
    capacity : int
    """

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._data = None  # allocated on the first extend, shaped like its items
        self._next = 0
        self._filled = 0

    def __len__(self) -> int:
        return self._filled

    @property
    def item_shape(self) -> tuple | None:
        return None if self._data is None else self._data.shape[1:]

    def clear(self) -> None:
        self._next = self._filled = 0

    def extend(self, items: np.ndarray) -> None:
        """Append ``items`` (shape (n, ...)), overwriting the oldest beyond ``capacity``."""
        if self._data is None or self._data.shape[1:] != items.shape[1:]:
            self._data = np.empty((0, *items.shape[1:]))
            self.clear()
        if len(items) == 0:
            return
        if len(self._data) < self.capacity and self._filled + len(items) > len(self._data):
            # Grown by doubling up to the capacity (it wraps only then): a keyed daemon holds
            # thousands of these, most of them far from full.
            grown = np.empty((min(self.capacity, max(2 * len(self._data), 64,
                                                     self._filled + len(items))),
                              *items.shape[1:]))
            grown[:self._filled] = self._data[:self._filled]
            self._data, self._next = grown, self._filled
        size = len(self._data)
        items = items[-size:]
        n = len(items)
        first = min(n, size - self._next)  # up to the end of the storage, then wrap
        self._data[self._next:self._next + first] = items[:first]
        self._data[:n - first] = items[first:]
        self._next = (self._next + n) % size
        self._filled = min(size, self._filled + n)

    def stored(self) -> np.ndarray:
        """The items held, in storage order: cheaper than :meth:`recent` where order does not
        matter (a quantile, say)."""
        return np.empty(0) if self._data is None else self._data[:self._filled]

    def recent(self, count: int | None = None) -> np.ndarray:
        """The last ``count`` items (all by default), oldest first; shape (min(count, len), ...)."""
        if self._data is None:
            return np.empty(0)
        if self._filled < len(self._data):
            items = self._data[:self._filled]
        else:
            items = np.roll(self._data, -self._next, axis=0)
        count = self._filled if count is None else min(count, self._filled)
        return items[len(items) - count:]
