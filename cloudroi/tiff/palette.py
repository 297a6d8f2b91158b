"""The ColorMap tag (320) of a paletted image as an RGBA table (and MinIsWhite's grey one).

TIFF stores a palette as three runs of 2**BitsPerSample 16-bit values (all reds, all greens, all
blues). GDAL presents it as 8-bit RGBA entries, alpha 255, dividing by a factor it detects: 1
when every value is below 256 (files that wrote 8-bit values as they are), 256 when every value
is a multiple of 256, else 257 (65535 -> 255), with integer division; the entry of the nodata
value (GDAL_NODATA) gets alpha 0. The same rules here give the table rasterio's ``colormap(1)``
returns for the same file. Pure: no I/O.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["json_number", "palette_json", "palette_table"]

#: Bits per sample of the paletted images rendered through their palette (uint8, uint16).
PALETTE_BITS = (8, 16)


def palette_table(
    raw: bytes | None,
    byteorder: str,
    photometric: int,
    samples: int,
    bits: int,
    nodata: float | int | None = None,
) -> npt.NDArray[np.uint8] | None:
    """The palette as a (2**bits, 4) uint8 RGBA table, or None when the image is not a
    1-band uint8/uint16 image with a ColorMap of 3 x 2**bits values, nor a MinIsWhite one.

    As GDAL's GTiff driver: a ColorMap makes the band paletted whatever the photometric
    interpretation says (GDAL writes MinIsBlack beside a ColorMap when a colour table is set
    on a file created without ``PHOTOMETRIC=PALETTE``), and a MinIsWhite band without one
    gets an inverted grey table, ``255 * (n - 1 - i) // (n - 1)``, without a nodata entry."""
    if samples != 1 or bits not in PALETTE_BITS:
        return None
    entries = 1 << bits
    if raw is None:
        if photometric != 0:
            return None
        grey = (255 * (entries - 1 - np.arange(entries, dtype=np.int64))) // (entries - 1)
        inverted = np.full((entries, 4), 255, dtype=np.uint8)
        inverted[:, :3] = grey.astype(np.uint8)[:, None]
        return inverted
    if len(raw) != 3 * entries * 2:
        return None
    values = np.frombuffer(raw, dtype=np.dtype(byteorder + "u2")).reshape(3, entries)
    if int(values.max()) < 256:
        divisor = 1
    elif not np.any(values % 256):
        divisor = 256
    else:
        divisor = 257
    table = np.full((entries, 4), 255, dtype=np.uint8)
    table[:, :3] = (values // divisor).T.astype(np.uint8)
    if nodata is not None and float(nodata).is_integer() and 0 <= nodata < entries:
        table[int(nodata), 3] = 0
    return table


def json_number(value: float | int | None) -> float | int | str | None:
    """A number for JSON: nan/inf as strings (JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def palette_json(table: npt.NDArray[np.uint8]) -> dict[str, list[int]]:
    """A palette as JSON: value -> [r, g, b, a], trailing opaque-black entries left out (a
    16-bit palette rarely uses most of its 65536 rows)."""
    used = np.flatnonzero(np.any(table != (0, 0, 0, 255), axis=1))
    end = int(used[-1]) + 1 if used.size else 1
    return {str(v): [int(c) for c in table[v]] for v in range(end)}
