"""Pure TIFF/GeoTIFF parsing: no I/O happens in this package."""

from .geo import GeoInfo
from .index import IndexArray
from .parse import NeedBytes, ParseLimits, SparseBuffer, TiffHeader
from .structure import ImageIFD, ScanResult, TiffStructure, build, scan

__all__ = [
    "GeoInfo",
    "ImageIFD",
    "IndexArray",
    "NeedBytes",
    "ParseLimits",
    "ScanResult",
    "SparseBuffer",
    "TiffHeader",
    "TiffStructure",
    "build",
    "scan",
]
