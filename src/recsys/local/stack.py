"""The embedded local stack (no Docker): moto server + embedded PostgreSQL/pgvector + the MySQL source,
and on request the recommendations API (``recsys api``) in the background.

``up`` starts what is not running, creates the AWS resources, and writes ``<state>/stack.env``
(read by ``recsys.core.config``, printed by ``recsys stack env``). ``start_api`` adds the API
(``recsys demo --keep-up`` does) and its URL to ``stack.env``. ``down`` stops by PID what was
started. (The compose file runs the LocalStack product instead; this is the Docker-free stack.)
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from recsys.core.config import Settings, load_settings, stack_env_file
from recsys.core.db import connect_mysql, connect_pg, drop_database
from recsys.core.errors import SourceUnavailable, StackError
from recsys.local import aws_resources, pgembedded

LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}  # moto accepts any
API_PREFERRED_PORT = 8000



@dataclass
class ServiceStatus:
    name: str
    up: bool
    endpoint: str
    pid: int | None = None

    def line(self) -> str:
        state = "up" if self.up else "down"
        pid = f" pid={self.pid}" if self.pid else ""
        return f"{self.name:<10} {state:<5} {self.endpoint}{pid}"


def free_port(preferred: int | None = None) -> int:
    """``preferred`` when it is free on 127.0.0.1, else any free port."""
    for candidate in ([preferred] if preferred else []) + [0]:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise StackError("no free TCP port on 127.0.0.1")


def port_answers(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class EmbeddedStack:
    """The embedded stack rooted at a state directory."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.state_dir = self.settings.state_dir
        self.state_file = self.state_dir / "stack.json"
        self.pg_data = self.state_dir / "pgdata"
        self.logs = self.state_dir / "logs"

    # -- state ------------------------------------------------------------------------------
    def _load(self) -> dict:
        return json.loads(self.state_file.read_text()) if self.state_file.exists() else {}

    def _save(self, state: dict) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(state, indent=2))

    # -- services ---------------------------------------------------------------------------
    def _start_moto(self, state: dict) -> None:
        moto = state.get("moto", {})
        if pid_alive(moto.get("pid")) and port_answers(moto["port"]):
            return
        port = free_port(moto.get("port"))
        self.logs.mkdir(parents=True, exist_ok=True)
        log = open(self.logs / "moto.log", "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StackError(f"moto server exited with {proc.returncode}; see {self.logs / 'moto.log'}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        else:
            proc.kill()
            raise StackError(f"moto server did not answer on 127.0.0.1:{port} within 30 s")
        state["moto"] = {"pid": proc.pid, "port": port}

    def _start_postgres(self, state: dict) -> None:
        pg = state.get("postgres", {})
        if pid_alive(pg.get("pid")) and port_answers(pg["port"]):
            return
        pgembedded.init_cluster(self.pg_data)
        port = free_port(pg.get("port"))
        pid = pgembedded.start(self.pg_data, port, self.logs / "postgres.log")
        state["postgres"] = {"pid": pid, "port": port, "data": str(self.pg_data)}

    def _check_mysql(self) -> None:
        connect_mysql(self.settings, database="").close()

    def stack_env(self, state: dict) -> dict[str, str]:
        """The settings that point clients at this stack (and at its API, when that runs)."""
        api = state.get("api", {})
        return ({"RECSYS_API_URL": f"http://127.0.0.1:{api['port']}"} if pid_alive(api.get("pid")) else {}) | {
            "RECSYS_STATE_DIR": str(self.state_dir),
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{state['moto']['port']}",
            "AWS_DEFAULT_REGION": self.settings.region,
            **LOCAL_CREDENTIALS,
            "PGHOST": "127.0.0.1",
            "PGPORT": str(state["postgres"]["port"]),
            "PGUSER": "postgres",
            "PGDATABASE": "postgres",
        }

    def up(self) -> dict[str, str]:
        """Start everything not yet running, create AWS resources and the vector extension."""
        self._check_mysql()
        state = self._load()
        try:
            self._start_moto(state)
            self._start_postgres(state)
        finally:
            self._save(state)
        env = self.stack_env(state)
        stack_env_file(self.state_dir).write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        live = self.settings.replace(**env)
        aws_resources.ensure_resources(live)
        with connect_pg(live) as conn, conn.cursor() as cur:
            cur.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.close()
        self.settings = live
        return env

    def start_api(self) -> str:
        """Start ``recsys api`` in the background on a free port (8000 when free) unless it runs;
        record it for ``status``/``down`` and its URL in ``stack.env``. Returns the URL."""
        state = self._load()
        api = state.get("api", {})
        if not (pid_alive(api.get("pid")) and port_answers(api["port"])):
            port = free_port(api.get("port") or API_PREFERRED_PORT)
            self.logs.mkdir(parents=True, exist_ok=True)
            with open(self.logs / "api.log", "ab") as log:
                proc = subprocess.Popen(
                    [str(Path(sys.executable).with_name("recsys")), "api", "--port", str(port)],
                    env={**os.environ, **self.settings.as_env()}, stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, start_new_session=True)
            deadline = time.monotonic() + 60
            while not port_answers(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    raise StackError(f"recsys api did not start on 127.0.0.1:{port}; see {self.logs / 'api.log'}")
                time.sleep(0.1)
            state["api"] = api = {"pid": proc.pid, "port": port}
            self._save(state)
        stack_env_file(self.state_dir).write_text("".join(f"{k}={v}\n" for k, v in self.stack_env(state).items()))
        return f"http://127.0.0.1:{api['port']}"

    def down(self) -> list[str]:
        """Stop, by PID, what ``up`` and ``start_api`` started; the PostgreSQL data folder is kept."""
        state = self._load()
        stopped = []
        api = state.get("api", {})
        if pid_alive(api.get("pid")):
            os.kill(api["pid"], signal.SIGTERM)
            if not _wait_gone(api["pid"]):
                os.kill(api["pid"], signal.SIGKILL)
            stopped.append(f"api (pid {api['pid']})")
        api.pop("pid", None)
        moto = state.get("moto", {})
        if pid_alive(moto.get("pid")):
            os.kill(moto["pid"], signal.SIGTERM)
            _wait_gone(moto["pid"])
            stopped.append(f"moto (pid {moto['pid']})")
        pg = state.get("postgres", {})
        if pid_alive(pg.get("pid")):
            pgembedded.stop(self.pg_data)
            if not _wait_gone(pg["pid"]):
                os.kill(pg["pid"], signal.SIGQUIT)
            stopped.append(f"postgres (pid {pg['pid']})")
        for service in (moto, pg):
            service.pop("pid", None)  # the port is kept so the next `up` reuses it when free
        self._save(state)
        stack_env_file(self.state_dir).unlink(missing_ok=True)
        return stopped

    def status(self) -> list[ServiceStatus]:
        state = self._load()
        moto, pg = state.get("moto", {}), state.get("postgres", {})
        s = self.settings
        try:
            self._check_mysql()
            mysql_up = True
        except SourceUnavailable:
            mysql_up = False
        api = state.get("api", {})
        api_status = [ServiceStatus("api", pid_alive(api.get("pid")) and port_answers(api.get("port", 0)),
                                    f"http://127.0.0.1:{api.get('port', '-')}", api.get("pid"))] if api.get("pid") else []
        return [
            ServiceStatus("moto", pid_alive(moto.get("pid")) and port_answers(moto.get("port", 0)),
                          f"http://127.0.0.1:{moto.get('port', '-')}", moto.get("pid")),
            ServiceStatus("postgres", pid_alive(pg.get("pid")) and port_answers(pg.get("port", 0)),
                          f"postgresql://postgres@127.0.0.1:{pg.get('port', '-')}/postgres", pg.get("pid")),
            ServiceStatus("mysql", mysql_up, f"mysql://{s.mysql_user}@{s.mysql_host}:{s.mysql_port}/{s.mysql_database}"),
            *api_status,
        ]


def _wait_gone(pid: int, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)  # reap when it is our own child
        except ChildProcessError:
            pass
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    return False


@contextmanager
def scratch_stack(name: str, state_dir: Path | None = None, **extra_env: str) -> Iterator[Settings]:
    """A throwaway embedded stack with its own state dir and MySQL database ``recsys_<name>_<pid>``.

    Inside, the process environment points at it (as ``eval "$(recsys stack env)"`` would), so
    subprocesses and CLI calls use it too; afterwards the stack is stopped, the database dropped,
    a temporary state dir removed and the environment restored. For tests, benchmarks, demos.
    """
    saved = dict(os.environ)
    own_dir = state_dir is None
    state_dir = Path(tempfile.mkdtemp(prefix=f"recsys-{name}-")) if own_dir else state_dir
    for key in [k for k in os.environ if k == "AWS_ENDPOINT_URL" or k.startswith("PG")]:
        del os.environ[key]
    os.environ.update(RECSYS_STATE_DIR=str(state_dir), MYSQL_DATABASE=f"recsys_{name}_{os.getpid()}", **extra_env)
    local = EmbeddedStack(load_settings())
    try:
        os.environ.update(local.up())
        yield load_settings()
    finally:
        local.down()
        with suppress(SourceUnavailable):
            drop_database(load_settings())
        os.environ.clear()
        os.environ.update(saved)
        if own_dir:
            shutil.rmtree(state_dir, ignore_errors=True)
