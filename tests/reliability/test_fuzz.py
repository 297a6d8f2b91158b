"""Malformed TIFFs: structure-aware mutations of valid corpus files (IFD fields set to values that
break parsers, bytes flipped, IFD loops, truncation) and decompression bombs. Only CloudROIError
subclasses escape, every case finishes fast, and memory stays bounded by what the header may
declare under ParseLimits. CI runs a few hundred cases (derandomized); CLOUDROI_LONG=1 runs 40x
more with fresh randomness. fuzz/ has the atheris harness for longer, coverage-guided runs."""

from __future__ import annotations

import os
import struct
from collections import Counter
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloudroi.tiff.parse import ParseLimits
from tests.longrun import LONG
from tests.reliability.fuzz_support import (
    BOMBS,
    Mutation,
    Outcome,
    interesting,
    layout,
    put_int,
    run_case,
    seeds,
    with_first_block,
)

SEEDS = seeds()
NAMES = sorted(SEEDS)
SCALE = 40 if LONG else 1
CPU_LIMIT = 3.0  # seconds of process CPU per case (decoding threads included)
BASE_MEMORY = 64 << 20
#: Decode buffers alive at once in one case, at most: one per decode thread, plus those that
#: threads had already taken for a read that failed meanwhile (image.py does not withdraw them),
#: overlapping the case's next read.
DECODE_SLOTS = 2 * (os.cpu_count() or 2) + 2
CASES: Counter[str] = Counter()
RESULTS: Counter[str] = Counter()


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples * SCALE,
        deadline=None,
        derandomize=not LONG,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def check(data: bytes, what: str, case: object = None) -> Outcome:
    """Run one case and hold it to the contract (exceptions other than CloudROIError and hangs
    propagate from ``run_case``)."""
    out = run_case(data)
    CASES[what] += 1
    RESULTS[out.result] += 1
    assert out.cpu < CPU_LIMIT, f"{out.cpu:.2f} s of CPU: {case!r}"
    # Memory: a decode buffer per slot for the largest block the header declared, which
    # ParseLimits caps (Deflate, LZW and PackBits blocks are also refused before allocating when
    # their compressed bytes could never fill it).
    cap = min(out.declared, ParseLimits().max_tile_bytes)
    assert out.peak <= BASE_MEMORY + DECODE_SLOTS * cap, (
        f"peak traced memory {out.peak} bytes for blocks of {out.declared} bytes: {case!r}"
    )
    return out


@pytest.fixture(scope="module", autouse=True)
def report() -> Iterator[None]:
    yield
    print(f"\nfuzz cases run: {sum(CASES.values())} {dict(CASES)}; outcomes {dict(RESULTS)}")


def test_every_seed_reads() -> None:
    for name in NAMES:
        assert check(SEEDS[name], "seed").result == "ok", name


# --------------------------------------------------------------------------------------------
# named malformations, applied to every seed
# --------------------------------------------------------------------------------------------


def _set(data: bytes, what: str, tags: set[int] | None, value: int | str) -> bytes | None:
    lay = layout(data)
    fields = [f for f in lay.of(what) if tags is None or f.tag in tags]
    if not fields:
        return None
    buf = bytearray(data)
    for f in fields:
        v = {"eof": len(data), "past": len(data) + 1000, "self": f.offset}.get(str(value), value)
        put_int(buf, f, int(v), lay.byteorder)
    return bytes(buf)


def _loop_to_first(data: bytes) -> bytes | None:
    lay = layout(data)
    buf = bytearray(data)
    for f in lay.of("next-ifd"):
        put_int(buf, f, lay.ifds[0], lay.byteorder)
    return bytes(buf)


def _loop_to_self(data: bytes) -> bytes | None:
    lay = layout(data)
    buf = bytearray(data)
    nexts = lay.of("next-ifd")
    put_int(buf, nexts[-1], lay.ifds[-1], lay.byteorder)
    return bytes(buf)


def _width_nan(data: bytes) -> bytes | None:
    """ImageWidth as a RATIONAL pointing at eight zero bytes: 0/0, NaN."""
    lay = layout(data)
    zeros = data.find(bytes(8), lay.header_end)
    entries = {(f.what, f.tag): f for f in lay.fields}
    if zeros < 0:
        return None
    buf = bytearray(data)
    put_int(buf, entries["entry-type", 256], 5, lay.byteorder)
    put_int(buf, entries["entry-count", 256], 1, lay.byteorder)
    put_int(buf, entries["entry-value", 256], zeros, lay.byteorder)
    return bytes(buf)


NAMED = {
    # found by the long hypothesis run: an entry of count 0 holds no value at all
    "subfile-type-empty": lambda d: _set(d, "entry-count", {254}, 0),
    "width-nan": _width_nan,
    # found by the long hypothesis run: one ModelPixelScale value where two are read
    "pixel-scale-one-value": lambda d: _set(d, "entry-count", {33550}, 1),
    "tiepoint-short": lambda d: _set(d, "entry-count", {33922}, 3),
    "ifd-loop-to-first": _loop_to_first,
    "ifd-loop-to-self": _loop_to_self,
    "first-ifd-past-eof": lambda d: _set(d, "first-ifd", None, "past"),
    "next-ifd-past-eof": lambda d: _set(d, "next-ifd", None, "past"),
    "zero-width": lambda d: _set(d, "entry-value", {256}, 0),
    "zero-height": lambda d: _set(d, "entry-value", {257}, 0),
    "huge-dimensions": lambda d: _set(d, "entry-value", {256, 257}, 2**31 - 1),
    "max-dimensions": lambda d: _set(d, "entry-value", {256, 257}, 2**32 - 1),
    "one-pixel-tiles": lambda d: (
        _set(d, "entry-value", {322, 323}, 1) or _set(d, "entry-value", {278}, 1)
    ),
    "huge-tiles": lambda d: _set(d, "entry-value", {322, 323}, 65535),
    "zero-tiles": lambda d: _set(d, "entry-value", {322, 323, 278}, 0),
    "tag-count-overflow": lambda d: _set(d, "entry-count", {324, 273}, 2**31),
    "every-count-max": lambda d: _set(d, "entry-count", None, 2**32 - 1),
    "entry-count-absurd": lambda d: _set(d, "ifd-count", None, 65535),
    "offsets-past-eof": lambda d: _set(d, "array", {324, 273}, "past"),
    "offsets-zero": lambda d: _set(d, "array", {324, 273}, 0),
    "byte-counts-huge": lambda d: _set(d, "array", {325, 279}, 2**31),
    "byte-counts-to-eof": lambda d: _set(d, "array", {325, 279}, "eof"),
    "bits-per-sample-huge": lambda d: (
        _set(d, "entry-value", {258}, 4096) or _set(d, "array", {258}, 4096)
    ),
    "samples-per-pixel-huge": lambda d: _set(d, "entry-value", {277}, 65535),
    "types-garbage": lambda d: _set(d, "entry-type", None, 99),
    "types-to-double": lambda d: _set(d, "entry-type", {256, 257, 324, 325}, 12),
    "subifds-to-self": lambda d: (
        _set(d, "array", {330}, "self") or _set(d, "entry-value", {330}, "self")
    ),
}


@pytest.mark.parametrize("case", sorted(NAMED))
def test_named_malformations(case: str) -> None:
    applied = 0
    for name in NAMES:
        mutated = NAMED[case](SEEDS[name])
        if mutated is None:
            continue
        applied += 1
        check(mutated, f"named:{case}")
    assert applied > 0, f"{case} applied to no seed"


@pytest.mark.parametrize("seed", sorted(BOMBS))
def test_decompression_bombs_stay_within_the_block(seed: str) -> None:
    """A block far larger once decoded than its tile: refused (or cut to the tile) without the
    memory or time the bomb asks for."""
    out = check(with_first_block(SEEDS[seed], BOMBS[seed]()), "bomb")
    assert out.peak < BASE_MEMORY
    assert out.cpu < 1.0


def _claim_huge_blocks(data: bytes) -> bytes:
    """Tiles of 8192 x 8192, or strips 2**24 pixels wide, over the seed's few bytes of data."""
    lay = layout(data)
    tiled = any(f.tag == 322 for f in lay.of("entry-value"))
    buf = bytearray(data)
    for f in lay.of("entry-value"):
        if tiled and f.tag in (322, 323):
            put_int(buf, f, 8192, lay.byteorder)
        elif not tiled and f.tag == 256:
            put_int(buf, f, 1 << 24, lay.byteorder)
    return bytes(buf)


@pytest.mark.parametrize(
    "case",
    [
        "cog-u16-deflate-mask",
        "cog-rgb-lzw-noleader",
        "tiff-packbits-strips-be",
        # found by the long hypothesis run: tiles 262176 rows tall, LZMA; each failed block's
        # traceback kept its 16 MB output buffer alive until the read's futures were dropped
        Mutation("tiff-lzma-planar-bigtiff", ((278, 1, 4),)),
        # found by the long hypothesis run: a 2-byte count edit made a PackBits strip 18.5
        # million pixels wide, and each of its 2 KB strips allocated 334 MB before failing
        Mutation("tiff-packbits-strips-be", ((14, 4, 2),)),
    ],
    ids=str,
)
def test_small_blocks_declaring_huge_ones_are_refused_before_allocating(
    case: str | Mutation,
) -> None:
    data = case.data() if isinstance(case, Mutation) else _claim_huge_blocks(SEEDS[case])
    out = check(data, "claims", case)
    assert out.result == "TiffFormatError"
    assert out.declared > 16 << 20
    assert out.peak < BASE_MEMORY


# --------------------------------------------------------------------------------------------
# random mutations
# --------------------------------------------------------------------------------------------


@st.composite
def field_mutations(draw: st.DrawFn) -> Mutation:
    name = draw(st.sampled_from(NAMES))
    data = SEEDS[name]
    lay = layout(data)
    edits = []
    for _ in range(draw(st.integers(1, 4))):
        f = draw(st.sampled_from(lay.fields))
        values = interesting(f.size, len(data))
        value = draw(st.one_of(st.sampled_from(values), st.integers(0, (1 << (8 * f.size)) - 1)))
        edits.append((f.offset, f.size, value))
    return Mutation(name, tuple(edits))


@given(field_mutations())
@fuzz_settings(250)
def test_ifd_fields_set_to_hostile_values(case: Mutation) -> None:
    check(case.data(), "fields", case)


@st.composite
def byte_flips(draw: st.DrawFn) -> Mutation:
    name = draw(st.sampled_from(NAMES))
    data = SEEDS[name]
    end = layout(data).header_end
    anywhere = st.integers(0, len(data) - 1)
    edits = []
    for _ in range(draw(st.integers(1, 8))):
        pos = draw(st.one_of(st.integers(0, end - 1), anywhere))
        edits.append((pos, 1, draw(st.integers(0, 255))))
    return Mutation(name, tuple(edits))


@given(byte_flips())
@fuzz_settings(150)
def test_flipped_bytes(case: Mutation) -> None:
    check(case.data(), "flips", case)


@st.composite
def links_and_cuts(draw: st.DrawFn) -> Mutation:
    name = draw(st.sampled_from(NAMES))
    data = SEEDS[name]
    lay = layout(data)
    if draw(st.booleans()):
        return Mutation(name, cut=draw(st.integers(0, len(data) - 1)))
    links = lay.of("next-ifd") + lay.of("first-ifd") + [f for f in lay.of("array") if f.tag == 330]
    targets = [*lay.ifds, 0, 1, len(data) - 2, *(f.offset for f in lay.fields[:50])]
    edits = []
    for _ in range(draw(st.integers(1, 3))):
        f = draw(st.sampled_from(links))
        edits.append((f.offset, f.size, draw(st.sampled_from(targets))))
    return Mutation(name, tuple(edits))


@given(links_and_cuts())
@fuzz_settings(100)
def test_ifd_links_and_truncation(case: Mutation) -> None:
    check(case.data(), "links", case)


def test_layout_finds_the_fields_it_mutates() -> None:
    """The mutators act on real fields: the map of a seed points at its actual IFD entries."""
    data = SEEDS["cog-u16-deflate-mask"]
    lay = layout(data)
    widths = [f for f in lay.of("entry-value") if f.tag == 256]
    assert len(widths) == len(lay.ifds) >= 2
    assert struct.unpack_from("<I", data, widths[0].offset)[0] == 130
