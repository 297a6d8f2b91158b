"""Helpers for tests, benchmarks and the demo: a real HTTP range server and sample images."""

from .rangeserver import Fault, RangeServer, RequestLog
from .tail import LongTail

__all__ = ["Fault", "LongTail", "RangeServer", "RequestLog"]
