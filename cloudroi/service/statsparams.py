"""Query parameters of ``/statistics`` and ``/cog/statistics`` (TiTiler's names), declared once
(``Param``, rendered by OpenAPI) and parsed with the shared rules of ``cloudroi.region.args``;
unknown parameters are ignored as on the other TiTiler-style routes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..region import args
from ..region.args import ArgumentError
from ..region.expression import Expression
from ..region.stats import MAX_BINS, StatisticsError, StatisticsOptions, check_options
from .mapparams import lenient
from .params import EXPRESSION_PARAM, MAX_LEVEL, URL_PARAM, Param, as_problem
from .problems import bad_request

__all__ = ["STATISTICS_PARAMS", "StatisticsQuery", "parse_statistics"]

_NUM = r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?"
_INTS = r"^[1-9]\d{0,4}(,[1-9]\d{0,4}){0,255}$"

STATISTICS_PARAMS: tuple[Param, ...] = (
    URL_PARAM,
    Param(
        "bidx",
        {"type": "string", "pattern": _INTS},
        "1-based band numbers; repeat it (bidx=1&bidx=2) or list them (bidx=1,2). Default: "
        "every band but alpha. `bands` is an alias.",
        example="1",
    ),
    Param("bands", {"type": "string", "pattern": _INTS}, "As bidx."),
    EXPRESSION_PARAM,
    Param(
        "max_size",
        {"type": "integer", "minimum": 1, "maximum": args.MAX_SIDE},
        "Longest side of the image read (default 1024), from the overview GDAL picks.",
    ),
    Param(
        "level",
        {"type": "integer", "minimum": 0, "maximum": MAX_LEVEL},
        "Measure this level (0: full resolution) at full size instead of max_size.",
    ),
    Param("nodata", {"type": "string"}, "Nodata value overriding the source's (or nan)."),
    Param(
        "resampling",
        {"type": "string", "enum": ["nearest"], "default": "nearest"},
        "RasterIO resampling of the read (nearest only).",
    ),
    Param("categorical", {"type": "boolean"}, "Count each distinct value instead of binning."),
    Param(
        "c",
        {"type": "string", "pattern": f"^{_NUM}(,{_NUM}){{0,255}}$"},
        "Categories to count (categorical); repeat it or list them.",
    ),
    Param(
        "p",
        {"type": "string", "pattern": r"^\d{1,3}(,\d{1,3}){0,100}$"},
        "Percentiles (0..100) to report; repeat it or list them (default 2,98).",
        example="2,98",
    ),
    Param(
        "histogram_bins",
        {"type": "string", "pattern": f"^{_NUM}(,{_NUM}){{0,1000}}$"},
        "Number of equal-width bins (default 10), or the bin edges comma-separated.",
    ),
    Param(
        "histogram_range",
        {"type": "string", "pattern": f"^{_NUM},{_NUM}$"},
        "min,max of the histogram (default: the values' range).",
    ),
)


@dataclass(frozen=True, slots=True)
class StatisticsQuery:
    url: str
    bands: tuple[int, ...] | None
    max_size: int | None
    level: int | None
    nodata: float | None
    options: StatisticsOptions
    canonical: str
    #: band math: the statistics of its outputs ("b1", "b2"...)
    expression: Expression | None = None


def _listed(values: Sequence[str]) -> list[str]:
    return [part for v in values for part in v.split(",")]


def _bins(text: str) -> int | tuple[float, ...]:
    parts = text.split(",")
    if len(parts) == 1:
        return args.integer("histogram_bins", parts[0], 1, MAX_BINS)
    if len(parts) > MAX_BINS + 1:
        raise ArgumentError("histogram_bins", f"at most {MAX_BINS + 1} bin edges")
    return tuple(args.number("histogram_bins", v) for v in parts)


def _nodata(text: str) -> float:
    lowered = text.strip().lower()
    return float(lowered) if lowered in ("nan", "inf", "-inf") else args.number("nodata", text)


def _sizes(q: dict[str, list[str]], limit: int) -> tuple[int | None, int | None]:
    size, level = q.get("max_size"), q.get("level")
    if size and level:
        raise ArgumentError("level", "give level or max_size, not both", "conflicting_parameters")
    if level:
        return None, args.integer("level", level[-1], 0, MAX_LEVEL)
    if size:
        return args.integer("max_size", size[-1], 1, limit), None
    return min(1024, limit), None


def _options(q: dict[str, list[str]]) -> StatisticsOptions:
    pcts = [args.integer("p", v, 0, 100) for v in _listed(q.get("p", []))]
    cats = [args.number("c", v) for v in _listed(q.get("c", []))]
    bins = _bins(q["histogram_bins"][-1]) if "histogram_bins" in q else 10
    rng = None
    if "histogram_range" in q:
        parts = q["histogram_range"][-1].split(",")
        if len(parts) != 2:
            raise ArgumentError("histogram_range", "histogram_range is min,max")
        rng = [args.number("histogram_range", v) for v in parts]
    cat = args.boolean("categorical", q["categorical"][-1]) if "categorical" in q else False
    try:
        return check_options(pcts or None, bins, rng, cat, cats or None)
    except StatisticsError as exc:
        raise ArgumentError("statistics", str(exc)) from exc


def parse_statistics(items: Sequence[tuple[str, str]], max_size_limit: int) -> StatisticsQuery:
    """The query of /statistics: 400 problems for what the shared rules refuse."""
    for name, _ in items:
        if name in ("width", "height"):
            raise bad_request(
                f"parameter {name!r} is not supported by /statistics yet; use max_size",
                code="unsupported_parameter",
            )
    q, kept = lenient(items, STATISTICS_PARAMS)
    with as_problem():
        picked = [int(b) for v in q.get("bidx", []) + q.get("bands", []) for b in args.bands(v)]
        if len(picked) > args.MAX_BANDS:
            raise ArgumentError("bidx", f"at most {args.MAX_BANDS} bands", "invalid_bands")
        resampling = q.get("resampling", ["nearest"])[-1].strip().lower()
        if resampling != "nearest":
            raise ArgumentError(
                "resampling", "statistics read with nearest only", "unsupported_parameter"
            )
        max_size, level = _sizes(q, max_size_limit)
        nodata = _nodata(q["nodata"][-1]) if "nodata" in q else None
        options = _options(q)
        text = q.get("expression", [""])[-1]
        expression = args.expression(text) if text.strip() else None
        if expression is not None and picked:
            raise ArgumentError(
                "expression", "give bidx or expression, not both", "conflicting_parameters"
            )
    canonical = "&".join(f"{k}={v}" for k, v in sorted(kept) if k != "url")
    bands = tuple(picked) or None
    return StatisticsQuery(
        q["url"][-1], bands, max_size, level, nodata, options, canonical, expression
    )
