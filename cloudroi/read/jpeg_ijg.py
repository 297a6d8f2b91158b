"""YCbCr JPEG blocks decoded as IJG libjpeg 9 decodes them (``jpeg_decoder="ijg9"``).

Why: GDAL decodes JPEG-in-TIFF with whatever libjpeg it was linked to. libjpeg-turbo (Debian and
Ubuntu GDAL, conda-forge) upsamples 4:2:0 chroma with a triangle filter after an 8x8 IDCT: so
does imagecodecs, cloudroi's default decoder ("turbo"), and the two agree bit for bit. IJG
libjpeg 9 (the libjpeg bundled in rasterio's and fiona's PyPI wheels) instead inverse-transforms
each 8x8 chroma block straight to 16x16 pixels, which differs from the triangle filter by up to
255 DN at saturated colour edges (mean under 1 DN on smooth imagery).

How: the PyPI package ``jpeglib`` (extra ``jpeg-ijg9``) bundles IJG libjpeg 9f as a shared
library with a ``read_jpeg_spatial(path, ...)`` entry point. It is loaded here once, on its own
ctypes handle (so ``jpeglib``'s process-wide version switch is never touched), and called from
the decode threads; ctypes releases the GIL for the call. The entry point reads a file: the
block is handed over as an anonymous in-memory file (``memfd``), never written to disk on Linux.

Safety: that entry point does not survive libjpeg errors (a missing SOS, a bad Huffman table,
an unknown marker crash the process). So a stream is handed to it only after
``_validate`` has walked every marker segment and checked everything IJG 9f would refuse with
an error (checks read from its jdmarker.c, jdinput.c, jdhuff.c); corrupt entropy-coded data only
ever gives libjpeg warnings. Streams it does not accept (progressive, arithmetic, 12-bit,
other sampling, malformed) return None and take the default path, which reports the malformed
ones as TiffFormatError.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ..errors import MissingExtraError, OptionError

__all__ = ["JPEG_DECODERS", "JpegDecoder", "check_jpeg_decoder", "decode_ijg9", "ijg9_available"]

JpegDecoder = Literal["turbo", "ijg9"]
#: The decoders ``jpeg_decoder`` may name.
JPEG_DECODERS: tuple[JpegDecoder, ...] = ("turbo", "ijg9")
_EXTRA = "jpeg-ijg9"

_lock = threading.Lock()
_entry: Any = None
_USE_MEMFD = hasattr(os, "memfd_create") and Path("/proc/self/fd").is_dir()


def check_jpeg_decoder(name: str) -> JpegDecoder:
    """``name`` as a JpegDecoder; OptionError (a ValueError) for an unknown one,
    MissingExtraError when "ijg9" is asked for without its extra installed."""
    if name not in JPEG_DECODERS:
        raise OptionError(f"jpeg_decoder must be one of {', '.join(JPEG_DECODERS)}; got {name!r}")
    if name == "ijg9" and _load() is None:
        raise MissingExtraError("jpeg_decoder='ijg9' (IJG libjpeg 9 decoding)", _EXTRA)
    return "ijg9" if name == "ijg9" else "turbo"


def ijg9_available() -> bool:
    """Whether the ``jpeg-ijg9`` extra (PyPI ``jpeglib``, IJG libjpeg 9f) is installed."""
    return _load() is not None


def _library_path() -> Path | None:
    try:
        spec = importlib.util.find_spec("jpeglib")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "cjpeglib"
    found = sorted(p for p in folder.glob("cjpeglib_9f.*") if p.suffix in (".so", ".pyd", ".dll"))
    return found[0] if found else None


def _load() -> Any:
    """The bundled IJG 9f ``read_jpeg_spatial`` (loaded once), or None without the extra."""
    global _entry
    with _lock:
        if _entry is None:
            path = _library_path()
            if path is None:
                return None
            try:
                fn = ctypes.CDLL(str(path)).read_jpeg_spatial
            except (OSError, AttributeError):
                return None
            fn.restype = ctypes.c_int
            fn.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
            fn.argtypes += [ctypes.c_int] * 3 + [ctypes.c_uint] * 2
            _entry = fn
        return _entry


def decode_ijg9(data: bytes, tables: bytes | None) -> npt.NDArray[np.uint8] | None:
    """A YCbCr JPEG block (with the IFD's JPEGTables) as (rows, cols, 3) RGB, decoded by IJG
    libjpeg 9f as GDAL linked to it does; None for a stream not handed to it (see module)."""
    stream = _merge(data, tables)
    if stream is None:
        return None
    size = _validate(stream)
    entry = _entry if _entry is not None else _load()
    if size is None or entry is None:
        return None
    out = np.empty((size[0], size[1], 3), np.uint8)
    with _as_file(stream) as path:
        # out_color_space JCS_RGB (2); dither, DCT method and flags: library defaults (-1, no
        # overrides), as libtiff leaves them for GDAL.
        status = entry(path, out.ctypes.data, None, None, 2, -1, -1, 0, 0xFFFFFFFF)
    if status != 1:
        raise ValueError("IJG libjpeg 9 could not decode the block")
    return out


def _merge(data: bytes, tables: bytes | None) -> bytes | None:
    """The block as one complete stream: the JPEGTables segments inserted after its SOI."""
    if data[:2] != b"\xff\xd8":
        return None
    if not tables:
        return bytes(data)
    if tables[:2] != b"\xff\xd8" or tables[-2:] != b"\xff\xd9":
        return None
    return b"".join((data[:2], tables[2:-2], data[2:]))


@contextmanager
def _as_file(stream: bytes) -> Iterator[bytes]:
    """A file system path holding ``stream``: an anonymous memory file on Linux."""
    if _USE_MEMFD:
        fd = os.memfd_create("cloudroi-jpeg", os.MFD_CLOEXEC)
        try:
            view = memoryview(stream)
            while view:
                view = view[os.write(fd, view) :]
            yield f"/proc/self/fd/{fd}".encode()
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="cloudroi-jpeg-") as tmp:
        path = Path(tmp) / "block.jpg"
        path.write_bytes(stream)
        yield os.fsencode(path)


# -- validation: only streams IJG 9f decodes without an error ----------------------------------


#: IJG's JPEG_MAX_DIMENSION: a larger frame is an error (jdinput.c initial_setup).
_MAX_DIMENSION = 65500


class _Reject(Exception):
    """The stream is not one to hand to the IJG entry point."""


class _Tables:
    def __init__(self) -> None:
        self.quant: set[int] = set()
        self.huff: set[tuple[int, int]] = set()  # (class: 0 DC / 1 AC, id)
        self.frame: tuple[int, int, list[tuple[int, int, int, int]]] | None = None
        self.restart = False


def _validate(stream: bytes) -> tuple[int, int] | None:
    """(height, width) of a baseline 8-bit 3-component YCbCr stream (Y 1x1..2x2, chroma 1x1,
    one interleaved scan, ending in EOI) that IJG 9f decodes without an error, else None."""
    try:
        return _walk(stream)
    except (_Reject, IndexError):
        return None


def _walk(s: bytes) -> tuple[int, int]:
    state = _Tables()
    i = 2
    while True:
        while s[i] == 0xFF and s[i + 1] == 0xFF:  # fill bytes
            i += 1
        if s[i] != 0xFF:
            raise _Reject
        marker = s[i + 1]
        length = int.from_bytes(s[i + 2 : i + 4], "big")
        body = s[i + 4 : i + 2 + length]
        if length < 2 or len(body) != length - 2:
            raise _Reject
        if marker == 0xDA:
            _scan_header(body, state)
            _entropy(s, i + 2 + length, state.restart)
            assert state.frame is not None
            return state.frame[0], state.frame[1]
        _segment(marker, body, state)
        i += 2 + length


def _segment(marker: int, body: bytes, state: _Tables) -> None:
    if marker == 0xDB:
        _dqt(body, state)
    elif marker == 0xC4:
        _dht(body, state)
    elif marker in (0xC0, 0xC1):
        _sof(body, state)
    elif marker == 0xDD:
        if len(body) != 2:
            raise _Reject
        state.restart = int.from_bytes(body, "big") > 0
    elif marker == 0xEE or not (0xE0 <= marker <= 0xEF or marker == 0xFE):
        # APP14 (Adobe) may change IJG's colour-space guess; any other marker (SOFn, DAC, DNL,
        # LSE, reserved) is one IJG refuses or this module does not vouch for.
        raise _Reject


def _dqt(body: bytes, state: _Tables) -> None:
    i = 0
    while i < len(body):
        precision, table = body[i] >> 4, body[i] & 0x0F
        if precision > 1 or table > 3:
            raise _Reject
        i += 1 + 64 * (precision + 1)
        if i > len(body):
            raise _Reject
        state.quant.add(table)


def _dht(body: bytes, state: _Tables) -> None:
    i = 0
    while i < len(body):
        kind, table = body[i] >> 4, body[i] & 0x0F
        counts = body[i + 1 : i + 17]
        total = sum(counts)
        values = body[i + 17 : i + 17 + total]
        if kind > 1 or table > 3 or len(counts) != 16 or len(values) != total or total > 256:
            raise _Reject
        if not _canonical(counts) or (kind == 0 and any(v > 15 for v in values)):
            raise _Reject
        state.huff.add((kind, table))
        i += 17 + total


def _canonical(counts: bytes) -> bool:
    """IJG's check of a Huffman table (jpeg_make_d_derived_tbl): every code length's codes fit
    in that many bits, none of them all ones."""
    code = 0
    for bits, n in enumerate(counts, start=1):
        code += n
        if n and code >= 1 << bits:
            return False
        code <<= 1
    return True


def _sof(body: bytes, state: _Tables) -> None:
    if state.frame is not None or len(body) != 15 or body[0] != 8 or body[5] != 3:
        raise _Reject
    height = int.from_bytes(body[1:3], "big")
    width = int.from_bytes(body[3:5], "big")
    comps = [(body[k], body[k + 1] >> 4, body[k + 1] & 0x0F, body[k + 2]) for k in (6, 9, 12)]
    if not (0 < height <= _MAX_DIMENSION and 0 < width <= _MAX_DIMENSION):
        raise _Reject  # IJG's JERR_IMAGE_TOO_BIG: an error, which the entry point dies of
    if [c[0] for c in comps] != [1, 2, 3]:
        raise _Reject  # ids 1, 2, 3: IJG 9 takes the stream as YCbCr, as libtiff tells it to
    (_, yh, yv, _), *chroma = comps
    if yh not in (1, 2) or yv not in (1, 2) or any(c[1:3] != (1, 1) for c in chroma):
        raise _Reject
    if any(c[3] > 3 for c in comps):
        raise _Reject
    state.frame = (height, width, comps)


def _scan_header(body: bytes, state: _Tables) -> None:
    frame = state.frame
    if frame is None or len(body) != 10 or body[0] != 3 or body[7:10] != b"\x00\x3f\x00":
        raise _Reject  # one interleaved sequential scan: Ss 0, Se 63, Ah = Al = 0
    for k, (cid, _, _, quant) in enumerate(frame[2]):
        sel = body[2 + 2 * k]
        if body[1 + 2 * k] != cid or quant not in state.quant:
            raise _Reject
        if (0, sel >> 4) not in state.huff or (1, sel & 0x0F) not in state.huff:
            raise _Reject


def _entropy(s: bytes, start: int, restart: bool) -> None:
    """The entropy-coded data from ``start`` must run, through stuffed bytes and (with a
    restart interval) RSTn markers, to an EOI; bytes after it are never read."""
    data = np.frombuffer(s, np.uint8, offset=start)
    at = np.flatnonzero(data[:-1] == 0xFF)
    nxt = data[at + 1]
    rst = (nxt >= 0xD0) & (nxt <= 0xD7)
    markers = np.flatnonzero((nxt != 0x00) & (nxt != 0xFF) & ~rst)
    if not len(markers) or nxt[markers[0]] != 0xD9:
        raise _Reject
    if not restart and rst[: markers[0]].any():
        raise _Reject  # RSTn without a restart interval
