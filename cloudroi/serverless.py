"""The AWS Lambda entry point ``cloudroi.serverless.handler``, the name deployments configure.

The adapter itself lives beside the aiohttp app, in ``cloudroi.service.lambda_handler``: both are
transports over the same request core (``cloudroi.service.core.handle``).
"""

from .service.lambda_handler import (
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
