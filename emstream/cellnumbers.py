"""Numbers as tables write them: a semicolon table's decimal comma, digit grouping as
spreadsheets write big numbers, percentages, and the words that stand for a missing value.

:func:`grouping_of` tells from a value column's first cells which character groups its digits;
:func:`regrouped` and :func:`ungrouped` turn a cell into a number with a decimal point;
:func:`numberish` says whether a cell is a number as some table writes one.

Example
-------
>>> from emstream.cellnumbers import grouping_of, regrouped
>>> cells = [b"856", b"912"] + [b"1.%03d" % i for i in range(100, 110)]   # German #.##0
>>> mark = grouping_of(cells, b";")
>>> mark, regrouped(b"1.234", mark.encode())
('.', b'1234')
"""

from __future__ import annotations

import re

import numpy as np

# Fields that stand for a missing value, not for text (R's NA, spreadsheets' #N/A, ...).
MISSING = frozenset((b"na", b"n/a", b"#n/a", b"null", b"none", b"-", b"?"))

# Digit grouping as spreadsheets write big numbers: 1,234.5 (a quoted cell of a comma table; a
# cell of a tab or whitespace table), 1.234,5 (a cell of a semicolon table, where the comma is
# the decimal mark).  Without it every value from 1,000 up was rejected as non-numeric and the
# model learned the small ones alone (or the column was taken for text).
COMMA_GROUPED = re.compile(rb"[+-]?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d*)?")
DOT_GROUPED = re.compile(rb"[+-]?[1-9]\d{0,2}(?:\.\d{3})+(?:,\d*)?")


def ungrouped(field: bytes, sep: bytes | None) -> bytes:
    """A cell's number without its digit grouping, where it cannot be read otherwise: commas
    between groups of three digits before a decimal point (``1,234.5``) or two or more of
    them (``1,234,567``); in a semicolon table, whose comma is the decimal mark, dots so
    (``1.234,5``, ``1.234.567``).  ``sep``: the table's separator (None: whitespace).  One
    separator alone is left as it is: ``"1,234"`` may be a decimal comma (pandas'
    ``to_csv(decimal=",")`` quotes ``"0,125"``), ``1.234`` a decimal point.

    >>> ungrouped(b"1,234.5", b","), ungrouped(b"1.234,5", b";"), ungrouped(b"1,234", b",")
    (b'1234.5', b'1234,5', b'1,234')
    """
    mark, point = (b".", b",") if sep == b";" else (b",", b".")
    if mark in field and (point in field or field.count(mark) > 1) and (
            DOT_GROUPED if sep == b";" else COMMA_GROUPED).fullmatch(field):
        return field.replace(mark, b"")
    return field


# One group of three digits after a first of one to three: 1,234 or 1.234, which is a number
# with grouping in a column of whole numbers (Excel's #,##0) and a decimal one in others.
ONE_GROUP = {b",": re.compile(rb"[+-]?[1-9]\d{0,2},\d{3}"),
              b".": re.compile(rb"[+-]?[1-9]\d{0,2}\.\d{3}")}
WHOLE = re.compile(rb"[+-]?\d+")
# Cells with one separator before exactly three digits that say a column groups digits with it
# (beside whole numbers): a few could be decimals that happen to have three places (1.250
# beside 2, in a live stream's first block: read a thousand times too large); so many,
# every one with three places, are not (a spreadsheet's General format drops trailing zeros).
GROUPED_CELLS = 10


def grouping_of(cells: list, sep: bytes | None) -> str:
    """The character a value column's first cells group digits with, or ``""``: one that a
    cell groups with unambiguously (:func:`ungrouped`: ``1,234.5`` or, in a semicolon
    table, ``1.234,5``), or the one that is not the table's decimal mark (the comma in a
    semicolon table, else the point) where it only ever stands before three digits, in a
    column that also holds whole numbers (``856``, ``1.234``, ``12.345``: Excel's ``#.##0``
    saved in German), in :data:`GROUPED_CELLS` cells or more, whose decimal reading would
    lie far below those whole numbers."""
    cells = [c[:-1].rstrip() if c.endswith(b"%") else c
             for c in cells if c and c.lower() not in MISSING]
    for mark, point, grouped in ((b",", b".", COMMA_GROUPED), (b".", b",", DOT_GROUPED)):
        if any(mark in c and (point in c or c.count(mark) > 1) and grouped.fullmatch(c)
               for c in cells):
            return mark.decode()
    mark = b"." if sep == b";" else b","
    marked = [c for c in cells if mark in c]
    whole = [abs(float(c)) for c in cells if WHOLE.fullmatch(c)]
    if len(marked) >= GROUPED_CELLS and whole and all(
            ONE_GROUP[mark].fullmatch(c) for c in marked):
        # Read as decimals, such cells would lie far below the whole numbers beside them
        # (1.234 beside 856): grouping.  Decimals beside a few whole numbers of their own size
        # (36.963 beside 12) are decimals.
        decimals = [abs(float(c.replace(mark, b"."))) for c in marked]
        if 10.0 * float(np.median(decimals)) < float(np.median(whole)):
            return mark.decode()
    return ""


def regrouped(field: bytes, mark: bytes) -> bytes:
    """A cell of a column that groups digits with ``mark`` (:func:`grouping_of`), as a number
    with a decimal point: ``1,234`` (mark ``,``) 1234, ``1.234,5`` (mark ``.``) 1234.5."""
    if mark in field and (COMMA_GROUPED if mark == b"," else DOT_GROUPED).fullmatch(field):
        field = field.replace(mark, b"")
        return field if mark == b"," else field.replace(b",", b".")
    return field


def numberish(field: bytes, sep: bytes | None) -> bool:
    """Whether a cell is a number as some table writes one: with a decimal comma (in a
    semicolon table), or digit grouping (:func:`grouping_of`)."""
    if field.endswith(b"%"):  # (54.0%: a percentage as spreadsheets format one)
        field = field[:-1].rstrip()
    return (is_number(field.replace(b",", b".") if sep == b";" else field)
            or COMMA_GROUPED.fullmatch(field) is not None
            or DOT_GROUPED.fullmatch(field) is not None)


def is_number(field: bytes) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True
