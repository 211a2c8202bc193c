"""The switch: the staged tables swapped in and the live version recorded, in one transaction."""

from __future__ import annotations

import logging
import time

import psycopg2.errors
from psycopg2 import sql
from psycopg2.extensions import cursor as PgCursor

from recsys.contracts import ITEM_TABLE, LIVE_TABLE, RATED_TABLE, USER_TABLE
from recsys.core.db import PgConnection
from recsys.core.errors import PipelineError
from recsys.pipeline.vector_load.manifest import ModelVersion
from recsys.pipeline.vector_load.tables import SERVED_TABLES, EmbeddingTable, HnswParams

log = logging.getLogger(__name__)

SWITCH_LOCK_TIMEOUT = "5s"
SWITCH_ATTEMPTS = 5
LIVE_COLUMNS = (
    "singleton",
    "version",
    "dimension",
    "item_count",
    "user_count",
    "hnsw_m",
    "hnsw_ef_construction",
    "source_uri",
    "loaded_at",
    "ef_search",
)


def switch_live(
    conn: PgConnection, model: ModelVersion, counts: dict[str, int], params: HnswParams, ef_search: int
) -> None:
    """Swap the staged tables in and record the live version, in one transaction.

    Retries when readers hold the tables longer than the lock timeout (or a lock cycle is
    detected), so the switch never queues readers behind it for long.
    """
    for attempt in range(1, SWITCH_ATTEMPTS + 1):
        try:
            with conn.cursor() as cur:
                _switch_statements(cur, model, counts, params, ef_search)
            conn.commit()
            return
        except (psycopg2.errors.LockNotAvailable, psycopg2.errors.DeadlockDetected) as exc:
            conn.rollback()
            log.warning("switch attempt %d/%d: %s; retrying", attempt, SWITCH_ATTEMPTS, exc.diag.message_primary)
            time.sleep(0.2 * attempt)
    raise PipelineError(
        f"model version {model.version}: readers kept {ITEM_TABLE}/{USER_TABLE} locked; "
        f"switch gave up after {SWITCH_ATTEMPTS} attempts (the previous version is still live)"
    )


def _switch_statements(
    cur: PgCursor, model: ModelVersion, counts: dict[str, int], params: HnswParams, ef_search: int
) -> None:
    cur.execute("SELECT set_config('lock_timeout', %s, true)", (SWITCH_LOCK_TIMEOUT,))
    cur.execute(f"LOCK TABLE {LIVE_TABLE}, {USER_TABLE}, {ITEM_TABLE}, {RATED_TABLE} IN ACCESS EXCLUSIVE MODE")
    for table in SERVED_TABLES:
        staged = table.staged(model.version)
        cur.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table.name)))
        cur.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(sql.Identifier(staged), sql.Identifier(table.name)))
        cur.execute(
            sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                sql.Identifier(f"{staged}_pkey"), sql.Identifier(table.pkey_index)
            )
        )
        if isinstance(table, EmbeddingTable):
            cur.execute(
                sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                    sql.Identifier(f"{staged}_hnsw"), sql.Identifier(table.hnsw_index)
                )
            )
    updates = sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in LIVE_COLUMNS[1:])
    cur.execute(
        sql.SQL(
            "INSERT INTO {table} ({columns}) VALUES (true, %s, %s, %s, %s, %s, %s, %s, now(), %s) "
            "ON CONFLICT (singleton) DO UPDATE SET {updates}"
        ).format(
            table=sql.Identifier(LIVE_TABLE),
            columns=sql.SQL(", ").join(map(sql.Identifier, LIVE_COLUMNS)),
            updates=updates,
        ),
        (
            model.version,
            model.dimension,
            counts[ITEM_TABLE],
            counts[USER_TABLE],
            params.m,
            params.ef_construction,
            model.source_uri,
            ef_search,
        ),
    )
