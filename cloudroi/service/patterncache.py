"""Compiled regular expressions for a Lambda cold start, shipped in the zip.

Modules compile their regular expressions while they are imported: email's and http's header
grammars, aiohttp's, yarl's, logging's, platform's, cloudroi's own. A cold ``/info`` compiles
about 140 patterns, the same at every start. ``re`` parses each one and writes its matcher's
program in Python (``re._parser``, ``re._compiler``), then hands the program to the C engine
(``_sre.compile``). Timed in the process, that Python work is 25-29 ms of a cold ``/info``.

``deploy/aws-sam/build_zip.py`` runs the function's preparation once under ``record`` (with the
code table of ``cloudroi.service.codecache``) and keeps what ``re`` handed to ``_sre.compile``
for each pattern: the pattern, its flags, the program, its groups. They ship as
``cloudroi/_patterncache.marshal``. When ``cloudroi.serverless`` is imported, ``install`` gives
each to ``_sre.compile`` and puts the compiled patterns in ``re``'s own cache, under the key
``re.compile`` looks up first. The program is the one the parser writes, so a pattern is equal
to the parser's (``==`` compares pattern, flags and program) and matches alike; nothing else in
``re`` changes, and everything not in the cache (a pattern not recorded, one evicted, one whose
parsing warned when recorded so that the warning comes again, ``re.DEBUG``, ``re.TEMPLATE``
whose warning re gives before parsing) is parsed as before.

The program comes from ``re``'s Python sources and the Unicode database (case folding), and a
patch release can change the sources (a fixed bug in the program a character set gets, say).
So the table names what wrote it: the byte-code magic, ``_sre.MAGIC`` and ``CODESIZE``, the
Unicode database's version and a CRC-32 of ``re``'s parser, compiler, constants and case-fold
sources, and a process whose own differ does not use it (it parses, as without a table). The
build records with the Python that compiles the package's byte code: for the table to be used
on Lambda, that must be a release whose ``re`` is the runtime's.

The table is trusted as the byte code beside it is: ``_sre`` rejects many a wrong program (that
pattern is then left out) but not all, and a damaged one can crash the interpreter, as damaged
byte code can. So the table also carries a CRC-32 of its entries, and a damaged table is not
used. The table exists only in a built package.
"""

from __future__ import annotations

import importlib
import marshal
import os
import re
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_sre: Any = importlib.import_module("_sre")  # (no type stubs for re's engine and compiler)
_compiler: Any = importlib.import_module("re._compiler")

__all__ = ["TABLE_NAME", "install", "installed", "record", "table_path", "uninstall", "write"]

#: The table's file in the package, beside cloudroi's modules.
TABLE_NAME = "_patterncache.marshal"

#: (bytes or not, pattern, flags) -> the arguments ``re`` gave ``_sre.compile`` for it. (The
#: type first: a str and a bytes of the same text hash alike, and comparing them warns under
#: ``python -b``.)
Key = tuple[bool, str | bytes, int]
Table = dict[Key, tuple[Any, ...]]

#: Flags re does not cache (DEBUG), or warns about before compiling (TEMPLATE, 3.11-3.12).
_UNKEPT = int(re.DEBUG) | 1
#: What ``install`` put in re's cache: (re's key, the pattern).
_cached: list[tuple[tuple[type, str | bytes, int], re.Pattern[Any]]] = []


def table_path() -> str:
    """Where a built package has its table."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(package, TABLE_NAME)


def _magic() -> tuple[bytes, int, int, str, str, int]:
    """What the programs depend on: this Python's byte-code magic, the engine's program format
    and byte order (character sets are packed in native order), the Unicode database, and re's
    sources (OSError without them)."""
    import sys
    import unicodedata
    from importlib.util import MAGIC_NUMBER

    crc = 0
    for name in ("_parser", "_compiler", "_constants", "_casefix"):
        source = getattr(importlib.import_module(f"re.{name}"), "__file__", None) or ""
        with open(source, "rb") as f:
            crc = zlib.crc32(f.read(), crc)
    versions = (_sre.MAGIC, _sre.CODESIZE, sys.byteorder, unicodedata.unidata_version)
    return MAGIC_NUMBER, *versions, crc


def _kept(pattern: Any, flags: Any) -> bool:
    """A pattern the table can hold: a str or bytes (not a subclass: marshal refuses them, and
    re's cache would not find them), plain int flags, not DEBUG (re does not cache those) nor
    TEMPLATE (whose warning re gives only when the pattern is not cached)."""
    return type(pattern) in (str, bytes) and type(flags) is int and not flags & _UNKEPT


@contextmanager
def record() -> Iterator[Table]:
    """Within: the arguments of every pattern compiled (and kept, see ``_kept``) are kept, but
    for those whose parsing warns. Starts from an empty ``re`` cache (a cached pattern is not
    compiled again); warnings still go where they would. Not while a table is in use."""
    import threading
    import warnings

    if installed():
        raise RuntimeError("a pattern table is in use")
    table: Table = {}
    seen = threading.local()
    parse, warn = _compiler.compile, warnings.warn

    class Engine:
        """Stands for ``_sre`` in ``re._compiler``: its ``compile`` keeps its arguments."""

        def __getattr__(self, name: str) -> Any:
            return getattr(_sre, name)

        def compile(self, *args: Any) -> Any:
            seen.args = args
            return _sre.compile(*args)

    def warns(
        message: Any, category: Any = None, stacklevel: int = 1, source: Any = None, **kw: Any
    ) -> None:
        parsing = getattr(seen, "parsing", False)
        seen.warned = True  # (this thread's pattern, if it is parsing one)
        # a frame higher for this function, and one more for compile_ below when parsing
        warn(message, category, stacklevel + 1 + parsing, source, **kw)

    def compile_(pattern: Any, flags: int = 0) -> Any:
        # (saved and put back: a finalizer run during the parse may compile a pattern too)
        outer = vars(seen).copy()
        seen.args, seen.warned, seen.parsing = None, False, True
        try:
            compiled = parse(pattern, flags)
            args, warned = seen.args, seen.warned
        finally:
            vars(seen).clear()
            vars(seen).update(outer)
        if _kept(pattern, flags) and args is not None and args[0] is pattern and not warned:
            # the program's opcodes are int subclasses (named constants), which marshal refuses
            table[(type(pattern) is bytes, pattern, flags)] = (
                *args[:2],
                [int(op) for op in args[2]],
                *args[3:],
            )
        return compiled

    re.purge()
    _compiler.compile, _compiler._sre, warnings.warn = compile_, Engine(), warns
    try:
        yield table
    finally:
        if warnings.warn is warns:
            warnings.warn = warn
        if _compiler.compile is compile_:
            _compiler.compile = parse
        _compiler._sre = _sre


def write(table: Table, path: str) -> int:
    """Write the table (what the programs depend on first), leaving out an entry marshal cannot
    write; returns the number of patterns written."""
    kept = {}
    for key, args in table.items():
        try:
            marshal.dumps(args)
        except ValueError:
            continue
        kept[key] = args
    entries = marshal.dumps(kept)
    with open(path, "wb") as f:
        f.write(marshal.dumps((_magic(), zlib.crc32(entries), entries)))
    return len(kept)


def _load(path: str) -> Table | None:
    """The table at ``path``; None when there is none, or it is damaged or another re's."""
    try:
        with open(path, "rb") as f:
            magic, crc, entries = marshal.loads(f.read())
        if type(entries) is not bytes or zlib.crc32(entries) != crc or magic != _magic():
            return None
        table = marshal.loads(entries)
    except Exception:  # unreadable, or re's sources or Unicode data not found: no table
        return None
    return table if type(table) is dict else None


def _compiled(key: Any, args: Any) -> tuple[tuple[type, str | bytes, int], Any] | None:
    """re's cache key and the compiled pattern of one entry; None for an entry that is not
    one (another shape, a program _sre refuses)."""
    if type(key) is not tuple or len(key) != 3 or type(args) is not tuple or not args:
        return None
    is_bytes, pattern, flags = key
    if type(pattern) is not (bytes if is_bytes else str) or not _kept(pattern, flags):
        return None
    if type(args[0]) is not type(pattern) or args[0] != pattern:
        return None
    try:
        return (type(pattern), pattern, flags), _sre.compile(pattern, *args[1:])
    except Exception:  # not a program _sre takes: left to the parser
        return None


def install(path: str | None = None) -> int:
    """Put the table's patterns (at ``path``, default: the package's) in ``re``'s cache, as
    many as it has room for; the number put. 0, and nothing changes, when there is none, it is
    damaged or from another Python, ``re`` keeps no such cache, or one is in use already."""
    cache = getattr(re, "_cache", None)
    if installed() or type(cache) is not dict:
        return 0
    _cached.clear()  # (what re.purge or eviction took out already)
    table = _load(table_path() if path is None else path)
    room = int(getattr(re, "_MAXCACHE", 512)) - len(cache)
    for key, args in (table or {}).items():
        if len(_cached) >= room:
            break
        entry = _compiled(key, args)
        if entry is not None and entry[0] not in cache:
            cache[entry[0]] = entry[1]
            _cached.append(entry)
    return len(_cached)


def uninstall() -> None:
    """Take out of re's caches what ``install`` put there (what is still there)."""
    for name in ("_cache", "_cache2"):
        cache = getattr(re, name, None)
        if type(cache) is dict:
            for key, compiled in _cached:
                if cache.get(key) is compiled:
                    del cache[key]
    _cached.clear()


def installed() -> bool:
    """Whether patterns ``install`` put in re's cache are still there."""
    cache = getattr(re, "_cache", None)
    return type(cache) is dict and any(cache.get(key) is p for key, p in _cached)
