"""cloudroi.warp's regions against ``rasterio.warp.reproject`` of the same level (one chunk).

Each region of ``REGIONS`` (tests/warp_data.py) with each kernel at the level gdalwarp -ovr AUTO
picks (and, marked slow, at level 0 too). The same requirements as the tiles; with GDAL 3.10 the
measured bounds: bit-identical except average at two singular places -- pixels whose corner
falls exactly on +/-180 (PROJ answers -180 where GDAL takes +180) or whose centre sits on the
edge of the box in the antimeridian rule (docs/warp.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import rasterio

from cloudroi import warp as W
from tests.warp_data import DOWNSAMPLED, KERNELS, REGIONS, region_vs_gdalwarp, region_vs_reproject

GDAL_310 = rasterio.__gdal_version__.startswith("3.10.")

#: measured with GDAL 3.10.3: (fewest identical fraction, largest |diff|)
MEASURED = {
    ("world->EPSG:3031 (pole inside)", "average"): (0.9997, 17),
    ("world->UTM60S (crosses 180)", "average"): (0.9999, 12),
}


def _check(name: str, grid: W.Grid, kernel: str, a: object) -> None:
    from tests.warp_data import Agreement

    assert isinstance(a, Agreement)
    assert a.missing == 0, "a kernel tap fell outside the planned source windows"
    assert a.both > 0, a.row()
    assert a.mask_diff_inner == 0, a.row()
    if kernel == "nearest":
        assert a.identical >= 0.995, a.row()
    elif kernel != "average":
        assert a.mean_diff <= 0.5, a.row()
    if GDAL_310:
        identical, max_diff = MEASURED.get((name, kernel), (1.0, 0))
        assert a.identical >= identical, a.row()
        assert a.max_diff <= max_diff, a.row()
        assert a.mask_diff == 0, a.row()


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize(("name", "key", "grid"), REGIONS, ids=[r[0] for r in REGIONS])
def test_region_matches_reproject(
    warp_files: dict[str, Path], name: str, key: str, grid: W.Grid, kernel: str
) -> None:
    a = region_vs_reproject(warp_files[key], grid, kernel, name=name)  # type: ignore[arg-type]
    _check(name, grid, kernel, a)


@pytest.mark.slow
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize(("name", "key", "grid"), REGIONS, ids=[r[0] for r in REGIONS])
def test_region_at_level_0_matches_reproject(
    warp_files: dict[str, Path], name: str, key: str, grid: W.Grid, kernel: str
) -> None:
    a = region_vs_reproject(warp_files[key], grid, kernel, level=0, name=name)  # type: ignore[arg-type]
    _check(name, grid, kernel, a)


@pytest.mark.parametrize(
    ("kernel", "name", "key", "grid"),
    [(k, *r) for r in DOWNSAMPLED for k in KERNELS]
    + [("nearest", *r) for r in REGIONS]
    + [("average", *r) for r in REGIONS],
    ids=[f"{r[0]}-{k}" for r in DOWNSAMPLED for k in KERNELS]
    + [f"{r[0]}-nearest" for r in REGIONS]
    + [f"{r[0]}-average" for r in REGIONS],
)
def test_region_matches_gdalwarp_ovr_auto(
    warp_files: dict[str, Path], kernel: str, name: str, key: str, grid: W.Grid
) -> None:
    """The level gdalwarp -ovr AUTO picks (GDAL 3.10's rule: 10 x 10 points of the target grid,
    the coarsest overview below ratio + 0.1) and the pixels warped from it."""
    a = region_vs_gdalwarp(warp_files[key], grid, kernel, name)  # type: ignore[arg-type]
    _check(name, grid, kernel, a)
