"""The container's health check: GET /healthz on the local `cloudroi serve`, exit 0 when it answers.

Run by the Dockerfile's HEALTHCHECK (python:3.11-slim has no curl). The port is $CLOUDROI_PORT
(default 8080), the same variable `cloudroi serve` reads; proxy variables are ignored.
"""

import json
import os
import sys
import urllib.request


def main() -> int:
    port = os.environ.get("CLOUDROI_PORT", "8080")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://127.0.0.1:{port}/healthz", timeout=3) as resp:
            ok = resp.status == 200 and json.load(resp).get("status") == "ok"
    except (OSError, ValueError) as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
