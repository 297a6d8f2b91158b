"""Describing a source the way GDAL sees it: band descriptions, scales and offsets, band
metadata and colour interpretation, from the TIFF tags and GDAL's GDAL_METADATA XML; and the
``Info`` document of rio-tiler (what TiTiler's ``/cog/info`` answers), built from them.

GDAL_METADATA (TIFF tag 42112) is a small XML document::

    <GDALMetadata>
      <Item name="DESCRIPTION" sample="0" role="description">red</Item>
      <Item name="SCALE" sample="0" role="scale">0.01</Item>
      <Item name="STATISTICS_MAXIMUM" sample="0">255</Item>
      <Item name="AREA_OR_POINT">Area</Item>
    </GDALMetadata>

Items with a ``sample`` belong to that (0-based) band; a ``role`` makes them a band property
rather than metadata. The parser reads at most the tag's (already bounded) size, refuses
document type declarations (no entity expansion), and ignores what it does not understand.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..image import Image

__all__ = [
    "GdalMetadata",
    "band_meta",
    "colorinterp",
    "parse_gdal_metadata",
    "rio_tiler_info",
    "source_extra",
]

_DOCTYPE = re.compile(r"<!DOCTYPE|<!ENTITY", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class GdalMetadata:
    """What GDAL_METADATA says: dataset metadata, per-band (0-based) metadata, and the band
    properties GDAL keeps there (description, scale, offset, unit type, colour interp)."""

    dataset: dict[str, str] = field(default_factory=dict)
    bands: dict[int, dict[str, str]] = field(default_factory=dict)
    roles: dict[int, dict[str, str]] = field(default_factory=dict)

    def role(self, band: int, name: str) -> str | None:
        return self.roles.get(band, {}).get(name)


def parse_gdal_metadata(text: str | None) -> GdalMetadata:
    """The GDAL_METADATA document ``text`` (empty when None or unreadable)."""
    meta = GdalMetadata()
    if not text or _DOCTYPE.search(text):
        return meta
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return meta
    for item in root.iter("Item"):
        name = item.get("name")
        if not name:
            continue
        value = (item.text or "").strip()
        sample, role = item.get("sample"), item.get("role")
        if sample is None or not sample.isdigit():
            if role is None:
                meta.dataset[name] = value
            continue
        band = int(sample)
        if role:
            meta.roles.setdefault(band, {})[role] = value
        else:
            meta.bands.setdefault(band, {})[name] = value
    return meta


def _number(text: str | None, default: float) -> float:
    try:
        value = float(text) if text is not None else default
    except ValueError:
        return default
    return value if math.isfinite(value) else default


_GDAL_INTERP = {
    "undefined": "undefined",
    "gray": "gray",
    "grey": "gray",
    "palette": "palette",
    "red": "red",
    "green": "green",
    "blue": "blue",
    "alpha": "alpha",
}


def colorinterp(img: Image, meta: GdalMetadata | None = None) -> list[str]:
    """Each band's colour interpretation as rasterio names it (gray, red, green, blue, alpha,
    palette, undefined): from the photometric interpretation and ExtraSamples, as GDAL's GTiff
    driver derives it, unless GDAL_METADATA overrides it."""
    ifd = img.structure.levels[0]
    photometric, n = ifd.photometric, img.count
    names = ["undefined"] * n
    if img.colormap is not None:  # a ColorMap, or MinIsWhite's inverted grey table
        names[0] = "palette"
    elif photometric in (0, 1):  # min-is-white / min-is-black
        names[0] = "gray"
    elif photometric in (2, 6) and n >= 3:  # RGB, or YCbCr which GDAL hands out as RGB
        names[:3] = ["red", "green", "blue"]
    if img.alpha_band is not None:
        names[img.alpha_band - 1] = "alpha"
    meta = meta or parse_gdal_metadata(img.structure.gdal_metadata)
    for band in range(n):
        override = meta.role(band, "colorinterp")
        if override and override.lower() in _GDAL_INTERP:
            names[band] = _GDAL_INTERP[override.lower()]
    return names


def _crs_uri(img: Image) -> str | None:
    crs = img.crs
    if crs is None:
        return None
    if crs.epsg is not None:
        return f"http://www.opengis.net/def/crs/EPSG/0/{crs.epsg}"
    try:
        return crs.to_wkt()
    except Exception:  # user-defined and pyproj missing: the description at least
        return crs.description


def _nodata_type(img: Image) -> str:
    if img.nodata is not None:
        return "Nodata"
    if img.alpha_band is not None:
        return "Alpha"
    return "Mask" if img.has_mask else "None"


def rio_tiler_info(img: Image) -> dict[str, Any]:
    """rio-tiler's ``Reader.info()`` document for ``img``: bounds and CRS (as an OGC URI),
    band metadata and descriptions, dtype, nodata type and value, colour interpretation,
    scales, offsets, size and overview factors, and a paletted image's colormap (every entry,
    value -> [r, g, b, a], as rasterio's ``colormap(1)``)."""
    meta = parse_gdal_metadata(img.structure.gdal_metadata)
    indexes = range(1, img.count + 1)
    doc: dict[str, Any] = {
        "bounds": list(img.bounds) if img.bounds else None,
        "crs": _crs_uri(img),
        "band_metadata": [[f"b{i}", meta.bands.get(i - 1, {})] for i in indexes],
        "band_descriptions": [
            [f"b{i}", meta.role(i - 1, "description") or f"b{i}"] for i in indexes
        ],
        "dtype": str(img.dtype),
        "nodata_type": _nodata_type(img),
        "colorinterp": colorinterp(img, meta),
        "scales": [_number(meta.role(i - 1, "scale"), 1.0) for i in indexes],
        "offsets": [_number(meta.role(i - 1, "offset"), 0.0) for i in indexes],
        "driver": "GTiff",
        "count": img.count,
        "width": img.width,
        "height": img.height,
        "overviews": [round(img.width / w) for w, _ in img.levels[1:]],
    }
    if img.colormap is not None:
        doc["colormap"] = {str(v): [int(c) for c in rgba] for v, rgba in enumerate(img.colormap)}
    if img.nodata is not None:
        doc["nodata_value"] = img.nodata
    stats = []
    for band in range(img.count):
        m = meta.bands.get(band, {})
        if "STATISTICS_MINIMUM" in m and "STATISTICS_MAXIMUM" in m:
            stats.append(
                [_number(m["STATISTICS_MINIMUM"], 0.0), _number(m["STATISTICS_MAXIMUM"], 0.0)]
            )
    if stats:
        doc["minmax"] = stats
    return doc


def band_meta(img: Image, bands: Sequence[int]) -> list[dict[str, Any]]:
    """Description, scale and offset of each of ``bands`` (1-based), as GDAL_METADATA has them."""
    meta = parse_gdal_metadata(img.structure.gdal_metadata)
    return [
        {
            "description": meta.role(b - 1, "description"),
            "scale": _number(meta.role(b - 1, "scale"), 1.0),
            "offset": _number(meta.role(b - 1, "offset"), 0.0),
        }
        for b in bands
    ]


def source_extra(img: Image, bands: Sequence[int]) -> dict[str, Any]:
    """What a region result carries of its source for faithful outputs (ImageData.extra)."""
    return {"alpha_band": img.alpha_band, "band_meta": band_meta(img, bands)}
