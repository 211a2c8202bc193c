"""The tables a load fills and swaps in, and their DDL (mirrors sql/pgvector.sql and sql/embeddings.sql)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from psycopg2 import sql

from recsys.contracts import (
    HNSW_EF_CONSTRUCTION,
    HNSW_M,
    ITEM_EMBEDDINGS,
    ITEM_TABLE,
    RATED_ITEMS,
    RATED_TABLE,
    USER_EMBEDDINGS,
    USER_TABLE,
)
from recsys.core.config import PROJECT_ROOT
from recsys.core.db import PgConnection

SCHEMA_FILE = PROJECT_ROOT / "sql" / "pgvector.sql"
INDEX_OPCLASS = "vector_cosine_ops"


@dataclass(frozen=True)
class ServedTable:
    """A table readers query, loaded per version from one CSV and swapped in by the switch."""

    name: str  # the name readers query
    csv_file: str
    columns: tuple[str, ...]  # the CSV's header, copied in this order

    def staged(self, version: str) -> str:
        """The table a version is loaded into before the switch (same folding as embeddings.sql)."""
        return f"{self.name}_{re.sub(r'[^A-Za-z0-9]+', '_', version).lower()}"

    @property
    def pkey_index(self) -> str:
        return f"{self.name}_pkey"


@dataclass(frozen=True)
class EmbeddingTable(ServedTable):
    """One of the two embedding tables: ``id`` and ``embedding``, with an HNSW index."""

    id_type: str = "varchar"  # SQL type of the id column

    @property
    def hnsw_index(self) -> str:
        return f"{self.name}_embedding_hnsw"


ITEMS = EmbeddingTable(ITEM_TABLE, ITEM_EMBEDDINGS, ("id", "embedding"), "varchar")
USERS = EmbeddingTable(USER_TABLE, USER_EMBEDDINGS, ("id", "embedding"), "integer")
TABLES = (ITEMS, USERS)
RATED = ServedTable(RATED_TABLE, RATED_ITEMS, ("user_id", "item_id"))
SERVED_TABLES = (*TABLES, RATED)


@dataclass(frozen=True)
class HnswParams:
    """HNSW build parameters (the contract's, shared with sql/embeddings.sql): ef_construction 128
    builds a graph that reaches recall@10 0.95 at 1M items with half the ef_search (and latency) that
    pgvector's default 64 needs, for a 1.5x longer build (docs/vectordb.md)."""

    m: int = HNSW_M
    ef_construction: int = HNSW_EF_CONSTRUCTION


def apply_schema(conn: PgConnection) -> None:
    """Create the extension, the placeholder tables and ``live_model`` when missing (sql/pgvector.sql)."""
    with conn.cursor() as cur:
        cur.execute(SCHEMA_FILE.read_text())
    conn.commit()


def staged_table_sql(table: EmbeddingTable, version: str, dimension: int) -> sql.Composed:
    """DDL of the table a version's rows are copied into (mirrors sql/embeddings.sql)."""
    return sql.SQL("CREATE TABLE {table} (id {id_type} PRIMARY KEY, embedding vector({dim}) NOT NULL)").format(
        table=sql.Identifier(table.staged(version)), id_type=sql.SQL(table.id_type), dim=sql.Literal(int(dimension))
    )


def hnsw_index_sql(table: EmbeddingTable, version: str, params: HnswParams) -> sql.Composed:
    """The HNSW cosine index of a staged table (mirrors sql/embeddings.sql)."""
    return sql.SQL(
        "CREATE INDEX {index} ON {table} USING hnsw (embedding {opclass}) WITH (m = {m}, ef_construction = {ef})"
    ).format(
        index=sql.Identifier(f"{table.staged(version)}_hnsw"),
        table=sql.Identifier(table.staged(version)),
        opclass=sql.SQL(INDEX_OPCLASS),
        m=sql.Literal(int(params.m)),
        ef=sql.Literal(int(params.ef_construction)),
    )


def rated_table_sql(version: str) -> sql.Composed:
    """DDL of the table a version's rated items are copied into (mirrors sql/embeddings.sql)."""
    return sql.SQL(
        "CREATE TABLE {table} (user_id integer NOT NULL, item_id varchar NOT NULL, PRIMARY KEY (user_id, item_id))"
    ).format(table=sql.Identifier(RATED.staged(version)))


def copy_sql(table: ServedTable, version: str) -> sql.Composed:
    # HEADER MATCH (PostgreSQL 15+) also refuses a file whose header is not exactly the table's columns.
    return sql.SQL("COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv, HEADER MATCH)").format(
        table=sql.Identifier(table.staged(version)), columns=sql.SQL(", ").join(map(sql.Identifier, table.columns))
    )


def drop_staged(conn: PgConnection, version: str) -> None:
    """Drop a version's staged tables (leftovers of an interrupted or refused load)."""
    conn.rollback()
    with conn.cursor() as cur:
        for table in SERVED_TABLES:
            cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table.staged(version))))
    conn.commit()
