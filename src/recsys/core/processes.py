"""Recognising a process by PID: alive, and (given its creation time) not a recycled PID."""

from __future__ import annotations

import psutil


def pid_alive(pid: int | None) -> bool:
    """True when a process with ``pid`` exists (zombies included: not yet reaped by their parent)."""
    return pid is not None and pid > 0 and psutil.pid_exists(pid)


def process_is(pid: int | None, started: float | None) -> bool:
    """True when ``pid`` runs (not a zombie) and is the process created at ``started`` (epoch seconds,
    to within a second: callers may keep it truncated), not a recycled PID; any process when ``started`` is None."""
    if not pid:
        return False
    try:
        process = psutil.Process(pid)
        alive = process.is_running() and process.status() != psutil.STATUS_ZOMBIE
        return alive and (started is None or abs(process.create_time() - started) < 1.0)
    except psutil.Error:
        return False
