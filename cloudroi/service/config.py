"""Service configuration: one frozen dataclass, read from CLOUDROI_* environment variables.

``SETTINGS`` lists every variable once (name, field, default, meaning); ``ServiceConfig.from_env``
parses them and docs/service.md shows them as a table, which a test keeps in step with this list.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..outputs import DEFAULT_PNG_LEVEL

__all__ = ["SETTINGS", "ServiceConfig", "Setting", "settings_table"]


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """Everything the region service can be told. Defaults are safe: only the sample data."""

    #: URL prefixes (http(s)://host[:port]/path/, s3://bucket/prefix/, file:///dir/ or /dir/)
    #: a source must fall under. Empty: only the bundled sample image.
    allowed_sources: tuple[str, ...] = ()
    #: Private/loopback/link-local networks (CIDR) upstream connections may reach by host name.
    allowed_networks: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: int = 8080
    #: Largest output, in pixels (width x height), of /region and /preview.
    max_output_pixels: int = 4096 * 4096
    #: Most blocks (tiles or strips, all bands) one request may read.
    max_tiles: int = 1024
    #: Most compressed bytes one request may fetch.
    max_fetch_bytes: int = 256 << 20
    #: Largest decoded block (tile or strip) of a source the service reads.
    max_block_bytes: int = 64 << 20
    #: Largest /preview side.
    max_preview_size: int = 2048
    #: Largest encoded response body (0: no limit); a serverless front end sets its own cap.
    max_response_bytes: int = 0
    #: Most bytes one request may hold (array read, mask, rendering, encoded body), estimated
    #: from the header before any tile is fetched.
    max_request_bytes: int = 512 << 20
    #: Most bytes all requests in progress may hold together; a request that does not fit waits
    #: in line (up to a quarter of request_timeout) and is then answered 503.
    memory_budget_bytes: int = 2 << 30
    #: Seconds a request may take before it is answered 504.
    request_timeout: float = 30.0
    #: Requests reading storage at once; more are answered 503 with Retry-After.
    max_concurrency: int = 32
    #: Seconds a shed client is told to wait.
    retry_after: int = 1
    #: Cache-Control max-age of successful image and info responses.
    cache_max_age: int = 3600
    #: Cache-Control max-age of map tiles (/tiles): long, so a CDN serves repeats; the ETag
    #: follows the source's version.
    tile_max_age: int = 86400
    #: What a tile outside the image answers: "empty" (204 No Content) or "transparent" (a
    #: fully transparent PNG/WebP tile; JPEG and data formats still get 204).
    tile_outside: str = "empty"
    #: Absolute base URL of the service as clients reach it (https://tiles.example.com/prefix),
    #: for the tile URLs in TileJSON and WMTS documents. Unset: from the request's Host header.
    public_url: str | None = None
    upstream_connect_timeout: float = 5.0
    upstream_read_timeout: float = 20.0
    max_upstream_connections: int = 64
    #: Ask HTTP upstreams for a read's ranges in one multi-range GET (see ImageOptions).
    multirange: bool = False
    #: Hedge HTTP range GETs whose first byte is late (``cloudroi.read.hedge``), with at most
    #: ``hedge_share`` extra GETs.
    hedge: bool = True
    hedge_share: float = 0.05
    #: endpoint_url for s3:// sources (MinIO, moto, other S3-compatible stores).
    s3_endpoint_url: str | None = None
    #: Read S3 without credentials (public buckets).
    s3_anonymous: bool = False
    jpeg_quality: int = 85
    webp_quality: int = 85
    png_level: int = DEFAULT_PNG_LEVEL
    #: Keys a client must present (``X-API-Key`` or ``Authorization: Bearer``) on every endpoint
    #: but /healthz. Empty: no authentication. Kept out of repr so they never reach a log.
    api_keys: tuple[str, ...] = field(default=(), repr=False)

    def effective_sources(self) -> tuple[str, ...]:
        """The allowlist in force: the configured prefixes, or just the sample image's path."""
        if self.allowed_sources:
            return self.allowed_sources
        from ..sample import default_sample_path

        return (str(default_sample_path().absolute()),)

    def describe_allowlist(self) -> list[str]:
        """The allowlist in force, each prefix as the service judges it (local roots resolved);
        ValueError for an entry that does not parse."""
        from .security import SourcePolicy

        return SourcePolicy(self.effective_sources(), self.allowed_networks).describe()

    def storage_options(self) -> dict[str, dict[str, Any]]:
        """fsspec storage options per protocol for the shared Context."""
        s3: dict[str, Any] = {}
        if self.s3_endpoint_url:
            s3["endpoint_url"] = self.s3_endpoint_url
        if self.s3_anonymous:
            s3["anon"] = True
        return {"s3": s3} if s3 else {}

    def replace(self, **changes: Any) -> ServiceConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ServiceConfig:
        """Read every ``CLOUDROI_*`` setting from ``env`` (default: the process environment);
        ``overrides`` (field=value) win over the environment."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            raw = env.get(setting.env)
            if raw is None or raw.strip() == "":
                continue
            try:
                values[setting.field] = setting.parse(raw.strip())
            except ValueError as exc:
                raise ValueError(f"{setting.env}={raw!r}: {exc}") from exc
        values.update(overrides)
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        positive = (
            "max_output_pixels",
            "max_tiles",
            "max_fetch_bytes",
            "max_block_bytes",
            "max_preview_size",
            "max_request_bytes",
            "memory_budget_bytes",
            "max_concurrency",
            "max_upstream_connections",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.max_request_bytes > self.memory_budget_bytes:
            raise ValueError("max_request_bytes cannot exceed memory_budget_bytes")
        if self.max_response_bytes < 0:
            raise ValueError("max_response_bytes must be 0 (no limit) or positive")
        if self.request_timeout <= 0:
            raise ValueError("request_timeout must be positive")
        for quality in (self.jpeg_quality, self.webp_quality):
            if not 1 <= quality <= 100:
                raise ValueError("image quality is 1..100")
        if not 1 <= self.png_level <= 9:
            raise ValueError("png_level is 1..9")
        self._validate_tiles()
        for net in self.allowed_networks:
            ipaddress.ip_network(net, strict=False)
        for key in self.api_keys:
            if not key or any(c.isspace() or c == "," for c in key):
                raise ValueError("API keys are non-empty and hold no spaces or commas")

    def _validate_tiles(self) -> None:
        if not 0.0 <= self.hedge_share <= 1.0:
            raise ValueError("hedge_share is 0..1")
        if self.tile_outside not in ("empty", "transparent"):
            raise ValueError("tile_outside is 'empty' or 'transparent'")
        if self.tile_max_age < 0 or self.cache_max_age < 0:
            raise ValueError("max-age settings are 0 or more seconds")
        if self.public_url is not None and not self.public_url.startswith(("http://", "https://")):
            raise ValueError("public_url is an absolute http(s) URL")


def _list(raw: str) -> tuple[str, ...]:
    return tuple(p for p in (s.strip() for s in raw.replace("\n", ",").split(",")) if p)


def _bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


@dataclass(frozen=True, slots=True)
class Setting:
    env: str
    field: str
    parse: Callable[[str], Any]
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "CLOUDROI_ALLOWED_SOURCES",
        "allowed_sources",
        _list,
        "Comma-separated URL prefixes a source must fall under: `https://host/path/`, "
        "`s3://bucket/prefix/`, `file:///dir/` or `/dir/` (local roots, resolved with "
        "realpath). Unset: only the bundled sample image (see `CLOUDROI_SAMPLE_DIR`).",
    ),
    Setting(
        "CLOUDROI_ALLOWED_NETWORKS",
        "allowed_networks",
        _list,
        "Comma-separated private networks (CIDR, e.g. `10.0.0.0/8`) that upstream HTTP may "
        "connect to by host name. A prefix naming an IP literal allows that address and port.",
    ),
    Setting("CLOUDROI_HOST", "host", str, "Address `cloudroi serve` listens on."),
    Setting("CLOUDROI_PORT", "port", int, "Port `cloudroi serve` listens on."),
    Setting(
        "CLOUDROI_MAX_OUTPUT_PIXELS",
        "max_output_pixels",
        int,
        "Largest /region or /preview output (width x height); larger asks get 413.",
    ),
    Setting(
        "CLOUDROI_MAX_TILES",
        "max_tiles",
        int,
        "Most blocks one request may read (all bands); more gets 413.",
    ),
    Setting(
        "CLOUDROI_MAX_FETCH_BYTES",
        "max_fetch_bytes",
        int,
        "Most compressed bytes one request may fetch; more gets 413.",
    ),
    Setting(
        "CLOUDROI_MAX_BLOCK_BYTES",
        "max_block_bytes",
        int,
        "Largest decoded block (tile or strip) of a source; a file with larger blocks gets "
        "413 before any tile is fetched.",
    ),
    Setting("CLOUDROI_MAX_PREVIEW_SIZE", "max_preview_size", int, "Largest /preview max_size."),
    Setting(
        "CLOUDROI_MAX_RESPONSE_BYTES",
        "max_response_bytes",
        int,
        "Largest encoded response body, 0 for no limit; larger answers get 413.",
    ),
    Setting(
        "CLOUDROI_MAX_REQUEST_BYTES",
        "max_request_bytes",
        int,
        "Most bytes one request may hold (the array read, its mask, the 8-bit rendering and "
        "the encoded body), estimated from the header before any tile is fetched; more gets "
        "413 with the numbers.",
    ),
    Setting(
        "CLOUDROI_MEMORY_BUDGET_BYTES",
        "memory_budget_bytes",
        int,
        "Most bytes all requests in progress may hold together; a request that does not fit "
        "waits in line for up to a quarter of the request timeout, then gets 503.",
    ),
    Setting(
        "CLOUDROI_REQUEST_TIMEOUT",
        "request_timeout",
        float,
        "Seconds before a request is answered 504.",
    ),
    Setting(
        "CLOUDROI_MAX_CONCURRENCY",
        "max_concurrency",
        int,
        "Requests reading storage at once; beyond it, 503 with Retry-After.",
    ),
    Setting("CLOUDROI_RETRY_AFTER", "retry_after", int, "Retry-After seconds of a 503."),
    Setting(
        "CLOUDROI_CACHE_MAX_AGE",
        "cache_max_age",
        int,
        "Cache-Control max-age (seconds) of successful responses.",
    ),
    Setting(
        "CLOUDROI_TILE_MAX_AGE",
        "tile_max_age",
        int,
        "Cache-Control max-age (seconds) of map tiles; their strong ETag follows the source.",
    ),
    Setting(
        "CLOUDROI_TILE_OUTSIDE",
        "tile_outside",
        str,
        "A tile outside the image: `empty` (204 No Content) or `transparent` (a transparent "
        "PNG/WebP tile).",
    ),
    Setting(
        "CLOUDROI_PUBLIC_URL",
        "public_url",
        str,
        "Absolute base URL clients reach the service at, for tile URLs in TileJSON and WMTS "
        "documents (default: from the request's Host header).",
    ),
    Setting(
        "CLOUDROI_UPSTREAM_CONNECT_TIMEOUT",
        "upstream_connect_timeout",
        float,
        "Seconds to connect to an upstream HTTP server.",
    ),
    Setting(
        "CLOUDROI_UPSTREAM_READ_TIMEOUT",
        "upstream_read_timeout",
        float,
        "Seconds an upstream read may stall.",
    ),
    Setting(
        "CLOUDROI_MAX_UPSTREAM_CONNECTIONS",
        "max_upstream_connections",
        int,
        "Pooled upstream HTTP connections.",
    ),
    Setting(
        "CLOUDROI_MULTIRANGE",
        "multirange",
        _bool,
        "Ask HTTP upstreams for a read's byte ranges in one multi-range GET (fewer requests "
        "where they answer `multipart/byteranges`, as nginx and Apache do; S3 and GCS do not, "
        "and cost one wasted round trip per origin).",
    ),
    Setting(
        "CLOUDROI_HEDGE",
        "hedge",
        _bool,
        "Send an HTTP range GET again when its first byte is later than the 95th percentile of "
        "recent ones at its origin (at least 50 ms); the first answer wins, the other is "
        "cancelled. Cuts an object store's latency tail.",
    ),
    Setting(
        "CLOUDROI_HEDGE_SHARE",
        "hedge_share",
        float,
        "Most extra GETs hedging may send, as a share of all GETs sent.",
    ),
    Setting(
        "CLOUDROI_S3_ENDPOINT_URL",
        "s3_endpoint_url",
        str,
        "Endpoint of an S3-compatible store for `s3://` sources (credentials come from the "
        "usual AWS variables or role).",
    ),
    Setting("CLOUDROI_S3_ANONYMOUS", "s3_anonymous", _bool, "Read S3 without signing requests."),
    Setting("CLOUDROI_JPEG_QUALITY", "jpeg_quality", int, "JPEG quality, 1..100."),
    Setting("CLOUDROI_WEBP_QUALITY", "webp_quality", int, "WebP quality, 1..100."),
    Setting(
        "CLOUDROI_PNG_LEVEL",
        "png_level",
        int,
        "PNG zlib level, 1 (fast) .. 9 (small); 4 halves the encode time of 6.",
    ),
    Setting(
        "CLOUDROI_API_KEYS",
        "api_keys",
        _list,
        "Comma-separated API keys; when set, every endpoint but /healthz needs one in "
        "`X-API-Key` (or `Authorization: Bearer`), else 401. Unset: no authentication.",
    ),
)


def settings_table() -> str:
    """The settings as a Markdown table (name, default, meaning), as docs/service.md shows it."""
    defaults = ServiceConfig()
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for s in SETTINGS:
        value = getattr(defaults, s.field)
        if isinstance(value, tuple):
            shown = ", ".join(value) if value else "(empty)"
        elif value is None:
            shown = "(unset)"
        elif isinstance(value, bool):
            shown = str(value).lower()
        else:
            shown = str(value)
        rows.append(f"| `{s.env}` | `{shown}` | {s.help} |")
    return "\n".join(rows)
