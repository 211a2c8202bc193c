"""The AWS API emulators the embedded stack can run, behind one interface (``RECSYS_EMULATOR``).

* ``moto``: moto's server from the project's venv (the default).
* ``localstack``: LocalStack community 4.14.0 run on the host, without Docker, from its own Python 3.13
  venv (``make install`` builds it from ``localstack/host/``), every byte of its state under the
  stack's state directory and every port it opens on 127.0.0.1.

Both run behind the write fence (``recsys.local.write_fence``) that ``stack down`` raises before it saves:
``recsys.local.moto_fenced`` and ``localstack/host/fenced_runtime.py`` wrap the servers.

Everything else (resources, delivery, ETL, trainer, loader) only sees ``AWS_ENDPOINT_URL``. How the two
differ from each other and from AWS for the calls this project makes: docs/emulators.md.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import psutil

from recsys.core.config import PROJECT_ROOT, Settings
from recsys.core.errors import StackError
from recsys.local import write_fence
from recsys.local.private_files import open_log, private_dir
from recsys.local.write_fence import FENCE_ENV, FENCE_FILE, FENCE_PATH

LOCALSTACK_HOST_FILES = PROJECT_ROOT / "localstack" / "host"
# What LocalStack serves here: the calls the project makes. DynamoDB stays out on purpose: with it,
# LocalStack's Firehose could start its own Kinesis consumer next to `recsys firehose` (docs/emulators.md).
LOCALSTACK_SERVICES = "s3,kinesis,firehose,secretsmanager,sts,iam,lambda,logs"
BLACKHOLE_PROXY = "http://127.0.0.1:9"  # discard port: LocalStack's outbound downloads fail at once


@dataclass(frozen=True)
class EmulatorProcess:
    """A started emulator: its PID, when that process was created (to recognise it later) and its port."""

    pid: int
    started: float
    port: int


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


class Emulator(ABC):
    """One AWS API emulator: how to start it on a loopback port, when it is ready, how to stop it."""

    name: str
    health_path: str
    start_timeout = 60.0

    def __init__(self, settings: Settings):
        self.settings = settings

    @abstractmethod
    def command(self, port: int) -> list[str]:
        """The command line that runs the emulator on 127.0.0.1:``port``."""

    @abstractmethod
    def environment(self, port: int, home: Path) -> dict[str, str]:
        """The emulator's environment; ``home`` is a folder of its own under the state dir."""

    def endpoint(self, port: int) -> str:
        return f"http://127.0.0.1:{port}"

    def healthy(self, port: int) -> bool:
        return http_ok(self.endpoint(port) + self.health_path)

    def fence(self, port: int, home: Path) -> bool:
        """Stop accepting writes (reads still answer) and wait for those in flight; False when the
        emulator did not confirm it."""
        fd = os.open(home / FENCE_FILE, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        os.close(fd)
        try:
            with urllib.request.urlopen(self.endpoint(port) + FENCE_PATH, timeout=60) as response:
                return response.status == 200
        except OSError:
            return False

    def unfence(self, home: Path) -> None:
        (home / FENCE_FILE).unlink(missing_ok=True)

    def start(self, port: int, home: Path, log_path: Path) -> EmulatorProcess:
        """Start detached (own session), unfenced, and wait until its health endpoint answers."""
        private_dir(home)
        self.unfence(home)
        with open_log(log_path) as log:
            proc = subprocess.Popen(
                self.command(port),
                env=self.environment(port, home),
                cwd=home,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StackError(f"{self.name} exited with {proc.returncode} at start; see {log_path}")
            if self.healthy(port):
                return EmulatorProcess(proc.pid, psutil.Process(proc.pid).create_time(), port)
            time.sleep(0.1)
        self.stop(proc.pid)
        raise StackError(
            f"{self.name} did not answer on 127.0.0.1:{port} within {self.start_timeout:.0f} s; see {log_path}"
        )

    def stop(self, pid: int, timeout: float = 30) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; children it started (kinesis-mock) go with it."""
        try:
            process = psutil.Process(pid)
            children = process.children(recursive=True)
            process.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            return
        _, alive = psutil.wait_procs([process], timeout=timeout)
        for leftover in alive:
            leftover.kill()
        _, orphans = psutil.wait_procs(children, timeout=5)
        for orphan in orphans:  # only processes the emulator started
            orphan.kill()
        _reap(pid)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):  # not our child: nothing to reap
        os.waitpid(pid, os.WNOHANG)  # when it is our own child, do not leave a zombie


class MotoServer(Emulator):
    """moto's server mode from the project's own venv."""

    name = "moto"
    health_path = "/moto-api/"
    start_timeout = 30.0

    def command(self, port: int) -> list[str]:
        return [sys.executable, "-m", "recsys.local.moto_fenced", "-H", "127.0.0.1", "-p", str(port)]

    def environment(self, port: int, home: Path) -> dict[str, str]:
        return {**os.environ, FENCE_ENV: str(home / FENCE_FILE)}


class LocalStack(Emulator):
    """LocalStack community 4.14.0 on the host: ``python -m localstack.runtime.main`` from .venv-localstack,
    started through ``localstack/host/fenced_runtime.py``, which adds the write fence (recsys is not installed there).

    This machine class (a container with ``/.dockerenv``) makes LocalStack believe it runs in Docker and
    write to /var/lib/localstack, /etc/localstack and /usr/lib/localstack: ``OVERRIDE_IN_DOCKER=0`` and
    ``FILESYSTEM_ROOT`` keep everything under ``home``. ``GATEWAY_LISTEN=127.0.0.1:port`` still binds
    0.0.0.0 (its twisted server ignores an IPv4 host), the IPv4-mapped IPv6 form binds loopback only.
    kinesis-mock (Node) has no bind option: a preload pins its two ports to 127.0.0.1. Outbound
    downloads (a JDK for Firehose's KCL consumer, Lambda's runtime) go to a closed proxy port, and the
    JDK's install folder is a file, so ``create_delivery_stream`` fails its consumer at once instead
    of retrying a download for about 9 s: ``recsys firehose`` is the consumer (docs/emulators.md).
    """

    name = "localstack"
    health_path = "/_localstack/health"

    @property
    def venv(self) -> Path:
        return self.settings.localstack_venv or PROJECT_ROOT / ".venv-localstack"

    @property
    def static_libs(self) -> Path:
        return self.venv / "static-libs"

    def check_installed(self) -> None:
        python = self.venv / "bin" / "python"
        if not python.exists() or not (self.static_libs / "kinesis-local").is_dir():
            raise StackError(
                f"LocalStack is not installed in {self.venv}: run `make install` "
                "(or localstack/host/install.sh <venv>) or set RECSYS_LOCALSTACK_VENV"
            )

    def command(self, port: int) -> list[str]:  # the port is in GATEWAY_LISTEN
        launcher = LOCALSTACK_HOST_FILES / "fenced_runtime.py"
        return [str(self.venv / "bin" / "python"), str(launcher), write_fence.__file__]

    def environment(self, port: int, home: Path) -> dict[str, str]:
        fs, tmp = home / "fs", home / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        static = fs / "usr" / "lib" / "localstack"  # where it looks for pre-installed packages
        static.parent.mkdir(parents=True, exist_ok=True)
        if not static.is_symlink():
            static.symlink_to(self.static_libs.resolve(), target_is_directory=True)
        java = fs / "var" / "lib" / "localstack" / "lib" / "java"
        java.parent.mkdir(parents=True, exist_ok=True)
        if not java.exists():
            java.write_text("recsys: no JDK here on purpose (LocalStack's Firehose must not consume Kinesis)\n")
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(home),
            "TMPDIR": str(tmp),
            "OVERRIDE_IN_DOCKER": "0",
            "FILESYSTEM_ROOT": str(fs),
            "GATEWAY_LISTEN": f"[::ffff:127.0.0.1]:{port}",
            "LOCALSTACK_HOST": f"127.0.0.1:{port}",
            "SERVICES": LOCALSTACK_SERVICES,
            "DNS_ADDRESS": "0",
            "DISABLE_EVENTS": "1",
            "SKIP_SSL_CERT_DOWNLOAD": "1",
            "OUTBOUND_HTTP_PROXY": BLACKHOLE_PROXY,
            "OUTBOUND_HTTPS_PROXY": BLACKHOLE_PROXY,
            "NODE_OPTIONS": f"--require {LOCALSTACK_HOST_FILES / 'bind-loopback.cjs'}",
            FENCE_ENV: str(home / FENCE_FILE),
        }

    def start(self, port: int, home: Path, log_path: Path) -> EmulatorProcess:
        self.check_installed()
        return super().start(port, home, log_path)


EMULATORS: dict[str, type[Emulator]] = {"moto": MotoServer, "localstack": LocalStack}


def emulator_for(settings: Settings, name: str | None = None) -> Emulator:
    """The emulator named by ``name`` (default: ``RECSYS_EMULATOR``)."""
    return EMULATORS[name or settings.emulator](settings)
