"""moto's server (``python -m moto.server``'s app and request handler) behind a write fence.

``recsys stack down`` saves the emulator's state, then stops it. A producer still writing while the
save runs would have its ``PutRecords`` acknowledged after the stream was read: acknowledged, then
lost. So ``down`` first raises the fence: it creates the fence file (in the emulator's private
home; the path is in ``RECSYS_MOTO_FENCE_FILE``) and asks ``GET /recsys/fence``, which answers once
no write is in flight. From then on every request that could change state gets a 503 (never an
acknowledgement); reads (S3 GET/HEAD, the Kinesis reads the save makes) still pass, so the save
sees everything that was acknowledged. A new server starts unfenced (``Emulator.start`` removes
the file).

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

from recsys.local.emulators import FENCE_ENV, FENCE_PATH

DRAIN_SECONDS = 30.0
READ_TARGETS = {f"Kinesis_20131202.{operation}" for operation in (
    "GetRecords", "GetShardIterator", "ListShards", "DescribeStream", "DescribeStreamSummary", "ListStreams")}


class WriteFence:
    """WSGI middleware: once the fence file exists, writes get a 503 and in-flight ones are awaited."""

    def __init__(self, app, fence_file: Path):
        self.app, self.fence_file = app, fence_file
        self.in_flight = 0
        self.changed = threading.Condition()
        self.kinesis_writes = threading.Lock()

    @staticmethod
    def is_read(environ) -> bool:
        target = environ.get("HTTP_X_AMZ_TARGET")
        return target in READ_TARGETS if target else environ["REQUEST_METHOD"] in ("GET", "HEAD")

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == FENCE_PATH:
            return self.drained(start_response)
        if self.is_read(environ):
            return self.app(environ, start_response)
        with self.changed:
            if self.fence_file.exists():
                return self.refuse(environ, start_response)
            self.in_flight += 1
        try:
            if environ.get("HTTP_X_AMZ_TARGET", "").startswith("Kinesis_"):
                with self.kinesis_writes:
                    return list(self.app(environ, start_response))
            return list(self.app(environ, start_response))  # the write is done when its answer exists
        finally:
            with self.changed:
                self.in_flight -= 1
                self.changed.notify_all()

    def drained(self, start_response):
        with self.changed:
            done = self.fence_file.exists() and self.changed.wait_for(lambda: self.in_flight == 0, DRAIN_SECONDS)
        body = json.dumps({"fenced": self.fence_file.exists(), "drained": bool(done)}).encode()
        start_response("200 OK" if done else "409 Conflict", [("Content-Type", "application/json"),
                                                              ("Content-Length", str(len(body)))])
        return [body]

    @staticmethod
    def refuse(environ, start_response):
        message = "the local stack is stopping (recsys stack down): this write was not accepted; retry after `up`"
        if environ.get("HTTP_X_AMZ_TARGET"):
            body = json.dumps({"__type": "ServiceUnavailableException", "message": message}).encode()
            kind = "application/x-amz-json-1.1"
        else:
            body = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>ServiceUnavailable</Code>"
                    f"<Message>{message}</Message></Error>").encode()
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
    run_simple(args.host, args.port, WriteFence(app, Path(os.environ[FENCE_ENV])), threaded=True,
               request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
