"""Print the agreement of cloudroi.warp with GDAL on every case of the warp tests, as markdown
(docs/warp.md quotes it): ``.venv/bin/python -m tests.warp_report [DIR]`` (the COGs are written
into DIR, a temporary directory by default)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from tests.warp_data import (
    DOWNSAMPLED,
    HEADER,
    KERNELS,
    REGIONS,
    TILES,
    Agreement,
    build,
    region_vs_gdalwarp,
    region_vs_reproject,
    tile_vs_rio_tiler,
)


def _summary(rows: list[Agreement]) -> None:
    print("| kernel | runs | bit-identical | min identical % | differing px | max diff |")
    print("|---|---|---|---|---|---|")
    for k in KERNELS:
        rs = [r for r in rows if r.kernel == k]
        same = sum(r.differing == 0 and r.mask_diff == 0 for r in rs)
        print(
            f"| {k} | {len(rs)} | {same} | {100 * min(r.identical for r in rs):.3f} | "
            f"{sum(r.differing for r in rs)} | {max(r.max_diff for r in rs)} |"
        )
    print(
        f"\nmask diffs: {sum(r.mask_diff for r in rows)} "
        f"(>1 px from an edge: {sum(r.mask_diff_inner for r in rows)}); "
        f"missing taps: {sum(r.missing for r in rows)}\n"
    )


def main(directory: Path) -> None:
    files = build(directory)
    rows: list[Agreement] = []

    def emit(a: Agreement) -> None:
        rows.append(a)
        print(a.row(), flush=True)

    print("### Tiles vs rio-tiler `Reader.tile()` (256 x 256, WebMercatorQuad)\n")
    print(HEADER)
    for key, (z, x, y) in TILES:
        for k in KERNELS:
            emit(tile_vs_rio_tiler(files[key], z, x, y, k))
    print("\n### Regions vs `rasterio.warp.reproject` (level gdalwarp picks, and level 0)\n")
    print(HEADER)
    for name, key, grid in REGIONS:
        for level in (None, 0):
            label = f"{name} ({'auto' if level is None else 'level 0'})"
            for k in KERNELS:
                emit(region_vs_reproject(files[key], grid, k, level=level, name=label))
    print("\n### Regions vs `gdalwarp -ovr AUTO` (the application)\n")
    print(HEADER)
    for name, key, grid in DOWNSAMPLED + REGIONS:
        for k in KERNELS:
            emit(region_vs_gdalwarp(files[key], grid, k, name))
    print("\n### Summary per kernel\n")
    _summary(rows)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp))
