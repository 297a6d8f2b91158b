"""TLS trust for the Lambda zip package: a hashed CA directory instead of a bundle file.

aiohttp builds its two default TLS contexts when it is imported, and each loads OpenSSL's default
verify paths: with a CA bundle file that is a parse of every certificate in it, twice (38-50 ms a
context on the development machine, about 90 ms of a cold start). A *hashed directory* (one PEM
per certificate, named ``<subject hash>.<n>``, the layout ``openssl rehash`` makes) is read lazily
instead: OpenSSL opens only the certificates a handshake needs.

``deploy/aws-sam/build_zip.py`` writes the Mozilla CA set (certifi's bundle, or ``--ca-bundle``)
into the package as ``cloudroi-ca/``, beside ``cloudroi/``, with the bundle itself as
``bundle.pem``. When ``cloudroi.serverless`` is imported, ``use_packaged_ca`` points OpenSSL's
defaults at that directory: ``SSL_CERT_DIR`` to it and ``SSL_CERT_FILE`` to a name in it that
does not exist (so no bundle file is parsed); and, for PROJ's network access, which reads
``SSL_CERT_FILE`` otherwise, ``PROJ_CURL_CA_BUNDLE`` to ``bundle.pem``. The trust store is the
one botocore uses for S3 (the Mozilla set); only how it is loaded changes.

Nothing happens when the function's environment sets ``SSL_CERT_FILE`` or ``SSL_CERT_DIR`` (its
own trust store wins), nor outside a package built with the directory (the source tree, the
container image).
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

__all__ = ["BUNDLE_NAME", "CA_DIR_NAME", "NO_BUNDLE_NAME", "packaged_ca_dir", "use_packaged_ca"]

#: The directory build_zip.py writes at the package's top level (``/var/task/cloudroi-ca``).
CA_DIR_NAME = "cloudroi-ca"
#: The whole bundle, kept in the directory for clients that need a file (PROJ's curl).
BUNDLE_NAME = "bundle.pem"
#: What ``SSL_CERT_FILE`` is set to: a name in the directory that build_zip.py never writes.
NO_BUNDLE_NAME = "no-bundle-file"


def packaged_ca_dir() -> str:
    """Where a zip package has its CA directory: beside the ``cloudroi`` package. (os.path,
    not pathlib: this runs in the handler's import.)"""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(os.path.dirname(package), CA_DIR_NAME)


def use_packaged_ca(
    directory: str | os.PathLike[str] | None = None,
    environ: MutableMapping[str, str] | None = None,
) -> bool:
    """Point OpenSSL's default verify paths at the package's hashed CA directory; True if it
    did. Must run before aiohttp is imported (its contexts are made at import)."""
    env = os.environ if environ is None else environ
    if "SSL_CERT_FILE" in env or "SSL_CERT_DIR" in env:
        return False
    where = os.fspath(packaged_ca_dir() if directory is None else directory)
    if not os.path.isfile(os.path.join(where, BUNDLE_NAME)):
        return False
    env["SSL_CERT_DIR"] = where
    env["SSL_CERT_FILE"] = os.path.join(where, NO_BUNDLE_NAME)
    env.setdefault("PROJ_CURL_CA_BUNDLE", os.path.join(where, BUNDLE_NAME))
    return True
