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

One module per step: ``manifest`` (which version, checked), ``tables`` (the served tables and their
DDL), ``csv_copy`` (S3 -> COPY), ``hnsw`` (index build, ef_search calibration), ``switch`` (the
one-transaction swap), ``memory`` (memory sized from the indexes), ``load`` (the whole load).
"""

from recsys.pipeline.vector_load.csv_copy import COPY_CHUNK_BYTES, S3CsvStream, copy_table
from recsys.pipeline.vector_load.hnsw import CALIBRATION_SQL, build_index, calibrate_ef_search
from recsys.pipeline.vector_load.load import LoadResult, load_embeddings
from recsys.pipeline.vector_load.manifest import (
    VERSION_PATTERN,
    ModelVersion,
    required_serving_version,
    resolve_model_version,
)
from recsys.pipeline.vector_load.memory import (
    INDEX_SIZES_SQL,
    MB,
    MemorySettings,
    apply_server_memory,
    estimated_index_bytes,
    memory_settings,
    set_build_memory,
    size_server_memory,
)
from recsys.pipeline.vector_load.switch import LIVE_COLUMNS, SWITCH_ATTEMPTS, SWITCH_LOCK_TIMEOUT, switch_live
from recsys.pipeline.vector_load.tables import (
    INDEX_OPCLASS,
    ITEMS,
    RATED,
    SCHEMA_FILE,
    SERVED_TABLES,
    TABLES,
    USERS,
    EmbeddingTable,
    HnswParams,
    ServedTable,
    apply_schema,
    copy_sql,
    drop_staged,
    hnsw_index_sql,
    rated_table_sql,
    staged_table_sql,
)

__all__ = [
    "CALIBRATION_SQL",
    "COPY_CHUNK_BYTES",
    "INDEX_OPCLASS",
    "INDEX_SIZES_SQL",
    "ITEMS",
    "LIVE_COLUMNS",
    "MB",
    "RATED",
    "SCHEMA_FILE",
    "SERVED_TABLES",
    "SWITCH_ATTEMPTS",
    "SWITCH_LOCK_TIMEOUT",
    "TABLES",
    "USERS",
    "VERSION_PATTERN",
    "EmbeddingTable",
    "HnswParams",
    "LoadResult",
    "MemorySettings",
    "ModelVersion",
    "S3CsvStream",
    "ServedTable",
    "apply_schema",
    "apply_server_memory",
    "build_index",
    "calibrate_ef_search",
    "copy_sql",
    "copy_table",
    "drop_staged",
    "estimated_index_bytes",
    "hnsw_index_sql",
    "load_embeddings",
    "memory_settings",
    "rated_table_sql",
    "required_serving_version",
    "resolve_model_version",
    "set_build_memory",
    "size_server_memory",
    "staged_table_sql",
    "switch_live",
]
