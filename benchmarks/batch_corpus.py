"""The corpora of the batch benchmarks (benchmarks/batch.py), written by GDAL on first use.

- B1: 8 single-band uint16 COGs (DEFLATE + predictor 2, 256x256 blocks), blocky texture + noise;
- B2: 12 uint16 scenes in UTM 33N at 10 m (DEFLATE, 512x512 blocks, nodata 0 with "cloud"
  patches), each offset by whole pixels from the others, and a STAC ItemCollection of them.

Files go to benchmarks/corpus/batch-<name>/ (git-ignored), with a marker naming what wrote them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
_VERSION = 2

UTM = 32633
X0, Y0 = 500000.0, 4600000.0
RES = 10.0


@dataclass(frozen=True)
class BatchSpec:
    name: str
    files: int
    size: int
    chips: int
    scenes: int
    scene_size: int
    region: int

    @property
    def directory(self) -> Path:
        return HERE / "corpus" / f"batch-{self.name}"


FULL = BatchSpec("full", files=8, size=8192, chips=2000, scenes=12, scene_size=2560, region=2048)
SMOKE = BatchSpec("smoke", files=8, size=1024, chips=48, scenes=4, scene_size=640, region=512)


def _texture(h: int, w: int, seed: int, cell: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(100, 4000, (h // cell + 1, w // cell + 1)).astype(np.uint16)
    big = np.repeat(np.repeat(small, cell, axis=0), cell, axis=1)[:h, :w]
    return big + rng.integers(0, 8, (h, w), dtype=np.uint16)


def _write(path: Path, data: np.ndarray, blocksize: int, **geo: Any) -> None:
    import rasterio
    import rasterio.shutil
    from rasterio.io import MemoryFile

    h, w = data.shape
    profile = {"driver": "GTiff", "width": w, "height": h, "count": 1, "dtype": data.dtype.name}
    profile.update(geo)
    with MemoryFile() as mem:
        with mem.open(**profile) as ds:
            ds.write(data[None])
        with mem.open() as ds:
            rasterio.shutil.copy(
                ds,
                path,
                driver="COG",
                BLOCKSIZE=blocksize,
                COMPRESS="DEFLATE",
                PREDICTOR=2,
                OVERVIEWS="NONE",
            )


def chip_files(spec: BatchSpec) -> list[Path]:
    return [spec.directory / f"chips-{i}.tif" for i in range(spec.files)]


def scene_files(spec: BatchSpec) -> list[Path]:
    return [spec.directory / f"scene-{i:02d}.tif" for i in range(spec.scenes)]


def scene_origin(spec: BatchSpec, i: int) -> tuple[float, float]:
    """Scene ``i``'s top-left corner: whole pixels (up to 1/8 of a scene) from the others."""
    step = max(1, spec.scene_size // 8 // max(1, spec.scenes))
    return X0 + (i * step) * RES, Y0 - ((spec.scenes - i) * step) * RES


def region_bounds(spec: BatchSpec) -> tuple[float, float, float, float]:
    """The B2 region (``region`` x ``region`` pixels), inside every scene."""
    margin = spec.scene_size // 8 + 16
    minx = X0 + margin * RES
    maxy = Y0 - (spec.scene_size // 8 + 16) * RES
    return (minx, maxy - spec.region * RES, minx + spec.region * RES, maxy)


def ensure(spec: BatchSpec) -> None:
    """Write the corpus unless the marker says it is there."""
    from rasterio.transform import Affine

    d = spec.directory
    marker = d / "READY.json"
    want = {"version": _VERSION, **asdict(spec)}
    if marker.exists() and json.loads(marker.read_text()) == want:
        return
    d.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(chip_files(spec)):
        at = Affine(RES, 0, X0, 0, -RES, Y0)
        _write(path, _texture(spec.size, spec.size, i), 256, crs=f"EPSG:{UTM}", transform=at)
    n = spec.scene_size
    for i, path in enumerate(scene_files(spec)):
        data = _texture(n, n, 100 + i, cell=32)
        rng = np.random.default_rng(200 + i)
        for _ in range(6):  # clouds: nodata patches
            r, c = rng.integers(0, n - n // 6, 2)
            data[r : r + n // 6, c : c + n // 5] = 0
        x, y = scene_origin(spec, i)
        geo = {"crs": f"EPSG:{UTM}", "transform": Affine(RES, 0, x, 0, -RES, y), "nodata": 0}
        _write(path, data, 512, **geo)
    marker.write_text(json.dumps(want))


def stac_items(spec: BatchSpec, url_of: dict[str, str]) -> dict[str, Any]:
    """A FeatureCollection of the scenes, each asset ``data`` at ``url_of[file name]``, with
    the projection extension (what stackstac and odc-stac need) and raster:bands nodata."""
    from pyproj import Transformer

    to_lonlat = Transformer.from_crs(UTM, 4326, always_xy=True)
    n = spec.scene_size
    feats = []
    for i, path in enumerate(scene_files(spec)):
        x, y = scene_origin(spec, i)
        w, s, e, nn = to_lonlat.transform_bounds(x, y - n * RES, x + n * RES, y)
        ring = [[w, s], [e, s], [e, nn], [w, nn], [w, s]]
        feats.append(
            {
                "type": "Feature",
                "stac_version": "1.0.0",
                "stac_extensions": [
                    "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
                    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
                ],
                "id": path.stem,
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "bbox": [w, s, e, nn],
                "properties": {
                    "datetime": f"2024-{1 + i % 12:02d}-{1 + i // 12:02d}T10:00:00Z",
                    "proj:epsg": UTM,
                    "proj:code": f"EPSG:{UTM}",
                    "proj:transform": [RES, 0.0, x, 0.0, -RES, y],
                    "proj:shape": [n, n],
                },
                "assets": {
                    "data": {
                        "href": url_of[path.name],
                        "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                        "roles": ["data"],
                        "raster:bands": [{"nodata": 0, "data_type": "uint16"}],
                    }
                },
                "links": [],
            }
        )
    return {"type": "FeatureCollection", "features": feats}
