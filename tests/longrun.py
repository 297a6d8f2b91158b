"""The long-run switch: CLOUDROI_LONG=1 runs the tests marked ``slow`` (long fuzz, soak, load
and framing runs) and bigger counts in the suites that scale; CI runs the short versions."""

from __future__ import annotations

import os

__all__ = ["LONG"]

LONG = os.environ.get("CLOUDROI_LONG") == "1"
