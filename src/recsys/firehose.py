"""``recsys firehose``: local Firehose delivery, faithful to the data-transformation contract.

Neither moto's nor LocalStack's Firehose runs a Lambda processor over a Kinesis source as AWS does
(see ARCHITECTURE.md), so this process does: it reads the delivery stream's configuration through
the Firehose API (``describe_delivery_stream``), consumes every shard of the source stream,
buffers by the Lambda processor's hints, invokes the Lambda, enforces the contract, retries per
``NumberOfRetries``, buffers again by the S3 hints and writes:

* ``Ok`` records under the expanded ``Prefix`` as ``<stream>-<version>-YYYY-MM-DD-HH-MM-SS-<uuid>``;
* ``ProcessingFailed`` records, and every record of an invocation that still failed after the
  retries, under the expanded ``ErrorOutputPrefix`` in Firehose's error-record format;
* ``Dropped`` records nowhere (counted).

Shard positions are checkpointed in ``<state>/firehose/<stream>.checkpoint.json`` (atomic replace)
after each S3 flush, so a restart, even after SIGKILL, resumes with nothing lost; records whose
objects were written just before a kill are delivered again (at most one flush), with the same
deterministic recordId (``<shardId>:<sequenceNumber>``). Counts and batch latency go to
``<state>/firehose/<stream>.stats.json`` and a final summary line.

The Lambda runs either through the Lambda API (``RECSYS_LAMBDA_INVOKE=api``, emulators that run
functions) or, the embedded default (``runtime``), from the deployment zip under ``awslambdaric``
(``recsys.lambda_runtime``).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import re
import signal
import threading
import time
import uuid
import zipfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

import click

from recsys import aws
from recsys.config import Settings, load_settings
from recsys.errors import PipelineError
from recsys.lambda_runtime import InvocationResult, LocalLambda

log = logging.getLogger(__name__)

INVOKE_MODES = ("runtime", "api")
DEFAULT_HANDLER = "inference.handler.lambda_handler"
RESULTS = ("Ok", "Dropped", "ProcessingFailed")
PAYLOAD_LIMIT_BYTES = 6 * 1024 * 1024  # Lambda synchronous invoke, each way
GET_RECORDS_LIMIT = 10_000
# what the Lambda's own code reads from its environment (docs/contracts.md section 4)
LAMBDA_ENV_NAMES = ("RECSYS_ARTIFACTS_BUCKET", "PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE",
                    "RECSYS_DB_SECRET_ARN", "RECSYS_POINTER_TTL_SECONDS", "RECSYS_TOP_K", "AWS_ENDPOINT_URL",
                    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "OPENBLAS_NUM_THREADS")


def invoke_mode(settings: Settings) -> str:
    """``RECSYS_LAMBDA_INVOKE``: runtime (the zip under awslambdaric) or api (the Lambda Invoke API)."""
    mode = settings.recsys_lambda_invoke
    if mode not in INVOKE_MODES:
        raise PipelineError(f"RECSYS_LAMBDA_INVOKE must be one of {', '.join(INVOKE_MODES)}, got {mode!r}")
    return mode


# -- configuration -------------------------------------------------------------------------------
@dataclass(frozen=True)
class DeliveryConfig:
    """The parts of ``describe_delivery_stream`` that delivery obeys."""

    name: str
    arn: str
    version_id: str
    source_stream_arn: str
    bucket: str
    prefix: str
    error_prefix: str
    s3_buffer_bytes: int
    s3_buffer_seconds: float
    lambda_arn: str
    lambda_buffer_bytes: int
    lambda_buffer_seconds: float
    retries: int

    @property
    def source_stream_name(self) -> str:
        return self.source_stream_arn.rsplit("/", 1)[-1]

    @property
    def region(self) -> str:
        return self.arn.split(":")[3]

    @classmethod
    def from_description(cls, description: dict) -> DeliveryConfig:
        """Parse ``describe_delivery_stream()["DeliveryStreamDescription"]``."""
        name = description["DeliveryStreamName"]
        source = (description.get("Source") or {}).get("KinesisStreamSourceDescription") or {}
        if not source.get("KinesisStreamARN"):
            raise PipelineError(f"delivery stream {name} has no Kinesis stream source")
        destination = description["Destinations"][0].get("ExtendedS3DestinationDescription")
        if destination is None:
            raise PipelineError(f"delivery stream {name} has no extended S3 destination")
        processors = [p for p in destination.get("ProcessingConfiguration", {}).get("Processors", [])
                      if p.get("Type") == "Lambda"]
        if not destination.get("ProcessingConfiguration", {}).get("Enabled") or not processors:
            raise PipelineError(f"delivery stream {name} has no enabled Lambda processor")
        params = {p["ParameterName"]: p["ParameterValue"] for p in processors[0].get("Parameters", [])}
        hints = destination.get("BufferingHints", {})
        return cls(
            name=name,
            arn=description["DeliveryStreamARN"],
            version_id=str(description.get("VersionId", "1")),
            source_stream_arn=source["KinesisStreamARN"],
            bucket=destination["BucketARN"].split(":::", 1)[-1],
            prefix=destination.get("Prefix", ""),
            error_prefix=destination.get("ErrorOutputPrefix", ""),
            s3_buffer_bytes=int(float(hints.get("SizeInMBs", 5)) * 1024 * 1024),
            s3_buffer_seconds=float(hints.get("IntervalInSeconds", 300)),
            lambda_arn=params["LambdaArn"],
            lambda_buffer_bytes=int(float(params.get("BufferSizeInMBs", 1)) * 1024 * 1024),
            lambda_buffer_seconds=float(params.get("BufferIntervalInSeconds", 60)),
            retries=int(params.get("NumberOfRetries", 3)),
        )


def describe_delivery(settings: Settings) -> DeliveryConfig:
    """The configured delivery stream's configuration, through the Firehose API."""
    firehose = aws.client("firehose", settings)
    try:
        description = firehose.describe_delivery_stream(DeliveryStreamName=settings.recsys_firehose_stream)
    except firehose.exceptions.ResourceNotFoundException as exc:
        raise PipelineError(f"delivery stream {settings.recsys_firehose_stream!r} does not exist: "
                            "start the stack (`recsys stack up`) or create it with terraform") from exc
    return DeliveryConfig.from_description(description["DeliveryStreamDescription"])


# -- S3 prefixes and object names ----------------------------------------------------------------
_JAVA_DATETIME = [("yyyy", "%Y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H"), ("mm", "%M"), ("ss", "%S")]
_EXPRESSION = re.compile(r"!\{([a-z]+):([^}]*)\}")


def _java_format(pattern: str, moment: datetime) -> str:
    out = pattern
    for java, strf in _JAVA_DATETIME:
        out = out.replace(java, moment.strftime(strf))
    return out


def expand_prefix(prefix: str, moment: datetime, error_output_type: str | None = None) -> str:
    """Firehose's custom-prefix expressions: ``!{timestamp:…}``, ``!{firehose:error-output-type}``,
    ``!{firehose:random-string}``; a prefix without a timestamp gets the default ``YYYY/MM/dd/HH/``."""
    def replace(match: re.Match) -> str:
        namespace, value = match.groups()
        if namespace == "timestamp":
            return _java_format(value, moment)
        if namespace == "firehose" and value == "error-output-type":
            return error_output_type or ""
        if namespace == "firehose" and value == "random-string":
            return uuid.uuid4().hex[:11]
        raise PipelineError(f"unsupported prefix expression {match.group(0)!r}")

    expanded = _EXPRESSION.sub(replace, prefix)
    if "!{timestamp:" not in prefix:
        if error_output_type and "!{firehose:error-output-type}" not in prefix:
            expanded += f"{error_output_type}/"
        expanded += moment.strftime("%Y/%m/%d/%H/")
    return expanded


def object_key(config: DeliveryConfig, moment: datetime, error_output_type: str | None = None) -> str:
    """``<prefix><DeliveryStreamName>-<version>-YYYY-MM-DD-HH-MM-SS-<uuid>``, as Firehose names objects."""
    prefix = expand_prefix(config.error_prefix if error_output_type else config.prefix, moment, error_output_type)
    return f"{prefix}{config.name}-{config.version_id}-{moment:%Y-%m-%d-%H-%M-%S}-{uuid.uuid4()}"


# -- records, checkpoint, stats ------------------------------------------------------------------
@dataclass
class SourceRecord:
    """A Kinesis record as Firehose holds it while delivering."""

    shard_id: str
    sequence_number: str
    partition_key: str
    data: bytes
    arrival_ms: int  # Kinesis ApproximateArrivalTimestamp, epoch milliseconds
    received: float = field(default_factory=time.monotonic)  # when delivery read it (buffer age)

    @property
    def record_id(self) -> str:
        """Deterministic, so a record delivered again after a crash is recognisable."""
        return f"{self.shard_id}:{self.sequence_number}"

    def to_lambda(self) -> dict:
        return {
            "recordId": self.record_id,
            "approximateArrivalTimestamp": self.arrival_ms,
            "data": base64.b64encode(self.data).decode(),
            "kinesisRecordMetadata": {
                "shardId": self.shard_id, "partitionKey": self.partition_key,
                "approximateArrivalTimestamp": self.arrival_ms, "sequenceNumber": self.sequence_number,
                "subsequenceNumber": 0,
            },
        }


class Checkpoint:
    """Last delivered sequence number per shard, in a JSON file replaced atomically.

    Positions belong to one incarnation of the stream (ARN + creation time): a stream deleted and
    created again under the same name (an emulator restart, a redeploy) starts from its oldest record.
    """

    def __init__(self, path: Path, stream_arn: str, stream_created: str = ""):
        self.path, self.stream_arn, self.stream_created = path, stream_arn, stream_created
        self.positions: dict[str, str] = {}
        if path.exists():
            saved = json.loads(path.read_text())
            if (saved.get("stream_arn"), saved.get("stream_created", "")) == (stream_arn, stream_created):
                self.positions = dict(saved.get("shards", {}))
            else:
                log.warning("checkpoint %s is for another incarnation of the stream; reading from the oldest record",
                            path)

    def save(self, positions: dict[str, str]) -> None:
        self.positions.update(positions)
        write_json_atomically(self.path, {"stream_arn": self.stream_arn, "stream_created": self.stream_created,
                                          "shards": self.positions}, durable=True)


def write_json_atomically(path: Path, data: dict, *, durable: bool = False) -> None:
    """Replace ``path`` with ``data`` plus ``updated_at`` in one rename; ``durable`` fsyncs first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as handle:
        json.dump({**data, "updated_at": datetime.now(timezone.utc).isoformat()}, handle, indent=2)
        if durable:
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(tmp, path)


def nearest_rank(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


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

    def percentile(self, q: float) -> float:
        return nearest_rank(self.batch_seconds, q)

    def as_json(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if k != "batch_seconds"}
        data.update(batches=len(self.batch_seconds), batch_p50_seconds=round(self.percentile(0.5), 4),
                    batch_p99_seconds=round(self.percentile(0.99), 4))
        return data

    def line(self) -> str:
        return (f"firehose: in={self.records_in} delivered={self.delivered} dropped={self.dropped} "
                f"failed={self.failed} invocations={self.invocations} (failed {self.failed_invocations}) "
                f"objects={self.objects} error_objects={self.error_objects} "
                f"batch p50={self.percentile(0.5) * 1000:.0f} ms p99={self.percentile(0.99) * 1000:.0f} ms")


# -- the transformation contract -----------------------------------------------------------------
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
        raise ContractViolation("Lambda.JsonProcessingException", f"response is not {{'records': [...]}}: {exc}") from None
    expected = set(record_ids)
    out: dict[str, TransformedRecord] = {}
    for entry in records:
        record_id = entry.get("recordId") if isinstance(entry, dict) else None
        if record_id in out:
            raise ContractViolation("Lambda.DuplicatedRecordId", f"recordId {record_id} returned more than once")
        if record_id not in expected:
            raise ContractViolation("Lambda.MissingRecordId", f"response has a recordId not in the request: {record_id!r}")
        result = entry.get("result")
        if result not in RESULTS:
            raise ContractViolation("Lambda.JsonProcessingException", f"recordId {record_id}: unknown result {result!r}")
        data = entry.get("data")
        if result == "Ok" and not isinstance(data, str):
            raise ContractViolation("Lambda.JsonProcessingException", f"recordId {record_id}: Ok record without data")
        try:
            decoded = base64.b64decode(data or "", validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise ContractViolation("Lambda.JsonProcessingException", f"recordId {record_id}: data is not base64") from None
        out[record_id] = TransformedRecord(result, decoded)
    missing = expected - out.keys()
    if missing:
        raise ContractViolation("Lambda.MissingRecordId", f"{len(missing)} recordId(s) missing from the response, "
                                f"e.g. {sorted(missing)[0]}")
    return out


def error_record(record: SourceRecord, code: str, message: str, attempts: int, lambda_arn: str) -> bytes:
    """One line of Firehose's processing-failed format."""
    return (json.dumps({
        "attemptsMade": attempts,
        "arrivalTimestamp": record.arrival_ms,
        "errorCode": code,
        "errorMessage": message,
        "attemptEndingTimestamp": int(time.time() * 1000),
        "rawData": base64.b64encode(record.data).decode(),
        "lambdaArn": lambda_arn,
    }, separators=(",", ":")) + "\n").encode()


# -- invokers ------------------------------------------------------------------------------------
class Invoker(Protocol):
    def invoke(self, payload: bytes) -> InvocationResult: ...

    def close(self) -> None: ...


class ApiInvoker:
    """The Lambda ``Invoke`` API (AWS, or an emulator that runs functions)."""

    def __init__(self, settings: Settings, function_arn: str):
        self._client = aws.client("lambda", settings)
        self._arn = function_arn

    def invoke(self, payload: bytes) -> InvocationResult:
        started = time.monotonic()
        response = self._client.invoke(FunctionName=self._arn, InvocationType="RequestResponse", Payload=payload)
        return InvocationResult(response["Payload"].read(), response.get("FunctionError"), time.monotonic() - started)

    def close(self) -> None:
        pass


def unpack_zip(zip_path: Path, cache_root: Path) -> Path:
    """The zip extracted once per content hash (Lambda's ``/var/task``)."""
    if not zip_path.is_file():
        raise PipelineError(f"Lambda zip {zip_path} not found: build it with `recsys lambda-zip`")
    digest = hashlib.sha256(zip_path.read_bytes()).hexdigest()[:16]
    target = cache_root / digest
    if not (target / ".complete").exists():
        staging = cache_root / f".{digest}.{os.getpid()}"
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(staging)
        (staging / ".complete").touch()
        if target.exists():
            import shutil

            shutil.rmtree(target)
        staging.rename(target)
    return target


def lambda_environment(settings: Settings) -> dict[str, str]:
    """The function's environment: what the Lambda reads, from settings and the process environment."""
    env = {k: v for k, v in settings.as_env().items() if k in LAMBDA_ENV_NAMES and v}
    env.update({k: os.environ[k] for k in LAMBDA_ENV_NAMES if os.environ.get(k)})
    return env


def runtime_invoker(settings: Settings, config: DeliveryConfig, *, code_dir: Path | None, handler: str,
                    timeout_seconds: float) -> LocalLambda:
    """The deployment zip (or an unpacked code dir) under ``awslambdaric``."""
    state = settings.state_dir
    directory = code_dir or unpack_zip(Path(settings.recsys_lambda_zip), state / "lambda")
    (state / "logs").mkdir(parents=True, exist_ok=True)
    return LocalLambda(directory, handler, lambda_environment(settings), function_name=config.lambda_arn.rsplit(":", 1)[-1],
                       function_arn=config.lambda_arn, timeout_seconds=timeout_seconds,
                       log_file=state / "logs" / "lambda.log")


# -- Kinesis source ------------------------------------------------------------------------------
class ShardReader:
    """Reads every shard of the source stream from the checkpoint (or the oldest record)."""

    def __init__(self, kinesis, stream_name: str, checkpoint: Checkpoint):
        self._kinesis, self._stream = kinesis, stream_name
        self._checkpoint = checkpoint
        self._iterators: dict[str, str | None] = {}

    def _iterator(self, shard_id: str) -> str:
        after = self._checkpoint.positions.get(shard_id)
        args = {"StreamName": self._stream, "ShardId": shard_id}
        if after:
            try:
                return self._kinesis.get_shard_iterator(ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                                                        StartingSequenceNumber=after, **args)["ShardIterator"]
            except self._kinesis.exceptions.InvalidArgumentException:
                log.warning("checkpoint %s of %s is not in the stream any more; reading from the oldest record",
                            after, shard_id)
        return self._kinesis.get_shard_iterator(ShardIteratorType="TRIM_HORIZON", **args)["ShardIterator"]

    def refresh_shards(self) -> None:
        shards = self._kinesis.list_shards(StreamName=self._stream)["Shards"]
        for shard in shards:
            if shard["ShardId"] not in self._iterators:
                self._iterators[shard["ShardId"]] = self._iterator(shard["ShardId"])

    def poll(self) -> list[SourceRecord]:
        """One GetRecords per open shard."""
        if not self._iterators:
            self.refresh_shards()
        out: list[SourceRecord] = []
        for shard_id, iterator in list(self._iterators.items()):
            if iterator is None:
                continue  # closed shard, fully read
            response = self._kinesis.get_records(ShardIterator=iterator, Limit=GET_RECORDS_LIMIT)
            self._iterators[shard_id] = response.get("NextShardIterator")
            for r in response["Records"]:
                out.append(SourceRecord(shard_id, r["SequenceNumber"], r["PartitionKey"], r["Data"],
                                        int(r["ApproximateArrivalTimestamp"].timestamp() * 1000)))
        return out


# -- delivery --------------------------------------------------------------------------------------
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
        state = settings.state_dir / "firehose"
        kinesis = aws.client("kinesis", settings)
        created = kinesis.describe_stream_summary(StreamName=config.source_stream_name)[
            "StreamDescriptionSummary"]["StreamCreationTimestamp"].isoformat()
        self.checkpoint = Checkpoint(state / f"{config.name}.checkpoint.json", config.source_stream_arn, created)
        self.stats_path = state / f"{config.name}.stats.json"
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

    def transform(self, records: list[SourceRecord]) -> tuple[dict[str, TransformedRecord] | None, str, str, int]:
        """Invoke with retries: (results, "", "", attempts) or (None, errorCode, errorMessage, attempts)."""
        payload = self._request(records)
        ids = [r.record_id for r in records]
        code, message = "", ""
        attempts = self.config.retries + 1
        for attempt in range(1, attempts + 1):
            self.stats.invocations += 1
            result = self.invoker.invoke(payload)
            if result.ok:
                try:
                    return validate_response(result.payload, ids), "", "", attempt
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
        return None, code, message, attempts

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
        results, code, message, attempts = self.transform(records)
        buf = self._s3_buffer
        for record in records:
            outcome = results.get(record.record_id) if results is not None else None
            if outcome is not None and outcome.result == "Ok":
                buf.ok_lines.append(outcome.data)
                buf.ok_oldest_ms = min(buf.ok_oldest_ms or record.arrival_ms, record.arrival_ms)
                self.stats.delivered += 1
            elif outcome is not None and outcome.result == "Dropped":
                self.stats.dropped += 1
            else:
                if outcome is not None:  # ProcessingFailed by the function
                    line = error_record(record, "Lambda.ProcessingFailedStatus",
                                        "The Lambda function returned ProcessingFailed for this record.",
                                        attempts, self.config.lambda_arn)
                else:
                    line = error_record(record, code, message, attempts, self.config.lambda_arn)
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
            self._put(object_key(self.config, moment, "processing-failed"), buf.error_lines)
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
        idle_since = time.monotonic()
        try:
            while not self.stop_requested.is_set():
                got = self.step()
                now = time.monotonic()
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
                   handler: str = DEFAULT_HANDLER, timeout_seconds: float = 60.0,
                   poll_seconds: float = 0.2) -> FirehoseDelivery:
    """A delivery process for the configured delivery stream and Lambda invocation mode."""
    config = describe_delivery(settings)
    chosen = mode or invoke_mode(settings)
    if chosen == "api":
        invoker: Invoker = ApiInvoker(settings, config.lambda_arn)
    else:
        invoker = runtime_invoker(settings, config, code_dir=code_dir, handler=handler, timeout_seconds=timeout_seconds)
    return FirehoseDelivery(settings, config, invoker, poll_seconds=poll_seconds)


@click.command("firehose")
@click.option("--until-idle", type=float, default=None, metavar="SECONDS",
              help="Stop after this long with nothing to read and nothing buffered (bounded runs, tests).")
@click.option("--max-batches", type=int, default=None, help="Stop after this many Lambda batches.")
@click.option("--invoke", "mode", type=click.Choice(INVOKE_MODES), default=None,
              help="Lambda invocation: runtime (zip under awslambdaric, default) or api (Lambda Invoke API). "
                   "Default: RECSYS_LAMBDA_INVOKE.")
@click.option("--code-dir", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Run this unpacked code directory instead of RECSYS_LAMBDA_ZIP (runtime mode).")
@click.option("--handler", default=DEFAULT_HANDLER, show_default=True, help="Handler string (runtime mode).")
@click.option("--timeout", "timeout_seconds", type=float, default=60.0, show_default=True,
              help="Function timeout in seconds (runtime mode).")
@click.option("--poll-interval", type=float, default=0.2, show_default=True, help="Seconds between idle polls.")
def firehose_command(until_idle, max_batches, mode, code_dir, handler, timeout_seconds, poll_interval) -> None:
    """Local Firehose delivery: Kinesis -> transformation Lambda -> S3, per the delivery stream's configuration."""
    settings = load_settings()
    delivery = build_delivery(settings, mode=mode, code_dir=code_dir, handler=handler,
                              timeout_seconds=timeout_seconds, poll_seconds=poll_interval)
    config = delivery.config
    click.echo(f"delivering {config.source_stream_name} -> {config.lambda_arn.rsplit(':', 1)[-1]} -> "
               f"s3://{config.bucket}/{config.prefix} (lambda buffer {config.lambda_buffer_bytes // 1024} KiB/"
               f"{config.lambda_buffer_seconds:g} s, s3 buffer {config.s3_buffer_bytes // 1024} KiB/"
               f"{config.s3_buffer_seconds:g} s, retries {config.retries})")
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: delivery.stop_requested.set())
    try:
        stats = delivery.run(until_idle=until_idle, max_batches=max_batches)
    finally:
        delivery.invoker.close()
    click.echo(stats.line())
