"""The embedded local stack (no Docker): an AWS emulator (moto or LocalStack) + embedded
PostgreSQL/pgvector + the MySQL source, and on request the recommendations API (``recsys api``).

``up`` starts what is not running, restores the AWS state saved by the last ``down`` (the emulators
keep it in memory only), creates the AWS resources, and writes ``<state>/stack.env`` (mode 0600: it
holds the PostgreSQL password; read by ``recsys.core.config``, printed by ``recsys stack env``).
``down`` saves the AWS state (``recsys.local.aws_state``) and stops by PID what ``up`` started.
``start_api`` adds the API in the background (``recsys demo --keep-up`` does) and its URL to
``stack.env``; ``status`` and ``down`` include it. Ports are kept across restarts when free. Which
emulator runs is ``RECSYS_EMULATOR`` (``recsys.local.emulators``); nothing else in the project
depends on it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from recsys.contracts import DB_LOADER_ROLE, DB_ROLES, DB_SERVING_ROLE, TASK_DBROLES, TASK_GATE, TASK_LOAD, TASK_TRAIN
from recsys.core.config import Settings, load_settings, stack_env_file
from recsys.core.db import connect_mysql, connect_pg, drop_database
from recsys.core.db_roles import PASSWORD_ENV, apply_roles
from recsys.core.errors import SourceUnavailable, StackError
from recsys.core.processes import pid_alive, process_is
from recsys.local import aws_resources, aws_state, pgembedded
from recsys.local.emulators import Emulator, emulator_for
from recsys.local.private_files import open_log, private_dir, reclaim, write_private

LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}  # emulators accept any
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
    """``preferred`` when it is free on 127.0.0.1, else any free port.

    The probe binds with SO_REUSEADDR, as the servers do: a port whose last connections are in
    TIME_WAIT (a server just stopped) is free for them, and the stack keeps its ports across restarts.
    """
    for candidate in ([preferred] if preferred else []) + [0]:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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


@dataclass
class StackState:
    """``<state>/stack.json``: per service its PID (while running), start time and port (kept after down)."""

    aws: dict = field(default_factory=dict)  # emulator, pid, started, port
    postgres: dict = field(default_factory=dict)  # pid, port, data
    api: dict = field(default_factory=dict)  # pid, port (while `recsys api` runs in the background)

    @classmethod
    def load(cls, path: Path) -> StackState:
        saved = json.loads(path.read_text()) if path.exists() else {}
        aws = saved.get("aws") or (
            {"emulator": "moto", **saved["moto"]} if "moto" in saved else {}
        )  # before 2 emulators
        return cls(aws=aws, postgres=saved.get("postgres", {}), api=saved.get("api", {}))

    def save(self, path: Path) -> None:
        write_private(path, json.dumps({"aws": self.aws, "postgres": self.postgres, "api": self.api}, indent=2))

    def api_running(self) -> bool:
        return pid_alive(self.api.get("pid")) and port_answers(self.api.get("port", 0))

    def emulator_running(self) -> bool:
        return process_is(self.aws.get("pid"), self.aws.get("started")) and port_answers(self.aws.get("port", 0))


class EmbeddedStack:
    """The embedded stack rooted at a state directory; ``notes`` collects what ``up``/``down`` want said."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.state_dir = self.settings.state_dir
        self.state_file = self.state_dir / "stack.json"
        self.pg_data = self.state_dir / "pgdata"
        self.logs = self.state_dir / "logs"  # ours, 0700
        self.pg_log = self.state_dir / "pglog" / "postgres.log"  # the PostgreSQL account's folder
        self.notes: list[str] = []

    def _load(self) -> StackState:
        return StackState.load(self.state_file)

    def _save(self, state: StackState) -> None:
        state.save(self.state_file)

    def emulator(self, state: StackState | None = None) -> Emulator:
        """The running emulator's strategy when one runs, else the configured one's."""
        running = state.aws.get("emulator") if state and state.emulator_running() else None
        return emulator_for(self.settings, running)

    # -- services ---------------------------------------------------------------------------
    def _start_emulator(self, state: StackState) -> bool:
        """Start the configured emulator unless it runs; True when it was started now (empty)."""
        wanted = self.settings.emulator
        if state.emulator_running():
            if state.aws["emulator"] != wanted:
                raise StackError(
                    f"the stack runs {state.aws['emulator']}, not {wanted}: stop it first "
                    f"(`recsys stack down`; its AWS state is saved and restored into {wanted})"
                )
            return False
        if state.aws.get("pid"):  # recorded as running, but gone: it was not stopped by `stack down`
            self.notes.append(
                f"warning: the previous {state.aws.get('emulator', 'emulator')} (pid {state.aws['pid']}) was not "
                "stopped by `recsys stack down` (killed or crashed): the S3 objects and Kinesis records it held "
                "since the last `up` are lost (only `down` saves them); PostgreSQL kept its data, so re-run "
                "`recsys train` and `recsys load-embeddings` if a model's artifacts are gone"
            )
        emulator = emulator_for(self.settings)
        port = free_port(state.aws.get("port"))
        started = emulator.start(port, self.state_dir / emulator.name, self.logs / f"{emulator.name}.log")
        state.aws = {"emulator": emulator.name, "pid": started.pid, "started": started.started, "port": port}
        return True

    def _start_postgres(self, state: StackState) -> None:
        pg = state.postgres
        if pid_alive(pg.get("pid")) and port_answers(pg["port"]):
            return
        password, created = pgembedded.read_or_create_password(self.state_dir)
        existed = (self.pg_data / "PG_VERSION").exists()
        pgembedded.init_cluster(self.pg_data, password)
        if existed and created:  # a cluster from before passwords: give it one before it listens
            pgembedded.set_password(self.pg_data, password)
        port = free_port(pg.get("port"))
        pid = pgembedded.start(self.pg_data, port, self.pg_log)
        state.postgres = {"pid": pid, "port": port, "data": str(self.pg_data)}

    def restart_postgres(self) -> None:
        """Restart the running embedded PostgreSQL on its port: shared_buffers (which a load sizes with
        ALTER SYSTEM) changes only at a server start."""
        state = self._load()
        pg = state.postgres
        if not pid_alive(pg.get("pid")):
            raise StackError("the embedded PostgreSQL is not running: `recsys stack up` starts it")
        pgembedded.stop(self.pg_data)
        _wait_gone(pg["pid"])
        pg["pid"] = pgembedded.start(self.pg_data, pg["port"], self.pg_log)
        self._save(state)

    def _check_mysql(self) -> None:
        connect_mysql(self.settings, database="").close()

    def stack_env(self, state: StackState) -> dict[str, str]:
        """The settings that point clients at this stack (and at its API, when that runs)."""
        password, _ = pgembedded.read_or_create_password(self.state_dir)
        api = {"RECSYS_API_URL": f"http://127.0.0.1:{state.api['port']}"} if pid_alive(state.api.get("pid")) else {}
        return api | {
            "RECSYS_STATE_DIR": str(self.state_dir),
            "RECSYS_EMULATOR": state.aws["emulator"],
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{state.aws['port']}",
            "AWS_DEFAULT_REGION": self.settings.region,
            **LOCAL_CREDENTIALS,
            "PGHOST": "127.0.0.1",
            "PGPORT": str(state.postgres["port"]),
            "PGUSER": "postgres",
            "PGPASSWORD": password,
            "PGDATABASE": "postgres",
            **pgembedded.memory_env(),
        }

    def _restore_aws_state(self, live: Settings, state: StackState) -> None:
        """Put the state saved by the last ``down`` into the fresh emulator; on failure stop it again."""
        try:
            restored = aws_state.restore(live, self.state_dir)
        except Exception as exc:
            self.emulator(state).stop(state.aws["pid"])
            state.aws.pop("pid", None)
            self._save(state)
            stack_env_file(self.state_dir).unlink(missing_ok=True)
            raise StackError(
                f"could not restore the AWS state saved in {aws_state.saved_dir(self.state_dir)} "
                f"({type(exc).__name__}: {exc}); it is kept: fix the cause and run `recsys stack up` "
                "again, or drop it with `recsys stack down --discard`"
            ) from exc
        if restored:
            self.notes.append(
                restored.line(f"restored (saved {restored.saved_at})", self.state_dir / aws_state.RESTORED)
            )

    def make_private(self) -> None:
        """The state dir 0700 (0701 when PostgreSQL runs as its own account, to reach pgdata and
        pglog), its files 0600 and folders 0700, ``logs/`` ours again if an older release gave it to
        the PostgreSQL account (links in it removed)."""
        private_dir(self.state_dir, passable=pgembedded.service_account() is not None)
        reclaim(self.logs)
        private_dir(self.logs)
        for entry in self.state_dir.iterdir():
            info = entry.lstat()
            if entry.name in ("pgdata", "pglog") or info.st_uid != os.geteuid():
                continue  # PostgreSQL's own (pgembedded keeps them 0700)
            if entry.is_dir() and not entry.is_symlink():
                entry.chmod(0o700)
            elif entry.is_file() and not entry.is_symlink():
                entry.chmod(0o600)

    def up(self) -> dict[str, str]:
        """Start everything not yet running, restore saved AWS state, create AWS resources and the vector extension."""
        self._check_mysql()
        state = self._load()
        self.make_private()
        if not pid_alive(state.postgres.get("pid")):
            pgembedded.preflight(self.pg_data)  # before anything starts
        try:
            fresh = self._start_emulator(state)
            self._start_postgres(state)
        finally:
            self._save(state)
        env = self.stack_env(state)
        write_private(stack_env_file(self.state_dir), "".join(f"{k}={v}\n" for k, v in env.items()))
        live = self.settings.replace(**env)
        if fresh:
            self._restore_aws_state(live, state)
        aws_resources.ensure_resources(live)
        with closing(connect_pg(live)) as conn:
            apply_roles(conn, self.role_passwords())  # the vector extension, the serving schema, the roles
        self.settings = live
        return env

    def role_passwords(self) -> dict[str, str]:
        """The database roles' passwords, generated once into the state dir (0600)."""
        return {role: pgembedded.read_or_create_password(self.state_dir, role)[0] for role in DB_ROLES}

    def pipeline_task_env(self) -> dict[str, dict[str, str]]:
        """What each pipeline task definition gives its container on AWS, for this stack: the loader role
        to the load task, the serving role to the gate task (smoke test), no database to train, and the
        roles' passwords to the dbroles task (which keeps the superuser, as the master on RDS)."""
        passwords = self.role_passwords()
        return {
            TASK_DBROLES: {PASSWORD_ENV[role]: password for role, password in passwords.items()},
            TASK_TRAIN: {"PGPASSWORD": ""},
            TASK_LOAD: {"PGUSER": DB_LOADER_ROLE, "PGPASSWORD": passwords[DB_LOADER_ROLE]},
            TASK_GATE: {"PGUSER": DB_SERVING_ROLE, "PGPASSWORD": passwords[DB_SERVING_ROLE]},
        }

    def start_api(self) -> str:
        """Start ``recsys api`` in the background on a free port (8000 when free) unless it runs;
        record it for ``status``/``down`` and its URL in ``stack.env``. Returns the URL."""
        state = self._load()
        if not state.api_running():
            port = free_port(state.api.get("port") or API_PREFERRED_PORT)
            with open_log(self.logs / "api.log") as log:
                proc = subprocess.Popen(
                    [str(Path(sys.executable).with_name("recsys")), "api", "--port", str(port)],
                    env={**os.environ, **self.settings.as_env()},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            deadline = time.monotonic() + 60
            while not port_answers(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    raise StackError(f"recsys api did not start on 127.0.0.1:{port}; see {self.logs / 'api.log'}")
                time.sleep(0.1)
            state.api = {"pid": proc.pid, "port": port}
            self._save(state)
        write_private(stack_env_file(self.state_dir), "".join(f"{k}={v}\n" for k, v in self.stack_env(state).items()))
        return f"http://127.0.0.1:{state.api['port']}"

    def _stop_api(self, state: StackState) -> list[str]:
        if not pid_alive(state.api.get("pid")):
            state.api.pop("pid", None)
            return []
        pid = state.api.pop("pid")
        os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid):
            os.kill(pid, signal.SIGKILL)
        return [f"api (pid {pid})"]

    def down(self, *, discard: bool = False, show_progress: bool = True) -> list[str]:
        """Save the emulator's AWS state (unless ``discard``), then stop, by PID, what ``up`` and
        ``start_api`` started. The PostgreSQL data folder is kept; ports are remembered for the next ``up``."""
        state = self._load()
        stopped = self._stop_api(state)
        if state.emulator_running():
            emulator = self.emulator(state)
            if discard:
                aws_state.discard(self.state_dir)
                self.notes.append("AWS state discarded: the S3 objects and Kinesis records were not saved")
            else:
                self._fence_and_save(state, emulator, show_progress)
            emulator.stop(state.aws["pid"])
            stopped.append(f"{emulator.name} (pid {state.aws['pid']})")
        else:
            if state.aws.get("pid"):
                self.notes.append(
                    f"warning: {state.aws.get('emulator', 'the emulator')} (pid {state.aws['pid']}) had "
                    "stopped without `recsys stack down`: the S3 objects and Kinesis records it held "
                    "since the last `up` are lost"
                )
            if discard and aws_state.discard(self.state_dir):
                self.notes.append("discarded the saved AWS state")
        pg = state.postgres
        if pid_alive(pg.get("pid")):
            pgembedded.stop(self.pg_data)
            if not _wait_gone(pg["pid"]):
                os.kill(pg["pid"], signal.SIGQUIT)
            stopped.append(f"postgres (pid {pg['pid']})")
        state.aws.pop("pid", None)  # the ports are kept so the next `up` reuses them when free
        state.aws.pop("started", None)
        pg.pop("pid", None)
        self._save(state)
        stack_env_file(self.state_dir).unlink(missing_ok=True)
        return stopped

    def _fence_and_save(self, state: StackState, emulator: Emulator, show_progress: bool) -> None:
        """Fence the emulator (no write accepted from now on, none in flight), then save: everything it
        acknowledged is in the save. When the save fails the fence comes down and nothing is stopped."""
        home = self.state_dir / emulator.name
        if not emulator.fence(state.aws["port"], home):
            self.notes.append(
                f"warning: {emulator.name} did not confirm its write fence: a write it acknowledges "
                "during the save may be lost (stop producers before `recsys stack down`)"
            )
        try:
            self._save_aws_state(state, show_progress)
        except StackError:
            emulator.unfence(home)
            raise

    def _save_aws_state(self, state: StackState, show_progress: bool) -> None:
        """Save before stopping; when that fails nothing is stopped, so nothing is lost."""
        live = self.settings.replace(AWS_ENDPOINT_URL=f"http://127.0.0.1:{state.aws['port']}", **LOCAL_CREDENTIALS)
        try:
            saved = aws_state.save(live, self.state_dir, emulator=state.aws["emulator"], show_progress=show_progress)
        except Exception as exc:
            raise StackError(
                f"could not save the AWS state ({type(exc).__name__}: {exc}); the stack is left running "
                "so that nothing is lost: retry `recsys stack down`, or stop it without saving with "
                "`recsys stack down --discard`"
            ) from exc
        self.notes.append(saved.line("saved", aws_state.saved_dir(self.state_dir)))

    def status(self) -> list[ServiceStatus]:
        state = self._load()
        pg = state.postgres
        s = self.settings
        try:
            self._check_mysql()
            mysql_up = True
        except SourceUnavailable:
            mysql_up = False
        emulator = self.emulator(state)
        api = (
            [
                ServiceStatus(
                    "api", state.api_running(), f"http://127.0.0.1:{state.api.get('port', '-')}", state.api.get("pid")
                )
            ]
            if state.api.get("pid")
            else []
        )
        return [
            ServiceStatus(
                emulator.name,
                state.emulator_running() and emulator.healthy(state.aws["port"]),
                f"http://127.0.0.1:{state.aws.get('port', '-')}",
                state.aws.get("pid"),
            ),
            ServiceStatus(
                "postgres",
                pid_alive(pg.get("pid")) and port_answers(pg.get("port", 0)),
                f"postgresql://postgres@127.0.0.1:{pg.get('port', '-')}/postgres",
                pg.get("pid"),
            ),
            ServiceStatus(
                "mysql", mysql_up, f"mysql://{s.mysql_user}@{s.mysql_host}:{s.mysql_port}/{s.mysql_database}"
            ),
            *api,
        ]


def _wait_gone(pid: int, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap when it is our own child
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
        local.down(discard=True, show_progress=False)
        with suppress(SourceUnavailable):
            drop_database(load_settings())
        os.environ.clear()
        os.environ.update(saved)
        if own_dir:
            shutil.rmtree(str(state_dir), ignore_errors=True)
