"""The pattern table of a Lambda zip (cloudroi.service.patterncache): recorded patterns come back
equal to what re's parser makes (same program), without parsing; everything it cannot hold is
parsed as before; a damaged or foreign table is not used. The built package's use of it is
checked in test_deploy.py (benchmarks.lambda_cold.PACKAGE_CHECK)."""

from __future__ import annotations

import contextlib
import io
import marshal
import re
import subprocess
import sys
import threading
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
    (r"(?i)straße|(?a:\w+)", 0, "STRASSE Straße ab_c"),  # inline flags: the recorded flags differ
    (r"(?x) (?P<a> x ) \s* # comment", 0, "x  x"),
    (r"(?ms)^a.b$", 0, "a\nb\nc"),
    (r"x" * 300 + r"|y{65535}", 0, "x" * 301),
]


def _parsed(pattern: str | bytes, flags: int) -> re.Pattern[Any]:
    """What re's parser makes of ``pattern`` (re.compile without its cache)."""
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


def _recorded(tmp_path: Path, cases: list[tuple[str | bytes, int]]) -> tuple[Path, int]:
    with patterncache.record() as table:
        for pattern, flags in cases:
            re.compile(pattern, flags)
    path = tmp_path / "patterns.marshal"
    return path, patterncache.write(table, str(path))


def test_recorded_patterns_come_back_equal_without_parsing(
    tmp_path: Path, parses: list[Any]
) -> None:
    """Each pattern, recorded once, is served from the table: equal to the parser's (``==``
    compares the program), the same groups and the same matches, and the parser not called."""
    want = [_parsed(p, f) for p, f, _ in CASES]
    with patterncache.record() as table:
        recorded = [re.compile(p, f) for p, f, _ in CASES]
    assert recorded == want
    assert set(table) == {(type(p) is bytes, p, int(f)) for p, f, _ in CASES}
    path = tmp_path / "patterns.marshal"
    assert patterncache.write(table, str(path)) == len(CASES)

    re.purge()
    parses.clear()
    assert patterncache.install(str(path)) == len(CASES)
    assert patterncache.installed()
    served = [re.compile(p, f) for p, f, _ in CASES]
    assert [re.match(p, t, f) is not None for p, f, t in CASES]  # (re.match: the same cache)
    assert parses == []  # nothing parsed
    for got, expected, (pattern, _, text) in zip(served, want, CASES, strict=True):
        assert got == expected, pattern
        assert _behaviour(got, text) == _behaviour(expected, text)
    assert patterncache.install(str(path)) == 0  # one at a time
    with pytest.raises(RuntimeError), patterncache.record():
        pass
    re.purge()  # taken out of re's cache: no longer in use, and it can be put back
    assert not patterncache.installed()
    assert patterncache.install(str(path)) == len(CASES)
    patterncache.uninstall()
    assert not patterncache.installed()
    re.compile("colou?r|grey|gray", re.I)
    assert parses == ["colou?r|grey|gray"]  # the parser again


class _Text(str):
    """A str subclass: marshal refuses it, and re's cache keys on the type."""


def test_what_the_table_cannot_hold_is_parsed_as_before(tmp_path: Path, parses: list[Any]) -> None:
    """A pattern whose parsing warns (the warning must come again), a DEBUG pattern (it prints
    its program) and a str subclass are not recorded; with a table in use they are parsed, warn
    and print as without it. A pattern the table lacks is parsed; a str and a bytes pattern of
    the same text are told apart."""
    nested = "[[a]"  # FutureWarning: possible nested set
    with patterncache.record() as table:
        with pytest.warns(FutureWarning):
            re.compile(nested)
        re.compile("ab+")
        re.compile(b"ab+")
        re.compile(_Text("cd+"))
    assert set(table) == {(False, "ab+", 0), (True, b"ab+", 0)}
    with patterncache.record() as unkept:
        with contextlib.redirect_stdout(io.StringIO()):
            re.compile("q+", re.DEBUG)
        with warnings.catch_warnings():  # TEMPLATE (3.11, 3.12): re warns only when not cached
            warnings.simplefilter("ignore")
            with contextlib.suppress(ValueError):  # (3.13 refuses the flag)
                re.compile("tt", 1)
    assert unkept == {}
    path = tmp_path / "patterns.marshal"
    patterncache.write(table, str(path))
    re.purge()
    assert patterncache.install(str(path)) == 2
    parses.clear()
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        re.compile("q+", re.DEBUG)  # DEBUG prints its program, table or not
    assert "MAX_REPEAT 1 MAXREPEAT" in printed.getvalue()
    with pytest.warns(FutureWarning):
        re.compile(nested)
    assert re.compile(b"ab+").pattern == b"ab+"
    assert re.compile("ab+").pattern == "ab+"
    assert parses == ["q+", nested]
    assert re.compile(_Text("ab+")).match("abbb")
    assert re.compile("zz").fullmatch("zz")
    assert parses == ["q+", nested, "ab+", "zz"]


def test_damaged_foreign_and_wrong_tables_are_not_used(tmp_path: Path, parses: list[Any]) -> None:
    """A table of another Python or another re, a damaged one (its CRC), an empty or absent
    one is not used; an entry whose program _sre rejects, or that does not match its key, is
    left out; install fills re's cache only as far as it has room."""
    key = (False, r"(\d+)-(\d+)", 0)
    want = _parsed(*key[1:])
    good, count = _recorded(tmp_path, [key[1:]])
    assert count == 1
    table = patterncache._load(str(good))
    assert table is not None
    data = good.read_bytes()
    (tmp_path / "flipped.marshal").write_bytes(data[:-7] + bytes([data[-7] ^ 0x10]) + data[-6:])
    (tmp_path / "short.marshal").write_bytes(data[:-3])
    (tmp_path / "garbage.marshal").write_bytes(b"\x00not marshal")
    entries = marshal.dumps(table)
    magic = patterncache._magic()
    engine = (magic[0], magic[1] - 1, *magic[2:])  # another program format
    order = (*magic[:3], "big" if magic[3] == "little" else "little", *magic[4:])
    sources = (*magic[:-1], magic[-1] ^ 1)  # re's sources of another release
    for name, other in (("foreign", engine), ("other-order", order), ("other-re", sources)):
        data = marshal.dumps((other, zlib.crc32(entries), entries))
        (tmp_path / f"{name}.marshal").write_bytes(data)
    (tmp_path / "old-layout.marshal").write_bytes(marshal.dumps((magic, table)))
    # a program changed, the table still readable: only its CRC tells
    ((_, args),) = table.items()
    changed = (*args[:2], [*args[2][:-2], args[2][-2] ^ 1, args[2][-1]], *args[3:])
    damaged = marshal.dumps({key: changed})
    (tmp_path / "changed.marshal").write_bytes(marshal.dumps((magic, zlib.crc32(entries), damaged)))
    patterncache.write({}, str(tmp_path / "empty.marshal"))
    names = ("flipped", "short", "garbage", "foreign", "other-order", "other-re", "old-layout")
    names += ("changed",)
    names += ("empty", "absent")
    re.purge()
    assert patterncache.install(str(good)) == 1  # (the good one is used)
    patterncache.uninstall()
    for name in names:
        re.purge()
        assert patterncache.install(str(tmp_path / f"{name}.marshal")) == 0, name
        assert not patterncache.installed()

    wrong = {
        key: (key[1], 0, [1, 2, 3], 2, {}, (None, None, None)),  # not a program: _sre says so
        (False, "x|y", 0): ("other", 0, *args[2:]),  # another pattern's entry
        (True, "u+", 0): ("u+", *args[1:]),  # a str under a bytes key
        (False, "v+", 0): "not the arguments",
        (False, "w+", 0, 1): args,
        (False, "(\\d+)=(\\d+)", 0): (r"(\d+)=(\d+)", *args[1:]),  # a real one
    }
    path = tmp_path / "wrong.marshal"
    patterncache.write(wrong, str(path))
    re.purge()
    assert patterncache.install(str(path)) == 1
    parses.clear()
    assert re.compile(*key[1:]) == want
    assert re.compile("x|y").pattern == "x|y"
    assert re.compile("v+").fullmatch("vvv")
    assert parses == [key[1], "x|y", "v+"]
    patterncache.uninstall()

    re.purge()
    with pytest.MonkeyPatch.context() as mp:  # re's sources not found: not an error, no table
        mp.setattr(patterncache, "_magic", lambda: (_ for _ in ()).throw(AttributeError("x")))
        assert patterncache.install(str(good)) == 0

    re.compile("filler")
    with pytest.MonkeyPatch.context() as mp:  # re's cache has room for one more
        mp.setattr(re, "_MAXCACHE", 2)
        assert patterncache.install(str(path)) == 1
        patterncache.uninstall()
        mp.setattr(re, "_MAXCACHE", 1)
        assert patterncache.install(str(path)) == 0


def test_warnings_name_the_line_that_compiled_the_pattern() -> None:
    """While recording, a pattern's warning names the caller of re.compile, as without."""
    for recording in (False, True):
        re.purge()
        with contextlib.ExitStack() as stack:
            if recording:
                stack.enter_context(patterncache.record())
            with pytest.warns(FutureWarning) as warned:
                re.compile("[[b]")
        assert [w.filename for w in warned] == [__file__], recording


def test_the_source_tree_ships_no_table() -> None:
    assert not Path(patterncache.table_path()).exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert patterncache.install() == 0


def test_recording_in_threads_keeps_every_pattern_and_every_warning() -> None:
    """Threads compiling at once while recording: each pattern that does not warn is recorded,
    none that does; every warning still reaches the caller, and ``warnings.warn`` is the
    standard one again after."""
    real_warn = warnings.warn
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(150):
                re.compile(f"t{n}x{i}(a|b)+")
                re.compile(f"[[t{n}y{i}]")
        except BaseException as exc:
            errors.append(exc)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with patterncache.record() as table:
            threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    assert errors == []
    assert warnings.warn is real_warn
    assert len(table) == 4 * 150
    assert all(key[1].startswith("t") for key in table)
    nested = [w for w in caught if issubclass(w.category, FutureWarning)]
    assert len(nested) == 4 * 150
    assert {w.filename for w in nested} == {__file__}  # where the pattern was compiled


RECORD_BOTH = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("pc", sys.argv[1])
pc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pc)
import re
with pc.record() as table:
    re.compile(b"ab+"), re.compile("ab+")
pc.write(table, sys.argv[2])
re.purge()
assert pc.install(sys.argv[2]) == 2
print(re.compile("ab+").pattern, re.compile(b"ab+").pattern.decode())
"""


def test_a_str_and_a_bytes_of_one_text_are_not_compared(tmp_path: Path) -> None:
    """Under ``python -bb`` comparing a str with a bytes raises: the table's keys keep a str
    pattern and a bytes one of the same text (which hash alike) apart without comparing them."""
    done = subprocess.run(
        [sys.executable, "-bb", "-c", RECORD_BOTH, patterncache.__file__, str(tmp_path / "t")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["ab+", "ab+"]


def test_only_email_set_built_classes_are_excused() -> None:
    """The package check excuses email's character classes built from sets (their order is the
    per-process hash's), in either order, and nothing else."""
    from benchmarks.lambda_cold import unexplained

    email = "email._header_value_parser"
    excused = [[email, "([ \t]+)"], [email, "([\t ]+)"], [email, '[^\\(\\.\\)>",\\]:;\\ \\\t]+']]
    kept = [[email, "[^a]+x[^b]+"], [email, "([ \t]+)x"], ["email.utils", "[^a]+"]]
    assert unexplained(excused + kept) == kept
