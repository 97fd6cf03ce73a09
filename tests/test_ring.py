"""The refit window's ring buffer: the last ``capacity`` rows, whatever the pieces' sizes."""

import numpy as np
import pytest

from emstream.ring import RingBuffer


@pytest.mark.parametrize("capacity", [1, 3, 64, 100, 1000, 5000])
def test_the_ring_holds_the_last_rows_in_order_as_it_grows_and_wraps(capacity):
    rng = np.random.default_rng(capacity)
    ring, reference = RingBuffer(capacity), np.empty((0, 2))
    for _ in range(200):
        rows = rng.normal(size=(int(rng.integers(0, 300)), 2))
        ring.extend(rows)  # (empty pieces included)
        reference = np.vstack([reference, rows])[-capacity:]
        assert len(ring) == len(reference)
        assert np.array_equal(ring.recent(), reference)
        count = int(rng.integers(0, capacity + 2))
        assert np.array_equal(ring.recent(count), reference[len(reference) - min(count, len(reference)):])
        assert np.array_equal(np.sort(ring.stored(), axis=0), np.sort(reference, axis=0))
        if rng.random() < 0.05:
            ring.clear()
            reference = reference[:0]


def test_a_large_ring_takes_memory_as_it_fills_not_at_once():
    ring = RingBuffer(10**7)
    ring.extend(np.zeros((10, 3)))
    assert ring._data.nbytes < 10**4  # not 240 MB for ten rows


def test_an_empty_piece_first_is_nothing():
    ring = RingBuffer(5)
    ring.extend(np.empty((0, 2)))
    ring.extend(np.ones((3, 2)))
    assert ring.recent().tolist() == [[1.0, 1.0]] * 3
