"""gdalwarp itself, from the GDAL that rasterio ships (its libgdal, through ctypes).

rasterio exposes ``reproject`` (a GDALWarpOperation on what it is given) but not the gdalwarp
application, whose ``-ovr AUTO`` picks the overview a region is warped from. ``GDALWarp()`` is
the application's library entry point; this calls it on files with gdalwarp's own arguments.
"""

from __future__ import annotations

import ctypes
import glob
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import rasterio

__all__ = ["gdalwarp"]


@cache
def _lib() -> ctypes.CDLL:
    libs = Path(rasterio.__file__).parent.parent / "rasterio.libs"
    found = sorted(glob.glob(str(libs / "libgdal*")))
    # a rasterio linked to a system GDAL: that library is already loaded into the process
    lib = ctypes.CDLL(found[0]) if found else ctypes.CDLL(None)
    lib.GDALOpen.restype = ctypes.c_void_p
    lib.GDALOpen.argtypes = [ctypes.c_char_p, ctypes.c_int]
    lib.GDALClose.argtypes = [ctypes.c_void_p]
    lib.GDALWarpAppOptionsNew.restype = ctypes.c_void_p
    lib.GDALWarpAppOptionsNew.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_void_p]
    lib.GDALWarpAppOptionsFree.argtypes = [ctypes.c_void_p]
    lib.GDALWarp.restype = ctypes.c_void_p
    lib.GDALWarp.argtypes = [
        ctypes.c_char_p,
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.POINTER(ctypes.c_void_p),
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_int),
    ]
    lib.GDALAllRegister()
    return lib


def gdalwarp(src: Path, dst: Path, args: Sequence[str]) -> None:
    """``gdalwarp <args> src dst`` with the GDAL rasterio uses."""
    lib = _lib()
    argv = (ctypes.c_char_p * (len(args) + 1))(*[a.encode() for a in args], None)
    options = lib.GDALWarpAppOptionsNew(argv, None)
    assert options, f"gdalwarp refused {args}"
    hsrc = lib.GDALOpen(str(src).encode(), 0)
    assert hsrc, f"GDAL cannot open {src}"
    try:
        usage = ctypes.c_int(0)
        srcs = (ctypes.c_void_p * 1)(hsrc)
        out = lib.GDALWarp(str(dst).encode(), None, 1, srcs, options, ctypes.byref(usage))
        assert out, f"gdalwarp {args} failed"
        assert not usage.value, f"gdalwarp {args}: usage error"
        lib.GDALClose(out)
    finally:
        lib.GDALClose(hsrc)
        lib.GDALWarpAppOptionsFree(options)
