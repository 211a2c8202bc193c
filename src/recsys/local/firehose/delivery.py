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

Like Firehose, it overlaps invocations: up to ``concurrency`` batches are in flight at once (a
pool of runtimes), and their results enter the S3 buffer in the order the batches were taken, so
objects keep the order of the records and a shard position is only ever checkpointed after every
earlier batch of that shard is written. Each runtime gets a warm-up invocation at start.

One process per delivery stream and state directory: an exclusive lock on
``<state>/firehose/<stream>.lock`` refuses a second one. Shard positions are checkpointed in
``<state>/firehose/<stream>.checkpoint.json`` (atomic replace) after each S3 flush, so a restart,
even after SIGKILL, resumes with nothing lost; records whose objects were written just before a
kill are delivered again (at most one flush), with the same deterministic recordId
(``<shardId>:<sequenceNumber>``). Counts and batch latency go to
``<state>/firehose/<stream>.stats.json`` and a final summary line.

When the running stack's settings change (``stack.env``: PostgreSQL restarted on another port),
the runtimes are restarted with the new Lambda environment; a change delivery itself cannot follow
(the AWS endpoint, credentials, stream names) stops it with one line saying so.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
import uuid
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for_futures
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from recsys.contracts import (
    LAMBDA_ENVIRONMENT,
    LAMBDA_HANDLER,
    PROCESSING_FAILED,
    RESULT_DROPPED,
    RESULT_FAILED,
    RESULT_OK,
)
from recsys.core import aws
from recsys.core.config import Settings, StackEnvWatcher, changed_settings
from recsys.core.errors import PipelineError
from recsys.core.stats import percentile
from recsys.local.aws_resources import lambda_environment
from recsys.local.firehose.config import DeliveryConfig, describe_delivery
from recsys.local.firehose.invokers import Invoker, build_invoker
from recsys.local.firehose.prefixes import object_key
from recsys.local.firehose.source import Checkpoint, ShardReader, SourceRecord, write_json_atomically
from recsys.local.firehose.transformation import ContractViolation, TransformedRecord, error_record, validate_response
from recsys.local.private_files import private_dir

log = logging.getLogger(__name__)

PAYLOAD_LIMIT_BYTES = 6 * 1024 * 1024  # Lambda synchronous invoke, each way
HEARTBEAT_SECONDS = 10.0  # the stats file is rewritten at least this often: its age tells liveness
WARM_UP_PAYLOAD = json.dumps({"invocationId": "warm-up", "records": []}).encode()  # the handler warms on no records
# Settings delivery itself runs on: a change to one of these cannot be followed by restarting the runtimes.
DELIVERY_SETTINGS = frozenset(
    {
        "RECSYS_STATE_DIR",
        "AWS_ENDPOINT_URL",
        "AWS_DEFAULT_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "RECSYS_KINESIS_STREAM",
        "RECSYS_FIREHOSE_STREAM",
        "RECSYS_LAMBDA_ZIP",
        "RECSYS_LAMBDA_INVOKE",
    }
)


def state_file(settings: Settings, delivery_stream: str, kind: str) -> Path:
    """``<state>/firehose/<delivery stream>.<kind>.json``: ``checkpoint`` (shard positions) or ``stats`` (counts)."""
    return settings.state_dir / "firehose" / f"{delivery_stream}.{kind}.json"


class DeliveryLock:
    """An exclusive ``flock`` on ``<state>/firehose/<stream>.lock`` for a delivery's lifetime.

    Two processes delivering one stream from one state directory would each deliver every record;
    the second is refused. The kernel drops the lock when its holder dies, even by SIGKILL.
    """

    def __init__(self, path: Path, delivery_stream: str):
        private_dir(path.parent)
        self.path = path
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(self._fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(self._fd)
            self._fd = None
            raise PipelineError(
                f"another recsys firehose (pid {holder}) is already delivering {delivery_stream} "
                f"with the state in {path.parent.parent}: stop it first, or use another "
                "RECSYS_STATE_DIR"
            ) from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"{os.getpid()}\n".encode())

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


@dataclass(frozen=True)
class InvocationOutcome:
    """One batch's transformation after retries: ``results`` by recordId, or None with the error of the last attempt."""

    results: dict[str, TransformedRecord] | None
    error_code: str = ""
    error_message: str = ""
    attempts: int = 1

    @property
    def failed_attempts(self) -> int:
        return self.attempts - (self.results is not None)


@dataclass
class PendingBatch:
    """A batch handed to an invocation that has not been collected yet."""

    records: list[SourceRecord]
    future: Future
    started: float = field(default_factory=time.monotonic)


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
    concurrency: int = 1
    warm: bool = False  # every runtime has answered its warm-up invocation
    runtime_restarts: int = 0  # times the runtimes were restarted with changed stack settings
    pid: int = field(default_factory=os.getpid)  # the delivering process: the file outlives it
    batch_seconds: list[float] = field(default_factory=list)

    def batch_percentile(self, q: float) -> float:
        """The ``q``-th percentile of batch latency in seconds; 0.0 before the first batch."""
        return percentile(self.batch_seconds, q) if self.batch_seconds else 0.0

    def as_json(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if k != "batch_seconds"}
        data.update(
            batches=len(self.batch_seconds),
            batch_p50_seconds=round(self.batch_percentile(50), 4),
            batch_p99_seconds=round(self.batch_percentile(99), 4),
        )
        return data

    def line(self) -> str:
        return (
            f"firehose: in={self.records_in} delivered={self.delivered} dropped={self.dropped} "
            f"failed={self.failed} invocations={self.invocations} (failed {self.failed_invocations}) "
            f"objects={self.objects} error_objects={self.error_objects} "
            f"batch p50={self.batch_percentile(50) * 1000:.0f} ms p99={self.batch_percentile(99) * 1000:.0f} ms"
        )


@dataclass
class S3Buffer:
    """Transformed output waiting for the S3 buffering hints."""

    ok_lines: list[bytes] = field(default_factory=list)
    error_lines: list[bytes] = field(default_factory=list)
    ok_oldest_ms: int = 0  # 0: no line of that kind yet
    error_oldest_ms: int = 0
    oldest_received: float = 0.0
    positions: dict[str, str] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return sum(map(len, self.ok_lines)) + sum(map(len, self.error_lines))

    @property
    def empty(self) -> bool:
        return not self.positions


class FirehoseDelivery:
    """The delivery loop: Kinesis -> Lambda buffer -> invocations (up to ``concurrency`` at once) ->
    S3 buffer (in batch order) -> objects + checkpoint."""

    def __init__(
        self,
        settings: Settings,
        config: DeliveryConfig,
        invoker: Invoker,
        *,
        poll_seconds: float = 0.2,
        retry_backoff_seconds: float = 0.2,
        concurrency: int = 1,
        warm_up: bool = True,
        watcher: StackEnvWatcher | None = None,
    ):
        self.lock = DeliveryLock(settings.state_dir / "firehose" / f"{config.name}.lock", config.name)
        try:
            self.settings, self.config, self.invoker = settings, config, invoker
            kinesis = aws.client("kinesis", settings)
            created = kinesis.describe_stream_summary(StreamName=config.source_stream_name)["StreamDescriptionSummary"][
                "StreamCreationTimestamp"
            ].isoformat()
            self.checkpoint = Checkpoint(
                state_file(settings, config.name, "checkpoint"), config.source_stream_arn, created
            )
        except BaseException:
            self.lock.release()
            raise
        self.stats_path = state_file(settings, config.name, "stats")
        self.reader = ShardReader(kinesis, config.source_stream_name, self.checkpoint)
        self.s3 = aws.client("s3", settings)
        self.stats = DeliveryStats(concurrency=concurrency)
        self.poll_seconds = poll_seconds
        self.retry_backoff_seconds = retry_backoff_seconds
        self.concurrency = concurrency
        self.warm_up = warm_up
        self.watcher = watcher
        self.stop_requested = threading.Event()
        self._lambda_buffer: list[SourceRecord] = []
        self._s3_buffer = S3Buffer()
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="firehose-invoke")
        self._in_flight: deque[PendingBatch] = deque()
        self._warming: list[Future] = []

    def close(self) -> None:
        """Stop the runtimes and release the stream's lock (after ``run``, or instead of it)."""
        self._executor.shutdown(wait=True)
        try:
            self.invoker.close()
        finally:
            self.lock.release()

    # -- Lambda ---------------------------------------------------------------------------------
    def _request(self, records: list[SourceRecord]) -> bytes:
        return json.dumps(
            {
                "invocationId": str(uuid.uuid4()),
                "deliveryStreamArn": self.config.arn,
                "sourceKinesisStreamArn": self.config.source_stream_arn,
                "region": self.config.region,
                "records": [r.to_lambda() for r in records],
            }
        ).encode()

    def transform(self, records: list[SourceRecord]) -> InvocationOutcome:
        """Invoke with retries until an answer keeps the contract or the retries are spent (any thread)."""
        payload = self._request(records)
        ids = [r.record_id for r in records]
        code, message = "", ""
        attempts = self.config.retries + 1
        for attempt in range(1, attempts + 1):
            result = self.invoker.invoke(payload)
            if result.ok:
                try:
                    return InvocationOutcome(validate_response(result.payload, ids), attempts=attempt)
                except ContractViolation as exc:
                    code, message = exc.code, str(exc)
            else:
                error = result.error()
                code = "Lambda.FunctionError"
                message = (
                    f"The Lambda function was successfully invoked but it returned an error result: "
                    f"{error.get('errorType')}: {error.get('errorMessage')}"
                )
            log.warning("invocation %d/%d of %d records failed: %s %s", attempt, attempts, len(records), code, message)
            if attempt < attempts:
                time.sleep(self.retry_backoff_seconds * 2 ** (attempt - 1))
        return InvocationOutcome(None, code, message, attempts)

    def _take_lambda_batch(self) -> list[SourceRecord]:
        """Records from the front of the buffer, within the buffer size and the 6 MB payload limit."""
        limit = min(self.config.lambda_buffer_bytes, PAYLOAD_LIMIT_BYTES * 3 // 4 - 64 * 1024)
        batch: list[SourceRecord] = []
        size = 0
        for record in self._lambda_buffer:
            cost = len(record.data) + 512  # base64 and the metadata around each record
            if batch and size + cost > limit:
                break
            batch.append(record)
            size += cost
        del self._lambda_buffer[: len(batch)]
        return batch

    def _dispatch(self, records: list[SourceRecord]) -> None:
        self._in_flight.append(PendingBatch(records, self._executor.submit(self.transform, records)))

    def _collect(self, *, block: bool = False) -> None:
        """Move finished batches into the S3 buffer, oldest first, stopping at the first unfinished one
        (``block``: wait for each in turn), so output order and checkpoints follow the source order."""
        while self._in_flight and (block or self._in_flight[0].future.done()):
            pending = self._in_flight.popleft()
            self.absorb(pending.records, pending.future.result())
            self.stats.batch_seconds.append(time.monotonic() - pending.started)

    def absorb(self, records: list[SourceRecord], invocation: InvocationOutcome) -> None:
        """Account for one transformed batch and move its output into the S3 buffer."""
        self.stats.invocations += invocation.attempts
        self.stats.failed_invocations += invocation.failed_attempts
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
                    line = error_record(
                        record,
                        "Lambda.ProcessingFailedStatus",
                        f"The Lambda function returned {RESULT_FAILED} for this record.",
                        invocation.attempts,
                        self.config.lambda_arn,
                    )
                else:
                    line = error_record(
                        record,
                        invocation.error_code,
                        invocation.error_message,
                        invocation.attempts,
                        self.config.lambda_arn,
                    )
                buf.error_lines.append(line)
                buf.error_oldest_ms = min(buf.error_oldest_ms or record.arrival_ms, record.arrival_ms)
                self.stats.failed += 1
            buf.positions[record.shard_id] = record.sequence_number
            buf.oldest_received = min(buf.oldest_received or record.received, record.received)

    def start_warm_up(self) -> None:
        """One warm-up invocation per runtime, in the background: process start, imports, model, connection."""
        self._warming = [self._executor.submit(self.invoker.invoke, WARM_UP_PAYLOAD) for _ in range(self.concurrency)]

    def _note_warm(self) -> None:
        if self._warming and all(f.done() for f in self._warming):
            for future in self._warming:
                if future.exception() is not None:
                    log.warning("warm-up invocation failed: %s", future.exception())
            self._warming = []
            self.stats.warm = True
            self.write_stats()

    # -- settings --------------------------------------------------------------------------------
    def follow_settings(self) -> None:
        """Pick up changed stack settings: restart the runtimes with a changed Lambda environment, or
        stop with one line when delivery's own settings changed."""
        if self.watcher is None:
            return
        updated = self.watcher.poll()
        if updated is None:
            return
        changed = changed_settings(self.settings, updated)
        ours = sorted(changed & DELIVERY_SETTINGS)
        if ours:
            raise PipelineError(
                f"the stack's settings changed ({', '.join(ours)}) and delivery cannot follow: "
                "restart `recsys firehose` (nothing is lost: it resumes from its checkpoint)"
            )
        functions = sorted(changed & set(LAMBDA_ENVIRONMENT))
        if functions:
            self._collect(block=True)  # batches in flight finish with the environment they started with
            if self.invoker.set_environment(lambda_environment(updated)):
                self.stats.runtime_restarts += 1
                self.write_stats()
                log.warning(
                    "stack settings changed (%s): Lambda runtimes restarted with the new environment",
                    ", ".join(functions),
                )
                if self.warm_up:
                    self.start_warm_up()
            else:
                log.warning(
                    "stack settings changed (%s); the function's environment is the Lambda service's to change",
                    ", ".join(functions),
                )
        self.settings = updated

    # -- S3 --------------------------------------------------------------------------------------
    def _put(self, key: str, lines: list[bytes]) -> None:
        self.s3.put_object(Bucket=self.config.bucket, Key=key, Body=b"".join(lines))

    def flush_s3(self) -> None:
        """Write the buffered objects, then checkpoint the positions they cover."""
        buf = self._s3_buffer
        if buf.empty:
            return
        if buf.ok_lines:
            moment = datetime.fromtimestamp(buf.ok_oldest_ms / 1000, UTC)
            self._put(object_key(self.config, moment), buf.ok_lines)
            self.stats.objects += 1
        if buf.error_lines:
            moment = datetime.fromtimestamp(buf.error_oldest_ms / 1000, UTC)
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
        return (
            size >= self.config.lambda_buffer_bytes
            or now - self._lambda_buffer[0].received >= self.config.lambda_buffer_seconds
        )

    def _s3_due(self, now: float) -> bool:
        buf = self._s3_buffer
        if buf.empty:
            return False
        return buf.size >= self.config.s3_buffer_bytes or now - buf.oldest_received >= self.config.s3_buffer_seconds

    def step(self, *, drain: bool = False) -> int:
        """One poll of every shard, the batches that are due (all of them when ``drain``), the
        finished invocations, and the S3 buffer when due."""
        self.follow_settings()
        self._note_warm()
        received = [] if self.stop_requested.is_set() else self.reader.poll()
        self.stats.records_in += len(received)
        self._lambda_buffer.extend(received)
        while (
            self._lambda_buffer
            and len(self._in_flight) < self.concurrency
            and (drain or self._lambda_due(time.monotonic()))
        ):
            self._dispatch(self._take_lambda_batch())
        self._collect()
        while drain and (self._lambda_buffer or self._in_flight):
            while self._lambda_buffer and len(self._in_flight) < self.concurrency:
                self._dispatch(self._take_lambda_batch())
            self._collect(block=True)
        if drain or self._s3_due(time.monotonic()):
            self.flush_s3()
        return len(received)

    def _idle_wait(self) -> None:
        """Sleep until the next poll, waking early when an invocation in flight finishes."""
        if self._in_flight:
            wait_for_futures([self._in_flight[0].future], timeout=self.poll_seconds, return_when=FIRST_COMPLETED)
        else:
            self.stop_requested.wait(self.poll_seconds)

    def run(self, *, until_idle: float | None = None, max_batches: int | None = None) -> DeliveryStats:
        """Deliver until stopped (signal), idle for ``until_idle`` seconds, or ``max_batches`` invocations."""
        if self.warm_up and not self.stats.warm and not self._warming:
            self.start_warm_up()
        idle_since = last_written = time.monotonic()
        self.write_stats()  # at start, before any traffic: health checks read its age
        try:
            while not self.stop_requested.is_set():
                got = self.step()
                now = time.monotonic()
                if now - last_written >= HEARTBEAT_SECONDS:
                    self.write_stats()
                    last_written = now
                busy = got or self._lambda_buffer or self._in_flight or not self._s3_buffer.empty
                if busy:
                    idle_since = now
                if until_idle is not None and now - idle_since >= until_idle:
                    break
                if max_batches is not None and len(self.stats.batch_seconds) >= max_batches:
                    break
                if not got:
                    self._idle_wait()
            self.step(drain=True)  # a clean stop delivers what it holds
        finally:
            self.write_stats()
        return self.stats


def build_delivery(
    settings: Settings,
    *,
    mode: str | None = None,
    code_dir: Path | None = None,
    handler: str = LAMBDA_HANDLER,
    timeout_seconds: float = 60.0,
    poll_seconds: float = 0.2,
    wait_for_stream_seconds: float = 0.0,
    concurrency: int | None = None,
    warm_up: bool = True,
    follow_stack: bool = True,
) -> FirehoseDelivery:
    """A delivery process for the configured delivery stream (waiting up to ``wait_for_stream_seconds`` for it
    to exist); ``mode`` defaults to RECSYS_LAMBDA_INVOKE, ``concurrency`` to RECSYS_LAMBDA_CONCURRENCY.
    ``follow_stack``: watch the running stack's settings."""
    watcher = StackEnvWatcher() if follow_stack else None
    config = describe_delivery(settings, wait_seconds=wait_for_stream_seconds)
    concurrency = concurrency or settings.lambda_concurrency
    invoker = build_invoker(
        settings,
        config,
        mode=mode or settings.lambda_invoke,
        code_dir=code_dir,
        handler=handler,
        timeout_seconds=timeout_seconds,
        concurrency=concurrency,
    )
    try:
        return FirehoseDelivery(
            settings,
            config,
            invoker,
            poll_seconds=poll_seconds,
            concurrency=concurrency,
            warm_up=warm_up,
            watcher=watcher,
        )
    except BaseException:
        invoker.close()
        raise
