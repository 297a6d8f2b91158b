"""Which sources the service may read, and which addresses its upstream connections may reach.

Two independent gates, both needed:

* ``SourcePolicy`` decides from the URL alone, before any request: the source must fall under an
  allowlisted prefix, compared as parsed parts (scheme, host, port, path segments), never as raw
  strings, so ``http://allowed@evil/`` or ``http://allowed.evil/`` do not pass; local paths
  are resolved with realpath and must stay under an allowlisted root. Redirects are checked the
  same way.
* ``AddressGuard`` decides at connect time, from the address actually dialled (after DNS, for every
  connection, redirects included): loopback, private, link-local (cloud metadata), shared,
  multicast, reserved and every other non-global address (the IANA special-purpose registries,
  ``is_public_address``) are refused unless an allowlisted prefix names that very
  address and port, or an allowlisted network contains it. A host name that resolves into a
  private network is refused even when the name itself is allowlisted.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

import aiohttp
from yarl import URL

from ..errors import AccessDeniedError

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
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class SourceNotAllowedError(AccessDeniedError):
    """The service's configuration does not allow this source or upstream address."""


class BadSourceError(ValueError):
    """The ``url`` parameter is not a source at all (a 400): empty, overlong, spaces or control
    characters, a NUL byte (also percent-encoded), no scheme, no host. Anything that parses but
    hides structure (credentials, fragments, backslashes, dot or empty segments, double encoding,
    odd ports) is a refusal instead: ``SourceNotAllowedError``, a 403, like any other source
    outside the allowlist."""


# The IANA special-purpose address registries (RFC 6890 and later), as of 2025: every block that
# is not globally reachable, or that a server has no business dialling, is refused. Python's
# ``ipaddress`` tables lag behind (3.11.7 calls fec0::/10, 3fff::/20, 5f00::/16, ::/96 and
# 64:ff9b:1::/48 global), so ``is_public_address`` requires both this table and ``is_global``.
_REFUSED_V4: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "this network"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared address space (carrier-grade NAT, some cloud metadata)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local (cloud metadata)"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol assignments (its two global /32s refused too)"),
    ("192.0.2.0/24", "documentation (TEST-NET-1)"),
    ("192.88.99.0/24", "deprecated 6to4 relay anycast"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation (TEST-NET-2)"),
    ("203.0.113.0/24", "documentation (TEST-NET-3)"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
    ("255.255.255.255/32", "limited broadcast"),
)
_REFUSED_V6: tuple[tuple[str, str], ...] = (
    ("::/8", "reserved by the IETF: ::/128 unspecified, ::1 loopback, ::/96 IPv4-compatible "
             "(deprecated), ::ffff:0:0:0/96 IPv4-translated; ::ffff:0:0/96 IPv4-mapped is "
             "judged by its IPv4 before this table"),
    ("64:ff9b:1::/48", "local-use IPv4/IPv6 translation"),
    ("100::/64", "discard-only"),
    ("100:0:0:1::/64", "dummy prefix"),
    ("2001::/23", "IETF protocol assignments: Teredo 2001::/32, benchmarking 2001:2::/48, "
                  "ORCHIDv2 2001:20::/28 (its few global entries refused too)"),
    ("2001:db8::/32", "documentation"),
    ("3fff::/20", "documentation"),
    ("5f00::/16", "segment routing (SRv6) SIDs"),
    ("fc00::/7", "unique local (fd00:ec2::254: cloud metadata)"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local (deprecated)"),
    ("ff00::/8", "multicast"),
)
_V4_NETS = tuple(ipaddress.IPv4Network(n) for n, _ in _REFUSED_V4)
_V6_NETS = tuple(ipaddress.IPv6Network(n) for n, _ in _REFUSED_V6)
# Global unicast is 2000::/3; the rest of the IPv6 space is unassigned or special-purpose.
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_COMPATIBLE = ipaddress.IPv6Network("::/96")
_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SIXTOFOUR = ipaddress.IPv6Network("2002::/16")
_ISATAP_IDS = (0x00005EFE, 0x02005EFE)


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, where dialling the one reaches the other:
    IPv4-mapped, IPv4-compatible, IPv4-translated, NAT64 (64:ff9b::/96) and 6to4. None for IPv4
    addresses and other IPv6 ones."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip in _SIXTOFOUR:
        return ip.sixtofour
    if any(ip in net for net in (_MAPPED, _COMPATIBLE, _TRANSLATED, _NAT64)):
        value = int(ip) & 0xFFFFFFFF
        if ip in _COMPATIBLE and value <= 1:
            return None  # :: and ::1 are themselves, not 0.0.0.0 and 0.0.0.1
        return ipaddress.IPv4Address(value)
    return None


def is_public_address(ip: IPAddress) -> bool:
    """True for globally reachable unicast addresses only: False for every non-global row of the
    IANA special-purpose registries (``_REFUSED_V4``, ``_REFUSED_V6``; loopback, private,
    link-local with cloud metadata, shared, documentation, benchmarking, multicast, reserved,
    unspecified, local-use NAT64, Teredo, ...), for IPv6 outside 2000::/3, and for whatever
    Python's ``ipaddress`` does not call global. IPv4-mapped, NAT64 (64:ff9b::/96) and 6to4
    addresses are judged by the IPv4 address they embed; IPv4-compatible and IPv4-translated
    ones are refused whatever they embed; an ISATAP interface id embedding a refused IPv4 is
    refused."""
    if isinstance(ip, ipaddress.IPv4Address):
        return not any(ip in net for net in _V4_NETS) and bool(ip.is_global)
    if ip in _MAPPED or ip in _NAT64 or ip in _SIXTOFOUR:
        embedded = embedded_ipv4(ip)
        assert embedded is not None
        return is_public_address(embedded)
    if ip not in _GLOBAL_UNICAST or any(ip in net for net in _V6_NETS):
        return False
    if (int(ip) >> 32) & 0xFFFFFFFF in _ISATAP_IDS and not is_public_address(
        ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    ):
        return False
    return bool(ip.is_global)


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
            raise SourceNotAllowedError(
                "redirect to a source not allowed by this service"
            ) from exc


class AddressGuard:
    """Connect-time check of every address an upstream socket is about to dial."""

    def __init__(
        self, allowed: Sequence[tuple[IPAddress, int | None]], networks: Sequence[IPNetwork]
    ) -> None:
        self.allowed = {(addr, port) for addr, port in allowed}
        self.networks = tuple(networks)

    def permits(self, ip: IPAddress, port: int) -> bool:
        """Allowlisted literal and port, or inside an allowed network (an IPv6 form embedding
        an IPv4 address, see ``embedded_ipv4``, is allowed where that IPv4 is), or public."""
        embedded = embedded_ipv4(ip)
        for candidate in (ip,) if embedded is None else (ip, embedded):
            if (candidate, port) in self.allowed:
                return True
            if any(candidate in net for net in self.networks if net.version == candidate.version):
                return True
        return is_public_address(ip)

    def socket_factory(self, addr_info: tuple[Any, ...]) -> socket.socket:
        """For ``aiohttp.TCPConnector(socket_factory=...)``: create the socket only for an
        address this guard permits."""
        family, type_, proto, _, sockaddr = addr_info
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if not self.permits(ip, int(sockaddr[1])):
            # Not an OSError: aiohttp would treat it as a failed connection and try the next
            # address or retry; this must end the request instead.
            raise SourceNotAllowedError("upstream address not allowed by this service")
        return socket.socket(family=family, type=type_, proto=proto)


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


def guarded_connector(
    policy: SourcePolicy,
    *,
    limit: int = 64,
    resolver: aiohttp.abc.AbstractResolver | None = None,
) -> Callable[[], aiohttp.BaseConnector]:
    """A connector factory for ``cloudroi.Context(connector_factory=...)``: every connection
    of the Context's one HTTP session passes ``policy.guard`` at connect time. ``resolver``
    replaces aiohttp's DNS resolver (the guard judges whatever address it returns)."""

    def make() -> aiohttp.BaseConnector:
        return aiohttp.TCPConnector(
            limit=limit,
            ttl_dns_cache=60,
            resolver=resolver,
            socket_factory=policy.guard.socket_factory,
            # One address at a time: with happy eyeballs a refused address would be skipped.
            happy_eyeballs_delay=None,
        )

    return make


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
