"""GDAL's block leader and trailer: where a block lies inside the bytes fetched around it.

GDAL's COG writer (``BLOCK_LEADER=SIZE_AS_UINT4``, ``BLOCK_TRAILER=LAST_4_BYTES_REPEATED`` in the
ghost area) puts each block's byte count in the 4 bytes before its offset and repeats its last 4
bytes after it, so a reader can fetch ``[offset - 4, next block's offset - 4)`` without
TileByteCounts and check what it got. Pure functions over bytes.
"""

from __future__ import annotations

__all__ = ["leader_span", "strip_leader"]


def leader_span(data: bytes | memoryview) -> tuple[int, int] | None:
    """Where the block lies inside a leader range (start, end), or None when the leader and the
    trailer disagree with the data."""
    if len(data) < 8:
        return None
    size = int.from_bytes(data[:4], "little")
    if size < 4 or 4 + size + 4 > len(data):
        return None
    # GDAL's trailer repeats the block's last 4 bytes.
    if data[size : 4 + size] != data[4 + size : 8 + size]:
        return None
    return 4, 4 + size


def strip_leader(data: bytes) -> bytes | None:
    """The block inside a leader range, or None when leader and trailer disagree with the data."""
    span = leader_span(data)
    return None if span is None else data[span[0] : span[1]]
