"""docker-compose.yml checked by running its parts natively (no Docker engine here).

Each service whose command is this project's runs that command on this machine with the
environment the compose file gives it, translated to the embedded stack (service host names ->
127.0.0.1 and the stack's ports, /var/lib/recsys -> a state dir of the test's own); then its
healthcheck command, translated the same way, must turn healthy within the compose timeouts
(interval x retries) with no traffic at all. ``firehose`` is started before its delivery stream
exists (an emulator whose init hook has not run yet: an empty moto server) and must wait for it
instead of exiting. LocalStack itself cannot run here; its healthcheck runs against a stand-in of
LocalStack 4.14's ``/_localstack/init/ready`` endpoint in the states the hook goes through.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

import pytest
import yaml

from recsys.contracts import TRAINING_PREFIX
from recsys.core.config import load_settings
from recsys.local.aws_resources import ensure_resources
from recsys.local.stack import free_port
from recsys.pipeline.etl import load_job_module

pytestmark = pytest.mark.slow  # not in `make test-fast` (pytest -m 'not slow')

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
RECSYS = str(Path(sys.executable).parent / "recsys")
STATE_IN_CONTAINER = "/var/lib/recsys"
INTERPOLATION = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")
DURATION = re.compile(r"^(\d+)(ms|s|m)$")


def seconds(text: str | None, default: float) -> float:
    if not text:
        return default
    number, unit = DURATION.match(str(text)).groups()
    return int(number) * {"ms": 0.001, "s": 1, "m": 60}[unit]


def compose_env(service: str) -> dict[str, str]:
    """The service's environment as compose gives it with nothing set on the host (defaults applied)."""
    env = SERVICES[service].get("environment", {})
    return {k: INTERPOLATION.sub(lambda m: m.group(2) or "", str(v)) for k, v in env.items()}


def native_env(service: str, settings, state_dir: Path) -> dict[str, str]:
    """The compose environment with service host names and container paths replaced by this machine's."""
    translated = {
        "AWS_ENDPOINT_URL": settings.endpoint_url,
        "MYSQL_HOST": settings.mysql_host,
        "MYSQL_PORT": str(settings.mysql_port),
        "MYSQL_USER": settings.mysql_user,
        "MYSQL_PASSWORD": settings.mysql_password,
        "MYSQL_DATABASE": settings.mysql_database,
        "PGHOST": settings.pg_host,
        "PGPORT": str(settings.pg_port),
        "PGUSER": settings.pg_user,
        "PGPASSWORD": settings.pg_password,
        "PGDATABASE": settings.pg_database,
        "RECSYS_STATE_DIR": str(state_dir),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MYSQL_", "PG", "RECSYS_"))}
    for name, value in compose_env(service).items():
        if name in translated:
            env[name] = translated[name]
        else:
            assert not re.search(r"\b(localstack|mysql|postgres|moto)\b|/var/lib/recsys", value), (
                f"{service}: {name}={value!r} names a compose host or path: add it to the translation"
            )
            env[name] = value
    return env


def native_argv(argv: list[str], *, state_dir: Path, ports: dict[int, str]) -> list[str]:
    """A compose command or healthcheck, runnable here: our CLI and Python, our paths and ports."""
    out = []
    for original in argv:
        arg = RECSYS if original == "recsys" else sys.executable if original == "python3" else original
        arg = arg.replace(STATE_IN_CONTAINER, str(state_dir))
        for container_port, native in ports.items():
            arg = arg.replace(f"127.0.0.1:{container_port}", native)
        out.append(arg)
    return out


def healthcheck(service: str, *, state_dir: Path, ports: dict[int, str], env: dict[str, str]):
    """(run once -> bool, budget seconds) for the service's compose healthcheck."""
    check = SERVICES[service]["healthcheck"]
    test = list(check["test"])
    assert test[0] == "CMD", f"{service}: healthcheck must be an exec form"
    argv = native_argv(test[1:], state_dir=state_dir, ports=ports)
    timeout = seconds(check.get("timeout"), 30)

    def run() -> bool:
        try:
            return subprocess.run(argv, env=env, capture_output=True, timeout=timeout * 5, check=False).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    budget = seconds(check.get("start_period"), 0) + seconds(check.get("interval"), 30) * check.get("retries", 3)
    return run, budget


def wait_healthy(run, budget: float, process: subprocess.Popen | None = None) -> float:
    """Seconds until the check passed (polled every second); fails past ``budget`` or if the service exits."""
    started = time.monotonic()
    while time.monotonic() - started < budget:
        if run():
            return time.monotonic() - started
        if process is not None and process.poll() is not None:
            pytest.fail(f"the service exited with {process.returncode} before turning healthy:\n{read(process)}")
        time.sleep(1)
    pytest.fail(f"not healthy within {budget:g} s (the compose interval x retries)")


def stats_pid(state: Path) -> int | None:
    """The pid in the firehose service's stats file (written by a running delivery), if any."""
    try:
        return json.loads((state / "firehose" / "recsys-recommendations-delivery.stats.json").read_text()).get("pid")
    except (OSError, ValueError):
        return None


def read(process: subprocess.Popen) -> str:
    process.wait(timeout=30)
    return process.stdout.read() if process.stdout else ""


@contextmanager
def running(argv: list[str], env: dict[str, str]):
    process = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@contextmanager
def empty_moto():
    """A moto server with nothing in it: what the emulator is before its init hook ran."""
    port = free_port()
    with running([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], dict(os.environ)) as proc:
        deadline = time.monotonic() + 60
        import urllib.request

        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "moto did not start"
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"


def test_firehose_waits_for_its_delivery_stream_then_turns_healthy_without_traffic(stack, tmp_path):
    service = SERVICES["firehose"]
    with empty_moto() as endpoint:
        settings = stack.replace(AWS_ENDPOINT_URL=endpoint)
        env = native_env("firehose", settings, tmp_path / "state")
        argv = native_argv([RECSYS, *service["command"]], state_dir=tmp_path / "state", ports={})
        check, budget = healthcheck("firehose", state_dir=tmp_path / "state", ports={}, env=env)
        with running(argv, env) as process:
            time.sleep(4)  # the hook has not run: no delivery stream
            assert process.poll() is None, f"firehose exited instead of waiting:\n{read(process)}"
            assert not check(), "healthy before delivering anything"
            ensure_resources(load_settings(env))  # what LocalStack's ready hook does
            took = wait_healthy(check, budget, process)
            time.sleep(1)
            assert check(), "the heartbeat keeps it healthy"
        output = process.stdout.read()
    assert "does not exist yet; retrying" in output, output
    assert "delivering recsys-activity-events" in output, output
    print(f"firehose healthy {took:.1f} s after the delivery stream appeared (budget {budget:g} s)")


def test_firehose_healthcheck_fails_once_the_heartbeat_stops(stack, tmp_path):
    """Liveness, not a file that exists forever: a stale stats file is unhealthy."""
    stats = tmp_path / "state" / "firehose" / "recsys-recommendations-delivery.stats.json"
    stats.parent.mkdir(parents=True)
    stats.write_text("{}")
    env = native_env("firehose", stack, tmp_path / "state")
    check, _ = healthcheck("firehose", state_dir=tmp_path / "state", ports={}, env=env)
    assert check()
    old = time.time() - 120
    os.utime(stats, (old, old))
    assert not check()


def test_web_turns_healthy_without_traffic(stack, tmp_path):
    port = free_port()
    env = native_env("web", stack, tmp_path / "state")
    command = [RECSYS, *SERVICES["web"]["command"]]
    command[command.index("0.0.0.0")] = "127.0.0.1"  # in its container it must listen beyond loopback; not here
    command[command.index("8080")] = str(port)
    check, budget = healthcheck("web", state_dir=tmp_path / "state", ports={8080: f"127.0.0.1:{port}"}, env=env)
    with running(command, env) as process:
        wait_healthy(check, budget, process)


def test_tools_service_healthcheck_runs(stack, tmp_path):
    env = native_env("recsys", stack, tmp_path / "state")
    check, _ = healthcheck("recsys", state_dir=tmp_path / "state", ports={}, env=env)
    assert check()


def test_moto_service_healthcheck_against_a_real_moto(stack, tmp_path):
    host_port = stack.endpoint_url.removeprefix("http://")
    check, budget = healthcheck("moto", state_dir=tmp_path, ports={5000: host_port}, env=dict(os.environ))
    wait_healthy(check, budget)


class _InitReady(BaseHTTPRequestHandler):
    """LocalStack 4.14's GET /_localstack/init/ready (InitScriptsStageResource), in a chosen state."""

    answer: ClassVar[dict] = {}

    def do_GET(self):
        body = json.dumps(self.answer).encode()
        self.send_response(200 if self.path == "/_localstack/init/ready" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize(
    "completed, state, healthy",
    [
        (False, "RUNNING", False),  # hook still creating the delivery stream: 200, but not ready
        (True, "ERROR", False),  # hook failed: the stream may be missing
        (True, "SUCCESSFUL", True),
    ],
)
def test_localstack_healthcheck_waits_for_the_init_hook(tmp_path, completed, state, healthy):
    _InitReady.answer = {
        "completed": completed,
        "scripts": [{"stage": "READY", "name": "10-resources.sh", "state": state}],
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), _InitReady)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        check, _ = healthcheck(
            "localstack", state_dir=tmp_path, ports={4566: f"127.0.0.1:{server.server_port}"}, env=dict(os.environ)
        )
        assert check() is healthy
    finally:
        server.shutdown()
        server.server_close()


def test_glue_service_hands_the_job_arguments_it_reads():
    """The glue service itself runs only in the Glue 5.0 image (hadoop-aws for s3a, Connector/J from Maven
    Central), neither reachable here; its job runs natively in test_etl.py. What compose hands that job
    is checked against the job's own argument parser, the contract and the compose services it names."""
    glue = SERVICES["glue"]
    command = [str(arg) for arg in glue["command"]]
    script = next(i for i, arg in enumerate(command) if arg.endswith("/glue/etl_job.py"))
    job = load_job_module()
    passed = {arg[2:].split("=", 1)[0] for arg in command[script + 1 :] if arg.startswith("--")}
    assert passed <= {*job.JOB_ARGUMENTS, *job.GLUE_RESERVED_ARGUMENTS}, "arguments the job does not read"
    arguments = job.parse_arguments(command[script:])  # raises on a missing required argument
    assert arguments["target_path"] == f"s3://{load_settings({}).datalake_bucket}/{TRAINING_PREFIX}"
    source = urlsplit(arguments["source_jdbc_url"].removeprefix("jdbc:"))
    mysql_env = compose_env("mysql")
    assert (source.hostname, source.path) == ("mysql", f"/{mysql_env['MYSQL_DATABASE']}")
    assert arguments["spark_scheme"] == "s3a" and arguments["source_user"] == "root"
    # the job's default driver class is Connector/J's, which spark-submit fetches
    assert arguments["jdbc_driver"] == "com.mysql.cj.jdbc.Driver"
    assert command[command.index("--packages") + 1].startswith("com.mysql:mysql-connector-j:")
    confs = dict(command[i + 1].split("=", 1) for i, arg in enumerate(command[:script]) if arg == "--conf")
    assert confs["spark.hadoop.fs.s3a.endpoint"] == compose_env("glue")["AWS_ENDPOINT_URL"]
    assert "localstack" in SERVICES and "4566" in confs["spark.hadoop.fs.s3a.endpoint"]
    workspace = glue["working_dir"]
    for volume in glue["volumes"]:
        assert (REPO / volume.split(":")[0]).exists(), volume
    mounted = {volume.split(":")[1] for volume in glue["volumes"]}
    # the job imports recsys.contracts alone from the project (tests/unit/test_layout.py): it is mounted
    assert {f"{workspace}/src/recsys/__init__.py", f"{workspace}/src/recsys/contracts.py"} <= mounted
    assert compose_env("glue")["PYTHONPATH"] == f"{workspace}/src"


def test_make_up_builds_the_lambda_zip_first(tmp_path):
    """`make up` makes build/lambda.zip before starting anything, so LocalStack's hook gets a Lambda."""
    result = subprocess.run(
        ["make", "--dry-run", "up", f"LAMBDA_ZIP={tmp_path / 'lambda.zip'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    zip_at = next(i for i, line in enumerate(lines) if "recsys lambda-zip" in line)
    # `make images` adds --env-file build/images.env
    start_at = next(i for i, line in enumerate(lines) if re.search(r"docker compose (--env-file \S+ )?up\b", line))
    assert zip_at < start_at


def test_firehose_keeps_the_aws_state_across_an_emulator_restart(stack, tmp_path):
    """`docker compose down`/`up` gives the stack an empty emulator: the firehose service saves the S3
    objects into its volume when it stops and puts them back when it starts (--keep-aws-state)."""
    import boto3

    state = tmp_path / "state"
    argv = native_argv([RECSYS, *SERVICES["firehose"]["command"]], state_dir=state, ports={})
    key, body = "models/v-keep/model.json", b'{"kept": true}'
    for incarnation in ("before", "after"):
        with empty_moto() as endpoint:
            env = native_env("firehose", stack.replace(AWS_ENDPOINT_URL=endpoint), state)
            names = ensure_resources(load_settings(env))  # what LocalStack's ready hook does at every start
            s3 = boto3.client(
                "s3",
                endpoint_url=endpoint,
                region_name="us-east-1",
                aws_access_key_id="test",
                aws_secret_access_key="test",
            )
            bucket = names.buckets["artifacts"]
            if incarnation == "before":
                s3.put_object(Bucket=bucket, Key=key, Body=body)
            check, budget = healthcheck("firehose", state_dir=state, ports={}, env=env)
            with running(argv, env) as process:
                wait_healthy(check, budget, process)
                # the stats file left in the volume can be fresh: wait for this process's delivery (its pid
                # in the stats), which runs once the restore is complete; a stop during the restore saves
                # nothing again (the saved state is not consumed until the restore ends)
                deadline = time.monotonic() + 60
                while stats_pid(state) != process.pid:
                    assert time.monotonic() < deadline and process.poll() is None, "delivery did not start"
                    time.sleep(0.2)
                if incarnation == "after":
                    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body
                os.killpg(process.pid, signal.SIGTERM)  # as `docker compose down` does, with its grace period
                process.wait(timeout=seconds(SERVICES["firehose"].get("stop_grace_period"), 10))
            output = read(process)
            assert "saved AWS state: " in output, (incarnation, process.returncode, output)
    assert "restored (saved " in output, output
