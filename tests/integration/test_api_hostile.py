"""The API against hostile requests, through a real HTTP client (and raw sockets where a client
would refuse to send the request) against the real server (uvicorn with the API's protocol).

Every case is decided before the database: the server's runtime points at a closed PostgreSQL port
and a closed S3 endpoint, which also shows that a 503 names no internal host or port.
"""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest
from tests.support.uvicorn_thread import serving

from recsys.apps.api_server import api_runtime
from recsys.core.config import load_settings
from recsys.local.stack import free_port
from recsys.serving.api import create_app

PROBLEM = "application/problem+json"
LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def dead_ports():
    return free_port(), free_port()


@pytest.fixture(scope="module")
def api(dead_ports):
    pg_port, s3_port = dead_ports
    settings = load_settings().replace(
        PGPORT=str(pg_port),
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{s3_port}",
        AWS_ACCESS_KEY_ID="x",
        AWS_SECRET_ACCESS_KEY="x",
    )
    with serving(create_app(api_runtime(settings, pool_size=1), LIMIT)) as port:
        yield port


@pytest.fixture(scope="module")
def client(api):
    with httpx.Client(base_url=f"http://127.0.0.1:{api}", timeout=30) as http:
        yield http


def problem(response: httpx.Response, status: int, fragment: str = "") -> dict:
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and fragment in body["detail"], body
    return body


def raw_exchange(port: int, request: bytes, read_timeout: float = 10) -> tuple[int, dict, bytes]:
    """Send raw bytes, read until the server closes or the response is complete."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        while len(body) < int(headers.get("content-length", 0)):
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return int(lines[0].split()[1]), headers, body


def event(customer="103", browse='[{"product_code": "S10_1678"}]') -> str:
    return (
        f'{{"session_id": "s", "customer_number": {customer}, "event_time": "2026-11-26T14:00:00Z", '
        f'"browse_history": {browse}}}'
    )


@pytest.mark.parametrize(
    "name, body",
    [
        ("100k [", "[" * 60_000),
        ('50k {"a":', '{"a":' * 12_000),
        ("deep inside browse_history", event(browse="[" * 20_000 + "]" * 20_000)),
        ("a 4,301-digit customer_number", event(customer="9" * 4301)),
        ("nine levels", event(browse='[{"product_code": "S10_1678", "x": [[[[[[[1]]]]]]]}]')),
        ("invalid UTF-8", '{"session_id": "\xff"}'),
    ],
)
def test_bodies_the_parser_must_not_choke_on_are_400(client, name, body):
    data = body.encode("latin-1") if name == "invalid UTF-8" else body.encode()
    assert len(data) <= LIMIT
    problem(
        client.post("/recommendations", content=data, headers={"content-type": "application/json"}),
        400,
        "request body rejected",
    )


def test_a_body_over_the_limit_is_413_by_content_length_without_reading_it(api):
    started = time.monotonic()
    status, headers, body = raw_exchange(
        api,
        b"POST /recommendations HTTP/1.1\r\nhost: x\r\n"
        b"content-type: application/json\r\ncontent-length: 10737418240\r\n\r\n",
    )
    assert status == 413 and headers["content-type"] == PROBLEM
    assert json.loads(body)["max_body_bytes"] == LIMIT
    assert time.monotonic() - started < 5  # answered without waiting for the 10 GB


def test_a_chunked_body_over_the_limit_is_413_while_streaming(client):
    sent = 0

    def chunks():
        nonlocal sent
        for _ in range(1000):  # 64 MB if the server read it all
            sent += 65536
            yield b" " * 65536

    problem(
        client.post("/recommendations", content=chunks(), headers={"content-type": "application/json"}),
        413,
        f"larger than {LIMIT:,} bytes",
    )


def test_a_body_at_the_limit_is_read(client):
    body = event().encode()
    padded = body[:-1] + b" " * (LIMIT - len(body)) + b"}"
    assert len(padded) == LIMIT
    problem(client.post("/recommendations", content=padded, headers={"content-type": "application/json"}), 503)


@pytest.mark.parametrize(
    "path",
    [
        "/customers/1_03/recommendations",
        "/customers/+103/recommendations",
        "/customers/%20103/recommendations",
        "/customers/103.0/recommendations",
        "/customers/103%20/recommendations",
        "/customers/1e3/recommendations",
        "/customers/103/recommendations?k=10.0",
        "/customers/103/recommendations?k=1_0",
        "/customers/103/recommendations?k=+5",
        "/products/S10_1678/similar?k=%205",
    ],
)
def test_integers_in_paths_and_queries_are_plain_digits(client, path):
    body = problem(client.get(path), 400, "plain decimal integer")
    assert body["errors"]


@pytest.mark.parametrize(
    "request_line",
    [
        b"GET /customers/\x00103/recommendations HTTP/1.1",
        b"GET /customers/\xc3\xa9/recommendations HTTP/1.1",
        b"GET /health HTTP/1.1\r\nbad header line",
    ],
)
def test_requests_the_server_cannot_parse_get_problem_json(api, request_line):
    status, headers, body = raw_exchange(api, request_line + b"\r\nhost: x\r\n\r\n")
    assert status == 400 and headers["content-type"] == PROBLEM
    assert json.loads(body)["status"] == 400


def test_unavailable_names_no_internal_host_or_port(client, dead_ports):
    for response in (client.get("/customers/103/recommendations"), client.get("/products/S10_1678/similar")):
        body = problem(response, 503, "pgvector unreachable")
        assert not any(str(port) in response.text for port in dead_ports) and "127.0.0.1" not in response.text, body
    health = client.get("/health")
    assert health.status_code == 503
    assert not any(str(port) in health.text for port in dead_ports) and "127.0.0.1" not in health.text, health.text
