"""cloudroi.warp's regions against ``rasterio.warp.reproject`` of the same level (one chunk).

Each region of ``REGIONS`` (tests/warp_data.py) with each kernel at the level gdalwarp -ovr AUTO
picks (and, marked slow, at level 0 too). The same requirements as the tiles; with GDAL 3.10 the
measured bounds: bit-identical except average at two singular places -- pixels whose corner
falls exactly on +/-180 (PROJ answers -180 where GDAL takes +180) or whose centre sits on the
edge of the box in the antimeridian rule (docs/warp.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


@pytest.mark.parametrize("nodata", [float("nan"), -9999.0, None], ids=["nan", "-9999", "none"])
def test_nan_and_inf_pixels_reach_what_gdal_reaches(nodata: float | None, tmp_path: Path) -> None:
    """float32 NaN pixels (isolated and a 6 x 7 cluster) and infinities warped to Web
    Mercator at four resolutions with every kernel, against ``reproject``: NaN where GDAL has
    NaN and nowhere else, other values (infinities included) bit for bit. NaN as nodata is
    skipped; a valid NaN reaches each output that takes it as a tap (weight 0 included) and
    no other: it once spread through products by a weight of 0, a summed-area table's running
    totals, and stand-ins for taps outside the window. GDAL's cubic (a polynomial of tap
    differences) and average (a compensated sum) turn an infinity into NaN."""
    import numpy as np
    from affine import Affine
    from rasterio.warp import transform_bounds

    from tests.warp_data import open_source, quiet, write_cog

    yy, xx = np.mgrid[0:256, 0:256].astype(np.float64)
    base = (100 + 50 * np.sin(xx / 17) * np.cos(yy / 23) + 0.3 * xx).astype(np.float32)
    for r, c in ((20, 30), (64, 200), (128, 128), (190, 45), (230, 230), (100, 10), (0, 255)):
        base[r, c] = np.nan
    base[150:156, 160:167] = np.nan
    base[40, 100] = base[200, 180] = np.inf  # infinities: times 0, or beside a later term, NaN
    base[41, 102] = base[90, 240] = -np.inf
    crs, transform = "EPSG:32633", Affine(30.0, 0.0, 500000.0, 0.0, -30.0, 5000000.0)
    path = tmp_path / "nan.tif"
    with quiet():
        write_cog(path, base[None].copy(), crs, transform, nodata)
        src = open_source(path)
        bounds = transform_bounds(crs, "EPSG:3857", 500000, 5000000 - 7680, 507680, 5000000)
    for res in (20.0, 42.0, 110.0, 300.0):
        dst = W.Grid.from_resolution("EPSG:3857", bounds, res)
        for kernel in KERNELS:
            got, ref, share = _band_vs_reproject(src, dst, kernel)
            what = f"{nodata} {res} {kernel}"
            assert share > 0.5, what
            np.testing.assert_array_equal(np.isnan(got), np.isnan(ref), err_msg=what)
            if nodata is None or not np.isnan(nodata):
                assert np.isnan(ref).any(), what  # the case is there to see
            np.testing.assert_array_equal(got, ref, err_msg=what)


def test_infinities_in_large_average_boxes_and_float64_cubic(tmp_path: Path) -> None:
    """Average boxes over 4 pixels (the summed-area table) keep an infinity when it is the
    last *valid* pixel GDAL sums (a nodata checkerboard), NaN otherwise; float64 cubic keeps
    infinities (only float32's polynomial turns them into NaN). Against ``reproject``."""
    import numpy as np
    from affine import Affine
    from rasterio.warp import transform_bounds

    from tests.warp_data import open_source, quiet, write_cog

    yy, xx = np.mgrid[0:256, 0:256]
    board = (100 + 0.3 * xx + 0.1 * yy).astype(np.float32)
    board[(yy + xx) % 2 == 1] = -9999.0
    board[5:256:23, 7:256:29] = np.where(
        (yy[5:256:23, 7:256:29] + xx[5:256:23, 7:256:29]) % 2 == 0, np.inf, -9999.0
    )
    wide = (100 + 50 * np.sin(xx / 17) + 0.3 * yy).astype(np.float64)
    wide[64, 200] = np.inf
    wide[150, 160] = -np.inf
    crs, transform = "EPSG:32633", Affine(30.0, 0.0, 500000.0, 0.0, -30.0, 5000000.0)
    with quiet():
        bounds = transform_bounds(crs, "EPSG:3857", 500000, 5000000 - 7680, 507680, 5000000)
    for name, data, nodata, kernel, res in (
        ("board", board, -9999.0, "average", 300.0),
        ("wide", wide, None, "cubic", 20.0),
    ):
        path = tmp_path / f"{name}.tif"
        with quiet():
            write_cog(path, data[None].copy(), crs, transform, nodata)
            src = open_source(path)
        dst = W.Grid.from_resolution("EPSG:3857", bounds, res)
        got, ref, _ = _band_vs_reproject(src, dst, kernel)
        what = f"{name} {kernel} {res}"
        assert np.isinf(ref).any(), what
        np.testing.assert_array_equal(np.isnan(got), np.isnan(ref), err_msg=what)
        np.testing.assert_array_equal(np.isinf(got), np.isinf(ref), err_msg=what)
        # float64 cubic's finite values: GDAL's float64 path sums in another order (1e-13)
        np.testing.assert_allclose(got, ref, rtol=1e-12, equal_nan=True, err_msg=what)


def _band_vs_reproject(src: Any, dst: W.Grid, kernel: W.Resampling) -> tuple[Any, Any, float]:
    """Band 1 of the engine's warp of ``src`` onto ``dst`` and of ``reproject``'s, over the
    pixels both call valid, and the share of the engine's valid pixels those are."""
    import numpy as np

    from tests.warp_data import _reproject, quiet

    plan = W.plan_region(src.grid, src.levels, dst, kernel, block_shape=src.block, level=0)
    mine = W.execute(plan, src.blocks(plan), src_nodata=src.nodata)
    out = np.zeros((2, dst.height, dst.width), src.arrays[0].dtype)
    with quiet():
        _reproject(plan, src, dst, kernel, out)
    both = mine.mask & (out[1] > 0)
    return mine.data[0][both], out[0][both], float(both.sum() / max(1, mine.mask.sum()))
