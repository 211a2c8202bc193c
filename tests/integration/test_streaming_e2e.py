"""Streaming end to end on the real stack: MariaDB source, moto (S3, Kinesis, Firehose API,
Secrets Manager), embedded PostgreSQL + pgvector, the Lambda zip under awslambdaric.

Tests share one Kinesis stream and one checkpoint; each identifies its own events by session id.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from tests.support.fixtures_streaming import deliver, read_delivered, session_of

from recsys.apps.replay import OutgoingRecord, events_to_records, send_records
from recsys.apps.source import source_catalogue
from recsys.core.config import load_settings
from recsys.local.firehose.delivery import build_delivery
from recsys_seed import synthesize_events

pytestmark = pytest.mark.slow  # not in `make test-fast` (pytest -m 'not slow')

OK_KEY = re.compile(r"^\d{4}/\d{2}/\d{2}/\d{2}/recsys-recommendations-delivery-1-\d{4}(-\d{2}){5}-[0-9a-f-]{36}$")
ERROR_KEY = re.compile(r"^processing-failed/\d{4}/\d{2}/\d{2}/\d{2}/recsys-recommendations-delivery-1-")


@pytest.fixture(scope="module")
def catalogue(stack, seeded):
    return source_catalogue(stack)


def test_lambda_zip_is_reproducible_and_within_limits(streaming_zip, tmp_path):
    from recsys.deploy.lambda_zip import build_lambda_zip

    again = build_lambda_zip(tmp_path / "lambda.zip", force_dependencies=True)  # fresh pip install
    assert again.path.read_bytes() == streaming_zip.read_bytes()
    assert again.zip_bytes < 50 * 2**20 and again.unzipped_bytes < 250 * 2**20
    names = zipfile.ZipFile(streaming_zip).namelist()
    assert names == sorted(names) and "recsys/serving/handler.py" in names and "numpy/__init__.py" in names
    assert not any("__pycache__" in n or n.startswith(("boto3/", "bin/")) for n in names)


def test_every_event_is_accounted_for_and_recommendations_are_real(stack, streaming_model, streaming_zip, catalogue):
    events = synthesize_events(catalogue, 150, new_customer_fraction=0.2, empty_history_fraction=0.15, seed=11)
    heartbeat = {**events[0], "session_id": str(uuid.uuid4()), "event_type": "heartbeat"}
    anonymous = {**events[1], "session_id": str(uuid.uuid4()), "customer_number": None, "browse_history": []}
    marker = uuid.uuid4().hex
    malformed = [
        f"not json {marker}".encode(),
        json.dumps({"session_id": f"bad-{marker}"}).encode(),
        json.dumps({**events[2], "session_id": f"badtype-{marker}", "customer_number": "103"}).encode(),
    ]
    records = events_to_records(events + [heartbeat, anonymous]) + [OutgoingRecord(m, marker) for m in malformed]
    sent = send_records(stack, records)
    assert sent.sent == len(records) == 155

    stats = deliver()
    out = read_delivered(stack)
    assert stats.records_in == stats.delivered + stats.dropped + stats.failed == 155
    assert (stats.delivered, stats.dropped, stats.failed) == (150, 2, 3)
    assert out.ok_keys and all(OK_KEY.match(k) for k in out.ok_keys)
    assert all(ERROR_KEY.match(k) for k in out.error_keys)

    by_session = {r["session_id"]: r for r in out.recommendations}
    assert set(by_session) >= {e["session_id"] for e in events}
    parked = out.error_raw()
    assert set(malformed) <= set(parked)
    failed_lines = [e for e in out.errors if base64.b64decode(e["rawData"]) in malformed]
    assert {e["errorCode"] for e in failed_lines} == {"Lambda.ProcessingFailedStatus"}
    assert all(
        set(e) >= {"attemptsMade", "arrivalTimestamp", "errorMessage", "attemptEndingTimestamp", "lambdaArn"}
        for e in failed_lines
    )
    assert not {heartbeat["session_id"], anonymous["session_id"]} & set(by_session)

    codes = set(streaming_model.product_codes)
    strategies = {}
    for event in events:
        rec = by_session[event["session_id"]]
        browsed = {b["product_code"] for b in event["browse_history"]}
        expected = streaming_model.expected_strategy(event)
        assert rec["strategy"] == expected
        strategies[expected] = strategies.get(expected, 0) + 1
        assert rec["model_version"] == streaming_model.version
        assert rec["customer_number"] == event["customer_number"]
        items = [i["product_code"] for i in rec["recommended_items"]]
        assert len(items) == 10 and len(set(items)) == 10 and set(items) <= codes
        assert not set(items) & browsed
        similar = [i["product_code"] for i in rec["similar_items"]]
        assert (len(similar) == 10) == bool(browsed) and not set(similar) & browsed
        scores = [i["score"] for i in rec["recommended_items"]]
        if rec["strategy"] != "popular_fallback":
            assert scores == sorted(scores, reverse=True)
    # a stored vector, a vector folded in from a browse history, and an empty-handed new customer
    assert "known_customer" in strategies and len(strategies) == 3, strategies


def test_recommendations_follow_the_planted_tastes(stack, streaming_model, streaming_zip, catalogue):
    """Folded-in and known customers get items they truly like more than the catalogue average."""
    from recsys.core.db import connect_mysql
    from recsys_seed import planted_truth, source_spec

    conn = connect_mysql(stack)
    truth = planted_truth(source_spec(conn))
    conn.close()
    events = synthesize_events(catalogue, 60, new_customer_fraction=0.0, empty_history_fraction=0.0, seed=5)
    send_records(stack, events_to_records(events))
    deliver()
    by_session = {r["session_id"]: r for r in read_delivered(stack).recommendations}
    column = {code: j for j, code in enumerate(truth.product_codes)}
    lifts = []
    for event in events:
        affinity = truth.affinity(truth.customer_index[event["customer_number"]])
        record = by_session[event["session_id"]]
        recommended = [column[i["product_code"]] for i in record["recommended_items"]]
        if not recommended:  # a known customer who rated every product the session did not show
            assert record["fewer_than_k"] is True
            continue
        lifts.append(affinity[recommended].mean() - affinity.mean())
    assert np.mean(lifts) > 0.5, f"mean affinity lift {np.mean(lifts):.2f}"


@pytest.mark.parametrize(
    "handler, error_code",
    [
        ("broken.drops_a_record_id", "Lambda.MissingRecordId"),
        ("broken.duplicates_a_record_id", "Lambda.DuplicatedRecordId"),
        ("broken.invents_a_record_id", "Lambda.MissingRecordId"),
        ("broken.bad_result", "Lambda.JsonProcessingException"),
        ("broken.bad_base64", "Lambda.JsonProcessingException"),
        ("broken.raises", "Lambda.FunctionError"),
    ],
)
def test_a_broken_handler_fails_the_invocation_after_retries(
    stack, catalogue, streaming_handlers_dir, handler, error_code
):
    events = synthesize_events(catalogue, 7)  # fresh session ids per case
    send_records(stack, events_to_records(events))
    stats = deliver(code_dir=streaming_handlers_dir, handler=handler)
    assert stats.records_in == stats.failed == 7 and stats.delivered == 0
    assert stats.failed_invocations == stats.invocations == 4  # NumberOfRetries = 3
    ours = {e["session_id"] for e in events}
    parked = [e for e in read_delivered(stack).errors if session_of(base64.b64decode(e["rawData"])) in ours]
    assert len(parked) == 7
    assert {e["errorCode"] for e in parked} == {error_code} and {e["attemptsMade"] for e in parked} == {4}
    if handler == "broken.raises":
        assert "handler blew up on purpose" in parked[0]["errorMessage"]


def test_database_outage_parks_records_and_redrive_sends_them_once(stack, streaming_model, streaming_zip, catalogue):
    from recsys.apps.redrive import redrive
    from recsys.local import pgembedded
    from recsys.local.stack import EmbeddedStack

    local = EmbeddedStack(stack)
    state = json.loads(local.state_file.read_text())["postgres"]
    delivery = build_delivery(load_settings())
    try:
        assert delivery.run(until_idle=0.5).failed == 0  # warm: connection open, model cached
        outage_started = datetime.now(UTC).replace(microsecond=0)
        pgembedded.stop(local.pg_data)
        during = synthesize_events(catalogue, 20, new_customer_fraction=0.0, seed=21)
        send_records(stack, events_to_records(during))
        outage = delivery.run(until_idle=1.5)  # stats are cumulative for the delivery's lifetime
        delivered_before = outage.delivered
        assert outage.failed == 20 and outage.delivered == 0
        parked_raw = [
            raw for raw in read_delivered(stack).error_raw() if session_of(raw) in {e["session_id"] for e in during}
        ]
        assert len(parked_raw) == 20

        new_pid = pgembedded.start(local.pg_data, state["port"], local.pg_log)
        full = json.loads(local.state_file.read_text())  # so the session's `stack down` stops the new server
        full["postgres"]["pid"] = new_pid
        local.state_file.write_text(json.dumps(full, indent=2))
        after = synthesize_events(catalogue, 10, seed=22)
        send_records(stack, events_to_records(after))
        # recovery: new events, and the parked ones re-driven from the error prefix
        first = redrive(load_settings(), since=outage_started)
        assert (first.redriven, first.already_redriven, first.unreadable) == (20, 0, 0)
        recovered = delivery.run(until_idle=1.5)
    finally:
        delivery.close()
    assert recovered.delivered - delivered_before == 30 and recovered.failed == 20
    lines = [r["session_id"] for r in read_delivered(stack).recommendations]
    assert all(lines.count(e["session_id"]) == 1 for e in during + after)  # delivered, each once
    again = subprocess.run(
        [
            str(Path(sys.executable).parent / "recsys"),
            "redrive",
            "--since",
            outage_started.strftime("%Y-%m-%dT%H:%M:%S"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    assert ": 0 redriven, 20 skipped as already redriven, 0 unreadable" in again.stdout  # a no-op


def test_sigkill_mid_stream_then_restart_loses_nothing(stack, streaming_model, streaming_zip, catalogue):
    env = {**os.environ, "RECSYS_BUFFER_SECONDS": str(stack.buffer_seconds)}
    cmd = [str(Path(sys.executable).parent / "recsys"), "firehose", "--poll-interval", "0.1"]
    events = synthesize_events(catalogue, 400, seed=31)
    ours = {e["session_id"] for e in events}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        send_records(stack, events_to_records(events[:200]), rate=400)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # kill once part of the stream is delivered
            if len(ours & {r["session_id"] for r in read_delivered(stack).recommendations}) >= 50:
                break
            time.sleep(0.2)
        send_records(stack, events_to_records(events[200:300]))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    before_restart = ours & {r["session_id"] for r in read_delivered(stack).recommendations}
    assert 50 <= len(before_restart) < 300

    send_records(stack, events_to_records(events[300:]))
    restarted = subprocess.run(
        cmd + ["--until-idle", "2"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert "delivered=" in restarted.stdout
    lines = [r for r in read_delivered(stack).recommendations if r["session_id"] in ours]
    assert {r["session_id"] for r in lines} == ours  # nothing lost
    duplicates = len(lines) - len(ours)
    assert duplicates <= 200  # at most the one S3 flush written before its checkpoint


def test_lambda_reads_db_credentials_from_secrets_manager_and_switches_models(stack, streaming_model, monkeypatch):
    """In-process handler: the RDS-style secret, and a new serving pointer picked up after the TTL."""
    from aws_lambda_powertools.utilities.data_classes import KinesisFirehoseEvent
    from tests.support.fixtures_streaming import train_and_publish

    from recsys.core import aws
    from recsys.serving import handler

    secret = aws.client("secretsmanager", stack).create_secret(
        Name=f"rds-{uuid.uuid4().hex[:8]}",
        SecretString=json.dumps(
            {
                "username": stack.pg_user,
                "password": stack.pg_password,
                "host": stack.pg_host,
                "port": int(stack.pg_port),
            }
        ),
    )
    monkeypatch.setenv("RECSYS_DB_SECRET_ARN", secret["ARN"])
    monkeypatch.setenv("PGHOST", "127.0.0.1")
    monkeypatch.setenv("PGPORT", "1")  # a closed port: only the secret's host/port can work
    runtime = handler.ServingRuntime(handler.HandlerConfig(stack.artifacts_bucket, 0.0, 5))

    def invoke() -> dict:
        data = base64.b64encode(
            json.dumps(
                {
                    "session_id": "s",
                    "customer_number": streaming_model.customer_numbers[0],
                    "event_time": "2026-11-26T14:00:00Z",
                    "browse_history": [],
                }
            ).encode()
        )
        event = {
            "invocationId": "i",
            "records": [{"recordId": "r1", "data": data.decode(), "approximateArrivalTimestamp": 0}],
        }
        response = handler.transform(KinesisFirehoseEvent(event), runtime).asdict()["records"]
        assert [r["result"] for r in response] == ["Ok"]
        return json.loads(base64.b64decode(response[0]["data"]))

    first = invoke()
    assert first["model_version"] == streaming_model.version and len(first["recommended_items"]) == 5
    newer = train_and_publish(stack, seed=99)
    second = invoke()
    assert second["model_version"] == newer.version != first["model_version"]


def test_localstack_init_hook_creates_resources_and_the_lambda(stack, streaming_zip, repo_root):
    """The LocalStack ready hook, run against this stack's moto: same resources, plus the Lambda from the zip."""
    from recsys.core import aws

    env = {
        **os.environ,
        "RECSYS_ROOT": str(repo_root),
        "RECSYS_LAMBDA_ZIP": str(streaming_zip),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    hook = repo_root / "localstack" / "init" / "ready.d" / "10-resources.sh"
    result = subprocess.run([str(hook)], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "resources ready" in result.stdout
    function = aws.client("lambda", stack).get_function(FunctionName=stack.lambda_function)["Configuration"]
    assert function["Handler"] == "recsys.serving.handler.lambda_handler" and function["Runtime"] == "python3.13"
    assert function["Environment"]["Variables"]["PGHOST"] == os.environ["PGHOST"]
    assert function["Role"].endswith(":role/recsys-lambda")  # the hook made the role moto insists on
