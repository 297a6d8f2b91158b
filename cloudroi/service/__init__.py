"""The cloudroi region service: HTTP endpoints over the library, safe by default.

``create_app(config)`` builds the aiohttp application; ``handle(CoreRequest, ServiceState)`` is the
transport-independent core that it (and the serverless handler) adapt onto.
"""

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
