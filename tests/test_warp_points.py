"""Points: GDAL's pixel-edge convention, compared with rasterio's ``index()``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.warp

from cloudroi import warp as W
from tests.warp_data import open_source, quiet


@pytest.mark.parametrize("key", ["utm", "wgs84", "polar", "antimeridian"])
def test_edges_half_pixels_and_random_points_match_rasterio_index(
    warp_files: dict[str, Path], key: str
) -> None:
    g = open_source(warp_files[key]).grid
    rng = np.random.default_rng(0)
    cols = np.concatenate([np.arange(0, g.width, 97), rng.uniform(0, g.width, 200)])
    rows = np.concatenate([np.arange(0, g.height, 89), rng.uniform(0, g.height, 200)])
    with quiet(), rasterio.open(warp_files[key]) as ds:
        for c, r in zip(cols, rows, strict=False):
            for dc, dr in ((0.0, 0.0), (0.5, 0.5), (1e-9, 0.0), (0.0, -1e-9)):
                x, y = g.to_xy(np.array([c + dc]), np.array([r + dr]))
                px, py = float(x[0]), float(y[0])
                assert W.point_index(g, px, py) == ds.index(px, py), (c + dc, r + dr)


def test_a_point_on_an_edge_belongs_right_and_below(warp_files: dict[str, Path]) -> None:
    g = open_source(warp_files["utm"]).grid
    x0, dx, _, y0, _, dy = g.transform
    assert W.point_index(g, x0 + 10 * dx, y0 + 20 * dy) == (20, 10)
    assert W.point_index(g, x0 + 10 * dx - 1e-6, y0 + 20 * dy + 1e-6) == (19, 9)
    assert W.point_index(g, x0 - dx / 2, y0) == (0, -1)  # outside: the caller checks


@pytest.mark.parametrize(("lon", "lat"), [(14.9, 45.5), (14.80001, 45.41), (15.02, 45.59)])
def test_a_point_in_another_crs(warp_files: dict[str, Path], lon: float, lat: float) -> None:
    g = open_source(warp_files["utm"]).grid
    with quiet(), rasterio.open(warp_files["utm"]) as ds:
        x, y = rasterio.warp.transform("EPSG:4326", ds.crs, [lon], [lat])
        assert W.point_index(g, lon, lat, "EPSG:4326") == ds.index(x[0], y[0])


def test_a_point_outside_the_projection_is_refused() -> None:
    g = W.Grid("EPSG:32633", (480000.0, 10.0, 0.0, 5050000.0, 0.0, -10.0), 2048, 2048)
    with pytest.raises(W.WarpError):
        W.point_index(g, 0.0, 95.0, "EPSG:4326")
