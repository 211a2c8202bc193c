"""Firehose transformation Lambda: activity events in, one recommendation JSON line per event out.

Handler string: ``inference.handler.lambda_handler``. A thin layer over pure functions:
validation (``inference.events``) -> recommendation building (``inference.recommend``).

Per record result:
* ``Ok``: the recommendation record (JSON line, newline-terminated, base64).
* ``Dropped``: heartbeats (``event_type == "heartbeat"``) and anonymous events with an empty
  browse history (``customer_number`` null): there is nobody and nothing to recommend for.
* ``ProcessingFailed``: a malformed record (bad base64/JSON, missing field, wrong type), alone;
  or every record of the batch the function could not serve because pgvector or the model in S3
  is unavailable (never made-up results). Firehose parks them under ``processing-failed/``.

Settings (environment; names and defaults in ``recsys.contracts``): ``RECSYS_ARTIFACTS_BUCKET``,
``PG*`` or ``RECSYS_DB_SECRET_ARN``, ``RECSYS_POINTER_TTL_SECONDS`` (60), ``RECSYS_TOP_K`` (10),
``AWS_ENDPOINT_URL`` when local.
"""
from __future__ import annotations

import base64
import os
from dataclasses import dataclass

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import (
    KinesisFirehoseDataTransformationRecord,
    KinesisFirehoseDataTransformationResponse,
    KinesisFirehoseEvent,
)
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from inference import vector_store
from inference.database import Database, DatabaseUnavailable, params_from_environment
from inference.events import ActivityEvent, InvalidEvent, decode_record_data, parse_event
from inference.model import ModelCache, ModelUnavailable, ServingModel
from inference.recommend import recommend_batch
from recsys import contracts
from recsys.contracts import RESULT_DROPPED, RESULT_FAILED, RESULT_OK

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
            pointer_ttl_seconds=number_setting(contracts.ENV_POINTER_TTL_SECONDS,
                                                contracts.DEFAULT_POINTER_TTL_SECONDS, float, 0, 86_400),
            top_k=number_setting(contracts.ENV_TOP_K, contracts.DEFAULT_TOP_K, int, 1, contracts.MAX_TOP_K),
        )


def number_setting(name: str, default, kind: type, low, high):
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

    def __init__(self, config: HandlerConfig, s3=None, database: Database | None = None):
        self.config = config
        s3 = s3 or boto3.client("s3", config=BOTO_CONFIG)
        self.models = ModelCache(s3, config.artifacts_bucket, config.pointer_ttl_seconds)
        self.db = database or Database(params_from_environment(
            lambda: boto3.client("secretsmanager", config=BOTO_CONFIG)))

    def _model_for(self, conn, pointer_model: ServingModel) -> ServingModel:
        """The model whose vectors pgvector serves: the pointer's, unless the database holds another.

        During a rollout the pointer can move before (or after) the vector load; fold-in must use
        the item factors of the version whose embeddings the queries run against.
        """
        live = vector_store.live_version(conn)
        if live is None:
            raise ModelUnavailable("pgvector holds no model: run `recsys load-embeddings`")
        if live == pointer_model.version:
            return pointer_model
        logger.info("pgvector serves another version than the pointer", extra={"live": live,
                                                                                "pointer": pointer_model.version})
        return self.models.version(live)

    def serve(self, events: list[ActivityEvent]) -> list[bytes]:
        """One JSON line per event; raises ``ModelUnavailable`` / ``DatabaseUnavailable``."""
        try:
            pointer_model = self.models.current()
        except (BotoCoreError, ClientError) as exc:
            raise ModelUnavailable(f"artifacts bucket unreachable: {exc}") from exc

        def work(conn) -> list[bytes]:
            # one transaction: the live version and every lookup see the same loaded model
            with vector_store.consistent_read(conn):
                model = self._model_for(conn, pointer_model)
                return [r.to_json_line() for r in recommend_batch(conn, events, model, self.config.top_k)]

        try:
            return self.db.run(work)
        except vector_store.VectorStoreError as exc:
            raise ModelUnavailable(f"vector store refused the batch: {exc}") from exc


def _result(record_id: str, result: str, data: str) -> KinesisFirehoseDataTransformationRecord:
    return KinesisFirehoseDataTransformationRecord(record_id=record_id, result=result, data=data)


def transform(firehose_event: KinesisFirehoseEvent, runtime: ServingRuntime) -> KinesisFirehoseDataTransformationResponse:
    """Every input recordId exactly once, in input order, with Ok / Dropped / ProcessingFailed."""
    results: dict[str, KinesisFirehoseDataTransformationRecord] = {}
    valid: list[tuple[str, str, ActivityEvent]] = []
    order = []
    for record in firehose_event.records:
        order.append(record.record_id)
        try:
            event = parse_event(decode_record_data(record.data))
        except InvalidEvent as exc:
            logger.warning("record rejected", extra={"record_id": record.record_id, "reason": str(exc)})
            results[record.record_id] = _result(record.record_id, RESULT_FAILED, record.data)
            continue
        if event.is_droppable:
            results[record.record_id] = _result(record.record_id, RESULT_DROPPED, record.data)
        else:
            valid.append((record.record_id, record.data, event))

    if valid:
        try:
            lines = runtime.serve([event for _, _, event in valid])
            for (record_id, _, _), line in zip(valid, lines):
                results[record_id] = _result(record_id, RESULT_OK, base64.b64encode(line).decode())
        except (DatabaseUnavailable, ModelUnavailable) as exc:
            logger.error("batch not served", extra={"records": len(valid), "reason": str(exc)})
            for record_id, data, _ in valid:
                results[record_id] = _result(record_id, RESULT_FAILED, data)

    response = KinesisFirehoseDataTransformationResponse()
    for record_id in order:
        response.add_record(results[record_id])
    return response


_runtime: ServingRuntime | None = None


def runtime() -> ServingRuntime:
    """The process-wide runtime, built on first use (cold start)."""
    global _runtime
    if _runtime is None:
        _runtime = ServingRuntime(HandlerConfig.from_environment())
    return _runtime


@logger.inject_lambda_context(log_event=False)
def lambda_handler(event: dict, context) -> dict:
    """Firehose data-transformation entry point."""
    firehose_event = KinesisFirehoseEvent(event)
    response = transform(firehose_event, runtime())
    counts: dict[str, int] = {}
    for record in response.records:
        counts[record.result] = counts.get(record.result, 0) + 1
    logger.info("batch transformed", extra={"records": len(response.records), **counts})
    return response.asdict()
