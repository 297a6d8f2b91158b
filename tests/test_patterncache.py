"""The pattern table of a Lambda zip (cloudroi.service.patterncache): recorded patterns come back
equal to what re's parser makes (same program), without parsing; everything it cannot hold is
parsed as before; a damaged or foreign table is not used. The built package's use of it is
checked in test_deploy.py (benchmarks.lambda_cold.PACKAGE_CHECK)."""

from __future__ import annotations

import marshal
import re
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloudroi.service import patterncache

#: (pattern, flags, a text to search): the features re's compiler writes programs for.
CASES: list[tuple[str | bytes, int, str | bytes]] = [
    (r"(?P<key>[A-Za-z_][\w.-]*)=(?P<value>\"[^\"]*\"|[^;,\s]*)", 0, 'a=1; b.c="x y", d-e=z'),
    (r"^\s*(\d{1,3})(?:\.(\d{1,3})){3}\s*$", re.M, " 10.0.0.1\nx\n192.168.1.254 "),
    (r"colou?r|grey|gray", re.I, "Colour GREY gray COLOR"),
    (r"(?<=\$)\d+(?:\.\d\d)?(?!\d)", 0, "$12.50 and $7 and 3.20"),
    (r"(a)?(?(1)b|c)+", 0, "abbb cc ac"),
    (r"(\w+)\s+\1", 0, "the the cat sat sat"),
    (r"[^\W\d_]+", re.UNICODE, "héllo wörld 42 ünïcode_x"),
    (r"[a-z]+", re.I | re.A, "ÀBC abc Straße"),
    (
        r"""
        (?P<y>\d{4}) - (?P<m>\d\d)   # date
        (?: T (?P<h>\d\d) )?         # time
        """,
        re.X,
        "2026-12 and 2025-01T09",
    ),
    (r"a{2,}?b*+c?+", 0, "aaabbbc aab ac"),
    (r"(?>x+)y|.\Z", re.S, "xxxy\nend\n"),
    (r"\bfoo\B|\Afoo", 0, "foo foobar barfoo"),
    (r"[\u0400-\u04ff]+|\N{GREEK SMALL LETTER ALPHA}", 0, "Привет \u03b1 beta"),
    (rb"(?P<tag>[A-Z]{4})\x00+(?P<n>[\x01-\xff])", 0, b"IHDR\x00\x00\x05 IEND\x00\x01"),
    (rb"[a-z]+", re.L | re.I, b"Hello WORLD"),
    (r"", 0, "abc"),
    (r"x" * 300 + r"|y{65535}", 0, "x" * 301),
]


def _compile(pattern: str | bytes, flags: int) -> re.Pattern[Any]:
    """re.compile without its cache (each call reaches re._compiler.compile)."""
    re.purge()
    return re.compile(pattern, flags)


@pytest.fixture
def parses() -> Iterator[list[Any]]:
    """The patterns re's parser reads while the test runs."""
    seen: list[Any] = []
    real = re._parser.parse  # type: ignore[attr-defined]

    def spy(pattern: Any, *args: Any) -> Any:
        seen.append(pattern)
        return real(pattern, *args)

    re._parser.parse = spy  # type: ignore[attr-defined]
    try:
        yield seen
    finally:
        re._parser.parse = real  # type: ignore[attr-defined]
        patterncache.uninstall()
        re.purge()


def _behaviour(compiled: re.Pattern[Any], text: str | bytes) -> list[Any]:
    return [
        compiled.pattern,
        compiled.flags,
        compiled.groups,
        dict(compiled.groupindex),
        [m.span() for m in compiled.finditer(text)],
        [m.groupdict() for m in compiled.finditer(text)],
        compiled.split(text),
    ]


def test_recorded_patterns_come_back_equal_without_parsing(
    tmp_path: Path, parses: list[Any]
) -> None:
    """Each pattern, recorded once, is served from the table: equal to the parser's (``==``
    compares the program), the same groups and the same matches, and the parser not called."""
    want = [_compile(p, f) for p, f, _ in CASES]
    with patterncache.record() as table:
        recorded = [_compile(p, f) for p, f, _ in CASES]
    assert recorded == want
    assert set(table) == {(p, int(f)) for p, f, _ in CASES}
    path = tmp_path / "patterns.marshal"
    assert patterncache.write(table, str(path)) == len(CASES)

    parses.clear()
    assert patterncache.install(str(path)) == len(CASES)
    assert patterncache.installed()
    served = [_compile(p, f) for p, f, _ in CASES]
    assert parses == []  # nothing parsed
    for got, expected, (pattern, _, text) in zip(served, want, CASES, strict=True):
        assert got == expected, pattern
        assert _behaviour(got, text) == _behaviour(expected, text)
    assert patterncache.install(str(path)) == 0  # one at a time
    patterncache.uninstall()
    assert not patterncache.installed()
    _compile("colou?r|grey|gray", re.I)
    assert parses == ["colou?r|grey|gray"]  # the parser again


class _Text(str):
    """A str subclass: marshal refuses it, and it may compare unlike its value."""


def test_what_the_table_cannot_hold_is_parsed_as_before(tmp_path: Path, parses: list[Any]) -> None:
    """A pattern whose parsing warns (the warning must come again), a DEBUG pattern (it prints
    its program) and a str subclass are not recorded; with a table in use they are parsed, warn
    and print as without it. A pattern the table lacks is parsed; a str and a bytes pattern of
    the same text are told apart."""
    nested = "[[a]"  # FutureWarning: possible nested set
    with patterncache.record() as table:
        with pytest.warns(FutureWarning):
            _compile(nested, 0)
        _compile("ab+", 0)
        _compile(b"ab+", 0)
        _compile(_Text("cd+"), 0)
    assert set(table) == {("ab+", 0), (b"ab+", 0)}
    with patterncache.record() as debug_table:
        _compile("q+", re.DEBUG)
    assert debug_table == {}
    path = tmp_path / "patterns.marshal"
    patterncache.write(table, str(path))
    assert patterncache.install(str(path)) == 2

    parses.clear()
    with pytest.warns(FutureWarning):
        _compile(nested, 0)
    assert _compile(b"ab+", 0).pattern == b"ab+"
    assert _compile("ab+", 0).pattern == "ab+"
    assert parses == [nested]
    assert _compile(_Text("ab+"), 0).match("abbb")
    assert _compile("zz", 0).fullmatch("zz")
    assert parses == [nested, "ab+", "zz"]


def test_damaged_foreign_and_wrong_tables_are_not_used(tmp_path: Path, parses: list[Any]) -> None:
    """A table of another Python, a damaged one (its CRC), an empty or absent one is not used;
    an entry whose program _sre rejects, or that does not match its key, is parsed instead."""
    with patterncache.record() as table:
        want = _compile(r"(\d+)-(\d+)", 0)
    good = tmp_path / "good.marshal"
    patterncache.write(table, str(good))
    data = good.read_bytes()
    (tmp_path / "flipped.marshal").write_bytes(data[:-7] + bytes([data[-7] ^ 0x10]) + data[-6:])
    (tmp_path / "short.marshal").write_bytes(data[:-3])
    (tmp_path / "garbage.marshal").write_bytes(b"\x00not marshal")
    entries = marshal.dumps(table)
    magic = patterncache._magic()
    other = (magic[0], magic[1] - 1, magic[2])
    (tmp_path / "foreign.marshal").write_bytes(marshal.dumps((other, zlib.crc32(entries), entries)))
    (tmp_path / "old-layout.marshal").write_bytes(marshal.dumps((magic, table)))
    # a program changed, the table still readable: only its CRC tells
    ((pattern, flags), args), *_ = table.items()
    changed = (*args[:2], [*args[2][:-2], args[2][-2] ^ 1, args[2][-1]], *args[3:])
    damaged = marshal.dumps({(pattern, flags): changed})
    (tmp_path / "changed.marshal").write_bytes(marshal.dumps((magic, zlib.crc32(entries), damaged)))
    patterncache.write({}, str(tmp_path / "empty.marshal"))
    names = ("flipped", "short", "garbage", "foreign", "old-layout", "changed", "empty", "absent")
    for name in names:
        assert patterncache.install(str(tmp_path / f"{name}.marshal")) == 0, name
        assert not patterncache.installed()

    key = (r"(\d+)-(\d+)", 0)
    wrong = {
        key: (key[0], 0, [1, 2, 3], 2, {}, (None, None, None)),  # not a program: _sre says so
        ("x|y", 0): ("other", 0, *table[key][2:]),  # another pattern's entry
        ("u+", 0): "not the arguments",
    }
    path = tmp_path / "wrong.marshal"
    patterncache.write(wrong, str(path))
    assert patterncache.install(str(path)) == 3
    parses.clear()
    assert _compile(*key) == want
    assert _compile("x|y", 0).pattern == "x|y"
    assert _compile("u+", 0).fullmatch("uuu")
    assert parses == [key[0], "x|y", "u+"]


def test_the_source_tree_ships_no_table() -> None:
    assert not Path(patterncache.table_path()).exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert patterncache.install() == 0
