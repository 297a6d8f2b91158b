"""Batch reads: many windows or regions of many files in one call (``read_many``), each file
opened once and neighbouring reads' blocks fetched together; ``cloudroi.batch.dask`` spreads a
batch over Dask workers."""

from __future__ import annotations

from .many import Result, read_many
from .requests import ChipRequest, as_requests

__all__ = ["ChipRequest", "Result", "as_requests", "read_many"]
