"""The service's OpenAPI 3.1 document, built from the parameter declarations the parser uses."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from .. import __version__
from ..outputs import CONTENT_TYPES
from .openapi_maps import map_paths
from .params import ENDPOINT_PARAMS, Param
from .problems import PROBLEM_TYPE

__all__ = ["openapi_document"]

_PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details.",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string", "description": "Machine-readable reason."},
        "instance": {"type": "string"},
    },
}

_ERRORS = {
    "400": "Invalid parameters, or a window/level/band the image does not have.",
    "401": "An API key is required (only when the service is configured with API keys).",
    "403": "The source is not allowed by this service, or storage refused access.",
    "404": "The source does not exist.",
    "413": "The output or the tiles/bytes to read exceed the service's limits.",
    "422": "The source is not a TIFF cloudroi can read (the feature is named).",
    "501": "The feature needs an optional dependency the service does not have installed.",
    "502": "Storage failed or answered wrongly.",
    "503": "Too many requests in progress; see Retry-After.",
    "504": "The request did not finish within the service's deadline.",
}

_CACHE_HEADERS: dict[str, Any] = {
    "ETag": {"schema": {"type": "string"}, "description": "Source ETag + parameters."},
    "Cache-Control": {"schema": {"type": "string"}},
}

_INFO_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["width", "height", "count", "dtype", "levels"],
    "properties": {
        "url": {"type": "string"},
        "size": {"type": "integer"},
        "etag": {"type": ["string", "null"]},
        "last_modified": {"type": ["string", "null"]},
        "version_pinned": {
            "type": "string",
            "enum": ["etag", "last-modified", "size-only"],
            "description": "What pins the reads of this answer to one version of the object.",
        },
        "width": {"type": "integer"},
        "height": {"type": "integer"},
        "count": {"type": "integer"},
        "dtype": {"type": "string"},
        "block_shape": {"type": "array", "items": {"type": "integer"}},
        "compression": {"type": "string"},
        "levels": {
            "type": "array",
            "items": {"type": "array", "items": {"type": "integer"}},
            "description": "[width, height] of level 0, then of each overview.",
        },
        "overviews": {"type": "integer"},
        "nodata": {"type": ["number", "string", "null"]},
        "crs": {
            "type": ["integer", "null"],
            "description": "EPSG code; null for a user-defined CRS (see crs_wkt) or none.",
        },
        "crs_name": {"type": ["string", "null"]},
        "crs_description": {
            "type": ["string", "null"],
            "description": "The CRS without pyproj: EPSG:n, a summary of its GeoTIFF keys, or WKT.",
        },
        "crs_wkt": {
            "type": ["string", "null"],
            "description": "WKT2 of the CRS (its description when the server has no pyproj).",
        },
        "crs_projjson": {
            "type": ["object", "null"],
            "description": "PROJJSON of the CRS (null when the server has no pyproj).",
        },
        "crs_note": {
            "type": ["string", "null"],
            "description": "What of the file's CRS could not be interpreted, if anything.",
        },
        "transform": {
            "type": ["array", "null"],
            "items": {"type": "number"},
            "description": "GDAL-order geotransform.",
        },
        "bounds": {"type": ["array", "null"], "items": {"type": "number"}},
        "has_mask": {"type": "boolean"},
    },
}

_POINT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["col", "row", "values", "valid"],
    "properties": {
        "col": {"type": "integer"},
        "row": {"type": "integer"},
        "x": {"type": "number"},
        "y": {"type": "number"},
        "values": {"type": "array", "items": {"type": ["number", "null"]}},
        "dtype": {"type": "string"},
        "nodata": {"type": ["number", "null"]},
        "valid": {"type": "boolean"},
        "crs": {"type": ["integer", "null"]},
    },
}


def _parameter(p: Param) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": p.name,
        "in": "query",
        "required": p.required,
        "description": p.description,
        "schema": p.schema,
    }
    if p.example is not None:
        doc["example"] = p.example
    return doc


def _storage_operation(
    path: str, summary: str, ok: dict[str, Any], example_url: str | None
) -> dict[str, Any]:
    return _operation(path, summary, ENDPOINT_PARAMS[path], [], ok, example_url)


def _operation(
    path: str,
    summary: str,
    query: Sequence[Param],
    path_params: Sequence[dict[str, Any]],
    ok: dict[str, Any],
    example_url: str | None,
) -> dict[str, Any]:
    """A GET that reads a source: its parameters, its answer, the problems it may answer."""
    params = [*path_params, *(_parameter(p) for p in query)]
    for param in params:
        if param["name"] == "url" and example_url:
            param["example"] = example_url
    responses: dict[str, Any] = {
        "200": {**ok, "headers": _CACHE_HEADERS},
        "304": {
            "description": "Not modified (If-None-Match matched the ETag).",
            "headers": _CACHE_HEADERS,
        },
    }
    if "/tiles/" in path:
        responses["204"] = {"description": "The tile is off the image.", "headers": _CACHE_HEADERS}
    for status, text in _ERRORS.items():
        responses[status] = {
            "description": text,
            "content": {PROBLEM_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
    op_id = re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_") or "root"
    return {
        "get": {
            "summary": summary,
            "operationId": op_id,
            "parameters": params,
            "responses": responses,
        }
    }


def _plain_operation(op_id: str, summary: str, description: str, content: Any) -> Any:
    """An endpoint that does not touch storage: GET, one 200 answer."""
    return {
        "get": {
            "summary": summary,
            "operationId": op_id,
            "responses": {"200": {"description": description, "content": content}},
        }
    }


_HEALTH_SCHEMA = {"type": "object", "properties": {"status": {"type": "string"}}}


def openapi_document(example_url: str | None = None) -> dict[str, Any]:
    """The document served at /openapi.json; ``example_url`` is shown as the ``url`` example."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    image = {
        "description": "The encoded region.",
        "content": dict.fromkeys(CONTENT_TYPES.values(), binary),
    }
    paths: dict[str, Any] = {
        "/healthz": _plain_operation(
            "healthz",
            "Liveness: answers without touching storage.",
            "Alive.",
            {"application/json": {"schema": _HEALTH_SCHEMA}},
        ),
        "/metrics": _plain_operation(
            "metrics",
            "Prometheus metrics.",
            "Text exposition format.",
            {"text/plain": {"schema": {"type": "string"}}},
        ),
        "/openapi.json": _plain_operation(
            "openapi",
            "This document.",
            "OpenAPI 3.1.",
            {"application/json": {"schema": {"type": "object"}}},
        ),
        **_storage_paths(image, example_url),
        **map_paths(
            lambda path, summary, query, path_params, ok: _operation(
                path, summary, query, path_params, ok, example_url
            )
        ),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "cloudroi region service",
            "version": __version__,
            "description": "Read just a region of a TIFF/COG from object storage.",
        },
        "paths": paths,
        "components": {"schemas": {"Problem": _PROBLEM_SCHEMA}},
    }


def _storage_paths(image: Any, example_url: str | None) -> dict[str, Any]:
    """The endpoints that read a source."""
    return {
        "/info": _storage_operation(
            "/info",
            "Size, bands, dtype, levels, nodata, CRS, geotransform and bounds.",
            {
                "description": "Image description.",
                "content": {"application/json": {"schema": _INFO_SCHEMA}},
            },
            example_url,
        ),
        "/region": _storage_operation(
            "/region",
            "A window (pixels) or bbox (CRS) of the image, at a level or size.",
            image,
            example_url,
        ),
        "/preview": _storage_operation(
            "/preview",
            "The whole image, from the best overview, at most max_size wide/high.",
            image,
            example_url,
        ),
        "/point": _storage_operation(
            "/point",
            "Values of every band at one pixel.",
            {
                "description": "Pixel values.",
                "content": {"application/json": {"schema": _POINT_SCHEMA}},
            },
            example_url,
        ),
    }
