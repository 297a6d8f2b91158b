"""cloudroi.warp's web-map tiles against rio-tiler's ``Reader.tile()`` (GDAL's WarpedVRT).

Every tile of ``TILES`` (tests/warp_data.py) with each kernel. What must hold whatever GDAL
rasterio ships: nearest >= 99.5% identical, bilinear/cubic within 0.5 DN on average, masks
identical away from 1-pixel borders, every kernel tap inside the planned windows. With GDAL 3.10
(the version the engine reproduces) the bounds measured on these files hold too (docs/warp.md):
nearest and cubic bit-identical, bilinear and average off by 1 DN on a few high-latitude pixels
of the global file (exact .5 ties decided by the last bit of a coordinate).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import rasterio

from tests.warp_data import KERNELS, TILES, tile_vs_rio_tiler

GDAL_310 = rasterio.__gdal_version__.startswith("3.10.")

#: measured with GDAL 3.10.3: (fewest identical fraction, largest |diff|) per kernel and file
MEASURED = {
    ("bilinear", "world"): (0.9999, 1),
    ("average", "world"): (0.997, 1),
}


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize(("key", "zxy"), TILES, ids=[f"{k}-{z}/{x}/{y}" for k, (z, x, y) in TILES])
def test_tile_matches_rio_tiler(
    warp_files: dict[str, Path], key: str, zxy: tuple[int, int, int], kernel: str
) -> None:
    z, x, y = zxy
    a = tile_vs_rio_tiler(warp_files[key], z, x, y, kernel)  # type: ignore[arg-type]
    assert a.missing == 0, "a kernel tap fell outside the planned source windows"
    assert a.both > 0, a.row()
    assert a.mask_diff_inner == 0, a.row()
    if kernel == "nearest":
        assert a.identical >= 0.995, a.row()
    elif kernel != "average":
        assert a.mean_diff <= 0.5, a.row()
    if GDAL_310:
        identical, max_diff = MEASURED.get((kernel, key), (1.0, 0))
        assert a.identical >= identical, a.row()
        assert a.max_diff <= max_diff, a.row()
        assert a.mask_diff == 0, a.row()
