"""STAC stacks on one grid (``cloudroi.stac``): items written locally, pointing at GDAL-written
COGs on the range server, in two CRSs and on two pixel lattices; the stack against cloudroi's
own per-item ``read_region`` and against rasterio's WarpedVRT on the same grid (nearest)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import rasterio.warp
from affine import Affine
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT

import cloudroi
from cloudroi.errors import BatchRequestError, CRSError, SourceNotFoundError
from cloudroi.stac import parse_items, plan_stack, read_stack
from cloudroi.testing import RangeServer
from tests.warp_data import texture, write_cog

UTM = "EPSG:32633"
X0, Y0 = 500000.0, 4600000.0
#: The grid: 10 m over every scene, in UTM 33N.
BOUNDS = (X0 - 200, Y0 - 3400, X0 + 3500, Y0 + 100)


def _cog(path: Path, data: np.ndarray, crs: str, transform: Affine, nodata: Any) -> Path:
    """One band written by GDAL as a COG with 128-pixel blocks."""
    return write_cog(path, data[None], crs, transform, nodata, block=128)


#: (crs, origin x, origin y, pixel size): on the grid's lattice, offset by whole pixels; on
#: the same CRS half a pixel off; and in WGS84.
SCENES = [
    (UTM, X0, Y0, 10.0),
    (UTM, X0 + 800, Y0 - 600, 10.0),
    (UTM, X0 + 1005, Y0 - 1005, 10.0),
    ("EPSG:4326", 15.0, 41.55, 0.0001),
]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Path]]:
    d = tmp_path_factory.mktemp("stac")
    out = []
    for i, (crs, x, y, res) in enumerate(SCENES):
        h, w = 260, 300
        a = texture(h, w, 10 + i).astype(np.uint16) * 10
        a[:30, :50] = 0  # the file's nodata
        b = texture(h, w, 20 + i).astype(np.uint16)
        b[-40:, -40:] = 5  # the nodata the item's raster:bands declares
        t = Affine(res, 0, x, 0, -res, y)
        out.append(
            {
                "a": _cog(d / f"s{i}-a.tif", a, crs, t, 0),
                "b": _cog(d / f"s{i}-b.tif", b, crs, t, None),
            }
        )
    return out


def _items(server: RangeServer, scenes: list[dict[str, Path]], tag: str) -> dict[str, Any]:
    """A FeatureCollection of the scenes (newest first, to check the sort by time)."""
    feats = []
    for i, files in reversed(list(enumerate(scenes))):
        crs = SCENES[i][0]
        assets = {}
        for key, path in files.items():
            server.add(f"/stac-{tag}/{path.name}", path.read_bytes())
            asset: dict[str, Any] = {
                "href": server.url(f"/stac-{tag}/{path.name}"),
                "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            }
            if key == "b":
                asset["raster:bands"] = [{"nodata": 5}]
            assets[key] = asset
        with rasterio.open(files["a"]) as ds:
            gt = list(ds.transform)[:6]
            lonlat = rasterio.warp.transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
        w, s, e, n = lonlat
        props = {"datetime": f"2024-01-0{i + 1}T10:00:00Z", "proj:code": crs, "proj:transform": gt}
        feats.append(
            {
                "type": "Feature",
                "stac_version": "1.0.0",
                "id": f"scene-{i}",
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [[(w, s), (e, s), (e, n), (w, n), (w, s)]],
                },
                "bbox": list(lonlat),
                "properties": props,
                "assets": assets,
                "links": [],
            }
        )
    return {"type": "FeatureCollection", "features": feats}


def _unreachable_items(n: int) -> list[dict[str, Any]]:
    """``n`` items (one second apart) whose asset "b" points at a closed port: for what must
    be refused before any read."""
    return [
        {
            "type": "Feature",
            "stac_version": "1.0.0",
            "id": f"i{t}",
            "geometry": None,
            "properties": {
                "datetime": f"2024-01-01T{t // 3600:02d}:{t // 60 % 60:02d}:{t % 60:02d}Z",
                "proj:epsg": 32633,
            },
            "assets": {"b": {"href": f"http://127.0.0.1:9/{t}.tif", "type": "image/tiff"}},
        }
        for t in range(n)
    ]


def _gdal(path: Path, grid: Any, nodata: float | None) -> np.ndarray:
    """rasterio's WarpedVRT of ``path`` on ``grid`` (nearest), invalid pixels NaN."""
    gt = grid.transform
    with rasterio.open(path) as src:
        kw = {"src_nodata": nodata} if nodata is not None else {}
        with WarpedVRT(
            src,
            crs=grid.crs,
            transform=Affine(gt[1], gt[2], gt[0], gt[4], gt[5], gt[3]),
            width=grid.width,
            height=grid.height,
            resampling=Resampling.nearest,
            **kw,
        ) as vrt:
            data = vrt.read(1).astype("float64")
            mask = vrt.dataset_mask() > 0
    data[~mask] = np.nan
    return data


async def test_stack_equals_per_item_reads_and_gdal(
    server: RangeServer, scenes: list[dict[str, Path]]
) -> None:
    items = _items(server, scenes, "eq")
    stack = plan_stack(items, crs=UTM, resolution=10, bounds=BOUNDS)
    assert stack.shape == (4, 2, 350, 370)
    assert [it.id for it in stack.items] == ["scene-0", "scene-1", "scene-2", "scene-3"]
    got = (await read_stack(stack)).data
    assert got.shape == stack.shape
    assert got.dtype == np.float64
    grid = stack.grid
    assert grid.transform == (X0 - 200, 10.0, 0.0, Y0 + 100, 0.0, -10.0)
    for t, it in enumerate(stack.items):
        for b, asset in enumerate(stack.assets):
            # cloudroi's own warp of the item onto the grid
            async with await cloudroi.open(it.hrefs[asset]) as img:
                region = await img.read_region(BOUNDS, UTM, shape=(350, 370))
            assert region.mask is not None
            want = region.data[0].astype("float64")
            want[region.mask == 0] = np.nan
            if asset == "b":
                want[want == 5] = np.nan
            np.testing.assert_array_equal(got[t, b], want)
            # GDAL's
            ref = _gdal(scenes[t][asset], grid, 5 if asset == "b" else None)
            same = (got[t, b] == ref) | (np.isnan(got[t, b]) & np.isnan(ref))
            if t < 2:  # on the grid's lattice: a window, pixel for pixel
                assert same.all(), (t, asset, int((~same).sum()))
            else:  # warped: GDAL's and cloudroi's nearest differ on a few ties at most
                assert same.mean() >= 0.995, (t, asset, same.mean())
            assert np.isnan(got[t, b]).any()
            assert (~np.isnan(got[t, b])).sum() > 10000


async def test_nodata_and_masks(server: RangeServer, scenes: list[dict[str, Path]]) -> None:
    items = _items(server, scenes, "nodata")
    stack = plan_stack(items, ["a", "b"], crs=UTM, resolution=10, bounds=BOUNDS)
    got = (await read_stack(stack)).data
    # scene 0 sits at the grid's top-left + (20, 10) pixels; its file-nodata corner is NaN ...
    assert np.isnan(got[0, 0, 10:40, 20:70]).all()
    assert not np.isnan(got[0, 0, 40:60, 70:90]).any()
    # ... and the item's own nodata (raster:bands) masks asset b's corner
    assert np.isnan(got[0, 1, 10 + 220 : 10 + 260, 20 + 260 : 20 + 300]).all()
    # outside every scene's footprint: NaN
    assert np.isnan(got[:, :, -5:, :5]).all()
    # native dtype, fill 0: invalid pixels hold 0 and valid pixels keep their values
    native = plan_stack(items, ["a"], crs=UTM, resolution=10, bounds=BOUNDS, dtype=None)
    raw = (await read_stack(native)).data
    assert raw.dtype == np.uint16
    np.testing.assert_array_equal(np.nan_to_num(got[:, :1], nan=0).astype(np.uint16), raw)
    # an integer dtype with fill 7
    seven = plan_stack(
        items, ["a"], crs=UTM, resolution=10, bounds=BOUNDS, dtype="int32", fill_value=7
    )
    filled = (await read_stack(seven)).data
    np.testing.assert_array_equal(filled[np.isnan(got[:, :1])], 7)


async def test_items_as_pystac_objects_json_and_defaults(
    server: RangeServer, scenes: list[dict[str, Path]]
) -> None:
    pystac = pytest.importorskip("pystac")
    items = _items(server, scenes, "forms")
    same_crs = {**items, "features": [f for f in items["features"] if f["id"] != "scene-3"]}
    collection = pystac.ItemCollection.from_dict(same_crs)
    text = json.dumps(same_crs)
    plans = [
        plan_stack(collection, ["a"]),
        plan_stack(list(collection), ["a"]),
        plan_stack(text, ["a"]),
        plan_stack(same_crs["features"], ["a"]),
    ]
    # defaults: the items' common CRS and pixel size, the union of their bboxes
    assert {p.grid for p in plans} == {plans[0].grid}
    assert plans[0].grid.crs == UTM
    assert plans[0].grid.transform[1] == 10.0
    datas = [(await read_stack(p)).data for p in plans[:2]]
    np.testing.assert_array_equal(datas[0], datas[1])
    assert parse_items(items)[0].time == np.datetime64("2024-01-01T10:00:00", "ns")


@pytest.mark.parametrize(
    ("items", "kwargs", "error", "words"),
    [
        ([], {}, BatchRequestError, "no STAC items"),
        ("not json", {}, BatchRequestError, "JSON"),
        ([{"properties": {}}], {}, BatchRequestError, "properties and assets"),
        ([{"properties": {}, "assets": {}}], {}, BatchRequestError, "datetime"),
        ("ITEMS", {"crs": None}, BatchRequestError, "one CRS"),
        ("ITEMS", {"crs": UTM, "resolution": -1}, BatchRequestError, "resolution"),
        ("ITEMS", {"crs": "EPSG:nope"}, CRSError, "nope"),
        ("ITEMS", {"assets": ["c"]}, BatchRequestError, "assets"),
    ],
)
async def test_bad_items_are_typed_errors(
    server: RangeServer,
    scenes: list[dict[str, Path]],
    items: Any,
    kwargs: dict[str, Any],
    error: type[Exception],
    words: str,
) -> None:
    if items == "ITEMS":
        items = _items(server, scenes, "bad")
    with pytest.raises(error, match=words):
        plan_stack(items, **{"crs": UTM, "resolution": 10, **kwargs})


async def test_a_missing_asset_file_raises_typed(
    server: RangeServer, scenes: list[dict[str, Path]]
) -> None:
    items = _items(server, scenes, "missing")
    items["features"][0]["assets"]["a"]["href"] = server.url("/stac-missing/gone.tif")
    stack = plan_stack(items, ["a"], crs=UTM, resolution=10, bounds=BOUNDS)
    with pytest.raises(SourceNotFoundError):
        await read_stack(stack)
    assert math.isnan(stack.fill_value)  # type: ignore[arg-type]


def test_lazy_stack_equals_the_eager_one(
    server: RangeServer, scenes: list[dict[str, Path]]
) -> None:
    pytest.importorskip("xarray")
    import asyncio

    from cloudroi.stac.lazy import stack
    from cloudroi.xarray import runtime

    items = _items(server, scenes, "lazy")
    arr = stack(items, crs=UTM, resolution=10, bounds=BOUNDS, chunksize=128)
    assert arr.dims == ("time", "band", "y", "x")
    assert arr.shape == (4, 2, 350, 370)
    assert arr.chunks[2] == (128, 128, 94)
    assert list(arr.band.values) == ["a", "b"]
    assert list(arr.id.values) == ["scene-0", "scene-1", "scene-2", "scene-3"]
    assert arr.x.values[0] == X0 - 200 + 5
    opens = runtime.counters().opens
    got = arr.compute(scheduler="threads").values
    # 8 files, each opened once by this process's runtime for all of its chunks
    assert runtime.counters().opens - opens == 8
    plan = plan_stack(items, crs=UTM, resolution=10, bounds=BOUNDS)
    want = asyncio.run(read_stack(plan)).data
    # items in the grid's CRS: the same pixels, chunk by chunk or whole
    np.testing.assert_array_equal(got[:3], want[:3])
    # the reprojected item: GDAL's approximate transformer is fitted per warp chunk, so a
    # nearest pick may move by one source pixel where a chunk edge changes the fit (0.8% of
    # this grid, 2% of the item's pixels: the 10 m grid and ~9 m source pixels tie often)
    same = (got[3] == want[3]) | (np.isnan(got[3]) & np.isnan(want[3]))
    assert same.mean() >= 0.99
    mean = arr.mean("time").compute(scheduler="threads").values
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        np.testing.assert_allclose(mean, np.nanmean(got, axis=0))


def test_lazy_stack_chunked_over_time_and_bands_equals_one_chunk_per_item(
    server: RangeServer, scenes: list[dict[str, Path]]
) -> None:
    pytest.importorskip("xarray")
    from cloudroi.stac.lazy import stack
    from cloudroi.xarray import runtime

    items = _items(server, scenes, "lazy4")
    per_item = stack(items, crs=UTM, resolution=10, bounds=BOUNDS, chunksize=(128, 256))
    assert per_item.chunks[:2] == ((1, 1, 1, 1), (1, 1))
    assert per_item.chunks[3] == (256, 114)
    want = per_item.compute(scheduler="threads").values
    for chunks, times, bands in [
        ((-1, -1, 128, 128), (4,), (2,)),
        ((3, 1, 200, -1), (3, 1), (1, 1)),
        ((99, 2, 8192, 8192), (4,), (2,)),
    ]:
        arr = stack(items, crs=UTM, resolution=10, bounds=BOUNDS, chunksize=chunks)
        assert arr.chunks[:2] == (times, bands), chunks
        server.reset()
        opens = runtime.counters().opens
        got = arr.compute(scheduler="threads").values
        # the files are open already in this process's runtime: no header read again
        assert runtime.counters().opens == opens
        # equal bit for bit (NaN where NaN) to one chunk per item, whatever the chunking,
        # the reprojected item included: its warp is fitted on the same pieces
        # (rows and columns split alike) only when the spatial chunks are equal
        same = (got == want) | (np.isnan(got) & np.isnan(want))
        if chunks[2:] == (128, 128):
            assert same[3].mean() >= 0.99, chunks
            assert same[:3].all(), chunks
        else:
            assert same[:3].all(), chunks
        assert got.shape == want.shape
    # a mean over time of time-chunked pieces (one task reads all 4 items), of the 3 items on
    # the grid's lattice (the 4th is warped, fitted per piece: see above)
    arr = stack(items, ["a"], crs=UTM, resolution=10, bounds=BOUNDS, chunksize=(-1, 1, 512, 512))
    assert arr.data.npartitions == 1
    mean = arr.isel(time=slice(0, 3)).mean("time").compute(scheduler="threads").values
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        np.testing.assert_array_equal(mean[0], np.nanmean(want[:3, 0], axis=0))


@pytest.mark.parametrize(
    ("chunksize", "error", "match"),
    [
        ("auto", BatchRequestError, "chunksize must be an int"),
        ((1, 128, 128), BatchRequestError, "chunksize must be an int"),
        ((1, 1, 0, 128), BatchRequestError, "chunksize for y must be 1..8192 or -1"),
        ((0, 1, 128, 128), BatchRequestError, "chunksize for time"),
        ((1, 1, 128.0, 128), BatchRequestError, "must hold integers"),
        ((True, 1, 128, 128), BatchRequestError, "must hold integers"),
        ((1, 1, 128, -2), BatchRequestError, "chunksize for x"),
        ((-1, -1, 8192, 8192), cloudroi.LimitExceededError, "bytes of one chunk"),
    ],
)
def test_lazy_stack_refuses_bad_chunks_before_building(
    chunksize: Any, error: type[Exception], match: str
) -> None:
    pytest.importorskip("xarray")
    from cloudroi.stac.lazy import stack

    feats = _unreachable_items(4)
    with pytest.raises(error, match=match):
        # 4 x 1 x 8192 x 8192 float64 is 2 GiB: over the 1 GiB a chunk may hold
        stack(feats, crs=UTM, resolution=1, bounds=(0, 0, 8192, 8192), chunksize=chunksize)


@pytest.mark.parametrize("how", ["mean", "median", "min", "max", "sum", "count"])
def test_composite_equals_the_reduction_of_the_stack(
    server: RangeServer, scenes: list[dict[str, Path]], how: str
) -> None:
    pytest.importorskip("xarray")
    import warnings

    from cloudroi.stac.lazy import composite, stack

    items = _items(server, scenes, f"comp-{how}")
    # the same pieces, so the reprojected item is warped alike in both
    full = stack(items, crs=UTM, resolution=10, bounds=BOUNDS, chunksize=(-1, 1, 128, 200))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = getattr(full, how)("time").compute(scheduler="synchronous")
    server.reset()
    got = composite(items, None, how, crs=UTM, resolution=10, bounds=BOUNDS, chunksize=(128, 200))
    assert got.dims == ("band", "y", "x")
    assert got.chunks == ((1, 1), (128, 128, 94), (200, 170))
    assert got.attrs["composite"] == how
    assert list(got.band.values) == ["a", "b"]
    np.testing.assert_array_equal(got.x.values, full.x.values)
    out = got.compute(scheduler="threads")
    assert out.dtype == want.dtype
    # bit for bit, NaN where no item is valid: the stack's own reduction, without its float64
    # (time, y, x) array; each piece reads each of the 8 files' blocks once
    np.testing.assert_array_equal(out.values, want.values)
    assert np.isnan(out.values).any() == (how not in ("sum", "count"))
    assert len(server.log) <= 8 * 12


def test_composite_refuses_a_bad_reduction_or_chunks() -> None:
    pytest.importorskip("xarray")
    from cloudroi.stac.lazy import composite

    item = _unreachable_items(1)[0]
    kw: dict[str, Any] = {"crs": UTM, "resolution": 1, "bounds": (0, 0, 256, 256)}
    with pytest.raises(BatchRequestError, match="how must be one of mean, median"):
        composite([item], None, "average", **kw)
    with pytest.raises(BatchRequestError, match="chunksize must be an int or"):
        composite([item], None, "mean", chunksize=(1, 1, 128, 128), **kw)
    with pytest.raises(BatchRequestError, match="chunksize for y"):
        composite([item], None, "mean", chunksize=0, **kw)


def test_composite_of_more_items_than_read_at_once(
    server: RangeServer, scenes: list[dict[str, Path]]
) -> None:
    pytest.importorskip("xarray")
    import copy
    import warnings

    from cloudroi.stac.lazy import composite, stack
    from cloudroi.stac.read import CELLS_AT_ONCE

    base = _items(server, scenes, "comp-many")
    feats = []
    for k in range(5):  # 20 items: the composite reduces them in two groups per piece
        for f in base["features"]:
            g = copy.deepcopy(f)
            g["id"] = f"{f['id']}-{k}"
            g["properties"]["datetime"] = g["properties"]["datetime"].replace("2024", str(2020 + k))
            feats.append(g)
    items = {"type": "FeatureCollection", "features": feats}
    assert len(feats) > CELLS_AT_ONCE
    full = stack(items, ["b"], crs=UTM, resolution=10, bounds=BOUNDS, chunksize=(-1, 1, 175, 185))
    got = composite(
        items, ["b"], "mean", crs=UTM, resolution=10, bounds=BOUNDS, chunksize=(175, 185)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = full.mean("time").compute(scheduler="synchronous").values
    np.testing.assert_array_equal(got.compute(scheduler="threads").values, want)


def test_a_composite_holds_a_group_of_items_not_all() -> None:
    pytest.importorskip("xarray")
    from cloudroi.stac.lazy import composite

    feats = _unreachable_items(200)
    kw: dict[str, Any] = {"crs": UTM, "resolution": 1, "bounds": (0, 0, 4096, 4096)}
    # the mean's tasks hold 16 planes at a time: lazy at once, whatever the number of items
    mean = composite(feats, None, "mean", chunksize=1024, **kw)
    assert mean.shape == (1, 4096, 4096)
    assert mean.data.npartitions == 16
    # the median's hold every item's piece as float64: 200 x 1024^2 x 8 B is over 1 GiB
    with pytest.raises(cloudroi.LimitExceededError, match="bytes of one chunk"):
        composite(feats, None, "median", chunksize=1024, **kw)
    assert composite(feats, None, "median", chunksize=512, **kw).data.npartitions == 64


@pytest.mark.parametrize("how", ["mean", "median", "count"])
async def test_read_composite_equals_the_lazy_one(
    server: RangeServer, scenes: list[dict[str, Path]], how: str
) -> None:
    pytest.importorskip("xarray")
    from cloudroi.stac import read_composite
    from cloudroi.stac.lazy import composite

    items = _items(server, scenes, f"rc-{how}")
    lazy = composite(items, None, how, crs=UTM, resolution=10, bounds=BOUNDS, chunksize=(128, 200))
    want = lazy.compute(scheduler="synchronous").values
    plan = plan_stack(items, crs=UTM, resolution=10, bounds=BOUNDS)
    server.reset()
    got = await read_composite(plan, how, chunksize=(128, 200))
    assert got.how == how
    assert got.data.shape == (2, 350, 370)
    np.testing.assert_array_equal(got.data, want)
    # 8 files, each opened once (one header GET each) for the 2 x 3 x 2 pieces
    heads = [e for e in server.log if (e.range or "").startswith("bytes=0-")]
    assert len({e.path for e in heads}) == 8
    assert len(heads) == 8
    with pytest.raises(BatchRequestError, match="chunksize must be an int or"):
        await read_composite(plan, how, chunksize=(1, 1, 8, 8))  # type: ignore[arg-type]
    with pytest.raises(BatchRequestError, match="how must be one of"):
        await read_composite(plan, "p90")


async def test_read_composite_refuses_before_reading() -> None:
    # Found by review: the eager composite had none of the lazy one's limits (a median held
    # every item's piece, a huge grid was a bare numpy MemoryError), took numpy integers for
    # no chunksize and a list of items gave an AttributeError.
    from cloudroi.stac import read_composite

    feats = _unreachable_items(200)
    plan = plan_stack(feats, crs=UTM, resolution=1, bounds=(0, 0, 4096, 4096))
    with pytest.raises(cloudroi.LimitExceededError, match="bytes of a median's piece"):
        await read_composite(plan, "median", chunksize=1024)
    huge = plan_stack(feats[:2], crs=UTM, resolution=1, bounds=(0, 0, 1e7, 1e7))
    with pytest.raises(cloudroi.LimitExceededError, match="bytes of the composite"):
        await read_composite(huge, "mean")
    with pytest.raises(BatchRequestError, match="resolution must be positive, got 'x'"):
        plan_stack(feats, crs=UTM, resolution="x", bounds=(0, 0, 64, 64))  # type: ignore[arg-type]
    # an unknown or vertical CRS: refused while planning (it planned, and failed at compute)
    for crs in ("EPSG:999999", "EPSG:5703"):
        with pytest.raises(cloudroi.CloudROIError, match=crs):
            plan_stack(feats, crs=crs, resolution=1, bounds=(0, 0, 64, 64))
    with pytest.raises(BatchRequestError, match="takes a plan"):
        await read_composite(feats, "mean")  # type: ignore[arg-type]
    # a numpy integer is a chunksize (the request then fails on the unreachable port, typed)
    small = plan_stack(feats[:1], crs=UTM, resolution=1, bounds=(0, 0, 64, 64))
    with pytest.raises(cloudroi.CloudROIError) as err:
        await read_composite(small, "mean", chunksize=np.int64(32))  # type: ignore[arg-type]
    assert not isinstance(err.value, BatchRequestError), err.value
