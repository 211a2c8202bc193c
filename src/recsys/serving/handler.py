"""Firehose transformation Lambda: activity events in, one recommendation JSON line per event out.

Handler string: ``recsys.serving.handler.lambda_handler``. A thin layer over pure functions:
validation (``recsys.serving.events``) -> recommendation building (``recsys.serving.recommend``).

Per record result:
* ``Ok``: the recommendation record (JSON line, newline-terminated, base64).
* ``Dropped``: heartbeats (``event_type == "heartbeat"``) and anonymous events with an empty
  browse history (``customer_number`` null): there is nobody and nothing to recommend for.
* ``ProcessingFailed``: a malformed record (bad base64/JSON, missing field, wrong type, out of
  range, nested too deep, unprintable text), alone; a record whose serving raised, alone (the batch
  is split until the culprit is isolated); or every record of the batch the function could not
  serve because pgvector or the model in S3 is unavailable (never made-up results). Firehose parks
  them under ``processing-failed/``.

Settings (environment; names and defaults in ``recsys.contracts``): ``RECSYS_ARTIFACTS_BUCKET``,
``PG*`` or ``RECSYS_DB_SECRET_ARN``, ``RECSYS_POINTER_TTL_SECONDS`` (60), ``RECSYS_TOP_K`` (10),
``AWS_ENDPOINT_URL`` when local.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from typing import Any, TypeVar

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import (
    KinesisFirehoseDataTransformationRecord,
    KinesisFirehoseDataTransformationResponse,
    KinesisFirehoseEvent,
)
from aws_lambda_powertools.utilities.data_classes.kinesis_firehose_event import KinesisFirehoseRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from recsys import contracts
from recsys.contracts import RESULT_DROPPED, RESULT_FAILED, RESULT_OK
from recsys.serving import vector_store
from recsys.serving.database import Database, DatabasePool, DatabaseUnavailable, params_from_environment
from recsys.serving.events import ActivityEvent, InvalidEvent, decode_record_data, parse_event
from recsys.serving.model_cache import ModelCache, ModelUnavailable, ServingModel
from recsys.serving.recommend import recommend_batch

logger = Logger(service="recsys-inference")
BOTO_CONFIG = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=3, read_timeout=20)


@dataclass(frozen=True)
class HandlerConfig:
    """The Lambda's settings, read from its environment once per cold start."""

    artifacts_bucket: str
    pointer_ttl_seconds: float
    top_k: int

    @classmethod
    def from_environment(cls) -> HandlerConfig:
        """Read and check the settings; ``ValueError`` naming the variable fails the cold start loudly."""
        return cls(
            artifacts_bucket=os.environ.get(contracts.ENV_ARTIFACTS_BUCKET, contracts.DEFAULT_ARTIFACTS_BUCKET),
            pointer_ttl_seconds=number_setting(
                contracts.ENV_POINTER_TTL_SECONDS, contracts.DEFAULT_POINTER_TTL_SECONDS, float, 0, 86_400
            ),
            top_k=number_setting(contracts.ENV_TOP_K, contracts.DEFAULT_TOP_K, int, 1, contracts.MAX_TOP_K),
        )


Number = TypeVar("Number", int, float)


def number_setting(name: str, default: Number, kind: type[Number], low: Number, high: Number) -> Number:
    text = os.environ.get(name, str(default))
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:  # a nan fails the comparison too
        raise ValueError(f"{name}={text!r}: expected {'an integer' if kind is int else 'a number'} {low}..{high}")
    return value


class ServingRuntime:
    """State kept across warm invocations: the model cache and one database connection."""

    def __init__(self, config: HandlerConfig, s3: Any = None, database: Database | DatabasePool | None = None):
        self.config = config
        s3 = s3 or boto3.client("s3", config=BOTO_CONFIG)
        self.models = ModelCache(s3, config.artifacts_bucket, config.pointer_ttl_seconds)
        self.db: Database | DatabasePool = database or Database(
            params_from_environment(lambda: boto3.client("secretsmanager", config=BOTO_CONFIG))
        )

    def _model_for(self, conn: vector_store.Connection, pointer_model: ServingModel) -> ServingModel:
        """The model whose vectors pgvector serves: the pointer's, unless the database holds another.

        During a rollout the pointer can move before (or after) the vector load; fold-in must use
        the item factors of the version whose embeddings the queries run against.
        """
        live = vector_store.live_version(conn)
        if live is None:
            raise ModelUnavailable("pgvector holds no model: run `recsys load-embeddings`")
        if live == pointer_model.version:
            return pointer_model
        logger.info(
            "pgvector serves another version than the pointer", extra={"live": live, "pointer": pointer_model.version}
        )
        return self.models.version(live)

    def warm(self) -> None:
        """Load the serving model and open the connection now, so the first batch finds them ready.

        Never raises: a warm-up that cannot reach S3 or pgvector is logged, and the first real batch
        reports the problem as usual.
        """

        def touch(conn: vector_store.Connection) -> None:
            with vector_store.consistent_read(conn):
                self._model_for(conn, self.models.current())

        try:
            self.db.run(touch)
        except Exception as exc:  # a warm-up is best effort by design
            logger.warning("warm-up incomplete", extra={"reason": f"{type(exc).__name__}: {exc}"})

    def serve(self, events: list[ActivityEvent]) -> list[bytes]:
        """One JSON line per event; raises ``ModelUnavailable`` / ``DatabaseUnavailable``."""
        try:
            pointer_model = self.models.current()
        except (BotoCoreError, ClientError) as exc:
            raise ModelUnavailable(f"artifacts bucket unreachable: {exc}") from exc

        def work(conn: vector_store.Connection) -> list[bytes]:
            # one transaction: the live version and every lookup see the same loaded model
            with vector_store.consistent_read(conn):
                model = self._model_for(conn, pointer_model)
                return [r.to_json_line() for r in recommend_batch(conn, events, model, self.config.top_k)]

        try:
            return self.db.run(work)
        except vector_store.VectorStoreError as exc:
            raise ModelUnavailable(f"vector store refused the batch: {exc}") from exc


INFRASTRUCTURE_ERRORS = (DatabaseUnavailable, ModelUnavailable)


@dataclass
class BatchResults:
    """The response being built: one result per recordId, in input order (Powertools' response builder)."""

    records: list[KinesisFirehoseRecord]
    results: dict[str, KinesisFirehoseDataTransformationRecord] = field(default_factory=dict)

    def ok(self, record: KinesisFirehoseRecord, line: bytes) -> None:
        self.results[record.record_id] = record.build_data_transformation_response(
            result=RESULT_OK, data=base64.b64encode(line).decode()
        )

    def dropped(self, record: KinesisFirehoseRecord) -> None:
        self.results[record.record_id] = record.build_data_transformation_response(
            result=RESULT_DROPPED, data=record.data
        )

    def failed(self, record: KinesisFirehoseRecord, reason: str) -> None:
        """ProcessingFailed with the original data, so the error record carries what was sent."""
        logger.warning("record rejected", extra={"record_id": record.record_id, "reason": reason})
        self.results[record.record_id] = record.build_data_transformation_response(
            result=RESULT_FAILED, data=record.data
        )

    def response(self) -> KinesisFirehoseDataTransformationResponse:
        response = KinesisFirehoseDataTransformationResponse()
        for record in self.records:
            response.add_record(self.results[record.record_id])
        return response


def validate(record: KinesisFirehoseRecord) -> ActivityEvent:
    """The record's event; ``InvalidEvent`` for anything malformed, whatever went wrong reading it."""
    try:
        return parse_event(decode_record_data(record.data))
    except InvalidEvent:
        raise
    except Exception as exc:  # validation is meant to be total: a bug here must still fail only this record
        logger.exception("validation raised unexpectedly", extra={"record_id": record.record_id})
        raise InvalidEvent(f"unexpected {type(exc).__name__} while validating") from exc


def serve_isolating(
    runtime: ServingRuntime, batch: list[tuple[KinesisFirehoseRecord, ActivityEvent]], results: BatchResults
) -> None:
    """Serve the batch in one go; if it raises for a reason other than the infrastructure, split it in
    halves until the records that make it raise are alone, and fail only those.

    ``DatabaseUnavailable`` / ``ModelUnavailable`` propagate: they are about the batch, not a record.
    """
    try:
        lines = runtime.serve([event for _, event in batch])
    except INFRASTRUCTURE_ERRORS:
        raise
    except Exception as exc:
        if len(batch) == 1:
            logger.exception("record could not be served", extra={"record_id": batch[0][0].record_id})
            results.failed(batch[0][0], f"unexpected {type(exc).__name__} while serving: {str(exc)[:200]}")
            return
        middle = len(batch) // 2
        serve_isolating(runtime, batch[:middle], results)
        serve_isolating(runtime, batch[middle:], results)
        return
    for (record, _), line in zip(batch, lines, strict=True):
        results.ok(record, line)


def transform(
    firehose_event: KinesisFirehoseEvent, runtime: ServingRuntime
) -> KinesisFirehoseDataTransformationResponse:
    """Every input recordId exactly once, in input order, with Ok / Dropped / ProcessingFailed.

    A record fails alone when it is malformed or when serving it raises; only an unavailable
    database or model fails every record still waiting to be served.
    """
    records = list(firehose_event.records)
    results = BatchResults(records)
    to_serve: list[tuple[KinesisFirehoseRecord, ActivityEvent]] = []
    for record in records:
        try:
            event = validate(record)
        except InvalidEvent as exc:
            results.failed(record, str(exc))
            continue
        if event.is_droppable:
            results.dropped(record)
        else:
            to_serve.append((record, event))

    if to_serve:
        try:
            serve_isolating(runtime, to_serve, results)
        except INFRASTRUCTURE_ERRORS as exc:
            unserved = [record for record, _ in to_serve if record.record_id not in results.results]
            logger.error("batch not served", extra={"records": len(unserved), "reason": str(exc)})
            for record in unserved:
                results.results[record.record_id] = record.build_data_transformation_response(
                    result=RESULT_FAILED, data=record.data
                )
    return results.response()


_runtime: ServingRuntime | None = None


def runtime() -> ServingRuntime:
    """The process-wide runtime, built on first use (cold start)."""
    global _runtime
    if _runtime is None:
        _runtime = ServingRuntime(HandlerConfig.from_environment())
    return _runtime


@logger.inject_lambda_context(log_event=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Firehose data-transformation entry point. An invocation without records (Firehose never sends
    one; local delivery does, once per runtime at start) is a warm-up."""
    if not event.get("records"):
        runtime().warm()
        return {"records": []}
    firehose_event = KinesisFirehoseEvent(event)
    response = transform(firehose_event, runtime())
    counts: dict[str, int] = {}
    for record in response.records:
        counts[record.result] = counts.get(record.result, 0) + 1
    logger.info("batch transformed", extra={"records": len(response.records), **counts})
    return response.asdict()
