"""Malformed TIFFs: structure-aware mutations of valid corpus files (IFD fields set to values that
break parsers, bytes flipped, IFD loops, truncation) and decompression bombs. Only CloudROIError
subclasses escape, every case finishes fast, and memory stays bounded by what the header may
declare under ParseLimits. CI runs a few hundred cases (derandomized); CLOUDROI_LONG=1 runs 40x
more with fresh randomness. fuzz/ has the atheris harness for longer, coverage-guided runs."""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Iterator

import pytest
from fuzz_support import (
    BOMBS,
    Outcome,
    interesting,
    layout,
    put_int,
    run_case,
    seeds,
    with_first_block,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_support import LONG

from cloudroi.tiff.parse import ParseLimits

SEEDS = seeds()
NAMES = sorted(SEEDS)
SCALE = 40 if LONG else 1
CPU_LIMIT = 3.0  # seconds of process CPU per case (decoding threads included)
BASE_MEMORY = 64 << 20
CASES: Counter[str] = Counter()
RESULTS: Counter[str] = Counter()


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples * SCALE,
        deadline=None,
        derandomize=not LONG,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def check(data: bytes, what: str) -> Outcome:
    """Run one case and hold it to the contract (exceptions other than CloudROIError and hangs
    propagate from ``run_case``)."""
    out = run_case(data)
    CASES[what] += 1
    RESULTS[out.result] += 1
    assert out.cpu < CPU_LIMIT, f"{out.cpu:.2f} s of CPU"
    # Memory: a few times the largest block the header declared (decode buffers), itself capped.
    assert out.peak <= BASE_MEMORY + 3 * min(out.declared, ParseLimits().max_tile_bytes), (
        f"peak traced memory {out.peak} bytes for blocks of {out.declared} bytes"
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


NAMED = {
    "ifd-loop-to-first": _loop_to_first,
    "ifd-loop-to-self": _loop_to_self,
    "first-ifd-past-eof": lambda d: _set(d, "first-ifd", None, "past"),
    "next-ifd-past-eof": lambda d: _set(d, "next-ifd", None, "past"),
    "zero-width": lambda d: _set(d, "entry-value", {256}, 0),
    "zero-height": lambda d: _set(d, "entry-value", {257}, 0),
    "huge-dimensions": lambda d: _set(d, "entry-value", {256, 257}, 2**31 - 1),
    "max-dimensions": lambda d: _set(d, "entry-value", {256, 257}, 2**32 - 1),
    "one-pixel-tiles": lambda d: _set(d, "entry-value", {322, 323}, 1)
    or _set(d, "entry-value", {278}, 1),
    "huge-tiles": lambda d: _set(d, "entry-value", {322, 323}, 65535),
    "zero-tiles": lambda d: _set(d, "entry-value", {322, 323, 278}, 0),
    "tag-count-overflow": lambda d: _set(d, "entry-count", {324, 273}, 2**31),
    "every-count-max": lambda d: _set(d, "entry-count", None, 2**32 - 1),
    "entry-count-absurd": lambda d: _set(d, "ifd-count", None, 65535),
    "offsets-past-eof": lambda d: _set(d, "array", {324, 273}, "past"),
    "offsets-zero": lambda d: _set(d, "array", {324, 273}, 0),
    "byte-counts-huge": lambda d: _set(d, "array", {325, 279}, 2**31),
    "byte-counts-to-eof": lambda d: _set(d, "array", {325, 279}, "eof"),
    "bits-per-sample-huge": lambda d: _set(d, "entry-value", {258}, 4096)
    or _set(d, "array", {258}, 4096),
    "samples-per-pixel-huge": lambda d: _set(d, "entry-value", {277}, 65535),
    "types-garbage": lambda d: _set(d, "entry-type", None, 99),
    "types-to-double": lambda d: _set(d, "entry-type", {256, 257, 324, 325}, 12),
    "subifds-to-self": lambda d: _set(d, "array", {330}, "self")
    or _set(d, "entry-value", {330}, "self"),
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


# --------------------------------------------------------------------------------------------
# random mutations
# --------------------------------------------------------------------------------------------


@st.composite
def field_mutations(draw: st.DrawFn) -> bytes:
    name = draw(st.sampled_from(NAMES))
    data = SEEDS[name]
    lay = layout(data)
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        f = draw(st.sampled_from(lay.fields))
        values = interesting(f.size, len(data))
        value = draw(st.one_of(st.sampled_from(values), st.integers(0, (1 << (8 * f.size)) - 1)))
        put_int(buf, f, value, lay.byteorder)
    return bytes(buf)


@given(field_mutations())
@fuzz_settings(250)
def test_ifd_fields_set_to_hostile_values(data: bytes) -> None:
    check(data, "fields")


@st.composite
def byte_flips(draw: st.DrawFn) -> bytes:
    name = draw(st.sampled_from(NAMES))
    data = SEEDS[name]
    end = layout(data).header_end
    buf = bytearray(data)
    anywhere = st.integers(0, len(data) - 1)
    for _ in range(draw(st.integers(1, 8))):
        pos = draw(st.one_of(st.integers(0, end - 1), anywhere))
        buf[pos] = draw(st.integers(0, 255))
    return bytes(buf)


@given(byte_flips())
@fuzz_settings(150)
def test_flipped_bytes(data: bytes) -> None:
    check(data, "flips")


@st.composite
def links_and_cuts(draw: st.DrawFn) -> bytes:
    name = draw(st.sampled_from(NAMES))
    data = SEEDS[name]
    lay = layout(data)
    if draw(st.booleans()):
        return data[: draw(st.integers(0, len(data) - 1))]
    buf = bytearray(data)
    links = lay.of("next-ifd") + lay.of("first-ifd") + [
        f for f in lay.of("array") if f.tag == 330
    ]
    targets = [*lay.ifds, 0, 1, len(data) - 2, *(f.offset for f in lay.fields[:50])]
    for _ in range(draw(st.integers(1, 3))):
        put_int(buf, draw(st.sampled_from(links)), draw(st.sampled_from(targets)),
                lay.byteorder)
    return bytes(buf)


@given(links_and_cuts())
@fuzz_settings(100)
def test_ifd_links_and_truncation(data: bytes) -> None:
    check(data, "links")


def test_layout_finds_the_fields_it_mutates() -> None:
    """The mutators act on real fields: the map of a seed points at its actual IFD entries."""
    data = SEEDS["cog-u16-deflate-mask"]
    lay = layout(data)
    widths = [f for f in lay.of("entry-value") if f.tag == 256]
    assert len(widths) == len(lay.ifds) >= 2
    assert struct.unpack_from("<I", data, widths[0].offset)[0] == 130
