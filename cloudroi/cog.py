"""A small writer of Cloud-Optimized GeoTIFFs, laid out the way GDAL's COG driver lays them out.

Used for the bundled sample image and by tests that need a COG without GDAL. Layout (GDAL's
``doc/source/drivers/raster/cog.rst``): TIFF header, the ghost area of structural metadata,
every IFD with its tag arrays (full resolution first, masks right after their image, then
overviews), then the tile data, smallest overview first, each tile preceded by its size as a
little-endian uint32 and followed by a repeat of its last 4 bytes. Classic TIFF, little-endian,
chunky, tiled.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import imagecodecs
import numpy as np
import numpy.typing as npt

__all__ = ["write_cog"]

_COMPRESSION = {"none": 1, "lzw": 5, "deflate": 8, "zstd": 50000}


def _encode(block: npt.NDArray[Any], compression: str, predictor: int) -> bytes:
    """Encode one (rows, cols, samples) tile."""
    arr = np.ascontiguousarray(block)
    if predictor == 2:
        arr = imagecodecs.delta_encode(arr, axis=-2)
    elif predictor == 3:
        arr = imagecodecs.floatpred_encode(arr, axis=-2)
    raw = np.ascontiguousarray(arr).tobytes()
    if compression == "none":
        return raw
    if compression == "deflate":
        return bytes(imagecodecs.zlib_encode(raw, level=6))
    if compression == "zstd":
        return bytes(imagecodecs.zstd_encode(raw, level=9))
    if compression == "lzw":
        return bytes(imagecodecs.lzw_encode(raw))
    raise ValueError(f"compression {compression!r}")


@dataclass
class _Page:
    data: npt.NDArray[Any]  # (rows, cols, samples)
    subfile: int
    tile: int
    compression: str
    predictor: int
    tiles: list[bytes] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    #: ExtraSamples values (None: an RGBA uint8 image's 4th band is alpha, nothing else said)
    extra_samples: list[int] | None = None
    #: the ColorMap tag's values (red, green then blue, 16 bits each) of a paletted image
    palette: list[int] | None = None


def _tiles(page: _Page, fill: Any) -> list[bytes]:
    h, w, s = page.data.shape
    t = page.tile
    out = []
    for r in range(0, h, t):
        for c in range(0, w, t):
            block = np.full((t, t, s), fill, dtype=page.data.dtype)
            part = page.data[r : r + t, c : c + t]
            block[: part.shape[0], : part.shape[1]] = part
            out.append(_encode(block, page.compression, page.predictor))
    return out


def _sample_format(dtype: np.dtype[Any]) -> int:
    return {"u": 1, "i": 2, "f": 3}[dtype.kind]


def _geokeys(epsg: int) -> list[int]:
    geographic = epsg == 4326 or 4000 <= epsg < 5000
    keys = [(1024, 0, 1, 2 if geographic else 1), (1025, 0, 1, 1)]
    keys.append((2048, 0, 1, epsg) if geographic else (3072, 0, 1, epsg))
    out = [1, 1, 0, len(keys)]
    for k in keys:
        out.extend(k)
    return out


def _ifd_entries(
    page: _Page, first: bool, extra: dict[int, tuple[int, Sequence[Any] | bytes]]
) -> dict[int, tuple[int, Sequence[Any] | bytes]]:
    h, w, s = page.data.shape
    dt = page.data.dtype
    entries: dict[int, tuple[int, Sequence[Any] | bytes]] = {
        254: (4, [page.subfile]),
        256: (3 if w < 65536 else 4, [w]),
        257: (3 if h < 65536 else 4, [h]),
        258: (3, [dt.itemsize * 8] * s),
        259: (3, [_COMPRESSION[page.compression]]),
        262: (3, [4 if page.subfile & 4 else (2 if s in (3, 4) and dt == np.uint8 else 1)]),
        277: (3, [s]),
        284: (3, [1]),
        322: (3, [page.tile]),
        323: (3, [page.tile]),
        324: (4, page.offsets),
        325: (4, [len(t) for t in page.tiles]),
        339: (3, [_sample_format(dt)] * s),
    }
    if page.predictor != 1:
        entries[317] = (3, [page.predictor])
    if page.palette is not None and not page.subfile & 4:
        entries[262] = (3, [3])
        entries[320] = (3, page.palette)
    if page.extra_samples is not None:
        if page.extra_samples and not page.subfile & 4:
            entries[338] = (3, page.extra_samples)
    elif s == 4 and dt == np.uint8 and not page.subfile & 4:
        entries[338] = (3, [2])  # unassociated alpha
    if first:
        entries.update(extra)
    return entries


_TYPE_FMT = {1: "B", 2: "B", 3: "H", 4: "I", 7: "B", 12: "d"}


def _pack_value(typ: int, value: Sequence[Any] | bytes) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    return struct.pack(f"<{len(value)}{_TYPE_FMT[typ]}", *value)


Extra = dict[int, tuple[int, Sequence[Any] | bytes]]


def write_cog(
    data: npt.NDArray[Any],
    *,
    tile: int = 256,
    compression: str = "deflate",
    predictor: int = 1,
    overviews: int | None = None,
    nodata: float | None = None,
    mask: npt.NDArray[Any] | None = None,
    epsg: int | None = None,
    transform: tuple[float, float, float, float, float, float] | None = None,
    leader: bool = True,
    alpha: bool | None = None,
    extra_tags: Extra | None = None,
    palette: npt.NDArray[np.uint8] | None = None,
) -> bytes:
    """Encode ``data`` ((bands, rows, cols) or (rows, cols)) as a COG and return its bytes.

    ``overviews`` levels are made by nearest decimation by 2, 4, ...; by default until the level
    fits one tile. ``mask`` (rows, cols; nonzero = valid) adds a GDAL internal 8-bit mask with
    its own overviews. ``transform`` is GDAL-order (x0, dx, 0, y0, 0, dy) for a north-up grid.
    ``alpha``: whether the last band is an (unassociated) alpha band, the other bands beyond
    the colour ones being declared unspecified extra samples (None: a 4-band uint8 image's
    last band is alpha). ``extra_tags`` ({tag: (TIFF type, values)}) go into the first IFD,
    over the georeferencing made from ``transform``, ``epsg`` and ``nodata``. ``palette``
    ((2**bits, 4) RGBA) makes a 1-band uint8/uint16 image paletted, as GDAL writes one (each
    component times 257).
    """
    arr = np.asarray(data)
    if arr.ndim == 2:
        arr = arr[np.newaxis]
    chunky = np.ascontiguousarray(np.moveaxis(arr, 0, -1))
    if overviews is None:
        overviews = 0
        while max(chunky.shape[:2]) >> overviews > tile:
            overviews += 1
    pages = _pages(chunky, tile, compression, predictor, overviews, mask)
    _describe_samples(pages, chunky, alpha, palette)
    fill = nodata if nodata is not None else 0
    for page in pages:
        page.tiles = _tiles(page, fill if not page.subfile & 4 else 0)
    extra = {**_georeferencing(transform, epsg, nodata), **(extra_tags or {})}
    ghost = _ghost(leader)
    header_len = 8 + len(ghost)
    ifd_at, data_start = _layout(pages, header_len, extra, leader)
    out = bytearray(b"II*\x00" + struct.pack("<I", header_len) + ghost)
    for i, page in enumerate(pages):
        nxt = ifd_at[i + 1] if i + 1 < len(pages) else 0
        blob = _ifd_blob(page, extra if i == 0 else {}, ifd_at[i], nxt)
        assert len(out) == ifd_at[i]
        out += blob + (b"\x00" if len(blob) % 2 else b"")
    assert len(out) == data_start
    for page in reversed(pages):  # smallest overview first, as GDAL writes them
        for t in page.tiles:
            out += struct.pack("<I", len(t)) + t + t[-4:] if leader else t
    return bytes(out)


def _pages(
    chunky: npt.NDArray[Any],
    tile: int,
    compression: str,
    predictor: int,
    overviews: int,
    mask: npt.NDArray[Any] | None,
) -> list[_Page]:
    """Full resolution, then each overview (nearest decimation), each followed by its mask."""
    pages: list[_Page] = []
    for level in range(overviews + 1):
        f = 1 << level
        pages.append(_Page(chunky[::f, ::f], 0 if level == 0 else 1, tile, compression, predictor))
        if mask is not None:
            m = (np.asarray(mask)[::f, ::f] != 0).astype(np.uint8)[:, :, np.newaxis] * 255
            pages.append(_Page(m, 4 if level == 0 else 5, tile, "deflate", 1))
    return pages


def _describe_samples(
    pages: list[_Page],
    chunky: npt.NDArray[Any],
    alpha: bool | None,
    palette: npt.NDArray[np.uint8] | None,
) -> None:
    """Set every page's ExtraSamples (when ``alpha`` says) and ColorMap (with ``palette``)."""
    samples = None if alpha is None else _extra_samples(chunky.shape[2], chunky.dtype, alpha)
    values = None
    if palette is not None:
        values = (np.asarray(palette)[:, :3].T.astype(np.uint16) * 257).ravel().tolist()
    for page in pages:
        page.extra_samples = samples
        page.palette = values


def _extra_samples(samples: int, dtype: np.dtype[Any], alpha: bool) -> list[int]:
    """ExtraSamples of an image page: the samples beyond its photometric's colour ones."""
    colour = 3 if samples in (3, 4) and dtype == np.uint8 else 1
    extra = [0] * (samples - colour)
    if alpha and extra:
        extra[-1] = 2  # unassociated alpha
    return extra


def _georeferencing(
    transform: tuple[float, float, float, float, float, float] | None,
    epsg: int | None,
    nodata: float | None,
) -> Extra:
    """GeoTIFF and GDAL tags of the first IFD."""
    extra: Extra = {}
    if transform is not None:
        x0, dx, _, y0, _, dy = transform
        extra[33550] = (12, [dx, -dy, 0.0])
        extra[33922] = (12, [0.0, 0.0, 0.0, x0, y0, 0.0])
    if epsg is not None:
        extra[34735] = (3, _geokeys(epsg))
    if nodata is not None:
        text = "nan" if np.isnan(nodata) else repr(float(nodata)).removesuffix(".0")
        extra[42113] = (2, text.encode() + b"\x00")
    return extra


def _ghost(leader: bool) -> bytes:
    """GDAL's structural metadata block, right after the TIFF header."""
    lines = [
        "LAYOUT=IFDS_BEFORE_DATA",
        "BLOCK_ORDER=ROW_MAJOR",
        "BLOCK_LEADER=SIZE_AS_UINT4" if leader else "BLOCK_LEADER=NONE",
        "BLOCK_TRAILER=LAST_4_BYTES_REPEATED" if leader else "BLOCK_TRAILER=NONE",
        "KNOWN_INCOMPATIBLE_EDITION=NO",
    ]
    body = "\n".join(lines) + "\n "
    return f"GDAL_STRUCTURAL_METADATA_SIZE={len(body):06d} bytes\n{body}".encode()


def _ifd_blob(page: _Page, extra: Extra, at: int, next_ifd: int) -> bytes:
    """One IFD at offset ``at`` with its out-of-line values right after its entry table."""
    entries = sorted(_ifd_entries(page, bool(extra), extra).items())
    n = len(entries)
    table_end = at + 2 + 12 * n + 4
    values = b""
    table = struct.pack("<H", n)
    for tag, (typ, value) in entries:
        packed = _pack_value(typ, value)
        count = len(value)
        if len(packed) <= 4:
            table += struct.pack("<HHI", tag, typ, count) + packed.ljust(4, b"\x00")
        else:
            if (table_end + len(values)) % 2:
                values += b"\x00"
            table += struct.pack("<HHII", tag, typ, count, table_end + len(values))
            values += packed
    table += struct.pack("<I", next_ifd)
    return table + values


def _layout(
    pages: list[_Page], header_len: int, extra: Extra, leader: bool
) -> tuple[list[int], int]:
    """Where each IFD goes and where the tile data starts; sets every page's tile offsets."""
    for page in pages:  # placeholder offsets so the arrays have their final size
        page.offsets = [0] * len(page.tiles)
    ifd_at = []
    at = header_len
    for i, page in enumerate(pages):
        ifd_at.append(at)
        size = len(_ifd_blob(page, extra if i == 0 else {}, at, 0))
        at += size + (size % 2)
    cursor = at
    for page in reversed(pages):
        for j, t in enumerate(page.tiles):
            cursor += 4 if leader else 0
            page.offsets[j] = cursor
            cursor += len(t) + (4 if leader else 0)
    return ifd_at, at
