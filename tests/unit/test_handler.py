"""The transformation Lambda's handler with event JSON and a fake context (no services): every
recordId answered once, in order, with the right result; a serving failure fails only the records
it could not serve."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from recsys.contracts import RESULT_DROPPED, RESULT_FAILED, RESULT_OK
from recsys.serving import handler
from recsys.serving.database import DatabaseUnavailable
from recsys_seed import POISON_KINDS, poison_record

EVENTS = Path(__file__).parent / "events"


@dataclass
class FakeContext:
    """The attributes of ``LambdaContext`` that Powertools' Logger reads."""

    function_name: str = "recsys-model-inference"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:recsys-model-inference"
    aws_request_id: str = "52fdfc07-2182-154f-163f-5f0f9a621d72"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


class FakeServingRuntime:
    """Stands in for model + pgvector: one line per event naming its session, or an outage; a batch
    holding one of the ``traps`` raises the way a driver error would."""

    def __init__(self, outage: bool = False, traps: set[str] = frozenset()):
        self.outage = outage
        self.traps = traps
        self.served: list[str] = []
        self.calls = 0
        self.warmed = 0

    def warm(self):
        self.warmed += 1

    def serve(self, events):
        self.calls += 1
        if self.outage:
            raise DatabaseUnavailable("pgvector unreachable: connection refused")
        if self.traps & {e.session_id for e in events}:
            raise ValueError("A string literal cannot contain NUL (0x00) characters.")
        self.served += [e.session_id for e in events]
        return [(json.dumps({"session_id": e.session_id}) + "\n").encode() for e in events]


def firehose_event() -> dict:
    return json.loads((EVENTS / "firehose_transformation.json").read_text())


def invoke(monkeypatch, runtime) -> dict:
    monkeypatch.setattr(handler, "_runtime", runtime)
    return handler.lambda_handler(firehose_event(), FakeContext())


def test_each_record_gets_its_own_result_in_input_order(monkeypatch):
    runtime = FakeServingRuntime()
    response = invoke(monkeypatch, runtime)
    ids = [r["recordId"] for r in firehose_event()["records"]]
    assert [r["recordId"] for r in response["records"]] == ids
    results = [r["result"] for r in response["records"]]
    assert results == [RESULT_OK, RESULT_FAILED, RESULT_DROPPED, RESULT_OK, RESULT_FAILED]
    assert runtime.served == ["s-1", "s-2"]  # the valid events, in one batch
    ok = json.loads(base64.b64decode(response["records"][0]["data"]))
    assert ok == {"session_id": "s-1"}
    # a failed record keeps its original data, so the error record carries what was sent
    assert response["records"][1]["data"] == firehose_event()["records"][1]["data"]


def test_an_outage_fails_the_records_it_could_not_serve_and_nothing_else(monkeypatch):
    response = invoke(monkeypatch, FakeServingRuntime(outage=True))
    results = [r["result"] for r in response["records"]]
    assert results == [RESULT_FAILED, RESULT_FAILED, RESULT_DROPPED, RESULT_FAILED, RESULT_FAILED]


def _record(i: int, data: bytes) -> dict:
    return {
        "recordId": f"shardId-000000000000:{i}",
        "approximateArrivalTimestamp": 1795708747395,
        "data": base64.b64encode(data).decode(),
    }


def _valid(session: str) -> bytes:
    return json.dumps(
        {
            "session_id": session,
            "customer_number": 103,
            "event_time": "2026-11-26T14:00:00Z",
            "browse_history": [{"product_code": "S10_1678"}],
        }
    ).encode()


def test_each_poison_record_fails_alone_in_a_mixed_batch(monkeypatch):
    """Valid events around every kind of adversarial record: the poison fails, the rest is served."""
    data = []
    for i, kind in enumerate(POISON_KINDS):
        data += [_valid(f"ok-{i}"), poison_record(kind, i)]
    event = {**firehose_event(), "records": [_record(i, d) for i, d in enumerate(data)]}
    runtime = FakeServingRuntime()
    monkeypatch.setattr(handler, "_runtime", runtime)
    response = handler.lambda_handler(event, FakeContext())
    results = [r["result"] for r in response["records"]]
    assert results == [RESULT_OK, RESULT_FAILED] * len(POISON_KINDS)
    assert runtime.served == [f"ok-{i}" for i in range(len(POISON_KINDS))] and runtime.calls == 1


def test_a_record_that_makes_serving_raise_fails_alone(monkeypatch):
    """An error no validation foresaw (here a driver refusing a value) is isolated by splitting the batch."""
    sessions = [f"s-{i}" for i in range(16)]
    event = {**firehose_event(), "records": [_record(i, _valid(s)) for i, s in enumerate(sessions)]}
    runtime = FakeServingRuntime(traps={"s-5", "s-11"})
    monkeypatch.setattr(handler, "_runtime", runtime)
    response = handler.lambda_handler(event, FakeContext())
    results = {s: r["result"] for s, r in zip(sessions, response["records"], strict=True)}
    assert {s for s, r in results.items() if r == RESULT_FAILED} == {"s-5", "s-11"}
    assert sorted(runtime.served) == sorted(set(sessions) - {"s-5", "s-11"})
    assert runtime.calls <= 2 * 2 * 4 + 1  # bisection: a few calls per culprit, not one per record


def test_an_invocation_without_records_warms_the_runtime(monkeypatch):
    runtime = FakeServingRuntime()
    monkeypatch.setattr(handler, "_runtime", runtime)
    assert handler.lambda_handler({"invocationId": "warm", "records": []}, FakeContext()) == {"records": []}
    assert runtime.warmed == 1 and runtime.calls == 0


def test_config_reads_the_contract_environment(monkeypatch):
    monkeypatch.setenv("RECSYS_TOP_K", "7")
    monkeypatch.setenv("RECSYS_POINTER_TTL_SECONDS", "2.5")
    monkeypatch.delenv("RECSYS_ARTIFACTS_BUCKET", raising=False)
    config = handler.HandlerConfig.from_environment()
    assert (config.top_k, config.pointer_ttl_seconds, config.artifacts_bucket) == (7, 2.5, "recsys-ml-artifacts")


@pytest.mark.parametrize(
    "name, value", [("RECSYS_TOP_K", "0"), ("RECSYS_TOP_K", "abc"), ("RECSYS_POINTER_TTL_SECONDS", "-1")]
)
def test_a_bad_setting_fails_the_cold_start_naming_it(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=name):
        handler.HandlerConfig.from_environment()
