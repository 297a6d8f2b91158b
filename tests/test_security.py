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

from cloudroi.service.security import (
    BadSourceError,
    SourceNotAllowedError,
    SourcePolicy,
    guarded_session,
    is_public_address,
)
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


def test_allowed_url_is_what_gets_requested() -> None:
    resolved = POLICY.check_remote("https://DATA.example.com:443/cogs/a.tif?x=1")
    assert resolved.url == "https://data.example.com/cogs/a.tif?x=1"


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
    for bad in (str(root / "escape.tif"), f"{root}/../outside.tif", str(outside), "/etc/passwd",
                f"{root}x/a.tif"):
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
    async with guarded_session(policy) as session:
        with pytest.raises(SourceNotAllowedError, match="address not allowed"):
            await session.get(url)
    assert listener.connections == 0  # ... but the address it resolves to is not


@pytest.mark.parametrize(
    "allow",
    [lambda port: ([f"http://127.0.0.1:{port}/"], []),
     lambda port: ([f"http://localhost:{port}/"], ["127.0.0.0/8"])],
    ids=["literal", "network"],
)
async def test_allowlisted_private_addresses_connect(listener: Listener, allow) -> None:  # type: ignore[no-untyped-def]
    prefixes, networks = allow(listener.port)
    policy = SourcePolicy(prefixes, networks)
    async with guarded_session(policy) as session, session.get(prefixes[0] + "x.tif") as resp:
        assert resp.status == 404
    assert listener.connections == 1


def test_socket_factory_refuses_before_creating_a_socket() -> None:
    # What the connector calls with each resolved address; called directly here, so that no
    # packet goes anywhere but loopback in this test suite.
    guard = SourcePolicy(["https://data.example.com/"]).guard
    for address, family in (("169.254.169.254", socket.AF_INET), ("10.0.0.1", socket.AF_INET),
                            ("::ffff:169.254.169.254", socket.AF_INET6), ("::1", socket.AF_INET6)):
        with pytest.raises(SourceNotAllowedError):
            guard.socket_factory((family, socket.SOCK_STREAM, 6, "", (address, 80)))
    sock = guard.socket_factory((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 443)))
    sock.close()


async def test_redirects_are_checked_against_the_allowlist(listener: Listener) -> None:
    with RangeServer({"a/ok.tif": b"data", "a/to-other.tif": b"", "a/to-name.tif": b"",
                      "a/same.tif": b""}) as server:
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
        async with guarded_session(policy) as session:
            with pytest.raises(SourceNotAllowedError, match="not allowed"):
                await session.get(server.url("a/to-other.tif"))
            # Allowlisted by name, refused by address at connect time.
            with pytest.raises(SourceNotAllowedError, match="address not allowed"):
                await session.get(server.url("a/to-name.tif"))
            async with session.get(server.url("a/same.tif")) as resp:
                assert resp.status == 200
                assert await resp.read() == b"data"
        assert listener.connections == 0
