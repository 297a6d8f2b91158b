"""The region layer: a request for part of an image -> one value holding its pixels, mask and
georeferencing (``ImageData``), which renders itself to the output formats.

Every front end (the aiohttp service and the Lambda handler through the service core, and the
CLI) parses its arguments with ``cloudroi.region.args``, builds a ``RegionRequest``, plans it
(``plan_region``: pure, from the header, so limits are checked before anything is fetched), reads
it (``read_region``) and renders the result (``ImageData.render``).
"""

from .args import ArgumentError
from .data import Encoded, ImageData, PointData, RequestBytes
from .expression import Expression, ExpressionError, parse_expression
from .plan import PointPlan, RegionPlan, RegionRequest, plan_point, plan_region
from .read import estimate_bytes, needs_mask, read_point, read_region
from .stats import BandStatistics, StatisticsError

__all__ = [
    "ArgumentError",
    "BandStatistics",
    "Encoded",
    "Expression",
    "ExpressionError",
    "ImageData",
    "PointData",
    "PointPlan",
    "RegionPlan",
    "RegionRequest",
    "RequestBytes",
    "StatisticsError",
    "estimate_bytes",
    "needs_mask",
    "parse_expression",
    "plan_point",
    "plan_region",
    "read_point",
    "read_region",
]
