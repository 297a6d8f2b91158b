"""``ImageSpec``: what it takes to open an Image again, in another thread or process.

An ``Image`` holds a live HTTP session, sockets and an event loop's futures, so it does not
pickle; its spec does, in a few hundred bytes: the URL, the ``ImageOptions`` that differ from the
defaults, the ``ContextOptions`` of its Context (storage options, retries, timeouts) and the
header size learnt at open, so that the other side's first open is a single GET.
``Image.spec()`` makes one; ``cloudroi.xarray.runtime.open_spec`` opens it (once per process).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from .context import ContextOptions

__all__ = ["ImageSpec"]


@dataclass(frozen=True, slots=True)
class ImageSpec:
    """A picklable description of an Image: ``url``, ``ImageOptions`` fields as sorted
    (name, value) pairs, the Context's options (None: the defaults) and the header size."""

    url: str
    options: tuple[tuple[str, Any], ...] = ()
    context_options: ContextOptions | None = None
    header_bytes: int = 0

    @classmethod
    def create(
        cls,
        url: str,
        *,
        context_options: ContextOptions | None = None,
        header_bytes: int = 0,
        **options: Any,
    ) -> ImageSpec:
        """A spec from keyword ``ImageOptions`` fields (checked when the spec is opened)."""
        if not isinstance(url, str):
            raise TypeError(f"an ImageSpec names its object by URL, got {type(url).__name__}")
        return cls(url, tuple(sorted(options.items())), context_options, int(header_bytes))

    @property
    def open_options(self) -> dict[str, Any]:
        """The keyword arguments of ``cloudroi.open`` this spec stands for."""
        return dict(self.options)

    @property
    def key(self) -> str:
        """Equal for specs that open the same object the same way (the header size aside):
        the per-process Image cache's key."""
        return repr((self.url, self.options, _context_key(self.context_options)))

    @property
    def context_key(self) -> str:
        """Equal for specs whose Images can share one Context."""
        return _context_key(self.context_options)


def _context_key(options: ContextOptions | None) -> str:
    if options is None or options == ContextOptions():
        return ""
    return repr(_frozen(options))


def _frozen(value: Any) -> Any:
    """``value`` with mappings sorted by key, so that equal options give equal keys."""
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _frozen(v)) for k, v in value.items()))
    if isinstance(value, ContextOptions):
        return tuple((f.name, _frozen(getattr(value, f.name))) for f in fields(value))
    return value
