"""One sentence for a failed HTTP request, in place of aiohttp's exception repr.

``ClientConnectorError(ConnectionKey(host='127.0.0.1', port=9, is_ssl=False, ...),
ConnectionRefusedError(111, ...))`` becomes ``cannot connect to 127.0.0.1:9: Connection refused``.
"""

from __future__ import annotations

import errno
import os
import socket
import ssl

import aiohttp

__all__ = ["describe_client_error"]


def _reason(err: BaseException) -> str:
    """What the operating system said: ``Connection refused`` rather than asyncio's
    ``Connect call failed ('127.0.0.1', 9)``."""
    if isinstance(err, (socket.gaierror, ssl.SSLError)) and err.strerror:
        return err.strerror  # their errno is not an errno value
    code = getattr(err, "errno", None)
    if isinstance(code, int) and code in errno.errorcode:
        return os.strerror(code)
    text = getattr(err, "strerror", None) or str(err)
    return text or type(err).__name__


def _address(host: str, port: int | None) -> str:
    host = f"[{host}]" if ":" in host else host
    return host if port is None else f"{host}:{port}"


def describe_client_error(exc: BaseException) -> str:
    """A failed request (``aiohttp.ClientError``, ``TimeoutError``, ``OSError``) as one
    sentence, naming the host and port where it is a connection failure."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"cannot resolve host {exc.host}: {_reason(exc.os_error)}"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return (
            f"TLS certificate of {_address(exc.host, exc.port)} not accepted: "
            f"{exc.certificate_error}"
        )
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS handshake with {_address(exc.host, exc.port)} failed: {_reason(exc.os_error)}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {_address(exc.host, exc.port)}: {_reason(exc.os_error)}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection without answering"
    if isinstance(exc, TimeoutError):  # also aiohttp's ServerTimeoutError
        return f"timed out: {exc}" if str(exc) else "timed out"
    if isinstance(exc, OSError):  # also aiohttp's ClientOSError
        return f"connection failed: {_reason(exc)}"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
