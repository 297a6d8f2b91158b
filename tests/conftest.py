"""Shared fixtures: a real HTTP range server on 127.0.0.1, started once per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cloudroi.testing import RangeServer


@pytest.fixture(scope="session")
def range_server() -> Iterator[RangeServer]:
    """One server for the session; tests add files under unique paths and call ``reset()``."""
    with RangeServer() as server:
        yield server


@pytest.fixture
def server(range_server: RangeServer) -> Iterator[RangeServer]:
    """The session server with its request log cleared and no fault hook or latency."""
    range_server.reset()
    range_server.fault = None
    range_server.latency = 0.0
    yield range_server
    range_server.fault = None
    range_server.latency = 0.0
