"""Reliability suites: `slow` tests (the long fuzz, soak and load runs) need CLOUDROI_LONG=1."""

from __future__ import annotations

import pytest
from reliability_support import LONG


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("slow") is not None and not LONG:
        pytest.skip("long run: set CLOUDROI_LONG=1")
