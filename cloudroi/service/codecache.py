"""Compiled code for the methods ``@dataclass`` generates, shipped in the Lambda zip.

``@dataclass`` writes each class's ``__init__``, ``__repr__``, ``__eq__`` (and, frozen,
``__setattr__``, ``__delattr__``, ``__hash__``) as source text and compiles it when the class is
created. A cold start of the function creates some 100 such classes (cloudroi's, pyproj's): about
500 compilations, with their parsing about 15% of the instructions of a first ``/info`` (callgrind:
1.31 G instructions before, 1.11 G with the table). The text is the same at every start.

``deploy/aws-sam/build_zip.py`` therefore runs the function's preparation (the SnapStart
``prepare``: every module of every endpoint) once under ``record`` and ships the compiled code
objects, keyed by their text and compiler flags, as ``cloudroi/_codecache.marshal``. When
``cloudroi.serverless`` is imported, ``install`` gives dataclasses an ``exec`` that takes the
code from the table and compiles only a text that is not in it. A code object is what ``compile``
makes of the same text with the same flags, so a class is built the same either way. A table from
another Python version (another magic number) is not used. The table exists only in a built
package: in the source tree and the container image nothing changes.

(attrs, which aiohttp uses, generates code too, but its ``__hash__`` text holds a hash of a string,
which differs from process to process: it is left alone.)
"""

from __future__ import annotations
import __future__

import builtins
import marshal
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import CodeType, ModuleType
from typing import Any

__all__ = ["TABLE_NAME", "install", "installed", "record", "table_path", "uninstall", "write"]

#: The table's file in the package, beside cloudroi's modules (``cloudroi/_codecache.marshal``).
TABLE_NAME = "_codecache.marshal"
#: The compiler flags a ``from __future__`` import sets: what ``compile`` inherits from its caller.
_FUTURE_FLAGS = 0
for _name in __future__.all_feature_names:
    _FUTURE_FLAGS |= getattr(__future__, _name).compiler_flag
# nested_scopes' flag is CO_NESTED, which marks a nested function, not a future import: exec
# does not pass it on
_FUTURE_FLAGS &= ~__future__.nested_scopes.compiler_flag

#: Key: (source text, file name, mode, future flags).
Key = tuple[str, str, str, int]

_hooked: list[tuple[ModuleType, str]] = []


def table_path() -> str:
    """Where a built package has its table."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(package, TABLE_NAME)


def _magic() -> bytes:
    from importlib.util import MAGIC_NUMBER

    return MAGIC_NUMBER


def _shadow(lookup: Any) -> None:
    """Give dataclasses an ``exec`` that compiles through ``lookup``."""
    import dataclasses

    uninstall()

    def exec_(source: Any, *args: Any, **kwargs: Any) -> None:
        caller = sys._getframe(1)
        if isinstance(source, str):
            # the future flags of dataclasses' code: what exec would have compiled with
            source = lookup((source, "<string>", "exec", caller.f_code.co_flags & _FUTURE_FLAGS))
        # exec's defaults are its caller's namespaces (not this function's)
        globals_ = args[0] if args else kwargs.pop("globals", None)
        locals_ = args[1] if len(args) > 1 else kwargs.pop("locals", None)
        if globals_ is None:
            globals_ = caller.f_globals
            if locals_ is None:
                locals_ = caller.f_locals
        builtins.exec(source, globals_, locals_, *args[2:], **kwargs)

    dataclasses.exec = exec_  # type: ignore[attr-defined]
    _hooked.append((dataclasses, "exec"))


def _compile(key: Key) -> CodeType:
    text, filename, mode, flags = key
    code: CodeType = builtins.compile(text, filename, mode, flags, dont_inherit=True)
    return code


def uninstall() -> None:
    """Back to the builtins."""
    while _hooked:
        module, name = _hooked.pop()
        module.__dict__.pop(name, None)


def installed() -> bool:
    return bool(_hooked)


@contextmanager
def record() -> Iterator[dict[Key, CodeType]]:
    """Within: every text dataclasses compiles is compiled here and kept."""
    table: dict[Key, CodeType] = {}

    def lookup(key: Key) -> CodeType:
        code = table.get(key)
        if code is None:
            code = table[key] = _compile(key)
        return code

    _shadow(lookup)
    try:
        yield table
    finally:
        uninstall()


def write(table: dict[Key, CodeType], path: str) -> int:
    """Write the table (for this Python: its magic number first); returns its size in bytes."""
    data = marshal.dumps((_magic(), table))
    with open(path, "wb") as f:
        f.write(data)
    return len(data)


def install(path: str | None = None) -> int:
    """Use the table at ``path`` (default: the package's); the number of texts it holds. 0, and
    nothing changes, when there is none, it is empty or from another Python, or a table or a
    recording is already in use."""
    if _hooked:
        return 0
    where = table_path() if path is None else path
    try:
        with open(where, "rb") as f:
            magic, table = marshal.loads(f.read())
    except (OSError, ValueError, EOFError, TypeError):
        return 0
    if magic != _magic() or not isinstance(table, dict) or not table:
        return 0

    def lookup(key: Key) -> CodeType:
        code = table.get(key)
        return _compile(key) if code is None else code

    _shadow(lookup)
    return len(table)
