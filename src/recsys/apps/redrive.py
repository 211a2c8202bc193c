"""Re-drive parked records: what delivery parked under ``processing-failed/`` goes back to the source
stream once the cause is fixed, each record once.

An error object holds Firehose error records, one JSON line per parked record, ``rawData`` being
the record as it was sent. ``redrive`` puts each record's ``rawData`` back on the Kinesis stream
(keyed as ``replay`` keys records) and then writes a marker object for the error object,
``processing-failed/redriven/<rest of the error key>.json``, listing the records it re-drove. A
record is known by its ``recordId`` (``<shardId>:<sequenceNumber>``, which local delivery writes
into the error line; a record parked twice after a crash is re-driven once), or, for lines
without one (Firehose on AWS), by ``<error key>#<line>``. Every record a marker lists is skipped by
later runs, so a second redrive is a no-op. A redrive killed between sending an object's records
and writing its marker sends those records again next time (at most one error object's worth).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tqdm import tqdm

from recsys.apps.replay import record_for, send_records
from recsys.contracts import PROCESSING_FAILED, REDRIVE_MARKER_DIR
from recsys.core import aws
from recsys.core.config import Settings
from recsys.local.firehose.config import describe_delivery

log = logging.getLogger(__name__)


@dataclass
class RedriveSummary:
    """What a redrive found and did, in records (and error objects)."""

    objects: int = 0
    found: int = 0
    redriven: int = 0
    already_redriven: int = 0
    not_selected: int = 0
    unreadable: int = 0
    dry_run: bool = False

    def line(self) -> str:
        verb = "would redrive" if self.dry_run else "redriven"
        extra = f", {self.not_selected} not selected (--error-code, --since)" if self.not_selected else ""
        return (
            f"redrive: {self.found} parked records in {self.objects} error objects: {self.redriven} {verb}, "
            f"{self.already_redriven} skipped as already redriven, {self.unreadable} unreadable{extra}"
        )


@dataclass
class ParkedRecord:
    """One line of an error object, identified for the ledger."""

    key: str  # recordId, or "<error key>#<line>"
    error_code: str
    data: bytes
    parked_ms: int | None = None  # attemptEndingTimestamp: when delivery gave up on it

    def selected(self, error_codes: Collection[str], since: datetime | None) -> bool:
        """Whether the ``--error-code`` and ``--since`` filters take this record."""
        if error_codes and self.error_code not in error_codes:
            return False
        return since is None or self.parked_ms is None or self.parked_ms >= since.timestamp() * 1000


@dataclass
class ErrorObject:
    key: str
    records: list[ParkedRecord] = field(default_factory=list)
    unreadable: int = 0


def marker_key(listing: str, error_key: str) -> str:
    """Where the marker of an error object goes: ``<listing prefix>redriven/<rest of its key>.json``."""
    return f"{listing}{REDRIVE_MARKER_DIR}{error_key[len(listing) :]}.json"


def listing_prefix(error_prefix: str) -> str:
    """The fixed start of the delivery stream's ErrorOutputPrefix (up to its first time or random part)."""
    fixed = error_prefix.replace("!{firehose:error-output-type}", PROCESSING_FAILED)
    return fixed.split("!{", 1)[0]


def parse_error_object(key: str, body: bytes) -> ErrorObject:
    """The parked records of one error object; lines that are not error records count as unreadable."""
    parsed = ErrorObject(key)
    for number, line in enumerate(body.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            data = base64.b64decode(entry["rawData"], validate=True)
            record_id = entry.get("recordId")
            ended = entry.get("attemptEndingTimestamp")
            parsed.records.append(
                ParkedRecord(
                    str(record_id) if record_id else f"{key}#{number}",
                    str(entry.get("errorCode", "")),
                    data,
                    int(ended) if isinstance(ended, (int, float)) else None,
                )
            )
        except (ValueError, KeyError, TypeError, binascii.Error):
            parsed.unreadable += 1
    return parsed


def redrive(
    settings: Settings,
    *,
    error_codes: Collection[str] = (),
    since: datetime | None = None,
    dry_run: bool = False,
    show_progress: bool = False,
) -> RedriveSummary:
    """Put every parked record not yet re-driven back on the delivery stream's source, and mark it.

    ``error_codes``: only records parked with one of these codes; ``since``: only records parked at
    or after this time (an aware datetime).
    """
    config = describe_delivery(settings)
    s3 = aws.client("s3", settings)
    kinesis_settings = settings.replace(RECSYS_KINESIS_STREAM=config.source_stream_name)
    listing = listing_prefix(config.error_prefix)
    markers = listing + REDRIVE_MARKER_DIR
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=config.bucket, Prefix=listing)
    keys = sorted(o["Key"] for page in pages for o in page.get("Contents", []))
    marked = {
        key: set(json.loads(aws.read_object(settings, config.bucket, key) or b"{}").get("redriven", []))
        for key in keys
        if key.startswith(markers)
    }
    ledger = set().union(*marked.values())
    summary = RedriveSummary(dry_run=dry_run)
    error_keys = [k for k in keys if not k.startswith(markers)]
    for key in tqdm(error_keys, unit="object", desc="redrive", disable=not show_progress):
        parked = parse_error_object(key, aws.read_object(settings, config.bucket, key) or b"")
        summary.objects += 1
        summary.found += len(parked.records) + parked.unreadable
        summary.unreadable += parked.unreadable
        chosen: list[ParkedRecord] = []
        for record in parked.records:
            if record.key in ledger:
                summary.already_redriven += 1
            elif not record.selected(error_codes, since):
                summary.not_selected += 1
            else:
                chosen.append(record)
                ledger.add(record.key)
        summary.redriven += len(chosen)
        if chosen and not dry_run:
            send_records(kinesis_settings, [record_for(r.data) for r in chosen])
            marker = marker_key(listing, key)
            done = marked.get(marker, set()) | {r.key for r in chosen}  # an earlier, filtered run's too
            _write_marker(s3, config.bucket, marker, key, done)
    return summary


def _write_marker(s3, bucket: str, marker: str, error_key: str, redriven: set[str]) -> None:
    """Record which records of an error object have been re-driven."""
    body = {
        "error_key": error_key,
        "redriven": sorted(redriven),
        "redriven_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    s3.put_object(Bucket=bucket, Key=marker, Body=json.dumps(body).encode(), ContentType="application/json")
