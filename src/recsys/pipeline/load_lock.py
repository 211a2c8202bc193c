"""The vector-DB loader's lock: one load at a time per database, a bounded wait, and no wait for the dead.

Loads serialise on ``pg_advisory_lock(hashtext(LOAD_LOCK_KEY))`` (``sql/embeddings.sql`` takes the
same lock). A loader that is killed (SIGKILL, OOM, a closed laptop) leaves its backend running:
PostgreSQL notices the client is gone only when it next talks to it, so a backend in the middle of
an HNSW build keeps the lock until the build ends. Each loader therefore names itself in
``application_name`` with its host, OS pid and process start time; a loader that finds the lock
taken says in one line who holds it, and when the holder is a loader of this host whose process is
gone, terminates that backend (``pg_terminate_backend``) instead of waiting for it. A live holder
is never touched: the wait is bounded (``RECSYS_LOAD_LOCK_TIMEOUT_SECONDS``) and ends in one line.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from dataclasses import dataclass
from datetime import datetime

import psutil
import psycopg2.errors

from recsys.contracts import LOAD_LOCK_KEY
from recsys.core.db import PgConnection
from recsys.core.errors import PipelineError
from recsys.core.processes import process_is

log = logging.getLogger(__name__)

APPLICATION_PREFIX = "recsys load "
_APPLICATION = re.compile(r"recsys load (\d+)\.(\d+)@(.*)")
_MAX_APPLICATION_NAME = 63  # PostgreSQL truncates application_name to NAMEDATALEN - 1 bytes
TERMINATE_WAIT_MS = 5000

# The lock's holder: pg_advisory_lock(bigint) shows in pg_locks as classid = high 32 bits, objid = low 32 bits,
# objsubid = 1, in the current database.
HOLDER_SQL = """
SELECT a.pid, a.application_name, a.backend_start, a.state, a.query_start
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = ((hashtext(%(key)s)::bigint >> 32) & 4294967295)::oid
  AND l.objid = (hashtext(%(key)s)::bigint & 4294967295)::oid
"""


def application_name(pid: int | None = None, started: int | None = None, host: str | None = None) -> str:
    """``recsys load <pid>.<process start, epoch s>@<host>`` (this process by default), as PostgreSQL stores it."""
    pid = os.getpid() if pid is None else pid
    started = int(psutil.Process(pid).create_time()) if started is None else started
    name = f"{APPLICATION_PREFIX}{pid}.{started}@{host or socket.gethostname()}"
    return name.encode()[:_MAX_APPLICATION_NAME].decode(errors="ignore")


@dataclass(frozen=True)
class LockHolder:
    """The backend holding the load lock, as pg_stat_activity shows it."""

    pid: int
    application_name: str
    backend_start: datetime
    state: str | None
    query_start: datetime | None

    def describe(self) -> str:
        started = f"{self.backend_start:%Y-%m-%d %H:%M:%S%z}"
        doing = f", {self.state} since {self.query_start:%H:%M:%S}" if self.state and self.query_start else ""
        return f"backend pid {self.pid} (application_name {self.application_name!r}, connected {started}{doing})"

    def gone_loader_pid(self) -> int | None:
        """The OS pid of the loader of THIS host that opened this backend, when that process no longer
        runs (the pid is free, a zombie, or reused by a process that started at another time); else None."""
        match = _APPLICATION.fullmatch(self.application_name)
        if not match:
            return None  # not a loader of ours (psql running sql/embeddings.sql, say): never judged dead
        pid, started = int(match[1]), int(match[2])
        if application_name(pid, started) != self.application_name:
            return None  # another host's loader: its processes are not ours to see
        return None if process_is(pid, started) else pid


def lock_holder(conn: PgConnection) -> LockHolder | None:
    """Who holds the load lock in this database now (None: nobody)."""
    with conn.cursor() as cur:
        cur.execute(HOLDER_SQL, {"key": LOAD_LOCK_KEY})
        row = cur.fetchone()
    conn.commit()
    return LockHolder(*row) if row else None


def _try_lock(conn: PgConnection) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (LOAD_LOCK_KEY,))
        row = cur.fetchone()
    conn.commit()
    return bool(row and row[0])


def _terminate(conn: PgConnection, holder: LockHolder, loader_pid: int) -> bool:
    """End an orphaned loader's backend (waits up to TERMINATE_WAIT_MS for it to exit)."""
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s, %s)", (holder.pid, TERMINATE_WAIT_MS))
            row = cur.fetchone()
            done = bool(row and row[0])
        conn.commit()
    except psycopg2.Error as exc:  # e.g. not allowed to signal that role's backends
        conn.rollback()
        log.warning(
            "the load lock is held by %s, left by loader pid %d of this host, which is gone; "
            "could not terminate it (%s): waiting for it",
            holder.describe(),
            loader_pid,
            exc.diag.message_primary,
        )
        return False
    if done:
        log.warning(
            "the load lock was held by %s, left by loader pid %d of this host, which is gone: terminated that backend",
            holder.describe(),
            loader_pid,
        )
    return done


def acquire_load_lock(conn: PgConnection, timeout_seconds: int) -> None:
    """Take the session-level load lock on ``conn``, waiting at most ``timeout_seconds`` for a live holder.

    An orphaned loader's backend (see the module docstring) is terminated first. PipelineError,
    naming the holder, when the lock is still taken at the end of the wait.
    """
    if _try_lock(conn):
        return
    holder = lock_holder(conn)
    if holder is None and _try_lock(conn):  # released in between
        return
    loader_pid = holder.gone_loader_pid() if holder else None
    if holder and loader_pid is not None and _terminate(conn, holder, loader_pid) and _try_lock(conn):
        return
    holder = lock_holder(conn) or holder
    who = holder.describe() if holder else "another load (gone already)"
    if timeout_seconds <= 0:
        raise _held(who, timeout_seconds)
    log.warning(
        "waiting up to %d s (RECSYS_LOAD_LOCK_TIMEOUT_SECONDS) for the load lock held by %s", timeout_seconds, who
    )
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT set_config('lock_timeout', %s, true)", (f"{timeout_seconds}s",))
            cur.execute("SELECT pg_advisory_lock(hashtext(%s))", (LOAD_LOCK_KEY,))
        conn.commit()  # the session-level lock outlives the transaction; lock_timeout does not
    except psycopg2.errors.LockNotAvailable:
        conn.rollback()
        holder = lock_holder(conn)
        raise _held(holder.describe() if holder else who, timeout_seconds) from None


def _held(who: str, timeout_seconds: int) -> PipelineError:
    return PipelineError(
        f"another load holds the load lock: {who}; gave up after {timeout_seconds} s "
        "(RECSYS_LOAD_LOCK_TIMEOUT_SECONDS); the live version is unchanged"
    )
