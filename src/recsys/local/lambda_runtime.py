"""Run a Lambda deployment package locally: a minimal Lambda Runtime API server plus AWS's own
runtime interface client (``awslambdaric``) in a subprocess.

The server implements the endpoints a runtime uses (``/2018-06-01/runtime/invocation/next``,
``.../{id}/response``, ``.../{id}/error``, ``/2018-06-01/runtime/init/error``); the subprocess runs
``python -m awslambdaric <handler>`` with ``AWS_LAMBDA_RUNTIME_API`` pointing at it, the unzipped
package as its task root and ``PYTHONPATH``, and only the function's environment, as Lambda does.
Like Lambda, a timed-out or crashed runtime is killed and started afresh on the next invoke.

Only the runtime process this ``LocalLambda`` started may talk to its server: every connection
to the 127.0.0.1 port is checked, before a byte is read, to be a socket of that process (its
open TCP connections, from the kernel, via psutil); any other process, of another local user or
the same one, has its connection closed unanswered, so it can neither take invocations (the
events they carry) nor post results. Why not a Unix socket or a secret: ``awslambdaric`` reads
``AWS_LAMBDA_RUNTIME_API`` as ``host:port`` only (its native client builds ``http://`` URLs, its
init-error path uses ``http.client.HTTPConnection``) and sends no credential (docs/streaming.md).

``LocalLambda.invoke`` returns what the Lambda ``Invoke`` API returns: the payload, and
``function_error`` (``"Unhandled"``) with AWS's error shape (``errorMessage``, ``errorType``,
``stackTrace``, ``requestId``) when the function failed.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil

from recsys.local.lambda_python import check_code_matches, python_version
from recsys.local.private_files import open_log

log = logging.getLogger(__name__)

API_PREFIX = "/2018-06-01/runtime"
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
PASSED_THROUGH_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR", "OPENBLAS_NUM_THREADS")
_INVOCATION_PATH = re.compile(rf"^{API_PREFIX}/invocation/([^/]+)/(response|error)$")


@dataclass
class InvocationResult:
    """The outcome of one invoke, shaped like the Lambda ``Invoke`` API's answer."""

    payload: bytes
    function_error: str | None = None  # "Unhandled" when the function raised, timed out or crashed
    duration_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.function_error is None

    def error(self) -> dict:
        """The error document (AWS's shape) of a failed invoke."""
        try:
            return json.loads(self.payload)
        except ValueError:
            return {"errorMessage": self.payload.decode(errors="replace"), "errorType": "Runtime.Unknown"}


def error_payload(message: str, error_type: str, request_id: str | None = None) -> bytes:
    """An error document in AWS's shape, for failures the runtime itself detects."""
    body = {"errorMessage": message, "errorType": error_type, "stackTrace": []}
    if request_id:
        body["requestId"] = request_id
    return json.dumps(body).encode()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    peer_allowed = staticmethod(lambda client_address: True)

    def verify_request(self, request, client_address) -> bool:
        if self.peer_allowed(client_address):
            return True
        log.warning(
            "runtime api: refused a connection from %s:%s: not the runtime this delivery started", *client_address[:2]
        )
        return False

    def handle_error(self, request, client_address):
        # a runtime killed mid-request (timeout, crash) resets its connection: expected, not news
        log.debug("runtime api: connection from %s ended abruptly", client_address, exc_info=sys.exc_info())


@dataclass
class _Invocation:
    request_id: str
    payload: bytes
    deadline_ms: int
    done: threading.Event = field(default_factory=threading.Event)
    result: InvocationResult | None = None

    def finish(self, result: InvocationResult) -> None:
        if not self.done.is_set():
            self.result = result
            self.done.set()


class RuntimeApiServer:
    """The Runtime API on 127.0.0.1 (a free port): hands out queued invocations, collects results."""

    def __init__(self, function_arn: str, poll_seconds: float = 0.5):
        self.function_arn = function_arn
        self.runtime_pid: int | None = None  # the only process whose connections are served
        self._pending: queue.Queue[_Invocation] = queue.Queue()
        self._by_id: dict[str, _Invocation] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self.init_error: dict | None = None
        self.generation = 0  # bumped when the runtime process is replaced: its pending long-polls are void
        self._poll_seconds = poll_seconds
        self._server = _QuietServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._server.peer_allowed = self.connection_is_runtime
        self._thread = threading.Thread(target=self._server.serve_forever, name="lambda-runtime-api", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def connection_is_runtime(self, client_address: tuple) -> bool:
        """Whether the connection from ``client_address`` is a socket of the runtime process (and not of
        any other local process): the kernel's list of that process's TCP connections must hold it."""
        if self.runtime_pid is None:
            return False
        ours = (self._server.server_address[0], self._server.server_address[1])
        peer = (client_address[0], client_address[1])
        try:
            connections = psutil.Process(self.runtime_pid).net_connections(kind="tcp4")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False
        return any(tuple(c.laddr) == peer and tuple(c.raddr) == ours for c in connections if c.raddr)

    def submit(self, payload: bytes, timeout_seconds: float) -> _Invocation:
        """Queue an invocation for the runtime's next ``GET .../invocation/next``."""
        invocation = _Invocation(str(uuid.uuid4()), payload, int((time.time() + timeout_seconds) * 1000))
        with self._lock:
            self._by_id[invocation.request_id] = invocation
        self._pending.put(invocation)
        return invocation

    def forget(self, invocation: _Invocation) -> None:
        with self._lock:
            self._by_id.pop(invocation.request_id, None)

    def retire_runtime(self) -> None:
        """The runtime process is gone: its ``GET .../next`` still waiting here must not take the next
        invocation (it would go to a dead socket), and queued invocations nobody picked up are dropped."""
        self.generation += 1
        self.drain()

    def drain(self) -> None:
        """Drop queued invocations nobody picked up (the runtime died before asking)."""
        while True:
            try:
                self._pending.get_nowait()
            except queue.Empty:
                return

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()

    # -- HTTP -----------------------------------------------------------------------------------
    def _next_invocation(self, generation: int) -> _Invocation | None:
        """The next queued invocation for a runtime of ``generation``; None when closing or when that
        runtime has been replaced meanwhile."""
        while not self._closing.is_set() and generation == self.generation:
            try:
                invocation = self._pending.get(timeout=self._poll_seconds)
            except queue.Empty:
                continue
            if generation != self.generation:
                self._pending.put(invocation)  # meant for the runtime that replaced the one asking
                return None
            if not invocation.done.is_set():
                return invocation
        return None

    def _complete(self, request_id: str, kind: str, body: bytes, error_type: str | None) -> bool:
        with self._lock:
            invocation = self._by_id.get(request_id)
        if invocation is None:
            return False
        if kind == "response":
            invocation.finish(InvocationResult(body))
        else:
            payload = body or error_payload("function error", error_type or "Runtime.Unknown", request_id)
            invocation.finish(InvocationResult(payload, function_error="Unhandled"))
        return True

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as separate writes: avoid 40 ms stalls

            def log_message(self, fmt, *args):  # requests are logged by the invoker, not per line
                log.debug("runtime api: " + fmt, *args)

            def _reply(self, status: HTTPStatus, body: bytes = b"", headers: dict[str, str] | None = None):
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def do_GET(self):
                if self.path != f"{API_PREFIX}/invocation/next":
                    return self._reply(HTTPStatus.NOT_FOUND, b'{"errorMessage":"unknown path"}')
                invocation = server._next_invocation(server.generation)
                if invocation is None:  # shutting down, or the runtime asking was replaced
                    return self._reply(HTTPStatus.GONE, b'{"errorMessage":"runtime api closing"}')
                self._reply(
                    HTTPStatus.OK,
                    invocation.payload,
                    {
                        "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                        "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
                        "Lambda-Runtime-Invoked-Function-Arn": server.function_arn,
                        "Lambda-Runtime-Trace-Id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Sampled=0",
                    },
                )

            def do_POST(self):
                body = self._body()
                if self.path == f"{API_PREFIX}/init/error":
                    server.init_error = json.loads(body) if body else {"errorType": self.headers.get(ERROR_TYPE_HEADER)}
                    return self._reply(HTTPStatus.ACCEPTED, b'{"status":"OK"}')
                match = _INVOCATION_PATH.match(self.path)
                if not match:
                    return self._reply(HTTPStatus.NOT_FOUND, b'{"errorMessage":"unknown path"}')
                request_id, kind = match.groups()
                if not server._complete(request_id, kind, body, self.headers.get(ERROR_TYPE_HEADER)):
                    return self._reply(HTTPStatus.BAD_REQUEST, b'{"errorMessage":"unknown request id"}')
                self._reply(HTTPStatus.ACCEPTED, b'{"status":"OK"}')

        return Handler


class LocalLambda:
    """A Lambda function run from an unpacked deployment package by ``awslambdaric``."""

    def __init__(
        self,
        code_dir: Path,
        handler: str,
        environment: dict[str, str],
        *,
        function_name: str = "local-function",
        function_arn: str | None = None,
        timeout_seconds: float = 60.0,
        memory_mb: int = 1024,
        log_file: Path | None = None,
        python: str = sys.executable,
    ):
        self.code_dir = Path(code_dir).resolve()
        self.handler = handler
        self.environment = dict(environment)
        self.function_name = function_name
        self.function_arn = function_arn or f"arn:aws:lambda:us-east-1:000000000000:function:{function_name}"
        self.timeout_seconds = timeout_seconds
        self.memory_mb = memory_mb
        self.log_file = log_file
        self.python = python
        check_code_matches(self.code_dir, sys.version_info[:2] if python == sys.executable else python_version(python))
        self.server = RuntimeApiServer(self.function_arn)
        self._process: subprocess.Popen | None = None
        self.cold_starts = 0

    def _process_env(self) -> dict[str, str]:
        env = {k: os.environ[k] for k in PASSED_THROUGH_ENV if k in os.environ}
        region = self.environment.get("AWS_REGION") or self.environment.get("AWS_DEFAULT_REGION", "us-east-1")
        env.update(
            {
                "AWS_LAMBDA_RUNTIME_API": self.server.address,
                "AWS_LAMBDA_FUNCTION_NAME": self.function_name,
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory_mb),
                "AWS_REGION": region,
                "AWS_DEFAULT_REGION": region,
                "LAMBDA_TASK_ROOT": str(self.code_dir),
                "_HANDLER": self.handler,
                "PYTHONPATH": str(self.code_dir),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.environment)
        return env

    def _ensure_process(self) -> subprocess.Popen:
        if self._process is not None and self._process.poll() is None:
            return self._process
        self.server.init_error = None
        output = open_log(self.log_file) if self.log_file else subprocess.DEVNULL
        try:
            self._process = subprocess.Popen(
                [self.python, "-m", "awslambdaric", self.handler],
                cwd=self.code_dir,
                env=self._process_env(),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            if not isinstance(output, int):  # our log file, not DEVNULL
                output.close()
        self.server.runtime_pid = self._process.pid
        self.cold_starts += 1
        log.debug("lambda runtime started (pid %d, %s)", self._process.pid, self.handler)
        return self._process

    def _kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._process = None
        self.server.retire_runtime()

    def set_environment(self, environment: dict[str, str]) -> None:
        """Use a new function environment: the running process is stopped, the next invoke starts cold with it."""
        self.environment = dict(environment)
        self._kill()

    def invoke(self, payload: bytes) -> InvocationResult:
        """Invoke synchronously; never raises for function failures (see ``InvocationResult``)."""
        started = time.monotonic()
        process = self._ensure_process()
        invocation = self.server.submit(payload, self.timeout_seconds)
        try:
            deadline = started + self.timeout_seconds
            while not invocation.done.wait(0.01 if time.monotonic() - started < 0.05 else 0.05):
                if process.poll() is not None:
                    invocation.finish(self._exit_result(process.returncode, invocation.request_id))
                elif time.monotonic() > deadline:
                    self._kill()
                    invocation.finish(
                        InvocationResult(
                            error_payload(
                                f"Task timed out after {self.timeout_seconds:.2f} seconds",
                                "Sandbox.Timedout",
                                invocation.request_id,
                            ),
                            function_error="Unhandled",
                        )
                    )
        finally:
            self.server.forget(invocation)
        result = invocation.result
        if result is None:  # every path above finishes the invocation
            raise RuntimeError(f"invocation {invocation.request_id} ended without a result")
        result.duration_seconds = time.monotonic() - started
        if process.poll() is not None:
            self._process = None
            self.server.retire_runtime()
        return result

    def _exit_result(self, returncode: int, request_id: str) -> InvocationResult:
        init = self.server.init_error
        if init:
            return InvocationResult(json.dumps(init).encode(), function_error="Unhandled")
        return InvocationResult(
            error_payload(f"Runtime exited with error: exit status {returncode}", "Runtime.ExitError", request_id),
            function_error="Unhandled",
        )

    def close(self) -> None:
        """Stop the runtime subprocess and the API server."""
        self._kill()
        self.server.close()

    def __enter__(self) -> LocalLambda:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
