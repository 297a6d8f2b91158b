"""STAC items as a stack needs them, and the common grid they are stacked on. Pure: no I/O.

Items come as pystac ``Item``s or an ``ItemCollection``, as item dicts, as a FeatureCollection
dict, or as the JSON text of either. Each gives an id, a time (``datetime``, else
``start_datetime``), its assets' hrefs, and where the projection extension has them its CRS
(``proj:code`` / ``proj:epsg``) and pixel size (``proj:transform``); an asset's
``raster:bands[0].nodata`` overrides its file's nodata.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BatchRequestError

__all__ = ["StackItem", "parse_items", "pick_assets", "snap_bounds"]

Bounds = tuple[float, float, float, float]
#: Media types (prefixes) of assets a stack reads by default.
RASTER_TYPES = ("image/tiff", "image/geotiff", "image/vnd.stac.geotiff")


@dataclass(frozen=True, slots=True)
class StackItem:
    id: str
    time: np.datetime64
    hrefs: Mapping[str, str]
    nodata: Mapping[str, float | None]
    #: Assets whose media type (or href) says GeoTIFF, in the item's order.
    rasters: tuple[str, ...]
    crs: str | None
    resolution: float | None
    bbox: Bounds | None


def _as_dicts(items: Any) -> list[Mapping[str, Any]]:
    if isinstance(items, Path):
        items = items.read_text()
    if isinstance(items, str | bytes):
        try:
            items = json.loads(items)
        except ValueError as exc:
            raise BatchRequestError(f"items are not JSON: {exc}") from None
    if hasattr(items, "to_dict") and not isinstance(items, Mapping):
        items = items.to_dict()  # pystac Item or ItemCollection
    if isinstance(items, Mapping):
        collection = items.get("type") == "FeatureCollection"
        items = items.get("features") if collection else [items]
    if not isinstance(items, Iterable) or isinstance(items, str | bytes):
        raise BatchRequestError(f"items must be STAC items, got {type(items).__name__}")
    out = []
    for i, item in enumerate(items):
        d = item.to_dict() if hasattr(item, "to_dict") and not isinstance(item, Mapping) else item
        if not isinstance(d, Mapping):
            raise BatchRequestError(f"an item is a mapping, got {type(d).__name__}", i)
        out.append(d)
    if not out:
        raise BatchRequestError("no STAC items given")
    return out


def _time(props: Mapping[str, Any], index: int) -> np.datetime64:
    text = props.get("datetime") or props.get("start_datetime")
    if not isinstance(text, str):
        raise BatchRequestError("the item has no datetime", index)
    text = text.strip().removesuffix("Z").removesuffix("+00:00")
    try:
        return np.datetime64(text, "ns")
    except ValueError:
        raise BatchRequestError(f"datetime {text!r} is not ISO 8601 UTC", index) from None


def _crs(meta: Mapping[str, Any]) -> str | None:
    code = meta.get("proj:code")
    if isinstance(code, str) and code:
        return code
    epsg = meta.get("proj:epsg")
    return f"EPSG:{int(epsg)}" if isinstance(epsg, int | float) and epsg else None


def _resolution(meta: Mapping[str, Any]) -> float | None:
    gt = meta.get("proj:transform")
    if isinstance(gt, Sequence) and len(gt) >= 6 and gt[1] == 0 and gt[3] == 0:
        res = abs(float(gt[0]))
        return res if math.isfinite(res) and res > 0 else None
    return None


def _is_raster(asset: Mapping[str, Any]) -> bool:
    kind = str(asset.get("type") or "")
    if kind:
        return kind.startswith(RASTER_TYPES)
    return str(asset.get("href", "")).lower().endswith((".tif", ".tiff"))


def _nodata(asset: Mapping[str, Any]) -> float | None:
    bands = asset.get("raster:bands")
    if isinstance(bands, Sequence) and bands and isinstance(bands[0], Mapping):
        value = bands[0].get("nodata")
        if isinstance(value, int | float):
            return float(value)
        if value == "nan":
            return math.nan
    return None


def _item(d: Mapping[str, Any], index: int) -> StackItem:
    props = d.get("properties")
    assets = d.get("assets")
    if not isinstance(props, Mapping) or not isinstance(assets, Mapping):
        raise BatchRequestError("an item needs properties and assets", index)
    hrefs: dict[str, str] = {}
    nodata: dict[str, float | None] = {}
    rasters = []
    crs, res = _crs(props), _resolution(props)
    for key, asset in assets.items():
        if not isinstance(asset, Mapping) or not isinstance(asset.get("href"), str):
            raise BatchRequestError(f"asset {key!r} has no href", index)
        hrefs[key] = asset["href"]
        nodata[key] = _nodata(asset)
        if _is_raster(asset):
            rasters.append(str(key))
            crs, res = crs or _crs(asset), res or _resolution(asset)
    bbox = d.get("bbox")
    box = None
    if isinstance(bbox, Sequence) and len(bbox) == 4:
        box = (float(bbox[0]), float(bbox[1]), float(bbox[2]), float(bbox[3]))
    ident = d.get("id")
    return StackItem(
        str(ident) if ident is not None else f"item-{index}",
        _time(props, index),
        hrefs,
        nodata,
        tuple(rasters),
        crs,
        res,
        box,
    )


def parse_items(items: Any) -> list[StackItem]:
    """The items, sorted by time (stable: equal times keep their order)."""
    parsed = [_item(d, i) for i, d in enumerate(_as_dicts(items))]
    return sorted(parsed, key=lambda it: it.time)


def pick_assets(items: Sequence[StackItem], assets: Sequence[str] | None) -> list[str]:
    """The bands of the stack: ``assets`` as given, or every GeoTIFF asset of any item in the
    order first seen."""
    if assets is not None:
        picked = [assets] if isinstance(assets, str) else list(assets)
        if not picked or not all(isinstance(a, str) for a in picked):
            raise BatchRequestError(f"assets must name at least one asset, got {assets!r}")
        if not any(a in it.hrefs for it in items for a in picked):
            raise BatchRequestError(f"no item has any of the assets {picked}")
        return picked
    seen: dict[str, None] = {}
    for it in items:
        seen.update(dict.fromkeys(it.rasters))
    if not seen:
        raise BatchRequestError("no item has a GeoTIFF asset: name the assets")
    return list(seen)


def snap_bounds(bounds: Bounds, res: float) -> Bounds:
    """``bounds`` grown outward to multiples of ``res`` (stackstac's ``snap_bounds``)."""
    minx, miny, maxx, maxy = bounds
    eps = 1e-9
    return (
        math.floor(minx / res + eps) * res,
        math.floor(miny / res + eps) * res,
        math.ceil(maxx / res - eps) * res,
        math.ceil(maxy / res - eps) * res,
    )
