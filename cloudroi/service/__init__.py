"""The cloudroi region service: HTTP endpoints over the library, safe by default.

``create_app(config)`` builds the aiohttp application; ``handle(CoreRequest, ServiceState)`` is the
transport-independent core that it (and the serverless handler) adapt onto.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_getattr

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


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
