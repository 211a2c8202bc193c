"""The recommendations API on a real uvicorn server in a thread of the test process, on a free
loopback port, with the protocol ``recsys api`` runs (``server_config``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from recsys.apps.api_server import server_config
from recsys.local.stack import free_port


@contextmanager
def serving(app, start_seconds: float = 30) -> Iterator[int]:
    """Serve ``app`` until the block ends; yields the port."""
    port = free_port()
    server = uvicorn.Server(server_config(app, "127.0.0.1", port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_seconds
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)
