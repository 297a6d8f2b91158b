"""The AWS Lambda entry point ``cloudroi.serverless.handler``, the name deployments configure.

The adapter itself lives beside the aiohttp app, in ``cloudroi.service.lambda_handler``: both are
transports over the same request core (``cloudroi.service.core.handle``).

Importing it first prepares two things a zip package built by ``build_zip.py`` ships, for the cold
start: aiohttp's default TLS contexts from its hashed CA directory (``cloudroi.service.trust``:
aiohttp, imported on the first request, then builds them without parsing a CA bundle), and the
compiled code of what libraries generate as text (``@dataclass`` and attrs methods, namedtuples,
string annotations: ``cloudroi.service.codecache``), and the regular expressions modules compile
as they are imported (``cloudroi.service.patterncache``). Without them (the source tree, the
container image) nothing changes. Under a Lambda runtime it also pauses the cyclic garbage
collector until the first invocation has answered (``cloudroi.service.gcpause``).
"""

from .service.patterncache import install as _install_pattern_cache

_install_pattern_cache()  # first: the modules below compile patterns too

from .service import gcpause  # noqa: E402
from .service.codecache import install as _install_code_cache  # noqa: E402
from .service.trust import use_packaged_ca  # noqa: E402

gcpause.pause()  # under a Lambda runtime, until the first invocation has answered
use_packaged_ca()
_install_code_cache()

from .service.lambda_handler import (  # noqa: E402 (after the trust store is chosen)
    LAMBDA_PAYLOAD_LIMIT,
    InvalidEventError,
    LambdaApp,
    body_limit,
    capped,
    handler,
    lambda_config,
    reset,
    to_core_request,
    to_lambda_response,
)

__all__ = [
    "LAMBDA_PAYLOAD_LIMIT",
    "InvalidEventError",
    "LambdaApp",
    "body_limit",
    "capped",
    "handler",
    "lambda_config",
    "reset",
    "to_core_request",
    "to_lambda_response",
]
