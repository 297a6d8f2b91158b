"""What a ``Range`` request header asks of an object of a given size (RFC 9110 14.1.2), as the
test server reads it."""

from __future__ import annotations

import re

__all__ = ["parse_range", "parse_ranges"]

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_ranges(header: str, size: int) -> list[tuple[int, int]] | None:
    """Inclusive (first, last) of each range of a (multi-)range header, None when any is
    unsatisfiable or odd."""
    spec = header.strip()
    if not spec.startswith("bytes="):
        return None
    out = []
    for part in spec[len("bytes=") :].split(","):
        rng = parse_range("bytes=" + part.strip(), size)
        if rng is None:
            return None
        out.append(rng)
    return out


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """Inclusive (first, last) of a single-range header, None when unsatisfiable or odd."""
    m = _RANGE.match(header.strip())
    if m is None:
        return None
    a, b = m.group(1), m.group(2)
    if a == "" and b == "":
        return None
    if a == "":
        n = int(b)
        if n == 0:
            return None
        return max(0, size - n), size - 1
    first = int(a)
    last = size - 1 if b == "" else min(int(b), size - 1)
    if first >= size or last < first:
        return None
    return first, last
