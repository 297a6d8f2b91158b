"""Service metrics in the Prometheus text exposition format (version 0.0.4), with no dependency.

Counters and a latency histogram are updated by the request core on the event loop; gauges of the
shared caches are read when /metrics is scraped. Label values are bounded: endpoints are the known
routes (anything else is ``other``) and statuses are HTTP status codes.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable

from ..types import Stats

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Latency buckets in seconds: region reads run from milliseconds (cached) to seconds (cold).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
    return "{" + inner + "}" if inner else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class _Histogram:
    __slots__ = ("counts", "sum", "total")

    def __init__(self) -> None:
        self.counts = [0] * len(BUCKETS)
        self.sum = 0.0
        self.total = 0

    def observe(self, value: float) -> None:
        i = bisect.bisect_left(BUCKETS, value)
        if i < len(self.counts):
            self.counts[i] += 1
        self.sum += value
        self.total += 1


class Metrics:
    """What /metrics reports. ``gauges`` are callables read at scrape time."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = {}
        self.latency: dict[str, _Histogram] = {}
        self.upstream_requests = 0
        self.upstream_bytes = 0
        self.block_cache_hits = 0
        self.block_cache_misses = 0
        self.decoded_cache_hits = 0
        self.header_cache_hits = 0
        self.upstream_hedged = 0
        self.upstream_hedge_wins = 0
        self.shed = 0
        self.in_flight = 0
        self.gauges: dict[str, tuple[str, Callable[[], float]]] = {}

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        key = (endpoint, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        hist = self.latency.get(endpoint)
        if hist is None:
            hist = self.latency[endpoint] = _Histogram()
        hist.observe(seconds)

    def add_reads(self, stats: Stats) -> None:
        """Fold one Image's counters into the totals."""
        self.upstream_requests += stats.requests
        self.upstream_bytes += stats.bytes_fetched
        self.block_cache_hits += stats.cache_hits
        self.block_cache_misses += stats.cache_misses
        self.decoded_cache_hits += stats.decoded_cache_hits
        self.header_cache_hits += stats.header_cache_hits
        self.upstream_hedged += stats.hedged
        self.upstream_hedge_wins += stats.hedge_wins

    def render(self) -> str:
        """The Prometheus text exposition of every family."""
        out: list[str] = []
        self._requests(out)
        self._latency(out)
        for name, help_text, value in self._counters():
            _family(out, name, "counter", help_text)
            out.append(f"{name} {value}")
        _family(out, "cloudroi_requests_in_flight", "gauge", "Requests reading storage now.")
        out.append(f"cloudroi_requests_in_flight {self.in_flight}")
        for name, (help_text, read) in sorted(self.gauges.items()):
            _family(out, name, "gauge", help_text)
            out.append(f"{name} {_number(read())}")
        return "\n".join(out) + "\n"

    def _requests(self, out: list[str]) -> None:
        help_text = "Requests answered, by endpoint and status."
        _family(out, "cloudroi_requests_total", "counter", help_text)
        for (endpoint, status), n in sorted(self.requests.items()):
            labels = _labels([("endpoint", endpoint), ("status", str(status))])
            out.append(f"cloudroi_requests_total{labels} {n}")

    def _latency(self, out: list[str]) -> None:
        name = "cloudroi_request_duration_seconds"
        _family(out, name, "histogram", "Time to answer, by endpoint.")
        for endpoint, hist in sorted(self.latency.items()):
            running = 0
            for bound, count in zip(BUCKETS, hist.counts, strict=True):
                running += count
                labels = _labels([("endpoint", endpoint), ("le", _number(bound))])
                out.append(f"{name}_bucket{labels} {running}")
            labels = _labels([("endpoint", endpoint), ("le", "+Inf")])
            out.append(f"{name}_bucket{labels} {hist.total}")
            ep = _labels([("endpoint", endpoint)])
            out.append(f"{name}_sum{ep} {_number(hist.sum)}")
            out.append(f"{name}_count{ep} {hist.total}")

    def _counters(self) -> list[tuple[str, str, int]]:
        return [
            (
                "cloudroi_upstream_requests_total",
                "Requests sent to storage.",
                self.upstream_requests,
            ),
            ("cloudroi_upstream_bytes_total", "Bytes received from storage.", self.upstream_bytes),
            (
                "cloudroi_block_cache_hits_total",
                "Blocks served from the block cache.",
                self.block_cache_hits,
            ),
            (
                "cloudroi_block_cache_misses_total",
                "Blocks not in the block cache.",
                self.block_cache_misses,
            ),
            (
                "cloudroi_decoded_cache_hits_total",
                "Blocks served decoded from the decoded-block cache (neither fetched nor decoded).",
                self.decoded_cache_hits,
            ),
            (
                "cloudroi_header_cache_hits_total",
                "Opens that reused a parsed header.",
                self.header_cache_hits,
            ),
            (
                "cloudroi_upstream_hedged_total",
                "Storage GETs sent a second time because their first byte was late.",
                self.upstream_hedged,
            ),
            (
                "cloudroi_upstream_hedge_wins_total",
                "Hedged GETs whose second copy answered first.",
                self.upstream_hedge_wins,
            ),
            (
                "cloudroi_requests_shed_total",
                "Requests refused with 503 under overload.",
                self.shed,
            ),
        ]


def _family(out: list[str], name: str, kind: str, help_text: str) -> None:
    out.append(f"# HELP {name} {help_text}")
    out.append(f"# TYPE {name} {kind}")
