"""A Lambda Runtime API on 127.0.0.1 for tests: hands events to a runtime client, collects answers.

It speaks the documented runtime protocol (``/2018-06-01/runtime/invocation/next``, ``.../{id}/
response``, ``.../{id}/error``, ``/2018-06-01/runtime/init/error``, and SnapStart's
``/2018-06-01/runtime/restore/next`` and ``.../restore/error``), so the real runtime client
(``python -m awslambdaric cloudroi.serverless.handler``, the Lambda image's command) can be run
as a subprocess against it: the closest to a Lambda invocation that works without AWS or Docker.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/2018-06-01/runtime"


FUNCTION_ARN = "arn:aws:lambda:eu-west-1:123456789012:function:cloudroi"


class RuntimeAPI:
    """Queue events with ``invoke``; answers arrive in ``results`` keyed by request id."""

    def __init__(self) -> None:
        self._events: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.results: dict[str, tuple[str, Any]] = {}
        self.init_errors: list[Any] = []
        self.restore_errors: list[Any] = []
        #: Set when the runtime client asks for /restore/next (its init and before-snapshot hooks
        #: are done: the point where Lambda takes the snapshot); ``restore()`` answers it.
        self.snapshot_point = threading.Event()
        self._restored = threading.Event()
        self._done = threading.Condition()
        self._stopping = threading.Event()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def handle(self) -> None:
                # the runtime client may be stopped mid-connection
                with contextlib.suppress(ConnectionResetError):
                    super().handle()

            def do_GET(self) -> None:
                if self.path == f"{PREFIX}/restore/next":
                    self._send(*api._restore_next())
                    return
                if self.path != f"{PREFIX}/invocation/next":
                    self._send(404, b"{}")
                    return
                while not api._stopping.is_set():
                    try:
                        request_id, body = api._events.get(timeout=0.2)
                    except queue.Empty:
                        continue
                    deadline = int((time.time() + 30) * 1000)
                    self._send(
                        200,
                        body,
                        {
                            "Lambda-Runtime-Aws-Request-Id": request_id,
                            "Lambda-Runtime-Deadline-Ms": str(deadline),
                            "Lambda-Runtime-Invoked-Function-Arn": FUNCTION_ARN,
                            "Lambda-Runtime-Trace-Id": f"Root=1-{request_id[:8]}-{request_id[9:]}",
                        },
                    )
                    return
                self._send(503, b"{}")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                payload = json.loads(self.rfile.read(length) or b"null")
                if api._posted(self.path[len(PREFIX) :].strip("/").split("/"), payload):
                    self._send(202, b'{"status":"OK"}')
                else:
                    self._send(404, b"{}")

            def _send(
                self, status: int, body: bytes, headers: Mapping[str, str] | None = None
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    def __enter__(self) -> RuntimeAPI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def _posted(self, parts: list[str], payload: Any) -> bool:
        """Record a POST to runtime/PARTS; False for a path the protocol does not have."""
        if parts[:2] == ["init", "error"]:
            self.init_errors.append(payload)
        elif parts[:2] == ["restore", "error"]:
            self.restore_errors.append(payload)
        elif len(parts) == 3 and parts[0] == "invocation":
            with self._done:
                self.results[parts[1]] = (parts[2], payload)
                self._done.notify_all()
        else:
            return False
        return True

    def _restore_next(self) -> tuple[int, bytes]:
        """The answer to /restore/next, once ``restore()`` was called (503 when stopping)."""
        self.snapshot_point.set()
        while not self._stopping.is_set():
            if self._restored.wait(0.2):
                return 200, b""
        return 503, b"{}"

    def wait_restore(self, timeout: float) -> None:
        """Wait until the runtime client reaches the snapshot point (SnapStart init done)."""
        if not self.snapshot_point.wait(timeout):
            raise TimeoutError(f"no /restore/next; init errors: {self.init_errors}")

    def restore(self) -> None:
        """Answer /restore/next: the runtime client runs its after-restore hooks and goes on."""
        self._restored.set()

    def invoke(self, event: Mapping[str, Any]) -> str:
        request_id = str(uuid.uuid4())
        self._events.put((request_id, json.dumps(event).encode()))
        return request_id

    def wait(self, request_id: str, timeout: float) -> tuple[str, Any]:
        """("response" or "error", payload) once the runtime client answered ``request_id``."""
        deadline = time.monotonic() + timeout
        with self._done:
            while request_id not in self.results:
                left = deadline - time.monotonic()
                if left <= 0 or self.init_errors or self.restore_errors:
                    raise TimeoutError(
                        f"no answer for {request_id}; init errors: {self.init_errors}; "
                        f"restore errors: {self.restore_errors}"
                    )
                self._done.wait(min(left, 0.2))
            return self.results[request_id]


class RuntimeClient:
    """``python -m awslambdaric HANDLER`` in a subprocess against a fresh RuntimeAPI; ``invoke``
    hands it one event (as Lambda does, one at a time) and returns its answer."""

    def __init__(
        self,
        python: str,
        handler: str,
        env: Mapping[str, str],
        *,
        timeout: float = 60.0,
        cwd: str | None = None,
        python_args: Sequence[str] = (),
        unset: Sequence[str] = (),
    ) -> None:
        self.api = RuntimeAPI()
        #: Variables of this process's environment the function does not get (Lambda never
        #: sets them: SSL_CERT_FILE...).
        self._unset = tuple(unset)
        self.timeout = timeout
        self._argv = [python, *python_args, "-m", "awslambdaric", handler]
        self._env = dict(env)
        self._cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RuntimeClient:
        self.api.__enter__()
        env = {**os.environ, **self._env, "AWS_LAMBDA_RUNTIME_API": self.api.address}
        for name in self._unset:
            env.pop(name, None)
        self.proc = subprocess.Popen(
            self._argv,
            env=env,
            cwd=self._cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        return self

    def invoke(self, event: Mapping[str, Any]) -> tuple[str, Any]:
        """("response" or "error", payload)."""
        try:
            return self.api.wait(self.api.invoke(event), self.timeout)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\nruntime client output:\n{self._stop()[-4000:]}") from exc

    def _stop(self) -> str:
        proc, self.proc = self.proc, None
        if proc is None:
            return ""
        if proc.poll() is None:
            proc.terminate()
        try:
            out = proc.communicate(timeout=10)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            out = proc.communicate(timeout=10)[0]
        return out.decode(errors="replace")

    def __exit__(self, *exc: object) -> None:
        try:
            self._stop()
        finally:
            self.api.__exit__()
