"""Block (tile or strip) decoding with imagecodecs: decompress, undo the predictor, unpack bits.

``BlockDecoder.decode`` is synchronous and runs in the Context's thread pool (imagecodecs releases
the GIL), never on the event loop. Output of every block is bounded by the size the header
promises: codecs are given that size as their output buffer, so a decompression bomb cannot grow
past it, and a block that decodes to fewer bytes than promised is an error, not a partly-filled
array.
"""

from __future__ import annotations

import functools
import struct
import sys
import zlib
from typing import Any

import imagecodecs
import numpy as np
import numpy.typing as npt

from ..errors import TiffFormatError
from ..tiff.structure import ImageIFD
from .jpeg_ijg import JpegDecoder, decode_ijg9

__all__ = ["BlockDecoder"]

_NATIVE = "<" if sys.byteorder == "little" else ">"

#: The decompressor of each general-purpose compression, by imagecodecs function name.
_DECOMPRESSORS: dict[int, str] = {
    5: "lzw_decode",
    8: "deflate_decode",
    32946: "deflate_decode",
    32773: "packbits_decode",
    34925: "lzma_decode",
    50000: "zstd_decode",
}

#: The most a codec can expand its input (LZW: 4096-byte strings from codes of 9+ bits; Deflate:
#: 1032:1; PackBits: a 2-byte run is 128 bytes). A block declaring more output than its compressed
#: bytes could ever give is refused before its output buffer is allocated.
_MAX_RATIO: dict[int, int] = {5: 4096, 8: 1032, 32946: 1032, 32773: 64}

#: Outer compression of a LERC blob, from the LercParameters tag (GDAL: 0 none, 1 deflate, 2 zstd).
_LERC_OUTER: dict[int, str] = {1: "deflate_decode", 2: "zstd_decode"}


@functools.cache
def _codec(name: str) -> Any:
    """imagecodecs' ``name``, looked up once. imagecodecs loads a codec's extension module on its
    first look-up (1-5 ms each, measured: libtiff's and the LZW/PackBits/delta one the most, 13-17
    ms for all): each is loaded when a block first needs it, so a request that decodes no block
    (a cold function answering /info) or only Deflate blocks loads no other."""
    if name == "deflate_decode" and not imagecodecs.DEFLATE.available:
        return imagecodecs.zlib_decode
    return getattr(imagecodecs, name)


def _jpeg_colorspaces(ifd: ImageIFD) -> tuple[int | None, int | None]:
    """(JPEG colorspace, output colorspace) as tifffile chooses them for TIFF JPEG blocks."""
    if ifd.planar == 2:
        return None, 1
    if not ifd.extra_samples:
        if ifd.photometric == 6:
            return None, 2  # YCbCr coded, RGB out (what GDAL returns)
        if ifd.photometric == 2:
            return 2, 2  # RGB stored without JFIF colour conversion
    return None, None


class BlockDecoder:
    """Decodes the blocks of one ImageIFD into ``(rows, block_width, block_samples)`` arrays."""

    def __init__(self, ifd: ImageIFD, jpeg_decoder: JpegDecoder = "turbo") -> None:
        self.ifd = ifd
        self.samples = ifd.block_samples
        self.dtype = ifd.dtype.newbyteorder("=")
        self._bits = ifd.bits
        # Samples of 1..63 bits other than whole bytes of a numpy width (24-bit too) are a
        # bit stream, most significant bit first, rows padded to a byte.
        self._packed = ifd.bits not in (8, 16, 32, 64)
        # Samples as stored (the floating-point predictor is undone into native order directly,
        # by _undo_float_predictor, so this is only used without it).
        self._file_dtype = np.dtype(ifd.byteorder + self.dtype.str[1:])
        self._row_bytes = (
            -(-ifd.block_width * self.samples * ifd.bits // 8)
            if self._packed
            else ifd.block_width * self.samples * self.dtype.itemsize
        )
        self._jpeg_cs = _jpeg_colorspaces(ifd) if ifd.compression == 7 else (None, None)
        # YCbCr JPEG decoded as IJG libjpeg 9 does (cloudroi.read.jpeg_ijg): the colour-
        # converted blocks are the only ones its decode differs on.
        self._ijg9 = jpeg_decoder == "ijg9" and self._jpeg_cs == (None, 2) and ifd.bits == 8
        libtiff_can = (
            ifd.fill_order == 1
            and not self._packed
            and ifd.sample_format in (1, 2, 3)
            and ifd.compression in (5, 8, 32946)
        )
        # Whole blocks go through libtiff where it is the faster decoder, measured per block on
        # the benchmark corpus: LZW 2.1 vs 3.6 ms (256x256x4 uint16, predictor 2), Deflate +
        # floating-point predictor 0.69 vs 0.95 ms (256x256 float32), Deflate + predictor 2 on
        # 8-bit samples 2.6 vs 3.2 ms (512x512x3). Deflate with predictor 1, or 2 on wider
        # samples, is faster decompressed directly (16-bit: 0.38 vs 0.54 ms).
        self._libtiff_whole = libtiff_can and (
            ifd.compression == 5 or ifd.predictor == 3 or (ifd.predictor == 2 and ifd.bits == 8)
        )
        # The first rows of a block, when a read needs no more: libtiff's LZW decoder stops
        # exactly where asked. Its Deflate decoder does not (libdeflate may leave the end of a
        # short output unwritten), so Deflate prefixes are inflated with zlib's streaming
        # decoder, which stops exactly but runs 2.8x slower than libdeflate per byte: worth it
        # for at most a third of the block.
        self._lzw_prefix = libtiff_can and ifd.compression == 5
        self._inflate_prefix = ifd.compression in (8, 32946) and ifd.fill_order == 1

    def block_rows(self, block_row: int) -> int:
        """Rows a block holds: full tiles always, a short last strip for strips."""
        ifd = self.ifd
        return ifd.block_height if ifd.tiled else ifd.block_rows(block_row)

    def decode(self, data: bytes, block_row: int, rows: int | None = None) -> npt.NDArray[Any]:
        """Decode one block's bytes into (rows, block_width, block_samples); raise
        TiffFormatError when they do not fit the header.

        ``rows``: only the block's first ``rows`` rows are needed (a window ending inside the
        block). LZW, uncompressed blocks, and Deflate when at most a third of the block is needed
        then return just those rows; otherwise the whole block: at least ``rows`` either way.
        """
        try:
            return self._decode(data, block_row, rows)
        except TiffFormatError:
            raise
        except (ValueError, RuntimeError, MemoryError, IndexError, TypeError, zlib.error) as exc:
            # imagecodecs raises its own *Error classes, all subclasses of RuntimeError/ValueError.
            raise TiffFormatError(f"block decoding failed: {exc}") from exc

    def _decode(self, data: bytes, block_row: int, wanted: int | None) -> npt.NDArray[Any]:
        ifd = self.ifd
        rows = self.block_rows(block_row)
        part = rows if wanted is None else max(1, min(wanted, rows))
        if ifd.compression in (7, 50001, 34887):
            return self._image_block(data, rows)
        expected = rows * self._row_bytes
        ratio = _MAX_RATIO.get(ifd.compression)
        if ratio is not None and expected > len(data) * ratio + 1024:
            raise TiffFormatError(
                f"{len(data)} compressed bytes cannot decode to the {expected} bytes of the block"
            )
        if part < rows and self._lzw_prefix:
            return self._libtiff(data, part)
        if part * 3 <= rows and self._inflate_prefix:
            size = part * self._row_bytes
            prefix = zlib.decompressobj().decompress(data, size)
            if len(prefix) < size:
                raise TiffFormatError(f"block decoded to {len(prefix)} bytes, {size} expected")
            return self._unpack(prefix, part)
        if self._libtiff_whole:
            return self._libtiff(data, rows)
        return self._decompress(data, rows, part)

    def _image_block(self, data: bytes, rows: int) -> npt.NDArray[Any]:
        """A JPEG, WebP or LERC block: these codecs size their output from their own stream
        header, which is checked against the block first, so a small block claiming a huge
        image cannot allocate it (a bomb)."""
        ifd = self.ifd
        self._check_claimed_size(data, rows)
        if ifd.compression == 7:
            if self._ijg9 and (exact := decode_ijg9(data, ifd.jpeg_tables)) is not None:
                return self._image_codec(exact, rows)
            colorspace, outcolorspace = self._jpeg_cs
            decoded = _codec("jpeg_decode")(
                data, tables=ifd.jpeg_tables, colorspace=colorspace, outcolorspace=outcolorspace
            )
            return self._image_codec(decoded, rows)
        if ifd.compression == 50001:
            return self._image_codec(
                _codec("webp_decode")(data, hasalpha=self.samples == 4 or None), rows
            )
        return self._lerc(data, rows)

    def _decompress(self, data: bytes, rows: int, part: int) -> npt.NDArray[Any]:
        """A block of a general-purpose codec (or none), then its predictor and bit packing."""
        ifd = self.ifd
        expected = rows * self._row_bytes
        if ifd.fill_order == 2:
            data = bytes(_codec("bitorder_decode")(data))
        raw: bytes | npt.NDArray[np.uint8]
        if ifd.compression == 1:
            if len(data) >= expected:
                rows, expected = part, part * self._row_bytes
            raw = data[:expected]
        else:
            # Decompress into a writable array sized by the header: the codec cannot write past
            # it (bomb guard), returns a view of what it wrote, and a predictor then runs in place.
            raw = _codec(_DECOMPRESSORS[ifd.compression])(data, out=np.empty(expected, np.uint8))
        if len(raw) < expected:
            got = len(raw)
            # ``raw`` may view a buffer of the full block size: not kept alive by the traceback.
            del raw
            raise TiffFormatError(f"block decoded to {got} bytes, {expected} expected")
        return self._unpack(raw, rows)

    def _check_claimed_size(self, data: bytes, rows: int) -> None:
        ifd = self.ifd
        if ifd.compression == 7:
            size = _jpeg_size(data)
        elif ifd.compression == 50001:
            size = _webp_size(data)
        else:
            return  # LERC: checked after its outer decompression, in _lerc
        if size is None:
            raise TiffFormatError("image-codec block without a readable size header")
        height, width = size
        if height > max(rows, ifd.block_height) or width > ifd.block_width:
            raise TiffFormatError(
                f"block claims {width} x {height} pixels; blocks are "
                f"{ifd.block_width} x {ifd.block_height}"
            )

    def _libtiff(self, data: bytes, rows: int) -> npt.NDArray[Any]:
        """Decode through libtiff: the block wrapped as the single strip of a minimal TIFF whose
        header (written here, from the file's own parameters) bounds what libtiff allocates."""
        ifd = self.ifd
        blob = _single_strip_tiff(
            data,
            ifd.byteorder,
            ifd.block_width,
            rows,
            self.samples,
            ifd.bits,
            ifd.sample_format,
            ifd.compression,
            ifd.predictor,
        )
        try:
            arr = np.asarray(_codec("tiff_decode")(blob))
        except _codec("TiffError") as exc:
            raise TiffFormatError(f"block decoding failed: {exc}") from exc
        arr = arr.reshape(rows, ifd.block_width, self.samples)
        return arr if arr.dtype == self.dtype else arr.astype(self.dtype)

    def _unpack(self, raw: bytes | npt.NDArray[np.uint8], rows: int) -> npt.NDArray[Any]:
        ifd = self.ifd
        shape = (rows, ifd.block_width, self.samples)
        if self._packed:
            if self._bits == 24 and ifd.byteorder == ">":
                # libtiff swaps the bytes of each 24-bit sample of a big-endian file before GDAL
                # unpacks the bit stream (on the little-endian machines GDAL runs on).
                triples = np.frombuffer(raw, np.uint8, len(raw) // 3 * 3).reshape(-1, 3)
                raw = np.ascontiguousarray(triples[:, ::-1]).reshape(-1)
            arr = _codec("packints_decode")(
                bytes(raw), self.dtype, self._bits, runlen=ifd.block_width * self.samples
            )
            return np.asarray(arr).reshape(shape)
        if ifd.predictor == 3:
            return _undo_float_predictor(raw, shape, self.dtype)
        arr = np.frombuffer(raw, dtype=self._file_dtype, count=int(np.prod(shape))).reshape(shape)
        if self._file_dtype != self.dtype:
            arr = arr.astype(self.dtype)  # byte swap: a new, writable array
        if ifd.predictor == 1:
            return arr
        if not arr.flags.writeable:
            arr = arr.copy()  # uncompressed blocks are views of the fetched bytes
        return np.asarray(_codec("delta_decode")(arr, axis=-2, out=arr))

    def _image_codec(self, arr: npt.NDArray[Any], rows: int) -> npt.NDArray[Any]:
        ifd = self.ifd
        arr = np.asarray(arr)
        if arr.ndim == 2:
            arr = arr[:, :, np.newaxis]
        h, w, s = arr.shape
        if s != self.samples or h < rows or w < min(ifd.block_width, ifd.width):
            raise TiffFormatError(
                f"block decoded to shape {arr.shape}, expected ({rows}, {ifd.block_width}, "
                f"{self.samples})"
            )
        if arr.dtype != self.dtype:
            arr = arr.astype(self.dtype)
        return arr[:rows]

    def _lerc(self, data: bytes, rows: int) -> npt.NDArray[Any]:
        ifd = self.ifd
        params = ifd.lerc_parameters
        outer = params[1] if len(params) > 1 else 0
        if outer:
            if outer not in _LERC_OUTER:
                raise TiffFormatError(f"LERC with unknown additional compression {outer}")
            # The LERC blob is at most a little larger than the raw pixels it encodes.
            bound = rows * ifd.block_width * self.samples * self.dtype.itemsize * 2 + 4096
            data = _codec(_LERC_OUTER[outer])(data, out=bound)
        claimed = _lerc_size(data)
        if claimed is None:
            raise TiffFormatError("LERC block without a LERC2 header")
        height, width, depth = claimed
        if height > max(rows, ifd.block_height) or width > ifd.block_width or depth > self.samples:
            raise TiffFormatError(
                f"LERC block claims {width} x {height} x {depth}; blocks are "
                f"{ifd.block_width} x {ifd.block_height} x {self.samples}"
            )
        decoded = _codec("lerc_decode")(data, masks=True)
        arr, masks = decoded if isinstance(decoded, tuple) else (decoded, None)
        arr = np.asarray(arr)
        if masks is not None and arr.dtype.kind == "f":
            arr = _lerc_invalid_to_nan(arr, np.asarray(masks, dtype=bool))
        if depth == 1 and self.samples > 1 and arr.ndim == 3 and arr.shape[0] == self.samples:
            # one LERC band per sample (GDAL writes float pixels so when they have NaNs, a
            # mask each): (samples, rows, cols) -> the block's (rows, cols, samples)
            arr = np.moveaxis(arr, 0, -1)
        return self._image_codec(arr, rows)


def _lerc_invalid_to_nan(arr: npt.NDArray[Any], valid: npt.NDArray[np.bool_]) -> npt.NDArray[Any]:
    """A float LERC blob's invalid pixels as NaN, as GDAL's LERC decoder returns them (the blob
    holds no value there; liblerc leaves 0). ``valid`` is one mask for every value of a pixel
    (rows, cols), or one per band (bands, rows, cols) like ``arr``."""
    if valid.all():
        return arr
    out = np.array(arr, copy=True)
    if valid.shape == out.shape:
        out[~valid] = np.nan
    elif out.ndim == 3 and valid.shape == out.shape[:2]:  # (rows, cols, depth)
        out[~valid, :] = np.nan
    elif out.ndim == 3 and valid.shape == out.shape[1:]:  # (bands, rows, cols), one mask
        out[:, ~valid] = np.nan
    else:
        raise TiffFormatError(f"LERC mask of shape {valid.shape} for values of shape {out.shape}")
    return out


_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a JPEG stream's start-of-frame segment, or None."""
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if 0xD0 <= marker <= 0xD9 or marker == 0x01:  # markers without a length
            i += 2
            continue
        if marker in _SOF_MARKERS:
            return int.from_bytes(data[i + 5 : i + 7], "big"), int.from_bytes(
                data[i + 7 : i + 9], "big"
            )
        if marker == 0xDA:  # scan data before any frame header
            return None
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a WebP stream's VP8, VP8L or VP8X header, or None."""
    if len(data) < 30 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    kind = data[12:16]
    if kind == b"VP8 ":
        width = int.from_bytes(data[26:28], "little") & 0x3FFF
        height = int.from_bytes(data[28:30], "little") & 0x3FFF
        return height, width
    if kind == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return ((bits >> 14) & 0x3FFF) + 1, (bits & 0x3FFF) + 1
    if kind == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return height, width
    return None


def _lerc_size(data: bytes) -> tuple[int, int, int] | None:
    """(rows, columns, values per pixel) from a LERC2 blob's header, or None."""
    if data[:6] != b"Lerc2 " or len(data) < 30:
        return None
    version = int.from_bytes(data[6:10], "little", signed=True)
    pos = 10 + (4 if version >= 3 else 0)  # a checksum from version 3 on
    rows = int.from_bytes(data[pos : pos + 4], "little", signed=True)
    cols = int.from_bytes(data[pos + 4 : pos + 8], "little", signed=True)
    depth = int.from_bytes(data[pos + 8 : pos + 12], "little", signed=True) if version >= 4 else 1
    if rows <= 0 or cols <= 0 or depth <= 0:
        return None
    return rows, cols, depth


def _single_strip_tiff(
    data: bytes,
    byteorder: str,
    width: int,
    rows: int,
    samples: int,
    bits: int,
    sample_format: int,
    compression: int,
    predictor: int,
) -> bytes:
    """A classic TIFF holding ``data`` as its one strip, in the source file's byte order."""
    entries = (
        (256, 4, width),
        (257, 4, rows),
        (258, 3, bits),
        (259, 3, compression),
        (262, 3, 1),
        (273, 4, 0),  # the strip's offset, filled in below
        (277, 3, samples),
        (278, 4, rows),
        (279, 4, len(data)),
        (284, 3, 1),
        (317, 3, predictor),
        (339, 3, sample_format),
    )
    head = struct.pack(byteorder + "2sHI", b"II" if byteorder == "<" else b"MM", 42, 8)
    table = struct.pack(byteorder + "H", len(entries))
    strip_at = 8 + 2 + 12 * len(entries) + 4
    for tag, typ, value in entries:
        value = strip_at if tag == 273 else value
        if typ == 3:
            table += struct.pack(byteorder + "HHIHH", tag, typ, 1, value, 0)
        else:
            table += struct.pack(byteorder + "HHII", tag, typ, 1, value)
    return head + table + struct.pack(byteorder + "I", 0) + data


def _undo_float_predictor(
    raw: bytes | npt.NDArray[np.uint8], shape: tuple[int, int, int], dtype: np.dtype[Any]
) -> npt.NDArray[Any]:
    """Undo TIFF's floating-point predictor (Technical Note 3) into a native ``dtype`` array.

    Each row holds the bytes of its values split into planes, most significant byte first,
    differenced byte by byte along the row at a distance of one pixel (``samples`` bytes).
    Accumulating the bytes and interleaving the planes back is half the time of
    ``imagecodecs.floatpred_decode`` on 256 x 256 float32 blocks (0.53 ms against 1.13 ms per
    block measured here), and its plane copies release the GIL.
    """
    rows, width, samples = shape
    size = dtype.itemsize
    values = width * samples
    buf = np.frombuffer(raw, np.uint8, rows * values * size)
    if not buf.flags.writeable:
        buf = buf.copy()
    flat = buf.reshape(rows, size * values)
    # Bytes ``samples`` apart form separate running sums: accumulate along the middle axis.
    strands = flat.reshape(rows, size * width, samples)
    _codec("delta_decode")(strands, axis=-2, out=strands)
    planes = flat.reshape(rows, size, values)
    out = np.empty((rows, values, size), np.uint8)
    little = sys.byteorder == "little"
    for k in range(size):
        out[:, :, k] = planes[:, size - 1 - k if little else k, :]
    return out.view(dtype).reshape(shape)
