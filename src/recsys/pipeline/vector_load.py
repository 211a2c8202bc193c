"""The vector-DB loader: a published model version's embeddings into PostgreSQL + pgvector.

A load streams ``models/<version>/{item,user}_embeddings.csv`` from S3 into PostgreSQL with
``COPY ... FROM STDIN`` (psycopg2 ``copy_expert`` reading the S3 body), into fresh tables
``item_emb_<v>`` / ``user_emb_<v>`` (and ``rated_items.csv`` into ``user_rated_<v>``, what the
API's ``exclude_rated`` removes); builds their HNSW cosine indexes; then, in ONE transaction that
holds ACCESS EXCLUSIVE locks on ``live_model``, ``user_emb``, ``item_emb`` and ``user_rated``, drops
the old tables, renames the new ones into place and records the version in ``live_model``. Readers see
either the old version or the new one, never a half-loaded table or a mix (see
``inference.vector_store.consistent_read``). ``sql/embeddings.sql`` does the same on RDS with
``aws_s3.table_import_from_s3``; ``tests/test_vectordb.py`` checks the two agree.
"""
from __future__ import annotations

import hashlib
import logging
import re
import time
from contextlib import closing
from dataclasses import dataclass, field

import psycopg2
import psycopg2.errors
from psycopg2 import sql
from tqdm import tqdm

from inference.vector_store import LiveModel, live_model
from recsys.contracts import (ITEM_EMBEDDINGS, ITEM_TABLE, LIVE_TABLE, MODEL_MANIFEST, MODELS_PREFIX,
                              RATED_ITEMS, RATED_TABLE, SERVING_POINTER_KEY, USER_EMBEDDINGS, USER_TABLE,
                              artifact_key)
from recsys.core.aws import client, is_missing
from recsys.core.config import PROJECT_ROOT, Settings
from recsys.core.db import connect_pg
from recsys.core.errors import PipelineError
from recsys.pipeline.artifacts import read_manifest, serving_version
from recsys.pipeline.load_lock import acquire_load_lock, application_name

log = logging.getLogger(__name__)

SCHEMA_FILE = PROJECT_ROOT / "sql" / "pgvector.sql"
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,40}$")  # same rule as sql/embeddings.sql
INDEX_OPCLASS = "vector_cosine_ops"
COPY_CHUNK_BYTES = 1 << 20
SWITCH_LOCK_TIMEOUT = "5s"
SWITCH_ATTEMPTS = 5


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
LIVE_COLUMNS = ("singleton", "version", "dimension", "item_count", "user_count",
                "hnsw_m", "hnsw_ef_construction", "source_uri", "loaded_at")


@dataclass(frozen=True)
class HnswParams:
    """HNSW build parameters: pgvector's defaults, enough for recall@10 >= 0.95 at ef_search 100
    on 64-d ALS embeddings (docs/vectordb.md); a larger ``m`` buys little recall for a much slower build."""

    m: int = 16
    ef_construction: int = 64


@dataclass(frozen=True)
class ModelVersion:
    """A published model version in the artifacts bucket."""

    version: str
    bucket: str
    dimension: int
    manifest: dict = field(repr=False)

    def key(self, filename: str) -> str:
        return artifact_key(self.version, filename)

    @property
    def source_uri(self) -> str:
        return f"s3://{self.bucket}/{MODELS_PREFIX}{self.version}/"

    @property
    def has_rated_items(self) -> bool:
        """Whether the version ships ``rated_items.csv`` (versions trained before it do not)."""
        return RATED_ITEMS in (self.manifest.get("files") or {})


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

    def line(self) -> str:
        if not self.switched:
            return f"version {self.version} is already live ({self.item_count:,} items, {self.user_count:,} users): nothing to do"
        rows = self.item_count + self.user_count
        rate = rows / self.copy_seconds if self.copy_seconds else 0.0
        return (f"version {self.version} is live: {self.item_count:,} items, {self.user_count:,} users, "
                f"{self.dimension}-d; COPY {self.copy_seconds:.1f} s ({rate:,.0f} rows/s), "
                f"HNSW {self.index_seconds:.1f} s; previous: {self.previous or 'none'}")


# ---- S3 side -------------------------------------------------------------------------------------

def required_serving_version(settings: Settings) -> str:
    """The version the serving pointer ``models/serving.json`` names; PipelineError when there is none."""
    version = serving_version(settings)
    if not version:
        raise PipelineError(f"no serving pointer s3://{settings.artifacts_bucket}/{SERVING_POINTER_KEY}: "
                            "train a model (`recsys train`) or pass --version")
    return version


def resolve_model_version(settings: Settings, version: str) -> ModelVersion:
    """The published version with its manifest; refuses unknown, malformed or incomplete versions."""
    if not VERSION_PATTERN.match(version):
        raise PipelineError(f"invalid model version {version!r}: expected letters, digits, '.', '_', '-' "
                            "(e.g. 20261126T154500Z-1a2b3c4d)")
    bucket = settings.artifacts_bucket
    manifest = read_manifest(settings, version)
    dimension = manifest.get("embedding_dim")
    if not isinstance(dimension, int) or isinstance(dimension, bool) or not 1 <= dimension <= 16000:
        raise PipelineError(f"model version {version}: {MODEL_MANIFEST} has no valid embedding_dim (got {dimension!r})")
    model = ModelVersion(version, bucket, dimension, manifest)
    s3 = client("s3", settings)
    for table in (*TABLES, *([RATED] if model.has_rated_items else [])):
        try:
            s3.head_object(Bucket=bucket, Key=model.key(table.csv_file))
        except s3.exceptions.ClientError as exc:
            if is_missing(exc):
                raise PipelineError(f"model version {version} is incomplete: "
                                    f"s3://{bucket}/{model.key(table.csv_file)} does not exist") from exc
            raise
    return model


def _expected_sha256(model: ModelVersion, filename: str) -> str | None:
    """The sha256 the manifest records for ``filename`` (``"files": {name: {"sha256": hex}}``), if any."""
    entry = (model.manifest.get("files") or {}).get(filename)
    return entry.get("sha256") if isinstance(entry, dict) else None


class S3CsvStream:
    """File-like view of an S3 object for ``copy_expert``: counts rows for progress, hashes bytes."""

    def __init__(self, body, bar: tqdm):
        self._body = body
        self._bar = bar
        self.sha256 = hashlib.sha256()
        self.lines = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._body.read(size if size and size > 0 else COPY_CHUNK_BYTES)
        self.sha256.update(chunk)
        newlines = chunk.count(b"\n")
        self.lines += newlines
        self._bar.update(newlines)
        return chunk


# ---- database side -------------------------------------------------------------------------------

def apply_schema(conn) -> None:
    """Create the extension, the placeholder tables and ``live_model`` when missing (sql/pgvector.sql)."""
    with conn.cursor() as cur:
        cur.execute(SCHEMA_FILE.read_text())
    conn.commit()


def staged_table_sql(table: EmbeddingTable, version: str, dimension: int) -> sql.Composed:
    """DDL of the table a version's rows are copied into (mirrors sql/embeddings.sql)."""
    return sql.SQL("CREATE TABLE {table} (id {id_type} PRIMARY KEY, embedding vector({dim}) NOT NULL)").format(
        table=sql.Identifier(table.staged(version)), id_type=sql.SQL(table.id_type), dim=sql.Literal(int(dimension)))


def hnsw_index_sql(table: EmbeddingTable, version: str, params: HnswParams) -> sql.Composed:
    """The HNSW cosine index of a staged table (mirrors sql/embeddings.sql)."""
    return sql.SQL("CREATE INDEX {index} ON {table} USING hnsw (embedding {opclass}) "
                   "WITH (m = {m}, ef_construction = {ef})").format(
        index=sql.Identifier(f"{table.staged(version)}_hnsw"), table=sql.Identifier(table.staged(version)),
        opclass=sql.SQL(INDEX_OPCLASS), m=sql.Literal(int(params.m)), ef=sql.Literal(int(params.ef_construction)))


def rated_table_sql(version: str) -> sql.Composed:
    """DDL of the table a version's rated items are copied into (mirrors sql/embeddings.sql)."""
    return sql.SQL("CREATE TABLE {table} (user_id integer NOT NULL, item_id varchar NOT NULL, "
                   "PRIMARY KEY (user_id, item_id))").format(table=sql.Identifier(RATED.staged(version)))


def copy_sql(table: ServedTable, version: str) -> sql.Composed:
    # HEADER MATCH (PostgreSQL 15+) also refuses a file whose header is not exactly the table's columns.
    return sql.SQL("COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv, HEADER MATCH)").format(
        table=sql.Identifier(table.staged(version)), columns=sql.SQL(", ").join(map(sql.Identifier, table.columns)))


def drop_staged(conn, version: str) -> None:
    """Drop a version's staged tables (leftovers of an interrupted or refused load)."""
    conn.rollback()
    with conn.cursor() as cur:
        for table in SERVED_TABLES:
            cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table.staged(version))))
    conn.commit()


def copy_table(conn, settings: Settings, model: ModelVersion, table: ServedTable) -> int:
    """Stream one CSV from S3 into its staged table; returns the row count. Not committed."""
    key = model.key(table.csv_file)
    obj = client("s3", settings).get_object(Bucket=model.bucket, Key=key)
    with tqdm(desc=f"COPY {table.csv_file}", unit=" rows", unit_scale=True, disable=None, leave=False) as bar, \
            conn.cursor() as cur:
        stream = S3CsvStream(obj["Body"], bar)
        try:
            cur.copy_expert(copy_sql(table, model.version), stream, size=COPY_CHUNK_BYTES)
        except (psycopg2.DataError, psycopg2.IntegrityError) as exc:  # bad value, duplicate or missing id
            raise _bad_csv(model, table, exc) from exc
        rows = cur.rowcount
    expected = _expected_sha256(model, table.csv_file)
    if expected and stream.sha256.hexdigest() != expected:
        raise PipelineError(f"model version {model.version}: {table.csv_file} does not match the sha256 in "
                            f"{MODEL_MANIFEST} (file {stream.sha256.hexdigest()[:12]}…, manifest {expected[:12]}…)")
    if rows == 0:
        raise PipelineError(f"model version {model.version}: {table.csv_file} has no rows: refusing an empty model")
    log.info("copied %s rows of s3://%s/%s into %s", f"{rows:,}", model.bucket, key, table.staged(model.version))
    return rows


def _bad_csv(model: ModelVersion, table: ServedTable, exc: psycopg2.Error) -> PipelineError:
    """A PipelineError naming version, file and line (from COPY's error context) of a bad row."""
    context = exc.diag.context or ""
    line = re.search(r"line (\d+)", context)
    column = re.search(r"column (\w+)", context)
    where = f" line {line.group(1)}" if line else ""
    where += f" ({column.group(1)})" if column else ""
    detail = f": {exc.diag.message_detail}" if exc.diag.message_detail else ""
    return PipelineError(f"model version {model.version}: {table.csv_file}{where}: "
                         f"{exc.diag.message_primary}{detail}")


def build_index(conn, model: ModelVersion, table: EmbeddingTable, params: HnswParams) -> float:
    """Build a staged table's HNSW index and analyse it; returns seconds. Not committed."""
    started = time.perf_counter()
    with conn.cursor() as cur:
        cur.execute(hnsw_index_sql(table, model.version, params))
        cur.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table.staged(model.version))))
    seconds = time.perf_counter() - started
    log.info("built HNSW index on %s in %.1f s", table.staged(model.version), seconds)
    return seconds


def switch_live(conn, model: ModelVersion, counts: dict[str, int], params: HnswParams) -> None:
    """Swap the staged tables in and record the live version, in one transaction.

    Retries when readers hold the tables longer than the lock timeout (or a lock cycle is
    detected), so the switch never queues readers behind it for long.
    """
    for attempt in range(1, SWITCH_ATTEMPTS + 1):
        try:
            with conn.cursor() as cur:
                _switch_statements(cur, model, counts, params)
            conn.commit()
            return
        except (psycopg2.errors.LockNotAvailable, psycopg2.errors.DeadlockDetected) as exc:
            conn.rollback()
            log.warning("switch attempt %d/%d: %s; retrying", attempt, SWITCH_ATTEMPTS, exc.diag.message_primary)
            time.sleep(0.2 * attempt)
    raise PipelineError(f"model version {model.version}: readers kept {ITEM_TABLE}/{USER_TABLE} locked; "
                        f"switch gave up after {SWITCH_ATTEMPTS} attempts (the previous version is still live)")


def _switch_statements(cur, model: ModelVersion, counts: dict[str, int], params: HnswParams) -> None:
    cur.execute("SELECT set_config('lock_timeout', %s, true)", (SWITCH_LOCK_TIMEOUT,))
    cur.execute(f"LOCK TABLE {LIVE_TABLE}, {USER_TABLE}, {ITEM_TABLE}, {RATED_TABLE} IN ACCESS EXCLUSIVE MODE")
    for table in SERVED_TABLES:
        staged = table.staged(model.version)
        cur.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table.name)))
        cur.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(sql.Identifier(staged), sql.Identifier(table.name)))
        cur.execute(sql.SQL("ALTER INDEX {} RENAME TO {}").format(
            sql.Identifier(f"{staged}_pkey"), sql.Identifier(table.pkey_index)))
        if isinstance(table, EmbeddingTable):
            cur.execute(sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                sql.Identifier(f"{staged}_hnsw"), sql.Identifier(table.hnsw_index)))
    updates = sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in LIVE_COLUMNS[1:])
    cur.execute(sql.SQL("INSERT INTO {table} ({columns}) VALUES (true, %s, %s, %s, %s, %s, %s, %s, now()) "
                        "ON CONFLICT (singleton) DO UPDATE SET {updates}").format(
        table=sql.Identifier(LIVE_TABLE), columns=sql.SQL(", ").join(map(sql.Identifier, LIVE_COLUMNS)),
        updates=updates),
        (model.version, model.dimension, counts[ITEM_TABLE], counts[USER_TABLE],
         params.m, params.ef_construction, model.source_uri))


def load_embeddings(settings: Settings, version: str | None = None,
                    params: HnswParams = HnswParams()) -> LoadResult:
    """Make ``version`` (default: the serving pointer's) the live model in pgvector.

    A no-op when it is already live. On any error the staged tables are dropped and the previous
    version keeps being served. One load at a time per database (``load_lock``: an advisory lock,
    a bounded wait for a live holder, an orphaned loader's backend terminated).
    """
    version = version or required_serving_version(settings)
    model = resolve_model_version(settings, version)
    with closing(connect_pg(settings, application_name=application_name())) as conn:
        acquire_load_lock(conn, settings.load_lock_timeout_seconds)
        apply_schema(conn)
        current = live_model(conn)
        conn.commit()
        if current and current.version == model.version:
            return LoadResult(model.version, current.version, False, current.dimension,
                              current.item_count, current.user_count)
        try:
            return _load_new_version(conn, settings, model, params, current)
        except BaseException:
            drop_staged(conn, model.version)
            raise


def _load_new_version(conn, settings: Settings, model: ModelVersion, params: HnswParams,
                      current: LiveModel | None) -> LoadResult:
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
        log.warning("model version %s has no %s (trained before it existed): exclude_rated removes nothing "
                    "until a newer version is loaded", model.version, RATED_ITEMS)
    conn.commit()
    copy_seconds = time.perf_counter() - started
    index_seconds = sum(build_index(conn, model, table, params) for table in TABLES)
    with conn.cursor() as cur:
        cur.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(RATED.staged(model.version))))
    conn.commit()
    switch_live(conn, model, counts, params)
    log.info("version %s is live (previous: %s)", model.version, current.version if current else "none")
    return LoadResult(model.version, current.version if current else None, True, model.dimension,
                      counts[ITEM_TABLE], counts[USER_TABLE], copy_seconds, index_seconds)
