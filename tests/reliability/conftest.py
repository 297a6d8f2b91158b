"""Reliability suites: `slow` tests (the long fuzz, soak and load runs) need CLOUDROI_LONG=1."""

from __future__ import annotations

import os

import pytest

LONG = os.environ.get("CLOUDROI_LONG") == "1"


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("slow") is not None and not LONG:
        pytest.skip("long run: set CLOUDROI_LONG=1")
