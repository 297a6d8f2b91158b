"""From raw IFDs to what a reader needs: levels, masks, block grids, codecs, georeferencing.

``build`` turns a complete scan (``cloudroi.tiff.scan``) into a ``TiffStructure``. Pure: the I/O
loop around both is ``cloudroi.read.header``. Unsupported features are refused here, at open,
naming the feature.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import TiffFormatError, UnsupportedTiffError
from .geo import GeoInfo, nodata_value, parse_geokeys, parse_ghost
from .index import IndexArray
from .palette import palette_table
from .parse import (
    ParseLimits,
    RawIFD,
    SparseBuffer,
    TiffHeader,
    tag_ascii,
    tag_bytes,
    tag_values,
)
from .scan import ScanResult, integers, scan, subfile_type
from .tags import COMPRESSION_KEYS, COMPRESSION_NAMES, Tag, compression_name

__all__ = ["ImageIFD", "ScanResult", "TiffStructure", "build", "scan"]

#: Compressions cloudroi decodes (codes from the TIFF registry; decoders from imagecodecs).
SUPPORTED_COMPRESSION = frozenset(COMPRESSION_KEYS)
FILETYPE_REDUCED = 1
FILETYPE_PAGE = 2
FILETYPE_MASK = 4


@dataclass(slots=True)
class ImageIFD:
    """One image (a level or a mask) of the file, with its block grid and decoding parameters."""

    offset: int
    subfile_type: int
    width: int
    height: int
    tiled: bool
    block_width: int
    block_height: int
    samples: int
    bits: int
    sample_format: int
    planar: int
    compression: int
    predictor: int
    photometric: int
    extra_samples: tuple[int, ...]
    fill_order: int
    byteorder: str
    offsets: IndexArray
    byte_counts: IndexArray
    jpeg_tables: bytes | None = None
    lerc_parameters: tuple[int, ...] = ()

    @property
    def is_mask(self) -> bool:
        return bool(self.subfile_type & FILETYPE_MASK)

    @property
    def blocks_across(self) -> int:
        return -(-self.width // self.block_width)

    @property
    def blocks_down(self) -> int:
        return -(-self.height // self.block_height)

    @property
    def blocks_per_plane(self) -> int:
        return self.blocks_across * self.blocks_down

    @property
    def planes(self) -> int:
        return self.samples if self.planar == 2 else 1

    @property
    def block_samples(self) -> int:
        """Samples per pixel inside one block (all of them when chunky, one when planar)."""
        return 1 if self.planar == 2 else self.samples

    @property
    def n_blocks(self) -> int:
        return self.blocks_per_plane * self.planes

    @property
    def dtype(self) -> np.dtype[Any]:
        """The dtype reads return (native byte order): 1-bit as uint8 0/1, as GDAL does."""
        return sample_dtype(self.sample_format, self.bits)

    def block_index(self, plane: int, row: int, col: int) -> int:
        return plane * self.blocks_per_plane + row * self.blocks_across + col

    def block_rows(self, row: int) -> int:
        """Rows of valid data in block row ``row`` (strips at the bottom are short)."""
        return min(self.block_height, self.height - row * self.block_height)

    def block_cols(self, col: int) -> int:
        return min(self.block_width, self.width - col * self.block_width)

    def decoded_block_bytes(self) -> int:
        row_bits = self.block_width * self.block_samples * self.bits
        return self.block_height * -(-row_bits // 8)


def sample_dtype(sample_format: int, bits: int) -> np.dtype[Any]:
    if sample_format == 3:
        return np.dtype(f"f{bits // 8}")
    if bits <= 8:
        return np.dtype("i1" if sample_format == 2 else "u1")
    size = 2 if bits <= 16 else 4 if bits <= 32 else 8
    return np.dtype(f"{'i' if sample_format == 2 else 'u'}{size}")


#: Fixed memory costs counted by ``TiffStructure.footprint`` (CPython 3.11 objects, rounded up):
#: a structure with its GeoInfo and header; an ImageIFD with its two IndexArrays; one lazily
#: loaded slice of an index (a numpy array header and its dict slot); a small str or tuple.
_STRUCTURE_OVERHEAD = 2048
_IFD_OVERHEAD = 1536
_SLICE_OVERHEAD = 160
_SMALL_OBJECT = 64


@dataclass(slots=True)
class TiffStructure:
    """Everything cloudroi learned from a file's header. Immutable after ``build`` except that
    lazily loaded index blocks are added to the levels' IndexArrays (valid for this ETag)."""

    header: TiffHeader
    size: int
    levels: list[ImageIFD]
    masks: list[ImageIFD | None]
    geo: GeoInfo
    nodata: float | int | None
    gdal_metadata: str | None
    ghost: dict[str, str] = field(default_factory=dict)
    header_bytes: int = 0  # bytes from 0 that held every part of the header read at open
    #: RGBA table (entries, 4) of a paletted 1-band uint8/uint16 image, as GDAL presents it
    colormap: np.ndarray[Any, np.dtype[np.uint8]] | None = None

    def footprint(self) -> int:
        """Bytes this structure can come to hold: what the header cache charges for it.

        Index arrays count as fully loaded (8 bytes per value, as IndexArray keeps them, plus a
        small array per lazily loaded slice), since a cached structure gains slices as reads
        need them; then JPEG tables, LERC parameters, metadata and a fixed cost per object.
        """
        total = _STRUCTURE_OVERHEAD + len(self.gdal_metadata or "")
        total += 0 if self.colormap is None else self.colormap.nbytes
        total += sum(len(k) + len(v) + _SMALL_OBJECT for k, v in self.ghost.items())
        seen: set[int] = set()
        for ifd in [*self.levels, *self.masks]:
            if ifd is None or id(ifd) in seen:
                continue
            seen.add(id(ifd))
            total += _IFD_OVERHEAD + len(ifd.jpeg_tables or b"")
            total += 8 * (len(ifd.lerc_parameters) + len(ifd.extra_samples))
            for index in (ifd.offsets, ifd.byte_counts):
                total += 8 * index.count
                if not index.resident:
                    total += -(-index.count // IndexArray.BLOCK) * _SLICE_OVERHEAD
        return total

    @property
    def block_leader(self) -> bool:
        """GDAL wrote a 4-byte size before each block and repeated its last 4 bytes after it."""
        return (
            self.ghost.get("BLOCK_LEADER") == "SIZE_AS_UINT4"
            and self.ghost.get("BLOCK_TRAILER") == "LAST_4_BYTES_REPEATED"
            and self.ghost.get("KNOWN_INCOMPATIBLE_EDITION", "NO") == "NO"
        )


# --------------------------------------------------------------------------------------------
# building: raw IFDs -> levels and masks
# --------------------------------------------------------------------------------------------


class _Tags:
    """Typed access to one raw IFD's tag values over a buffer that holds them."""

    def __init__(self, buf: SparseBuffer, header: TiffHeader, raw: RawIFD) -> None:
        self.buf, self.header, self.raw = buf, header, raw

    def has(self, tag: int) -> bool:
        return tag in self.raw.entries

    def ints(self, tag: int) -> tuple[int, ...] | None:
        entry = self.raw.entries.get(tag)
        if entry is None:
            return None
        return integers(tag_values(self.buf, self.header, entry), tag)

    def floats(self, tag: int) -> tuple[float, ...] | None:
        entry = self.raw.entries.get(tag)
        if entry is None:
            return None
        return tuple(float(v) for v in tag_values(self.buf, self.header, entry))

    def int1(self, tag: int, default: int | None = None) -> int:
        values = self.ints(tag)
        if not values:
            if default is None:
                raise TiffFormatError(f"IFD at {self.raw.offset} lacks required tag {tag}")
            return default
        return values[0]

    def ascii(self, tag: int) -> str | None:
        entry = self.raw.entries.get(tag)
        return None if entry is None else tag_ascii(self.buf, entry)

    def raw_bytes(self, tag: int) -> bytes | None:
        entry = self.raw.entries.get(tag)
        return None if entry is None else tag_bytes(self.buf, entry)


def _index_array(tags: _Tags, tag: int, expected: int) -> IndexArray:
    entry = tags.raw.entries.get(tag)
    if entry is None:
        raise TiffFormatError(f"IFD at {tags.raw.offset} lacks tag {tag} (block index)")
    if entry.type not in (3, 4, 13, 16, 18):
        raise TiffFormatError(f"tag {tag} has field type {entry.type}, not an unsigned integer")
    if entry.count < expected:
        raise TiffFormatError(f"tag {tag} holds {entry.count} entries, {expected} needed")
    char = {3: "u2", 4: "u4", 13: "u4", 16: "u8", 18: "u8"}[entry.type]
    dtype = np.dtype(tags.header.byteorder + char)
    if entry.inline is not None:
        return IndexArray.from_bytes(0, expected, dtype, entry.inline)
    if tags.buf.has(entry.offset, expected * dtype.itemsize):
        data = tags.buf.get(entry.offset, expected * dtype.itemsize)
        return IndexArray.from_bytes(entry.offset, expected, dtype, data)
    return IndexArray(entry.offset, expected, dtype)


_SAMPLE_FORMAT_NAMES = {
    4: "undefined samples",
    5: "complex integer samples",
    6: "complex floating-point samples",
}


def _check_codec(ifd: ImageIFD) -> None:
    if ifd.compression not in SUPPORTED_COMPRESSION:
        known = ifd.compression in COMPRESSION_NAMES
        name = compression_name(ifd.compression)
        raise UnsupportedTiffError(f"{name} compression" if known else name)
    if ifd.sample_format not in (1, 2, 3):
        kind = _SAMPLE_FORMAT_NAMES.get(ifd.sample_format, "samples of unknown format")
        raise UnsupportedTiffError(f"{kind} (SampleFormat {ifd.sample_format})")


def _packed(ifd: ImageIFD) -> bool:
    return ifd.bits not in (8, 16, 32, 64)


#: What cloudroi refuses to read, in the order it is checked: (refused when, error, message).
_RULES: tuple[tuple[Any, type[TiffFormatError], Any], ...] = (
    (
        lambda d: d.sample_format == 3 and d.bits not in (16, 32, 64),
        UnsupportedTiffError,
        lambda d: f"{d.bits}-bit floating point samples",
    ),
    (lambda d: not 1 <= d.bits <= 64, TiffFormatError, lambda d: f"BitsPerSample {d.bits}"),
    (
        lambda d: _packed(d) and (d.sample_format != 1 or d.bits > 32),
        UnsupportedTiffError,
        lambda d: f"{d.bits}-bit samples of SampleFormat {d.sample_format}",
    ),
    (
        lambda d: _packed(d) and d.predictor != 1,
        UnsupportedTiffError,
        lambda d: f"predictor {d.predictor} with {d.bits}-bit samples",
    ),
    (
        lambda d: d.predictor not in (1, 2, 3),
        UnsupportedTiffError,
        lambda d: f"predictor {d.predictor}",
    ),
    (
        lambda d: d.predictor == 3 and d.sample_format != 3,
        UnsupportedTiffError,
        lambda d: "floating-point predictor on integer samples",
    ),
    (
        lambda d: d.planar not in (1, 2),
        TiffFormatError,
        lambda d: f"PlanarConfiguration {d.planar}",
    ),
    (
        lambda d: d.photometric == 6 and d.compression != 7,
        UnsupportedTiffError,
        lambda d: "YCbCr samples without JPEG compression",
    ),
    (
        lambda d: d.compression in (7, 50001) and d.bits != 8,
        UnsupportedTiffError,
        lambda d: f"{d.bits}-bit {compression_name(d.compression)}",
    ),
    (lambda d: d.fill_order not in (1, 2), TiffFormatError, lambda d: f"FillOrder {d.fill_order}"),
)


def _check_supported(ifd: ImageIFD) -> None:
    _check_codec(ifd)
    for refused, error, message in _RULES:
        if refused(ifd):
            raise error(message(ifd))


def _samples(tags: _Tags, limits: ParseLimits) -> tuple[int, int, int, int]:
    """(samples per pixel, bits per sample, sample format, planar configuration)."""
    samples = tags.int1(Tag.SAMPLES_PER_PIXEL, 1)
    if not 0 < samples <= limits.max_samples:
        raise TiffFormatError(f"SamplesPerPixel {samples}")
    bits_all = tags.ints(Tag.BITS_PER_SAMPLE) or (1,)
    if len(set(bits_all)) != 1:
        raise UnsupportedTiffError(f"mixed BitsPerSample {bits_all}")
    formats = tags.ints(Tag.SAMPLE_FORMAT) or (1,)
    if len(set(formats)) != 1:
        raise UnsupportedTiffError(f"mixed SampleFormat {formats}")
    planar = tags.int1(Tag.PLANAR_CONFIG, 1) if samples > 1 else 1
    return samples, bits_all[0], formats[0], planar


def _blocks(tags: _Tags, width: int, height: int) -> tuple[bool, int, int, Tag, Tag]:
    """(tiled, block width, block height, offsets tag, byte counts tag): tiles or strips."""
    tiled = tags.has(Tag.TILE_WIDTH) or tags.has(Tag.TILE_OFFSETS)
    if tiled:
        bw, bh = tags.int1(Tag.TILE_WIDTH), tags.int1(Tag.TILE_LENGTH)
        off_tag, cnt_tag = Tag.TILE_OFFSETS, Tag.TILE_BYTE_COUNTS
    else:
        bw, bh = width, min(tags.int1(Tag.ROWS_PER_STRIP, height), height)
        off_tag, cnt_tag = Tag.STRIP_OFFSETS, Tag.STRIP_BYTE_COUNTS
    if bw <= 0 or bh <= 0:
        raise TiffFormatError(f"block size {bw} x {bh}")
    return tiled, bw, bh, off_tag, cnt_tag


def _describe(tags: _Tags, subfile_type: int, limits: ParseLimits) -> ImageIFD:
    width = tags.int1(Tag.IMAGE_WIDTH)
    height = tags.int1(Tag.IMAGE_LENGTH)
    if not (0 < width <= limits.max_dimension and 0 < height <= limits.max_dimension):
        raise TiffFormatError(f"image size {width} x {height}")
    if tags.int1(Tag.IMAGE_DEPTH, 1) != 1:
        raise UnsupportedTiffError("volumetric images (ImageDepth)")
    samples, bits, sample_format, planar = _samples(tags, limits)
    tiled, bw, bh, off_tag, cnt_tag = _blocks(tags, width, height)
    compression = tags.int1(Tag.COMPRESSION, 1)
    ifd = ImageIFD(
        offset=tags.raw.offset,
        subfile_type=subfile_type,
        width=width,
        height=height,
        tiled=tiled,
        block_width=bw,
        block_height=bh,
        samples=samples,
        bits=bits,
        sample_format=sample_format,
        planar=planar,
        compression=compression,
        predictor=tags.int1(Tag.PREDICTOR, 1),
        photometric=tags.int1(Tag.PHOTOMETRIC, 1),
        extra_samples=tags.ints(Tag.EXTRA_SAMPLES) or (),
        fill_order=tags.int1(Tag.FILL_ORDER, 1),
        byteorder=tags.header.byteorder,
        offsets=IndexArray.from_values(()),
        byte_counts=IndexArray.from_values(()),
        jpeg_tables=tags.raw_bytes(Tag.JPEG_TABLES) if compression == 7 else None,
        lerc_parameters=tags.ints(Tag.LERC_PARAMETERS) or (),
    )
    if ifd.compression in (7, 50001, 34887):
        ifd.predictor = 1  # image codecs carry their own prediction; a predictor tag is ignored
    _check_supported(ifd)
    if ifd.n_blocks > limits.max_tiles:
        raise TiffFormatError(f"{ifd.n_blocks} blocks (cap {limits.max_tiles})")
    if ifd.decoded_block_bytes() > limits.max_tile_bytes:
        raise TiffFormatError(
            f"blocks of {ifd.decoded_block_bytes()} decoded bytes (cap {limits.max_tile_bytes})"
        )
    ifd.offsets = _index_array(tags, off_tag, ifd.n_blocks)
    ifd.byte_counts = _index_array(tags, cnt_tag, ifd.n_blocks)
    return ifd


def _same_kind(a: ImageIFD, b: ImageIFD) -> bool:
    return (a.samples, a.bits, a.sample_format) == (b.samples, b.bits, b.sample_format)


def _is_mask_ifd(ifd: ImageIFD) -> bool:
    return ifd.is_mask and ifd.samples == 1 and ifd.bits in (1, 8)


def build(buf: SparseBuffer, result: ScanResult, limits: ParseLimits) -> TiffStructure:
    """A complete ``scan`` (no missing bytes) -> the file's structure."""
    if result.header is None or not result.ifds:
        raise TiffFormatError("no image found in the file")
    header = result.header
    described: list[ImageIFD] = []
    for raw in result.ifds:
        tags = _Tags(buf, header, raw)
        subfile = subfile_type(buf, header, raw)
        try:
            described.append(_describe(tags, subfile, limits))
        except (UnsupportedTiffError, TiffFormatError):
            if not described:
                raise  # the full-resolution image itself must be readable
            continue  # an odd overview or mask is skipped, the image stays readable
    base = described[0]
    if base.is_mask:
        raise TiffFormatError("the first IFD is a mask")
    overviews = [
        d
        for d in described[1:]
        if not d.is_mask
        and _same_kind(d, base)
        and d.width < base.width
        and d.height <= base.height
    ]
    overviews.sort(key=lambda d: -d.width)
    levels = [base]
    for ov in overviews:
        if ov.width < levels[-1].width:
            levels.append(ov)
    mask_by_size = {(d.width, d.height): d for d in described[1:] if _is_mask_ifd(d)}
    masks = [mask_by_size.get((lv.width, lv.height)) for lv in levels]

    first = _Tags(buf, header, result.ifds[0])
    geo = parse_geokeys(
        first.ints(Tag.GEO_KEY_DIRECTORY),
        first.floats(Tag.MODEL_PIXEL_SCALE),
        first.floats(Tag.MODEL_TIEPOINT),
        first.floats(Tag.MODEL_TRANSFORMATION),
        first.floats(Tag.GEO_DOUBLE_PARAMS),
        first.raw_bytes(Tag.GEO_ASCII_PARAMS),
    )
    nodata = nodata_value(first.ascii(Tag.GDAL_NODATA), base.dtype)
    ghost, span = parse_ghost(buf.available(header.size, 4096))
    if span > len(buf.available(header.size, span)):
        ghost = {}  # cut off by the end of the bytes in hand: do not trust a partial block
    return TiffStructure(
        header=header,
        size=buf.size,
        levels=levels,
        masks=masks,
        geo=geo,
        nodata=nodata,
        gdal_metadata=first.ascii(Tag.GDAL_METADATA),
        ghost=ghost,
        header_bytes=result.needed_end,
        colormap=_palette(first, base, nodata),
    )


def _palette(
    tags: _Tags, base: ImageIFD, nodata: float | int | None
) -> np.ndarray[Any, np.dtype[np.uint8]] | None:
    """The first IFD's ColorMap (SHORT values only) as an RGBA table, MinIsWhite's inverted
    grey table without one, or None."""
    entry = tags.raw.entries.get(Tag.COLORMAP)
    if entry is not None and entry.type != 3:
        return None
    raw = None if entry is None else tags.raw_bytes(Tag.COLORMAP)
    header = tags.header
    return palette_table(raw, header.byteorder, base.photometric, base.samples, base.bits, nodata)
