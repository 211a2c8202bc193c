"""LocalStack (``python -m localstack.runtime.main``) behind the write fence of ``recsys.local.write_fence``.

Run by LocalStack's own Python (.venv-localstack, where recsys is not installed: another Python, other
dependencies) as ``python fenced_runtime.py <path of write_fence.py>`` (``recsys.local.emulators.LocalStack``):
the one module shared with moto's wrapper is loaded by its path, and imports only the standard library.
Before the runtime starts, three of the extension points LocalStack's gateway offers get the fence
(module-level objects that every gateway's handler chain includes):

* ``localstack.services.edge.ROUTER`` serves ``GET /recsys/fence`` (before any AWS parsing, which
  would take the path for an S3 object);
* ``handlers.serve_custom_service_request_handlers`` runs after the request is parsed and before the
  service handles it: a write (same classification as moto's: method and ``X-Amz-Target``) is
  counted in flight, or, fenced, refused with a 503 ``ServiceUnavailable`` that LocalStack serializes
  in the service's own protocol, so clients see an ordinary retryable AWS error;
* ``handlers.run_custom_finalizers`` runs once the response exists, whatever happened: the write is
  done, and no longer in flight.

Kinesis writes need no lock here (unlike moto's): kinesis-mock takes a semaphore per shard for its writes.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

from localstack.aws import handlers
from localstack.aws.api import CommonServiceException
from localstack.http import Response
from localstack.runtime.main import main as localstack_main
from localstack.services.edge import ROUTER

ADMITTED = "recsys_write_admitted"  # set on a request's context while it is counted in flight


def load_write_fence(path: str):
    spec = importlib.util.spec_from_file_location("recsys_write_fence", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def install(write_fence) -> None:
    """Put a ``write_fence.WriteFence`` on the fence file into every LocalStack gateway's handler chain."""
    fence = write_fence.WriteFence(Path(os.environ[write_fence.FENCE_ENV]))

    def drained(request, **_):
        fenced, done = fence.drain()
        return Response(json.dumps({"fenced": fenced, "drained": bool(done)}), 200 if done else 409,
                        mimetype="application/json")

    def admit_write(chain, context, response):
        if write_fence.is_read(context.request.method, context.request.headers.get("X-Amz-Target")):
            return
        if not fence.admit():
            raise CommonServiceException("ServiceUnavailable", write_fence.REFUSAL, status_code=503)
        setattr(context, ADMITTED, True)

    def release_write(chain, context, response):
        if context.get(ADMITTED):
            setattr(context, ADMITTED, False)
            fence.release()

    ROUTER.add(write_fence.FENCE_PATH, drained, methods=["GET"])
    handlers.serve_custom_service_request_handlers.append(admit_write)
    handlers.run_custom_finalizers.append(release_write)


def main() -> None:
    install(load_write_fence(sys.argv[1]))
    localstack_main()


if __name__ == "__main__":
    main()
