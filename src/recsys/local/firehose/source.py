"""The delivery's Kinesis side: records as Firehose holds them, the shard reader and its checkpoint."""

from __future__ import annotations

import base64
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)

GET_RECORDS_LIMIT = 10_000


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
                "shardId": self.shard_id,
                "partitionKey": self.partition_key,
                "approximateArrivalTimestamp": self.arrival_ms,
                "sequenceNumber": self.sequence_number,
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
                log.warning(
                    "checkpoint %s is for another incarnation of the stream; reading from the oldest record", path
                )

    def save(self, positions: dict[str, str]) -> None:
        self.positions.update(positions)
        write_json_atomically(
            self.path,
            {"stream_arn": self.stream_arn, "stream_created": self.stream_created, "shards": self.positions},
            durable=True,
        )


def write_json_atomically(path: Path, data: dict, *, durable: bool = False) -> None:
    """Replace ``path`` with ``data`` plus ``updated_at`` in one rename; ``durable`` fsyncs first. The file
    is its owner's alone (0600); a missing folder is made private, an existing one keeps its mode (the
    state dir itself stays passable for PostgreSQL's account, ``EmbeddedStack.make_private``)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # a name of its own
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump({**data, "updated_at": datetime.now(UTC).isoformat()}, handle, indent=2)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
                return self._kinesis.get_shard_iterator(
                    ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=after, **args
                )["ShardIterator"]
            except (
                self._kinesis.exceptions.InvalidArgumentException,
                self._kinesis.exceptions.ResourceNotFoundException,
            ):
                # AWS documents InvalidArgumentException for a position the shard does not hold; LocalStack
                # answers ResourceNotFoundException (docs/emulators.md). A missing stream or shard raises
                # again from the TRIM_HORIZON call below.
                log.warning(
                    "checkpoint %s of %s is not in the stream any more; reading from the oldest record", after, shard_id
                )
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
                out.append(
                    SourceRecord(
                        shard_id,
                        r["SequenceNumber"],
                        r["PartitionKey"],
                        r["Data"],
                        int(r["ApproximateArrivalTimestamp"].timestamp() * 1000),
                    )
                )
        return out
