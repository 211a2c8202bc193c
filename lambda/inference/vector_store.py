"""pgvector queries shared by the Lambda and the CLI: the live model, user vectors, nearest items.

Pure psycopg2 + numpy: this module ships in the Lambda zip and takes only the table names from
``recsys.contracts``.
Vectors travel in pgvector's text form (``'[0.1,0.2]'``), so no type adapter has to be
registered on the connection.

Batches are ONE statement: ``unnest`` of the query array ``CROSS JOIN LATERAL`` a
``ORDER BY embedding <=> q LIMIT n`` subquery, so every lateral subquery is an HNSW index scan.

Exclusions (already-seen items) are handled by over-fetching: every query of a batch asks the
index for ``k + the longest exclusion list`` neighbours (in ``similar_items`` the item itself counts
as excluded) and the excluded codes are dropped here. ``hnsw.ef_search`` is raised to at least that fetch size, because an HNSW
scan without iterative scanning returns at most ``ef_search`` rows. This works on every pgvector
>= 0.5; pgvector 0.8's ``hnsw.iterative_scan`` is meant for selective ``WHERE`` filters and is not
needed for a handful of exclusions known per query.

Version consistency: the loader swaps ``item_emb``/``user_emb`` and ``live_model`` in one
transaction holding ACCESS EXCLUSIVE locks. A single statement always sees one version. Several
statements (user vector, then nearest items) see one version when run inside
``consistent_read(conn)``, which takes ACCESS SHARE locks on the three tables (in the loader's
lock order) for the whole transaction, so a switch waits until the reader is done.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import psycopg2
import psycopg2.errors
import psycopg2.extensions

from recsys.contracts import ITEM_TABLE, LIVE_TABLE, USER_TABLE

DEFAULT_EF_SEARCH = 64
"""HNSW candidate list size per query: recall@10 0.97 on the benchmark's 100k x 64-d clustered
vectors with p99 under 10 ms on 2 shared cores (pgvector's default 40 gives 0.95, 100 gives 0.98
at ~1.4x the latency); see docs/vectordb.md."""
MAX_EF_SEARCH = 1000  # pgvector's upper bound for hnsw.ef_search
MAX_K = 1000

# Readers lock in the same order as the loader's switch transaction (no lock-order deadlock).
LOCK_FOR_READ_SQL = f"LOCK TABLE {LIVE_TABLE}, {USER_TABLE}, {ITEM_TABLE} IN ACCESS SHARE MODE"

SET_EF_SEARCH_SQL = "SELECT set_config('hnsw.ef_search', %(ef_search)s, true);\n"

LIVE_MODEL_SQL = f"""
SELECT version, dimension, item_count, user_count, loaded_at
FROM {LIVE_TABLE}
WHERE singleton
"""

USER_VECTORS_SQL = f"""
SELECT id, embedding::text
FROM {USER_TABLE}
WHERE id = ANY(%(ids)s::integer[])
"""

NEAREST_ITEMS_SQL = f"""
SELECT q.ord, hit.id, 1 - hit.distance AS score
FROM unnest(%(vectors)s::vector[]) WITH ORDINALITY AS q(vec, ord)
CROSS JOIN LATERAL (
    SELECT e.id, e.embedding <=> q.vec AS distance
    FROM {ITEM_TABLE} AS e
    ORDER BY e.embedding <=> q.vec
    LIMIT %(fetch)s
) AS hit
ORDER BY q.ord, hit.distance
"""

SIMILAR_ITEMS_SQL = f"""
SELECT q.ord, hit.id, 1 - hit.distance AS score
FROM unnest(%(codes)s::varchar[]) WITH ORDINALITY AS q(code, ord)
JOIN {ITEM_TABLE} AS src ON src.id = q.code
CROSS JOIN LATERAL (
    SELECT e.id, e.embedding <=> src.embedding AS distance
    FROM {ITEM_TABLE} AS e
    ORDER BY e.embedding <=> src.embedding
    LIMIT %(fetch)s
) AS hit
ORDER BY q.ord, hit.distance
"""


class VectorStoreError(ValueError):
    """A query the vector store cannot answer: bad arguments, wrong dimension, no schema."""


@dataclass(frozen=True)
class ScoredItem:
    """One recommended item: ``score`` is cosine similarity (1 - cosine distance)."""

    product_code: str
    score: float

    def as_record(self) -> dict:
        """The recommendation record's ``{"product_code", "score"}`` shape."""
        return {"product_code": self.product_code, "score": self.score}


@dataclass(frozen=True)
class LiveModel:
    """The row of ``live_model``: the version readers are served."""

    version: str
    dimension: int
    item_count: int
    user_count: int
    loaded_at: datetime


# ---- vector text form ----------------------------------------------------------------------------

def to_pgvector_text(vector: np.ndarray | Sequence[float]) -> str:
    """pgvector's text form ``[x1,x2,...]`` (9 significant digits round-trip float32 exactly)."""
    return "[" + ",".join(f"{x:.9g}" for x in np.asarray(vector, dtype=np.float64).ravel()) + "]"


def parse_pgvector_text(text: str) -> np.ndarray:
    """A float32 array from pgvector's text form."""
    return np.array(text.strip()[1:-1].split(","), dtype=np.float32)


# ---- transactions --------------------------------------------------------------------------------

@contextmanager
def consistent_read(conn) -> Iterator:
    """A transaction in which every query sees the same model version; commits (or rolls back) at exit.

    Needs a connection with autocommit off and no transaction open (commit or roll back first).
    """
    if conn.autocommit:
        raise VectorStoreError("consistent_read needs a connection with autocommit off")
    if conn.info.transaction_status != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
        raise VectorStoreError("consistent_read must start a transaction: commit or roll back the open one first")
    try:
        with conn.cursor() as cur:
            try:
                cur.execute(LOCK_FOR_READ_SQL)
            except psycopg2.errors.UndefinedTable as exc:
                raise VectorStoreError(f"no embeddings schema in this database ({exc.diag.message_primary}): "
                                       "run `recsys load-embeddings` first") from exc
        yield conn
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


# ---- lookups -------------------------------------------------------------------------------------

def live_model(conn) -> LiveModel | None:
    """The live model's row, or None when nothing has been loaded (or the schema is missing)."""
    with conn.cursor() as cur:
        try:
            cur.execute(LIVE_MODEL_SQL)
        except psycopg2.errors.UndefinedTable:
            conn.rollback()
            return None
        row = cur.fetchone()
    return LiveModel(*row) if row else None


def live_version(conn) -> str | None:
    """The version readers are served, or None when no model is loaded."""
    model = live_model(conn)
    return model.version if model else None


def user_vectors(conn, customer_numbers: Iterable[int]) -> dict[int, np.ndarray]:
    """Stored (query-form) vectors of the given customers; unknown customers are absent."""
    ids = sorted({int(c) for c in customer_numbers})
    if not ids:
        return {}
    with conn.cursor() as cur:
        cur.execute(USER_VECTORS_SQL, {"ids": ids})
        return {int(cid): parse_pgvector_text(text) for cid, text in cur.fetchall()}


def nearest_items(conn, vectors: Sequence[np.ndarray] | np.ndarray, k: int,
                  exclude: Sequence[Iterable[str]] | None = None, *,
                  ef_search: int = DEFAULT_EF_SEARCH) -> list[list[ScoredItem]]:
    """Top-``k`` items by cosine for each query vector, best first, minus that query's ``exclude`` codes.

    One statement for the whole batch; result ``i`` answers ``vectors[i]``.
    """
    matrix = _query_matrix(vectors)
    exclusions = _exclusions(exclude, len(matrix))
    if not len(matrix):
        return []
    fetch = _fetch_size(k, exclusions)
    params = {"vectors": [to_pgvector_text(v) for v in matrix], "fetch": fetch}
    rows = _run_knn(conn, NEAREST_ITEMS_SQL, params, ef_search, dimension=matrix.shape[1])
    return _top_k(rows, len(matrix), k, exclusions)


def similar_items(conn, product_codes: Sequence[str], k: int,
                  exclude: Sequence[Iterable[str]] | None = None, *,
                  ef_search: int = DEFAULT_EF_SEARCH) -> list[list[ScoredItem]]:
    """Top-``k`` items most similar to each given item, excluding the item itself and its ``exclude`` codes.

    One statement for the whole batch; an unknown product code gets an empty list.
    """
    codes = [str(c) for c in product_codes]
    exclusions = [excluded | {code} for excluded, code in zip(_exclusions(exclude, len(codes)), codes)]
    if not codes:
        return []
    rows = _run_knn(conn, SIMILAR_ITEMS_SQL, {"codes": codes, "fetch": _fetch_size(k, exclusions)}, ef_search)
    return _top_k(rows, len(codes), k, exclusions)


# ---- helpers -------------------------------------------------------------------------------------

def _query_matrix(vectors) -> np.ndarray:
    """Query vectors as a 2-D float array; refuses ragged, non-finite or zero vectors."""
    try:
        matrix = np.asarray(vectors if len(vectors) else np.empty((0, 1)), dtype=np.float64)
    except ValueError as exc:
        raise VectorStoreError(f"query vectors must all have the same dimension: {exc}") from exc
    if matrix.ndim != 2:
        raise VectorStoreError(f"expected a sequence of 1-D query vectors, got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise VectorStoreError("query vectors contain NaN or infinity")
    if len(matrix) and not np.linalg.norm(matrix, axis=1).all():
        raise VectorStoreError("a query vector is all zeros: cosine distance is undefined for it")
    return matrix


def _exclusions(exclude: Sequence[Iterable[str]] | None, n_queries: int) -> list[set[str]]:
    """One set of excluded product codes per query."""
    if exclude is None:
        return [set() for _ in range(n_queries)]
    if isinstance(exclude, (str, bytes)) or len(exclude) != n_queries:
        raise VectorStoreError(f"exclude must hold one collection of product codes per query ({n_queries})")
    return [{str(code) for code in codes} for codes in exclude]


def _fetch_size(k: int, exclusions: list[set[str]]) -> int:
    """Rows to ask the index for: ``k`` plus the most any query may filter out afterwards.

    One constant LIMIT for the batch (not one per query) so the planner costs the HNSW scan
    with a known row count.
    """
    if not 1 <= k <= MAX_K:
        raise VectorStoreError(f"k must be 1..{MAX_K}, got {k}")
    return min(k + max((len(excluded) for excluded in exclusions), default=0), MAX_EF_SEARCH)


def _run_knn(conn, query: str, params: dict, ef_search: int, dimension: int | None = None) -> list[tuple]:
    """Execute a batched k-NN statement with ``ef_search`` >= its fetch size, in one round trip.

    ``set_config`` and the query travel as one multi-statement string: they run in order in one
    (possibly implicit) transaction, so the transaction-local setting applies to the query even
    on an autocommit connection.
    """
    if not 1 <= ef_search <= MAX_EF_SEARCH:
        raise VectorStoreError(f"ef_search must be 1..{MAX_EF_SEARCH}, got {ef_search}")
    params = {**params, "ef_search": str(min(max(ef_search, params["fetch"]), MAX_EF_SEARCH))}
    with conn.cursor() as cur:
        try:
            cur.execute(SET_EF_SEARCH_SQL + query, params)
        except psycopg2.errors.DataException as exc:
            conn.rollback()
            shape = f"query dimension {dimension}: " if dimension else ""
            raise VectorStoreError(f"{shape}{exc.diag.message_primary} (does the query match the live model?)") from exc
        return cur.fetchall()


def _top_k(rows: list[tuple], n_queries: int, k: int, exclusions: list[set[str]]) -> list[list[ScoredItem]]:
    """Group ``(ord, id, score)`` rows (1-based ord, best first) into per-query top-k lists."""
    results: list[list[ScoredItem]] = [[] for _ in range(n_queries)]
    for ordinal, code, score in rows:
        hits = results[ordinal - 1]
        if len(hits) < k and code not in exclusions[ordinal - 1]:
            hits.append(ScoredItem(code, float(score)))
    return results
