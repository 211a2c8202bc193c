"""A whole load: resolve, stage (DDL + COPY), index, calibrate, switch, size the server's memory."""

from __future__ import annotations

import logging
import time
from contextlib import closing
from dataclasses import dataclass

from psycopg2 import sql

from recsys.contracts import EF_SEARCH_RECALL_TARGET, ITEM_TABLE, RATED_ITEMS, USER_TABLE
from recsys.core.config import Settings
from recsys.core.db import PgConnection, connect_pg
from recsys.core.errors import PipelineError
from recsys.pipeline.load_lock import acquire_load_lock, application_name
from recsys.pipeline.vector_load.csv_copy import copy_table
from recsys.pipeline.vector_load.hnsw import build_index, calibrate_ef_search
from recsys.pipeline.vector_load.manifest import ModelVersion, required_serving_version, resolve_model_version
from recsys.pipeline.vector_load.memory import MemorySettings, set_build_memory, size_server_memory
from recsys.pipeline.vector_load.switch import switch_live
from recsys.pipeline.vector_load.tables import (
    RATED,
    TABLES,
    HnswParams,
    apply_schema,
    drop_staged,
    rated_table_sql,
    staged_table_sql,
)
from recsys.serving.vector_store import MAX_EF_SEARCH, LiveModel, live_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadResult:
    """What a load did: ``switched`` is False when the version was already live (a no-op)."""

    version: str
    previous: str | None
    switched: bool
    dimension: int
    item_count: int
    user_count: int
    copy_seconds: float = 0.0
    index_seconds: float = 0.0
    ef_search: int | None = None
    ef_search_curve: tuple[tuple[int, float], ...] = ()  # (ef_search, recall@10) measured by the load
    memory: MemorySettings | None = None
    memory_note: str = ""  # how the memory settings were applied (or why not)

    def line(self) -> str:
        if not self.switched:
            return (
                f"version {self.version} is already live ({self.item_count:,} items, "
                f"{self.user_count:,} users): nothing to do"
            )
        rows = self.item_count + self.user_count
        rate = rows / self.copy_seconds if self.copy_seconds else 0.0
        return (
            f"version {self.version} is live: {self.item_count:,} items, {self.user_count:,} users, "
            f"{self.dimension}-d; COPY {self.copy_seconds:.1f} s ({rate:,.0f} rows/s), "
            f"HNSW {self.index_seconds:.1f} s; ef_search {self.ef_search}"
            f"{self._recall_text()}; previous: {self.previous or 'none'}"
            + (f"\n{self.memory_note}" if self.memory_note else "")
        )

    def _recall_text(self) -> str:
        if not self.ef_search_curve:
            return " (given)"
        return f" (recall@10 {self.ef_search_curve[-1][1]:.3f}, target {EF_SEARCH_RECALL_TARGET})"


def load_embeddings(
    settings: Settings, version: str | None = None, params: HnswParams = HnswParams(), ef_search: int | None = None
) -> LoadResult:
    """Make ``version`` (default: the serving pointer's) the live model in pgvector.

    ``ef_search`` is stored with the version for readers; None measures the smallest reaching the
    contract's recall target. The server's memory is sized from the new indexes (``size_server_memory``).
    A no-op when it is already live. On any error the staged tables are dropped and the previous
    version keeps being served. One load at a time per database (``load_lock``: an advisory lock,
    a bounded wait for a live holder, an orphaned loader's backend terminated).
    """
    if ef_search is not None and not 1 <= ef_search <= MAX_EF_SEARCH:
        raise PipelineError(f"ef_search must be 1..{MAX_EF_SEARCH} (pgvector's range), got {ef_search}")
    version = version or required_serving_version(settings)
    model = resolve_model_version(settings, version)
    with closing(connect_pg(settings, application_name=application_name())) as conn:
        acquire_load_lock(conn, settings.load_lock_timeout_seconds)
        apply_schema(conn)
        current = live_model(conn)
        conn.commit()
        if current and current.version == model.version:
            return LoadResult(
                model.version, current.version, False, current.dimension, current.item_count, current.user_count
            )
        try:
            return _load_new_version(conn, settings, model, params, current, ef_search)
        except BaseException:
            drop_staged(conn, model.version)
            raise


def _load_new_version(
    conn: PgConnection,
    settings: Settings,
    model: ModelVersion,
    params: HnswParams,
    current: LiveModel | None,
    ef_search: int | None,
) -> LoadResult:
    """Stage, index and switch in ``model``; the caller cleans up on failure."""
    drop_staged(conn, model.version)
    log.info("loading model version %s (%d-d) from %s", model.version, model.dimension, model.source_uri)
    started = time.perf_counter()
    counts = {}
    with conn.cursor() as cur:
        for table in TABLES:
            cur.execute(staged_table_sql(table, model.version, model.dimension))
        cur.execute(rated_table_sql(model.version))
    for table in TABLES:
        counts[table.name] = copy_table(conn, settings, model, table)
    if model.has_rated_items:
        counts[RATED.name] = copy_table(conn, settings, model, RATED)
    else:
        log.warning(
            "model version %s has no %s (trained before it existed): exclude_rated removes nothing "
            "until a newer version is loaded",
            model.version,
            RATED_ITEMS,
        )
    conn.commit()
    copy_seconds = time.perf_counter() - started
    set_build_memory(conn, settings, model, max(counts[t.name] for t in TABLES), params)
    index_seconds = sum(build_index(conn, model, table, params) for table in TABLES)
    with conn.cursor() as cur:
        cur.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(RATED.staged(model.version))))
    curve: tuple[tuple[int, float], ...] = ()
    if ef_search is None:
        ef_search, curve = calibrate_ef_search(conn, model)
    conn.commit()
    switch_live(conn, model, counts, params, ef_search)
    log.info(
        "version %s is live with ef_search %d (previous: %s)",
        model.version,
        ef_search,
        current.version if current else "none",
    )
    memory, note = size_server_memory(conn, settings)  # the note ends LoadResult.line()
    return LoadResult(
        model.version,
        current.version if current else None,
        True,
        model.dimension,
        counts[ITEM_TABLE],
        counts[USER_TABLE],
        copy_seconds,
        index_seconds,
        ef_search,
        curve,
        memory,
        note,
    )
