"""Credential rotation while serving: the password of the serving role changes on the real embedded
PostgreSQL and in the emulator's Secrets Manager (as RDS rotates its managed secret), and every open
session is cut, in the middle of a Firehose delivery and of an API load.

Nothing may be lost (every record ``Ok``), and the API keeps answering without a restart: a refused
reconnect re-reads the secret once (``recsys.serving.database.ConnectParams``).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import secrets
import threading
import time
import uuid

import httpx
import psycopg2
import pytest
from tests.support.uvicorn_thread import serving

from recsys.apps.api_server import api_runtime
from recsys.core import aws
from recsys.serving.api import create_app


@dataclasses.dataclass
class RotatingRole:
    """A login role of the stack's PostgreSQL whose credentials live in an emulator secret."""

    stack: object
    name: str
    secret_arn: str
    rotated_at: float | None = None

    def _admin(self, sql: str, *args) -> list:
        conn = psycopg2.connect(connect_timeout=5, **self.stack.pg_params())
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def secret_string(self, password: str) -> str:
        return json.dumps(
            {
                "username": self.name,
                "password": password,
                "host": self.stack.pg_host,
                "port": int(self.stack.pg_port),
                "dbname": self.stack.pg_database,
            }
        )

    def rotate(self) -> int:
        """New password on the server and in the secret, then every session of the role cut; returns
        how many sessions were cut."""
        password = secrets.token_urlsafe(18)
        self._admin(f'ALTER ROLE "{self.name}" PASSWORD %s', password)
        aws.client("secretsmanager", self.stack).put_secret_value(
            SecretId=self.secret_arn, SecretString=self.secret_string(password)
        )
        cut = self._admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", self.name)
        self.rotated_at = time.monotonic()
        return len(cut)


@pytest.fixture
def rotating_role(stack, streaming_model):
    name = f"rotating_{uuid.uuid4().hex[:8]}"
    password = secrets.token_urlsafe(18)
    role = RotatingRole(stack, name, "")
    role._admin(f'CREATE ROLE "{name}" LOGIN PASSWORD %s', password)
    role._admin(f'GRANT pg_read_all_data TO "{name}"')
    role.secret_arn = aws.client("secretsmanager", stack).create_secret(
        Name=f"rds-rotating-{name}", SecretString=role.secret_string(password)
    )["ARN"]
    yield role
    role._admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", name)
    role._admin(f'DROP ROLE "{name}"')


def _firehose_event(batch: int, customers: list[int], size: int):
    from aws_lambda_powertools.utilities.data_classes import KinesisFirehoseEvent

    records = []
    for i in range(size):
        event = {
            "session_id": f"rot-{batch}-{i}",
            "customer_number": customers[(batch * size + i) % len(customers)],
            "event_time": "2026-11-26T14:00:00Z",
            "browse_history": [],
        }
        records.append(
            {
                "recordId": f"{batch}-{i}",
                "data": base64.b64encode(json.dumps(event).encode()).decode(),
                "approximateArrivalTimestamp": 0,
            }
        )
    return KinesisFirehoseEvent({"invocationId": str(batch), "records": records})


def test_a_rotation_during_delivery_loses_nothing(stack, streaming_model, rotating_role, monkeypatch):
    """The transformation Lambda's code (in process) serves batch after batch while the password rotates."""
    from recsys.serving import handler

    monkeypatch.setenv("RECSYS_DB_SECRET_ARN", rotating_role.secret_arn)
    monkeypatch.setenv("PGPORT", "1")  # a closed port: only the secret's host/port and credentials can work
    runtime = handler.ServingRuntime(handler.HandlerConfig(stack.artifacts_bucket, 60.0, 5))
    results: list[str] = []
    batches, size = 40, 25
    rotator = threading.Timer(0.0, lambda: None)
    for batch in range(batches):
        if batch == batches // 2:  # mid-delivery, concurrently with the next batches
            rotator = threading.Thread(target=rotating_role.rotate)
            rotator.start()
        response = handler.transform(_firehose_event(batch, streaming_model.customer_numbers, size), runtime)
        results += [r["result"] for r in response.asdict()["records"]]
    rotator.join()
    # one more batch after the rotation surely finished: served with the new password
    response = handler.transform(_firehose_event(batches, streaming_model.customer_numbers, size), runtime)
    results += [r["result"] for r in response.asdict()["records"]]
    delivered, lost = results.count("Ok"), len(results) - results.count("Ok")
    print(f"\nrotation during delivery: {delivered} records Ok, {lost} not Ok of {len(results)}")
    assert rotating_role.rotated_at is not None
    assert (delivered, lost) == ((batches + 1) * size, 0)


def test_the_api_recovers_from_a_rotation_without_a_restart(stack, streaming_model, rotating_role):
    """`recsys api`'s app on uvicorn, reading the secret like the Lambda, under load from two clients."""
    settings = dataclasses.replace(stack, db_secret_arn=rotating_role.secret_arn, pg_port=1)
    customers = streaming_model.customer_numbers
    outcomes: list[tuple[float, int]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load(port: int, worker: int) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            n = worker
            while not stop.is_set():
                n += 1
                status = client.get(f"/customers/{customers[n % len(customers)]}/recommendations?k=5").status_code
                with lock:
                    outcomes.append((time.monotonic(), status))

    with serving(create_app(api_runtime(settings, pool_size=4))) as port:
        workers = [threading.Thread(target=load, args=(port, w)) for w in range(2)]
        for worker in workers:
            worker.start()
        time.sleep(2.0)
        cut = rotating_role.rotate()
        time.sleep(3.0)
        stop.set()
        for worker in workers:
            worker.join(15)
    ok = sum(1 for _, status in outcomes if status == 200)
    failed = len(outcomes) - ok
    after = [(t, s) for t, s in outcomes if t > rotating_role.rotated_at]
    first_ok = next(t for t, s in after if s == 200)
    print(
        f"\nrotation under API load: {ok} requests ok, {failed} failed, {cut} sessions cut, "
        f"first 200 {1000 * (first_ok - rotating_role.rotated_at):.0f} ms after the rotation"
    )
    assert cut >= 1, "the load held sessions of the rotating role"
    assert after and all(s == 200 for _, s in after[-20:]), "recovered without a restart"
    assert failed == 0, sorted({s for _, s in outcomes})
