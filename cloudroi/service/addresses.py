"""Which addresses upstream connections may reach, judged at connect time.

``AddressGuard`` decides from the address actually dialled (after DNS, for every connection,
redirects included): loopback, private, link-local (cloud metadata), shared, multicast, reserved
and every other non-global address (the IANA special-purpose registries, ``is_public_address``)
are refused unless an allowlisted prefix names that very address and port, or an allowlisted
network contains it. A host name that resolves into a private network is refused even when the
name itself is allowlisted. ``guarded_connector`` plugs the guard into a Context's one session.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp

from .refusals import SourceNotAllowedError

__all__ = [
    "AddressGuard",
    "IPAddress",
    "IPNetwork",
    "embedded_ipv4",
    "guarded_connector",
    "is_public_address",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


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
    (
        "::/8",
        "reserved by the IETF: ::/128 unspecified, ::1 loopback, ::/96 IPv4-compatible "
        "(deprecated), ::ffff:0:0:0/96 IPv4-translated; ::ffff:0:0/96 IPv4-mapped is "
        "judged by its IPv4 before this table",
    ),
    ("64:ff9b:1::/48", "local-use IPv4/IPv6 translation"),
    ("100::/64", "discard-only"),
    ("100:0:0:1::/64", "dummy prefix"),
    (
        "2001::/23",
        "IETF protocol assignments: Teredo 2001::/32, benchmarking 2001:2::/48, "
        "ORCHIDv2 2001:20::/28 (its few global entries refused too)",
    ),
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


def guarded_connector(
    guard: AddressGuard,
    *,
    limit: int = 64,
    resolver: aiohttp.abc.AbstractResolver | None = None,
) -> Callable[[], aiohttp.BaseConnector]:
    """A connector factory for ``cloudroi.Context(connector_factory=...)``: every connection
    of the Context's one HTTP session passes ``guard`` at connect time. ``resolver``
    replaces aiohttp's DNS resolver (the guard judges whatever address it returns)."""

    def make() -> aiohttp.BaseConnector:
        return aiohttp.TCPConnector(
            limit=limit,
            ttl_dns_cache=60,
            resolver=resolver,
            socket_factory=guard.socket_factory,
            # One address at a time: with happy eyeballs a refused address would be skipped.
            happy_eyeballs_delay=None,
        )

    return make
