"""End to end against the Docker Compose stack, through testcontainers' Compose support.

Runs where a Docker engine answers: `docker compose up --wait` (testcontainers) must come up
healthy with no traffic, LocalStack's hook must have created the delivery stream and the python3.13
Lambda from build/lambda.zip, and events replayed into Kinesis must come out as recommendations in
S3 after the one-off stages (seed, the Glue job in AWS's Glue 5.0 image, train, load-embeddings).
Where no engine answers, every test here is skipped with the engine's own answer as the reason.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from recsys.contracts import STRATEGIES

REPO = Path(__file__).resolve().parents[2]
ENDPOINT = "http://127.0.0.1:4566"
AWS = {
    "endpoint_url": ENDPOINT,
    "region_name": "us-east-1",
    "aws_access_key_id": "test",
    "aws_secret_access_key": "test",
}


def docker_engine_problem() -> str | None:
    """Why the compose stack cannot run here, or None when a Docker engine (with compose) answers."""
    docker = shutil.which("docker")
    if docker is None:
        return "no Docker engine: the docker CLI is not on PATH"
    for label, command in (
        ("docker info", [docker, "info", "--format", "{{.ServerVersion}}"]),
        ("docker compose version", [docker, "compose", "version"]),
    ):
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
        except subprocess.TimeoutExpired:
            return f"`{label}` did not answer within 30 s"
        if result.returncode != 0:
            said = (result.stderr or result.stdout).strip().splitlines()
            return f"no Docker engine answers: `{label}`: {said[-1] if said else result.returncode}"
    return None


PROBLEM = docker_engine_problem()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.environment("docker"),
    pytest.mark.skipif(PROBLEM is not None, reason=PROBLEM or ""),
]


def compose(*args: str, timeout: float = 900) -> str:
    result = subprocess.run(
        ["docker", "compose", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"docker compose {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def compose_stack():
    from testcontainers.compose import DockerCompose

    from recsys.deploy.lambda_zip import build_lambda_zip

    build_lambda_zip(REPO / "build" / "lambda.zip")  # what `make up` does first
    stack = DockerCompose(REPO, compose_file_name="docker-compose.yml", build=True, pull=True, wait=True)
    stack.start()  # docker compose up --wait: every healthcheck must pass
    try:
        yield stack
    finally:
        stack.stop()


def test_stack_is_healthy_and_the_hook_made_the_lambda(compose_stack):
    import boto3

    lam = boto3.client("lambda", **AWS)
    deadline = time.monotonic() + 180
    while True:
        function = lam.get_function(FunctionName="recsys-model-inference")["Configuration"]
        if function["State"] != "Pending" or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert function["Runtime"] == "python3.13" and function["State"] == "Active", function
    assert boto3.client("firehose", **AWS).describe_delivery_stream(
        DeliveryStreamName="recsys-recommendations-delivery"
    )["DeliveryStreamDescription"]
    for service in ("firehose", "web", "localstack", "mysql", "postgres"):
        container = compose_stack.get_container(service)
        assert container.Health in (None, "healthy"), f"{service}: {container.Health}"


def test_events_come_out_as_recommendations(compose_stack):
    import boto3

    compose("run", "--rm", "recsys", "seed")
    compose("--profile", "etl", "run", "--rm", "glue")
    compose("run", "--rm", "recsys", "train")
    compose("run", "--rm", "recsys", "load-embeddings")
    compose("run", "--rm", "recsys", "replay", "--events", "50", "--rate", "50", "--seed", "3")
    s3 = boto3.client("s3", **AWS)
    deadline, lines = time.monotonic() + 300, []
    while time.monotonic() < deadline:
        lines = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket="recsys-recommendations"):
            for obj in page.get("Contents", []):
                if not obj["Key"].startswith("processing-failed/"):
                    body = s3.get_object(Bucket="recsys-recommendations", Key=obj["Key"])["Body"].read()
                    lines += [json.loads(line) for line in body.splitlines() if line.strip()]
        if len(lines) >= 45:
            break
        time.sleep(5)
    assert len(lines) >= 45, f"only {len(lines)} recommendations arrived"  # a few may be dropped on purpose
    assert all(line["strategy"] in STRATEGIES for line in lines)
