"""The data-transformation contract, enforced on the Lambda's answer, and Firehose's error-record format."""

from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import dataclass

from recsys.contracts import RESULT_OK, RESULTS
from recsys.local.firehose.source import SourceRecord


class ContractViolation(Exception):
    """The Lambda's answer breaks the contract: the whole invocation counts as failed."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class TransformedRecord:
    result: str
    data: bytes


def validate_response(payload: bytes, record_ids: list[str]) -> dict[str, TransformedRecord]:
    """Every input recordId exactly once, a known ``result``, base64 ``data``; else ``ContractViolation``."""
    try:
        body = json.loads(payload)
        records = body["records"]
        if not isinstance(records, list):
            raise TypeError("records is not a list")
    except (ValueError, KeyError, TypeError) as exc:
        raise ContractViolation(
            "Lambda.JsonProcessingException", f"response is not {{'records': [...]}}: {exc}"
        ) from None
    expected = set(record_ids)
    out: dict[str, TransformedRecord] = {}
    for entry in records:
        record_id = entry.get("recordId") if isinstance(entry, dict) else None
        if record_id in out:
            raise ContractViolation("Lambda.DuplicatedRecordId", f"recordId {record_id} returned more than once")
        if record_id not in expected:
            raise ContractViolation(
                "Lambda.MissingRecordId", f"response has a recordId not in the request: {record_id!r}"
            )
        result = entry.get("result")
        if result not in RESULTS:
            raise ContractViolation(
                "Lambda.JsonProcessingException", f"recordId {record_id}: unknown result {result!r}"
            )
        data = entry.get("data")
        if result == RESULT_OK and not isinstance(data, str):
            raise ContractViolation("Lambda.JsonProcessingException", f"recordId {record_id}: Ok record without data")
        try:
            decoded = base64.b64decode(data or "", validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise ContractViolation(
                "Lambda.JsonProcessingException", f"recordId {record_id}: data is not base64"
            ) from None
        out[record_id] = TransformedRecord(result, decoded)
    missing = expected - out.keys()
    if missing:
        raise ContractViolation(
            "Lambda.MissingRecordId", f"{len(missing)} recordId(s) missing from the response, e.g. {sorted(missing)[0]}"
        )
    return out


def error_record(record: SourceRecord, code: str, message: str, attempts: int, lambda_arn: str) -> bytes:
    """One line of Firehose's processing-failed format, plus the record's ``recordId`` (Firehose's own
    lines lack it; ``recsys redrive`` uses it to re-drive a record parked twice only once)."""
    return (
        json.dumps(
            {
                "recordId": record.record_id,
                "attemptsMade": attempts,
                "arrivalTimestamp": record.arrival_ms,
                "errorCode": code,
                "errorMessage": message,
                "attemptEndingTimestamp": int(time.time() * 1000),
                "rawData": base64.b64encode(record.data).decode(),
                "lambdaArn": lambda_arn,
            },
            separators=(",", ":"),
        )
        + "\n"
    ).encode()
