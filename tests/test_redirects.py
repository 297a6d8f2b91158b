"""HTTP redirects, followed by cloudroi itself: only ``Location`` (never ``URI``), resolved against
the URL that answered, at most five hops, each target judged before it is requested (http(s) only
by default; the service plugs its allowlist in), credentials dropped across origins, and the end
of an open's chain remembered so that range GETs go straight there. Real sockets throughout."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from yarl import URL

import cloudroi
from cloudroi.cog import write_cog
from cloudroi.service.security import SourceNotAllowedError, SourcePolicy
from cloudroi.service.state import guarded_context
from cloudroi.testing import Fault, RangeServer

PIXELS = np.random.default_rng(11).integers(0, 65535, (300, 260), dtype=np.uint16)
COG = write_cog(PIXELS, tile=64, compression="deflate", predictor=2, overviews=0)
WINDOW = (10, 20, 200, 150)  # 3 x 4 blocks
WANT = PIXELS[20:170, 10:210]
_names = itertools.count()


class Redirects:
    """A fault hook answering the paths in ``answers`` (path -> (status, headers)) with them."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, dict[str, str]]] = {}
        self.seen: dict[str, list[dict[str, str]]] = {}

    def __call__(self, request: Any, etag: str) -> Fault | None:
        self.seen.setdefault(request.path, []).append(dict(request.headers))
        answer = self.answers.get(request.path)
        if answer is None:
            return None
        status, headers = answer
        return Fault("status", status=status, headers=headers)


@pytest.fixture
def redirects(server: RangeServer) -> tuple[RangeServer, Redirects, str]:
    """The session server with a redirect hook, and a fresh directory ``/redir-N/`` holding
    ``cog.tif`` and empty files for redirecting paths ``r0.tif`` .. ``r9.tif``."""
    hook = Redirects()
    server.fault = hook
    base = f"/redir-{next(_names)}/"
    server.add(base + "cog.tif", COG)
    for i in range(10):
        server.add(f"{base}r{i}.tif", b"")
    return server, hook, base


def _paths(server: RangeServer, base: str) -> list[str]:
    return [e.path.removeprefix(base) for e in server.requests_for() if e.path.startswith(base)]


async def test_a_redirect_inside_is_followed_and_its_end_remembered(
    redirects: tuple[RangeServer, Redirects, str],
) -> None:
    server, hook, base = redirects
    hook.answers[base + "r0.tif"] = (302, {"Location": "cog.tif"})  # relative to the answer
    async with cloudroi.Context() as ctx:
        async with cloudroi.open(server.url(base + "cog.tif"), context=ctx) as direct:
            want = await direct.read(WINDOW)
        server.reset()
        async with cloudroi.open(server.url(base + "r0.tif"), context=ctx) as img:
            assert img.url == server.url(base + "r0.tif")
            img.context.block_cache.clear()
            got = await img.read(WINDOW)
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(got[0], WANT)
            paths = _paths(server, base)
            # the redirect once (at open), then every range GET straight to its end
            assert paths[0] == "r0.tif"
            assert paths.count("r0.tif") == 1
            assert len(paths) == img.stats.requests  # the redirect hop counted too


async def test_the_remembered_end_is_followed_again_once_when_gone(
    redirects: tuple[RangeServer, Redirects, str],
) -> None:
    """A redirect to a URL that expires (a presigned URL, say): a 404/403 from the remembered
    end sends the GET through the original URL again, once."""
    server, hook, base = redirects
    server.add(base + "v1.tif", COG)
    server.add(base + "v2.tif", COG)
    hook.answers[base + "r0.tif"] = (302, {"Location": "v1.tif"})
    async with (
        cloudroi.Context() as ctx,
        cloudroi.open(server.url(base + "r0.tif"), context=ctx) as img,
    ):
        hook.answers[base + "r0.tif"] = (307, {"Location": "v2.tif"})
        hook.answers[base + "v1.tif"] = (403, {})
        server.reset()
        np.testing.assert_array_equal((await img.read((0, 0, 60, 60)))[0], PIXELS[:60, :60])
        assert _paths(server, base) == ["v1.tif", "r0.tif", "v2.tif"]
        # and when the original URL leads nowhere any more, that is the error
        server.remove(base + "v2.tif")
        hook.answers[base + "r0.tif"] = (302, {"Location": "gone.tif"})
        img.context.block_cache.clear()
        with pytest.raises(cloudroi.SourceNotFoundError):
            await img.read((64, 64, 10, 10))


@pytest.mark.parametrize(
    "headers",
    [
        {"URI": "cog.tif"},
        {"Location": "", "URI": "cog.tif"},
        {"Location": "  ", "URI": "cog.tif"},
        {},
    ],
    ids=["uri-only", "empty-location", "blank-location", "nothing"],
)
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_only_location_is_followed(
    redirects: tuple[RangeServer, Redirects, str], headers: dict[str, str], status: int
) -> None:
    server, hook, base = redirects
    hook.answers[base + "r0.tif"] = (status, headers)
    server.reset()
    with pytest.raises(cloudroi.UpstreamError, match="without a Location") as err:
        await cloudroi.open(server.url(base + "r0.tif"))
    assert not isinstance(err.value, cloudroi.TransientError)
    assert _paths(server, base) == ["r0.tif"]


async def test_at_most_five_redirects(redirects: tuple[RangeServer, Redirects, str]) -> None:
    server, hook, base = redirects
    for i in range(6):  # r0 -> r1 -> ... -> r5 -> cog.tif: six redirects from r0, five from r1
        target = f"r{i + 1}.tif" if i < 5 else "cog.tif"
        hook.answers[f"{base}r{i}.tif"] = (302, {"Location": target})
    server.reset()
    with pytest.raises(cloudroi.UpstreamError, match="redirects"):
        await cloudroi.open(server.url(base + "r0.tif"))
    assert _paths(server, base) == [f"r{i}.tif" for i in range(6)]  # cog.tif never asked
    server.reset()
    async with cloudroi.open(server.url(base + "r1.tif")) as img:  # five redirects
        np.testing.assert_array_equal((await img.read(WINDOW))[0], WANT)
    assert _paths(server, base)[:6] == ["r1.tif", "r2.tif", "r3.tif", "r4.tif", "r5.tif", "cog.tif"]


@pytest.mark.parametrize(
    "location",
    [
        "file:///etc/passwd",
        "ftp://127.0.0.1/x.tif",
        "gopher://127.0.0.1:70/_x",
        "data:text/plain,x",
        "http://[::1/x.tif",
    ],
)
async def test_redirects_to_other_schemes_are_refused(
    redirects: tuple[RangeServer, Redirects, str], location: str
) -> None:
    server, hook, base = redirects
    hook.answers[base + "r0.tif"] = (302, {"Location": location})
    server.reset()
    with pytest.raises(cloudroi.UpstreamError, match="redirect") as err:
        await cloudroi.open(server.url(base + "r0.tif"))
    assert not isinstance(err.value, cloudroi.TransientError)  # not retried either
    assert _paths(server, base) == ["r0.tif"]


async def test_each_hop_is_checked_before_it_is_requested(
    redirects: tuple[RangeServer, Redirects, str],
) -> None:
    server, hook, base = redirects
    hook.answers[base + "r0.tif"] = (302, {"Location": "r1.tif?sig=1#frag"})
    hook.answers[base + "r1.tif"] = (302, {"Location": "/elsewhere/cog.tif"})
    server.add("/elsewhere/cog.tif", COG)
    seen: list[URL] = []

    def check(target: URL) -> None:
        seen.append(target)
        if not target.path.startswith(base):
            raise cloudroi.AccessDeniedError("not here")

    server.reset()
    async with cloudroi.Context(check_redirect=check) as ctx:
        with pytest.raises(cloudroi.AccessDeniedError, match="not here"):
            await cloudroi.open(server.url(base + "r0.tif"), context=ctx)
    assert [str(u) for u in seen] == [
        server.url(base + "r1.tif?sig=1"),
        server.url("/elsewhere/cog.tif"),
    ]
    assert _paths(server, base) == ["r0.tif", "r1.tif"]
    assert server.requests_for("/elsewhere/cog.tif") == []


async def test_credentials_stay_with_their_origin(
    redirects: tuple[RangeServer, Redirects, str],
) -> None:
    server, hook, base = redirects
    secret = {"Authorization": "Bearer s3cret", "Cookie": "session=s3cret", "X-Custom": "kept"}
    with RangeServer({"x/cog.tif": COG}) as other:
        other_hook = Redirects()
        other.fault = other_hook
        hook.answers[base + "r0.tif"] = (302, {"Location": "r1.tif"})
        hook.answers[base + "r1.tif"] = (302, {"Location": other.url("x/cog.tif")})
        async with (
            cloudroi.Context(http_headers=secret) as ctx,
            cloudroi.open(server.url(base + "r0.tif"), context=ctx) as img,
        ):
            np.testing.assert_array_equal((await img.read(WINDOW))[0], WANT)
        assert hook.seen[base + "r1.tif"][0]["Authorization"] == "Bearer s3cret"  # same origin
        for headers in other_hook.seen["/x/cog.tif"]:
            assert "Authorization" not in headers
            assert "Cookie" not in headers
            assert headers["X-Custom"] == "kept"
        assert other.request_count >= 2


async def test_guarded_session_checks_what_aiohttp_follows(
    redirects: tuple[RangeServer, Redirects, str],
) -> None:
    """The service's session itself (for code using it directly, redirects on): a redirect
    carried by ``URI`` is judged like one carried by ``Location``."""
    server, hook, base = redirects
    with RangeServer({"x/cog.tif": COG}) as other:
        policy = SourcePolicy([server.url(base)], ["127.0.0.0/8"])
        for headers in (
            {"URI": other.url("x/cog.tif")},
            {"Location": "", "URI": other.url("x/cog.tif")},
            {"URI": "/elsewhere/cog.tif"},
        ):
            hook.answers[base + "r0.tif"] = (302, headers)
            async with guarded_context(policy) as ctx:
                session = ctx.http_session()
                with pytest.raises(SourceNotAllowedError):
                    await session.get(server.url(base + "r0.tif"))
        assert other.request_count == 0
        assert server.requests_for("/elsewhere/cog.tif") == []


async def test_multi_range_refusal_is_remembered_for_the_origin_serving_the_bytes(
    redirects: tuple[RangeServer, Redirects, str],
) -> None:
    server, hook, base = redirects
    with RangeServer({"x/cog.tif": COG}, multirange=False) as other:  # 200 to multi-range GETs
        hook.answers[base + "r0.tif"] = (302, {"Location": other.url("x/cog.tif")})
        async with (
            cloudroi.Context() as ctx,
            cloudroi.open(
                server.url(base + "r0.tif"), context=ctx, multirange=True, coalesce_gap=0
            ) as img,
        ):
            ctx.block_cache.clear()
            np.testing.assert_array_equal((await img.read(WINDOW))[0], WANT)
            assert list(ctx.multirange_refused) == [other.url("").rstrip("/")]
            assert any("," in (e.range or "") for e in other.log)  # it was asked
