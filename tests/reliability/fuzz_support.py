"""Malformed-TIFF fuzzing shared by the hypothesis tests and the atheris harness (fuzz/): valid
seed files from the test corpus, a map of where their IFD fields lie, structure-aware mutations,
decompression bombs, and ``run_case``, which opens and reads one input and measures it.

The contract a case checks: only ``cloudroi.CloudROIError`` escapes, the case ends (no hang), and
its CPU time and traced memory stay bounded.
"""

from __future__ import annotations

import asyncio
import io
import struct
import threading
import time
import tracemalloc
import zlib
from dataclasses import dataclass
from functools import cache
from typing import Any

import imagecodecs
import numpy as np
import tifffile

import cloudroi
from cloudroi.cog import write_cog

#: A case that has not finished after this long (wall clock) is a hang.
HANG_SECONDS = 20.0


# --------------------------------------------------------------------------------------------
# seeds
# --------------------------------------------------------------------------------------------


def _tifffile(data: Any, **kw: Any) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, data, metadata=None, **kw)
    return buf.getvalue()


@cache
def seeds() -> dict[str, bytes]:
    """Small valid files covering the header shapes and codecs cloudroi reads."""
    from tests.corpus import TiffSpec  # the format-matrix generator of tests/corpus.py

    yy, xx = np.mgrid[0:70, 0:130]
    u16 = (xx * 300 + yy * 7).astype(np.uint16)
    f32 = (np.sin(xx / 9.0) * 100).astype(np.float32)
    rgb = np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1).astype(np.uint8)
    mask = (xx > 20).astype(np.uint8)
    out = {
        "cog-u16-deflate-mask": write_cog(u16, tile=32, predictor=2, mask=mask),
        "cog-f32-zstd-nodata": write_cog(
            f32,
            tile=64,
            compression="zstd",
            predictor=3,
            nodata=-1.0,
            epsg=4326,
            transform=(10.0, 0.1, 0.0, 50.0, 0.0, -0.1),
        ),
        "cog-rgb-lzw-noleader": write_cog(
            np.moveaxis(rgb, -1, 0), tile=64, compression="lzw", leader=False
        ),
        "tiff-jpeg": _tifffile(rgb, tile=(32, 32), compression="jpeg", photometric="rgb"),
        "tiff-webp": _tifffile(rgb, tile=(32, 32), compression="webp"),
        "tiff-lerc": _tifffile(f32, tile=(32, 32), compression="lerc"),
        "tiff-lerc-deflate": _tifffile(
            f32, tile=(32, 32), compression="lerc", compressionargs={"compression": "deflate"}
        ),
        "tiff-packbits-strips-be": _tifffile(
            u16, rowsperstrip=9, compression="packbits", byteorder=">"
        ),
        "tiff-lzma-planar-bigtiff": _tifffile(
            np.stack([u16, u16 // 2]),
            bigtiff=True,
            tile=(32, 32),
            compression="lzma",
            planarconfig="separate",
            photometric="minisblack",
        ),
        "tiff-1bit": TiffSpec(dtype="bool", width=130, height=70).write(),
        "tiff-12bit-strips": TiffSpec(
            dtype="uint16", bitspersample=12, tiled=False, width=130, height=70
        ).write(),
    }
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as tw:  # overviews as SubIFDs of the first image
        tw.write(u16, tile=(32, 32), compression="zlib", subifds=1, metadata=None)
        tw.write(u16[::2, ::2], tile=(32, 32), compression="zlib", subfiletype=1, metadata=None)
    out["tiff-subifds"] = buf.getvalue()
    return out


# --------------------------------------------------------------------------------------------
# where the fields of a (valid) file are
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """A mutable integer field of the file: its offset, width in bytes, and what it is."""

    offset: int
    size: int
    what: str  # "entry-type", "entry-count", "entry-value", "next-ifd", "first-ifd", "array"
    tag: int = 0


@dataclass(frozen=True)
class Layout:
    byteorder: str
    bigtiff: bool
    fields: tuple[Field, ...]
    ifds: tuple[int, ...]
    header_end: int

    def of(self, what: str) -> list[Field]:
        return [f for f in self.fields if f.what == what]


_TYPE_SIZES = {
    1: 1,
    2: 1,
    3: 2,
    4: 4,
    5: 8,
    6: 1,
    7: 1,
    8: 2,
    9: 4,
    10: 8,
    11: 4,
    12: 8,
    13: 4,
    16: 8,
    17: 8,
    18: 8,
}
#: Tags whose values are worth mutating even when they live out of line (arrays of offsets,
#: counts, sizes): TileOffsets/ByteCounts, StripOffsets/ByteCounts, BitsPerSample, SubIFDs...
_ARRAY_TAGS = {273, 279, 324, 325, 258, 330, 339, 338, 34735}


@cache
def layout(data: bytes) -> Layout:
    """Every IFD field of a well-formed seed (the walk trusts the file: seeds only)."""
    bo = "<" if data[:2] == b"II" else ">"
    bigtiff = struct.unpack_from(bo + "H", data, 2)[0] == 43
    fields: list[Field] = []
    if bigtiff:
        first_ifd = struct.unpack_from(bo + "Q", data, 8)[0]
        fields.append(Field(8, 8, "first-ifd"))
        count_size, entry_size, off_size, off_fmt = 8, 20, 8, "Q"
    else:
        first_ifd = struct.unpack_from(bo + "I", data, 4)[0]
        fields.append(Field(4, 4, "first-ifd"))
        count_size, entry_size, off_size, off_fmt = 2, 12, 4, "I"
    ifds: list[int] = []
    todo = [first_ifd]
    end = 0
    while todo:
        at = todo.pop(0)
        if at == 0 or at in ifds:
            continue
        ifds.append(at)
        n = struct.unpack_from(bo + ("Q" if bigtiff else "H"), data, at)[0]
        fields.append(Field(at, count_size, "ifd-count"))
        for i in range(n):
            pos = at + count_size + i * entry_size
            tag, typ = struct.unpack_from(bo + "HH", data, pos)
            count = struct.unpack_from(bo + off_fmt, data, pos + 4)[0]
            fields.append(Field(pos + 2, 2, "entry-type", tag))
            fields.append(Field(pos + 4, off_size, "entry-count", tag))
            fields.append(Field(pos + 4 + off_size, off_size, "entry-value", tag))
            nbytes = count * _TYPE_SIZES.get(typ, 1)
            value_at = pos + 4 + off_size
            if nbytes > off_size:
                value_at = struct.unpack_from(bo + off_fmt, data, value_at)[0]
            end = max(end, value_at + nbytes)
            if tag in _ARRAY_TAGS and typ in (3, 4, 16) and count < 4096:
                size = _TYPE_SIZES[typ]
                fields.extend(Field(value_at + k * size, size, "array", tag) for k in range(count))
            if tag == 330:
                fmt = bo + {3: "H", 4: "I", 13: "I", 16: "Q", 18: "Q"}.get(typ, "I")
                todo.extend(
                    struct.unpack_from(fmt, data, value_at + k * _TYPE_SIZES[typ])[0]
                    for k in range(count)
                )
        next_pos = at + count_size + n * entry_size
        fields.append(Field(next_pos, off_size, "next-ifd"))
        todo.append(struct.unpack_from(bo + off_fmt, data, next_pos)[0])
        end = max(end, next_pos + off_size)
    return Layout(bo, bigtiff, tuple(fields), tuple(ifds), end)


def interesting(size: int, file_size: int) -> list[int]:
    """Values that break parsers: 0, 1, powers of two and their neighbours, the file's end."""
    top = (1 << (8 * size)) - 1
    values = {
        0,
        1,
        2,
        3,
        7,
        8,
        255,
        256,
        4096,
        65535,
        65536,
        2**31 - 1,
        2**31,
        2**32 - 1,
        2**63,
        top,
        top - 1,
        file_size - 1,
        file_size,
        file_size + 1,
        file_size // 2,
    }
    return sorted(v for v in values if 0 <= v <= top)


def put_int(buf: bytearray, f: Field, value: int, byteorder: str) -> None:
    fmt = byteorder + {1: "B", 2: "H", 4: "I", 8: "Q"}[f.size]
    struct.pack_into(fmt, buf, f.offset, value & ((1 << (8 * f.size)) - 1))


@dataclass(frozen=True)
class Mutation:
    """A seed with integer fields overwritten (offset, width in bytes, value) and maybe cut
    short: small to print and shrink, unlike the bytes it stands for."""

    seed: str
    edits: tuple[tuple[int, int, int], ...] = ()
    cut: int | None = None

    def data(self) -> bytes:
        raw = seeds()[self.seed]
        byteorder = layout(raw).byteorder
        buf = bytearray(raw)
        for offset, size, value in self.edits:
            put_int(buf, Field(offset, size, "edit"), value, byteorder)
        return bytes(buf if self.cut is None else buf[: self.cut])


# --------------------------------------------------------------------------------------------
# decompression bombs: a small block that claims or expands to far more than its tile
# --------------------------------------------------------------------------------------------


def _fletcher32(data: bytes) -> int:
    """LERC2's checksum, so that a bomb with patched dimensions still passes the decoder's check."""
    s1 = s2 = 0xFFFF
    words = len(data) // 2
    i = 0
    while words:
        n = min(words, 359)
        words -= n
        for _ in range(n):
            s1 += data[i] << 8
            s1 += data[i + 1]
            s2 += s1
            i += 2
        s1 = (s1 & 0xFFFF) + (s1 >> 16)
        s2 = (s2 & 0xFFFF) + (s2 >> 16)
    if len(data) & 1:
        s1 += data[i] << 8
        s2 += s1
    s1 = (s1 & 0xFFFF) + (s1 >> 16)
    s2 = (s2 & 0xFFFF) + (s2 >> 16)
    return (s2 << 16) | s1


def jpeg_bomb(side: int = 30000) -> bytes:
    """A ~600-byte JPEG whose frame header claims ``side`` x ``side`` RGB pixels."""
    j = bytearray(imagecodecs.jpeg8_encode(np.zeros((16, 16, 3), np.uint8), level=90))
    sof = j.find(b"\xff\xc0")
    struct.pack_into(">HH", j, sof + 5, side, side)
    return bytes(j)


def lerc_bomb(side: int = 20000) -> bytes:
    """A 70-byte LERC2 blob of a constant float32 image claiming ``side`` x ``side`` pixels."""
    blob = bytearray(imagecodecs.lerc_encode(np.zeros((64, 64), np.float32)))
    struct.pack_into("<iiii", blob, 14, side, side, 1, side * side)
    struct.pack_into("<I", blob, 10, _fletcher32(bytes(blob[14:])))
    return bytes(blob)


def webp_bomb(side: int = 16383) -> bytes:
    """A lossless WebP whose header claims ``side`` x ``side`` pixels."""
    w = bytearray(imagecodecs.webp_encode(np.zeros((16, 16, 3), np.uint8), lossless=True))
    at = w.find(b"VP8L") + 8
    bits = (
        (side - 1)
        | ((side - 1) << 14)
        | (int.from_bytes(w[at + 1 : at + 5], "little") & ~((1 << 28) - 1))
    )
    w[at + 1 : at + 5] = bits.to_bytes(4, "little")
    return bytes(w)


def zlib_bomb(size: int = 64 << 20) -> bytes:
    return zlib.compress(bytes(size), 6)


#: seed name -> the bomb that fits its codec
BOMBS: dict[str, Any] = {
    "tiff-jpeg": jpeg_bomb,
    "tiff-lerc": lerc_bomb,
    "tiff-webp": webp_bomb,
    "cog-u16-deflate-mask": zlib_bomb,
    "tiff-lerc-deflate": lambda: zlib.compress(lerc_bomb(), 9),
    "cog-f32-zstd-nodata": lambda: bytes(imagecodecs.zstd_encode(bytes(256 << 20))),
}


def with_first_block(seed: bytes, block: bytes) -> bytes:
    """``seed`` with its first tile/strip replaced by ``block`` (appended, offset and count
    patched), keeping every other byte."""
    lay = layout(seed)
    offsets = [f for f in lay.of("entry-value") if f.tag in (324, 273)]
    counts = [f for f in lay.of("entry-value") if f.tag in (325, 279)]
    arrays = {t: [f for f in lay.of("array") if f.tag == t] for t in (324, 273, 325, 279)}
    buf = bytearray(seed)
    at = len(buf)
    buf += block
    off_field = (arrays[324] or arrays[273] or offsets)[0]
    cnt_field = (arrays[325] or arrays[279] or counts)[0]
    put_int(buf, off_field, at, lay.byteorder)
    put_int(buf, cnt_field, len(block), lay.byteorder)
    return bytes(buf)


# --------------------------------------------------------------------------------------------
# running one case
# --------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    result: str  # "ok" or the CloudROIError class name
    cpu: float  # process CPU seconds (all threads: decoding runs in the pool)
    peak: int  # peak traced memory, bytes
    declared: int  # largest decoded block the header declared (0 when it did not open)


async def _exercise(data: bytes) -> tuple[str, int]:
    declared = 0
    try:
        async with cloudroi.open(data) as img:
            declared = max(lv.decoded_block_bytes() for lv in img.structure.levels)
            w, h = min(img.width, 300), min(img.height, 300)
            await img.read((0, 0, w, h))
            last = len(img.levels) - 1
            lw, lh = img.levels[last]
            await img.read((max(0, lw - 64), max(0, lh - 64), min(lw, 64), min(lh, 64)), last)
            await img.read_mask((0, 0, w, h))
    except cloudroi.CloudROIError as exc:
        return type(exc).__name__, declared
    return "ok", declared


def run_case(data: bytes, *, trace: bool = True) -> Outcome:
    """Open and read ``data`` from memory. Anything but a CloudROIError propagates; a case still
    running after HANG_SECONDS raises TimeoutError."""

    async def go() -> tuple[str, int]:
        async with asyncio.timeout(HANG_SECONDS):
            return await _exercise(data)

    if trace:
        tracemalloc.start()
    cpu = time.process_time()
    try:
        result, declared = asyncio.run(go())
        peak = tracemalloc.get_traced_memory()[1] if trace else 0
    finally:
        if trace:
            _decoders_idle()
            tracemalloc.stop()
    return Outcome(result, time.process_time() - cpu, peak, declared)


def _decoders_idle() -> None:
    """Wait until every thread of the decode pool has finished what it was running. A read that
    fails leaves its sibling decodes running in the pool (a cancelled future does not stop its
    thread); stopping tracemalloc while such a thread allocates outside the GIL (zlib, libtiff)
    can crash CPython (its tracemalloc stop/allocate race, gh-128679): a fresh-clone CI run died
    of a segfault in zlib.decompressobj().decompress under test_flipped_bytes."""
    from cloudroi.context import default_executor

    pool = default_executor()
    workers = pool._max_workers
    gate = threading.Barrier(workers + 1)
    waits = [pool.submit(gate.wait, 30) for _ in range(workers)]
    gate.wait(30)  # every worker holds one of these: whatever ran before them has returned
    for fut in waits:
        fut.result()
