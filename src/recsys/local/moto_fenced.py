"""moto's server (``python -m moto.server``'s app and request handler) behind the write fence.

What the fence is for and its contract: ``recsys.local.write_fence``. Here it is a WSGI middleware
around moto's own app.

Kinesis writes also pass one at a time: moto's ``Shard.put_record`` numbers a record from the
shard's last one ("not safe for concurrency"), so two writers at once (a producer, and ``stack up``
restoring saved records) could both be acknowledged under one sequence number, one record lost.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple

from recsys.local.write_fence import FENCE_ENV, FENCE_PATH, REFUSAL, WriteFence, is_read


class FencedApp:
    """WSGI middleware: once the fence file exists, writes get a 503 and in-flight ones are awaited."""

    def __init__(self, app, fence: WriteFence):
        self.app, self.fence = app, fence
        self.kinesis_writes = threading.Lock()

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == FENCE_PATH:
            return self.drained(start_response)
        if is_read(environ["REQUEST_METHOD"], environ.get("HTTP_X_AMZ_TARGET")):
            return self.app(environ, start_response)
        if not self.fence.admit():
            return self.refuse(environ, start_response)
        try:
            if environ.get("HTTP_X_AMZ_TARGET", "").startswith("Kinesis_"):
                with self.kinesis_writes:
                    return list(self.app(environ, start_response))
            return list(self.app(environ, start_response))  # the write is done when its answer exists
        finally:
            self.fence.release()

    def drained(self, start_response):
        fenced, done = self.fence.drain()
        body = json.dumps({"fenced": fenced, "drained": bool(done)}).encode()
        start_response(
            "200 OK" if done else "409 Conflict",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]

    @staticmethod
    def refuse(environ, start_response):
        if environ.get("HTTP_X_AMZ_TARGET"):
            body = json.dumps({"__type": "ServiceUnavailableException", "message": REFUSAL}).encode()
            kind = "application/x-amz-json-1.1"
        else:
            body = (
                f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>ServiceUnavailable</Code>"
                f"<Message>{REFUSAL}</Message></Error>"
            ).encode()
            kind = "application/xml"
        start_response("503 Service Unavailable", [("Content-Type", kind), ("Content-Length", str(len(body)))])
        return [body]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        args.host,
        args.port,
        FencedApp(app, WriteFence(Path(os.environ[FENCE_ENV]))),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
