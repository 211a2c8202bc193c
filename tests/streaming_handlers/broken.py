"""Deliberately broken Firehose transformation handlers: each breaks the contract one way."""

import base64
import time


def _ok(record):
    return {"recordId": record["recordId"], "result": "Ok", "data": base64.b64encode(b"{}\n").decode()}


def drops_a_record_id(event, context):
    """Returns every record but the first."""
    return {"records": [_ok(r) for r in event["records"][1:]]}


def duplicates_a_record_id(event, context):
    records = [_ok(r) for r in event["records"]]
    return {"records": records + records[:1]}


def invents_a_record_id(event, context):
    return {"records": [_ok(r) for r in event["records"]] + [{"recordId": "made-up", "result": "Ok", "data": ""}]}


def bad_result(event, context):
    return {"records": [{**_ok(r), "result": "Maybe"} for r in event["records"]]}


def bad_base64(event, context):
    return {"records": [{**_ok(r), "data": "%%% not base64 %%%"} for r in event["records"]]}


def not_json_shape(event, context):
    return ["records"]


def raises(event, context):
    raise RuntimeError("handler blew up on purpose")


def sleeps(event, context):
    time.sleep(30)
    return {"records": [_ok(r) for r in event["records"]]}


def echo(event, context):
    """A correct handler: the event back, plus what it saw of its context and environment."""
    import os

    return {
        "event": event,
        "request_id": context.aws_request_id,
        "function": os.environ.get("AWS_LAMBDA_FUNCTION_NAME"),
        "remaining_ms": context.get_remaining_time_in_millis(),
        "marker": os.environ.get("TEST_MARKER"),
    }


def passthrough(event, context):
    """Contract-correct: every record Ok with its data unchanged plus a newline."""
    out = []
    for r in event["records"]:
        out.append(
            {
                "recordId": r["recordId"],
                "result": "Ok",
                "data": base64.b64encode(base64.b64decode(r["data"]) + b"\n").decode(),
            }
        )
    return {"records": out}


def passthrough_slow_marked(event, context):
    """``passthrough``, but a batch holding a record with "slow-batch" in it takes 2.5 s."""
    if any(b"slow-batch" in base64.b64decode(r["data"]) for r in event["records"]):
        time.sleep(2.5)
    return passthrough(event, context)
