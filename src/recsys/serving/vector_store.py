"""pgvector queries shared by the Lambdas, the API and the CLI: the live model, user vectors, nearest items.

Pure psycopg2 + numpy: this module ships in the Lambda zip and takes only the table names from
``recsys.contracts``.
Vectors travel in pgvector's text form (``'[0.1,0.2]'``), so no type adapter has to be
registered on the connection.

Batches are ONE statement: ``unnest`` of the query array ``CROSS JOIN LATERAL`` a
``ORDER BY embedding <=> q LIMIT n`` subquery, so every lateral subquery is an HNSW index scan.

Exclusions (browsed items, the item itself, and with ``exclude_rated_by`` every item the customer
rated, from ``user_rated``) are ``WHERE`` conditions of the k-NN subquery, and the HNSW scan runs
with pgvector 0.8's ``hnsw.iterative_scan = relaxed_order``: when the filter removes candidates the
index scan goes on (up to ``hnsw.max_scan_tuples``) until ``LIMIT k`` rows pass, so a customer who
rated most of a product line still gets k items. (A plain HNSW scan returns at most
``ef_search`` candidates before filtering and silently comes back short.) Relaxed order is
re-sorted by the outer ``ORDER BY``. A query that still comes back short (the scan hit
``max_scan_tuples``) is run once more as an exact scan, so every query returns exactly k rows
whenever k eligible items exist. Needs pgvector >= 0.8 (RDS PostgreSQL 17, the embedded 0.8.6).

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
from typing import Any

import numpy as np
import psycopg2
import psycopg2.errors
import psycopg2.extensions

from recsys.contracts import ITEM_TABLE, LIVE_TABLE, RATED_TABLE, USER_TABLE

Connection = psycopg2.extensions.connection

DEFAULT_EF_SEARCH = 64
"""HNSW candidate list size when the live version has no measured one (its ``ef_search`` column is
NULL: loaded before the loader measured it). Readers normally use the live version's: the loader
stores the smallest ef_search reaching recall@10 0.95 for that model; see docs/vectordb.md."""
MAX_EF_SEARCH = 1000  # pgvector's upper bound for hnsw.ef_search
MAX_K = 1000
DEFAULT_MAX_SCAN_TUPLES = 20_000
"""How many index tuples an iterative scan may visit before it gives up (pgvector's default); a
query that runs out is answered by an exact scan instead."""

# Readers lock in the same order as the loader's switch transaction (no lock-order deadlock).
LOCK_FOR_READ_SQL = f"LOCK TABLE {LIVE_TABLE}, {USER_TABLE}, {ITEM_TABLE}, {RATED_TABLE} IN ACCESS SHARE MODE"

# The live version's ef_search, read through the row's JSON so that a database loaded by an older
# release (no ef_search column until its next load) is still served, with the default.
LIVE_EF_SEARCH_SQL = f"(SELECT (to_jsonb(l) ->> 'ef_search')::integer FROM {LIVE_TABLE} l WHERE singleton)"

# Transaction-local scan settings, sent in the same round trip as the query they apply to. ef_search:
# the caller's, else the live version's measured one, else the default; at least k, at most the maximum.
SET_SCAN_SQL = (
    "SELECT set_config('hnsw.ef_search', least(greatest(coalesce(%(ef_search)s::integer, "
    f"{LIVE_EF_SEARCH_SQL}, {DEFAULT_EF_SEARCH}), %(k)s), "
    f"{MAX_EF_SEARCH})::text, true), "
    "set_config('hnsw.iterative_scan', 'relaxed_order', true), "
    "set_config('hnsw.max_scan_tuples', %(max_scan_tuples)s, true);\n"
)
EXACT_SCAN_SQL = "SELECT set_config('enable_indexscan', 'off', true);\n"

LIVE_MODEL_SQL = f"""
SELECT version, dimension, item_count, user_count, loaded_at, {LIVE_EF_SEARCH_SQL}
FROM {LIVE_TABLE}
WHERE singleton
"""

USER_VECTORS_SQL = f"""
SELECT id, embedding::text
FROM {USER_TABLE}
WHERE id = ANY(%(ids)s::integer[])
"""

RATED_COUNT_SQL = f"SELECT count(*) FROM {RATED_TABLE} WHERE user_id = %(user_id)s"

# The k-NN subquery every lookup shares: the exclusions are conditions of the HNSW scan itself.
# ``q`` provides the query vector ``vec``, the ``excluded`` codes and the customer (``rater``) whose
# rated items are left out (NULL: none).
KNN_SUBQUERY = f"""
    SELECT e.id, e.embedding <=> q.vec AS distance
    FROM {ITEM_TABLE} AS e
    WHERE e.id <> ALL (q.excluded)
      AND NOT EXISTS (SELECT 1 FROM {RATED_TABLE} AS r WHERE r.user_id = q.rater AND r.item_id = e.id)
    ORDER BY e.embedding <=> q.vec
    LIMIT %(k)s
"""

# Every statement names the live version it read (one statement sees one version) and references
# the tables in the loader's lock order (live_model, user_emb, item_emb, user_rated), so it needs
# no surrounding transaction. Each query's exclusions travel as one array literal (the lists differ
# in length); MATERIALIZED CTEs parse them once per query, not once per candidate row. A query
# with a ``q`` row but no hit still yields one row (NULL id): "known, nothing eligible".
LIVE_CTE = f"live AS MATERIALIZED (SELECT version FROM {LIVE_TABLE} WHERE singleton)"
KNN_SELECT = f"""
SELECT q.ord, hit.id, 1 - hit.distance AS score, (SELECT version FROM live) AS version
FROM q
LEFT JOIN LATERAL ({KNN_SUBQUERY}) AS hit ON true
ORDER BY q.ord, hit.distance
"""

NEAREST_ITEMS_SQL = f"""
WITH {LIVE_CTE},
q AS MATERIALIZED (
    SELECT u.ord, u.vec, u.excluded::varchar[] AS excluded, u.rater
    FROM unnest(%(vectors)s::vector[], %(excluded)s::text[], %(raters)s::integer[])
         WITH ORDINALITY AS u(vec, excluded, rater, ord)
)
{KNN_SELECT}"""

CUSTOMER_ITEMS_SQL = f"""
WITH {LIVE_CTE},
q AS MATERIALIZED (
    SELECT u.ord, e.embedding AS vec, '{{}}'::varchar[] AS excluded, u.rater
    FROM unnest(%(customers)s::integer[], %(raters)s::integer[]) WITH ORDINALITY AS u(customer, rater, ord)
    JOIN {USER_TABLE} AS e ON e.id = u.customer
)
{KNN_SELECT}"""

SIMILAR_ITEMS_SQL = f"""
WITH {LIVE_CTE},
q AS MATERIALIZED (
    SELECT u.ord, src.embedding AS vec, u.excluded::varchar[] || src.id AS excluded, u.rater
    FROM unnest(%(codes)s::varchar[], %(excluded)s::text[], %(raters)s::integer[])
         WITH ORDINALITY AS u(code, excluded, rater, ord)
    JOIN {ITEM_TABLE} AS src ON src.id = u.code
)
{KNN_SELECT}"""


class VectorStoreError(ValueError):
    """A query the vector store cannot answer: bad arguments, wrong dimension, no schema."""


@dataclass(frozen=True)
class ScoredItem:
    """One recommended item: ``score`` is cosine similarity (1 - cosine distance)."""

    product_code: str
    score: float

    def as_record(self) -> dict[str, Any]:
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
    ef_search: int | None = None  # measured by the loader for this version (None: DEFAULT_EF_SEARCH)


@dataclass(frozen=True)
class KnnAnswer:
    """A batch's answers: ``items[i]`` for query ``i``, which queries had a vector to search from
    (a known customer or product), and the live version the statement read (None: nothing live)."""

    items: list[list[ScoredItem]]
    answered: set[int]
    version: str | None


# ---- vector text form ----------------------------------------------------------------------------


def to_pgvector_text(vector: np.ndarray | Sequence[float]) -> str:
    """pgvector's text form ``[x1,x2,...]`` (9 significant digits round-trip float32 exactly)."""
    return "[" + ",".join(f"{x:.9g}" for x in np.asarray(vector, dtype=np.float64).ravel()) + "]"


def parse_pgvector_text(text: str) -> np.ndarray:
    """A float32 array from pgvector's text form."""
    return np.array(text.strip()[1:-1].split(","), dtype=np.float32)


# ---- transactions --------------------------------------------------------------------------------


@contextmanager
def consistent_read(conn: Connection) -> Iterator[Connection]:
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
                raise VectorStoreError(
                    f"no embeddings schema in this database ({exc.diag.message_primary}): "
                    "run `recsys load-embeddings` first"
                ) from exc
        yield conn
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


# ---- lookups -------------------------------------------------------------------------------------


def live_model(conn: Connection) -> LiveModel | None:
    """The live model's row, or None when nothing has been loaded (or the schema is missing)."""
    with conn.cursor() as cur:
        try:
            cur.execute(LIVE_MODEL_SQL)
        except psycopg2.errors.UndefinedTable:
            conn.rollback()
            return None
        row = cur.fetchone()
    return LiveModel(*row) if row else None


def live_version(conn: Connection) -> str | None:
    """The version readers are served, or None when no model is loaded."""
    model = live_model(conn)
    return model.version if model else None


def rated_count(conn: Connection, customer_number: int) -> int:
    """How many items the live version lists as rated by the customer (what ``exclude_rated_by`` removes)."""
    with conn.cursor() as cur:
        cur.execute(RATED_COUNT_SQL, {"user_id": int(customer_number)})
        row = cur.fetchone()
        return int(row[0]) if row else 0  # count(*) always answers one row


def user_vectors(conn: Connection, customer_numbers: Iterable[int]) -> dict[int, np.ndarray]:
    """Stored (query-form) vectors of the given customers; unknown customers are absent."""
    ids = sorted({int(c) for c in customer_numbers})
    if not ids:
        return {}
    with conn.cursor() as cur:
        cur.execute(USER_VECTORS_SQL, {"ids": ids})
        return {int(cid): parse_pgvector_text(text) for cid, text in cur.fetchall()}


def nearest_items(
    conn: Connection,
    vectors: Sequence[np.ndarray] | np.ndarray,
    k: int,
    exclude: Sequence[Iterable[str]] | None = None,
    *,
    exclude_rated_by: Sequence[int | None] | None = None,
    ef_search: int | None = None,
    max_scan_tuples: int = DEFAULT_MAX_SCAN_TUPLES,
) -> list[list[ScoredItem]]:
    """Top-``k`` items by cosine for each query vector, best first, minus that query's ``exclude``
    codes and, where ``exclude_rated_by[i]`` names a customer, every item that customer rated.

    One statement for the whole batch; result ``i`` answers ``vectors[i]``; exactly ``k`` items
    whenever ``k`` eligible items exist.
    """
    matrix = _query_matrix(vectors)
    exclusions = _exclusions(exclude, len(matrix))
    raters = _raters(exclude_rated_by, len(matrix))
    if not len(matrix):
        return []
    params: dict[str, list[Any]] = {
        "vectors": [to_pgvector_text(v) for v in matrix],
        "excluded": [_array_text(e) for e in exclusions],
        "raters": raters,
    }
    return _run_knn(conn, NEAREST_ITEMS_SQL, params, k, ef_search, max_scan_tuples, dimension=matrix.shape[1]).items


def customer_items(
    conn: Connection,
    customer_numbers: Sequence[int],
    k: int,
    *,
    exclude_rated: bool = True,
    ef_search: int | None = None,
    max_scan_tuples: int = DEFAULT_MAX_SCAN_TUPLES,
) -> KnnAnswer:
    """Top-``k`` items for each customer from their stored vector (minus their rated items when
    ``exclude_rated``), in ONE statement that needs no transaction; ``answered`` holds the indexes
    of the customers the live model knows."""
    customers = [int(c) for c in customer_numbers]
    if not customers:
        return KnnAnswer([], set(), None)
    params: dict[str, list[Any]] = {"customers": customers, "raters": [c if exclude_rated else None for c in customers]}
    return _run_knn(conn, CUSTOMER_ITEMS_SQL, params, k, ef_search, max_scan_tuples)


def similar_items(
    conn: Connection,
    product_codes: Sequence[str],
    k: int,
    exclude: Sequence[Iterable[str]] | None = None,
    *,
    exclude_rated_by: Sequence[int | None] | None = None,
    ef_search: int | None = None,
    max_scan_tuples: int = DEFAULT_MAX_SCAN_TUPLES,
) -> list[list[ScoredItem]]:
    """Top-``k`` items most similar to each given item, excluding the item itself, its ``exclude``
    codes and, where ``exclude_rated_by[i]`` names a customer, every item that customer rated.

    One statement for the whole batch; an unknown product code gets an empty list.
    """
    return similar_answer(
        conn,
        product_codes,
        k,
        exclude,
        exclude_rated_by=exclude_rated_by,
        ef_search=ef_search,
        max_scan_tuples=max_scan_tuples,
    ).items


def similar_answer(
    conn: Connection,
    product_codes: Sequence[str],
    k: int,
    exclude: Sequence[Iterable[str]] | None = None,
    *,
    exclude_rated_by: Sequence[int | None] | None = None,
    ef_search: int | None = None,
    max_scan_tuples: int = DEFAULT_MAX_SCAN_TUPLES,
) -> KnnAnswer:
    """``similar_items`` with the live version and which products the live model knows."""
    codes = [str(c) for c in product_codes]
    exclusions = _exclusions(exclude, len(codes))
    raters = _raters(exclude_rated_by, len(codes))
    if not codes:
        return KnnAnswer([], set(), None)
    params: dict[str, list[Any]] = {"codes": codes, "excluded": [_array_text(e) for e in exclusions], "raters": raters}
    return _run_knn(conn, SIMILAR_ITEMS_SQL, params, k, ef_search, max_scan_tuples)


# ---- helpers -------------------------------------------------------------------------------------


def _query_matrix(vectors: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
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


def _raters(exclude_rated_by: Sequence[int | None] | None, n_queries: int) -> list[int | None]:
    """One customer number (whose rated items are excluded) or None per query."""
    if exclude_rated_by is None:
        return [None] * n_queries
    if len(exclude_rated_by) != n_queries:
        raise VectorStoreError(f"exclude_rated_by must hold one customer number or None per query ({n_queries})")
    return [None if c is None else int(c) for c in exclude_rated_by]


def _array_text(codes: set[str]) -> str:
    """A PostgreSQL array literal of the codes, every element quoted (codes may hold any character)."""
    quoted = ('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in sorted(codes))
    return "{" + ",".join(quoted) + "}"


def _run_knn(
    conn: Connection,
    query: str,
    params: dict[str, list[Any]],
    k: int,
    ef_search: int | None,
    max_scan_tuples: int,
    dimension: int | None = None,
) -> KnnAnswer:
    """A batched k-NN statement with an iterative HNSW scan; queries that come back short are run
    again as exact scans. Each answer holds at most ``k`` items, best first.

    ``set_config`` and the query travel as one multi-statement string: they run in order in one
    (possibly implicit) transaction, so the transaction-local settings apply to the query even on
    an autocommit connection.
    """
    if not 1 <= k <= MAX_K:
        raise VectorStoreError(f"k must be 1..{MAX_K}, got {k}")
    if ef_search is not None and not 1 <= ef_search <= MAX_EF_SEARCH:
        raise VectorStoreError(f"ef_search must be 1..{MAX_EF_SEARCH}, got {ef_search}")
    if max_scan_tuples < 1:
        raise VectorStoreError(f"max_scan_tuples must be positive, got {max_scan_tuples}")
    n_queries = len(next(iter(params.values())))
    settings = {"k": k, "ef_search": ef_search, "max_scan_tuples": str(max_scan_tuples)}
    answer = _grouped(_execute(conn, SET_SCAN_SQL + query, {**params, **settings}, dimension), n_queries)
    short = [i for i in sorted(answer.answered) if len(answer.items[i]) < k]
    if short:  # the iterative scan gave up (max_scan_tuples) or fewer than k items are eligible
        subset = {name: [values[i] for i in short] for name, values in params.items()}
        exact = _grouped(
            _execute(conn, SET_SCAN_SQL + EXACT_SCAN_SQL + query, {**subset, **settings}, dimension), len(short)
        )
        for position, i in enumerate(short):
            answer.items[i] = exact.items[position]
    return answer


def _execute(conn: Connection, statement: str, params: dict[str, Any], dimension: int | None) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        try:
            cur.execute(statement, params)
        except psycopg2.errors.DataException as exc:
            conn.rollback()
            shape = f"query dimension {dimension}: " if dimension else ""
            raise VectorStoreError(f"{shape}{exc.diag.message_primary} (does the query match the live model?)") from exc
        except psycopg2.errors.UndefinedTable as exc:
            conn.rollback()
            raise VectorStoreError(
                f"no embeddings schema in this database ({exc.diag.message_primary}): "
                "run `recsys load-embeddings` first"
            ) from exc
        return cur.fetchall()


def _grouped(rows: list[tuple[Any, ...]], n_queries: int) -> KnnAnswer:
    """Group ``(ord, id, score, version)`` rows (1-based ord, best first; a NULL id marks a query
    with a vector but no hit) into per-query lists."""
    items: list[list[ScoredItem]] = [[] for _ in range(n_queries)]
    answered: set[int] = set()
    version = None
    for ordinal, code, score, row_version in rows:
        version = row_version  # every row carries the live version; the last one read is the answer's
        answered.add(ordinal - 1)
        if code is not None:
            items[ordinal - 1].append(ScoredItem(code, float(score)))
    return KnnAnswer(items, answered, version)
