"""TLS trust for the Lambda zip package: aiohttp's default contexts from a hashed CA directory.

aiohttp builds its two default TLS contexts when ``aiohttp.connector`` is imported, and each loads
OpenSSL's default verify paths: with a CA bundle file that is a parse of every certificate in it,
twice (38-50 ms a context on the development machine, about 90 ms of a cold start). A *hashed
directory* (one PEM per certificate, named ``<subject hash>.<n>``, the layout ``openssl rehash``
makes) is read lazily instead: OpenSSL opens only the certificates a handshake needs.

``deploy/aws-sam/build_zip.py`` writes the package's trusted set (certifi's Mozilla bundle as of
the build, or ``--ca-bundle``) as ``cloudroi-ca/`` beside ``cloudroi/``. Importing
``cloudroi.serverless`` calls ``use_packaged_ca``, which arranges (``cloudroi.service.importhook``)
that while ``aiohttp.connector`` itself is being imported (and only then) ``SSL_CERT_DIR`` names
that directory and ``SSL_CERT_FILE`` a name in it that does not exist (so no bundle file is
parsed). The two contexts keep the directory (OpenSSL records it in each context's store); the
environment is restored as soon as the module is loaded, so nothing else in the process
(botocore, PROJ, GDAL, httpx, a subprocess) sees the variables. (They are process-wide while
that module runs, some milliseconds of the first request, before the function does any network
work.)

What changes is what aiohttp's default contexts trust: the bundle shipped in the package, frozen
at build time (rebuild to update it), instead of the runtime's operating-system bundle. A function
whose environment sets ``SSL_CERT_FILE`` or ``SSL_CERT_DIR`` keeps its own store (nothing is
done), and outside a package built with the directory (the source tree, the container image)
nothing changes either.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager

__all__ = ["CA_DIR_NAME", "NO_BUNDLE_NAME", "packaged_ca_dir", "trusted_while", "use_packaged_ca"]

#: The directory build_zip.py writes at the package's top level (``/var/task/cloudroi-ca``).
CA_DIR_NAME = "cloudroi-ca"
#: What ``SSL_CERT_FILE`` is set to: a name in the directory that build_zip.py never writes.
NO_BUNDLE_NAME = "no-bundle-file"
#: The module whose import builds aiohttp's default TLS contexts.
TARGET = "aiohttp.connector"


def packaged_ca_dir() -> str:
    """Where a zip package has its CA directory: beside the ``cloudroi`` package. (os.path,
    not pathlib: this runs in the handler's import.)"""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(os.path.dirname(package), CA_DIR_NAME)


@contextmanager
def trusted_while(where: str, environ: MutableMapping[str, str] | None = None) -> Iterator[None]:
    """Within: OpenSSL's default verify paths are the directory ``where`` and no file."""
    env = os.environ if environ is None else environ
    saved = {k: env.get(k) for k in ("SSL_CERT_DIR", "SSL_CERT_FILE")}
    env["SSL_CERT_DIR"] = where
    env["SSL_CERT_FILE"] = os.path.join(where, NO_BUNDLE_NAME)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value


def use_packaged_ca(directory: str | None = None) -> bool:
    """Have aiohttp's default TLS contexts load the package's hashed CA directory (or
    ``directory``) when ``aiohttp.connector`` is imported; True if arranged. False when the
    environment chose a trust store, when there is no directory, or when aiohttp is already
    loaded (too late)."""
    if "SSL_CERT_FILE" in os.environ or "SSL_CERT_DIR" in os.environ or TARGET in sys.modules:
        return False
    where = packaged_ca_dir() if directory is None else directory
    if not os.path.isdir(where):
        return False
    from .importhook import hook  # here: build_zip.py loads this module on its own

    hook({TARGET: lambda module: trusted_while(where)})
    return True
