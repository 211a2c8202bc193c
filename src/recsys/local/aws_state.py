"""The embedded stack's AWS state kept across ``stack down``/``up`` (both emulators hold it in memory only).

``save`` (``stack down``): every object of every bucket, and for every Kinesis stream the records not
yet delivered: those after the local Firehose delivery's checkpoint for that incarnation of the stream
(``<state>/firehose/*.checkpoint.json``), or all of them when there is none. They go to
``<state>/aws-state/``, written into a temporary folder and renamed, so a save is whole or absent.

``restore`` (``stack up`` on a fresh emulator): the buckets and objects, each stream with its shard
count and its saved records in their original order per shard (hence per partition key); then the
delivery checkpoints of those streams are removed. The restored stream is a new incarnation that holds
only undelivered records, so delivery reads it from the oldest record and delivers each record once
(records read but not yet checkpointed when the stack went down are delivered again, as after any
delivery restart). The folder is then renamed ``aws-state.restored``: a save is restored once.

Not kept: IAM roles, the Firehose definition and the Lambda (``ensure_resources`` creates them again),
Secrets Manager secrets (never written to disk in clear), the Glue catalog. The emulator's own
persistence is not used: moto's recorder replays every request (so the stream gets a new creation
time and every record is delivered again, and replay time grows with uptime); LocalStack community
does not restore S3 and writes Kinesis every 5 s only (docs/emulators.md).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from recsys.core import aws
from recsys.core.config import Settings
from recsys.local.aws_resources import ensure_bucket
from recsys.local.firehose.delivery import state_file
from recsys.local.private_files import private_dir

log = logging.getLogger(__name__)

SAVED = "aws-state"
RESTORED = "aws-state.restored"
FORMAT = 1
SUMMARY_FILE = "saved.json"  # what the folder holds; present only when the save is whole
PUT_RECORDS_MAX = 500
PUT_RECORDS_MAX_BYTES = 5 * 1024 * 1024
TRANSFER_THREADS = 8


@dataclass
class StateSummary:
    """What a save or restore moved, and how long it took."""

    buckets: int
    objects: int
    bytes: int
    streams: int
    records: int
    seconds: float
    saved_at: str

    @classmethod
    def of(cls, buckets: dict[str, dict], streams: dict[str, dict], seconds: float, saved_at: str) -> StateSummary:
        """Totals of a save's per-bucket and per-stream figures."""
        return cls(
            len(buckets),
            sum(b["objects"] for b in buckets.values()),
            sum(b["bytes"] for b in buckets.values()),
            len(streams),
            sum(s["records"] for s in streams.values()),
            seconds,
            saved_at,
        )

    def line(self, verb: str, where: Path) -> str:
        return (
            f"{verb} AWS state: {self.objects:,} objects ({self.bytes / 2**20:.1f} MiB) in {self.buckets} buckets, "
            f"{self.records:,} undelivered records in {self.streams} streams, {where} in {self.seconds:.1f} s"
        )


def saved_dir(state_dir: Path) -> Path:
    return state_dir / SAVED


def _checkpoint_positions(settings: Settings, stream_arn: str, created: str) -> dict[str, str]:
    """Per shard, the position every delivery of this stream incarnation has delivered up to (the lowest)."""
    pattern = state_file(settings, "*", "checkpoint")
    positions: dict[str, str] = {}
    for path in sorted(pattern.parent.glob(pattern.name)):
        saved = json.loads(path.read_text())
        if (saved.get("stream_arn"), saved.get("stream_created", "")) != (stream_arn, created):
            continue  # another stream, or an older incarnation of this one: it says nothing about these records
        for shard, sequence in saved.get("shards", {}).items():
            if shard not in positions or int(sequence) < int(positions[shard]):
                positions[shard] = sequence
    return positions


def _checkpoint_files(settings: Settings, stream_arn: str) -> list[Path]:
    pattern = state_file(settings, "*", "checkpoint")
    return [p for p in pattern.parent.glob(pattern.name) if json.loads(p.read_text()).get("stream_arn") == stream_arn]


def _shard_records(kinesis, stream: str, shard_id: str, after: str | None) -> list[dict]:
    """Every record of the shard after ``after`` (from the oldest when None), in order."""
    args = {"StreamName": stream, "ShardId": shard_id}
    if after:
        args.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=after)
    else:
        args["ShardIteratorType"] = "TRIM_HORIZON"
    iterator = kinesis.get_shard_iterator(**args)["ShardIterator"]
    out = []
    while iterator:
        response = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
        out += [
            {
                "shard": shard_id,
                "sequence": r["SequenceNumber"],
                "partition_key": r["PartitionKey"],
                "data": base64.b64encode(r["Data"]).decode(),
                "arrival": r["ApproximateArrivalTimestamp"].isoformat(),
            }
            for r in response["Records"]
        ]
        if not response["Records"] and response.get("MillisBehindLatest", 0) == 0:
            break
        iterator = response.get("NextShardIterator")
    return out


def _save_streams(settings: Settings, root: Path) -> dict[str, dict]:
    kinesis = aws.client("kinesis", settings)
    streams = {}
    for name in kinesis.get_paginator("list_streams").paginate().build_full_result().get("StreamNames", []):
        summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        arn, created = summary["StreamARN"], summary["StreamCreationTimestamp"].isoformat()
        positions = _checkpoint_positions(settings, arn, created)
        shards = kinesis.list_shards(StreamName=name)["Shards"]
        records = [
            r
            for shard in shards
            for r in _shard_records(kinesis, name, shard["ShardId"], positions.get(shard["ShardId"]))
        ]
        (root / "kinesis").mkdir(parents=True, exist_ok=True)
        with open(root / "kinesis" / f"{name}.jsonl", "w") as out:
            out.writelines(json.dumps(r) + "\n" for r in records)
        streams[name] = {
            "arn": arn,
            "created": created,
            "shards": len(shards),
            "records": len(records),
            "delivered_up_to": positions,
        }
    return streams


def _list_objects(s3, bucket: str) -> list[dict]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [o for page in pages for o in page.get("Contents", [])]


def _save_buckets(settings: Settings, root: Path, show_progress: bool) -> dict[str, dict]:
    s3 = aws.client("s3", settings)
    listing = {b["Name"]: _list_objects(s3, b["Name"]) for b in s3.list_buckets().get("Buckets", [])}
    total = sum(o["Size"] for objects in listing.values() for o in objects)
    buckets = {}
    with (
        tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            desc="saving S3 objects",
            delay=1.0,
            disable=None if show_progress else True,
        ) as bar,
        ThreadPoolExecutor(TRANSFER_THREADS) as pool,
    ):
        for bucket, objects in listing.items():
            folder = root / "s3" / bucket
            folder.mkdir(parents=True, exist_ok=True)

            def fetch(numbered: tuple[int, dict], bucket: str = bucket, folder: Path = folder) -> dict:
                number, obj = numbered
                response = s3.get_object(Bucket=bucket, Key=obj["Key"])
                body = response["Body"].read()
                (folder / str(number)).write_bytes(body)
                bar.update(len(body))
                return {
                    "key": obj["Key"],
                    "file": str(number),
                    "size": len(body),
                    "content_type": response.get("ContentType"),
                    "metadata": response.get("Metadata", {}),
                }

            index = list(pool.map(fetch, enumerate(objects)))
            with open(folder / "index.jsonl", "w") as out:
                out.writelines(json.dumps(entry) + "\n" for entry in index)
            buckets[bucket] = {"objects": len(index), "bytes": sum(e["size"] for e in index)}
    return buckets


def save(settings: Settings, state_dir: Path, *, emulator: str, show_progress: bool = True) -> StateSummary:
    """Write the emulator's buckets and undelivered stream records to ``<state>/aws-state`` (replacing a
    previous save); the stream positions are read before the objects, so a delivery still running can
    only make a record be delivered again, never lost."""
    started = time.monotonic()
    final = saved_dir(state_dir)
    tmp = state_dir / f"{SAVED}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    private_dir(tmp)
    streams = _save_streams(settings, tmp)
    buckets = _save_buckets(settings, tmp, show_progress)
    saved_at = datetime.now(UTC).isoformat(timespec="seconds")
    (tmp / SUMMARY_FILE).write_text(
        json.dumps(
            {"format": FORMAT, "saved_at": saved_at, "emulator": emulator, "buckets": buckets, "streams": streams},
            indent=2,
        )
    )
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return StateSummary.of(buckets, streams, time.monotonic() - started, saved_at)


def _put_in_order(kinesis, stream: str, records: list[dict]) -> None:
    """PutRecords in batches in which no partition key repeats, each batch complete (failed entries
    retried) before the next: records of one partition key keep their order."""
    batch: list[dict] = []
    keys: set[str] = set()
    size = 0

    def send() -> None:
        pending, delay = batch, 0.1
        while pending:
            response = kinesis.put_records(
                StreamName=stream,
                Records=[{"PartitionKey": r["partition_key"], "Data": base64.b64decode(r["data"])} for r in pending],
            )
            pending = [r for r, result in zip(pending, response["Records"], strict=True) if "ErrorCode" in result]
            if pending:
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    for record in records:
        cost = len(record["data"]) * 3 // 4 + len(record["partition_key"])
        if batch and (
            len(batch) == PUT_RECORDS_MAX or size + cost > PUT_RECORDS_MAX_BYTES or record["partition_key"] in keys
        ):
            send()
            batch, keys, size = [], set(), 0
        batch.append(record)
        keys.add(record["partition_key"])
        size += cost
    if batch:
        send()


def _restore_streams(settings: Settings, root: Path, streams: dict[str, dict]) -> None:
    kinesis = aws.client("kinesis", settings)
    for name, saved in streams.items():
        with contextlib.suppress(kinesis.exceptions.ResourceInUseException):
            kinesis.create_stream(StreamName=name, ShardCount=saved["shards"])
        kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 300})
        with open(root / "kinesis" / f"{name}.jsonl") as lines:
            records = [json.loads(line) for line in lines]
        records.sort(key=lambda r: (r["shard"], int(r["sequence"])))
        _put_in_order(kinesis, name, records)
        for checkpoint in _checkpoint_files(settings, saved["arn"]):
            checkpoint.unlink()  # the new incarnation holds only undelivered records: read it from the oldest


def _restore_buckets(settings: Settings, root: Path, buckets: dict[str, dict], show_progress: bool) -> None:
    s3 = aws.client("s3", settings)
    total = sum(b["bytes"] for b in buckets.values())
    with (
        tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            desc="restoring S3 objects",
            delay=1.0,
            disable=None if show_progress else True,
        ) as bar,
        ThreadPoolExecutor(TRANSFER_THREADS) as pool,
    ):
        for bucket in buckets:
            ensure_bucket(settings, bucket)
            folder = root / "s3" / bucket

            def put(entry: dict, bucket: str = bucket, folder: Path = folder) -> None:
                extra = {"ContentType": entry["content_type"]} if entry.get("content_type") else {}
                body = (folder / entry["file"]).read_bytes()
                s3.put_object(Bucket=bucket, Key=entry["key"], Body=body, Metadata=entry.get("metadata") or {}, **extra)
                bar.update(len(body))

            with open(folder / "index.jsonl") as lines:
                list(pool.map(put, (json.loads(line) for line in lines)))


def restore(settings: Settings, state_dir: Path, *, show_progress: bool = True) -> StateSummary | None:
    """Put a saved state into the (fresh) emulator; None when there is none. The save is then renamed
    ``aws-state.restored`` so that it is never restored twice."""
    root = saved_dir(state_dir)
    if not (root / SUMMARY_FILE).exists():
        return None
    started = time.monotonic()
    manifest = json.loads((root / SUMMARY_FILE).read_text())
    _restore_buckets(settings, root, manifest["buckets"], show_progress)
    _restore_streams(settings, root, manifest["streams"])
    done = state_dir / RESTORED
    shutil.rmtree(done, ignore_errors=True)
    root.rename(done)
    return StateSummary.of(manifest["buckets"], manifest["streams"], time.monotonic() - started, manifest["saved_at"])


def discard(state_dir: Path) -> bool:
    """Remove a saved state (``stack down --discard``); True when there was one."""
    root = saved_dir(state_dir)
    existed = root.exists()
    shutil.rmtree(root, ignore_errors=True)
    return existed
