"""The loader's lock: a killed loader's backend does not make the next load wait, a live holder is
never touched and bounds the wait with one line (recsys.pipeline.load_lock).

Real `recsys load-embeddings` subprocesses against the session stack's embedded PostgreSQL and moto S3,
in the vector DB tests' database and bucket (tests/support/fixtures_vectordb.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from psycopg2 import sql

from recsys.contracts import LOAD_LOCK_KEY
from recsys.core.db import connect_pg
from recsys.pipeline import vector_load
from recsys.pipeline.load_lock import application_name

RECSYS = str(Path(sys.executable).with_name("recsys"))
BOUND = 600  # seconds any subprocess here may take at most: a hang fails the test instead of the suite


def _env(settings, **extra) -> dict[str, str]:
    return {
        **os.environ,
        "PGDATABASE": settings.pg_database,
        "RECSYS_ARTIFACTS_BUCKET": settings.artifacts_bucket,
        **extra,
    }


def _load(settings, version: str, **extra) -> subprocess.CompletedProcess:
    return subprocess.run(
        [RECSYS, "load-embeddings", "--version", version],
        capture_output=True,
        text=True,
        env=_env(settings, **extra),
        timeout=BOUND,
        check=False,
    )


def _backend_alive(conn, pid: int) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,))
        alive = cur.fetchone()[0] == 1
    conn.commit()
    return alive


def _holding_connection(settings, name: str):
    """A connection of its own holding the load lock under ``application_name`` ``name``."""
    conn = connect_pg(settings, application_name=name)
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(hashtext(%s))", (LOAD_LOCK_KEY,))
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
    conn.commit()
    return conn, pid


def _dead_process() -> tuple[int, int]:
    """(pid, start time) of a process that ran on this host and is gone."""
    proc = subprocess.Popen(["sleep", "60"])
    started = int(psutil.Process(proc.pid).create_time())
    proc.kill()
    proc.wait()
    return proc.pid, started


@pytest.fixture
def small_version(vectordb_publisher) -> str:
    return vectordb_publisher.synthetic(items=300, users=50, dim=8, seed=21).version


def test_lock_left_by_a_dead_loader_is_taken_back(vectordb_settings, vectordb_conn, small_version):
    """An orphan's lock (a connection whose application_name names a loader of this host that is gone)
    is terminated, not waited for, and the load says so in one line."""
    orphan, orphan_pid = _holding_connection(vectordb_settings, application_name(*_dead_process()))
    try:
        done = _load(vectordb_settings, small_version)
        assert done.returncode == 0, done.stderr
        assert f"version {small_version} is live" in done.stdout
        said = [line for line in done.stderr.splitlines() if "load lock" in line]
        assert len(said) == 1 and f"backend pid {orphan_pid}" in said[0] and "terminated that backend" in said[0]
        assert not _backend_alive(vectordb_conn, orphan_pid)
    finally:
        orphan.close()


@pytest.mark.parametrize("holder", ["live loader", "psql"])
def test_a_live_holder_is_never_killed_and_the_wait_ends_in_one_line(
    holder, vectordb_settings, vectordb_conn, small_version
):
    name = application_name() if holder == "live loader" else "psql"  # this test's own, live process
    held, held_pid = _holding_connection(vectordb_settings, name)
    try:
        done = _load(vectordb_settings, small_version, RECSYS_LOAD_LOCK_TIMEOUT_SECONDS="1")
        assert done.returncode == 1
        lines = done.stderr.strip().splitlines()
        waiting = [line for line in lines if "waiting up to 1 s" in line]
        assert len(waiting) == 1 and f"backend pid {held_pid} (application_name {name!r}" in waiting[0]
        assert lines[-1].startswith(f"error: another load holds the load lock: backend pid {held_pid} ")
        assert lines[-1].endswith("gave up after 1 s (RECSYS_LOAD_LOCK_TIMEOUT_SECONDS); the live version is unchanged")
        assert _backend_alive(vectordb_conn, held_pid)
        with held.cursor() as cur:  # and its session still holds the lock
            cur.execute("SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory'")
            assert cur.fetchone()[0] == 1
    finally:
        held.close()


def _blocked_drop_of(conn, table: str) -> int | None:
    """The backend pid whose ``DROP TABLE ... table`` waits for a lock now, else None."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'DROP TABLE%%' "
            "AND query LIKE %s",
            (f"%{table}%",),
        )
        row = cur.fetchone()
    conn.commit()
    return row[0] if row else None


def test_a_loader_killed_mid_load_does_not_hold_up_the_next(
    vectordb_settings, vectordb_publisher, vectordb_conn, small_version
):
    """SIGKILL a real `recsys load-embeddings` while its backend is busy with a statement: the backend
    carries on (holding the lock); the next load terminates it and goes ahead at once, saying so.

    The statement is the loader's first, dropping a leftover staged table of its version, kept waiting
    by a reader of that table (the test's), so the backend outlives its client for as long as the test
    needs, as one building a large HNSW index does for minutes.
    """
    version = vectordb_publisher.synthetic(items=200, users=20, dim=8, seed=22).version
    staged = vector_load.ITEMS.staged(version)
    reader = connect_pg(vectordb_settings)
    with reader.cursor() as cur:
        cur.execute(sql.SQL("CREATE TABLE {} (id varchar)").format(sql.Identifier(staged)))
        reader.commit()
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(staged)))  # holds ACCESS SHARE
    loader = subprocess.Popen(
        [RECSYS, "load-embeddings", "--version", version],
        env=_env(vectordb_settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        while (backend := _blocked_drop_of(vectordb_conn, staged)) is None and loader.poll() is None:
            time.sleep(0.1)
        assert backend is not None, f"the loader ended before it was seen at work: {loader.stderr.read()}"
        loader.kill()
        loader.wait()
        assert _backend_alive(vectordb_conn, backend)  # the orphan: still at work, still holding the lock
        done = _load(vectordb_settings, small_version)
        assert done.returncode == 0, done.stderr
        assert f"version {small_version} is live" in done.stdout
        said = [line for line in done.stderr.splitlines() if "load lock" in line]
        assert len(said) == 1 and f"backend pid {backend} " in said[0] and "terminated that backend" in said[0]
        assert f"loader pid {loader.pid} of this host, which is gone" in said[0]
        assert not _backend_alive(vectordb_conn, backend)
    finally:
        if loader.poll() is None:
            loader.kill()
            loader.wait()
        reader.close()
        vector_load.drop_staged(vectordb_conn, version)
