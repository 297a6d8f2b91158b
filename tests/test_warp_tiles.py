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

import numpy as np
import pytest
import rasterio

from cloudroi import warp as W
from tests.warp_data import KERNELS, TILES, TMS, open_source, tile_vs_rio_tiler

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


def _sweep() -> list[tuple[str, tuple[int, int, int]]]:
    """Tiles drawn at random (fixed seed) around each file, over its zoom range and one level
    of overzoom: the long run's wider check."""
    rng = np.random.default_rng(12)
    centres = {
        "utm": (14.9, 45.5, 9, 16),
        "wgs84": (10.0, 35.0, 4, 9),
        "polar": (0.0, -80.0, 1, 5),
        "antimeridian": (179.9, -10.0, 3, 8),
        "world": (0.0, 0.0, 1, 5),
    }
    out = []
    for key, (lon, lat, z0, z1) in centres.items():
        for _ in range(12):
            z = int(rng.integers(z0, z1 + 1))
            spread = min(360.0 / 2**z * 2, 40.0)
            tlon = (lon + rng.uniform(-spread, spread) + 180.0) % 360.0 - 180.0
            tlat = float(np.clip(lat + rng.uniform(-spread, spread), -85.0, 85.0))
            t = TMS.tile(tlon, tlat, z)
            out.append((key, (z, t.x, t.y)))
    return out


SWEEP = _sweep()


@pytest.mark.slow
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize(("key", "zxy"), SWEEP, ids=[f"{k}-{z}/{x}/{y}" for k, (z, x, y) in SWEEP])
def test_random_tiles_match_rio_tiler(
    warp_files: dict[str, Path], key: str, zxy: tuple[int, int, int], kernel: str
) -> None:
    z, x, y = zxy
    src = open_source(warp_files[key])
    if not W.tile_exists(TMS, src.grid, x, y, z):
        pytest.skip("outside the file")
    a = tile_vs_rio_tiler(warp_files[key], z, x, y, kernel)  # type: ignore[arg-type]
    assert a.missing == 0, "a kernel tap fell outside the planned source windows"
    assert a.mask_diff_inner == 0, a.row()
    if kernel == "nearest":
        assert a.identical >= 0.995, a.row()
    elif kernel != "average":
        assert a.mean_diff <= 0.5, a.row()
    if GDAL_310:
        assert a.identical >= 0.997, a.row()
        assert a.max_diff <= 1, a.row()


IO_CASES = [(key, zxy, k, k) for key, zxy in TILES[::3] for k in ("bilinear", "cubic")] + [
    ("equator", (7, x, 64), k, io)
    for x in (67, 68)
    for k in ("nearest", "bilinear")
    for io in ("nearest", "bilinear")
]


@pytest.mark.parametrize(
    ("key", "zxy", "kernel", "io"),
    IO_CASES,
    ids=[f"{key}-{z}/{x}/{y}-{k}-io_{io}" for key, (z, x, y), k, io in IO_CASES],
)
def test_tile_with_another_io_resampling_matches_rio_tiler(
    warp_files: dict[str, Path], key: str, zxy: tuple[int, int, int], kernel: str, io: str
) -> None:
    """``tile(resampling_method=io, reproject_method=kernel)``: the RasterIO resampling sets
    the overview threshold (1.2 for nearest, 1.01 otherwise), not the warp. The equator file's
    zoom-7 tiles need a 3.6x reduction: nearest reads the 4x overview, bilinear the 2x one."""
    z, x, y = zxy
    if key == "equator":
        src = open_source(warp_files[key])
        level = W.tile_level(src.grid, src.levels, W.tile_grid(TMS, x, y, z), io)
        assert level == (2 if io == "nearest" else 1)
    a = tile_vs_rio_tiler(warp_files[key], z, x, y, kernel, io=io)  # type: ignore[arg-type]
    assert a.missing == 0
    assert a.mask_diff_inner == 0, a.row()
    assert a.mean_diff <= 0.5, a.row()
    if GDAL_310:
        assert a.identical >= 0.9999, a.row()
        assert a.max_diff <= 1, a.row()
        assert a.mask_diff == 0, a.row()
