"""The transformation Lambda's handler with event JSON and a fake context (no services): every
recordId answered once, in order, with the right result; a serving failure fails only the records
it could not serve."""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from inference import handler
from inference.database import DatabaseUnavailable
from recsys.contracts import RESULT_DROPPED, RESULT_FAILED, RESULT_OK

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
    """Stands in for model + pgvector: one line per event naming its session, or an outage."""

    def __init__(self, outage: bool = False):
        self.outage = outage
        self.served: list[str] = []

    def serve(self, events):
        if self.outage:
            raise DatabaseUnavailable("pgvector unreachable: connection refused")
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


def test_config_reads_the_contract_environment(monkeypatch):
    monkeypatch.setenv("RECSYS_TOP_K", "7")
    monkeypatch.setenv("RECSYS_POINTER_TTL_SECONDS", "2.5")
    monkeypatch.delenv("RECSYS_ARTIFACTS_BUCKET", raising=False)
    config = handler.HandlerConfig.from_environment()
    assert (config.top_k, config.pointer_ttl_seconds, config.artifacts_bucket) == (7, 2.5, "recsys-ml-artifacts")


@pytest.mark.parametrize("name, value", [("RECSYS_TOP_K", "0"), ("RECSYS_TOP_K", "abc"),
                                         ("RECSYS_POINTER_TTL_SECONDS", "-1")])
def test_a_bad_setting_fails_the_cold_start_naming_it(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=name):
        handler.HandlerConfig.from_environment()
