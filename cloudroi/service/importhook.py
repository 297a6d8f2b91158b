"""Run something around the import of named modules, for the Lambda package's cold start.

``hook({"aiohttp.connector": around})`` puts a finder first on ``sys.meta_path``. When one of
the named modules is imported, the finder asks the other finders for it and wraps the loader they
return: the module's code then runs inside ``around(module)``, a context manager. Everything else
(``get_source`` for tracebacks...) is the real loader's. ``cloudroi.service.trust`` uses it to
choose aiohttp's trust store while ``aiohttp.connector`` runs, ``cloudroi.service.codecache`` to
give a module its code table before its first line runs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:  # importlib.abc and its imports are not loaded for this at run time
    from importlib.abc import Loader
    from importlib.machinery import ModuleSpec
    from types import ModuleType

__all__ = ["Around", "Finder", "hook", "unhook"]

#: What runs around a module's code: called with the new module, entered before its first line.
Around = Callable[["ModuleType"], AbstractContextManager[Any]]


class _Loading:
    """A module's real loader, its code run inside ``around``."""

    def __init__(self, real: Any, around: Around) -> None:
        self.real, self.around = real, around

    def __getattr__(self, name: str) -> Any:
        if name in ("real", "around"):  # not set yet (a copy): no recursion
            raise AttributeError(name)
        return getattr(self.real, name)

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        create = getattr(self.real, "create_module", None)
        module: ModuleType | None = None if create is None else create(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        with self.around(module):
            self.real.exec_module(module)


class Finder:
    """Finds the named modules with the other finders and wraps their loaders (each time it is
    asked: a reload is wrapped too). It stays on ``sys.meta_path`` until ``unhook``: the import
    system walks that list while asking, so a finder must not take itself off it then."""

    def __init__(self, names: Mapping[str, Around]) -> None:
        self.names = dict(names)
        # a finder that asks importlib itself must not come back here (one thread at a time:
        # importlib calls find_spec under its global import lock)
        self.asking = False

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        around = self.names.get(fullname)
        if around is None or self.asking:
            return None
        self.asking = True
        try:
            for finder in [f for f in sys.meta_path if f is not self]:
                find = getattr(finder, "find_spec", None)
                spec: ModuleSpec | None = None if find is None else find(fullname, path, target)
                if spec is not None:
                    if hasattr(spec.loader, "exec_module"):  # else: left as it is
                        spec.loader = cast("Loader", _Loading(spec.loader, around))
                    return spec
            return None
        finally:
            self.asking = False


def hook(names: Mapping[str, Around]) -> Finder:
    """From now on, each of ``names``' modules runs inside its context manager when imported."""
    finder = Finder(names)
    sys.meta_path.insert(0, finder)
    return finder


def unhook(finder: Finder) -> None:
    """Take ``finder`` off ``sys.meta_path`` (not while an import is under way)."""
    while finder in sys.meta_path:
        sys.meta_path.remove(finder)
