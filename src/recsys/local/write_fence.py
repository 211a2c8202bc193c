"""The write fence that ``recsys stack down`` raises in an emulator before it saves the emulator's state.

A producer still writing while the save runs would have its ``PutRecords`` acknowledged after the stream
was read: acknowledged, then lost. So ``down`` first creates the fence file (``FENCE_FILE`` in the
emulator's private home; its path is in ``FENCE_ENV``) and asks ``GET FENCE_PATH``, which answers once no
write is in flight. From then on every request that could change state is refused with a 503 (never an
acknowledgement); reads (S3 GET/HEAD, the Kinesis reads the save makes) still pass, so the save sees
everything that was acknowledged. A new server starts unfenced (``Emulator.start`` removes the file).

The emulators' own servers wrap this one class: ``recsys.local.moto_fenced`` (a WSGI middleware) and
``localstack/host/fenced_runtime.py`` (handlers in LocalStack's gateway chain). The latter runs in
LocalStack's own venv, where recsys is not installed, and loads this file by path: so it imports
nothing but the standard library.
"""

from __future__ import annotations

import threading
from pathlib import Path

FENCE_FILE = "fence"  # in the emulator's home: while it exists, a fenced emulator accepts no write
FENCE_ENV = "RECSYS_FENCE_FILE"
FENCE_PATH = "/recsys/fence"  # GET: answers once the fence is up and no write is in flight
DRAIN_SECONDS = 30.0
REFUSAL = "the local stack is stopping (recsys stack down): this write was not accepted; retry after `up`"
READ_TARGETS = {
    f"Kinesis_20131202.{operation}"
    for operation in (
        "GetRecords",
        "GetShardIterator",
        "ListShards",
        "DescribeStream",
        "DescribeStreamSummary",
        "ListStreams",
    )
}


def is_read(method: str, target: str | None) -> bool:
    """A request that changes nothing: a listed JSON-protocol read (``X-Amz-Target``), else GET/HEAD."""
    return target in READ_TARGETS if target else method in ("GET", "HEAD")


class WriteFence:
    """Counts writes in flight; once the fence file exists, admits none and lets ``drain`` wait for the rest."""

    def __init__(self, fence_file: Path):
        self.fence_file = fence_file
        self.in_flight = 0
        self.changed = threading.Condition()

    def admit(self) -> bool:
        """True (and counted in flight until ``release``) unless the fence is up."""
        with self.changed:
            if self.fence_file.exists():
                return False
            self.in_flight += 1
            return True

    def release(self) -> None:
        with self.changed:
            self.in_flight -= 1
            self.changed.notify_all()

    def drain(self, timeout: float = DRAIN_SECONDS) -> tuple[bool, bool]:
        """(fenced, drained): drained once the fence is up and no admitted write is still running."""
        with self.changed:
            fenced = self.fence_file.exists()
            return fenced, fenced and self.changed.wait_for(lambda: self.in_flight == 0, timeout)
