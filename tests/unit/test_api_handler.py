"""The API's Lambda entry point with Function URL events (AWS's payload 2.0) and no services:
Mangum hands them to the same FastAPI app, errors come back as problem details, and a database
that does not answer is a 503, never a crash of the function."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from recsys import contracts
from recsys.local.stack import free_port
from recsys.serving import api_handler

EVENT = json.loads((Path(__file__).parent / "events" / "function_url_request.json").read_text())


class FakeContext:
    function_name = "recsys-api"
    aws_request_id = "4e6d9f2a-6b3c-4c1e-9d0a-1f2e3d4c5b6a"


@pytest.fixture
def handler(monkeypatch):
    """The entry point with an environment that points at nothing (a closed PostgreSQL port)."""
    for name, value in {
        "PGHOST": "127.0.0.1",
        "PGPORT": str(free_port()),
        "PGUSER": "postgres",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        contracts.ENV_API_POOL_SIZE: "1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(contracts.ENV_DB_SECRET_ARN, raising=False)
    monkeypatch.setattr(api_handler, "_handler", None)
    return api_handler.lambda_handler


def request(path: str, query: str = "", method: str = "GET", body: str | None = None) -> dict:
    event = copy.deepcopy(EVENT)
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["rawQueryString"] = query
    event["queryStringParameters"] = dict(p.split("=", 1) for p in query.split("&")) if query else None
    event["requestContext"]["http"]["method"] = method
    if body is not None:
        event["body"] = body
        event["headers"]["content-type"] = "application/json"
    return event


def test_version_answers_without_a_database(handler):
    response = handler(request("/version"), FakeContext())
    assert response["statusCode"] == 200
    body = json.loads(response["body"])
    assert body["service"] == "recsys-api" and body["model_version"] is None


def test_a_database_that_does_not_answer_is_a_503_problem(handler):
    response = handler(EVENT, FakeContext())
    assert response["statusCode"] == 503
    assert response["headers"]["content-type"] == "application/problem+json"
    assert "pgvector unreachable" in json.loads(response["body"])["detail"]


def test_bad_parameters_and_bodies_are_refused_before_the_database(handler):
    response = handler(request("/customers/103/recommendations", "k=500"), FakeContext())
    assert response["statusCode"] == 400 and "k:" in json.loads(response["body"])["detail"]
    response = handler(request("/recommendations", method="POST", body="{oops"), FakeContext())
    assert response["statusCode"] == 400 and "not JSON" in json.loads(response["body"])["detail"]
    response = handler(request("/recommendations", method="POST", body='{"session_id": "s"}'), FakeContext())
    assert response["statusCode"] == 422 and "missing field" in json.loads(response["body"])["detail"]


def test_the_openapi_document_is_served_through_lambda_too(handler):
    response = handler(request("/openapi.json"), FakeContext())
    assert response["statusCode"] == 200
    assert "/customers/{customerNumber}/recommendations" in json.loads(response["body"])["paths"]


def test_a_bad_pool_size_fails_the_cold_start(handler, monkeypatch):
    monkeypatch.setenv(contracts.ENV_API_POOL_SIZE, "0")
    with pytest.raises(ValueError, match=re.escape("RECSYS_API_POOL_SIZE='0': expected an integer 1..64")):
        handler(request("/version"), FakeContext())


@pytest.mark.parametrize(
    "body, status, fragment",
    [
        ("[" * 100_000, 400, "nested too deeply"),
        ('{"session_id": "s", "customer_number": ' + "9" * 4301 + "}", 400, "4301 digits"),
        ("{" + " " * 5000 + "}", 413, "larger than 4,096 bytes"),
    ],
)
def test_function_url_bodies_have_the_same_limits(handler, monkeypatch, body, status, fragment):
    monkeypatch.setenv(contracts.ENV_API_MAX_BODY_BYTES, "4096")
    monkeypatch.setattr(api_handler, "_handler", None)
    if status == 400:
        monkeypatch.setenv(contracts.ENV_API_MAX_BODY_BYTES, str(contracts.MAX_API_MAX_BODY_BYTES))
    response = handler(request("/recommendations", method="POST", body=body), FakeContext())
    assert response["statusCode"] == status, response["body"][:300]
    assert response["headers"]["content-type"] == "application/problem+json"
    assert fragment in json.loads(response["body"])["detail"]


@pytest.mark.parametrize(
    "path, query",
    [
        ("/customers/1_03/recommendations", ""),
        ("/customers/+103/recommendations", ""),
        ("/customers/103/recommendations", "k=10.0"),
    ],
)
def test_function_url_integers_are_plain_digits(handler, path, query):
    response = handler(request(path, query), FakeContext())
    assert response["statusCode"] == 400 and "plain decimal integer" in json.loads(response["body"])["detail"]


def test_function_url_unavailable_names_no_host_or_port(handler):
    response = handler(EVENT, FakeContext())
    detail = json.loads(response["body"])["detail"]
    assert response["statusCode"] == 503 and "127.0.0.1" not in detail and detail == "pgvector unreachable"
