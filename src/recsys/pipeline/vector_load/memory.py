"""PostgreSQL memory sized for the HNSW indexes: the rule, a load's own build memory, and the server's.

What happens to the server's sizing is configuration, not where the server runs: ``RECSYS_PG_MEMORY``
= ``apply`` writes it with ALTER SYSTEM (the embedded stack sets this, and the RAM it may use,
``RECSYS_PG_SERVER_RAM_MB``), ``report`` only prints it for the server's own configuration (RDS:
the DB parameter group, terraform/modules/vector-db).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import psycopg2.errors
from psycopg2 import sql

from recsys.contracts import HNSW_M, ITEM_TABLE, USER_TABLE
from recsys.core.config import Settings
from recsys.core.db import PgConnection
from recsys.pipeline.vector_load.manifest import ModelVersion
from recsys.pipeline.vector_load.tables import HnswParams

MB = 1 << 20
UNKNOWN_RAM_BYTES = 1 << 50  # no RAM configured: the sizing caps nothing
PG_MEMORY_APPLY = "apply"  # RECSYS_PG_MEMORY's values
PG_MEMORY_REPORT = "report"


@dataclass(frozen=True)
class MemorySettings:
    """PostgreSQL memory sized for the HNSW indexes, in MB (docs/vectordb.md, terraform/modules/vector-db)."""

    shared_buffers: int  # the live indexes stay cached in PostgreSQL's own buffers
    effective_cache_size: int  # what the planner may assume is cached (shared buffers + OS cache)
    maintenance_work_mem: int  # the largest HNSW graph is built in memory (not in pages) when it fits

    def server_settings(self) -> dict[str, str]:
        """The settings a server (ALTER SYSTEM, an RDS parameter group) keeps; maintenance_work_mem is
        also what a load sets for its own session."""
        return {
            "shared_buffers": f"{self.shared_buffers}MB",
            "effective_cache_size": f"{self.effective_cache_size}MB",
            "maintenance_work_mem": f"{self.maintenance_work_mem}MB",
        }


def estimated_index_bytes(rows: int, dimension: int, m: int = HNSW_M) -> int:
    """On-disk size of a pgvector HNSW index: per row an element tuple (the vector and ten heap TIDs,
    ~4·dim + 80 bytes) and a neighbour tuple (2m level-0 plus the upper levels' TIDs, 6 bytes each),
    with page overhead. Within 10% of pg_relation_size for 64-d, m 16 (docs/vectordb.md)."""
    return int(rows * (4 * dimension + 12 * m + 120))


def _round_up_mb(n_bytes: float, step_mb: int = 64) -> int:
    return int(math.ceil(n_bytes / (step_mb * MB)) * step_mb)


def memory_settings(serving_index_bytes: int, largest_index_bytes: int, ram_bytes: int) -> MemorySettings:
    """Memory for indexes totalling ``serving_index_bytes`` (largest single one ``largest_index_bytes``)
    on a server with ``ram_bytes`` of RAM.

    shared_buffers: the indexes + 25% (heap pages of the hits, primary keys, the next version's build)
    + 128 MB, never below 256 MB (PostgreSQL's usual floor here) nor above 40% of RAM (the rest is the
    OS cache and the build). effective_cache_size: shared_buffers + twice the indexes, at least 4 GB
    (PostgreSQL's default) and at most 75% of RAM. maintenance_work_mem: twice the largest index
    (pgvector's in-memory graph keeps each neighbour's distance beside its pointer) + 64 MB, at most
    25% of RAM (pgvector builds much faster when the graph fits in maintenance_work_mem).
    """
    if min(serving_index_bytes, largest_index_bytes) < 0 or ram_bytes <= 0:
        raise ValueError("index sizes must be >= 0 and RAM > 0")
    shared = min(max(_round_up_mb(serving_index_bytes * 1.25 + 128 * MB), 256), max(_share_mb(ram_bytes, 0.40), 128))
    cache = min(max(shared + _round_up_mb(2 * serving_index_bytes), 4096), max(_share_mb(ram_bytes, 0.75), shared))
    build = min(max(_round_up_mb(2 * largest_index_bytes + 64 * MB), 64), max(_share_mb(ram_bytes, 0.25), 64))
    return MemorySettings(shared, cache, build)


def _share_mb(ram_bytes: int, share: float) -> int:
    return int(ram_bytes * share) // MB


INDEX_SIZES_SQL = f"""
SELECT coalesce(sum(pg_relation_size(i.indexrelid)), 0), coalesce(max(pg_relation_size(i.indexrelid)), 0)
FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid JOIN pg_am AS am ON am.oid = c.relam
WHERE am.amname = 'hnsw' AND i.indrelid IN ('{ITEM_TABLE}'::regclass, '{USER_TABLE}'::regclass)
"""


def server_ram_bytes(settings: Settings) -> int | None:
    """The PostgreSQL server's RAM as configured (``RECSYS_PG_SERVER_RAM_MB``), None when not set."""
    return settings.pg_server_ram_mb * MB if settings.pg_server_ram_mb else None


def set_build_memory(
    conn: PgConnection, settings: Settings, model: ModelVersion, rows: int, params: HnswParams
) -> int | None:
    """Size this session's maintenance_work_mem (MB) for building the largest graph in memory, when the
    server's RAM is configured (else the server's own setting stays: the parameter group sizes it)."""
    ram = server_ram_bytes(settings)
    if ram is None:
        return None
    megabytes = memory_settings(0, estimated_index_bytes(rows, model.dimension, params.m), ram).maintenance_work_mem
    with conn.cursor() as cur:
        cur.execute("SELECT set_config('maintenance_work_mem', %s, false)", (f"{megabytes}MB",))
    return megabytes


def size_server_memory(conn: PgConnection, settings: Settings) -> tuple[MemorySettings, str]:
    """Memory settings sized from the live HNSW indexes, and a line saying how they were applied.

    ``RECSYS_PG_MEMORY=apply``: written with ALTER SYSTEM and reloaded (shared_buffers takes effect at
    the next restart). ``report``: only reported, for the server's own configuration (RDS has no
    ALTER SYSTEM: the DB parameter group, terraform/modules/vector-db).
    """
    with conn.cursor() as cur:
        cur.execute(INDEX_SIZES_SQL)
        sizes_row = cur.fetchone()
        assert sizes_row is not None, "an aggregate answers one row"
        total, largest = (int(v) for v in sizes_row)
    conn.commit()
    sizes = f"HNSW indexes {total / MB:,.1f} MB"
    memory = memory_settings(total, largest, server_ram_bytes(settings) or UNKNOWN_RAM_BYTES)
    if settings.pg_memory != PG_MEMORY_APPLY:
        return memory, f"{sizes}: size the server's parameters to at least {_settings_text(memory)}"
    try:
        restart = apply_server_memory(conn, memory)
    except psycopg2.errors.InsufficientPrivilege:
        return memory, f"{sizes}: not allowed to ALTER SYSTEM; set {_settings_text(memory)}"
    pending = " (shared_buffers at the next server restart: `recsys stack down && recsys stack up`)" if restart else ""
    return memory, f"{sizes}: server memory set to {_settings_text(memory)}{pending}"


def _settings_text(memory: MemorySettings) -> str:
    return ", ".join(f"{name}={value}" for name, value in memory.server_settings().items())


def apply_server_memory(conn: PgConnection, memory: MemorySettings) -> bool:
    """ALTER SYSTEM the settings and reload the configuration; True when shared_buffers still differs
    (it changes only at a restart). ALTER SYSTEM cannot run in a transaction: autocommit meanwhile."""
    conn.commit()
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for name, value in memory.server_settings().items():
                cur.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
            cur.execute("SELECT pg_reload_conf(), pg_size_bytes(current_setting('shared_buffers'))")
            row = cur.fetchone()
            assert row is not None, "a SELECT without FROM answers one row"
            running = int(row[1])
    finally:
        conn.autocommit = False
    return running != memory.shared_buffers * MB
