"""What each pipeline stage does (``recsys pipeline stage <command> --run-id <id>``), the same code in an
ECS task on AWS and in a subprocess of the local runner; the order is ``recsys.pipeline.definition``'s.

A run's stages share one record, ``s3://<artifacts>/pipeline/runs/<run id>.json``: the live version
before the run, the candidate, the gate's decision, what was promoted and rolled back. Stages run one
after another, so each reads, adds its part and writes it back.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any

from recsys.contracts import STRATEGY_KNOWN_CUSTOMER, STRATEGY_POPULAR_FALLBACK, USER_TABLE
from recsys.core import aws
from recsys.core.config import Settings
from recsys.core.db import connect_pg
from recsys.core.db_roles import apply_roles, passwords_from_env
from recsys.core.errors import PipelineError
from recsys.pipeline import artifacts, gate
from recsys.pipeline.definition import run_record_key
from recsys.pipeline.etl import run_etl
from recsys.pipeline.train import TrainParams, train_and_publish
from recsys.pipeline.vector_load import load_embeddings
from recsys.serving.events import parse_event
from recsys.serving.model_cache import load_version
from recsys.serving.recommend import recommend_batch
from recsys.serving.vector_store import live_version

log = logging.getLogger(__name__)

ENV_TRAIN_PARAMS = "RECSYS_TRAIN_PARAMS"  # JSON object of TrainParams fields for the train stage (else defaults)
ENV_GATE_TOLERANCE = "RECSYS_GATE_TOLERANCE"  # NDCG the gate tolerates losing (else gate.DEFAULT_TOLERANCE)
SMOKE_K = 5


# -- the run record ---------------------------------------------------------------------------------


def read_run(settings: Settings, run_id: str) -> dict[str, Any]:
    body = aws.read_object(settings, settings.artifacts_bucket, run_record_key(run_id))
    record: dict[str, Any] = json.loads(body) if body else {"run_id": run_id}
    return record


def update_run(settings: Settings, run_id: str, **fields: Any) -> dict[str, Any]:
    record = read_run(settings, run_id) | fields | {"updated_at": artifacts.utc_now_iso()}
    aws.client("s3", settings).put_object(
        Bucket=settings.artifacts_bucket,
        Key=run_record_key(run_id),
        Body=json.dumps(record, indent=2).encode(),
        ContentType="application/json",
    )
    return record


def new_run_id(now: datetime | None = None) -> str:
    """A run id that is also a valid Step Functions execution name."""
    return f"run-{artifacts.new_version(now)}"


def _required(record: dict[str, Any], name: str, stage: str) -> str:
    value = record.get(name)
    if not value:
        raise PipelineError(f"run {record['run_id']}: no {name} in its record; run the stage before {stage} first")
    return str(value)


# -- the stages -------------------------------------------------------------------------------------


def db_roles(settings: Settings, run_id: str) -> str:
    """The only stage that connects as the master: it creates the roles every other one connects as."""
    with closing(connect_pg(settings)) as conn:
        apply_roles(conn, passwords_from_env(os.environ))
    return f"database roles in place on {settings.pg_host}/{settings.pg_database}"


def etl(settings: Settings, run_id: str) -> str:
    manifest = run_etl(settings)  # like the Glue job run on AWS, it leaves the run record alone
    return f"training set {manifest['run_id']}: {manifest['row_count']:,} rows"


def train_params() -> TrainParams:
    """TrainParams from ``RECSYS_TRAIN_PARAMS`` (the task definition's environment), else the defaults."""
    try:
        overrides = json.loads(os.environ.get(ENV_TRAIN_PARAMS) or "{}")
        return TrainParams(**overrides)
    except (ValueError, TypeError) as exc:
        raise PipelineError(f"{ENV_TRAIN_PARAMS} is not a JSON object of TrainParams fields: {exc}") from None


def train(settings: Settings, run_id: str) -> str:
    live = artifacts.serving_version(settings)
    result = train_and_publish(
        settings,
        train_params(),
        Path(os.environ.get("RECSYS_REPORTS_DIR", "reports")),
        ceiling_note="planted-truth ceiling: not computed by the pipeline",
        move_pointer=False,
    )
    update_run(settings, run_id, live_before=live, candidate=result.version)
    return (
        f"candidate {result.version} ({result.evaluation.selection.kind}) published; serving still {live or 'nothing'}"
    )


def quality_gate(settings: Settings, run_id: str) -> str:
    record = read_run(settings, run_id)
    candidate = _required(record, "candidate", "the gate")
    try:
        tolerance = float(os.environ.get(ENV_GATE_TOLERANCE) or gate.DEFAULT_TOLERANCE)
    except ValueError:
        raise PipelineError(f"{ENV_GATE_TOLERANCE}={os.environ[ENV_GATE_TOLERANCE]!r} is not a number") from None
    decision = gate.judge(settings, candidate, record.get("live_before"), tolerance)
    update_run(settings, run_id, gate=decision.as_record())
    return decision.summary


def load(settings: Settings, run_id: str) -> str:
    candidate = _required(read_run(settings, run_id), "candidate", "the load")
    return load_embeddings(settings, candidate).line()


def promote(settings: Settings, run_id: str) -> str:
    record = read_run(settings, run_id)
    candidate = _required(record, "candidate", "promote")
    if not (record.get("gate") or {}).get("promote"):
        raise PipelineError(f"run {run_id}: the quality gate did not pass {candidate}; refusing to promote it")
    artifacts.write_serving_pointer(settings, candidate)
    update_run(settings, run_id, promoted=candidate)
    return f"serving pointer -> {candidate} (was {record.get('live_before') or 'nothing'})"


def smoke(settings: Settings, run_id: str) -> str:
    """Recommendations for one known and one new customer through serving's own batch path."""
    promoted = _required(read_run(settings, run_id), "promoted", "the smoke test")
    model = load_version(aws.client("s3", settings), settings.artifacts_bucket, promoted)
    with closing(connect_pg(settings)) as conn:
        served = live_version(conn)
        if served != promoted:
            raise PipelineError(f"smoke test: the vector DB serves {served}, not the promoted {promoted}")
        with conn.cursor() as cur:
            cur.execute(f"SELECT min(id), max(id) FROM {USER_TABLE}")
            row = cur.fetchone()
            assert row is not None, "an aggregate answers one row"
            known, highest = row
        conn.commit()
        if known is None:
            raise PipelineError(f"smoke test: {USER_TABLE} of {promoted} has no customer")
        browsed = [{"product_code": item.product_code} for item in model.popular[:2]]
        now = artifacts.utc_now_iso()
        events = [
            parse_event(
                json.dumps(
                    {
                        "session_id": f"smoke-{run_id}-{n}",
                        "customer_number": customer,
                        "event_time": now,
                        "browse_history": browsed,
                    }
                ).encode()
            )
            for n, customer in enumerate((known, highest + 1))
        ]
        records = recommend_batch(conn, events, model, SMOKE_K)
    known_record, new_record = records
    problems = []
    if known_record.strategy != STRATEGY_KNOWN_CUSTOMER or not known_record.recommended_items:
        problems.append(f"known customer {known}: {known_record.strategy}, {len(known_record.recommended_items)} items")
    if new_record.strategy == STRATEGY_POPULAR_FALLBACK or not new_record.recommended_items:
        problems.append(f"new customer {highest + 1}: {new_record.strategy}, {len(new_record.recommended_items)} items")
    if problems:
        raise PipelineError(f"smoke test of {promoted} failed: {'; '.join(problems)}")
    return (
        f"{promoted}: known customer {known} -> {len(known_record.recommended_items)} items "
        f"({known_record.strategy}), new customer {highest + 1} -> {len(new_record.recommended_items)} items "
        f"({new_record.strategy})"
    )


def rollback(settings: Settings, run_id: str) -> str:
    """The version live before the run back in the pointer and the vector DB (nothing to do without one)."""
    record = read_run(settings, run_id)
    previous = record.get("live_before")
    if not previous:
        update_run(settings, run_id, rolled_back=None)
        return "no version was live before this run: nothing to roll back to (the candidate stays)"
    artifacts.write_serving_pointer(settings, previous)
    loaded = load_embeddings(settings, previous)
    update_run(settings, run_id, rolled_back=previous)
    return f"rolled back to {previous}: {loaded.line()}"


STAGE_FUNCTIONS: dict[str, Callable[[Settings, str], str]] = {
    "db-roles": db_roles,
    "etl": etl,
    "train": train,
    "gate": quality_gate,
    "load": load,
    "promote": promote,
    "smoke": smoke,
    "rollback": rollback,
}
