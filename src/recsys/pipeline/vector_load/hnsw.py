"""The HNSW index of each staged embedding table, and the ef_search its readers will use."""

from __future__ import annotations

import logging
import time

from psycopg2 import sql

from recsys.contracts import EF_SEARCH_RECALL_TARGET
from recsys.core.db import PgConnection
from recsys.pipeline.vector_load.manifest import ModelVersion
from recsys.pipeline.vector_load.tables import ITEMS, USERS, EmbeddingTable, HnswParams, hnsw_index_sql

log = logging.getLogger(__name__)

CALIBRATION_SQL = (
    "SELECT ef_search, recall, standard_error FROM recsys_ef_search_recall(%s::regclass, %s::regclass, %s)"
)


def build_index(conn: PgConnection, model: ModelVersion, table: EmbeddingTable, params: HnswParams) -> float:
    """Build a staged table's HNSW index and analyse it; returns seconds. Not committed."""
    started = time.perf_counter()
    with conn.cursor() as cur:
        cur.execute(hnsw_index_sql(table, model.version, params))
        cur.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table.staged(model.version))))
    seconds = time.perf_counter() - started
    log.info("built HNSW index on %s in %.1f s", table.staged(model.version), seconds)
    return seconds


def calibrate_ef_search(
    conn: PgConnection, model: ModelVersion, target: float = EF_SEARCH_RECALL_TARGET
) -> tuple[int, tuple[tuple[int, float], ...]]:
    """The smallest ``ef_search`` whose recall@10 on the staged item index reaches ``target`` with 95%
    confidence (queries: a fixed sample of 200 of the version's customer vectors, truth: exact search;
    ``recsys_ef_search_recall`` in sql/pgvector.sql), and the measured curve.
    When no candidate reaches it the largest measured is used (and a warning logged). Not committed."""
    started = time.perf_counter()
    with conn.cursor() as cur:
        cur.execute(
            CALIBRATION_SQL,
            (
                sql.Identifier(ITEMS.staged(model.version)).as_string(conn),
                sql.Identifier(USERS.staged(model.version)).as_string(conn),
                target,
            ),
        )
        rows = cur.fetchall()
    curve = tuple((int(ef), float(recall)) for ef, recall, _ in rows)
    ef_search, recall = curve[-1]
    log.info(
        "ef_search recall@10 curve (%.1f s): %s",
        time.perf_counter() - started,
        ", ".join(f"{ef}: {r:.3f}±{se:.3f}" for ef, r, se in rows),
    )
    if recall < target:
        log.warning(
            "model version %s: no ef_search reaches recall@10 %.2f (%d gives %.3f); serving with %d",
            model.version,
            target,
            ef_search,
            recall,
            ef_search,
        )
    return ef_search, curve
