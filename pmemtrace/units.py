"""Parsing of integers as they appear in case files and on the command line.

Integers may be given as numbers, ``"0x..."`` strings or size strings with a
binary suffix (``"4K"``, ``"2M"``, ``"1G"``, ``"512T"``; ``"2MiB"`` too).
"""

from __future__ import annotations

import re

_SUFFIX = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGTP]?)(?:I?B)?\s*$", re.IGNORECASE)


def parse_int(value: object) -> int:
    """Return *value* as an int, or raise ValueError.

    >>> parse_int("2M"), parse_int("0x200000"), parse_int(4096), parse_int("1GiB")
    (2097152, 2097152, 4096, 1073741824)
    """
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, str):
        raise ValueError(f"expected an integer, got {value!r}")
    s = value.strip()
    if s.lower().startswith(("0x", "-0x")):
        return int(s, 16)
    m = _SIZE_RE.match(s)
    if not m:
        raise ValueError(f"expected a number, 0x... or a size like 2M, got {value!r}")
    return int(m.group(1)) * _SUFFIX[m.group(2).upper()]


def format_size(n: int) -> str:
    """Short binary size: 2097152 -> '2M', 4096 -> '4K', 3000 -> '3000'."""
    for suffix, mult in (("P", 1 << 50), ("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n and n % mult == 0:
            return f"{n // mult}{suffix}"
    return str(n)
