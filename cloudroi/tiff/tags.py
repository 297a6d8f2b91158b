"""TIFF constants: field types, the tag numbers cloudroi reads, and code names for messages."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["COMPRESSION_NAMES", "FIELD_TYPES", "PHOTOMETRIC_NAMES", "Tag", "tag_name"]


class Tag(IntEnum):
    NEW_SUBFILE_TYPE = 254
    IMAGE_WIDTH = 256
    IMAGE_LENGTH = 257
    BITS_PER_SAMPLE = 258
    COMPRESSION = 259
    PHOTOMETRIC = 262
    FILL_ORDER = 266
    STRIP_OFFSETS = 273
    SAMPLES_PER_PIXEL = 277
    ROWS_PER_STRIP = 278
    STRIP_BYTE_COUNTS = 279
    PLANAR_CONFIG = 284
    PREDICTOR = 317
    COLORMAP = 320
    TILE_WIDTH = 322
    TILE_LENGTH = 323
    TILE_OFFSETS = 324
    TILE_BYTE_COUNTS = 325
    SUB_IFDS = 330
    EXTRA_SAMPLES = 338
    SAMPLE_FORMAT = 339
    JPEG_TABLES = 347
    YCBCR_SUBSAMPLING = 530
    IMAGE_DEPTH = 32997
    MODEL_PIXEL_SCALE = 33550
    MODEL_TIEPOINT = 33922
    MODEL_TRANSFORMATION = 34264
    GEO_KEY_DIRECTORY = 34735
    GEO_DOUBLE_PARAMS = 34736
    GEO_ASCII_PARAMS = 34737
    GDAL_METADATA = 42112
    GDAL_NODATA = 42113
    LERC_PARAMETERS = 50674


#: The tags whose values cloudroi needs; any other tag's value is never fetched.
WANTED_TAGS = frozenset(int(t) for t in Tag)

#: Tile/strip index arrays: loaded at open only when small or already in hand.
INDEX_TAGS = frozenset(
    {Tag.TILE_OFFSETS, Tag.TILE_BYTE_COUNTS, Tag.STRIP_OFFSETS, Tag.STRIP_BYTE_COUNTS}
)

#: TIFF field type -> (struct/numpy character, item size in bytes, items per value).
FIELD_TYPES: dict[int, tuple[str, int, int]] = {
    1: ("B", 1, 1),  # BYTE
    2: ("B", 1, 1),  # ASCII
    3: ("H", 2, 1),  # SHORT
    4: ("I", 4, 1),  # LONG
    5: ("I", 8, 2),  # RATIONAL (two LONGs)
    6: ("b", 1, 1),  # SBYTE
    7: ("B", 1, 1),  # UNDEFINED
    8: ("h", 2, 1),  # SSHORT
    9: ("i", 4, 1),  # SLONG
    10: ("i", 8, 2),  # SRATIONAL
    11: ("f", 4, 1),  # FLOAT
    12: ("d", 8, 1),  # DOUBLE
    13: ("I", 4, 1),  # IFD
    16: ("Q", 8, 1),  # LONG8
    17: ("q", 8, 1),  # SLONG8
    18: ("Q", 8, 1),  # IFD8
}

COMPRESSION_NAMES: dict[int, str] = {
    1: "none",
    2: "CCITT RLE",
    3: "CCITT Group 3",
    4: "CCITT Group 4",
    5: "LZW",
    6: "old-style JPEG",
    7: "JPEG",
    8: "Deflate",
    32946: "Deflate",
    32773: "PackBits",
    33003: "JPEG 2000",
    33005: "JPEG 2000",
    34712: "JPEG 2000",
    34887: "LERC",
    34925: "LZMA",
    34933: "PNG",
    34934: "JPEG XR",
    50000: "ZSTD",
    50001: "WebP",
    50002: "JPEG XL",
}

#: Short lower-case keys of the compressions cloudroi decodes, as ``Image.compression`` shows
#: them (GDAL's COMPRESS= values, lower-cased).
COMPRESSION_KEYS: dict[int, str] = {
    1: "none",
    5: "lzw",
    7: "jpeg",
    8: "deflate",
    32946: "deflate",
    32773: "packbits",
    34887: "lerc",
    34925: "lzma",
    50000: "zstd",
    50001: "webp",
}

PHOTOMETRIC_NAMES: dict[int, str] = {
    0: "miniswhite",
    1: "minisblack",
    2: "rgb",
    3: "palette",
    4: "mask",
    5: "separated",
    6: "ycbcr",
    8: "cielab",
}


def tag_name(tag: int) -> str:
    """A tag as messages name it: ``BITS_PER_SAMPLE (258)``, or ``tag 60000``."""
    try:
        return f"{Tag(tag).name} ({tag})"
    except ValueError:
        return f"tag {tag}"


def compression_name(code: int) -> str:
    return COMPRESSION_NAMES.get(code, f"compression {code}")
