"""Compiled regular expressions for a Lambda cold start, shipped in the zip.

Modules compile their regular expressions while they are imported: email's and http's header
grammars, aiohttp's, yarl's, logging's, platform's, cloudroi's own. A cold ``/info`` compiles
about 140 patterns, the same at every start. ``re`` parses each one and writes its matcher's
program in Python (``re._parser``, ``re._compiler``), then hands the program to the C engine
(``_sre.compile``). Timed in the process, that Python work is 25-29 ms of a cold ``/info``.

``deploy/aws-sam/build_zip.py`` runs the function's preparation once under ``record`` (with the
code table of ``cloudroi.service.codecache``) and keeps what ``re`` handed to ``_sre.compile``
for each pattern: the pattern, its flags, the program, its groups. They ship as
``cloudroi/_patterncache.marshal``. When ``cloudroi.serverless`` is imported, ``install`` puts a
``compile`` in ``re._compiler`` that gives a recorded pattern to ``_sre.compile`` with those
arguments. The program is the one the parser writes, so the Pattern is equal to the parser's
(``==`` compares pattern, flags and program) and matches alike.

Everything else goes to the parser as before:
- a pattern not in the table;
- one whose parsing warned when recorded, so that the warning comes again;
- one with ``re.DEBUG``, which prints its program;
- a subclass of str or bytes.

The table is trusted as the byte code beside it is: ``_sre`` rejects many a wrong program (that
pattern is then parsed) but not all, and a damaged one can crash the interpreter, as damaged
byte code can. So the table carries a CRC-32 of its entries, and a damaged table is not used,
nor one of another Python (its byte-code magic, ``_sre.MAGIC``, ``_sre.CODESIZE``). The table
exists only in a built package.
"""

from __future__ import annotations

import importlib
import marshal
import os
import re
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_sre: Any = importlib.import_module("_sre")  # (no type stubs for re's engine and compiler)
_compiler: Any = importlib.import_module("re._compiler")

__all__ = ["TABLE_NAME", "install", "installed", "record", "table_path", "uninstall", "write"]

#: The table's file in the package, beside cloudroi's modules.
TABLE_NAME = "_patterncache.marshal"

#: (pattern, flags) -> the arguments ``re`` gave ``_sre.compile`` for it.
Key = tuple[str | bytes, int]
Table = dict[Key, tuple[Any, ...]]

_PARSE: Callable[..., Any] = _compiler.compile  # the parser's compile, whatever is installed
_DEBUG = int(re.DEBUG)
_shim: list[Callable[..., Any]] = []


def table_path() -> str:
    """Where a built package has its table."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(package, TABLE_NAME)


def _magic() -> tuple[bytes, int, int]:
    from importlib.util import MAGIC_NUMBER

    return MAGIC_NUMBER, _sre.MAGIC, _sre.CODESIZE


def _kept(pattern: Any, flags: Any) -> bool:
    """A pattern the table can hold: a str or bytes (not a subclass: marshal refuses them, and
    a subclass may compare unlike its value), plain int flags, not DEBUG."""
    return type(pattern) in (str, bytes) and type(flags) is int and not flags & _DEBUG


def _use(compile_: Callable[..., Any]) -> None:
    uninstall()
    _compiler.compile = compile_
    _shim.append(compile_)


def uninstall() -> None:
    """Back to the parser."""
    while _shim:
        if _compiler.compile is _shim.pop():
            _compiler.compile = _PARSE


def installed() -> bool:
    return bool(_shim)


@contextmanager
def record() -> Iterator[Table]:
    """Within: the arguments of every pattern compiled (and kept, see ``_kept``) are kept."""
    import threading
    import warnings

    table: Table = {}
    seen = threading.local()

    class Engine:
        """Stands for ``_sre`` in ``re._compiler``: its ``compile`` keeps its arguments."""

        def __getattr__(self, name: str) -> Any:
            return getattr(_sre, name)

        def compile(self, *args: Any) -> Any:
            seen.args = args
            return _sre.compile(*args)

    def compile_(pattern: Any, flags: int = 0) -> Any:
        if not _kept(pattern, flags):
            return _PARSE(pattern, flags)
        seen.args = None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            compiled = _PARSE(pattern, flags)
        if caught:  # not kept: parsed again, for its warnings to go where they would
            return _PARSE(pattern, flags)
        args = seen.args
        if args is not None and args[0] is pattern:
            # the program's opcodes are int subclasses (named constants), which marshal refuses
            table[(pattern, flags)] = (*args[:2], [int(op) for op in args[2]], *args[3:])
        return compiled

    _use(compile_)
    _compiler._sre = Engine()
    try:
        yield table
    finally:
        _compiler._sre = _sre
        uninstall()


def write(table: Table, path: str) -> int:
    """Write the table (this Python's magic first), leaving out an entry marshal cannot write;
    returns the number of patterns written."""
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


def install(path: str | None = None) -> int:
    """Use the table at ``path`` (default: the package's); the number of patterns it holds. 0,
    and nothing changes, when there is none, it is empty, damaged or from another Python, or
    one is in use already."""
    if installed():
        return 0
    try:
        with open(table_path() if path is None else path, "rb") as f:
            magic, crc, entries = marshal.loads(f.read())
        if magic != _magic() or type(entries) is not bytes or zlib.crc32(entries) != crc:
            return 0
        table = marshal.loads(entries)
    except (OSError, ValueError, EOFError, TypeError):
        return 0
    if type(table) is not dict or not table:
        return 0

    def compile_(pattern: Any, flags: int = 0) -> Any:
        if _kept(pattern, flags):
            args = table.get((pattern, flags))
            if type(args) is tuple and args[:1] == (pattern,):
                try:
                    return _sre.compile(pattern, *args[1:])
                except Exception:
                    pass
        return _PARSE(pattern, flags)

    _use(compile_)
    return len(table)
