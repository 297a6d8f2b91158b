"""Service security over real sockets: the SSRF suite (every form of an address or path the service
must not reach: 403, and no upstream connection), optional API keys, and upstream error bodies
never reaching clients.

No packet leaves loopback: refusals are asserted from a socket-level audit hook that records every
``connect()`` the process makes, and host names are resolved by a resolver that knows only test
names, each mapped to a private or metadata address that the guard must refuse before a socket
exists.
"""

from __future__ import annotations

import hmac
import io
import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestClient, TestServer

from cloudroi.service import ServiceConfig, create_app
from cloudroi.service.security import ApiKeys
from cloudroi.testing import Fault, RangeServer
from tests.reliability.reliability_support import make_images

RGB_SAMPLE = make_images()["rgb.tif"]
RGB = RGB_SAMPLE.data

# --------------------------------------------------------------------------------------------
# every connect() of the process, while recording
# --------------------------------------------------------------------------------------------

_recording: list[tuple[Any, ...]] | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "socket.connect" and _recording is not None:
        _recording.append(tuple(args[1]) if isinstance(args[1], tuple) else (args[1],))


sys.addaudithook(_audit)  # process-wide and permanent; inert unless a test is recording


@pytest.fixture
def connects() -> Iterator[list[tuple[Any, ...]]]:
    global _recording
    _recording = []
    try:
        yield _recording
    finally:
        _recording = None


class StubDNS(AbstractResolver):
    """Resolves only the test's names, each to non-public addresses; anything else fails."""

    TABLE: ClassVar[dict[str, list[str]]] = {
        "tiles.example.test": ["10.0.0.7"],
        "meta.example.test": ["169.254.169.254"],
        "mapped.example.test": ["::ffff:10.0.0.7"],
        "v6.example.test": ["fd00:ec2::254"],
        "shared.example.test": ["100.100.100.200"],
        "nat64local.example.test": ["64:ff9b:1::a9fe:a9fe"],
        "compat.example.test": ["::a9fe:a9fe"],
        "translated.example.test": ["::ffff:0:a9fe:a9fe"],
        "sitelocal.example.test": ["fec0::1"],
    }

    def __init__(self) -> None:
        self.lookups: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups.append(host)
        addresses = self.TABLE.get(host)
        if addresses is None:
            raise OSError(f"test resolver: no such host {host}")
        return [
            ResolveResult(
                hostname=host,
                host=a,
                port=port,
                family=socket.AF_INET6 if ":" in a else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for a in addresses
        ]

    async def close(self) -> None:
        return None


# --------------------------------------------------------------------------------------------
# the service under attack
# --------------------------------------------------------------------------------------------


@dataclass
class Target:
    client: TestClient[Any, Any]
    upstream: RangeServer  # the allowlisted server: http://127.0.0.1:{port}/ok/
    other: RangeServer  # a loopback server nothing may reach
    root: Path  # the allowlisted local root
    secret: Path  # a file outside it
    dns: StubDNS

    def allowed_connects(self) -> set[tuple[str, int]]:
        assert self.client.port is not None
        return {("127.0.0.1", self.client.port)}


REDIRECTS = {
    "/ok/to-metadata.tif": "http://169.254.169.254/latest/meta-data/iam/",
    "/ok/to-other.tif": "http://127.0.0.1:{other}/x/rgb.tif",
    "/ok/to-other-mapped.tif": "http://[::ffff:127.0.0.1]:{other}/x/rgb.tif",
    "/ok/to-localhost.tif": "http://localhost:{port}/ok/rgb.tif",
    "/ok/to-outside-path.tif": "/elsewhere/rgb.tif",
    "/ok/to-private-name.tif": "http://tiles.example.test/cogs/rgb.tif",
    "/ok/to-metadata-name.tif": "http://meta.example.test/latest/meta-data/",
    "/ok/to-decimal.tif": "http://2130706433:{other}/x/rgb.tif",
    "/ok/to-file.tif": "file:///etc/passwd",
}
#: Redirect answers the service must not follow at all (502 upstream_error, nothing else asked):
#: a 3xx without a usable Location (``URI`` is never followed), and chains longer than 5 hops.
UNFOLLOWED: dict[str, dict[str, str]] = {
    "/ok/uri-only.tif": {"URI": "/elsewhere/rgb.tif"},
    "/ok/uri-empty-location.tif": {"Location": "", "URI": "/elsewhere/rgb.tif"},
    "/ok/uri-blank-location.tif": {"Location": " ", "URI": "/elsewhere/rgb.tif"},
    "/ok/uri-to-other.tif": {"URI": "http://127.0.0.1:{other}/x/rgb.tif"},
    "/ok/uri-to-metadata.tif": {"URI": "http://169.254.169.254/latest/meta-data/"},
    "/ok/301-uri-only.tif": {"URI": "/elsewhere/rgb.tif"},
    "/ok/308-uri-only.tif": {"URI": "/elsewhere/rgb.tif"},
}
#: /ok/chain-N.tif redirects to /ok/chain-(N+1).tif, /ok/chain-6.tif to /ok/rgb.tif: starting at
#: chain-N takes 7 - N redirects.
CHAIN = {f"/ok/chain-{i}.tif": f"/ok/chain-{i + 1}.tif" for i in range(1, 6)}
CHAIN["/ok/chain-6.tif"] = "/ok/rgb.tif"
#: Redirects inside the allowlisted prefix: followed.
INSIDE = {
    "/ok/moved.tif": "/ok/rgb.tif",
    "/ok/moved-absolute.tif": "http://127.0.0.1:{port}/ok/rgb.tif",
    **CHAIN,
}


def redirect_hook(upstream: RangeServer, other: RangeServer) -> Any:
    """The upstream's answers for REDIRECTS, UNFOLLOWED and INSIDE."""

    def hook(request: Any, etag: str) -> Fault | None:
        fill = {"other": other.port, "port": upstream.port}
        location = REDIRECTS.get(request.path) or INSIDE.get(request.path)
        if location is not None:
            return Fault("status", status=302, headers={"Location": location.format(**fill)})
        headers = UNFOLLOWED.get(request.path)
        if headers is not None:
            status = int(request.path[4:7]) if request.path[4:7].isdigit() else 302
            return Fault(
                "status", status=status, headers={k: v.format(**fill) for k, v in headers.items()}
            )
        return None

    return hook


@pytest.fixture
async def target(tmp_path: Path) -> AsyncIterator[Target]:
    files = {"ok/rgb.tif": RGB, "elsewhere/rgb.tif": RGB}
    files.update({path.lstrip("/"): b"" for path in (*REDIRECTS, *UNFOLLOWED, *INSIDE)})
    with RangeServer(files) as upstream, RangeServer({"x/rgb.tif": RGB}) as other:
        upstream.fault = redirect_hook(upstream, other)
        root = tmp_path / "data"
        root.mkdir()
        (root / "rgb.tif").write_bytes(RGB)
        secret = tmp_path / "secret.tif"
        secret.write_bytes(RGB)
        os.symlink(secret, root / "escape.tif")
        os.symlink(tmp_path, root / "up")
        dns = StubDNS()
        config = ServiceConfig(
            allowed_sources=(
                upstream.url("ok/"),
                "http://tiles.example.test/cogs/",
                "http://meta.example.test/",
                "http://mapped.example.test/",
                "http://v6.example.test/",
                "http://shared.example.test/",
                "http://nat64local.example.test/",
                "http://compat.example.test/",
                "http://translated.example.test/",
                "http://sitelocal.example.test/",
                "s3://bucket/ok/",
                f"{root}/",
            ),
            upstream_connect_timeout=1.0,
        )
        client = TestClient(TestServer(create_app(config, resolver=dns)))
        await client.start_server()
        try:
            yield Target(client, upstream, other, root, secret, dns)
        finally:
            await client.close()


# Each case: a URL template ({port}: the allowlisted upstream, {other}: the forbidden loopback
# server, {root}/{secret}: local paths). Every one must be 403 with no upstream connection.
SSRF: dict[str, list[str]] = {
    "loopback": [
        "http://127.0.0.1:{port}/elsewhere/rgb.tif",
        "http://127.0.0.1:{other}/x/rgb.tif",
        "http://localhost:{port}/ok/rgb.tif",
        "http://localhost./x/rgb.tif",
        "http://127.1:{port}/ok/rgb.tif",
        "http://127.0.0.2:{port}/ok/rgb.tif",
        "http://[::1]:{port}/ok/rgb.tif",
        "http://[0:0:0:0:0:0:0:1]:{port}/ok/rgb.tif",
        "https://127.0.0.1:{port}/ok/rgb.tif",
        "HTTP://127.0.0.1:{other}/x/rgb.tif",
    ],
    "unspecified": [
        "http://0.0.0.0:{port}/ok/rgb.tif",
        "http://0:{port}/ok/rgb.tif",
        "http://[::]:{port}/ok/rgb.tif",
    ],
    "metadata": [
        "http://169.254.169.254/latest/meta-data/",
        "http://169.254.169.254:80/latest/user-data",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://100.100.100.200/latest/meta-data/",
        "http://169.254.170.2/v2/credentials",
    ],
    "private": [
        "http://10.0.0.1/x.tif",
        "http://172.16.0.1/x.tif",
        "http://192.168.1.1/x.tif",
        "http://100.64.0.1/x.tif",
        "http://[fc00::1]/x.tif",
        "http://[fe80::1]/x.tif",
        "http://224.0.0.1/x.tif",
    ],
    "integer-forms": [
        "http://2130706433:{port}/ok/rgb.tif",  # 127.0.0.1 as one decimal number
        "http://017700000001:{port}/ok/rgb.tif",  # octal
        "http://0x7f000001:{port}/ok/rgb.tif",  # hex
        "http://0x7f.0.0.1:{port}/ok/rgb.tif",
        "http://0177.0.0.1:{port}/ok/rgb.tif",
        "http://127.000.000.001:{port}/ok/rgb.tif",
        "http://2852039166/latest/meta-data/",  # 169.254.169.254
        "http://0xa9fea9fe/latest/meta-data/",
        "http://0251.0376.0251.0376/latest/meta-data/",
        "http://0xa9.0xfe.0xa9.0xfe/latest/meta-data/",
    ],
    "ipv6-embedded": [
        "http://[::ffff:127.0.0.1]:{port}/ok/rgb.tif",
        "http://[::ffff:7f00:1]:{port}/ok/rgb.tif",
        "http://[::ffff:169.254.169.254]/latest/meta-data/",
        "http://[0:0:0:0:0:ffff:a9fe:a9fe]/latest/meta-data/",
        "http://[::127.0.0.1]:{port}/ok/rgb.tif",  # IPv4-compatible
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",  # NAT64
        "http://[2002:a9fe:a9fe::]/latest/meta-data/",  # 6to4
        "http://[64:ff9b:1::a9fe:a9fe]/latest/meta-data/",  # local-use NAT64
        "http://[::a9fe:a9fe]/latest/meta-data/",  # IPv4-compatible
        "http://[::ffff:0:a9fe:a9fe]/latest/meta-data/",  # IPv4-translated
    ],
    "userinfo": [
        "http://127.0.0.1:{port}@evil.example/ok/rgb.tif",
        "http://evil.example@127.0.0.1:{port}/ok/rgb.tif",
        "http://user:pass@127.0.0.1:{port}/ok/rgb.tif",
        "http://:@127.0.0.1:{port}/ok/rgb.tif",
        "http://127.0.0.1:{port}%40evil.example/ok/rgb.tif",
        "http://127.0.0.1:{port}\\@evil.example/ok/rgb.tif",
        "http://127.0.0.1:{port}%5C@evil.example/ok/rgb.tif",
        "http://evil.example%2F@127.0.0.1:{port}/ok/rgb.tif",
    ],
    "fragment": [
        "http://evil.example#@127.0.0.1:{port}/ok/rgb.tif",
        "http://127.0.0.1:{port}/ok/rgb.tif#frag",
        "http://169.254.169.254#.127.0.0.1:{port}/ok/",
        "http://127.0.0.1:{port}/ok/rgb.tif#/../../elsewhere/rgb.tif",
        "http://127.0.0.1:{port}/ok/#",
    ],
    "path-traversal": [
        "http://127.0.0.1:{port}/ok/../elsewhere/rgb.tif",
        "http://127.0.0.1:{port}/ok/%2e%2e/elsewhere/rgb.tif",
        "http://127.0.0.1:{port}/ok/%2E%2E/elsewhere/rgb.tif",
        "http://127.0.0.1:{port}/ok/%252e%252e/elsewhere/rgb.tif",
        "http://127.0.0.1:{port}/ok/..%2felsewhere/rgb.tif",
        "http://127.0.0.1:{port}/ok/./../elsewhere/rgb.tif",
        "http://127.0.0.1:{port}/ok//../elsewhere/rgb.tif",
        "http://127.0.0.1:{port}/okx/rgb.tif",
        "s3://bucket/ok/../private/x.tif",
        "s3://bucket/ok/%2e%2e/private/x.tif",
        "s3://bucket/other/x.tif",
        "s3://bucket2/ok/x.tif",
    ],
    "schemes": [
        "gopher://127.0.0.1:{port}/_GET%20/",
        "dict://127.0.0.1:{port}/info",
        "ftp://127.0.0.1:{port}/ok/rgb.tif",
        "memory://ok/rgb.tif",
        "gs://bucket/ok/x.tif",
    ],
    "local": [
        "file:///etc/passwd",
        "file://localhost/etc/passwd",
        "file://evil.example/etc/passwd",
        "/etc/passwd",
        "/proc/self/environ",
        "{secret}",
        "{root}/../secret.tif",
        "file://{root}/../secret.tif",
        "file://{root}/%2e%2e/secret.tif",
        "{root}/escape.tif",  # a symlink out of the root
        "{root}/up/secret.tif",  # a symlinked directory out of the root
        "{root}x/rgb.tif",
        "file://{root}/rgb.tif#x",
        "file://{root}/rgb.tif?x=1",
    ],
    "name-resolving-private": [
        "http://tiles.example.test/cogs/rgb.tif",  # allowlisted name -> 10.0.0.7
        "http://meta.example.test/latest/meta-data/",  # -> 169.254.169.254
        "http://mapped.example.test/x.tif",  # -> ::ffff:10.0.0.7
        "http://v6.example.test/x.tif",  # -> fd00:ec2::254
        "http://shared.example.test/x.tif",  # -> 100.100.100.200
        "http://nat64local.example.test/x.tif",  # -> 64:ff9b:1::a9fe:a9fe (local-use NAT64)
        "http://compat.example.test/x.tif",  # -> ::a9fe:a9fe (IPv4-compatible)
        "http://translated.example.test/x.tif",  # -> ::ffff:0:a9fe:a9fe (IPv4-translated)
        "http://sitelocal.example.test/x.tif",  # -> fec0::1 (site-local)
    ],
    "redirect": [f"http://127.0.0.1:{{port}}{path}" for path in sorted(REDIRECTS)],
}
CASES = [(kind, url) for kind, urls in SSRF.items() for url in urls]


def fill(url: str, t: Target) -> str:
    return url.format(port=t.upstream.port, other=t.other.port, root=t.root, secret=t.secret)


@pytest.mark.parametrize(("kind", "template"), CASES, ids=[f"{k}:{u}" for k, u in CASES])
async def test_ssrf_is_refused_without_an_upstream_connection(
    target: Target, connects: list[tuple[Any, ...]], kind: str, template: str
) -> None:
    url = fill(template, target)
    before = target.upstream.request_count
    async with target.client.get("/info", params={"url": url}) as resp:
        body = await resp.read()
        doc = await resp.json(content_type=None)
    assert resp.status == 403, (url, body)
    assert doc["code"] == "source_not_allowed", doc
    assert target.other.request_count == 0
    dialled = {(str(a[0]), int(a[1])) for a in connects if len(a) >= 2}
    unexpected = dialled - target.allowed_connects()
    if kind == "redirect":
        # The allowlisted server was asked once and answered the redirect; nothing else.
        unexpected -= {("127.0.0.1", target.upstream.port)}
        assert target.upstream.request_count == before + 1
    else:
        assert target.upstream.request_count == before
    assert not unexpected, f"{url} made the service connect to {unexpected}"
    if kind == "name-resolving-private":
        assert "address" in doc["detail"]
        assert target.dns.lookups  # the refusal came after DNS, at connect time


async def test_allowed_sources_still_work(target: Target, connects: list[tuple[Any, ...]]) -> None:
    """The control: the allowlisted upstream and local root are read (so the refusals above are
    the policy's doing, not a broken service)."""
    for url in (
        target.upstream.url("ok/rgb.tif"),
        str(target.root / "rgb.tif"),
        f"file://{target.root}/rgb.tif",
    ):
        async with target.client.get("/info", params={"url": url}) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["width"] == 600
    assert ("127.0.0.1", target.upstream.port) in {(str(a[0]), int(a[1])) for a in connects}


def test_ssrf_suite_size() -> None:
    print(f"\nSSRF cases: {len(CASES)} in {len(SSRF)} families")
    assert len(CASES) >= 90


async def test_nul_and_control_characters_are_400_not_500(target: Target) -> None:
    for url in (f"{target.root}/rgb\x00.tif", "http://127.0.0.1/\x00", f"{target.root}/a\nb.tif"):
        async with target.client.get("/info", params={"url": url}) as resp:
            assert resp.status == 400, (url, await resp.text())
            assert (await resp.json())["code"] == "invalid_url"


@pytest.mark.parametrize(
    "template",
    [
        "file://{root}/rgb.tif%00",  # /info?url=file:///.../rgb.tif%2500 on the wire
        "file://{root}/rgb%00.tif",
        "file://{root}/%00/rgb.tif",
        "http://127.0.0.1:{port}/ok/rgb.tif%00",
        "http://127.0.0.1:{port}/ok/%00rgb.tif",
    ],
)
async def test_encoded_nul_is_400_not_500(target: Target, template: str) -> None:
    url = fill(template, target)
    before = target.upstream.request_count
    async with target.client.get("/info", params={"url": url}) as resp:
        doc = await resp.json(content_type=None)
        assert resp.status == 400, (url, doc)
    assert doc["code"] == "invalid_url"
    assert "NUL" in doc["detail"]
    assert target.upstream.request_count == before


@pytest.mark.parametrize("url", ["foo.tif", "garbage", "data/rgb.tif", "s3:foo", "c:rgb.tif"])
async def test_a_url_that_is_no_source_says_what_a_source_is(target: Target, url: str) -> None:
    async with target.client.get("/info", params={"url": url}) as resp:
        doc = await resp.json(content_type=None)
        assert resp.status == 400, (url, doc)
    assert doc["code"] == "invalid_url"
    assert doc["detail"] == (
        f"url must be an http(s)://, s3:// or file:// URL, or an absolute path; got {url!r}"
    )


# --------------------------------------------------------------------------------------------
# IDNA: the host compared with the allowlist is the host dialled
# --------------------------------------------------------------------------------------------


class NameLog(AbstractResolver):
    """Resolves the listed names to 127.0.0.1 and records every name it is asked for."""

    def __init__(self, names: set[str]) -> None:
        self.names = names
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        if host not in self.names:
            raise OSError(f"test resolver: no such host {host}")
        return [
            ResolveResult(
                hostname=host,
                host="127.0.0.1",
                port=port,
                family=socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        return None


async def test_idna_host_allowed_is_the_host_dialled() -> None:
    """maßive-cdn.com is xn--maive-cdn-h1a.com on the wire (UTS 46), not massive-cdn.com (IDNA
    2003): it must not pass an allowlist naming massive-cdn.com. Every spelling of an allowed
    unicode host resolves, and is sent as Host, under the one punycode name compared."""
    hosts: list[str] = []

    def record_host(request: Any, etag: str) -> Fault | None:
        hosts.append(request.headers["Host"])
        return None

    dns = NameLog({"massive-cdn.com", "xn--maive-cdn-h1a.com", "xn--bcher-kva.example"})
    with RangeServer({"ok/rgb.tif": RGB}, fault=record_host) as upstream:
        port = upstream.port
        config = ServiceConfig(
            allowed_sources=(
                f"http://massive-cdn.com:{port}/ok/",
                f"http://bücher.example:{port}/ok/",
            ),
            allowed_networks=("127.0.0.0/8",),
            upstream_connect_timeout=1.0,
        )
        client = TestClient(TestServer(create_app(config, resolver=dns)))
        await client.start_server()
        try:
            for url in (
                f"http://maßive-cdn.com:{port}/ok/rgb.tif",
                f"http://xn--maive-cdn-h1a.com:{port}/ok/rgb.tif",
                f"http://MAẞIVE-CDN.com:{port}/ok/rgb.tif",
                f"http://bucher.example:{port}/ok/rgb.tif",
            ):
                async with client.get("/info", params={"url": url}) as resp:
                    assert resp.status == 403, (url, await resp.text())
                    assert (await resp.json(content_type=None))["code"] == "source_not_allowed"
            assert dns.asked == []
            assert upstream.request_count == 0
            for url, wire in (
                (f"http://massive-cdn.com:{port}/ok/rgb.tif", "massive-cdn.com"),
                (f"http://MASSIVE-cdn.com.:{port}/ok/rgb.tif", "massive-cdn.com"),
                (f"http://bücher.example:{port}/ok/rgb.tif", "xn--bcher-kva.example"),
                (f"http://BÜCHER.example:{port}/ok/rgb.tif", "xn--bcher-kva.example"),
                (f"http://xn--bcher-kva.example:{port}/ok/rgb.tif", "xn--bcher-kva.example"),
                (f"http://\uff42ücher.example.:{port}/ok/rgb.tif", "xn--bcher-kva.example"),
            ):
                dns.asked.clear()
                hosts.clear()
                async with client.get("/info", params={"url": url}) as resp:
                    assert resp.status == 200, (url, await resp.text())
                    assert (await resp.json())["width"] == 600
                # The block cache may answer later reads, but the header is read every time.
                assert set(dns.asked) <= {wire}, (url, dns.asked)
                assert hosts, url
                assert set(hosts) == {f"{wire}:{port}"}, (url, hosts)
        finally:
            await client.close()


# --------------------------------------------------------------------------------------------
# redirects: each hop judged before it is requested, only Location followed, at most 5 hops
# --------------------------------------------------------------------------------------------


def _dialled(connects: list[tuple[Any, ...]]) -> set[tuple[str, int]]:
    return {(str(a[0]), int(a[1])) for a in connects if len(a) >= 2}


async def _problem(
    client: TestClient[Any, Any], path: str, status: int, **params: str
) -> dict[str, Any]:
    async with client.get(path, params=params) as resp:
        body = await resp.read()
        assert resp.status == status, body
        assert resp.headers["Content-Type"] == "application/problem+json"
        doc: dict[str, Any] = await resp.json(content_type=None)
    return doc


@pytest.mark.parametrize("path", sorted(UNFOLLOWED))
async def test_redirect_without_a_location_is_not_followed(
    target: Target, connects: list[tuple[Any, ...]], path: str
) -> None:
    """aiohttp would follow ``URI`` when ``Location`` is missing or empty; cloudroi follows only
    ``Location``: such an answer is a 502 and its ``URI`` is never asked for."""
    doc = await _problem(target.client, "/info", 502, url=target.upstream.url(path))
    assert doc["code"] == "upstream_error"
    assert [e.status for e in target.upstream.log] == [
        int(path[4:7]) if path[4:7].isdigit() else 302
    ]
    assert target.upstream.requests_for("elsewhere/rgb.tif") == []
    assert target.other.request_count == 0
    unexpected = _dialled(connects) - target.allowed_connects()
    assert unexpected <= {("127.0.0.1", target.upstream.port)}


async def test_redirect_chains_end_after_five_hops(target: Target) -> None:
    doc = await _problem(target.client, "/info", 502, url=target.upstream.url("ok/chain-1.tif"))
    assert doc["code"] == "upstream_error"
    assert [e.path for e in target.upstream.log] == [f"/ok/chain-{i}.tif" for i in range(1, 7)]
    target.upstream.reset()
    async with target.client.get(
        "/info", params={"url": target.upstream.url("ok/chain-2.tif")}
    ) as resp:
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["width"] == 600
    assert [e.path for e in target.upstream.log][:6] == [
        *(f"/ok/chain-{i}.tif" for i in range(2, 7)),
        "/ok/rgb.tif",
    ]


async def test_redirect_inside_the_prefix_is_followed(target: Target) -> None:
    want = RGB_SAMPLE.levels[0]
    for name in ("ok/moved.tif", "ok/moved-absolute.tif", "ok/chain-3.tif", "ok/rgb.tif"):
        params = {"url": target.upstream.url(name), "window": "0,0,600,500", "format": "npy"}
        async with target.client.get("/region", params=params) as resp:
            body = await resp.read()
            assert resp.status == 200, body
        np.testing.assert_array_equal(np.load(io.BytesIO(body)), want)
    assert target.upstream.requests_for("elsewhere/rgb.tif") == []


async def test_redirect_to_another_port_of_an_allowed_network(
    target: Target, connects: list[tuple[Any, ...]]
) -> None:
    """With 127.0.0.0/8 allowed as a network, the address guard lets any loopback port through:
    the allowlist alone must stop a redirect to another port, whichever header carries it."""
    config = ServiceConfig(
        allowed_sources=(target.upstream.url("ok/"),),
        allowed_networks=("127.0.0.0/8",),
        upstream_connect_timeout=1.0,
    )
    client = TestClient(TestServer(create_app(config)))
    await client.start_server()
    try:
        for path, status in (
            ("ok/to-other.tif", 403),
            ("ok/to-other-mapped.tif", 403),
            ("ok/to-localhost.tif", 403),
            ("ok/uri-to-other.tif", 502),
            ("ok/uri-only.tif", 502),
            ("ok/uri-empty-location.tif", 502),
        ):
            doc = await _problem(client, "/info", status, url=target.upstream.url(path))
            assert doc["code"] == ("source_not_allowed" if status == 403 else "upstream_error")
            assert str(target.other.port) not in doc["detail"]
        async with client.get("/info", params={"url": target.upstream.url("ok/moved.tif")}) as resp:
            assert resp.status == 200, await resp.text()
    finally:
        await client.close()
    assert target.other.request_count == 0
    assert ("127.0.0.1", target.other.port) not in _dialled(connects)
    assert target.upstream.requests_for("elsewhere/rgb.tif") == []


# --------------------------------------------------------------------------------------------
# upstream error bodies never reach the client
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 410, 412, 416, 429, 500, 502, 503])
async def test_upstream_error_bodies_are_never_echoed(target: Target, status: int) -> None:
    marker = f"SECRET-{uuid.uuid4().hex}"
    body = (
        f"<?xml version='1.0'?><Error><Code>Oops</Code><Message>{marker}</Message>"
        f"<Key>internal/{marker}</Key></Error>"
    ).encode()
    target.upstream.fault = lambda request, etag: Fault(
        "status",
        status=status,
        headers={"X-Upstream-Detail": marker, "Retry-After": "0"},
        body=body,
    )
    async with target.client.get(
        "/info", params={"url": target.upstream.url("ok/rgb.tif")}
    ) as resp:
        text = await resp.text()
        assert resp.status in (403, 404, 502), text
        assert marker not in text
        assert all(marker not in v for v in resp.headers.values())
        assert resp.headers["Content-Type"] == "application/problem+json"


# --------------------------------------------------------------------------------------------
# API keys
# --------------------------------------------------------------------------------------------

KEYS = ("k-7f3a9c2e5b1d4f60", "k-rotated-0b8e6d4c2a19")


@pytest.fixture
async def locked(target: Target) -> AsyncIterator[TestClient[Any, Any]]:
    config = ServiceConfig(allowed_sources=(target.upstream.url("ok/"),), api_keys=KEYS)
    client = TestClient(TestServer(create_app(config)))
    await client.start_server()
    yield client
    await client.close()


async def test_api_key_is_required_on_every_endpoint_but_healthz(
    locked: TestClient[Any, Any], target: Target
) -> None:
    url = target.upstream.url("ok/rgb.tif")
    before = target.upstream.request_count
    wrong = [
        {},
        {"X-API-Key": ""},
        {"X-API-Key": "nope"},
        {"X-API-Key": KEYS[0][:-1]},
        {"X-API-Key": KEYS[0] + "x"},
        {"X-API-Key": KEYS[0].upper()},
        {"Authorization": f"Basic {KEYS[0]}"},
        {"Authorization": KEYS[0]},
        {"Authorization": "Bearer"},
        {"X-Api-Key": f"{KEYS[0]}, {KEYS[1]}"},
    ]
    for headers in wrong:
        for path in ("/info", "/region", "/metrics", "/openapi.json", "/no-such-endpoint"):
            async with locked.get(path, params={"url": url}, headers=headers) as resp:
                text = await resp.text()
                assert resp.status == 401, (path, headers, text)
                assert resp.headers["WWW-Authenticate"].startswith("Bearer")
                assert (await resp.json(content_type=None))["code"] == "unauthorized"
                assert KEYS[0] not in text
                assert KEYS[1] not in text
    assert target.upstream.request_count == before  # refused before touching storage
    async with locked.get("/healthz") as resp:
        assert resp.status == 200
    for headers in (
        {"X-API-Key": KEYS[0]},
        {"x-api-key": KEYS[1]},
        {"Authorization": f"Bearer {KEYS[0]}"},
        {"authorization": f"bearer {KEYS[1]}"},
    ):
        async with locked.get("/info", params={"url": url}, headers=headers) as resp:
            assert resp.status == 200, (headers, await resp.text())


def test_api_keys_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every configured key is compared, match or not, on equal-length digests: the time taken
    says nothing about which key matched or how much of one did."""
    calls: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    keys = ApiKeys(["short", "a-much-longer-key-than-the-first", "third"])
    for presented, ok in (("short", True), ("third", True), ("shor", False), ("x" * 500, False)):
        calls.clear()
        assert keys.permits({"x-api-key": presented}) is ok
        assert len(calls) == 3
        assert all(a == b == 32 for a, b in calls)


def test_api_keys_configuration() -> None:
    config = ServiceConfig.from_env({"CLOUDROI_API_KEYS": f"{KEYS[0]}, {KEYS[1]}"})
    assert config.api_keys == KEYS
    assert KEYS[0] not in repr(config)
    with pytest.raises(ValueError, match="API keys"):
        ServiceConfig(api_keys=("has space",)).validate()
    assert ServiceConfig.from_env({}).api_keys == ()
