"""The contract between stages, defined once: S3 keys and file names, the serving pointer, the
vector-DB tables, the streaming results and prefixes, and the Lambda's environment.

Writers and readers both import these names (docs/contracts.md explains them). The module uses
the standard library only and imports nothing else from ``recsys``, because it ships unchanged
where the rest of the package does not: in the Lambda zips (as ``recsys/contracts.py``) and with
the Glue job (``--extra-py-files``).
"""

from __future__ import annotations

from typing import Final

# -- 1. training set: the Glue job writes, the trainer reads ----------------------------------------
TRAINING_PREFIX = "ratings_ml_training/"  # under the datalake bucket
SNAPSHOTS_DIR = "snapshots/"  # TRAINING_PREFIX + SNAPSHOTS_DIR + <run_id>/ holds one snapshot
TRAINING_MANIFEST = "_manifest.json"  # the publish marker, directly under TRAINING_PREFIX
SNAPSHOT_SUCCESS = "_SUCCESS"  # written after every data file of a snapshot
# The training set's columns, in order, with their Spark SQL types.
TRAINING_COLUMNS = (
    ("customerNumber", "int"),
    ("city", "string"),
    ("state", "string"),
    ("postalCode", "string"),
    ("country", "string"),
    ("creditLimit", "decimal(10,2)"),
    ("productCode", "string"),
    ("productLine", "string"),
    ("productScale", "string"),
    ("quantityInStock", "smallint"),
    ("buyPrice", "decimal(10,2)"),
    ("MSRP", "decimal(10,2)"),
    ("productRating", "tinyint"),
)

# -- 2. model artifacts: the trainer writes, the vector-DB loader and the Lambda read ---------------
MODELS_PREFIX = "models/"  # under the artifacts bucket
SERVING_POINTER_KEY = MODELS_PREFIX + "serving.json"  # {"version": ..., "updated_at": ...}, moved last
# The batch pipeline's run records (recsys.pipeline.definition): pipeline/runs/<run id>.json, one per run,
# written by each stage; the state machine reads the quality gate's decision from it.
PIPELINE_RUNS_PREFIX = "pipeline/runs/"
# The pipeline's ECS task definitions (terraform/modules/pipeline), each with its own task role and DB role.
TASK_DBROLES, TASK_TRAIN, TASK_LOAD, TASK_GATE = "dbroles", "train", "load", "gate"
MODEL_MANIFEST = "manifest.json"
ITEM_EMBEDDINGS = "item_embeddings.csv"
USER_EMBEDDINGS = "user_embeddings.csv"
MODEL_NPZ = "model.npz"
POPULAR_ITEMS = "popular_items.json"
# Every known customer's rated products, header ``user_id,item_id``, one row per rating: what
# ``exclude_rated`` removes, served from the vector DB beside the embeddings of the same version.
RATED_ITEMS = "rated_items.csv"
EVALUATION_PNG = "evaluation.png"
EVALUATION_HTML = "evaluation.html"
# model.npz: the arrays every model kind writes are listed in docs/contracts.md; each kind's own
# arrays are named by its serving half (recsys.model.<kind>, chosen by the manifest's model.kind).


def artifact_key(version: str, name: str) -> str:
    """The S3 key of artifact ``name`` of model ``version``."""
    return f"{MODELS_PREFIX}{version}/{name}"


# -- 3. vector DB: the loader (and sql/embeddings.sql) writes, the Lambda and the CLI read --------
ITEM_TABLE = "item_emb"
USER_TABLE = "user_emb"
LIVE_TABLE = "live_model"
RATED_TABLE = "user_rated"  # (user_id, item_id): rated_items.csv of the live version
# Database roles (sql/roles.sql): the loader creates and swaps the versioned tables, serving reads the live ones.
DB_LOADER_ROLE = "recsys_loader"
DB_SERVING_ROLE = "recsys_serving"
DB_ROLES = (DB_LOADER_ROLE, DB_SERVING_ROLE)
LOAD_LOCK_KEY = "recsys.load_embeddings"  # pg_advisory_lock(hashtext(...)), also in sql/embeddings.sql
# HNSW build parameters of both embedding indexes: the loader's and sql/embeddings.sql's defaults.
# At 1M x 64-d ef_construction 128 reaches recall@10 0.95 at ef_search ~130 (p50 ~5 ms) where 64
# needed 250 (p50 ~10 ms), for a 1.5x longer build (docs/vectordb.md).
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 128
# The recall@10 (against exact search) each loaded version's ef_search is calibrated to: the loader
# (and sql/embeddings.sql) store the smallest ef_search reaching it in live_model.ef_search, and
# every reader sets hnsw.ef_search from that column per transaction.
EF_SEARCH_RECALL_TARGET = 0.95

# -- 4. streaming: the Lambda answers, Firehose (or the local delivery) delivers --------------------
RESULT_OK: Final = "Ok"
RESULT_DROPPED: Final = "Dropped"
RESULT_FAILED: Final = "ProcessingFailed"
RESULTS = (RESULT_OK, RESULT_DROPPED, RESULT_FAILED)
# Firehose's !{firehose:error-output-type} for records a Lambda processor failed: the first part of
# every key under the error prefix.
PROCESSING_FAILED = "processing-failed"
ERROR_KEY_PREFIX = PROCESSING_FAILED + "/"
# Recommendation record ``strategy`` values: how the query vector was obtained, or the fallback.
STRATEGY_KNOWN_CUSTOMER = "known_customer"  # the customer's stored vector
STRATEGY_FEATURES = "features"  # a new customer's vector from their attributes (country, credit limit)
STRATEGY_FEATURES_FOLD_IN = "features+fold_in"  # ... and their browse history
STRATEGY_FOLD_IN = "fold_in"  # a new customer's vector from their browse history alone
STRATEGY_POPULAR_FALLBACK = "popular_fallback"  # no vector: the popular items
STRATEGIES = (
    STRATEGY_KNOWN_CUSTOMER,
    STRATEGY_FEATURES,
    STRATEGY_FEATURES_FOLD_IN,
    STRATEGY_FOLD_IN,
    STRATEGY_POPULAR_FALLBACK,
)
# Activity-event limits shared by the producer, the Lambda's validation and the CLI.
MAX_CUSTOMER_NUMBER = 2**31 - 1  # customerNumber is INT in MySQL and integer in user_emb
MAX_PARTITION_KEY_CHARS = 256  # Kinesis partition keys are 1-256 Unicode characters; session ids fit one
# Re-driven parked records: one marker object per error object, in a folder under the error prefix.
REDRIVE_MARKER_DIR = "redriven/"
REDRIVE_MARKER_PREFIX = ERROR_KEY_PREFIX + REDRIVE_MARKER_DIR

# -- 5. the transformation Lambda: handler, runtime and the environment it reads ------------------
LAMBDA_HANDLER = "recsys.serving.handler.lambda_handler"
LAMBDA_RUNTIME = "python3.13"  # Amazon Linux 2023; AWS supports it into 2029 (3.11 left standard support in 2026)
ENV_ARTIFACTS_BUCKET = "RECSYS_ARTIFACTS_BUCKET"
ENV_POINTER_TTL_SECONDS = "RECSYS_POINTER_TTL_SECONDS"
ENV_TOP_K = "RECSYS_TOP_K"
ENV_DB_SECRET_ARN = "RECSYS_DB_SECRET_ARN"  # on AWS: the RDS-managed secret; locally libpq's PG* instead
DEFAULT_ARTIFACTS_BUCKET = "recsys-ml-artifacts"
DEFAULT_POINTER_TTL_SECONDS = 60.0
DEFAULT_TOP_K = 10
MAX_TOP_K = 100
# The recommendations API (recsys.serving.api): the same package and runtime, its own zip and function.
API_HANDLER = "recsys.serving.api_handler.lambda_handler"
ENV_API_POOL_SIZE = "RECSYS_API_POOL_SIZE"  # database connections kept by one API process
DEFAULT_API_POOL_SIZE = 8
# TLS to PostgreSQL: libpq's own variables. On AWS every connection verifies the server against the
# RDS CA bundle, which the Lambda zips carry at their root (Lambda unpacks them to /var/task);
# locally the embedded server has no TLS and libpq's default (prefer) connects in plain.
ENV_PG_SSLMODE = "PGSSLMODE"
ENV_PG_SSLROOTCERT = "PGSSLROOTCERT"
AWS_PG_SSLMODE = "verify-full"
RDS_CA_BUNDLE = "rds-ca-bundle.pem"
LAMBDA_TASK_ROOT = "/var/task"
# The largest request body the API reads (longer: a 413 problem, before reading when Content-Length
# says so). The default is 4x the largest event the validator's own fields allow (500 browsed items,
# ~62 KB); at most a Kinesis record (1 MiB), for events with large extra fields. Parsing a maximal
# body holds the interpreter ~10 ms at the default, ~40 ms at 1 MiB (benchmarks/bench_hostile_api.py).
ENV_API_MAX_BODY_BYTES = "RECSYS_API_MAX_BODY_BYTES"
DEFAULT_API_MAX_BODY_BYTES = 256 * 1024
MAX_API_MAX_BODY_BYTES = 1024 * 1024
# Everything the Lambda's code (and the libraries it uses) reads from its environment.
LAMBDA_ENVIRONMENT = (
    ENV_ARTIFACTS_BUCKET,
    ENV_POINTER_TTL_SECONDS,
    ENV_TOP_K,
    ENV_DB_SECRET_ARN,
    "PGHOST",
    "PGPORT",
    "PGUSER",
    "PGPASSWORD",
    "PGDATABASE",
    ENV_PG_SSLMODE,
    ENV_PG_SSLROOTCERT,
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "OPENBLAS_NUM_THREADS",
)
