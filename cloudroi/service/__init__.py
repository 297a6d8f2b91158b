"""The cloudroi region service: HTTP endpoints over the library, safe by default.

``create_app(config)`` builds the aiohttp application; ``handle(CoreRequest, ServiceState)`` is the
transport-independent core that it (and the serverless handler) adapt onto.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import CONFIG, STATE, create_app, run
    from .config import ServiceConfig
    from .core import CoreRequest, CoreResponse, ServiceState, handle
    from .security import SourceNotAllowedError, SourcePolicy

__all__ = [
    "CONFIG",
    "STATE",
    "CoreRequest",
    "CoreResponse",
    "ServiceConfig",
    "ServiceState",
    "SourceNotAllowedError",
    "SourcePolicy",
    "create_app",
    "handle",
    "run",
]

#: Imported on first use (PEP 562): the Lambda handler, a module of this package, needs neither
#: aiohttp's server (``app``) nor, until its first request, the core.
_LAZY = {
    "CONFIG": "app",
    "STATE": "app",
    "create_app": "app",
    "run": "app",
    "ServiceConfig": "config",
    "CoreRequest": "core",
    "CoreResponse": "core",
    "ServiceState": "core",
    "handle": "core",
    "SourceNotAllowedError": "security",
    "SourcePolicy": "security",
}


def __getattr__(name: str) -> Any:
    """A public name from its module, or a module (``cloudroi.service.core``) not yet imported."""
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
        globals()[name] = value
        return value
    if not name.startswith("__"):
        try:
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
