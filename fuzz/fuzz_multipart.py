"""Coverage-guided fuzzing of cloudroi's multipart/byteranges parser with atheris (libFuzzer).

Each input names the ranges asked of a fixed 64 KiB object and a chunking, then carries the body
of the answer (see ``decode``). The body is fed to ``ByterangesParser`` whole and in the chunking,
as the property tests in tests/test_multipart.py do. A finding is any exception other than
``NotByteranges`` and ``ObjectChangedError`` (and ``TransientError`` from ``result``), the
parser holding more than the parts it accepted and one line, or taking more than ``max_input``
bytes, two chunkings giving different outcomes, a result of the wrong lengths, or a written
answer not parsed back exactly. See fuzz/README.md for how to run it.
"""

from __future__ import annotations

import random
import struct
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["cloudroi"]):
    from cloudroi.errors import ObjectChangedError, TransientError
    from cloudroi.source.multipart import (
        MAX_LINE,
        ByterangesParser,
        NotByteranges,
        multipart_byteranges,
    )
    from cloudroi.types import ByteRange

#: The object the ranges are asked of (a pattern, so misplaced bytes show).
OBJECT = bytes((i * 7 + i // 251) % 256 for i in range(1 << 16))
BOUNDARY = "cloudroi-fuzz"


def decode(data: bytes) -> tuple[list[ByteRange], int, bytes]:
    """An input as (ranges asked, chunking seed, body): byte 0 gives the number of ranges
    (1..8), then per range a big-endian u16 gap after the previous range and a u16 length - 1
    (ranges past the object are dropped), then one byte of chunking seed, then the body."""
    if not data:
        return [ByteRange(0, 1)], 0, b""
    n = 1 + data[0] % 8
    head = data[1 : 1 + 4 * n]
    ranges: list[ByteRange] = []
    end = 0
    for i in range(len(head) // 4):
        gap, length = struct.unpack_from(">HH", head, 4 * i)
        start = end + gap
        if start + length + 1 > len(OBJECT):
            break
        ranges.append(ByteRange(start, start + length + 1))
        end = start + length + 1
    rest = data[1 + len(head) :]
    seed = rest[0] if rest else 0
    return ranges or [ByteRange(0, 1)], seed, rest[1:]


def encode(ranges: Sequence[ByteRange], seed: int, body: bytes) -> bytes:
    """The input ``decode`` reads back as these ranges (consecutive, at most 8), seed, body."""
    out = bytearray([len(ranges) - 1])
    end = 0
    for r in ranges:
        out += struct.pack(">HH", r.start - end, r.length - 1)
        end = r.end
    return bytes(out) + bytes([seed]) + body


def chunked(body: bytes, seed: int) -> Iterator[bytes]:
    """``body`` in pieces of 1 to 300 bytes, picked by ``seed`` (0: whole)."""
    if seed == 0:
        yield body
        return
    rng = random.Random(seed)
    at = 0
    while at < len(body):
        n = rng.choice((1, 1, 2, 3, 7, 64, 300))
        yield body[at : at + n]
        at += n


def outcome(ranges: Sequence[ByteRange], body: bytes, seed: int) -> object:
    """The ranges parsed out of ``body`` fed in ``seed``'s chunking, or the typed error's type
    and message; the bounds checked after every feed."""
    parser = ByterangesParser(BOUNDARY.encode(), ranges, len(OBJECT))
    try:
        for chunk in chunked(body, seed):
            try:
                parser.feed(chunk)
            finally:
                assert parser.held <= parser.budget - parser.budget_left + MAX_LINE, parser.held
                assert parser.consumed <= parser.max_input, (parser.consumed, parser.max_input)
            if parser.done:
                break
        got = parser.result()
    except (NotByteranges, ObjectChangedError, TransientError) as exc:
        assert parser.held == 0
        return type(exc), str(exc)
    assert [len(d) for d in got] == [r.length for r in ranges]
    return got


def test_one_input(data: bytes) -> None:
    ranges, seed, body = decode(data)
    first = outcome(ranges, body, 0)
    again = outcome(ranges, body, seed)
    assert again == first, (first, again)
    incl = [(r.start, r.end - 1) for r in ranges]
    if body == multipart_byteranges(OBJECT, incl, BOUNDARY):
        assert first == [OBJECT[r.start : r.end] for r in ranges]


def _framed(parts: Sequence[tuple[int, int]], closing: bool = True) -> bytes:
    out = b""
    for first, last in parts:
        out += (
            f"--{BOUNDARY}\r\ncontent-range: bytes {first}-{last}/{len(OBJECT)}\r\n\r\n".encode()
            + OBJECT[first : last + 1]
            + b"\r\n"
        )
    return out + (f"--{BOUNDARY}--\r\n".encode() if closing else b"")


def write_seeds(directory: Path) -> None:
    """Answers as servers write them (and as the parser refuses them) as the starting corpus."""
    directory.mkdir(parents=True, exist_ok=True)
    sets = {
        "two": [ByteRange(0, 100), ByteRange(300, 700)],
        "three": [ByteRange(10, 100), ByteRange(1000, 1500), ByteRange(4000, 4096)],
        "eight": [ByteRange(i * 2000, i * 2000 + 100 + i) for i in range(8)],
    }
    for name, ranges in sets.items():
        incl = [(r.start, r.end - 1) for r in ranges]
        answers = {
            "written": multipart_byteranges(OBJECT, incl, BOUNDARY),
            "reordered": b"preamble\r\n\r\n" + _framed(list(reversed(incl))),
            "merged": _framed([(incl[0][0], incl[-1][1])]),
            "unclosed": _framed(incl, closing=False),
            "missing": _framed(incl[:-1]),
            "other-size": _framed(incl).replace(b"/65536", b"/65537"),
        }
        for kind, body in answers.items():
            for seed in (0, 1, 2):
                data = encode(ranges, seed, body)
                (directory / f"{name}-{kind}-{seed}.bin").write_bytes(data)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--write-seeds":
        write_seeds(Path(sys.argv[2]))
        return
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
