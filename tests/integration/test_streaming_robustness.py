"""Streaming under an adversarial user, on the real stack: poison records, two delivery processes,
PostgreSQL moving to another port, overlapping invocations, re-driving parked records, a changed
buffering setting. Shares the stack, the stream and the checkpoint with test_streaming_e2e.py;
each test identifies its own records by session id or raw bytes.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from tests.support.fixtures_streaming import deliver, read_delivered, session_of
from tests.support.poison_run import poison_run

from recsys.apps.replay import OutgoingRecord, events_to_records, record_for, send_records
from recsys.apps.source import source_catalogue
from recsys.core.config import load_settings, stack_env_file
from recsys.local.firehose.delivery import build_delivery, state_file
from recsys_seed import POISON_KINDS, poison_records, synthesize_events

pytestmark = pytest.mark.slow  # not in `make test-fast` (pytest -m 'not slow')

RECSYS = str(Path(sys.executable).with_name("recsys"))


@pytest.fixture(scope="module")
def catalogue(stack, seeded):
    return source_catalogue(stack)


def wait_for(condition, timeout: float, what: str, interval: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def start_firehose(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [RECSYS, "firehose", "--poll-interval", "0.1", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen) -> tuple[str, str]:
    """SIGTERM (a clean stop) and the process's output; nothing more when it has already been reaped."""
    if proc.returncode is not None:
        return "", ""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        return proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.communicate()


def wait_until_warm(settings, proc: subprocess.Popen, what: str = "the delivery to be warm") -> None:
    """Until ``proc`` (not an earlier test's delivery, whose stats file remains) reports its runtimes warm."""
    wait_for(lambda: stats_of(settings).get("pid") == proc.pid and stats_of(settings).get("warm"), 90, what)


def stats_of(settings) -> dict:
    path = state_file(settings, settings.firehose_stream, "stats")
    return json.loads(path.read_text()) if path.exists() else {}


def test_each_poison_record_fails_alone_through_the_zip(stack, streaming_model, streaming_zip, catalogue):
    """Valid events and one record of every poison kind in the same batches: no invocation fails,
    the valid events are delivered, each poison record is parked on its own."""
    valid = synthesize_events(catalogue, 40, seed=41)
    poison = [data for _, data in poison_records(len(POISON_KINDS), uuid.uuid4().hex[:8])]
    records = events_to_records(valid)
    for i, data in enumerate(poison):
        records.insert(4 * i + 1, record_for(data))
    send_records(stack, records)
    stats = deliver()
    assert stats.failed_invocations == 0
    assert (stats.delivered, stats.failed) == (40, len(POISON_KINDS))
    out = read_delivered(stack)
    assert {e["session_id"] for e in valid} <= {r["session_id"] for r in out.recommendations}
    parked = {base64.b64decode(e["rawData"]): e for e in out.errors}
    assert set(poison) <= set(parked)
    assert {(parked[p]["errorCode"], parked[p]["attemptsMade"]) for p in poison} == {
        ("Lambda.ProcessingFailedStatus", 1)
    }


def test_a_second_delivery_process_on_the_same_state_is_refused(stack, streaming_model, streaming_zip, catalogue):
    first = start_firehose()
    try:
        wait_until_warm(stack, first, "the first delivery to be warm")
        second = subprocess.run(
            [RECSYS, "firehose", "--until-idle", "1"], capture_output=True, text=True, timeout=120, check=False
        )
        assert second.returncode == 1
        assert second.stderr.strip() == (
            f"error: another recsys firehose (pid {first.pid}) is already delivering {stack.firehose_stream} with "
            f"the state in {stack.state_dir}: stop it first, or use another RECSYS_STATE_DIR"
        )
        events = synthesize_events(catalogue, 30, seed=43)
        send_records(stack, events_to_records(events))
        ours = {e["session_id"] for e in events}
        wait_for(
            lambda: ours <= {r["session_id"] for r in read_delivered(stack).recommendations},
            60,
            "the events to be delivered",
        )
    finally:
        stop(first)
    lines = [r for r in read_delivered(stack).recommendations if r["session_id"] in ours]
    assert len(lines) == len(ours)  # delivered once, by the one process


def test_delivery_follows_postgres_to_another_port(stack, streaming_model, streaming_zip, catalogue):
    """PostgreSQL restarts on another port while `recsys firehose` runs (its environment holds the old
    PGPORT, inherited from the stack): later events are delivered, not parked."""
    from recsys.local import pgembedded
    from recsys.local.stack import EmbeddedStack, StackState, free_port

    local = EmbeddedStack(stack)
    original = json.loads(local.state_file.read_text())

    def move_postgres(port: int) -> None:
        """What `recsys stack up` does when PostgreSQL comes back on ``port``: start it, record it,
        rewrite stack.env."""
        pgembedded.stop(local.pg_data)
        state = StackState.load(local.state_file)
        state.postgres.update(port=port, pid=pgembedded.start(local.pg_data, port, local.pg_log))
        state.save(local.state_file)
        stack_env_file(stack.state_dir).write_text("".join(f"{k}={v}\n" for k, v in local.stack_env(state).items()))

    proc = start_firehose()
    try:
        wait_until_warm(stack, proc)
        before = synthesize_events(catalogue, 20, seed=44)
        send_records(stack, events_to_records(before))

        def delivered(events):
            sessions = {r["session_id"] for r in read_delivered(stack).recommendations}
            return {e["session_id"] for e in events} <= sessions

        wait_for(lambda: delivered(before), 60, "events before the move")

        move_postgres(free_port())
        wait_for(lambda: stats_of(stack).get("runtime_restarts") == 1, 60, "the runtimes to restart")
        after = synthesize_events(catalogue, 20, seed=45)
        send_records(stack, events_to_records(after))
        ours = {e["session_id"] for e in after}

        def accounted():
            out = read_delivered(stack)
            seen = {r["session_id"] for r in out.recommendations} | {session_of(raw) for raw in out.error_raw()}
            return ours <= seen

        wait_for(accounted, 60, "events after the move to be delivered or parked")
        assert delivered(after), "events after the move were parked"
    finally:
        _, err = stop(proc)
        move_postgres(original["postgres"]["port"])  # back where the session's settings expect it
    assert proc.returncode == 0, err
    assert "Lambda runtimes restarted with the new environment" in err


def test_delivery_stops_in_one_line_when_a_setting_it_runs_on_changes(stack, streaming_model, streaming_zip):
    """The stack's endpoint moved: delivery cannot follow it with its own clients, so it says so and exits."""
    path = stack_env_file(stack.state_dir)
    original = path.read_text()
    proc = start_firehose()
    try:
        wait_until_warm(stack, proc)
        moved = original.replace(stack.endpoint_url, stack.endpoint_url.rsplit(":", 1)[0] + ":1")
        assert moved != original
        path.write_text(moved)
        _, err = proc.communicate(timeout=180)  # a bound, not a timing: a busy machine is slow
    finally:
        path.write_text(original)
        stop(proc)
    assert proc.returncode == 1
    assert err.strip().splitlines()[-1] == (
        "error: the stack's settings changed (AWS_ENDPOINT_URL) and delivery cannot follow: restart "
        "`recsys firehose` (nothing is lost: it resumes from its checkpoint)"
    )


def test_overlapping_invocations_keep_record_order_and_checkpoint_only_what_is_written(stack, streaming_handlers_dir):
    """The first batch is slow, the next ones are fast: with 3 invocations in flight the objects are
    still written in record order, and no checkpoint covers a record before its object is written."""
    import threading

    key, marker = f"order-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    events = [{"n": i, "run": marker, **({"note": "slow-batch"} if i == 0 else {})} for i in range(300)]
    delivery = build_delivery(
        load_settings(),
        code_dir=streaming_handlers_dir,
        handler="broken.passthrough_slow_marked",
        concurrency=3,
        poll_seconds=0.05,
    )
    written: list[int] = []  # our records' n, in the order their objects were written
    received: dict[int, tuple[str, int]] = {}  # n -> (shard, sequence number)
    violations: list[str] = []
    peak = [0]
    put, save, dispatch, poll = delivery._put, delivery.checkpoint.save, delivery._dispatch, delivery.reader.poll

    def ours(data: bytes) -> dict | None:
        try:
            payload = json.loads(data)
        except ValueError:
            return None
        return payload if isinstance(payload, dict) and payload.get("run") == marker else None

    def spy_poll():
        got = poll()
        for record in got:
            if (payload := ours(record.data)) is not None:
                received[payload["n"]] = (record.shard_id, int(record.sequence_number))
        return got

    def spy_put(object_key, lines):
        put(object_key, lines)
        written.extend(payload["n"] for line in lines if (payload := ours(line)) is not None)

    def spy_save(positions):
        done = set(written)
        violations.extend(
            f"checkpoint {positions[shard]} covers record {n} before it is written"
            for n, (shard, seq) in received.items()
            if shard in positions and seq <= int(positions[shard]) and n not in done
        )
        save(positions)

    def spy_dispatch(records):
        dispatch(records)
        peak[0] = max(peak[0], len(delivery._in_flight))

    delivery.reader.poll, delivery._put, delivery.checkpoint.save, delivery._dispatch = (
        spy_poll,
        spy_put,
        spy_save,
        spy_dispatch,
    )
    result = {}
    worker = threading.Thread(target=lambda: result.update(stats=delivery.run(until_idle=3)))
    try:
        worker.start()
        sent = send_records(stack, [OutgoingRecord(json.dumps(e).encode(), key) for e in events], rate=150)
        worker.join(120)
    finally:
        delivery.stop_requested.set()
        worker.join(30)
        delivery.close()
    assert sent.sent == 300 and result["stats"].failed == 0
    assert peak[0] >= 2, "invocations never overlapped"
    assert written == list(range(300)), "objects are not in record order (or records were lost or duplicated)"
    assert not violations, violations[:3]


def test_stack_up_brings_an_existing_delivery_stream_to_the_configured_buffering(stack):
    """RECSYS_BUFFER_SECONDS changed after the delivery stream exists: `ensure_resources` (what
    `recsys stack up` runs) updates the stream instead of silently keeping the old buffering."""
    from recsys.core import aws
    from recsys.local.aws_resources import ensure_resources
    from recsys.local.firehose.config import describe_delivery

    name = f"buffering-{uuid.uuid4().hex[:8]}"
    ensure_resources(stack.replace(RECSYS_FIREHOSE_STREAM=name, RECSYS_BUFFER_SECONDS="1"))
    try:
        changed = stack.replace(RECSYS_FIREHOSE_STREAM=name, RECSYS_BUFFER_SECONDS="7")
        ensure_resources(changed)
        config = describe_delivery(changed)
        assert (config.lambda_buffer_seconds, config.s3_buffer_seconds, config.version_id) == (7, 7, "2")
        ensure_resources(changed)  # already in line: no new version
        assert describe_delivery(changed).version_id == "2"
    finally:
        aws.client("firehose", stack).delete_delivery_stream(DeliveryStreamName=name)


def test_poison_run_accounts_for_every_record(stack, streaming_model, streaming_zip, catalogue):
    """The closing figures of issue 13: 2,000 valid events with 100 poison records mixed in."""
    report = poison_run(load_settings(), catalogue, events=2000, poison=100)
    print("\n".join(report.lines()))
    assert (report.valid_delivered, report.valid_parked, report.valid_lost, report.valid_duplicated) == (2000, 0, 0, 0)
    assert report.poison_parked_alone == 100
    assert (report.poison_parked_with_batch, report.poison_delivered, report.poison_lost, report.poison_duplicated) == (
        0,
        0,
        0,
        0,
    )
    assert report.failed_invocations == 0 and report.kinds == dict.fromkeys(POISON_KINDS, 10)
