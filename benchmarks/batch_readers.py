"""What each reader of the batch benchmarks does, on a Dask cluster (benchmarks/batch.py).

Functions run on the client (building graphs) or inside worker processes (tasks); they are in
a module of their own so that Dask workers import them by name.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

Chip = tuple[str, list[int]]  # (url, [col, row, width, height])

# -- per-worker helpers ---------------------------------------------------------------------


def peak_rss() -> int:
    """This process's high-water RSS in bytes (VmHWM)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


#: What each reader imports on the workers (done before the clock starts, for every reader).
WARM = {
    "b1_cloudroi": ["cloudroi.batch.lazy", "cloudroi.xarray.runtime", "dask.array"],
    "b1_rioxarray": ["rioxarray", "rasterio", "dask.array"],
    "b1_tifffile": ["tifffile", "zarr", "fsspec", "aiohttp", "imagecodecs", "dask.array"],
    "b2_cloudroi": [
        "cloudroi.stac.lazy",
        "cloudroi.xarray.runtime",
        "cloudroi.region.georef",
        "cloudroi.warp",
        "xarray",
        "dask.array",
        "pyproj",
    ],
    "b2_stackstac": ["stackstac", "rasterio", "xarray", "dask.array", "pyproj"],
    "b2_stackstac_pieces": ["stackstac", "rasterio", "xarray", "dask.array", "pyproj"],
    "b2_odc": ["odc.stac", "rasterio", "xarray", "dask.array", "pyproj"],
}


WARM["b2_cloudroi_pieces"] = WARM["b2_cloudroi_composite"] = WARM["b2_cloudroi"]


def warm(name: str) -> int:
    import importlib

    for module in WARM.get(name, []):
        importlib.import_module(module)
    return peak_rss()


def cloudroi_opens() -> int:
    from cloudroi.xarray import runtime

    return runtime.counters().opens


# -- B1: chips ------------------------------------------------------------------------------


def b1_cloudroi(chips: list[Chip]) -> np.ndarray:
    from cloudroi.batch.lazy import chips as lazy_chips

    reqs = [{"url": url, "window": win} for url, win in chips]
    arr = lazy_chips(reqs, dtype="uint16", count=1)
    return np.asarray(arr.compute())


def b1_rioxarray(chips: list[Chip]) -> np.ndarray:
    import dask
    import rioxarray

    opened: dict[str, Any] = {}
    parts = []
    for url, (c, r, w, h) in chips:
        if url not in opened:
            chunks = {"band": 1, "y": 256, "x": 256}
            opened[url] = rioxarray.open_rasterio(url, chunks=chunks, lock=False)
        parts.append(opened[url].data[:, r : r + h, c : c + w])
    return np.stack(dask.compute(*parts))


_zarrs: dict[str, Any] = {}
_zlock = threading.Lock()


def _tifffile_array(url: str) -> Any:
    """This process's zarr view of ``url`` (tifffile ``aszarr`` over an fsspec HTTP file)."""
    with _zlock:
        z = _zarrs.get(url)
        if z is None:
            import fsspec
            import tifffile
            import zarr

            fh = fsspec.filesystem("http").open(url, block_size=2**16)
            store = tifffile.imread(fh, aszarr=True)
            z = _zarrs[url] = zarr.open(store, mode="r")
        return z


def tifffile_chip(url: str, win: list[int]) -> np.ndarray:
    c, r, w, h = win
    return np.asarray(_tifffile_array(url)[r : r + h, c : c + w])[None]


def b1_tifffile(chips: list[Chip]) -> np.ndarray:
    import dask

    read = dask.delayed(tifffile_chip, pure=True)
    return np.stack(dask.compute(*(read(url, win) for url, win in chips)))


# -- B2: STAC mean over time ----------------------------------------------------------------


#: B2's chunkings: one chunk per (item, 1024 x 1024 piece), both readers' default; and every
#: item of a piece in one chunk, as stackstac's docs advise for a reduction over time.
PER_ITEM: Any = 1024
PER_PIECE: Any = (-1, 1, 1024, 1024)


def b2_cloudroi(
    items: dict[str, Any], bounds: tuple[float, ...], epsg: int, chunksize: Any = PER_ITEM
) -> np.ndarray:
    from cloudroi.stac.lazy import stack

    arr = stack(items, ["data"], crs=epsg, resolution=10, bounds=bounds, chunksize=chunksize)
    return np.asarray(arr.mean("time").compute())


def b2_cloudroi_pieces(items: dict[str, Any], bounds: tuple[float, ...], epsg: int) -> np.ndarray:
    return b2_cloudroi(items, bounds, epsg, PER_PIECE)


def b2_cloudroi_composite(
    items: dict[str, Any], bounds: tuple[float, ...], epsg: int
) -> np.ndarray:
    from cloudroi.stac.lazy import composite

    arr = composite(items, ["data"], "mean", crs=epsg, resolution=10, bounds=bounds)
    return np.asarray(arr.compute())


def b2_stackstac_pieces(items: dict[str, Any], bounds: tuple[float, ...], epsg: int) -> np.ndarray:
    return b2_stackstac(items, bounds, epsg, PER_PIECE)


def b2_stackstac(
    items: dict[str, Any], bounds: tuple[float, ...], epsg: int, chunksize: Any = PER_ITEM
) -> np.ndarray:
    import stackstac
    from rasterio.enums import Resampling

    arr = stackstac.stack(
        items["features"],
        assets=["data"],
        epsg=epsg,
        resolution=10,
        bounds=bounds,
        chunksize=chunksize,
        resampling=Resampling.nearest,
        dtype="float64",
        fill_value=np.nan,
        rescale=False,
    )
    return np.asarray(arr.mean("time").compute())


def b2_odc(items: dict[str, Any], bounds: tuple[float, ...], epsg: int) -> np.ndarray:
    import odc.stac
    import pystac

    coll = pystac.ItemCollection.from_dict(items)
    minx, miny, maxx, maxy = bounds
    ds = odc.stac.load(
        coll,
        bands=["data"],
        crs=f"EPSG:{epsg}",
        resolution=10,
        x=(minx, maxx),
        y=(miny, maxy),
        chunks={"x": 1024, "y": 1024},
        resampling="nearest",
    )
    data = ds["data"]
    mean = data.where(data != 0).mean("time")
    return np.asarray(mean.compute())[None]


def gdal_env() -> dict[str, str]:
    """GDAL's settings for HTTP reads, as the rasterio benchmarks use them."""
    return {
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif",
        "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "PYTHONWARNINGS": "ignore",
        "CLOUDROI_DECODE_THREADS": os.environ.get("CLOUDROI_DECODE_THREADS", "0"),
    }
