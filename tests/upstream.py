"""A test's own files on the shared range server, under a prefix no other test uses.

Each test gets fresh URLs, so the process-wide caches (keyed by URL and ETag) never carry one
test's blocks into another, and the server's log can be filtered to this test's requests.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cloudroi.testing import RangeServer


@dataclass
class Upstream:
    server: RangeServer
    prefix: str

    @classmethod
    def publish(cls, server: RangeServer, files: Mapping[str, bytes], stem: str) -> Upstream:
        """Put ``files`` on ``server`` under a fresh ``stem-<random>/`` prefix."""
        prefix = f"{stem}-{uuid.uuid4().hex[:10]}/"
        for name, data in files.items():
            server.add(prefix + name, data)
        return cls(server, prefix)

    def url(self, name: str) -> str:
        return self.server.url(self.prefix + name)

    @property
    def root(self) -> str:
        return self.server.url(self.prefix)

    def requests(self, name: str | None = None) -> list[Any]:
        """The GETs the server logged for one file, or for all of this test's files."""
        if name is None:
            mine = "/" + self.prefix
            return [e for e in self.server.requests_for(None) if e.path.startswith(mine)]
        return self.server.requests_for(self.prefix + name)

    def gets(self, name: str) -> int:
        return len(self.requests(name))
