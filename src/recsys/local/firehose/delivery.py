"""Local Firehose delivery, faithful to the data-transformation contract.

Neither moto's nor LocalStack's Firehose runs a Lambda processor over a Kinesis source as AWS does
(docs/architecture.md), so this process does: it reads the delivery stream's configuration through
the Firehose API (``config``), consumes every shard of the source stream (``source``), buffers by
the Lambda processor's hints, invokes the Lambda (``invokers``), enforces the contract and retries
per ``NumberOfRetries`` (``transformation``), buffers again by the S3 hints and writes
(``prefixes``):

* ``Ok`` records under the expanded ``Prefix`` as ``<stream>-<version>-YYYY-MM-DD-HH-MM-SS-<uuid>``;
* ``ProcessingFailed`` records, and every record of an invocation that still failed after the
  retries, under the expanded ``ErrorOutputPrefix`` in Firehose's error-record format;
* ``Dropped`` records nowhere (counted).

Shard positions are checkpointed in ``<state>/firehose/<stream>.checkpoint.json`` (atomic replace)
after each S3 flush, so a restart, even after SIGKILL, resumes with nothing lost; records whose
objects were written just before a kill are delivered again (at most one flush), with the same
deterministic recordId (``<shardId>:<sequenceNumber>``). Counts and batch latency go to
``<state>/firehose/<stream>.stats.json`` and a final summary line.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from recsys.contracts import LAMBDA_HANDLER, PROCESSING_FAILED, RESULT_DROPPED, RESULT_FAILED, RESULT_OK
from recsys.core import aws
from recsys.core.config import Settings
from recsys.core.stats import percentile
from recsys.local.firehose.config import DeliveryConfig, describe_delivery
from recsys.local.firehose.invokers import Invoker, build_invoker
from recsys.local.firehose.prefixes import object_key
from recsys.local.firehose.source import Checkpoint, ShardReader, SourceRecord, write_json_atomically
from recsys.local.firehose.transformation import ContractViolation, TransformedRecord, error_record, validate_response

log = logging.getLogger(__name__)

PAYLOAD_LIMIT_BYTES = 6 * 1024 * 1024  # Lambda synchronous invoke, each way
HEARTBEAT_SECONDS = 10.0  # the stats file is rewritten at least this often: its age tells liveness


def state_file(settings: Settings, delivery_stream: str, kind: str) -> Path:
    """``<state>/firehose/<delivery stream>.<kind>.json``: ``checkpoint`` (shard positions) or ``stats`` (counts)."""
    return settings.state_dir / "firehose" / f"{delivery_stream}.{kind}.json"


@dataclass(frozen=True)
class InvocationOutcome:
    """One batch's transformation after retries: ``results`` by recordId, or None with the error of the last attempt."""

    results: dict[str, TransformedRecord] | None
    error_code: str = ""
    error_message: str = ""
    attempts: int = 1


@dataclass
class DeliveryStats:
    """Counts since start; ``records_in == delivered + dropped + failed`` once buffers are empty."""

    records_in: int = 0
    delivered: int = 0
    dropped: int = 0
    failed: int = 0
    invocations: int = 0
    failed_invocations: int = 0
    objects: int = 0
    error_objects: int = 0
    batch_seconds: list[float] = field(default_factory=list)

    def batch_percentile(self, q: float) -> float:
        """The ``q``-th percentile of batch latency in seconds; 0.0 before the first batch."""
        return percentile(self.batch_seconds, q) if self.batch_seconds else 0.0

    def as_json(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if k != "batch_seconds"}
        data.update(batches=len(self.batch_seconds), batch_p50_seconds=round(self.batch_percentile(50), 4),
                    batch_p99_seconds=round(self.batch_percentile(99), 4))
        return data

    def line(self) -> str:
        return (f"firehose: in={self.records_in} delivered={self.delivered} dropped={self.dropped} "
                f"failed={self.failed} invocations={self.invocations} (failed {self.failed_invocations}) "
                f"objects={self.objects} error_objects={self.error_objects} "
                f"batch p50={self.batch_percentile(50) * 1000:.0f} ms p99={self.batch_percentile(99) * 1000:.0f} ms")


@dataclass
class S3Buffer:
    """Transformed output waiting for the S3 buffering hints."""

    ok_lines: list[bytes] = field(default_factory=list)
    error_lines: list[bytes] = field(default_factory=list)
    ok_oldest_ms: int | None = None
    error_oldest_ms: int | None = None
    oldest_received: float | None = None
    positions: dict[str, str] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return sum(map(len, self.ok_lines)) + sum(map(len, self.error_lines))

    @property
    def empty(self) -> bool:
        return not self.positions


class FirehoseDelivery:
    """The delivery loop: Kinesis -> Lambda buffer -> invoke -> S3 buffer -> objects + checkpoint."""

    def __init__(self, settings: Settings, config: DeliveryConfig, invoker: Invoker, *,
                 poll_seconds: float = 0.2, retry_backoff_seconds: float = 0.2):
        self.settings, self.config, self.invoker = settings, config, invoker
        kinesis = aws.client("kinesis", settings)
        created = kinesis.describe_stream_summary(StreamName=config.source_stream_name)[
            "StreamDescriptionSummary"]["StreamCreationTimestamp"].isoformat()
        self.checkpoint = Checkpoint(state_file(settings, config.name, "checkpoint"), config.source_stream_arn,
                                     created)
        self.stats_path = state_file(settings, config.name, "stats")
        self.reader = ShardReader(kinesis, config.source_stream_name, self.checkpoint)
        self.s3 = aws.client("s3", settings)
        self.stats = DeliveryStats()
        self.poll_seconds = poll_seconds
        self.retry_backoff_seconds = retry_backoff_seconds
        self.stop_requested = threading.Event()
        self._lambda_buffer: list[SourceRecord] = []
        self._s3_buffer = S3Buffer()

    # -- Lambda ---------------------------------------------------------------------------------
    def _request(self, records: list[SourceRecord]) -> bytes:
        return json.dumps({
            "invocationId": str(uuid.uuid4()),
            "deliveryStreamArn": self.config.arn,
            "sourceKinesisStreamArn": self.config.source_stream_arn,
            "region": self.config.region,
            "records": [r.to_lambda() for r in records],
        }).encode()

    def transform(self, records: list[SourceRecord]) -> InvocationOutcome:
        """Invoke with retries until an answer keeps the contract or the retries are spent."""
        payload = self._request(records)
        ids = [r.record_id for r in records]
        code, message = "", ""
        attempts = self.config.retries + 1
        for attempt in range(1, attempts + 1):
            self.stats.invocations += 1
            result = self.invoker.invoke(payload)
            if result.ok:
                try:
                    return InvocationOutcome(validate_response(result.payload, ids), attempts=attempt)
                except ContractViolation as exc:
                    code, message = exc.code, str(exc)
            else:
                error = result.error()
                code = "Lambda.FunctionError"
                message = (f"The Lambda function was successfully invoked but it returned an error result: "
                           f"{error.get('errorType')}: {error.get('errorMessage')}")
            self.stats.failed_invocations += 1
            log.warning("invocation %d/%d of %d records failed: %s %s", attempt, attempts, len(records), code, message)
            if attempt < attempts:
                time.sleep(self.retry_backoff_seconds * 2 ** (attempt - 1))
        return InvocationOutcome(None, code, message, attempts)

    def _take_lambda_batch(self) -> list[SourceRecord]:
        """Records from the front of the buffer, within the buffer size and the 6 MB payload limit."""
        limit = min(self.config.lambda_buffer_bytes, PAYLOAD_LIMIT_BYTES * 3 // 4 - 64 * 1024)
        batch, size = [], 0
        for record in self._lambda_buffer:
            cost = len(record.data) + 512  # base64 and the metadata around each record
            if batch and size + cost > limit:
                break
            batch.append(record)
            size += cost
        del self._lambda_buffer[:len(batch)]
        return batch

    def process_batch(self, records: list[SourceRecord]) -> None:
        """Transform one batch and move its output into the S3 buffer."""
        started = time.monotonic()
        invocation = self.transform(records)
        buf = self._s3_buffer
        for record in records:
            outcome = invocation.results.get(record.record_id) if invocation.results is not None else None
            if outcome is not None and outcome.result == RESULT_OK:
                buf.ok_lines.append(outcome.data)
                buf.ok_oldest_ms = min(buf.ok_oldest_ms or record.arrival_ms, record.arrival_ms)
                self.stats.delivered += 1
            elif outcome is not None and outcome.result == RESULT_DROPPED:
                self.stats.dropped += 1
            else:
                if outcome is not None:  # ProcessingFailed by the function
                    line = error_record(record, "Lambda.ProcessingFailedStatus",
                                        f"The Lambda function returned {RESULT_FAILED} for this record.",
                                        invocation.attempts, self.config.lambda_arn)
                else:
                    line = error_record(record, invocation.error_code, invocation.error_message,
                                        invocation.attempts, self.config.lambda_arn)
                buf.error_lines.append(line)
                buf.error_oldest_ms = min(buf.error_oldest_ms or record.arrival_ms, record.arrival_ms)
                self.stats.failed += 1
            buf.positions[record.shard_id] = record.sequence_number
            buf.oldest_received = min(buf.oldest_received or record.received, record.received)
        self.stats.batch_seconds.append(time.monotonic() - started)

    # -- S3 --------------------------------------------------------------------------------------
    def _put(self, key: str, lines: list[bytes]) -> None:
        self.s3.put_object(Bucket=self.config.bucket, Key=key, Body=b"".join(lines))

    def flush_s3(self) -> None:
        """Write the buffered objects, then checkpoint the positions they cover."""
        buf = self._s3_buffer
        if buf.empty:
            return
        if buf.ok_lines:
            moment = datetime.fromtimestamp(buf.ok_oldest_ms / 1000, timezone.utc)
            self._put(object_key(self.config, moment), buf.ok_lines)
            self.stats.objects += 1
        if buf.error_lines:
            moment = datetime.fromtimestamp(buf.error_oldest_ms / 1000, timezone.utc)
            self._put(object_key(self.config, moment, PROCESSING_FAILED), buf.error_lines)
            self.stats.error_objects += 1
        self.checkpoint.save(buf.positions)
        self._s3_buffer = S3Buffer()
        self.write_stats()

    def write_stats(self) -> None:
        write_json_atomically(self.stats_path, self.stats.as_json())

    # -- loop ------------------------------------------------------------------------------------
    def _lambda_due(self, now: float) -> bool:
        if not self._lambda_buffer:
            return False
        size = sum(len(r.data) for r in self._lambda_buffer)
        return size >= self.config.lambda_buffer_bytes or now - self._lambda_buffer[0].received >= self.config.lambda_buffer_seconds

    def _s3_due(self, now: float) -> bool:
        buf = self._s3_buffer
        if buf.empty:
            return False
        return buf.size >= self.config.s3_buffer_bytes or now - buf.oldest_received >= self.config.s3_buffer_seconds

    def step(self, *, drain: bool = False) -> int:
        """One poll of every shard and whatever buffers are due (all of them when ``drain``)."""
        received = [] if self.stop_requested.is_set() else self.reader.poll()
        self.stats.records_in += len(received)
        self._lambda_buffer.extend(received)
        while self._lambda_buffer and (drain or self._lambda_due(time.monotonic())):
            self.process_batch(self._take_lambda_batch())
        if drain or self._s3_due(time.monotonic()):
            self.flush_s3()
        return len(received)

    def run(self, *, until_idle: float | None = None, max_batches: int | None = None) -> DeliveryStats:
        """Deliver until stopped (signal), idle for ``until_idle`` seconds, or ``max_batches`` invocations."""
        idle_since = last_written = time.monotonic()
        self.write_stats()  # at start, before any traffic: health checks read its age
        try:
            while not self.stop_requested.is_set():
                got = self.step()
                now = time.monotonic()
                if now - last_written >= HEARTBEAT_SECONDS:
                    self.write_stats()
                    last_written = now
                busy = got or self._lambda_buffer or not self._s3_buffer.empty
                if busy:
                    idle_since = now
                if until_idle is not None and now - idle_since >= until_idle:
                    break
                if max_batches is not None and len(self.stats.batch_seconds) >= max_batches:
                    break
                if not got:
                    self.stop_requested.wait(self.poll_seconds)
            self.step(drain=True)  # a clean stop delivers what it holds
        finally:
            self.write_stats()
        return self.stats


def build_delivery(settings: Settings, *, mode: str | None = None, code_dir: Path | None = None,
                   handler: str = LAMBDA_HANDLER, timeout_seconds: float = 60.0,
                   poll_seconds: float = 0.2, wait_for_stream_seconds: float = 0.0) -> FirehoseDelivery:
    """A delivery process for the configured delivery stream (waiting up to ``wait_for_stream_seconds`` for it
    to exist); ``mode`` defaults to RECSYS_LAMBDA_INVOKE."""
    config = describe_delivery(settings, wait_seconds=wait_for_stream_seconds)
    invoker = build_invoker(settings, config, mode=mode or settings.lambda_invoke, code_dir=code_dir,
                            handler=handler, timeout_seconds=timeout_seconds)
    return FirehoseDelivery(settings, config, invoker, poll_seconds=poll_seconds)
