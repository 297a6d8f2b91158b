"""Compiled code for the methods and expressions libraries generate, shipped in the Lambda zip.

Some libraries write code as text and compile it while a module is imported: ``@dataclass`` each
class's ``__init__``, ``__repr__``, ``__eq__``... (cloudroi's, pyproj's classes), attrs the same
for its classes (aiohttp's), ``namedtuple`` its ``__new__``, ``typing`` every string annotation it
evaluates (a ``ForwardRef``: pydantic-core's hundreds of TypedDict fields), typing-inspection its
type checks. A cold start compiles about 700 (``/info``) to 1,450 (``/tiles``) such texts, the
same at every start: the dataclasses' 540 of a first ``/info`` are, with their parsing, about 15%
of its instructions (callgrind: 1.31 G instructions before, 1.11 G with the table), and the
others' compiling took 23 ms (``/info``) to 42 ms (``/tiles``) more, timed in the process.

``deploy/aws-sam/build_zip.py`` therefore runs the function's preparation (the SnapStart
``prepare``: every module of every endpoint) once under ``record`` and ships the compiled code
objects, keyed by their text, file name, mode and compiler flags, as
``cloudroi/_codecache.marshal``. When ``cloudroi.serverless`` is imported, ``install`` gives each
generating module (``SITES``) an ``exec``/``eval``/``compile`` of its own that takes the code
from the table and compiles only a text that is not in it; a module not imported yet gets it
before its first line runs (``cloudroi.service.importhook``). A code object is what ``compile``
makes of the same text with the same flags, so a class is built the same either way; a text
served again (two classes alike) gets a copy, a code object of its own as ``compile`` would give
(the interpreter specialises instructions per code object). A table from another Python version
(another magic number) or optimisation level is not used. The table exists only in a built
package: in the source tree and the container image nothing changes.

One text differs from process to process: attrs' ``__hash__`` holds the hash of a string naming
the class, and string hashes are salted per process. Its key holds a placeholder for that number,
and the number is put back into the code object's constants (``_attrs_hash``): the method
computes the hashes attrs' own would.

The sites are where CPython 3.11 and 3.12 (Lambda's runtime) compile these texts; a later Python
that compiles one elsewhere (string annotations move to ``annotationlib`` in 3.14) only loses
that site's savings.
"""

from __future__ import annotations
import __future__

import builtins
import marshal
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import CodeType, ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: build_zip.py loads this module on its own
    from .importhook import Finder

__all__ = [
    "SITES",
    "TABLE_NAME",
    "install",
    "installed",
    "record",
    "table_path",
    "uninstall",
    "write",
]

#: The table's file in the package, beside cloudroi's modules (``cloudroi/_codecache.marshal``).
TABLE_NAME = "_codecache.marshal"
#: The modules that compile generated text, and the builtin each calls to do it.
SITES = {
    "dataclasses": "exec",  # the methods of @dataclass classes
    "collections": "eval",  # namedtuple's __new__
    "typing": "compile",  # ForwardRef: a string annotation
    "attr._make": "compile",  # the methods of attrs classes
    "typing_inspection.typing_objects": "exec",  # pydantic's type checks
}
#: The compiler flags a ``from __future__`` import sets: what ``compile`` inherits from its caller.
_FUTURE_FLAGS = 0
for _name in __future__.all_feature_names:
    _FUTURE_FLAGS |= getattr(__future__, _name).compiler_flag
# nested_scopes' flag is CO_NESTED, which marks a nested function, not a future import: exec
# does not pass it on
_FUTURE_FLAGS &= ~__future__.nested_scopes.compiler_flag

#: Key: (source text, file name, mode, future flags).
Key = tuple[str, str, str, int]
Lookup = Callable[[Key], CodeType]

#: attrs' generated files, ``<attrs generated methods module.Class>`` (``-N>`` when repeated).
_ATTRS_FILE = re.compile(r"<attrs generated \S+ (?P<cls>.+?)(?:-\d+)?>\Z")
#: Stands in the table for the number attrs' ``__hash__`` differs by from process to process.
_HASH_PLACEHOLDER = 0x636C6F7564726F69

_hooked: list[tuple[ModuleType, str, Any]] = []
_finders: list[Finder] = []


def table_path() -> str:
    """Where a built package has its table."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(package, TABLE_NAME)


def _magic() -> bytes:
    """This Python's byte-code magic number and optimisation level (``-O`` drops asserts and
    docstrings from what it compiles)."""
    from importlib.util import MAGIC_NUMBER

    return MAGIC_NUMBER + b"-O%d" % sys.flags.optimize


def _attrs_hash(key: Key) -> int | None:
    """The per-process number in the text of an attrs class's ``__hash__``, else None: the hash
    of ``<attrs generated hash module.Class>``, on a line of its own."""
    text, filename = key[0], key[1]
    match = _ATTRS_FILE.match(filename) if filename.startswith("<attrs") else None
    if match is None:
        return None
    value = hash(f"<attrs generated hash {match['cls']}>")
    line = f" {value},\n"
    return value if line in text and str(_HASH_PLACEHOLDER) not in text else None


def _swapped(const: Any, old: int, new: int, count: list[int]) -> Any:
    """The constant ``const`` with the int ``old`` replaced by ``new`` (counted in ``count``),
    inside code objects' constants and tuples too (``hash((n,))`` is folded to a tuple)."""
    if type(const) is int:
        if const != old:
            return const
        count[0] += 1
        return new
    if isinstance(const, CodeType):
        return const.replace(co_consts=tuple(_swapped(c, old, new, count) for c in const.co_consts))
    if type(const) is tuple:
        return tuple(_swapped(c, old, new, count) for c in const)
    return const


def _copy(code: CodeType) -> CodeType:
    """A code object of its own, nested code included, as another ``compile`` would make (the
    interpreter specialises its instructions per code object)."""
    return code.replace(
        co_consts=tuple(_copy(c) if isinstance(c, CodeType) else c for c in code.co_consts)
    )


def _code(lookup: Lookup, key: Key) -> CodeType:
    """The code of ``key`` from ``lookup``; attrs' ``__hash__`` number through a placeholder."""
    value = _attrs_hash(key)
    if value is None:
        return lookup(key)
    text = key[0].replace(f" {value},\n", f" {_HASH_PLACEHOLDER},\n", 1)
    count = [0]
    code: CodeType = _swapped(lookup((text, *key[1:])), _HASH_PLACEHOLDER, value, count)
    return code if count[0] == 1 else _compile(key)  # not where expected: the text itself


def _namespaces(caller: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """exec's and eval's namespaces: as given, else their caller's (not this module's)."""
    globals_ = args[0] if args else kwargs.pop("globals", None)
    locals_ = args[1] if len(args) > 1 else kwargs.pop("locals", None)
    if globals_ is None:
        globals_ = caller.f_globals
        if locals_ is None:
            locals_ = caller.f_locals
    return globals_, locals_


def _shims(lookup: Lookup) -> dict[str, Callable[..., Any]]:
    """``exec``, ``eval`` and ``compile`` that take a text's code from ``lookup``."""

    def exec_(source: Any, *args: Any, **kwargs: Any) -> None:
        caller = sys._getframe(1)
        if type(source) is str:  # (a subclass of str would not marshal)
            flags = caller.f_code.co_flags & _FUTURE_FLAGS
            source = _code(lookup, (source, "<string>", "exec", flags))
        globals_, locals_ = _namespaces(caller, args, kwargs)
        builtins.exec(source, globals_, locals_, *args[2:], **kwargs)

    def eval_(source: Any, *args: Any, **kwargs: Any) -> Any:
        caller = sys._getframe(1)
        if type(source) is str:  # eval drops the text's leading blanks, compile does not
            flags = caller.f_code.co_flags & _FUTURE_FLAGS
            source = _code(lookup, (source.lstrip(" \t"), "<string>", "eval", flags))
        globals_, locals_ = _namespaces(caller, args, kwargs)
        return builtins.eval(source, globals_, locals_, *args[2:], **kwargs)

    def compile_(
        source: Any,
        filename: Any,
        mode: str,
        flags: int = 0,
        dont_inherit: bool = False,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        if type(source) is not str or type(filename) is not str or args or kwargs:
            return builtins.compile(source, filename, mode, flags, dont_inherit, *args, **kwargs)
        if flags & ~_FUTURE_FLAGS:  # an AST, type comments...: not code for the table
            return builtins.compile(source, filename, mode, flags, dont_inherit)
        if not dont_inherit:
            flags |= sys._getframe(1).f_code.co_flags & _FUTURE_FLAGS
        return _code(lookup, (source, filename, mode, flags))

    return {"exec": exec_, "eval": eval_, "compile": compile_}


def _shadow(lookup: Lookup) -> None:
    """Give each module of ``SITES`` its builtin through ``lookup``: now if it is loaded, else
    when it is imported (before its first line runs)."""
    uninstall()
    shims = _shims(lookup)

    def give(module: ModuleType) -> None:
        name = SITES[module.__name__]
        module.__dict__[name] = shims[name]
        _hooked.append((module, name, shims[name]))

    @contextmanager
    def given(module: ModuleType) -> Iterator[None]:
        give(module)
        yield

    later = {}
    for name in SITES:
        module = sys.modules.get(name)
        if module is None:
            later[name] = given
        else:
            give(module)
    if later:
        from .importhook import hook

        _finders.append(hook(later))


def _compile(key: Key) -> CodeType:
    text, filename, mode, flags = key
    code: CodeType = builtins.compile(text, filename, mode, flags, dont_inherit=True)
    return code


def uninstall() -> None:
    """Back to the builtins."""
    if _finders:
        from .importhook import unhook

        while _finders:
            unhook(_finders.pop())
    while _hooked:
        module, name, shim = _hooked.pop()
        if module.__dict__.get(name) is shim:  # (a module's own exec... stays)
            del module.__dict__[name]


def installed() -> bool:
    return bool(_hooked or _finders)


@contextmanager
def record() -> Iterator[dict[Key, CodeType]]:
    """Within: every text the modules of ``SITES`` compile is compiled here and kept."""
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
    nothing changes, when there is none, it is empty, damaged or from another Python, or a table
    or a recording is already in use."""
    if installed():
        return 0
    where = table_path() if path is None else path
    try:
        with open(where, "rb") as f:
            magic, table = marshal.loads(f.read())
    except (OSError, ValueError, EOFError, TypeError):
        return 0
    if magic != _magic() or not isinstance(table, dict) or not table:
        return 0
    if not all(type(code) is CodeType for code in table.values()):  # damaged: none of it
        return 0

    served: set[Key] = set()

    def lookup(key: Key) -> CodeType:
        code: CodeType | None = table.get(key)
        if code is None:
            return _compile(key)
        if key in served:  # the same text again (two classes alike): a code object of its own
            return _copy(code)
        served.add(key)
        return code

    _shadow(lookup)
    return len(table)
