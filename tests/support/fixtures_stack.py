"""Fixtures for the embedded stack itself: state dirs, and both AWS emulators it can run
(``RECSYS_EMULATOR``): moto and LocalStack.

``state_dir`` is a fresh folder under the system temp dir: pytest's own ``tmp_path`` lives under a
0700 ``/tmp/pytest-of-<user>``, which the embedded PostgreSQL's service user cannot reach when the
tests run as root (and the stack never changes permissions outside its state dir).

``running_emulator`` starts one bare emulator (no PostgreSQL, no MySQL) with the project's resources,
for tests of how the emulators answer the project's calls (docs/emulators.md). Tests that need a whole
stack use ``recsys.local.stack.scratch_stack(..., RECSYS_EMULATOR=name)``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from recsys.core.config import Settings, load_settings
from recsys.local.aws_resources import ensure_resources
from recsys.local.emulators import emulator_for
from recsys.local.stack import LOCAL_CREDENTIALS, free_port

EMULATORS = ("moto", "localstack")


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A fresh state dir for a stack of the test's own, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="recsys-test-state-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@contextmanager
def running_emulator(name: str) -> Iterator[Settings]:
    """One emulator on a free loopback port with buckets, stream and delivery stream; stopped by PID after."""
    state_dir = Path(tempfile.mkdtemp(prefix=f"recsys-emulator-{name}-"))
    settings = load_settings({"RECSYS_STATE_DIR": str(state_dir), "RECSYS_EMULATOR": name})
    emulator = emulator_for(settings)
    port = free_port()
    started = emulator.start(port, state_dir / name, state_dir / "logs" / f"{name}.log")
    try:
        live = settings.replace(AWS_ENDPOINT_URL=emulator.endpoint(port), **LOCAL_CREDENTIALS)
        ensure_resources(live)
        yield live
    finally:
        emulator.stop(started.pid)
        shutil.rmtree(state_dir, ignore_errors=True)


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket the process and its children listen on."""
    process = psutil.Process(pid)
    out = set()
    for proc in [process, *process.children(recursive=True)]:
        for conn in proc.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN:
                out.add((conn.laddr.ip, conn.laddr.port))
    return out
