"""The multipart/byteranges parser driven with bytes alone: every answer the writer produces is
parsed back exactly in any chunking; answers servers are seen to give (reordered, merged, with a
preamble, unclosed) are used; damaged, oversized or foreign ones give the typed errors and never
make the parser hold more than its bounds."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloudroi.errors import ObjectChangedError, TransientError
from cloudroi.source.multipart import (
    MAX_HEADER_LINES,
    MAX_LINE,
    MAX_STRAY_LINES,
    SLACK,
    ByterangesParser,
    NotByteranges,
    byteranges_boundary,
    multipart_byteranges,
)
from cloudroi.types import ByteRange

DATA = random.Random(3).randbytes(6000)
SIZE = len(DATA)
#: Three disjoint ranges, inclusive (as the writer takes them) and as asked.
INCL = [(10, 99), (1000, 1499), (4000, 4095)]
RANGES = [ByteRange(a, b + 1) for a, b in INCL]
WANT = [DATA[a : b + 1] for a, b in INCL]
TYPED = (NotByteranges, ObjectChangedError, TransientError)


def whole(body: bytes) -> Iterator[bytes]:
    yield body


def bytewise(body: bytes) -> Iterator[bytes]:
    for i in range(len(body)):
        yield body[i : i + 1]


def cut_at(body: bytes, cuts: Iterable[int]) -> Iterator[bytes]:
    at = 0
    for c in sorted({min(max(c, 0), len(body)) for c in cuts}):
        yield body[at:c]
        at = c
    yield body[at:]


Chunker = Callable[[bytes], Iterator[bytes]]
CHUNKERS: list[Chunker] = [whole, bytewise, lambda b: cut_at(b, range(0, len(b), 7))]
CHUNKER_IDS = ["whole", "bytewise", "by-7"]


def parse(
    body: bytes,
    ranges: Sequence[ByteRange] = RANGES,
    *,
    boundary: bytes = b"b0undary",
    size: int = SIZE,
    chunks: Chunker = whole,
) -> list[bytes]:
    """Feed ``body`` in ``chunks`` (stopping when done), checking the bounds after every feed."""
    parser = ByterangesParser(boundary, ranges, size)
    try:
        for chunk in chunks(body):
            parser.feed(chunk)
            assert parser.held <= parser.budget - parser.budget_left + MAX_LINE
            assert parser.consumed <= parser.max_input
            if parser.done:
                break
        return parser.result()
    finally:
        assert parser.held <= parser.budget - parser.budget_left + MAX_LINE
        assert parser.consumed <= parser.max_input


def framed(
    parts: Sequence[tuple[int, int]],
    *,
    boundary: str = "b0undary",
    total: int | None = None,
    data: bytes = DATA,
    closing: bool = True,
) -> bytes:
    """Parts framed as ``tests/test_multirange.py``'s odd server frames them (no leading CRLF,
    CRLF after each body), the size in each part's Content-Range ``total`` or the real one."""
    out = b""
    for first, last in parts:
        head = f"--{boundary}\r\nContent-Range: bytes {first}-{last}/{total or len(data)}\r\n\r\n"
        out += head.encode() + data[first : last + 1] + b"\r\n"
    return out + (f"--{boundary}--\r\n".encode() if closing else b"")


# -- well-formed answers ------------------------------------------------------------------------


@pytest.mark.parametrize("chunks", CHUNKERS, ids=CHUNKER_IDS)
def test_the_writers_answer_is_parsed_back(chunks: Chunker) -> None:
    body = multipart_byteranges(DATA, INCL, "cloudroi-0123")
    assert parse(body, boundary=b"cloudroi-0123", chunks=chunks) == WANT


@st.composite
def answers(draw: st.DrawFn) -> tuple[bytes, list[tuple[int, int]], str, list[int]]:
    """An object, 1..8 sorted disjoint ranges of it, a boundary and cut points for the body."""
    size = draw(st.integers(1, 3000))
    data = draw(st.binary(min_size=size, max_size=size))
    bounds = sorted(draw(st.sets(st.integers(0, size), min_size=2, max_size=16)))
    pairs = [(a, b - 1) for a, b in zip(bounds[::2], bounds[1::2], strict=False) if b > a]
    ranges = draw(st.lists(st.sampled_from(pairs), min_size=1, unique=True)) if pairs else []
    boundary = draw(st.text("abcXYZ019'()+_,-./:=?", min_size=1, max_size=70))
    cuts = draw(st.lists(st.integers(0, 4 * size + 2000), max_size=40))
    return data, sorted(ranges) or [(0, size - 1)], boundary, cuts


@given(answers())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_written_answer_in_any_chunking(
    case: tuple[bytes, list[tuple[int, int]], str, list[int]],
) -> None:
    data, incl, boundary, cuts = case
    body = multipart_byteranges(data, incl, boundary)
    ranges = [ByteRange(a, b + 1) for a, b in incl]
    want = [data[a : b + 1] for a, b in incl]
    chunkers: list[Chunker] = [whole, lambda b: cut_at(b, cuts)]
    if len(body) <= 4000:
        chunkers.append(bytewise)
    for chunks in chunkers:
        got = parse(body, ranges, boundary=boundary.encode(), size=len(data), chunks=chunks)
        assert got == want


USABLE: dict[str, bytes] = {
    # parts in another order, and a preamble before the first delimiter
    "reordered-preamble": b"preamble\r\n\r\n" + framed(list(reversed(INCL))),
    # the server merged all ranges into one part (gaps included)
    "merged": framed([(INCL[0][0], INCL[-1][1])]),
    # two ranges merged, one alone, out of order
    "half-merged": framed([INCL[2], (INCL[0][0], INCL[1][1])]),
    # part headers in other cases, other headers around Content-Range
    "header-case": framed(INCL)
    .replace(b"Content-Range", b"content-RANGE")
    .replace(b"\r\n\r\n", b"\r\nX-Other: 1\r\nContent-Type: application/octet-stream\r\n\r\n"),
    # no closing delimiter: forgiven when every range is there
    "unclosed": framed(INCL, closing=False),
    # the body ends with the last part's bytes
    "unclosed-without-crlf": framed(INCL, closing=False).removesuffix(b"\r\n"),
    # a closing delimiter without its CRLF
    "closing-without-crlf": framed(INCL).removesuffix(b"\r\n"),
    # bare LF line ends
    "lf-only": framed(INCL).replace(b"\r\n", b"\n"),
    # a part covering more than asked on both sides
    "wider-parts": framed([(0, 120), (900, 1600), (3999, 4095)]),
    # an epilogue after the closing delimiter (ignored)
    "epilogue": framed(INCL) + b"epilogue \xff" * 500,
}


@pytest.mark.parametrize("chunks", CHUNKERS, ids=CHUNKER_IDS)
@pytest.mark.parametrize("name", list(USABLE))
def test_usable_answers(name: str, chunks: Chunker) -> None:
    assert parse(USABLE[name], chunks=chunks) == WANT


def test_quoted_boundary() -> None:
    boundary = byteranges_boundary('multipart/byteranges; charset=x; BOUNDARY="b0undary"')
    assert boundary == b"b0undary"
    assert parse(framed(INCL), boundary=boundary) == WANT


@pytest.mark.parametrize(
    ("content_type", "boundary"),
    [
        ("multipart/byteranges; boundary=abc", b"abc"),
        ("Multipart/ByteRanges ;boundary = abc ", b"abc"),
        ('multipart/byteranges; boundary=""', None),
        ("multipart/byteranges", None),
        ("multipart/mixed; boundary=abc", None),
        ("application/octet-stream", None),
        ("multipart/byteranges; boundary=" + "x" * 200, b"x" * 200),
        ("multipart/byteranges; boundary=" + "x" * 201, None),
    ],
)
def test_boundary_from_content_type(content_type: str, boundary: bytes | None) -> None:
    assert byteranges_boundary(content_type) == boundary


def test_done_at_the_closing_delimiter_and_the_epilogue_is_not_taken() -> None:
    body = framed(INCL)
    parser = ByterangesParser(b"b0undary", RANGES, SIZE)
    parser.feed(body[:-1])
    assert not parser.done
    parser.feed(body[-1:] + b"x" * 100_000)
    assert parser.done
    assert parser.consumed == len(body)
    assert parser.wants == 0
    parser.feed(b"more")
    assert parser.consumed == len(body)
    assert parser.result() == WANT


def test_wants_never_passes_the_current_part() -> None:
    """Read sizes from ``wants`` take a body part by part: never more than the rest of a part
    or one line, so a reader asking for ``wants`` bytes stops within ``MAX_LINE`` of the end."""
    body = framed(INCL) + b"epilogue" * 1000
    parser = ByterangesParser(b"b0undary", RANGES, SIZE)
    at = 0
    while not parser.done:
        n = parser.wants
        assert 0 < n <= max(MAX_LINE + 1, *(r.length for r in RANGES))
        parser.feed(body[at : at + n])
        at += n
    assert at - parser.consumed <= MAX_LINE
    assert parser.result() == WANT


# -- answers that cannot be used ----------------------------------------------------------------


def _header_lines(n: int) -> bytes:
    lines = "".join(f"X-Header-{i}: {i}\r\n" for i in range(n))
    return (
        f"--b0undary\r\n{lines}Content-Range: bytes 10-99/{SIZE}\r\n\r\n".encode()
        + DATA[10:100]
        + b"\r\n"
    )


UNUSABLE: dict[str, tuple[bytes, str]] = {
    "missing-part": (framed(INCL[:-1]), "missing from the answer"),
    "part-short-of-a-range": (framed([INCL[0], INCL[1], (4000, 4090)]), "missing"),
    "extra-parts": (framed([INCL[0]] * 7), "more parts than ranges asked"),
    "no-delimiter": (b"x" * 100 + b"\r\n" * 20, "no multipart delimiter"),
    "stray-lines": (b"text\r\n" * (MAX_STRAY_LINES + 1) + framed(INCL), "no multipart delimiter"),
    "blank-lines": (b"\r\n" * 15 + framed(INCL), "no multipart delimiter"),
    "other-boundary": (framed(INCL, boundary="other"), "no multipart delimiter"),
    "no-content-range": (b"--b0undary\r\n\r\nxyz\r\n--b0undary--\r\n", "usable Content-Range"),
    "unsatisfied-content-range": (
        f"--b0undary\r\nContent-Range: bytes */{SIZE}\r\n\r\n".encode(),
        "usable Content-Range",
    ),
    "past-the-end": (framed([(10, 99), (1000, 1499), (4000, SIZE)]), "outside the object"),
    "long-line": (b"x" * (MAX_LINE + 1) + b"\r\n" + framed(INCL), "longer than"),
    "long-header-line": (
        framed(INCL).replace(b"\r\n\r\n", b"\r\nX-Long: " + b"y" * MAX_LINE + b"\r\n\r\n", 1),
        "longer than",
    ),
    "endless-headers": (_header_lines(MAX_HEADER_LINES - 1), "part headers do not end"),
    "empty": (b"", "missing from the answer"),
    "closing-only": (b"--b0undary--\r\n", "missing from the answer"),
    "bare-delimiter-at-the-end": (
        framed(INCL[:2], closing=False) + b"--b0undary",
        "usable Content-Range",
    ),
}


@pytest.mark.parametrize("chunks", CHUNKERS, ids=CHUNKER_IDS)
@pytest.mark.parametrize("name", list(UNUSABLE))
def test_unusable_answers_are_not_byteranges(name: str, chunks: Chunker) -> None:
    body, why = UNUSABLE[name]
    with pytest.raises(NotByteranges, match=why):
        parse(body, chunks=chunks)


def test_header_lines_up_to_the_limit_are_read() -> None:
    body = _header_lines(MAX_HEADER_LINES - 2) + framed(INCL[1:])
    assert parse(body) == WANT


def test_part_of_another_object_size_is_object_changed() -> None:
    with pytest.raises(ObjectChangedError, match=f"from {SIZE} to {SIZE + 1}"):
        parse(framed(INCL, total=SIZE + 1))


@pytest.mark.parametrize(
    ("cut", "error"),
    [
        (30, NotByteranges),  # inside the first part's headers, before its Content-Range ends
        (46, TransientError),  # after them (the body would start at 47)
        (100, TransientError),  # inside the first part's body
        (-200, TransientError),  # inside the second part's body
    ],
)
def test_a_body_ending_inside_a_part(cut: int, error: type[Exception]) -> None:
    body = framed(INCL)[:cut]
    with pytest.raises(error):
        parse(body)


def test_over_budget_part_is_refused_before_its_bytes_arrive() -> None:
    """A part larger than twice the bytes asked + SLACK is refused at its headers."""
    asked = [ByteRange(0, 10), ByteRange(20, 30)]
    budget = 2 * 20 + SLACK
    big = bytes(budget + 1)
    head = f"--b0undary\r\nContent-Range: bytes 0-{budget}/{len(big)}\r\n\r\n".encode()
    parser = ByterangesParser(b"b0undary", asked, len(big))
    assert parser.budget == budget
    with pytest.raises(NotByteranges, match="larger than asked"):
        parser.feed(head + big)
    assert parser.held == 0
    assert parser.consumed == len(head) - 2  # the headers' end was the refused line


def test_parts_together_over_budget_are_refused() -> None:
    asked = [ByteRange(0, 10), ByteRange(20, 30)]
    data = bytes(200_000)
    part = (0, SLACK // 2)  # each part fits; three of them do not
    with pytest.raises(NotByteranges, match="larger than asked"):
        parse(framed([part, part, part], data=data), asked, size=len(data))


def test_errors_stick_and_free_what_was_held() -> None:
    parser = ByterangesParser(b"b0undary", RANGES, SIZE)
    parser.feed(framed(INCL[:2], closing=False))
    assert parser.held > 0
    with pytest.raises(NotByteranges, match="longer than"):
        parser.feed(b"z" * (MAX_LINE + 1))
    assert parser.held == 0
    with pytest.raises(NotByteranges, match="longer than"):
        parser.feed(b"--b0undary--\r\n")
    with pytest.raises(NotByteranges, match="longer than"):
        parser.result()


def test_a_line_longer_than_the_limit_is_refused_without_being_held() -> None:
    parser = ByterangesParser(b"b0undary", RANGES, SIZE)
    for _ in range(MAX_LINE // 100):
        parser.feed(b"y" * 100)
    assert parser.held <= MAX_LINE
    with pytest.raises(NotByteranges, match="longer than"):
        parser.feed(b"y" * 100 + b"\r\n")
    assert parser.held == 0


def test_the_boundary_is_checked() -> None:
    with pytest.raises(ValueError, match="boundary"):
        ByterangesParser(b"", RANGES, SIZE)
    with pytest.raises(ValueError, match="boundary"):
        ByterangesParser(b"b" * 201, RANGES, SIZE)


# -- anything at all ----------------------------------------------------------------------------


def _outcome(body: bytes, ranges: Sequence[ByteRange], size: int, chunks: Chunker) -> object:
    """What parsing ``body`` gives: the ranges, or the error's type and message."""
    try:
        return parse(body, ranges, size=size, chunks=chunks)
    except TYPED as exc:
        return type(exc), str(exc)


@st.composite
def bodies(draw: st.DrawFn) -> tuple[bytes, list[ByteRange], list[int]]:
    """Arbitrary bytes, or a written answer mutated (bytes flipped, cut, repeated, inserted)."""
    if draw(st.booleans()):
        body = draw(st.binary(max_size=3000))
    else:
        body = bytearray(USABLE[draw(st.sampled_from(sorted(USABLE)))])
        for _ in range(draw(st.integers(1, 6))):
            at = draw(st.integers(0, len(body)))
            what = draw(st.sampled_from(["flip", "cut", "repeat", "insert"]))
            if what == "flip" and at < len(body):
                body[at] = draw(st.integers(0, 255))
            elif what == "cut":
                del body[at : at + draw(st.integers(1, 200))]
            elif what == "repeat":
                body[at:at] = body[at : at + draw(st.integers(1, 200))]
            else:
                body[at:at] = draw(
                    st.sampled_from(
                        [
                            b"\r\n",
                            b"\n",
                            b"--b0undary",
                            b"--b0undary--",
                            b"Content-Range: bytes ",
                            b"0-5999/6000",
                            b"\r\n" * 40,
                            b"x" * 1100,
                            b":",
                            b"/",
                        ]
                    )
                )
        body = bytes(body)
    cuts = draw(st.lists(st.integers(0, len(body)), max_size=30))
    return body, RANGES, cuts


@given(bodies())
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_anything_fed_gives_ranges_or_a_typed_error_in_bounds(
    case: tuple[bytes, list[ByteRange], list[int]],
) -> None:
    """Never an untyped exception, never more held than the bounds (checked in ``parse``), and
    the same outcome whatever the chunking."""
    body, ranges, cuts = case
    first = _outcome(body, ranges, SIZE, whole)
    assert _outcome(body, ranges, SIZE, lambda b: cut_at(b, cuts)) == first
    if len(body) <= 1500:
        assert _outcome(body, ranges, SIZE, bytewise) == first
    if isinstance(first, list):
        assert [len(d) for d in first] == [r.length for r in ranges]
