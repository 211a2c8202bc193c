"""The vector-DB loader: a published model version's embeddings into PostgreSQL + pgvector.

A load streams ``models/<version>/{item,user}_embeddings.csv`` from S3 into PostgreSQL with
``COPY ... FROM STDIN`` (psycopg2 ``copy_expert`` reading the S3 body), into fresh tables
``item_emb_<v>`` / ``user_emb_<v>`` (and ``rated_items.csv`` into ``user_rated_<v>``, what the
API's ``exclude_rated`` removes); builds their HNSW cosine indexes; then, in ONE transaction that
holds ACCESS EXCLUSIVE locks on ``live_model``, ``user_emb``, ``item_emb`` and ``user_rated``, drops
the old tables, renames the new ones into place and records the version in ``live_model``. Readers see
either the old version or the new one, never a half-loaded table or a mix (see
``recsys.serving.vector_store.consistent_read``). ``sql/embeddings.sql`` does the same on RDS with
``aws_s3.table_import_from_s3``; ``tests/test_vectordb.py`` checks the two agree.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import time
from contextlib import closing
from dataclasses import dataclass, field

import psycopg2
import psycopg2.errors
from psycopg2 import sql
from tqdm import tqdm

from recsys.contracts import (
    EF_SEARCH_RECALL_TARGET,
    HNSW_EF_CONSTRUCTION,
    HNSW_M,
    ITEM_EMBEDDINGS,
    ITEM_TABLE,
    LIVE_TABLE,
    MODEL_MANIFEST,
    MODELS_PREFIX,
    RATED_ITEMS,
    RATED_TABLE,
    SERVING_POINTER_KEY,
    USER_EMBEDDINGS,
    USER_TABLE,
    artifact_key,
)
from recsys.core.aws import client, is_missing
from recsys.core.config import PROJECT_ROOT, Settings
from recsys.core.db import connect_pg
from recsys.core.errors import PipelineError
from recsys.pipeline.artifacts import read_manifest, serving_version
from recsys.pipeline.load_lock import acquire_load_lock, application_name
from recsys.serving.vector_store import MAX_EF_SEARCH, LiveModel, live_model

log = logging.getLogger(__name__)

SCHEMA_FILE = PROJECT_ROOT / "sql" / "pgvector.sql"
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,40}$")  # same rule as sql/embeddings.sql
INDEX_OPCLASS = "vector_cosine_ops"
COPY_CHUNK_BYTES = 1 << 20
SWITCH_LOCK_TIMEOUT = "5s"
SWITCH_ATTEMPTS = 5
MB = 1 << 20
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


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
                "hnsw_m", "hnsw_ef_construction", "source_uri", "loaded_at", "ef_search")
CALIBRATION_SQL = ("SELECT ef_search, recall, standard_error "
                   "FROM recsys_ef_search_recall(%s::regclass, %s::regclass, %s)")


@dataclass(frozen=True)
class HnswParams:
    """HNSW build parameters (the contract's, shared with sql/embeddings.sql): ef_construction 128
    builds a graph that reaches recall@10 0.95 at 1M items with half the ef_search (and latency) that
    pgvector's default 64 needs, for a 1.5x longer build (docs/vectordb.md)."""

    m: int = HNSW_M
    ef_construction: int = HNSW_EF_CONSTRUCTION


@dataclass(frozen=True)
class MemorySettings:
    """PostgreSQL memory sized for the HNSW indexes, in MB (docs/vectordb.md, terraform/modules/vector-db)."""

    shared_buffers: int  # the live indexes stay cached in PostgreSQL's own buffers
    effective_cache_size: int  # what the planner may assume is cached (shared buffers + OS cache)
    maintenance_work_mem: int  # the largest HNSW graph is built in memory (not in pages) when it fits

    def server_settings(self) -> dict[str, str]:
        """The settings a server (ALTER SYSTEM, an RDS parameter group) keeps; maintenance_work_mem is
        also what a load sets for its own session."""
        return {"shared_buffers": f"{self.shared_buffers}MB",
                "effective_cache_size": f"{self.effective_cache_size}MB",
                "maintenance_work_mem": f"{self.maintenance_work_mem}MB"}


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


def host_ram_bytes() -> int:
    """Physical memory of this machine (where the embedded server runs)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


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
    ef_search: int | None = None
    ef_search_curve: tuple[tuple[int, float], ...] = ()  # (ef_search, recall@10) measured by the load
    memory: MemorySettings | None = None
    memory_note: str = ""  # how the memory settings were applied (or why not)

    def line(self) -> str:
        if not self.switched:
            return f"version {self.version} is already live ({self.item_count:,} items, {self.user_count:,} users): nothing to do"
        rows = self.item_count + self.user_count
        rate = rows / self.copy_seconds if self.copy_seconds else 0.0
        return (f"version {self.version} is live: {self.item_count:,} items, {self.user_count:,} users, "
                f"{self.dimension}-d; COPY {self.copy_seconds:.1f} s ({rate:,.0f} rows/s), "
                f"HNSW {self.index_seconds:.1f} s; ef_search {self.ef_search}"
                f"{self._recall_text()}; previous: {self.previous or 'none'}"
                + (f"\n{self.memory_note}" if self.memory_note else ""))

    def _recall_text(self) -> str:
        if not self.ef_search_curve:
            return " (given)"
        return f" (recall@10 {self.ef_search_curve[-1][1]:.3f}, target {EF_SEARCH_RECALL_TARGET})"


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


def calibrate_ef_search(conn, model: ModelVersion,
                        target: float = EF_SEARCH_RECALL_TARGET) -> tuple[int, tuple[tuple[int, float], ...]]:
    """The smallest ``ef_search`` whose recall@10 on the staged item index reaches ``target`` with 95%
    confidence (queries: a fixed sample of 200 of the version's customer vectors, truth: exact search;
    ``recsys_ef_search_recall`` in sql/pgvector.sql), and the measured curve.
    When no candidate reaches it the largest measured is used (and a warning logged). Not committed."""
    started = time.perf_counter()
    with conn.cursor() as cur:
        cur.execute(CALIBRATION_SQL, (sql.Identifier(ITEMS.staged(model.version)).as_string(conn),
                                      sql.Identifier(USERS.staged(model.version)).as_string(conn), target))
        rows = cur.fetchall()
    curve = tuple((int(ef), float(recall)) for ef, recall, _ in rows)
    ef_search, recall = curve[-1]
    log.info("ef_search recall@10 curve (%.1f s): %s", time.perf_counter() - started,
             ", ".join(f"{ef}: {r:.3f}±{se:.3f}" for ef, r, se in rows))
    if recall < target:
        log.warning("model version %s: no ef_search reaches recall@10 %.2f (%d gives %.3f); serving with %d",
                    model.version, target, ef_search, recall, ef_search)
    return ef_search, curve


INDEX_SIZES_SQL = f"""
SELECT coalesce(sum(pg_relation_size(i.indexrelid)), 0), coalesce(max(pg_relation_size(i.indexrelid)), 0)
FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid JOIN pg_am AS am ON am.oid = c.relam
WHERE am.amname = 'hnsw' AND i.indrelid IN ('{ITEM_TABLE}'::regclass, '{USER_TABLE}'::regclass)
"""


def is_local(settings: Settings) -> bool:
    """Whether the server runs on this machine (the embedded one): its memory is this machine's."""
    return settings.pg_host in LOOPBACK_HOSTS


def set_build_memory(conn, model: ModelVersion, rows: int, params: HnswParams) -> int:
    """Size this session's maintenance_work_mem (MB) for building the largest graph in memory."""
    megabytes = memory_settings(0, estimated_index_bytes(rows, model.dimension, params.m),
                                host_ram_bytes()).maintenance_work_mem
    with conn.cursor() as cur:
        cur.execute("SELECT set_config('maintenance_work_mem', %s, false)", (f"{megabytes}MB",))
    return megabytes


def size_server_memory(conn, settings: Settings) -> tuple[MemorySettings, str]:
    """Memory settings sized from the live HNSW indexes, and a line saying how they were applied.

    On the local (embedded) server they are written with ALTER SYSTEM and reloaded; shared_buffers
    takes effect at the next restart. Elsewhere (RDS: no ALTER SYSTEM) they are only reported, for
    the DB parameter group (terraform/modules/vector-db); the server's RAM then caps nothing here.
    """
    with conn.cursor() as cur:
        cur.execute(INDEX_SIZES_SQL)
        total, largest = (int(v) for v in cur.fetchone())
    conn.commit()
    sizes = f"HNSW indexes {total / MB:,.1f} MB"
    if not is_local(settings):
        memory = memory_settings(total, largest, 1 << 50)
        return memory, f"{sizes}: size the server's parameters to at least {_settings_text(memory)}"
    memory = memory_settings(total, largest, host_ram_bytes())
    try:
        restart = apply_server_memory(conn, memory)
    except psycopg2.errors.InsufficientPrivilege:
        return memory, f"{sizes}: not allowed to ALTER SYSTEM; set {_settings_text(memory)}"
    pending = " (shared_buffers at the next server restart: `recsys stack down && recsys stack up`)" if restart else ""
    return memory, f"{sizes}: server memory set to {_settings_text(memory)}{pending}"


def _settings_text(memory: MemorySettings) -> str:
    return ", ".join(f"{name}={value}" for name, value in memory.server_settings().items())


def apply_server_memory(conn, memory: MemorySettings) -> bool:
    """ALTER SYSTEM the settings and reload the configuration; True when shared_buffers still differs
    (it changes only at a restart). ALTER SYSTEM cannot run in a transaction: autocommit meanwhile."""
    conn.commit()
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for name, value in memory.server_settings().items():
                cur.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
            cur.execute("SELECT pg_reload_conf(), pg_size_bytes(current_setting('shared_buffers'))")
            running = cur.fetchone()[1]
    finally:
        conn.autocommit = False
    return running != memory.shared_buffers * MB


def switch_live(conn, model: ModelVersion, counts: dict[str, int], params: HnswParams, ef_search: int) -> None:
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
    raise PipelineError(f"model version {model.version}: readers kept {ITEM_TABLE}/{USER_TABLE} locked; "
                        f"switch gave up after {SWITCH_ATTEMPTS} attempts (the previous version is still live)")


def _switch_statements(cur, model: ModelVersion, counts: dict[str, int], params: HnswParams, ef_search: int) -> None:
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
    cur.execute(sql.SQL("INSERT INTO {table} ({columns}) VALUES (true, %s, %s, %s, %s, %s, %s, %s, now(), %s) "
                        "ON CONFLICT (singleton) DO UPDATE SET {updates}").format(
        table=sql.Identifier(LIVE_TABLE), columns=sql.SQL(", ").join(map(sql.Identifier, LIVE_COLUMNS)),
        updates=updates),
        (model.version, model.dimension, counts[ITEM_TABLE], counts[USER_TABLE],
         params.m, params.ef_construction, model.source_uri, ef_search))


def load_embeddings(settings: Settings, version: str | None = None,
                    params: HnswParams = HnswParams(), ef_search: int | None = None) -> LoadResult:
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
            return LoadResult(model.version, current.version, False, current.dimension,
                              current.item_count, current.user_count)
        try:
            return _load_new_version(conn, settings, model, params, current, ef_search)
        except BaseException:
            drop_staged(conn, model.version)
            raise


def _load_new_version(conn, settings: Settings, model: ModelVersion, params: HnswParams,
                      current: LiveModel | None, ef_search: int | None) -> LoadResult:
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
    if is_local(settings):  # elsewhere (RDS) the parameter group sizes it
        set_build_memory(conn, model, max(counts[t.name] for t in TABLES), params)
    index_seconds = sum(build_index(conn, model, table, params) for table in TABLES)
    with conn.cursor() as cur:
        cur.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(RATED.staged(model.version))))
    curve: tuple[tuple[int, float], ...] = ()
    if ef_search is None:
        ef_search, curve = calibrate_ef_search(conn, model)
    conn.commit()
    switch_live(conn, model, counts, params, ef_search)
    log.info("version %s is live with ef_search %d (previous: %s)", model.version, ef_search,
             current.version if current else "none")
    memory, note = size_server_memory(conn, settings)  # the note ends LoadResult.line()
    return LoadResult(model.version, current.version if current else None, True, model.dimension,
                      counts[ITEM_TABLE], counts[USER_TABLE], copy_seconds, index_seconds, ef_search, curve,
                      memory, note)
