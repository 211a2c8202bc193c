"""End to end against the Docker Compose stack, through testcontainers' Compose support.

On a Docker engine (started by docker/engine.sh when none answers and this process may start one),
with the offline image set (docker/images.sh: built from Debian + PyPI, reused by content hash), for
each emulator profile (LocalStack, the default, and ``moto``): ``up --wait`` brings every long-running
service to healthy; the one-off stages run as ``docker compose run --rm recsys ...`` (seed, ETL in
local Spark, train, load-embeddings, replay); the ``firehose`` service delivers every replayed event
through the transformation Lambda (the zip under awslambdaric in its container: no Lambda service can
run it here, docs/emulators.md) to S3, each one delivered, dropped on purpose or parked; the ``api``
service answers and the ``web`` service renders; ``down`` (volumes kept) and ``up`` keep MySQL and
PostgreSQL (the live model); the stack ends with ``down -v``. Without an engine every test is skipped
with what it needs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from recsys.contracts import STRATEGIES
from recsys.local.stack import free_port

REPO = Path(__file__).resolve().parents[2]
ENGINE = REPO / "docker" / "engine.sh"
IMAGES = REPO / "docker" / "images.sh"
EVENTS = 60
DELIVERY_STREAM = "recsys-recommendations-delivery"
STATS = f"/var/lib/recsys/firehose/{DELIVERY_STREAM}.stats.json"
AWS_CREDENTIALS = {"region_name": "us-east-1", "aws_access_key_id": "test", "aws_secret_access_key": "test"}

pytestmark = [pytest.mark.slow, pytest.mark.environment("docker")]


def _run(command: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)


def _last_line(result: subprocess.CompletedProcess) -> str:
    said = (result.stderr or result.stdout).strip().splitlines()
    return said[-1] if said else f"exit {result.returncode}"


@pytest.fixture(scope="session")
def docker_engine():
    """A Docker engine with Compose v2: the one that answers, or one docker/engine.sh starts (and stops)."""
    if shutil.which("docker") is None:
        pytest.skip("needs the docker CLI and a Docker engine (docker/engine.sh install, as root)")
    info = _run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=30)
    started = False
    if info.returncode != 0:
        if os.geteuid() != 0 or shutil.which("dockerd") is None:
            pytest.skip(
                f"needs a Docker engine: `docker info`: {_last_line(info)}; starting one needs root and "
                "dockerd (docker/engine.sh install && docker/engine.sh start)"
            )
        start = _run([str(ENGINE), "start"], timeout=120)
        assert start.returncode == 0, f"docker/engine.sh start: {start.stdout}{start.stderr}"
        started = start.stdout.startswith("started")
    version = _run(["docker", "compose", "version"], timeout=30)
    if version.returncode != 0:
        pytest.skip(f"needs Compose v2 as a docker CLI plugin (docker/engine.sh install): {_last_line(version)}")
    yield
    if started:
        _run([str(ENGINE), "stop"], timeout=120)


@pytest.fixture(scope="session")
def offline_images(docker_engine, tmp_path_factory) -> Path:
    """docker/images.sh: builds what is missing, reuses every image whose inputs did not change."""
    env_file = tmp_path_factory.mktemp("images") / "images.env"
    started = time.monotonic()
    result = subprocess.run(
        [str(IMAGES)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=3600,
        env={**os.environ, "RECSYS_IMAGES_ENV": str(env_file)},
        check=False,
    )
    assert result.returncode == 0, f"docker/images.sh:\n{result.stderr[-4000:]}"
    print(f"offline images ready in {time.monotonic() - started:.0f} s")
    return env_file


def _image_variables(env_file: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in env_file.read_text().splitlines() if line and not line.startswith("#"))


def test_state_volume_is_writable_by_the_recsys_user(offline_images):
    """A new named volume on /var/lib/recsys takes the image directory's owner: recsys, not root."""
    image = _image_variables(offline_images)["RECSYS_IMAGE"]
    volume = f"recsys-test-state-{os.getpid()}"
    try:
        result = _run(
            [
                "docker",
                "run",
                "--rm",
                "-v",
                f"{volume}:/var/lib/recsys",
                "--entrypoint",
                "sh",
                image,
                "-c",
                "id -un && mkdir -p /var/lib/recsys/firehose && touch /var/lib/recsys/firehose/probe",
            ]
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["recsys"]
    finally:
        _run(["docker", "volume", "rm", "-f", volume])


def test_project_image_loads_every_stage(offline_images):
    """Each stage's native parts load in the image (implicit's ALS needs libgomp, which slim images lack)."""
    image = _image_variables(offline_images)["RECSYS_IMAGE"]
    result = _run(
        [
            "docker",
            "run",
            "--rm",
            "--entrypoint",
            "python3",
            image,
            "-c",
            "import implicit.cpu.als, pyspark, psycopg2, pymysql, pgvector, uvicorn; print('ok')",
        ]
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


@pytest.mark.parametrize(
    "variable, user",
    [("MYSQL_IMAGE", "mysql"), ("POSTGRES_IMAGE", "postgres"), ("RECSYS_IMAGE", "recsys"), ("MOTO_IMAGE", "recsys")],
)
def test_offline_images_run_as_their_non_root_user(offline_images, variable, user):
    image = _image_variables(offline_images)[variable]
    result = _run(["docker", "run", "--rm", "--entrypoint", "id", image, "-un"])
    assert result.returncode == 0 and result.stdout.strip() == user, result.stdout + result.stderr


class Stack:
    """One compose project (testcontainers' DockerCompose) and the commands a user types against it."""

    def __init__(self, compose, ports: dict[str, int]):
        self.compose = compose
        self.ports = ports

    def run(self, *args: str, timeout: float = 900) -> str:
        command = [*self.compose.compose_command_property, *args]
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)
        assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return result.stdout

    def recsys(self, *args: str, timeout: float = 900) -> str:
        return self.run("run", "--rm", "recsys", *args, timeout=timeout)

    def aws(self, service: str):
        import boto3

        endpoint = f"http://127.0.0.1:{self.ports['MOTO_PORT' if self.profile == 'moto' else 'LOCALSTACK_PORT']}"
        return boto3.client(service, endpoint_url=endpoint, **AWS_CREDENTIALS)

    profile = "localstack"


COMPOSE_VARIABLES = set(re.findall(r"\$\{(\w+)", (REPO / "docker-compose.yml").read_text()))


@pytest.fixture(scope="module")
def compose_environment():
    """Only the env files set the compose file's variables: the session's embedded stack exports PGPORT,
    MYSQL_PORT, ... into this process (as `eval "$(recsys stack env)"` does), and a shell variable wins
    over an env file, so compose would publish its ports on the embedded stack's."""
    with pytest.MonkeyPatch.context() as patch:
        for name in COMPOSE_VARIABLES:
            patch.delenv(name, raising=False)
        yield


@pytest.fixture(scope="module", params=["localstack", "moto"])
def stack(request, offline_images, compose_environment, tmp_path_factory):
    from testcontainers.compose import DockerCompose

    from recsys.deploy.lambda_zip import build_lambda_zip

    profile = request.param
    build_lambda_zip(REPO / "build" / "lambda.zip")  # what `make up` does first
    ports = {
        name: free_port() for name in ("MYSQL_PORT", "PGPORT", "LOCALSTACK_PORT", "MOTO_PORT", "API_PORT", "WEB_PORT")
    }
    env_file = tmp_path_factory.mktemp(f"compose-{profile}") / "stack.env"
    lines = [f"{k}={v}" for k, v in ports.items()]
    if profile == "moto":
        lines.append("COMPOSE_AWS_ENDPOINT_URL=http://moto:5000")
    env_file.write_text("\n".join(lines) + "\n")
    compose = DockerCompose(
        REPO,
        compose_file_name="docker-compose.yml",
        env_file=[str(offline_images), str(env_file)],
        profiles=["moto"] if profile == "moto" else None,
        build=False,
        pull=False,
        wait=True,
    )
    stack = Stack(compose, ports)
    stack.profile = profile
    stack.run("--profile", "moto", "down", "--volumes", "--remove-orphans")  # leftovers of an interrupted run
    started = time.monotonic()
    try:
        compose.start()  # docker compose up --wait: every healthcheck must pass
        print(f"{profile}: up --wait in {time.monotonic() - started:.0f} s")
        yield stack
    finally:
        compose.stop()  # down --volumes


def _s3_lines(s3, bucket: str, *, failed: bool) -> list[bytes]:
    lines = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            if obj["Key"].startswith("processing-failed/") == failed:
                body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
                lines += [line for line in body.splitlines() if line.strip()]
    return lines


def _stats(stack: Stack) -> dict:
    return json.loads(stack.run("exec", "-T", "firehose", "cat", STATS))


def _live_model(stack: Stack) -> str:
    return stack.run(
        "exec", "-T", "postgres", "psql", "-U", "postgres", "-tAc", "SELECT version FROM live_model"
    ).strip()


def _ratings(stack: Stack) -> str:
    return stack.run(
        "exec", "-T", "mysql", "mysql", "-uroot", "-N", "-e", "SELECT COUNT(*) FROM classicmodels.ratings"
    ).strip()


def test_every_long_running_service_is_healthy(stack):
    for service in ("mysql", "postgres", "localstack", "firehose", "api", "web") + (
        ("moto",) if stack.profile == "moto" else ()
    ):
        container = stack.compose.get_container(service)
        assert container.State == "running" and container.Health == "healthy", f"{service}: {container}"


def test_the_pipeline_delivers_every_replayed_event(stack):
    stack.recsys("seed")
    stack.recsys("etl")
    stack.recsys("train")
    stack.recsys("load-embeddings")
    stack.recsys("replay", "--events", str(EVENTS), "--rate", "100", "--seed", "3")
    s3 = stack.aws("s3")
    deadline, stats = time.monotonic() + 300, {}
    while time.monotonic() < deadline:
        stats = _stats(stack)
        if stats.get("records_in", 0) >= EVENTS and stats["delivered"] + stats["dropped"] + stats["failed"] >= EVENTS:
            break
        time.sleep(3)
    assert stats["records_in"] == EVENTS, stats
    assert stats["delivered"] + stats["dropped"] + stats["failed"] == EVENTS, stats  # each one accounted for
    assert stats["delivered"] > 0, stats
    deadline = time.monotonic() + 60
    while len(delivered := _s3_lines(s3, "recsys-recommendations", failed=False)) < stats["delivered"]:
        assert time.monotonic() < deadline, f"{len(delivered)} lines in S3, {stats}"
        time.sleep(2)
    assert len(delivered) == stats["delivered"]
    assert len(_s3_lines(s3, "recsys-recommendations", failed=True)) == stats["failed"]  # parked, not lost
    assert {json.loads(line)["strategy"] for line in delivered} <= set(STRATEGIES)


def test_api_answers_and_web_renders(stack):
    import httpx

    api = f"http://127.0.0.1:{stack.ports['API_PORT']}"
    health = httpx.get(f"{api}/health", timeout=10)
    assert health.status_code == 200 and health.json()["status"] in {"ok", "degraded"}, health.text
    assert health.json()["live_model"]["status"] == "ok", health.text
    customer = int(
        stack.run(
            "exec",
            "-T",
            "mysql",
            "mysql",
            "-uroot",
            "-N",
            "-e",
            "SELECT MIN(customerNumber) FROM classicmodels.ratings",
        ).strip()
    )
    answer = httpx.get(f"{api}/customers/{customer}/recommendations", timeout=10)
    assert answer.status_code == 200 and answer.json()["items"], answer.text
    page = httpx.get(f"http://127.0.0.1:{stack.ports['WEB_PORT']}/customer/{customer}", timeout=10)
    assert page.status_code == 200 and answer.json()["items"][0]["product_code"] in page.text


def _objects(stack: Stack) -> dict[str, set[str]]:
    s3 = stack.aws("s3")
    return {
        bucket["Name"]: {
            obj["Key"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket["Name"])
            for obj in page.get("Contents", [])
        }
        for bucket in s3.list_buckets()["Buckets"]
    }


def test_down_and_up_keeps_the_data(stack):
    """MySQL and PostgreSQL in their volumes; the emulator's S3 objects saved and restored by firehose."""
    before = (_ratings(stack), _live_model(stack))
    objects = _objects(stack)
    assert int(before[0]) > 0 and before[1] and sum(map(len, objects.values())) > 0
    stack.run("down")  # volumes kept, the emulator's memory gone (testcontainers' stop() always adds --volumes)
    stack.compose.start()  # up --wait
    assert (_ratings(stack), _live_model(stack)) == before
    deadline = time.monotonic() + 120
    while (now := _objects(stack)) != objects:
        assert time.monotonic() < deadline, f"S3 after the restart differs: {now} != {objects}"
        time.sleep(2)
    import httpx

    health = httpx.get(f"http://127.0.0.1:{stack.ports['API_PORT']}/health", timeout=10).json()
    assert health["status"] == "ok" and health["live_model"]["version"] == before[1], health
