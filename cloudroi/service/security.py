"""Which sources the service may read, and who may ask: the allowlist and the API keys.

Two independent gates guard storage, both needed:

* ``SourcePolicy`` decides from the URL alone, before any request: the source must fall under an
  allowlisted prefix, compared as parsed parts (scheme, host, port, path segments), never as raw
  strings, so ``http://allowed@evil/`` or ``http://allowed.evil/`` do not pass; local paths
  are resolved with realpath and must stay under an allowlisted root. Redirects are checked the
  same way.
* ``AddressGuard`` (``service.addresses``) decides at connect time, from the address actually
  dialled; ``SourcePolicy.guard`` is the one for its allowlist.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from urllib.parse import SplitResult, unquote, urlsplit

import aiohttp
from yarl import URL

from .addresses import (
    AddressGuard,
    IPAddress,
    IPNetwork,
    embedded_ipv4,
    guarded_connector,
    is_public_address,
)
from .refusals import BadSourceError, SourceNotAllowedError

__all__ = [
    "AddressGuard",
    "AllowedPrefix",
    "ApiKeys",
    "BadSourceError",
    "SourceNotAllowedError",
    "SourcePolicy",
    "embedded_ipv4",
    "guarded_connector",
    "is_public_address",
    "redirect_trace",
]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_MAX_URL = 4096


def _parse_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _wire_url(text: str) -> tuple[URL, str]:
    """An http(s) URL parsed exactly as aiohttp will parse it, rebuilt on the host it will dial,
    and that host: yarl's encoding (UTS 46 via the ``idna`` package, non-transitional, so ``ß``
    stays ``ß``: ``maßive-cdn.com`` is ``xn--maive-cdn-h1a.com``, not ``massive-cdn.com``; case
    and width folded; IP literals compressed), lower-case, without trailing dots. The allowlist
    and client URLs both go through here, so the string compared is the string dialled.
    ValueError if yarl cannot parse ``text`` (BadSourceError if it has no host)."""
    url = URL(text)
    raw = url.raw_host
    host = (raw or "").rstrip(".").lower()
    if not host:
        raise BadSourceError("http(s) URL without a host")
    if host != raw:
        url = url.with_host(host)
    # The URL goes to aiohttp as a string: it must parse back to this very host.
    if URL(str(url)).raw_host != host:
        raise ValueError(f"host {raw!r} does not keep its form")
    return url, host


def _segments_under(path: str, prefix: str) -> bool:
    """Whether ``path`` is ``prefix`` or lies under it, segment by segment."""
    if prefix in ("", "/"):
        return True
    if prefix.endswith("/"):
        return path.startswith(prefix)
    return path == prefix or path.startswith(prefix + "/")


def _check_text(url: str) -> None:
    if not url:
        raise BadSourceError("url is empty")
    if len(url) > _MAX_URL:
        raise BadSourceError(f"url is longer than {_MAX_URL} characters")
    if any(ord(c) < 0x21 or c == "\x7f" for c in url):
        raise BadSourceError("url contains spaces or control characters")
    if "\\" in url:
        # Parsers disagree on whether a backslash ends the authority: http://allowed\@evil/
        raise SourceNotAllowedError("backslashes in source URLs are not allowed")


def _not_a_source(url: str) -> BadSourceError:
    shown = url if len(url) <= 100 else url[:100] + "..."
    return BadSourceError(
        f"url must be an http(s)://, s3:// or file:// URL, or an absolute path; got {shown!r}"
    )


def _refuse_nul(decoded: str) -> None:
    if "\x00" in decoded:
        raise BadSourceError("url contains a NUL byte (%00)")


def _clean_remote_path(path: str) -> str:
    """An object path with percent-encoding undone where it could hide structure; dot segments
    and empty segments are refused rather than interpreted, a NUL byte is a bad request."""
    decoded = unquote(path)
    _refuse_nul(decoded)
    if "%" in decoded and decoded != unquote(decoded):
        raise SourceNotAllowedError("url path is encoded twice")
    parts = decoded.split("/")
    if any(p in (".", "..") for p in parts):
        raise SourceNotAllowedError("url path contains '.' or '..' segments")
    if "//" in decoded.lstrip("/"):
        raise SourceNotAllowedError("url path contains empty segments")
    return decoded


@dataclass(frozen=True, slots=True)
class AllowedPrefix:
    """One allowlist entry, parsed. ``scheme`` is ``file`` for local roots (``path`` realpath'd)."""

    scheme: str
    host: str = ""
    port: int | None = None
    path: str = "/"

    @property
    def address(self) -> IPAddress | None:
        """The IP literal this prefix names, if it names one."""
        return _parse_ip(self.host) if self.host else None

    def matches(self, scheme: str, host: str, port: int | None, path: str) -> bool:
        return (
            scheme == self.scheme
            and host == self.host
            and port == self.port
            and _segments_under(path, self.path)
        )

    def __str__(self) -> str:
        if self.scheme == "file":
            return self.path
        netloc = self.host if ":" not in self.host else f"[{self.host}]"
        if self.port is not None and self.port != _DEFAULT_PORTS.get(self.scheme):
            netloc += f":{self.port}"
        return f"{self.scheme}://{netloc}{self.path}"


def parse_prefix(text: str) -> AllowedPrefix:
    """Parse one allowlist entry; local roots are made absolute and resolved with realpath."""
    text = text.strip()
    if text.startswith("/") or (os.name == "nt" and len(text) > 1 and text[1] == ":"):
        return _local_prefix(text)
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if not scheme:
        raise ValueError(f"allowlist entry {text!r} is neither a URL nor an absolute path")
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"allowlist entry {text!r}: file:// URLs take no host")
        return _local_prefix(unquote(parts.path))
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"allowlist entry {text!r} carries credentials")
    if not parts.hostname:
        raise ValueError(f"allowlist entry {text!r} has no host")
    port = parts.port if parts.port is not None else _DEFAULT_PORTS.get(scheme)
    path = parts.path or "/"
    if scheme not in _DEFAULT_PORTS:
        return AllowedPrefix(scheme, parts.netloc.lower(), port, path)  # as check_remote sees it
    try:
        _, host = _wire_url(text)
    except ValueError as exc:
        raise ValueError(f"allowlist entry {text!r}: {exc}") from exc
    return AllowedPrefix(scheme, host, port, path)


def _local_prefix(path: str) -> AllowedPrefix:
    real = os.path.realpath(path)
    # A root written with a trailing separator is a directory, and so is its realpath.
    if path.endswith(("/", os.sep)) or os.path.isdir(real):
        real = real.rstrip(os.sep) + os.sep
    return AllowedPrefix("file", path=real)


@dataclass(frozen=True, slots=True)
class Resolved:
    """A source the policy accepted: what to open, and the parsed parts it was judged on."""

    url: str
    scheme: str


class SourcePolicy:
    """The allowlist: URL prefixes and local roots; private networks for upstream connections."""

    def __init__(self, prefixes: Iterable[str], networks: Iterable[str] = ()) -> None:
        self.prefixes: tuple[AllowedPrefix, ...] = tuple(parse_prefix(p) for p in prefixes)
        self.networks: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in networks
        )
        self.guard = AddressGuard(
            [
                (addr, p.port)
                for p in self.prefixes
                if p.scheme in _DEFAULT_PORTS and (addr := p.address) is not None
            ],
            self.networks,
        )

    def describe(self) -> list[str]:
        return [str(p) for p in self.prefixes]

    def check_remote(self, url: str) -> Resolved:
        """Judge a non-local URL (http(s), s3, other fsspec schemes) by its parsed parts."""
        _check_text(url)
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise SourceNotAllowedError(f"unparseable host or port: {exc}", url=url) from exc
        scheme = parts.scheme.lower()
        if not scheme or (scheme not in _DEFAULT_PORTS and not parts.netloc):
            raise _not_a_source(url)
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            raise SourceNotAllowedError("credentials in source URLs are not allowed", url=url)
        if parts.fragment or "#" in url:
            raise SourceNotAllowedError("source URLs take no #fragment", url=url)
        if scheme in _DEFAULT_PORTS:
            return self._check_http(url, parts, scheme, port)
        if port is not None or parts.query:
            raise SourceNotAllowedError(f"{scheme}:// URLs take no port or query", url=url)
        host = parts.netloc.lower()
        path = _clean_remote_path(parts.path)
        if not self._allowed(scheme, host, None, path):
            raise SourceNotAllowedError("source not allowed by this service", url=url)
        return Resolved(f"{scheme}://{host}{path}", scheme)

    def _check_http(self, url: str, parts: SplitResult, scheme: str, port: int | None) -> Resolved:
        # Judge the URL as aiohttp will send it: parsed by yarl, on the host string it dials
        # (the URL returned carries that host), dot segments refused up front.
        if not parts.hostname:
            raise BadSourceError("http(s) URL without a host")
        try:
            target, host = _wire_url(url)
            # Another parser must find the same host, or the URL hides its structure.
            _, other = _wire_url(str(URL.build(scheme=scheme, host=parts.hostname)))
        except BadSourceError:
            raise
        except ValueError as exc:
            raise SourceNotAllowedError(f"unparseable url: {exc}", url=url) from exc
        if host != other:
            raise SourceNotAllowedError("ambiguous host in url", url=url)
        _clean_remote_path(parts.path or "/")
        path = target.path or "/"
        effective_port = target.port if target.port is not None else _DEFAULT_PORTS[scheme]
        if port is not None and port != effective_port:
            raise SourceNotAllowedError("ambiguous port in url", url=url)
        if not self._allowed(scheme, host, effective_port, path):
            raise SourceNotAllowedError("source not allowed by this service", url=url)
        return Resolved(str(target), scheme)

    def _allowed(self, scheme: str, host: str, port: int | None, path: str) -> bool:
        return any(p.matches(scheme, host, port, path) for p in self.prefixes)

    def check_local_resolved(self, original: str, real: str) -> Resolved:
        """Judge a local path already resolved with realpath (``resolve_local`` does that)."""
        for p in self.prefixes:
            if p.scheme != "file":
                continue
            root = p.path
            inside = real.startswith(root) if root.endswith(os.sep) else real == root
            if inside:
                return Resolved(real, "file")
        raise SourceNotAllowedError("path not under an allowed root", url=original)

    @staticmethod
    def local_path(url: str) -> str | None:
        """The path a local source names (``file://`` URL or absolute path), None if remote."""
        _check_text(url)  # before realpath, which raises ValueError on a NUL byte
        if url.startswith("/"):
            return url
        parts = urlsplit(url)
        if parts.scheme.lower() != "file":
            return None
        if parts.netloc not in ("", "localhost"):
            raise SourceNotAllowedError("file:// URLs take no host", url=url)
        if parts.query or parts.fragment or "#" in url:
            raise SourceNotAllowedError("file:// URLs take no query or fragment", url=url)
        path = unquote(parts.path)
        _refuse_nul(path)  # before realpath, which raises ValueError on it
        if not path.startswith("/"):
            raise BadSourceError("file:// URLs need an absolute path")
        return path

    def check_redirect(self, location: URL) -> None:
        """Refuse a redirect target that is not http(s) or falls outside the allowlist, with
        ``SourceNotAllowedError`` (a 403). Called by the source for every hop before it is
        requested. The error does not quote the target: it is the upstream's text and may carry
        credentials (a presigned URL's signature)."""
        try:
            if location.scheme not in _DEFAULT_PORTS:
                raise SourceNotAllowedError("redirect to a non-HTTP URL")
            self.check_remote(str(location))
        except (SourceNotAllowedError, BadSourceError) as exc:
            raise SourceNotAllowedError("redirect to a source not allowed by this service") from exc


class ApiKeys:
    """The service's API keys, compared in constant time: the presented key and every configured
    one are hashed to equal-length digests, and all of them are compared, match or not."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = tuple(_key_digest(k) for k in keys)

    @property
    def required(self) -> bool:
        return bool(self._digests)

    def permits(self, headers: Mapping[str, str]) -> bool:
        """Whether ``headers`` (lower-case names) carry a configured key, in ``X-API-Key`` or as
        ``Authorization: Bearer <key>``."""
        presented = headers.get("x-api-key")
        if presented is None:
            scheme, _, value = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer":
                return False
            presented = value.strip()
        digest = _key_digest(presented)
        ok = False
        for known in self._digests:
            ok |= hmac.compare_digest(digest, known)
        return ok


def _key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


def redirect_trace(policy: SourcePolicy) -> aiohttp.TraceConfig:
    """A trace hook judging every redirect aiohttp is about to follow, from the header aiohttp
    takes it from (``Location``, else ``URI``). cloudroi's HTTP source does not let aiohttp
    follow redirects (it follows them itself and has ``policy.check_redirect`` judge each
    target first); this is the second line for any other use of the session."""
    trace = aiohttp.TraceConfig()

    async def on_redirect(
        session: aiohttp.ClientSession,
        ctx: SimpleNamespace,
        params: aiohttp.TraceRequestRedirectParams,
    ) -> None:
        headers = params.response.headers
        location = headers.get("Location") or headers.get("URI")  # as aiohttp picks it
        if location is None:
            return  # not followed
        try:
            target = params.response.url.join(URL(location))
        except ValueError as exc:
            raise SourceNotAllowedError("unparseable redirect target") from exc
        policy.check_redirect(target)

    trace.on_request_redirect.append(on_redirect)
    return trace
