"""The replay producer: activity events to the Kinesis stream.

Events are synthesised by ``recsys_seed.synthesize_events`` from the source's planted tastes, or
read from a JSON-lines file (``--from-file``: lines are sent as they are, malformed ones included).

Sending: ``PutRecords`` batches of at most 500 records and 5 MB, partition key = session id,
a rate limit in events/s, a progress bar, and retries with exponential backoff of exactly the
records a partial failure names (``FailedRecordCount`` / per-record ``ErrorCode``), so nothing is
lost and nothing is sent twice. Interrupted (Ctrl-C, SIGTERM) or cut off (the endpoint refuses or
goes away), it raises ``ReplayInterrupted`` carrying how many events were sent and acknowledged and,
for a file, the byte offset to resume from (``--from-offset``): the start of the first line not
acknowledged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError
from tqdm import tqdm

from recsys.apps.source import source_catalogue
from recsys.contracts import MAX_PARTITION_KEY_CHARS
from recsys.core import aws
from recsys.core.config import Settings
from recsys.core.errors import PipelineError
from recsys_seed import synthesize_events

log = logging.getLogger(__name__)

MAX_BATCH_RECORDS = 500
MAX_BATCH_BYTES = 5 * 1024 * 1024
MAX_RECORD_BYTES = 1024 * 1024  # data + partition key
MAX_ATTEMPTS = 8
MIN_RATE, MAX_RATE = 0.1, 1_000_000.0  # events/s; slower than one event in 10 s is a stuck replay, not a slow one


@dataclass(frozen=True)
class OutgoingRecord:
    """One Kinesis record to send."""

    data: bytes
    partition_key: str
    offset: int | None = None  # where its line starts in the file it came from

    @property
    def size(self) -> int:
        return len(self.data) + len(self.partition_key.encode())


@dataclass
class ReplaySummary:
    """What a replay sent."""

    events: int = 0
    sent: int = 0  # acknowledged by Kinesis
    attempted: int = 0  # handed to PutRecords at least once
    put_calls: int = 0
    retried_records: int = 0
    new_customers: int = 0
    empty_histories: int = 0
    seconds: float = 0.0
    accepted_at: dict[str, float] = field(default_factory=dict)  # partition key (session) -> epoch seconds
    resume_offset: int | None = None  # interrupted file replay: where the first unacknowledged line starts

    @property
    def acknowledged(self) -> int:
        return self.sent

    def line(self) -> str:
        rate = self.sent / self.seconds if self.seconds else 0.0
        return (
            f"replayed {self.sent:,}/{self.events:,} events in {self.seconds:.1f} s ({rate:,.0f} events/s): "
            f"{self.put_calls} PutRecords calls, {self.retried_records} records retried, "
            f"{self.new_customers} new customers, {self.empty_histories} empty histories"
        )


def partition_key(session_id, data: bytes) -> str:
    """The session id when it is a valid Kinesis partition key (1-256 characters, UTF-8 encodable),
    else a digest of the record, so malformed records still spread over shards and can be sent."""
    if isinstance(session_id, str) and 1 <= len(session_id) <= MAX_PARTITION_KEY_CHARS:
        try:
            session_id.encode("utf-8")
            return session_id
        except UnicodeEncodeError:
            pass
    return hashlib.sha256(data).hexdigest()[:32]


def record_for(data: bytes) -> OutgoingRecord:
    """A raw line, sent as it is, keyed by its session_id when it has a usable one."""
    try:
        session_id = json.loads(data)["session_id"]
    except (ValueError, KeyError, TypeError, RecursionError):  # malformed lines are sent too, on purpose
        session_id = None
    return OutgoingRecord(data, partition_key(session_id, data))


def events_to_records(events: Iterable[dict]) -> list[OutgoingRecord]:
    """JSON records keyed by session."""
    records = []
    for event in events:
        data = json.dumps(event, separators=(",", ":")).encode()
        records.append(OutgoingRecord(data, partition_key(event.get("session_id"), data)))
    return records


def file_records(path: Path, start_offset: int = 0) -> list[OutgoingRecord]:
    """Each non-blank line of a JSON-lines file from byte ``start_offset`` (a line start: what an
    interrupted replay reported), sent as is; the whole file is checked before anything is sent, so
    a line Kinesis cannot take stops the replay before the first PutRecords."""
    data = path.read_bytes()
    if not 0 <= start_offset <= len(data) or (start_offset and data[start_offset - 1 : start_offset] != b"\n"):
        raise PipelineError(f"--from-offset {start_offset} is not the start of a line of {path} ({len(data):,} bytes)")
    records, offset = [], start_offset
    first_number = data.count(b"\n", 0, start_offset) + 1
    for number, line in enumerate(data[start_offset:].splitlines(keepends=True), first_number):
        start, offset = offset, offset + len(line)
        if not line.strip():
            continue
        record = record_for(line.rstrip(b"\r\n"))
        if record.size > MAX_RECORD_BYTES:
            raise PipelineError(
                f"{path}:{number}: a record of {record.size:,} bytes exceeds Kinesis's 1 MiB "
                f"record limit (its line starts at byte {start}); nothing was sent"
            )
        records.append(OutgoingRecord(record.data, record.partition_key, start))
    return records


class ReplayInterrupted(PipelineError):
    """A replay stopped before every event was acknowledged; ``summary`` says how far it got."""

    def __init__(self, reason: str, summary: ReplaySummary):
        self.reason, self.summary = reason, summary
        resume = f"; resume with --from-offset {summary.resume_offset}" if summary.resume_offset is not None else ""
        super().__init__(
            f"replay interrupted ({reason}): {summary.attempted:,} of {summary.events:,} events sent, "
            f"{summary.acknowledged:,} acknowledged{resume}"
        )


def check_rate(rate: float | None) -> None:
    """None or 0 is unlimited; else a finite rate in ``MIN_RATE..MAX_RATE`` events/s."""
    if rate and not MIN_RATE <= rate <= MAX_RATE:  # nan fails the comparison too
        raise PipelineError(f"--rate must be 0 (unlimited) or {MIN_RATE:g}..{MAX_RATE:,.0f} events/s, got {rate}")


# -- sending -------------------------------------------------------------------------------------
def batches(records: Sequence[OutgoingRecord]) -> Iterable[list[OutgoingRecord]]:
    """Consecutive batches within PutRecords' 500 records / 5 MB."""
    batch: list[OutgoingRecord] = []
    size = 0
    for record in records:
        if record.size > MAX_RECORD_BYTES:
            raise PipelineError(
                f"a record of {record.size:,} bytes exceeds Kinesis's 1 MiB record limit "
                f"(partition key {record.partition_key})"
            )
        if batch and (len(batch) == MAX_BATCH_RECORDS or size + record.size > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(record)
        size += record.size
    if batch:
        yield batch


class RateLimiter:
    """Paces sends so that the running average stays at or under ``rate`` per second."""

    def __init__(self, rate: float | None, clock=time.monotonic, sleep=time.sleep):
        self.rate, self.clock, self.sleep = rate, clock, sleep
        self.started = clock()
        self.count = 0

    def acquire(self, n: int) -> None:
        if self.rate:
            wait = self.started + (self.count + n) / self.rate - self.clock()
            if wait > 0:
                self.sleep(wait)
        self.count += n


def put_with_retries(
    kinesis,
    stream: str,
    batch: list[OutgoingRecord],
    summary: ReplaySummary,
    *,
    backoff_seconds: float = 0.1,
    sleep=time.sleep,
) -> None:
    """PutRecords; resend only the records the response marks failed, with exponential backoff."""
    pending = batch
    summary.attempted += len(batch)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        response = kinesis.put_records(
            StreamName=stream, Records=[{"Data": r.data, "PartitionKey": r.partition_key} for r in pending]
        )
        summary.put_calls += 1
        accepted_at = time.time()
        failed = [r for r, result in zip(pending, response["Records"], strict=True) if result.get("ErrorCode")]
        for record, result in zip(pending, response["Records"], strict=True):
            if not result.get("ErrorCode"):
                summary.accepted_at[record.partition_key] = accepted_at
        summary.sent += len(pending) - len(failed)
        if not failed:
            return
        pending = failed
        if attempt == MAX_ATTEMPTS:
            break
        codes = sorted({result["ErrorCode"] for result in response["Records"] if result.get("ErrorCode")})
        log.warning(
            "PutRecords: %d records failed (%s); retrying them (attempt %d of %d)",
            len(failed),
            ", ".join(codes),
            attempt + 1,
            MAX_ATTEMPTS,
        )
        summary.retried_records += len(failed)
        sleep(backoff_seconds * 2 ** (attempt - 1))
    raise PipelineError(
        f"{len(pending)} records still failed after {MAX_ATTEMPTS} PutRecords attempts; {summary.sent} were sent"
    )


def send_records(
    settings: Settings,
    records: Sequence[OutgoingRecord],
    *,
    rate: float | None = None,
    show_progress: bool = False,
    kinesis=None,
    summary: ReplaySummary | None = None,
) -> ReplaySummary:
    """Send ``records`` to the configured stream, batched, paced and retried."""
    kinesis = kinesis or aws.client("kinesis", settings)
    summary = summary or ReplaySummary()
    summary.events = summary.events or len(records)
    check_rate(rate)
    limiter = RateLimiter(rate)
    started = time.perf_counter()
    # under a rate limit, small batches keep the pace smooth (about 10 PutRecords per second)
    per_batch = MAX_BATCH_RECORDS if not rate else max(1, min(MAX_BATCH_RECORDS, int(rate // 10)))
    done = 0  # records[:done] are acknowledged
    try:
        with tqdm(total=len(records), unit="event", desc="replay", disable=not show_progress) as bar:
            for start in range(0, len(records), per_batch):
                for batch in batches(records[start : start + per_batch]):
                    limiter.acquire(len(batch))
                    put_with_retries(kinesis, settings.kinesis_stream, batch, summary)
                    done += len(batch)
                    bar.update(len(batch))
    except (KeyboardInterrupt, BotoCoreError, ClientError, PipelineError) as exc:
        summary.seconds = time.perf_counter() - started
        summary.resume_offset = records[done].offset if done < len(records) else None
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
        raise ReplayInterrupted(reason, summary) from exc
    summary.seconds = time.perf_counter() - started
    return summary


def replay(
    settings: Settings,
    *,
    events: int,
    rate: float | None,
    from_file: Path | None = None,
    from_offset: int = 0,
    new_customer_fraction: float = 0.05,
    empty_history_fraction: float = 0.05,
    seed: int | None = None,
    show_progress: bool = False,
) -> ReplaySummary:
    """Synthesise (or read) events and send them."""
    if from_file is not None:
        records = file_records(from_file, from_offset)
        summary = ReplaySummary(events=len(records))
    else:
        if events < 1:
            raise PipelineError(f"--events must be at least 1, got {events}")
        catalogue = source_catalogue(settings)
        if not catalogue.planted:
            log.warning("the source was not seeded by `recsys seed`: browse histories are uniform")
        try:
            synthesized = synthesize_events(
                catalogue,
                events,
                new_customer_fraction=new_customer_fraction,
                empty_history_fraction=empty_history_fraction,
                seed=seed,
            )
        except ValueError as exc:
            raise PipelineError(str(exc)) from None
        known = catalogue.customer_numbers
        summary = ReplaySummary(
            events=len(synthesized),
            new_customers=sum(e["customer_number"] not in known for e in synthesized),
            empty_histories=sum(not e["browse_history"] for e in synthesized),
        )
        records = events_to_records(synthesized)
    return send_records(settings, records, rate=rate, show_progress=show_progress, summary=summary)
