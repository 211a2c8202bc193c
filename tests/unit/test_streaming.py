"""Streaming pieces that need no stack: event validation, the contract checker, prefixes, the
producer's batching/retries/pacing, and the Lambda Runtime API server with real awslambdaric."""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import shutil
import stat
import subprocess
import time
from datetime import UTC, datetime

import pytest

from recsys.apps.replay import MAX_BATCH_RECORDS, OutgoingRecord, RateLimiter, ReplaySummary, batches, put_with_retries
from recsys.local.firehose.config import DeliveryConfig
from recsys.local.firehose.prefixes import expand_prefix, object_key
from recsys.local.firehose.transformation import ContractViolation, validate_response
from recsys.local.lambda_runtime import LocalLambda
from recsys.serving.events import InvalidEvent, parse_event
from recsys_seed import POISON_KINDS, poison_record

VALID = {
    "session_id": "s-1",
    "customer_number": 103,
    "city": "Nantes",
    "country": "France",
    "credit_limit": 21000.0,
    "event_time": "2026-11-26T14:00:00Z",
    "browse_history": [{"product_code": "S10_1678", "quantity": 2, "in_shopping_cart": True}],
}


def _with(**changes) -> bytes:
    event = {**VALID, **changes}
    return json.dumps({k: v for k, v in event.items() if v is not ...}).encode()


# -- event validation ----------------------------------------------------------------------------
def test_valid_event_parses_to_typed_record():
    event = parse_event(_with())
    assert event.customer_number == 103
    assert event.browse_history[0].product_code == "S10_1678"
    assert event.browse_history[0].engagement == 4.0
    assert event.anchor_item() == "S10_1678"
    assert not event.is_droppable


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (_with(session_id=...), "missing field 'session_id'"),
        (_with(session_id=""), "session_id' is empty"),
        (_with(customer_number="103"), "'customer_number' must be int"),
        (_with(customer_number=True), "'customer_number' must be int"),
        (_with(browse_history="S10_1678"), "'browse_history' must be list"),
        (_with(browse_history=[{"quantity": 1}]), "browse_history[0]: missing field 'product_code'"),
        (_with(browse_history=[{"product_code": "A", "quantity": 0}]), "'quantity' must be 1..1,000,000, got 0"),
        (_with(browse_history=[{"product_code": "A", "in_shopping_cart": "yes"}]), "true or false"),
        (_with(event_time="yesterday"), "ISO-8601"),
        (_with(credit_limit="lots"), "'credit_limit' must be int or float"),
    ],
)
def test_malformed_events_are_rejected_with_the_reason(data, reason):
    with pytest.raises(InvalidEvent, match=re.escape(reason)):
        parse_event(data)


@pytest.mark.parametrize("kind", POISON_KINDS)
def test_poison_records_are_rejected_not_raised(kind):
    """Validation is total: each adversarial record is an ``InvalidEvent``, never another exception."""
    with pytest.raises(InvalidEvent):
        parse_event(poison_record(kind))


@pytest.mark.parametrize(
    "data, reason",
    [
        (_with(customer_number=2**31), "'customer_number' must be 1..2,147,483,647"),
        (_with(customer_number=0), "'customer_number' must be 1..2,147,483,647"),
        (_with(session_id="s" * 257), "'session_id' has 257 characters (at most 256)"),
        (_with(city="Nan\x00tes"), "'city' contains the character U+0000"),
        (_with(browse_history=[{"product_code": "A"}] * 501), "'browse_history' has 501 items (at most 500)"),
        (_with(browse_history=[{"product_code": "A", "quantity": 10**7}]), "'quantity' must be 1..1,000,000"),
        (_with(credit_limit=1e300), "'credit_limit' must be 0..99,999,999.99"),
        (_with(extra=[[[[[[[[1]]]]]]]]), "nested deeper than 8 levels"),
        (b"{" + b" " * (1024 * 1024) + b"}", "at most 1,048,576"),
    ],
)
def test_limits_name_the_field_and_the_range(data, reason):
    with pytest.raises(InvalidEvent, match=re.escape(reason)):
        parse_event(data)


def test_values_at_the_limits_are_accepted():
    event = parse_event(
        _with(
            customer_number=2**31 - 1,
            session_id="s" * 256,
            credit_limit=99_999_999.99,
            browse_history=[{"product_code": "A", "quantity": 1_000_000}] * 500,
            extra=[[[[[[1]]]]]],
        )
    )
    assert event.customer_number == 2**31 - 1 and len(event.browse_history) == 500


def test_dropped_rule_heartbeats_and_anonymous_empty_events():
    assert parse_event(_with(event_type="heartbeat")).is_droppable
    assert parse_event(_with(customer_number=None, browse_history=[])).is_droppable
    assert not parse_event(_with(customer_number=None)).is_droppable  # history: fold-in
    assert not parse_event(_with(browse_history=[])).is_droppable  # a known customer still gets recommendations


# -- the transformation contract -----------------------------------------------------------------
def _response(*records) -> bytes:
    return json.dumps({"records": list(records)}).encode()


_DATA = base64.b64encode(b"x\n").decode()


def _rec(record_id, result="Ok", data=_DATA):
    return {"recordId": record_id, "result": result, "data": data}


def test_contract_accepts_every_id_once():
    out = validate_response(_response(_rec("a"), _rec("b", "Dropped"), _rec("c", "ProcessingFailed")), ["a", "b", "c"])
    assert {k: v.result for k, v in out.items()} == {"a": "Ok", "b": "Dropped", "c": "ProcessingFailed"}
    assert out["a"].data == b"x\n"


@pytest.mark.parametrize(
    "payload, code",
    [
        (_response(_rec("a")), "Lambda.MissingRecordId"),
        (_response(_rec("a"), _rec("b"), _rec("zzz")), "Lambda.MissingRecordId"),
        (_response(_rec("a"), _rec("a"), _rec("b")), "Lambda.DuplicatedRecordId"),
        (_response(_rec("a", "Maybe"), _rec("b")), "Lambda.JsonProcessingException"),
        (_response(_rec("a", data="%%%"), _rec("b")), "Lambda.JsonProcessingException"),
        (_response({"recordId": "a", "result": "Ok"}, _rec("b")), "Lambda.JsonProcessingException"),
        (b"[]", "Lambda.JsonProcessingException"),
        (b"not json", "Lambda.JsonProcessingException"),
    ],
)
def test_contract_violations_fail_the_whole_invocation(payload, code):
    with pytest.raises(ContractViolation) as caught:
        validate_response(payload, ["a", "b"])
    assert caught.value.code == code


# -- prefixes and object names -------------------------------------------------------------------
def _config(**overrides) -> DeliveryConfig:
    base = dict(
        name="recsys-recommendations-delivery",
        arn="arn:aws:firehose:us-east-1:123:deliverystream/x",
        version_id="1",
        source_stream_arn="arn:aws:kinesis:us-east-1:123:stream/s",
        bucket="b",
        prefix="!{timestamp:yyyy/MM/dd/HH}/",
        error_prefix="!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd/HH}/",
        s3_buffer_bytes=1 << 20,
        s3_buffer_seconds=1,
        lambda_arn="arn:aws:lambda:us-east-1:123:function:f",
        lambda_buffer_bytes=1 << 20,
        lambda_buffer_seconds=1,
        retries=3,
    )
    return DeliveryConfig(**{**base, **overrides})


def test_prefix_expansion_and_firehose_object_names():
    moment = datetime(2026, 11, 26, 7, 5, 9, tzinfo=UTC)
    assert expand_prefix("!{timestamp:yyyy/MM/dd/HH}/", moment) == "2026/11/26/07/"
    assert (
        expand_prefix("!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd/HH}/", moment, "processing-failed")
        == "processing-failed/2026/11/26/07/"
    )
    assert expand_prefix("recs/", moment) == "recs/2026/11/26/07/"  # Firehose's default time prefix
    key = object_key(_config(), moment)
    assert re.fullmatch(r"2026/11/26/07/recsys-recommendations-delivery-1-2026-11-26-07-05-09-[0-9a-f-]{36}", key)
    assert object_key(_config(), moment, "processing-failed").startswith("processing-failed/2026/11/26/07/")


def test_delivery_config_from_the_api_description():
    from recsys.local.aws_resources import ResourceNames, delivery_stream_definition

    names = ResourceNames("us-east-1", "123456789012", {"recommendations": "recs"}, "events", "delivery", "fn")
    d = delivery_stream_definition(names, 2)
    dest = d["ExtendedS3DestinationConfiguration"]
    description = {
        "DeliveryStreamName": "delivery",
        "DeliveryStreamARN": "arn:aws:firehose:us-east-1:1:deliverystream/delivery",
        "VersionId": "1",
        "Source": {"KinesisStreamSourceDescription": d["KinesisStreamSourceConfiguration"]},
        "Destinations": [{"ExtendedS3DestinationDescription": dest}],
    }
    config = DeliveryConfig.from_description(description)
    assert config.source_stream_name == "events" and config.bucket == "recs"
    assert config.lambda_arn == names.function_arn and config.retries == 3
    assert config.lambda_buffer_seconds == 2 and config.s3_buffer_seconds == 2
    assert config.lambda_buffer_bytes == 1 << 20


# -- producer ------------------------------------------------------------------------------------
def test_batches_respect_record_and_byte_limits():
    small = [OutgoingRecord(b"x" * 10, f"k{i}") for i in range(1201)]
    assert [len(b) for b in batches(small)] == [MAX_BATCH_RECORDS, MAX_BATCH_RECORDS, 201]
    big = [OutgoingRecord(b"x" * (900 * 1024), f"k{i}") for i in range(12)]
    sizes = [sum(r.size for r in b) for b in batches(big)]
    assert all(s <= 5 * 1024 * 1024 for s in sizes) and sum(len(b) for b in batches(big)) == 12


class FlakyKinesis:
    """A put_records stub failing chosen records on the first tries (moto cannot fail on demand)."""

    def __init__(self, fail_rounds: int):
        self.fail_rounds = fail_rounds
        self.calls = 0
        self.accepted: list[bytes] = []

    def put_records(self, StreamName, Records):
        self.calls += 1
        results = []
        for i, record in enumerate(Records):
            if self.calls <= self.fail_rounds and i % 3 == 0:
                results.append({"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow down"})
            else:
                self.accepted.append(record["Data"])
                results.append({"SequenceNumber": str(len(self.accepted)), "ShardId": "shardId-000000000000"})
        return {"FailedRecordCount": sum("ErrorCode" in r for r in results), "Records": results}


def test_partial_failures_are_retried_without_loss_or_duplicates():
    records = [OutgoingRecord(f"event-{i}".encode(), f"s{i}") for i in range(100)]
    kinesis, summary, sleeps = FlakyKinesis(fail_rounds=2), ReplaySummary(), []
    put_with_retries(kinesis, "stream", records, summary, sleep=sleeps.append)
    assert sorted(kinesis.accepted) == sorted(r.data for r in records)  # each exactly once
    assert summary.sent == 100 and summary.put_calls == 3
    assert summary.retried_records == 34 + 12
    assert sleeps == [0.1, 0.2]  # exponential backoff


def test_records_that_never_succeed_raise_and_say_how_many():
    from recsys.core.errors import PipelineError

    # the stub fails the first record of every call: one record never gets through
    with pytest.raises(PipelineError, match="1 records still failed after 8 PutRecords attempts; 8 were sent"):
        put_with_retries(
            FlakyKinesis(fail_rounds=99), "s", [OutgoingRecord(b"x", "k")] * 9, ReplaySummary(), sleep=lambda s: None
        )


def test_file_records_keep_partition_keys_valid_and_check_the_whole_file_first(tmp_path):
    from recsys.apps.replay import file_records
    from recsys.core.errors import PipelineError

    path = tmp_path / "events.jsonl"
    lines = [_with(session_id="s-ok"), _with(session_id="x" * 300), poison_record("deep_nesting"), b"not json"]
    path.write_bytes(b"\n".join(lines) + b"\n")
    records = file_records(path)
    assert [r.data for r in records] == lines  # sent as they are
    assert records[0].partition_key == "s-ok"
    assert all(1 <= len(r.partition_key) <= 256 for r in records)  # a Kinesis partition key, always
    path.write_bytes(b"\n".join(lines + [b'{"session_id": "big", "pad": "' + b"x" * (1024 * 1024) + b'"}']))
    with pytest.raises(PipelineError, match=r"events.jsonl:5: a record of .* exceeds .* nothing was sent"):
        file_records(path)


def test_json_state_files_are_replaced_atomically_by_concurrent_writers(tmp_path):
    """Each write uses a temporary name of its own: two writers never trip over each other's file."""
    import threading

    from recsys.local.firehose.source import write_json_atomically

    path, errors = tmp_path / "stream.checkpoint.json", []

    def writer(n: int) -> None:
        try:
            for i in range(200):
                write_json_atomically(path, {"writer": n, "i": i}, durable=i % 50 == 0)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and json.loads(path.read_text())["i"] == 199
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


def test_a_second_delivery_lock_on_the_same_stream_is_refused_in_one_line(tmp_path):
    from recsys.core.errors import PipelineError
    from recsys.local.firehose.delivery import DeliveryLock

    first = DeliveryLock(tmp_path / "firehose" / "d.lock", "d")
    with pytest.raises(PipelineError) as caught:
        DeliveryLock(tmp_path / "firehose" / "d.lock", "d")
    message = str(caught.value)
    assert "\n" not in message and f"pid {os.getpid()}" in message and "already delivering d" in message
    DeliveryLock(tmp_path / "firehose" / "other.lock", "other").release()  # another stream is fine
    first.release()
    DeliveryLock(tmp_path / "firehose" / "d.lock", "d").release()  # free again once released


def test_rate_limiter_paces_to_the_rate():
    now = [0.0]
    limiter = RateLimiter(100, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    for _ in range(10):
        limiter.acquire(50)
    assert now[0] == pytest.approx(5.0)  # 500 events at 100/s


# -- Lambda Runtime API + awslambdaric -----------------------------------------------------------
@pytest.fixture
def local_lambda(streaming_handlers_dir):
    functions = []

    def make(handler: str, **kwargs) -> LocalLambda:
        fn = LocalLambda(streaming_handlers_dir, handler, {"TEST_MARKER": "m-1"}, function_name="unit-fn", **kwargs)
        functions.append(fn)
        return fn

    yield make
    for fn in functions:
        fn.close()


def test_runtime_invokes_with_context_and_only_the_function_environment(local_lambda):
    fn = local_lambda("broken.echo")
    first = fn.invoke(json.dumps({"n": 1}).encode())
    second = fn.invoke(json.dumps({"n": 2}).encode())
    assert first.ok and second.ok and fn.cold_starts == 1
    body = json.loads(second.payload)
    assert body["event"] == {"n": 2} and body["function"] == "unit-fn" and body["marker"] == "m-1"
    assert 0 < body["remaining_ms"] <= 60_000
    assert body["request_id"] != json.loads(first.payload)["request_id"]
    assert second.duration_seconds < first.duration_seconds  # warm is faster than cold


def test_function_error_has_aws_error_shape(local_lambda):
    result = local_lambda("broken.raises").invoke(b"{}")
    assert result.function_error == "Unhandled"
    error = result.error()
    assert error["errorType"] == "RuntimeError" and error["errorMessage"] == "handler blew up on purpose"
    assert isinstance(error["stackTrace"], list) and error["requestId"]


def test_init_error_is_reported_and_every_invoke_fails(local_lambda):
    fn = local_lambda("import_fails.handler")
    for _ in range(2):
        result = fn.invoke(b"{}")
        assert result.function_error == "Unhandled"
        assert result.error()["errorType"] == "Runtime.ImportModuleError"
        assert "missing dependency on purpose" in result.error()["errorMessage"]


def test_timeout_kills_the_runtime_and_the_next_invoke_starts_fresh(local_lambda, tmp_path):
    fn = local_lambda("broken.sleeps", timeout_seconds=1.0)
    result = fn.invoke(json.dumps({"records": []}).encode())
    assert result.error()["errorType"] == "Sandbox.Timedout" and 1.0 <= result.duration_seconds < 5
    fn.handler = "broken.echo"
    assert fn.invoke(b'{"again": true}').ok and fn.cold_starts == 2


def exchange(conn: http.client.HTTPConnection, method: str, path: str) -> http.client.HTTPResponse:
    conn.request(method, path, body=b"{}" if method == "POST" else None)
    return conn.getresponse()


def test_runtime_api_answers_no_process_but_its_runtime(local_lambda):
    """Another process of the same user (this test) gets its connection closed unanswered, even for
    paths that do not exist; the runtime itself is served as before."""
    fn = local_lambda("broken.echo")
    assert fn.invoke(b"{}").ok
    for method, path in (
        ("POST", "/2018-06-01/runtime/invocation/nope/response"),
        ("GET", "/2018-06-01/runtime/invocation/next"),
        ("GET", "/2018-06-01/runtime/elsewhere"),
    ):
        conn = http.client.HTTPConnection(fn.server.address, timeout=5)
        # closed unanswered: the close can reach the client while it still sends (a broken pipe)
        with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)):
            exchange(conn, method, path)
        conn.close()
    assert fn.invoke(b'{"n": 2}').ok


ATTACKER = r"""
import http.client, json, sys, time
address, seconds = sys.argv[1], float(sys.argv[2])
report = {"taken": [], "forged": 0, "refused": 0, "uid": __import__("os").getuid()}
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    try:
        conn = http.client.HTTPConnection(address, timeout=3)
        conn.request("GET", "/2018-06-01/runtime/invocation/next")
        response = conn.getresponse()
        body = response.read()
        if response.status == 200:
            request_id = response.getheader("Lambda-Runtime-Aws-Request-Id")
            report["taken"].append(body.decode())
            conn.request("POST", f"/2018-06-01/runtime/invocation/{request_id}/response", body=b'{"forged": true}')
            report["forged"] += conn.getresponse().status == 202
    except (OSError, http.client.HTTPException):
        report["refused"] += 1
        time.sleep(0.01)
print(json.dumps(report))
"""


def test_another_local_user_can_neither_take_invocations_nor_forge_results(local_lambda):
    """The attacker runs as ``nobody`` and long-polls the runtime API while six invocations are made:
    it takes none (it would see the events) and forges no result; every result is the function's."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv(1) to run the attacker as the user nobody")
    fn = local_lambda("broken.echo")
    assert fn.invoke(b'{"warm": true}').ok
    attacker = subprocess.Popen(
        [
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "/usr/bin/python3",
            "-I",
            "-c",
            ATTACKER,
            fn.server.address,
            "4",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd="/",
    )
    time.sleep(0.5)  # the attacker is polling
    results = [fn.invoke(json.dumps({"n": n}).encode()) for n in range(6)]
    report = json.loads(attacker.communicate(timeout=30)[0])
    assert report["uid"] != 0 and report["refused"] > 0
    assert report["taken"] == [] and report["forged"] == 0, report
    assert [json.loads(r.payload)["event"] for r in results] == [{"n": n} for n in range(6)]


def test_checkpoint_is_discarded_for_another_incarnation_of_the_stream(tmp_path):
    """A stream recreated under the same ARN (emulator restart) must be read from its oldest record."""
    from recsys.local.firehose.source import Checkpoint

    path = tmp_path / "cp.json"
    arn = "arn:aws:kinesis:us-east-1:123456789012:stream/s"
    Checkpoint(path, arn, "2026-11-26T10:00:00+00:00").save({"shardId-000000000000": "4959"})
    assert Checkpoint(path, arn, "2026-11-26T10:00:00+00:00").positions == {"shardId-000000000000": "4959"}
    assert Checkpoint(path, arn, "2026-11-26T11:30:00+00:00").positions == {}


# -- redrive: reading error objects --------------------------------------------------------------
def test_parked_records_are_known_by_record_id_or_by_their_place():
    from recsys.apps.redrive import listing_prefix, marker_key, parse_error_object

    key = "processing-failed/2026/11/26/15/delivery-1-2026-11-26-15-59-07-abc"
    lines = [
        json.dumps(
            {
                "recordId": "shardId-000000000001:42",
                "errorCode": "Lambda.FunctionError",
                "rawData": base64.b64encode(b"event-1").decode(),
            }
        ),
        json.dumps({"errorCode": "Lambda.ProcessingFailedStatus", "rawData": base64.b64encode(b"event-2").decode()}),
        "not an error record",
        json.dumps({"errorCode": "x", "rawData": "%%%"}),
        "",
    ]
    parsed = parse_error_object(key, "\n".join(lines).encode())
    assert [(r.key, r.error_code, r.data) for r in parsed.records] == [
        ("shardId-000000000001:42", "Lambda.FunctionError", b"event-1"),
        (f"{key}#2", "Lambda.ProcessingFailedStatus", b"event-2"),
    ]
    assert parsed.unreadable == 2
    assert (
        marker_key("processing-failed/", key)
        == "processing-failed/redriven/2026/11/26/15/delivery-1-2026-11-26-15-59-07-abc.json"
    )
    assert listing_prefix("!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd/HH}/") == "processing-failed/"
    assert listing_prefix("errors/!{firehose:error-output-type}/") == "errors/processing-failed/"


def test_a_new_environment_restarts_an_idle_runtime_and_the_next_invoke_uses_it(local_lambda):
    """The old process was waiting for its next invocation when it was stopped: that dead wait must not
    swallow the invocation meant for the new process."""
    fn = local_lambda("broken.echo", timeout_seconds=10)
    assert json.loads(fn.invoke(b"{}").payload)["marker"] == "m-1"
    time.sleep(0.3)  # the runtime is back in GET /invocation/next
    fn.set_environment({"TEST_MARKER": "m-2"})
    result = fn.invoke(b"{}")
    assert result.ok, result.error()
    assert json.loads(result.payload)["marker"] == "m-2" and fn.cold_starts == 2


def test_a_state_file_is_private_and_leaves_its_folders_mode_alone(tmp_path):
    """The state dir is 0701 so PostgreSQL's account can pass to its data: writing a stats file there
    (the API's request counts) must not close it, and the file is its owner's alone."""
    from recsys.local.firehose.source import write_json_atomically

    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o701)
    write_json_atomically(state / "api.stats.json", {"requests": 1})
    assert stat.S_IMODE(state.stat().st_mode) == 0o701
    assert stat.S_IMODE((state / "api.stats.json").stat().st_mode) == 0o600
    write_json_atomically(state / "new" / "checkpoint.json", {"shards": {}})
    assert stat.S_IMODE((state / "new").stat().st_mode) == 0o700
