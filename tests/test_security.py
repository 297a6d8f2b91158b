"""The service's source allowlist and connect-time address guard, judged on real parsing and real
sockets: prefixes compared as parsed parts, realpath'd local roots, private addresses refused at
connect time (DNS included) and redirects checked."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from yarl import URL

from cloudroi.service.security import (
    BadSourceError,
    SourceNotAllowedError,
    SourcePolicy,
    is_public_address,
)
from cloudroi.service.state import guarded_context
from cloudroi.testing import Fault, RangeServer


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("127.0.0.1", False),
        ("127.8.9.10", False),
        ("0.0.0.0", False),
        ("10.1.2.3", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.100.100.200", False),  # shared address space (another metadata address)
        ("224.0.0.1", False),
        ("255.255.255.255", False),
        ("::", False),
        ("::1", False),
        ("fe80::1", False),
        ("fd00:ec2::254", False),  # AWS metadata over IPv6
        ("::ffff:127.0.0.1", False),  # IPv4-mapped
        ("::ffff:169.254.169.254", False),
        ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 of 169.254.169.254
        ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8
    ],
)
def test_address_classification(address: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public


# Every row of the IANA IPv4 and IPv6 special-purpose address registries (and the embedded-IPv4
# forms), one address inside and, where one exists, a public neighbour just outside.
# (address, public, what it is)
REGISTRY_TABLE: list[tuple[str, bool, str]] = [
    ("0.1.2.3", False, "0.0.0.0/8 this network"),
    ("1.0.0.1", True, "neighbour of 0.0.0.0/8"),
    ("10.255.255.254", False, "10.0.0.0/8 private"),
    ("11.0.0.1", True, "neighbour of 10.0.0.0/8"),
    ("100.64.0.1", False, "100.64.0.0/10 shared address space"),
    ("100.127.255.254", False, "100.64.0.0/10 shared address space"),
    ("100.63.255.254", True, "neighbour of 100.64.0.0/10"),
    ("100.128.0.1", True, "neighbour of 100.64.0.0/10"),
    ("127.255.255.254", False, "127.0.0.0/8 loopback"),
    ("128.0.0.1", True, "neighbour of 127.0.0.0/8"),
    ("169.254.0.1", False, "169.254.0.0/16 link-local"),
    ("169.253.255.254", True, "neighbour of 169.254.0.0/16"),
    ("169.255.0.1", True, "neighbour of 169.254.0.0/16"),
    ("172.31.255.254", False, "172.16.0.0/12 private"),
    ("172.15.255.254", True, "neighbour of 172.16.0.0/12"),
    ("172.32.0.1", True, "neighbour of 172.16.0.0/12"),
    ("192.0.0.9", False, "192.0.0.0/24 IETF protocol assignments (refused whole)"),
    ("192.0.0.170", False, "192.0.0.0/24 NAT64 discovery"),
    ("192.0.1.1", True, "neighbour of 192.0.0.0/24"),
    ("192.0.2.1", False, "192.0.2.0/24 documentation"),
    ("192.0.3.1", True, "neighbour of 192.0.2.0/24"),
    ("192.31.196.1", True, "192.31.196.0/24 AS112, globally reachable"),
    ("192.52.193.1", True, "192.52.193.0/24 AMT, globally reachable"),
    ("192.88.99.1", False, "192.88.99.0/24 deprecated 6to4 relay anycast"),
    ("192.88.98.1", True, "neighbour of 192.88.99.0/24"),
    ("192.168.0.1", False, "192.168.0.0/16 private"),
    ("192.169.0.1", True, "neighbour of 192.168.0.0/16"),
    ("192.175.48.1", True, "192.175.48.0/24 AS112 delegation, globally reachable"),
    ("198.18.0.1", False, "198.18.0.0/15 benchmarking"),
    ("198.19.255.254", False, "198.18.0.0/15 benchmarking"),
    ("198.17.255.254", True, "neighbour of 198.18.0.0/15"),
    ("198.20.0.1", True, "neighbour of 198.18.0.0/15"),
    ("198.51.100.7", False, "198.51.100.0/24 documentation"),
    ("198.51.101.1", True, "neighbour of 198.51.100.0/24"),
    ("203.0.113.9", False, "203.0.113.0/24 documentation"),
    ("203.0.114.1", True, "neighbour of 203.0.113.0/24"),
    ("224.0.0.251", False, "224.0.0.0/4 multicast"),
    ("233.252.0.1", False, "224.0.0.0/4 multicast (MCAST-TEST-NET)"),
    ("239.255.255.250", False, "224.0.0.0/4 multicast"),
    ("223.255.255.254", True, "neighbour of 224.0.0.0/4"),
    ("240.0.0.1", False, "240.0.0.0/4 reserved"),
    ("255.255.255.254", False, "240.0.0.0/4 reserved"),
    ("255.255.255.255", False, "limited broadcast"),
    ("::", False, "::/128 unspecified"),
    ("::1", False, "::1/128 loopback"),
    ("::ffff:169.254.169.254", False, "::ffff:0:0/96 IPv4-mapped, judged by the IPv4"),
    ("::ffff:10.0.0.1", False, "::ffff:0:0/96 IPv4-mapped, judged by the IPv4"),
    ("::ffff:8.8.8.8", True, "::ffff:0:0/96 IPv4-mapped of a public IPv4"),
    ("::a9fe:a9fe", False, "::/96 IPv4-compatible (deprecated; refused whole)"),
    ("::127.0.0.1", False, "::/96 IPv4-compatible"),
    ("::8.8.8.8", False, "::/96 IPv4-compatible (deprecated; refused whole)"),
    ("::ffff:0:a9fe:a9fe", False, "::ffff:0:0:0/96 IPv4-translated (refused whole)"),
    ("::ffff:0:808:808", False, "::ffff:0:0:0/96 IPv4-translated (refused whole)"),
    ("::1:0:0:1", False, "::/8 reserved by the IETF"),
    ("64:ff9b::a9fe:a9fe", False, "64:ff9b::/96 NAT64, judged by the IPv4"),
    ("64:ff9b::7f00:1", False, "64:ff9b::/96 NAT64, judged by the IPv4"),
    ("64:ff9b::808:808", True, "64:ff9b::/96 NAT64 of a public IPv4"),
    ("64:ff9b:1::a9fe:a9fe", False, "64:ff9b:1::/48 local-use NAT64"),
    ("64:ff9b:1::808:808", False, "64:ff9b:1::/48 local-use NAT64 (refused whole)"),
    ("100::1", False, "100::/64 discard-only"),
    ("100:0:0:1::1", False, "100:0:0:1::/64 dummy prefix"),
    ("2001::1", False, "2001::/23 IETF protocol assignments (Teredo 2001::/32)"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False, "2001::/32 Teredo"),
    ("2001:1::1", False, "2001::/23 IETF protocol assignments"),
    ("2001:2::1", False, "2001:2::/48 benchmarking"),
    ("2001:20::1", False, "2001:20::/28 ORCHIDv2"),
    ("2001:1ff:ffff::1", False, "2001::/23 IETF protocol assignments"),
    ("2001:200::1", True, "neighbour of 2001::/23"),
    ("2001:db8::1", False, "2001:db8::/32 documentation"),
    ("2001:db7::1", True, "neighbour of 2001:db8::/32"),
    ("2001:db9::1", True, "neighbour of 2001:db8::/32"),
    ("2002:a9fe:a9fe::1", False, "2002::/16 6to4, judged by the IPv4"),
    ("2002:7f00:1::", False, "2002::/16 6to4 of 127.0.0.1"),
    ("2002:c0a8:101::", False, "2002::/16 6to4 of 192.168.1.1"),
    ("2002:808:808::1", True, "2002::/16 6to4 of a public IPv4"),
    ("2620:4f:8000::1", True, "2620:4f:8000::/48 AS112-v6, globally reachable"),
    ("3fff::1", False, "3fff::/20 documentation"),
    ("3fff:fff:ffff::1", False, "3fff::/20 documentation"),
    ("3fff:1000::1", True, "neighbour of 3fff::/20"),
    ("5f00::1", False, "5f00::/16 SRv6 SIDs"),
    ("4000::1", False, "outside 2000::/3, not assigned for global unicast"),
    ("1000::1", False, "outside 2000::/3, not assigned for global unicast"),
    ("fc00::1", False, "fc00::/7 unique local"),
    ("fd00:ec2::254", False, "fc00::/7 unique local (AWS metadata)"),
    ("fe80::1", False, "fe80::/10 link-local"),
    ("febf::1", False, "fe80::/10 link-local"),
    ("fec0::1", False, "fec0::/10 site-local (deprecated)"),
    ("feff::1", False, "fec0::/10 site-local (deprecated)"),
    ("ff02::1", False, "ff00::/8 multicast"),
    ("ff0e::fb", False, "ff00::/8 multicast"),
    ("2620:0:1::200:5efe:a00:7", False, "ISATAP interface id embedding 10.0.0.7"),
    ("2620:0:1::5efe:a9fe:a9fe", False, "ISATAP interface id embedding 169.254.169.254"),
    ("2620:0:1::200:5efe:808:808", True, "ISATAP interface id embedding a public IPv4"),
    ("2001:4860:4860::8888", True, "public"),
    ("2606:4700:4700::1111", True, "public"),
    ("2a00:1450:4001::1", True, "public"),
    ("8.8.8.8", True, "public"),
]


@pytest.mark.parametrize(
    ("address", "public", "what"), REGISTRY_TABLE, ids=[row[0] for row in REGISTRY_TABLE]
)
def test_special_purpose_registries(address: str, public: bool, what: str) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public, what


def test_address_guard_allowances_cover_embedded_forms() -> None:
    """An allowlisted literal or network is honoured whichever IPv6 form embeds its IPv4 (the
    connector may dial ::ffff:a.b.c.d; an IPv6-only host reaches 10/8 through NAT64), and only
    that IPv4."""
    guard = SourcePolicy(["http://127.0.0.1:8123/"], ["10.0.0.0/8", "fd00::/8"]).guard
    ip = ipaddress.ip_address
    for address, port in (
        ("::ffff:127.0.0.1", 8123),
        ("64:ff9b::7f00:1", 8123),
        ("::ffff:10.1.2.3", 443),
        ("64:ff9b::a01:203", 443),
        ("2002:a01:203::1", 443),
        ("fd00:ec2::254", 80),
    ):
        assert guard.permits(ip(address), port), address
    for address, port in (
        ("::ffff:127.0.0.1", 8124),
        ("64:ff9b::7f00:1", 80),
        ("::ffff:192.168.0.1", 443),
        ("64:ff9b::c0a8:1", 443),
        ("64:ff9b:1::a01:203", 443),
        ("2002:c0a8:1::1", 443),
        ("fe80::1", 80),
        ("::ffff:169.254.169.254", 80),
    ):
        assert not guard.permits(ip(address), port), address


POLICY = SourcePolicy(
    [
        "https://data.example.com/cogs/",
        "http://127.0.0.1:8123/public",
        "s3://bucket/prefix/",
        "https://bücher.example/",
    ]
)


@pytest.mark.parametrize(
    "url",
    [
        "https://data.example.com/cogs/a.tif",
        "https://DATA.example.com/cogs/a.tif",
        "https://data.example.com./cogs/a.tif",
        "https://data.example.com:443/cogs/a.tif",
        "https://data.example.com/cogs/sub/dir/a.tif?X-Amz-Signature=abc%2Fdef",
        "http://127.0.0.1:8123/public",
        "http://127.0.0.1:8123/public/x.tif",
        "s3://bucket/prefix/deep/x.tif",
        "https://xn--bcher-kva.example/x.tif",
        "https://bücher.example/x.tif",
    ],
)
def test_allowed_urls(url: str) -> None:
    POLICY.check_remote(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://data.example.com/other/a.tif",  # outside the path
        "https://data.example.com/cogsx/a.tif",  # a prefix of a segment is not a segment
        "http://data.example.com/cogs/a.tif",  # scheme
        "https://data.example.com:8443/cogs/a.tif",  # port
        "https://data.example.com.evil.net/cogs/a.tif",  # host suffix
        "https://evil.net/data.example.com/cogs/a.tif",
        "https://data.example.com@evil.net/cogs/a.tif",  # userinfo trick
        "https://user:pw@data.example.com/cogs/a.tif",  # credentials at all
        "http://127.0.0.1:8124/public/x.tif",
        "http://127.0.0.1:8123/publicity/x.tif",
        "http://localhost:8123/public/x.tif",  # a name is not the allowlisted address
        "http://[::ffff:127.0.0.1]:8123/public/x.tif",
        "http://2130706433:8123/public/x.tif",  # decimal form of 127.0.0.1
        "http://169.254.169.254/latest/meta-data/",
        "s3://bucket/other/x.tif",
        "s3://bucket2/prefix/x.tif",
        "gs://bucket/prefix/x.tif",
        "ftp://data.example.com/cogs/a.tif",
    ],
)
def test_refused_urls(url: str) -> None:
    with pytest.raises(SourceNotAllowedError):
        POLICY.check_remote(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://data.example.com/cogs/../secret.tif",
        "https://data.example.com/cogs/%2e%2e/secret.tif",
        "https://data.example.com/cogs/%252e%252e/secret.tif",
        "https://data.example.com/cogs//a.tif",
        "https://data.example.com/cogs/a.tif#frag",
        "https://data.example.com/cogs/a b.tif",
        "https://data.example.com\\@evil.net/cogs/a.tif",
        "s3://bucket/prefix/../x.tif",
        "s3://bucket/prefix/x.tif?versionId=1",
        "https:///cogs/a.tif",
        "",
        "x" * 5000,
        "not a url",
    ],
)
def test_malformed_urls_are_bad_requests(url: str) -> None:
    with pytest.raises((BadSourceError, SourceNotAllowedError)) as info:
        POLICY.check_remote(url)
    if "%2e" in url or ".." in url or "//a" in url:
        # Dot and empty segments are refusals (403), not malformed URLs (400).
        assert isinstance(info.value, SourceNotAllowedError)


@pytest.mark.parametrize(
    "url",
    [
        "s3://bucket/prefix/x%00.tif",
        "https://data.example.com/cogs/a%00.tif",
        "https://data.example.com/cogs/%00/a.tif",
    ],
)
def test_encoded_nul_in_a_remote_url_is_a_bad_request(url: str) -> None:
    with pytest.raises(BadSourceError, match="NUL"):
        POLICY.check_remote(url)


def test_encoded_nul_in_a_local_url_is_a_bad_request(tmp_path: Path) -> None:
    policy = SourcePolicy([str(tmp_path)])
    with pytest.raises(BadSourceError, match="NUL"):
        policy.local_path(f"file://{tmp_path}/a.tif%00")
    # An absolute path is not percent-decoded: %00 there is three characters of a file name.
    assert policy.local_path(f"{tmp_path}/a%00.tif") == f"{tmp_path}/a%00.tif"


def test_allowed_url_is_what_gets_requested() -> None:
    resolved = POLICY.check_remote("https://DATA.example.com:443/cogs/a.tif?x=1")
    assert resolved.url == "https://data.example.com/cogs/a.tif?x=1"
    # The host compared has no trailing dot, and neither has the host dialled.
    resolved = POLICY.check_remote("https://data.example.com./cogs/a.tif")
    assert resolved.url == "https://data.example.com/cogs/a.tif"


SHARP = "xn--maive-cdn-h1a.com"  # maßive-cdn.com under IDNA 2008 / UTS 46, as yarl dials it


@pytest.mark.parametrize(
    ("allow", "url", "dialled"),
    [
        # IDNA 2003 folds ß to ss; the connection does not: these are two different hosts.
        ("https://massive-cdn.com/", "https://maßive-cdn.com/x.tif", None),
        ("https://massive-cdn.com/", "https://MAẞIVE-cdn.com/x.tif", None),
        ("https://massive-cdn.com/", f"https://{SHARP}/x.tif", None),
        ("https://maßive-cdn.com/", "https://massive-cdn.com/x.tif", None),
        ("https://maßive-cdn.com/", "https://maßive-cdn.com/x.tif", SHARP),
        ("https://maßive-cdn.com/", f"https://{SHARP}/x.tif", SHARP),
        ("https://maßive-cdn.com/", f"https://{SHARP.upper()}/x.tif", SHARP),
        ("https://maßive-cdn.com/", "https://MAßIVE-CDN.COM/x.tif", SHARP),
        ("https://maßive-cdn.com/", "https://MAẞIVE-cdn.com/x.tif", SHARP),
        ("https://maßive-cdn.com/", "https://\uff4d\uff41ßive-cdn.com/x.tif", SHARP),  # fullwidth
        ("https://maßive-cdn.com/", "https://maßive-cdn.com./x.tif", SHARP),
        (f"https://{SHARP}/", "https://maßive-cdn.com/x.tif", SHARP),
        (
            "https://massive-cdn.com/",  # fullwidth "massive"
            "https://\uff4d\uff41\uff53\uff53\uff49\uff56\uff45-cdn.com/x.tif",
            "massive-cdn.com",
        ),
        ("https://massive-cdn.com/", "https://massive-cdn\u3002com/x.tif", "massive-cdn.com"),
        ("https://massive-cdn.com/", "https://MASSIVE-CDN.COM./x.tif", "massive-cdn.com"),
        ("https://bücher.example/", "https://BÜCHER.example/x.tif", "xn--bcher-kva.example"),
    ],
)
def test_idna_host_compared_is_the_host_dialled(allow: str, url: str, dialled: str | None) -> None:
    """The allowlist and the client URL go through the host encoding the connection uses (yarl:
    UTS 46, non-transitional), and the URL handed to the HTTP client carries that very host."""
    policy = SourcePolicy([allow])
    if dialled is None:
        with pytest.raises(SourceNotAllowedError):
            policy.check_remote(url)
        return
    resolved = policy.check_remote(url)
    assert URL(resolved.url).raw_host == dialled
    assert resolved.url == f"https://{dialled}/x.tif"
    assert policy.prefixes[0].host == dialled


def test_local_roots_are_resolved_with_realpath(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.tif").write_bytes(b"x")
    outside = tmp_path / "outside.tif"
    outside.write_bytes(b"secret")
    os.symlink(outside, root / "escape.tif")
    os.symlink(root / "sub", tmp_path / "alias")
    policy = SourcePolicy([str(root)])

    def check(url: str) -> str:
        local = policy.local_path(url)
        assert local is not None
        return policy.check_local_resolved(url, os.path.realpath(local)).url

    assert check(str(root / "sub" / "a.tif")) == str(root / "sub" / "a.tif")
    assert check(f"file://{root}/sub/a.tif") == str(root / "sub" / "a.tif")
    # An alias outside the root that leads inside is fine: the real path is what counts.
    assert check(str(tmp_path / "alias" / "a.tif")) == str(root / "sub" / "a.tif")
    for bad in (
        str(root / "escape.tif"),
        f"{root}/../outside.tif",
        str(outside),
        "/etc/passwd",
        f"{root}x/a.tif",
    ):
        with pytest.raises(SourceNotAllowedError):
            check(bad)
    with pytest.raises(SourceNotAllowedError):
        policy.local_path("file://host/etc/passwd")
    with pytest.raises(BadSourceError):
        policy.local_path("file:relative.tif")
    # A single file can be allowlisted by itself.
    single = SourcePolicy([str(root / "sub" / "a.tif")])
    assert single.check_local_resolved("a", str(root / "sub" / "a.tif")).url
    with pytest.raises(SourceNotAllowedError):
        single.check_local_resolved("b", str(root / "sub" / "a.tifx"))


def test_address_guard_allows_exactly_the_allowlisted_literals_and_networks() -> None:
    guard = SourcePolicy(["http://127.0.0.1:8123/", "http://[::1]:9000/x/"], ["10.0.0.0/8"]).guard
    ip = ipaddress.ip_address
    assert guard.permits(ip("127.0.0.1"), 8123)
    assert not guard.permits(ip("127.0.0.1"), 8124)
    assert guard.permits(ip("::1"), 9000)
    assert guard.permits(ip("10.20.30.40"), 443)
    assert not guard.permits(ip("192.168.0.1"), 80)
    assert not guard.permits(ip("169.254.169.254"), 80)
    assert guard.permits(ip("93.184.215.14"), 443)


# --------------------------------------------------------------------------------------------
# live: real sockets
# --------------------------------------------------------------------------------------------


class Listener:
    """A TCP server on 127.0.0.1 that counts connections and answers each with a tiny 404."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    async def __aenter__(self) -> Listener:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    async with Listener() as lst:
        yield lst


async def test_a_name_resolving_to_loopback_is_refused_before_connecting(
    listener: Listener,
) -> None:
    url = f"http://localhost:{listener.port}/x.tif"
    policy = SourcePolicy([f"http://localhost:{listener.port}/"])
    policy.check_remote(url)  # the name itself is allowlisted ...
    async with guarded_context(policy) as ctx:
        session = ctx.http_session()
        with pytest.raises(SourceNotAllowedError, match="address not allowed"):
            await session.get(url)
    assert listener.connections == 0  # ... but the address it resolves to is not


@pytest.mark.parametrize(
    "allow",
    [
        lambda port: ([f"http://127.0.0.1:{port}/"], []),
        lambda port: ([f"http://localhost:{port}/"], ["127.0.0.0/8"]),
    ],
    ids=["literal", "network"],
)
async def test_allowlisted_private_addresses_connect(listener: Listener, allow) -> None:  # type: ignore[no-untyped-def]
    prefixes, networks = allow(listener.port)
    policy = SourcePolicy(prefixes, networks)
    async with (
        guarded_context(policy) as ctx,
        ctx.http_session().get(prefixes[0] + "x.tif") as resp,
    ):
        assert resp.status == 404
    assert listener.connections == 1


def test_socket_factory_refuses_before_creating_a_socket() -> None:
    # What the connector calls with each resolved address; called directly here, so that no
    # packet goes anywhere but loopback in this test suite.
    guard = SourcePolicy(["https://data.example.com/"]).guard
    for address, family in (
        ("169.254.169.254", socket.AF_INET),
        ("10.0.0.1", socket.AF_INET),
        ("::ffff:169.254.169.254", socket.AF_INET6),
        ("::1", socket.AF_INET6),
        ("64:ff9b:1::a9fe:a9fe", socket.AF_INET6),  # local-use NAT64
        ("::a9fe:a9fe", socket.AF_INET6),  # IPv4-compatible
        ("::127.0.0.1", socket.AF_INET6),
        ("::ffff:0:a9fe:a9fe", socket.AF_INET6),  # IPv4-translated
        ("fec0::1", socket.AF_INET6),
        ("3fff::1", socket.AF_INET6),
        ("192.0.0.170", socket.AF_INET),
    ):
        with pytest.raises(SourceNotAllowedError):
            guard.socket_factory((family, socket.SOCK_STREAM, 6, "", (address, 80)))
    sock = guard.socket_factory((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 443)))
    sock.close()


async def test_redirects_are_checked_against_the_allowlist(listener: Listener) -> None:
    with RangeServer(
        {"a/ok.tif": b"data", "a/to-other.tif": b"", "a/to-name.tif": b"", "a/same.tif": b""}
    ) as server:
        targets = {
            "/a/to-other.tif": f"http://127.0.0.1:{listener.port}/x.tif",
            "/a/to-name.tif": f"http://localhost:{listener.port}/x.tif",
            "/a/same.tif": "/a/ok.tif",
        }

        def redirect(request, etag):  # type: ignore[no-untyped-def]
            target = targets.get(request.path)
            return Fault("status", status=302, headers={"Location": target}) if target else None

        server.fault = redirect
        policy = SourcePolicy([server.url("a/"), f"http://localhost:{listener.port}/"])
        async with guarded_context(policy) as ctx:
            session = ctx.http_session()
            with pytest.raises(SourceNotAllowedError, match="not allowed"):
                await session.get(server.url("a/to-other.tif"))
            # Allowlisted by name, refused by address at connect time.
            with pytest.raises(SourceNotAllowedError, match="address not allowed"):
                await session.get(server.url("a/to-name.tif"))
            async with session.get(server.url("a/same.tif")) as resp:
                assert resp.status == 200
                assert await resp.read() == b"data"
        assert listener.connections == 0
