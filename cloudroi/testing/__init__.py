"""Helpers for tests, benchmarks and the demo: a real HTTP range server and sample images."""

from .rangeserver import Fault, RangeServer, RequestLog

__all__ = ["Fault", "RangeServer", "RequestLog"]
