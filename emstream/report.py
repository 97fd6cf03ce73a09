"""Per-point score lines (``emstream score``, emstreamd's output), formatted a batch at once.

A Python f-string per row costs ~2.7 µs, which alone would hold the daemon under 400,000 points
per second.  Here every column becomes a matrix of ASCII digits by integer arithmetic on the
whole batch; the columns and separators are laid side by side as one ``(rows, width)`` byte
matrix, padded with NUL bytes, and the NULs are squeezed out in one pass (0.3–0.5 µs per row;
``benchmarks/bench_daemon.py`` reports the daemon's rate with output on).

Numbers are fixed-point: probability with 6 decimals, surprise with 4.  A batch holding a
surprise that is not finite or is beyond 1e14 in magnitude is formatted row by row instead.

Example
-------
>>> import numpy as np
>>> from emstream.report import format_rows
>>> print(format_rows("csv", np.array([7, 12]), np.array([0, 2]), np.array([0.25, 1.0]),
...                   np.array([1.5, -0.00004]), np.array([False, True])).decode(), end="")
7,0,0.250000,1.5000,0
12,2,1.000000,-0.0000,1
"""

from __future__ import annotations

import json

import numpy as np

_NUL, _DOT, _MINUS, _ZERO = 0, ord("."), ord("-"), ord("0")
# Beyond this a surprise's fixed-point digits would not fit in int64.
_LARGEST = 1e14
_POWERS = 10 ** np.arange(20, dtype=np.uint64)


def _integer_digits(values: np.ndarray) -> np.ndarray:
    """Non-negative integers as right-aligned ASCII digits, NUL-padded: shape (n, width)."""
    top = int(values.max()) if values.size else 0
    width = len(str(top))
    out = np.empty((len(values), width), dtype=np.uint8)
    # Division by a scalar is libdivide-fast in numpy, and twice as fast again in 32 bits.
    rest = values.astype(np.uint32 if top < 2**32 else np.uint64)
    for column in range(width - 1, -1, -1):
        quotient = rest // 10
        out[:, column] = rest - quotient * 10
        rest = quotient
    out += _ZERO
    if width > 1:
        leading = values[:, None] < _POWERS[width - 1:0:-1]  # digits before the first one
        out[:, :-1][leading] = _NUL
    return out


def _fixed(values: np.ndarray, decimals: int) -> list[np.ndarray]:
    """Signed fixed-point numbers as byte-matrix pieces: sign, integer part, '.', decimals."""
    scale = 10 ** decimals
    scaled = np.rint(np.abs(values) * scale).astype(np.int64)
    whole, fraction = np.divmod(scaled, scale)
    sign = np.where(values < 0, _MINUS, _NUL).astype(np.uint8)[:, None]
    fraction_digits = _integer_digits(fraction + scale)[:, 1:]  # zero-padded: drop the 1
    dot = np.full((len(values), 1), _DOT, dtype=np.uint8)
    return [sign, _integer_digits(whole), dot, fraction_digits]


def _constant(text: bytes, n: int) -> np.ndarray:
    return np.broadcast_to(np.frombuffer(text, dtype=np.uint8), (n, len(text)))


def _words(flags: np.ndarray, words: tuple[bytes, bytes]) -> np.ndarray:
    """``words[flag]`` per row, NUL-padded to the longer word."""
    table = np.array(words, dtype=f"S{max(map(len, words))}")
    return table[flags.astype(np.intp)].view(np.uint8).reshape(len(flags), -1)


def format_rows(kind: str, lines, labels, probability, surprise, anomaly=None, *,
                score=None, time_text=None, key: str | None = None) -> bytes:
    """Output lines for one mini-batch, in ``kind`` ("csv" or "jsonl") format.

    Columns: line, key (if given), time (if given), label, probability, surprise, score (if
    given), anomaly (if given).

    Parameters
    ----------
    kind : {"csv", "jsonl"}
    lines, labels : ndarray of int, shape (n,)
    probability, surprise : ndarray of float, shape (n,)
    anomaly : ndarray of bool, shape (n,), or None
        None leaves the anomaly column (key) out.
    score : ndarray of float in [0, 1], shape (n,), or None
        The calibrated anomaly score, written with 8 decimals (a threshold near 1 needs them).
    time_text : ndarray of bytes, shape (n,), or None
        Each row's time as the input wrote it (a string in JSON).
    key : str, optional
        The series of every row (a keyed stream's); quoted in CSV when it needs to be.

    Returns
    -------
    bytes
        One line per row, each ending in a newline.
    """
    n = len(lines)
    if n == 0:
        return b""
    if not np.all(np.abs(surprise) < _LARGEST):  # NaN-safe: inf and NaN fail the test
        return _format_slowly(kind, lines, labels, probability, surprise, anomaly, score,
                              time_text, key)
    stamps = None if time_text is None else _text(time_text)
    if stamps is not None and _needs_escaping(kind, stamps):
        # A time with a comma or quote ("7/13/2014, 12:00 AM") made a CSV line of one field
        # too many, and a tab in one invalid JSON: such batches are written field by field.
        return _format_slowly(kind, lines, labels, probability, surprise, anomaly, score,
                              time_text, key)
    lines = np.asarray(lines, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    if kind == "csv":
        comma = _constant(b",", n)
        pieces = [_integer_digits(lines), comma]
        if key is not None:
            pieces.append(_constant(_key_field(kind, key) + b",", n))
        if stamps is not None:
            pieces += [stamps, comma]
        pieces += [_integer_digits(labels), comma, *_fixed(probability, 6), comma,
                   *_fixed(surprise, 4)]
        if score is not None:
            pieces += [comma, *_fixed(np.clip(score, 0.0, 1.0), 8)]
        if anomaly is not None:
            pieces += [comma, _words(anomaly, (b"0", b"1"))]
        pieces.append(_constant(b"\n", n))
    else:
        pieces = [_constant(b'{"line": ', n), _integer_digits(lines)]
        if key is not None:
            pieces.append(_constant(b', "key": ' + _key_field(kind, key), n))
        if stamps is not None:
            pieces += [_constant(b', "time": "', n), stamps, _constant(b'"', n)]
        pieces += [_constant(b', "label": ', n), _integer_digits(labels),
                   _constant(b', "probability": ', n), *_fixed(probability, 6),
                   _constant(b', "surprise": ', n), *_fixed(surprise, 4)]
        if score is not None:
            pieces += [_constant(b', "score": ', n), *_fixed(np.clip(score, 0.0, 1.0), 8)]
        if anomaly is not None:
            pieces += [_constant(b', "anomaly": ', n), _words(anomaly, (b"false", b"true"))]
        pieces.append(_constant(b"}\n", n))
    matrix = np.hstack(pieces)
    return matrix[matrix != _NUL].tobytes()


def _text(values) -> np.ndarray:
    """Byte strings as a NUL-padded (n, width) matrix."""
    values = np.asarray(values, dtype=bytes)
    width = max(values.dtype.itemsize, 1)
    return values.astype(f"S{width}").view(np.uint8).reshape(len(values), width)


def _needs_escaping(kind: str, text: np.ndarray) -> bool:
    """Whether any of these NUL-padded byte strings (:func:`_text`) cannot go into a line as
    they are: a comma, quote or control character in CSV; a quote, backslash, control
    character or non-ASCII byte (possibly not UTF-8) in JSON."""
    control = (text < 32) & (text != 0)
    if kind == "csv":
        return bool((control | (text == 44) | (text == 34)).any())
    return bool((control | (text == 34) | (text == 92) | (text >= 128)).any())


def _csv_field(text: str) -> str:
    """A CSV field: quoted if it holds a comma, quote or line end, or starts or ends with
    white space."""
    if any(c in text for c in ',"\r\n') or text != text.strip():
        return '"' + text.replace('"', '""') + '"'
    return text


def _key_field(kind: str, key: str) -> bytes:
    """A key as a CSV field (quoted if it holds a comma, quote or space) or a JSON string."""
    return json.dumps(key).encode() if kind != "csv" else _csv_field(key).encode()


def _enormous(surprise: float) -> str:
    """A surprise beyond the fast path's range: 4 decimals up to it, then in exponent form
    (fixed-point, 1e199 took 200 digits)."""
    return f"{surprise:.4f}" if abs(surprise) < _LARGEST else f"{surprise:.6e}"


def _json_beyond(surprise: float) -> str:
    """A surprise beyond float's range as JSON: ``1e999`` (a number JSON allows, which
    Python's json reads back as infinity and jq as the largest float); json.dumps wrote
    ``Infinity``, which is not JSON (jq and JSON.parse refused the line).  NaN: null."""
    if surprise != surprise:
        return "null"
    return "1e999" if surprise > 0 else "-1e999"


def _format_slowly(kind, lines, labels, probability, surprise, anomaly=None, score=None,
                   time_text=None, key=None) -> bytes:
    """Row by row (the same text), for batches with an infinite or enormous surprise."""
    n = len(lines)
    flags = [None] * n if anomaly is None else np.asarray(anomaly).tolist()
    scores = [None] * n if score is None else np.clip(score, 0.0, 1.0).tolist()
    stamps = [None] * n if time_text is None else [t.decode("utf-8", "replace")
                                                   for t in time_text]
    rows = zip(np.asarray(lines).tolist(), stamps, np.asarray(labels).tolist(),
               np.asarray(probability).tolist(), np.asarray(surprise).tolist(), scores, flags)
    if kind == "csv":
        tag = "" if key is None else _key_field(kind, key).decode() + ","
        text = "".join(f"{n}," + tag + ("" if t is None else f"{_csv_field(t)},")
                       + f"{k},{p:.6f},"
                       + _enormous(s)
                       + ("" if c is None else f",{c:.8f}")
                       + ("" if a is None else f",{int(a)}") + "\n"
                       for n, t, k, p, s, c, a in rows)
    else:
        tag = "" if key is None else ', "key": ' + _key_field(kind, key).decode()
        text = "".join(
            f'{{"line": {n}' + tag + ("" if t is None else f', "time": {json.dumps(t)}')
            + f', "label": {k}, "probability": {p:.6f}, "surprise": '
            + (_enormous(s) if np.isfinite(s) else _json_beyond(s))
            + ("" if c is None else f', "score": {c:.8f}')
            + ("" if a is None else ', "anomaly": ' + ("true" if a else "false")) + "}\n"
            for n, t, k, p, s, c, a in rows)
    return text.encode()
