"""``recsys replay``: send activity events to the Kinesis stream.

Events are synthesised from the MySQL source (customers, products) with browse histories drawn
from the seeder's planted tastes: products sampled without replacement by softmax of the true
affinity (``recsys_seed.planted_truth``), so the recommendations that come back can be judged.
A fraction of events come from new customers (numbers not in MySQL, hence unknown to the model)
and a fraction have empty histories. ``--from-file`` replays a JSON-lines file line by line
instead (lines are sent as they are, malformed ones included).

Sending: ``PutRecords`` batches of at most 500 records and 5 MB, partition key = session id,
a rate limit in events/s, a progress bar, and retries with exponential backoff of exactly the
records a partial failure names (``FailedRecordCount`` / per-record ``ErrorCode``), so nothing is
lost and nothing is sent twice.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import click
import numpy as np
from tqdm import tqdm

from recsys import aws
from recsys.config import Settings, load_settings
from recsys.db import connect_mysql
from recsys.errors import PipelineError

log = logging.getLogger(__name__)

MAX_BATCH_RECORDS = 500
MAX_BATCH_BYTES = 5 * 1024 * 1024
MAX_RECORD_BYTES = 1024 * 1024  # data + partition key
MAX_ATTEMPTS = 8
HISTORY_LENGTH = (1, 8)
CART_PROBABILITY = 0.3
TASTE_TEMPERATURE = 1.0


@dataclass(frozen=True)
class OutgoingRecord:
    """One Kinesis record to send."""

    data: bytes
    partition_key: str

    @property
    def size(self) -> int:
        return len(self.data) + len(self.partition_key.encode())


@dataclass
class ReplaySummary:
    """What a replay sent."""

    events: int = 0
    sent: int = 0
    put_calls: int = 0
    retried_records: int = 0
    new_customers: int = 0
    empty_histories: int = 0
    seconds: float = 0.0
    accepted_at: dict[str, float] = field(default_factory=dict)  # partition key (session) -> epoch seconds

    def line(self) -> str:
        rate = self.sent / self.seconds if self.seconds else 0.0
        return (f"replayed {self.sent:,}/{self.events:,} events in {self.seconds:.1f} s ({rate:,.0f} events/s): "
                f"{self.put_calls} PutRecords calls, {self.retried_records} records retried, "
                f"{self.new_customers} new customers, {self.empty_histories} empty histories")


# -- synthesis -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Catalogue:
    """What events are drawn from: the source's customers and products, and the planted tastes."""

    customers: list[tuple[int, str, str, float]]  # customerNumber, city, country, creditLimit
    product_codes: np.ndarray  # (P,) in the planted truth's order
    affinity: Callable[[int], np.ndarray]  # customer row -> affinity for every product
    customer_rows: dict[int, int]  # customerNumber -> row of the planted truth


def load_catalogue(settings: Settings) -> Catalogue:
    """Customers and products from MySQL, tastes from the seeder's planted truth."""
    from recsys_seed import planted_truth, source_spec

    conn = connect_mysql(settings)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT customerNumber, city, country, creditLimit FROM customers ORDER BY customerNumber")
            customers = [(int(n), city, country, float(credit)) for n, city, country, credit in cur.fetchall()]
            cur.execute("SELECT productCode FROM products ORDER BY productCode")
            codes = [code for (code,) in cur.fetchall()]
        spec = source_spec(conn)
    finally:
        conn.close()
    if not customers or not codes:
        raise PipelineError(f"the source {settings.mysql_database!r} has no customers or products: seed it first")
    if spec is None:
        # not seeded by recsys: no planted tastes, so browse uniformly
        log.warning("the source was not seeded by `recsys seed`: browse histories are uniform")
        uniform = np.zeros(len(codes), dtype=np.float32)
        return Catalogue(customers, np.array(codes), lambda row: uniform, {c[0]: i for i, c in enumerate(customers)})
    truth = planted_truth(spec)
    return Catalogue(customers, truth.product_codes, lambda row: truth.affinity(row), truth.customer_index)


def _session_id(rng: np.random.Generator) -> str:
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))


def browse_history(rng: np.random.Generator, codes: np.ndarray, affinity: np.ndarray, length: int) -> list[dict]:
    """``length`` distinct products sampled by softmax of ``affinity`` (Gumbel top-k)."""
    noisy = affinity / TASTE_TEMPERATURE + rng.gumbel(size=affinity.shape)
    picked = np.argsort(-noisy)[:length]
    return [{"product_code": str(codes[j]), "quantity": int(rng.integers(1, 4)),
             "in_shopping_cart": bool(rng.random() < CART_PROBABILITY)} for j in picked]


def synthesize_events(catalogue: Catalogue, n: int, *, new_customer_fraction: float = 0.05,
                      empty_history_fraction: float = 0.05, seed: int | None = None) -> list[dict]:
    """``n`` activity events (ARCHITECTURE.md shape) drawn from the catalogue's planted tastes."""
    for name, value in (("new-customers", new_customer_fraction), ("empty-histories", empty_history_fraction)):
        if not 0 <= value <= 1:
            raise PipelineError(f"--{name} must be a fraction in 0..1, got {value}")
    rng = np.random.default_rng(seed)
    first_new = max(c[0] for c in catalogue.customers) + 1
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    events = []
    for i in range(n):
        number, city, country, credit = catalogue.customers[int(rng.integers(len(catalogue.customers)))]
        taste_row = catalogue.customer_rows.get(number, 0)
        if rng.random() < new_customer_fraction:
            number = first_new + i  # unknown to MySQL and the model; browses with a borrowed taste
        empty = rng.random() < empty_history_fraction
        length = 0 if empty else int(rng.integers(HISTORY_LENGTH[0], HISTORY_LENGTH[1] + 1))
        history = browse_history(rng, catalogue.product_codes, catalogue.affinity(taste_row), length) if length else []
        events.append({"session_id": _session_id(rng), "customer_number": number, "city": city,
                       "country": country, "credit_limit": credit, "event_time": now, "browse_history": history})
    return events


def events_to_records(events: Iterable[dict]) -> list[OutgoingRecord]:
    """JSON records keyed by session."""
    return [OutgoingRecord(json.dumps(e, separators=(",", ":")).encode(), str(e["session_id"])) for e in events]


def file_records(path: Path) -> list[OutgoingRecord]:
    """Each non-blank line of a JSON-lines file, sent as is; the key is its session_id when it has one."""
    records = []
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        try:
            key = str(json.loads(line)["session_id"])
        except (ValueError, KeyError, TypeError):
            key = hashlib.sha256(line).hexdigest()[:32]  # malformed lines still spread over shards
        records.append(OutgoingRecord(line, key or "empty"))
    return records


# -- sending -------------------------------------------------------------------------------------
def batches(records: Sequence[OutgoingRecord]) -> Iterable[list[OutgoingRecord]]:
    """Consecutive batches within PutRecords' 500 records / 5 MB."""
    batch: list[OutgoingRecord] = []
    size = 0
    for record in records:
        if record.size > MAX_RECORD_BYTES:
            raise PipelineError(f"a record of {record.size:,} bytes exceeds Kinesis's 1 MiB record limit "
                                f"(partition key {record.partition_key})")
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


def put_with_retries(kinesis, stream: str, batch: list[OutgoingRecord], summary: ReplaySummary, *,
                     backoff_seconds: float = 0.1, sleep=time.sleep) -> None:
    """PutRecords; resend only the records the response marks failed, with exponential backoff."""
    pending = batch
    for attempt in range(1, MAX_ATTEMPTS + 1):
        response = kinesis.put_records(StreamName=stream, Records=[
            {"Data": r.data, "PartitionKey": r.partition_key} for r in pending])
        summary.put_calls += 1
        accepted_at = time.time()
        failed = [r for r, result in zip(pending, response["Records"]) if result.get("ErrorCode")]
        for record, result in zip(pending, response["Records"]):
            if not result.get("ErrorCode"):
                summary.accepted_at[record.partition_key] = accepted_at
        summary.sent += len(pending) - len(failed)
        if not failed:
            return
        pending = failed
        if attempt == MAX_ATTEMPTS:
            break
        codes = sorted({result["ErrorCode"] for result in response["Records"] if result.get("ErrorCode")})
        log.warning("PutRecords: %d records failed (%s); retrying them (attempt %d of %d)",
                    len(failed), ", ".join(codes), attempt + 1, MAX_ATTEMPTS)
        summary.retried_records += len(failed)
        sleep(backoff_seconds * 2 ** (attempt - 1))
    raise PipelineError(f"{len(pending)} records still failed after {MAX_ATTEMPTS} PutRecords attempts; "
                        f"{summary.sent} were sent")


def send_records(settings: Settings, records: Sequence[OutgoingRecord], *, rate: float | None = None,
                 show_progress: bool = False, kinesis=None, summary: ReplaySummary | None = None) -> ReplaySummary:
    """Send ``records`` to the configured stream, batched, paced and retried."""
    kinesis = kinesis or aws.client("kinesis", settings)
    summary = summary or ReplaySummary()
    summary.events = summary.events or len(records)
    if rate is not None and rate <= 0:
        raise PipelineError(f"--rate must be positive, got {rate}")
    limiter = RateLimiter(rate)
    started = time.perf_counter()
    # under a rate limit, small batches keep the pace smooth (about 10 PutRecords per second)
    per_batch = MAX_BATCH_RECORDS if not rate else max(1, min(MAX_BATCH_RECORDS, int(rate // 10) or 1))
    with tqdm(total=len(records), unit="event", desc="replay", disable=not show_progress) as bar:
        for start in range(0, len(records), per_batch):
            for batch in batches(records[start:start + per_batch]):
                limiter.acquire(len(batch))
                put_with_retries(kinesis, settings.recsys_kinesis_stream, batch, summary)
                bar.update(len(batch))
    summary.seconds = time.perf_counter() - started
    return summary


def replay(settings: Settings, *, events: int, rate: float | None, from_file: Path | None = None,
           new_customer_fraction: float = 0.05, empty_history_fraction: float = 0.05, seed: int | None = None,
           show_progress: bool = False) -> ReplaySummary:
    """Synthesise (or read) events and send them."""
    if from_file is not None:
        records = file_records(from_file)
        summary = ReplaySummary(events=len(records))
    else:
        if events < 1:
            raise PipelineError(f"--events must be at least 1, got {events}")
        catalogue = load_catalogue(settings)
        synthesized = synthesize_events(catalogue, events, new_customer_fraction=new_customer_fraction,
                                        empty_history_fraction=empty_history_fraction, seed=seed)
        known = {c[0] for c in catalogue.customers}
        summary = ReplaySummary(events=len(synthesized),
                                new_customers=sum(e["customer_number"] not in known for e in synthesized),
                                empty_histories=sum(not e["browse_history"] for e in synthesized))
        records = events_to_records(synthesized)
    return send_records(settings, records, rate=rate, show_progress=show_progress, summary=summary)


@click.command("replay")
@click.option("--events", type=int, default=200, show_default=True, help="Events to synthesise.")
@click.option("--rate", type=float, default=200.0, show_default=True, help="Events per second (0: unlimited).")
@click.option("--from-file", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Replay this JSON-lines file instead of synthesising (lines sent as they are).")
@click.option("--new-customers", type=float, default=0.05, show_default=True,
              help="Fraction of events from customers unknown to the source and the model.")
@click.option("--empty-histories", type=float, default=0.05, show_default=True,
              help="Fraction of events with an empty browse history.")
@click.option("--seed", type=int, default=None, help="Random seed (default: a fresh one).")
def replay_command(events, rate, from_file, new_customers, empty_histories, seed) -> None:
    """Send activity events to the Kinesis stream (synthesised from the source, or from a file)."""
    summary = replay(load_settings(), events=events, rate=rate or None, from_file=from_file,
                     new_customer_fraction=new_customers, empty_history_fraction=empty_histories, seed=seed,
                     show_progress=True)
    click.echo(summary.line())
