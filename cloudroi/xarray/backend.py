"""The ``engine="cloudroi"`` xarray backend: a TIFF/COG as a lazy ``(band, y, x)`` array.

    ds = xr.open_dataset(url, engine="cloudroi", chunks={})       # one Dask chunk per block
    da = xr.open_dataarray(url, engine="cloudroi", overview_level=2)
    tree = xr.open_datatree(url, engine="cloudroi")                 # /level_0, /level_1, ...

Indexing a slice reads only the blocks it touches, through ``Image.read`` (the planner,
coalescing, caches); a Dask task reads its chunk the same way. The array holds an ``ImageSpec``,
not an Image: it pickles in a few hundred bytes, and each process opens the file once, on its
``cloudroi.xarray.runtime`` loop and Context, however many tasks read it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import replace
from typing import Any, Literal
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt
import xarray as xr
from xarray.backends import BackendArray, BackendEntrypoint
from xarray.core import indexing

from ..context import ContextOptions
from ..errors import LevelError
from ..image import Image
from ..spec import ImageSpec
from . import runtime
from .cf import level_attrs, level_coords

__all__ = ["VARIABLE", "CloudROIArray", "CloudROIBackendEntrypoint", "open_image_spec"]

#: The data variable's name in the Dataset (rioxarray's backend uses it too).
VARIABLE = "band_data"

_BASIC = indexing.IndexingSupport.BASIC

DecodeCoords = bool | Literal["coordinates", "all"]


class CloudROIArray(BackendArray):
    """One level of an Image, read window by window. Picklable: an ``ImageSpec``, the level,
    the shape and dtype."""

    __slots__ = ("dtype", "level", "shape", "spec")

    def __init__(
        self, spec: ImageSpec, level: int, shape: tuple[int, int, int], dtype: np.dtype[Any]
    ) -> None:
        self.spec = spec
        self.level = level
        self.shape = shape
        self.dtype = dtype

    def __getitem__(self, key: indexing.ExplicitIndexer) -> Any:
        return indexing.explicit_indexing_adapter(key, self.shape, _BASIC, self._read)

    async def async_getitem(self, key: indexing.ExplicitIndexer) -> Any:
        return await indexing.async_explicit_indexing_adapter(
            key, self.shape, _BASIC, self._read_async
        )

    def _read(self, key: tuple[Any, ...]) -> npt.NDArray[Any]:
        request = _Request(key, self.shape)
        if request.empty:
            return request.blank(self.dtype)
        return request.finish(runtime.run(self._fetch(request)))

    async def _read_async(self, key: tuple[Any, ...]) -> npt.NDArray[Any]:
        request = _Request(key, self.shape)
        if request.empty:
            return request.blank(self.dtype)
        return request.finish(await runtime.arun(self._fetch(request)))

    async def _fetch(self, request: _Request) -> npt.NDArray[Any]:
        return await runtime.read(self.spec, request.window, self.level, request.bands)


class _Request:
    """A basic-indexing key as a cloudroi read (bands, window) and what to do after it."""

    def __init__(self, key: tuple[Any, ...], shape: tuple[int, int, int]) -> None:
        axes = [_axis(k, n) for k, n in zip(key, shape, strict=True)]
        self.ranges = [r for r, _ in axes]
        self.squeeze = tuple(0 if squeezed else slice(None) for _, squeezed in axes)
        self.empty = any(len(r) == 0 for r in self.ranges)
        bands, rows, cols = self.ranges
        self.bands = [b + 1 for b in bands]
        self.y0, self.x0 = (min(rows), min(cols)) if not self.empty else (0, 0)
        if self.empty:
            self.window = (0, 0, 0, 0)
        else:
            self.window = (self.x0, self.y0, max(cols) + 1 - self.x0, max(rows) + 1 - self.y0)

    def blank(self, dtype: np.dtype[Any]) -> npt.NDArray[Any]:
        shape = [len(r) for r, s in zip(self.ranges, self.squeeze, strict=True) if s != 0]
        return np.empty(shape, dtype)

    def finish(self, data: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """The window read, subsampled by the key's steps and squeezed on its integers."""
        _, rows, cols = self.ranges
        if rows.step != 1:
            data = data[:, np.asarray(rows) - self.y0]
        if cols.step != 1:
            data = data[:, :, np.asarray(cols) - self.x0]
        return data[self.squeeze]


def _axis(key: Any, size: int) -> tuple[range, bool]:
    """The indices one axis's key selects, and whether the axis goes (an integer key)."""
    if isinstance(key, slice):
        return range(*key.indices(size)), False
    index = int(key)
    index += size if index < 0 else 0
    if not 0 <= index < size:
        raise IndexError(f"index {key} is out of bounds for an axis of size {size}")
    return range(index, index + 1), True


def open_image_spec(
    filename_or_obj: Any,
    *,
    storage_options: dict[str, Any] | None = None,
    context_options: ContextOptions | dict[str, Any] | None = None,
    open_options: dict[str, Any] | None = None,
) -> tuple[Image, ImageSpec]:
    """The runtime's Image for a URL or path, and the spec its arrays carry (header size set).

    ``storage_options``: fsspec options for the URL's protocol (e.g. s3's ``endpoint_url``);
    ``context_options``: ``ContextOptions`` (or its fields); ``open_options``: ``ImageOptions``
    fields (``prefix_bytes``, ``headers``, ...).
    """
    if not isinstance(filename_or_obj, str | os.PathLike):
        raise TypeError(
            "engine='cloudroi' opens a URL or a path, not a "
            f"{type(filename_or_obj).__name__} (use cloudroi.open for bytes or a RangeSource)"
        )
    url = os.fspath(filename_or_obj)
    copts = (
        context_options
        if isinstance(context_options, ContextOptions)
        else ContextOptions(**(context_options or {}))
    )
    if storage_options:
        protocol = urlsplit(url).scheme.lower() or "file"
        merged = {**copts.storage_options, protocol: dict(storage_options)}
        copts = replace(copts, storage_options=merged)
    spec = ImageSpec.create(url, context_options=copts, **(open_options or {}))
    img = runtime.run(runtime.open_spec(spec))
    return img, replace(spec, header_bytes=img.structure.header_bytes)


def level_dataset(
    img: Image,
    spec: ImageSpec,
    level: int,
    *,
    mask_and_scale: bool = True,
    decode_coords: DecodeCoords = True,
    drop_variables: str | Iterable[str] | None = None,
) -> xr.Dataset:
    """Overview ``level`` of ``img`` as a Dataset with one lazy variable, CF-decoded."""
    if not isinstance(level, int | np.integer) or not 0 <= level < len(img.levels):
        raise LevelError(f"overview_level must be 0..{len(img.levels) - 1}, got {level!r}")
    level = int(level)
    w, h = img.levels[level]
    array = CloudROIArray(spec, level, (img.count, h, w), img.dtype)
    ifd = img.structure.levels[level]
    variable = xr.Variable(
        ("band", "y", "x"),
        indexing.LazilyIndexedArray(array),
        attrs=level_attrs(img),
        encoding={
            "preferred_chunks": {
                "band": img.count if img.interleave == "pixel" else 1,
                "y": ifd.block_height,
                "x": ifd.block_width,
            },
            "source": spec.url,
        },
    )
    raw = xr.Dataset({VARIABLE: variable}, coords=level_coords(img, level))
    ds = xr.decode_cf(
        raw,
        mask_and_scale=mask_and_scale,
        decode_times=False,
        decode_coords=decode_coords,
        drop_variables=drop_variables,
    )
    grid = ds[VARIABLE].attrs.pop("grid_mapping", None) if VARIABLE in ds else None
    if grid is not None:
        ds[VARIABLE].encoding["grid_mapping"] = grid
    ds.attrs["overview_level"] = level
    return ds


class CloudROIBackendEntrypoint(BackendEntrypoint):
    """``engine="cloudroi"``: lazy, block-aware reads of a TIFF/COG by URL or path."""

    description = "Open TIFF/COG files over HTTP(S), S3, fsspec or disk with cloudroi"
    url = "https://pypi.org/project/cloudroi/"
    open_dataset_parameters = (
        "filename_or_obj",
        "drop_variables",
        "mask_and_scale",
        "decode_coords",
        "overview_level",
        "storage_options",
        "context_options",
        "open_options",
    )
    supports_groups = True

    def open_dataset(
        self,
        filename_or_obj: Any,
        *,
        drop_variables: str | Iterable[str] | None = None,
        mask_and_scale: bool = True,
        decode_coords: DecodeCoords = True,
        overview_level: int | None = None,
        storage_options: dict[str, Any] | None = None,
        context_options: ContextOptions | dict[str, Any] | None = None,
        open_options: dict[str, Any] | None = None,
    ) -> xr.Dataset:
        img, spec = open_image_spec(
            filename_or_obj,
            storage_options=storage_options,
            context_options=context_options,
            open_options=open_options,
        )
        return level_dataset(
            img,
            spec,
            0 if overview_level is None else overview_level,
            mask_and_scale=mask_and_scale,
            decode_coords=decode_coords,
            drop_variables=drop_variables,
        )

    def open_groups_as_dict(
        self,
        filename_or_obj: Any,
        *,
        drop_variables: str | Iterable[str] | None = None,
        mask_and_scale: bool = True,
        decode_coords: DecodeCoords = True,
        storage_options: dict[str, Any] | None = None,
        context_options: ContextOptions | dict[str, Any] | None = None,
        open_options: dict[str, Any] | None = None,
        **_: Any,
    ) -> dict[str, xr.Dataset]:
        """``/level_0`` (full resolution), ``/level_1``... one group per overview."""
        img, spec = open_image_spec(
            filename_or_obj,
            storage_options=storage_options,
            context_options=context_options,
            open_options=open_options,
        )
        groups = {"/": xr.Dataset(attrs={"levels": len(img.levels), "source": spec.url})}
        for level in range(len(img.levels)):
            groups[f"/level_{level}"] = level_dataset(
                img,
                spec,
                level,
                mask_and_scale=mask_and_scale,
                decode_coords=decode_coords,
                drop_variables=drop_variables,
            )
        return groups

    def open_datatree(self, filename_or_obj: Any, **kwargs: Any) -> xr.DataTree:
        return xr.DataTree.from_dict(self.open_groups_as_dict(filename_or_obj, **kwargs))

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        """Never guessed: ask for ``engine="cloudroi"`` (GDAL-based engines also claim .tif)."""
        return False
