"""Describing a source as a tile set: TileJSON and an OGC WMTS capabilities document.

Pure functions over a TileMatrixSet (morecantile's OGC TileMatrixSets 2.0 models), the source's
bounds in geographic coordinates and its zoom range; the service fills in the URL templates. The
WMTS document follows OGC 07-057r7 (RESTful encoding): one layer, its WGS84 bounding box, the
tile matrix set with the matrices of the layer's zoom range and their limits, and a
``ResourceURL`` template of ``{TileMatrix}/{TileCol}/{TileRow}``.
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape, quoteattr

__all__ = ["tilejson", "wmts_capabilities"]

Bounds = tuple[float, float, float, float]


def tilejson(
    *,
    name: str,
    tiles_url: str,
    bounds: Bounds,
    minzoom: int,
    maxzoom: int,
    attribution: str | None = None,
) -> dict[str, Any]:
    """A TileJSON 3.0.0 document: ``bounds`` are (west, south, east, north) in degrees;
    ``tiles_url`` holds ``{z}``, ``{x}`` and ``{y}``."""
    west, south, east, north = bounds
    centre_zoom = max(minzoom, min(maxzoom, minzoom + 1))
    doc: dict[str, Any] = {
        "tilejson": "3.0.0",
        "name": name,
        "version": "1.0.0",
        "scheme": "xyz",
        "tiles": [tiles_url],
        "minzoom": minzoom,
        "maxzoom": maxzoom,
        "bounds": [west, south, east, north],
        "center": [(west + east) / 2, (south + north) / 2, centre_zoom],
    }
    if attribution:
        doc["attribution"] = attribution
    return doc


def _matrices(tms: Any, minzoom: int, maxzoom: int, bounds: Bounds) -> tuple[str, str]:
    """The ``TileMatrix`` definitions and the layer's ``TileMatrixLimits`` for the zooms."""
    defs, limits = [], []
    for z in range(minzoom, maxzoom + 1):
        m = tms.matrix(z)
        x0, y0 = m.pointOfOrigin
        defs.append(
            "<TileMatrix>"
            f"<ows:Identifier>{m.id}</ows:Identifier>"
            f"<ScaleDenominator>{m.scaleDenominator!r}</ScaleDenominator>"
            f"<TopLeftCorner>{x0!r} {y0!r}</TopLeftCorner>"
            f"<TileWidth>{m.tileWidth}</TileWidth><TileHeight>{m.tileHeight}</TileHeight>"
            f"<MatrixWidth>{m.matrixWidth}</MatrixWidth>"
            f"<MatrixHeight>{m.matrixHeight}</MatrixHeight>"
            "</TileMatrix>"
        )
        ul = tms.tile(bounds[0], bounds[3], z)
        lr = tms.tile(bounds[2], bounds[1], z)
        limits.append(
            "<TileMatrixLimits>"
            f"<TileMatrix>{m.id}</TileMatrix>"
            f"<MinTileRow>{ul.y}</MinTileRow><MaxTileRow>{lr.y}</MaxTileRow>"
            f"<MinTileCol>{ul.x}</MinTileCol><MaxTileCol>{lr.x}</MaxTileCol>"
            "</TileMatrixLimits>"
        )
    return "".join(defs), "".join(limits)


def wmts_capabilities(
    *,
    title: str,
    layer: str,
    tms: Any,
    bounds: Bounds,
    minzoom: int,
    maxzoom: int,
    tile_template: str,
    media_type: str,
    supported_crs: str,
) -> str:
    """The capabilities document of one layer served as ``tile_template`` (holding
    ``{TileMatrix}``, ``{TileCol}`` and ``{TileRow}``) in ``media_type``; ``bounds`` in degrees.
    ``supported_crs`` is how the tile matrix set names its CRS (an OGC URN or URI)."""
    definitions, limits = _matrices(tms, minzoom, maxzoom, bounds)
    west, south, east, north = bounds
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Capabilities xmlns="http://www.opengis.net/wmts/1.0" '
        'xmlns:ows="http://www.opengis.net/ows/1.1" xmlns:xlink="http://www.w3.org/1999/xlink" '
        'version="1.0.0">'
        "<ows:ServiceIdentification>"
        f"<ows:Title>{escape(title)}</ows:Title>"
        "<ows:ServiceType>OGC WMTS</ows:ServiceType><ows:ServiceTypeVersion>1.0.0"
        "</ows:ServiceTypeVersion></ows:ServiceIdentification>"
        "<Contents><Layer>"
        f"<ows:Title>{escape(layer)}</ows:Title>"
        f"<ows:Identifier>{escape(layer)}</ows:Identifier>"
        '<ows:WGS84BoundingBox crs="urn:ogc:def:crs:OGC:2:84">'
        f"<ows:LowerCorner>{west!r} {south!r}</ows:LowerCorner>"
        f"<ows:UpperCorner>{east!r} {north!r}</ows:UpperCorner>"
        "</ows:WGS84BoundingBox>"
        '<Style isDefault="true"><ows:Identifier>default</ows:Identifier></Style>'
        f"<Format>{escape(media_type)}</Format>"
        f"<TileMatrixSetLink><TileMatrixSet>{escape(tms.id)}</TileMatrixSet>"
        f"<TileMatrixSetLimits>{limits}</TileMatrixSetLimits></TileMatrixSetLink>"
        f'<ResourceURL format={quoteattr(media_type)} resourceType="tile" '
        f"template={quoteattr(tile_template)}/>"
        "</Layer>"
        f"<TileMatrixSet><ows:Identifier>{escape(tms.id)}</ows:Identifier>"
        f"<ows:SupportedCRS>{escape(supported_crs)}</ows:SupportedCRS>"
        f"{definitions}</TileMatrixSet>"
        "</Contents></Capabilities>"
    )
