"""Glue ETL job: MySQL (customers, products, ratings) -> denormalised, partitioned Parquet training set.

One file, run unchanged by AWS Glue 5.0 (Spark 3.5, Python 3.11), by `spark-submit` in the Glue
container image, and by local PySpark (``recsys etl`` loads it in-process). It imports only
``recsys.contracts`` (shipped with the job) from the project: everything else comes from its
``--KEY value`` arguments (``JOB_ARGUMENTS``) and the standard AWS environment (credentials, region,
``AWS_ENDPOINT_URL``).

Stages: read the three tables over JDBC (range-partitioned, fetch size) -> left-join ratings to
customers and products while measuring data quality -> write snappy Parquet partitioned by
``partition_key`` under a new snapshot prefix (directly, or to ``staging_dir`` then uploaded with
boto3) -> check the quality rules -> publish ``_manifest.json`` (one PUT, last) -> delete older
snapshots. Publishing protocol and keys: docs/contracts.md section 1.
"""

from __future__ import annotations

import json
import logging
import math
import re
import secrets
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

# The training-set contract (keys, file names, columns), shared with the reader. Glue gets it with
# --extra-py-files (terraform/modules/etl), the Glue container through PYTHONPATH, local runs from the package.
from recsys.contracts import SNAPSHOT_SUCCESS, SNAPSHOTS_DIR, TRAINING_COLUMNS, TRAINING_MANIFEST

try:  # present only on AWS Glue and in its container image
    from awsglue.context import GlueContext
    from awsglue.job import Job
    from awsglue.utils import getResolvedOptions
except ImportError:
    GlueContext = Job = getResolvedOptions = None

# Every argument the job reads: name -> default (None = required). Read with `ast` by the Terraform
# tests; Glue passes them as `--name value`. All values are strings, as Glue passes them.
JOB_ARGUMENTS = {
    "source_jdbc_url": None,  # jdbc:mysql://host:3306/classicmodels
    "source_secret_id": "",  # Secrets Manager secret with username/password; wins over source_user
    "source_user": "",
    "source_password": "",
    "jdbc_driver": "com.mysql.cj.jdbc.Driver",  # org.mariadb.jdbc.Driver with the Debian jar
    "target_path": None,  # s3://<datalake>/ratings_ml_training/
    "partition_key": "productLine",  # any training column; customerNumber = one file per customer
    "num_partitions": "0",  # max parallel JDBC reads per table; 0 = 2 x Spark default parallelism
    "rows_per_read_partition": "250000",  # JDBC range partitions are sized to about this many rows
    "fetch_size": "10000",  # JDBC rows per round trip
    "broadcast_max_rows": "500000",  # broadcast customers/products to the join when at most this many
    "max_records_per_file": "5000000",  # caps one Parquet file; 0 = no cap
    "max_orphan_ratio": "0.001",  # ratings without customer/product: fail when the share exceeds it
    "staging_dir": "",  # non-empty: Spark writes here, boto3 uploads; empty: Spark writes the target
    "spark_scheme": "",  # scheme Spark writes the target with (e.g. s3a); empty = target's own
    "run_id": "",  # snapshot id YYYYMMDDTHHMMSSZ-<8 hex>; empty = generated
    "catalog_database": "",  # Glue Data Catalog database of catalog_table
    "catalog_table": "",  # table pointed at each published snapshot (location + partitions); empty = none
}
GLUE_RESERVED_ARGUMENTS = ("JOB_NAME",)  # passed by Glue itself; not part of JOB_ARGUMENTS

CUSTOMER_COLUMNS = ("customerNumber", "city", "state", "postalCode", "country", "creditLimit")
PRODUCT_COLUMNS = ("productCode", "productLine", "productScale", "quantityInStock", "buyPrice", "MSRP")
RATING_COLUMNS = ("customerNumber", "productCode", "productRating")
KEY_COLUMNS = RATING_COLUMNS  # null in any of these makes a row useless for training
RATING_RANGE = (1, 5)

PRODUCER = "glue/etl_job.py"
RUN_ID_PATTERN = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")
MANY_FILES = 1000
CONCURRENT_WRITERS = 8  # open Parquet writers per task before Spark falls back to sorting

log = logging.getLogger("recsys.etl_job")


class JobError(RuntimeError):
    """The job refused its input or could not complete; the message names the problem."""


class QualityError(JobError):
    """A data-quality invariant does not hold; nothing was published."""


class Stopwatch:
    """Wall seconds per named phase of a run (a phase entered twice adds up), logged in one line."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

    def line(self) -> str:
        return " ".join(f"{name}={seconds:.2f}" for name, seconds in self.seconds.items())


last_run_seconds: dict[str, float] = {}  # the phases of this process's last run (also logged by it)


# -- arguments ----------------------------------------------------------------------------------
def parse_arguments(argv: list[str]) -> dict[str, str]:
    """``--KEY value`` arguments resolved against ``JOB_ARGUMENTS`` (defaults filled, required checked).

    Glue's ``getResolvedOptions`` insists on every name it is asked for, so only the names present
    are asked for; unknown arguments (Glue's own ``--TempDir`` etc.) are ignored, as Glue does.
    """
    wanted = [name for name in (*JOB_ARGUMENTS, *GLUE_RESERVED_ARGUMENTS) if _present(argv, name)]
    resolved = (getResolvedOptions or _resolve_options)(argv, wanted)
    values = {name: resolved.get(name, default) for name, default in JOB_ARGUMENTS.items()}
    missing = [name for name, value in values.items() if value is None]
    if missing:
        raise JobError("missing required job argument(s): " + ", ".join(f"--{name}" for name in missing))
    values.update({name: resolved[name] for name in GLUE_RESERVED_ARGUMENTS if name in resolved})
    return values


def _present(argv: list[str], name: str) -> bool:
    return any(arg == f"--{name}" or arg.startswith(f"--{name}=") for arg in argv)


def _resolve_options(argv: list[str], names: list[str]) -> dict[str, str]:
    """The subset of Glue's ``getResolvedOptions`` this job relies on: ``--name value`` / ``--name=value``."""
    resolved: dict[str, str] = {}
    args = iter(argv[1:])
    for arg in args:
        if not arg.startswith("--"):
            continue
        name, has_value, value = arg[2:].partition("=")
        if name not in names:
            continue
        if not has_value:
            value = next(args, None)
            if value is None:
                raise JobError(f"job argument --{name} needs a value")
        resolved[name] = value
    return resolved


@dataclass(frozen=True)
class JobConfig:
    """The validated, typed job arguments."""

    source_jdbc_url: str
    source_secret_id: str
    source_user: str
    source_password: str
    jdbc_driver: str
    target_bucket: str
    target_prefix: str  # ends with "/"
    partition_key: str
    num_partitions: int
    rows_per_read_partition: int
    fetch_size: int
    broadcast_max_rows: int
    max_records_per_file: int
    max_orphan_ratio: float
    staging_dir: str
    spark_scheme: str
    run_id: str
    catalog_database: str = ""
    catalog_table: str = ""

    @classmethod
    def from_arguments(cls, args: dict[str, str]) -> JobConfig:
        """Validate ``args``; raise ``JobError`` naming the first bad one."""
        target = urlparse(args["target_path"])
        if target.scheme not in ("s3", "s3a") or not target.netloc or not target.path.strip("/"):
            raise JobError(f"--target_path must look like s3://bucket/prefix/, got {args['target_path']!r}")
        columns = [name for name, _ in TRAINING_COLUMNS]
        if args["partition_key"] not in columns:
            raise JobError(
                f"--partition_key {args['partition_key']!r} is not a training-set column (one of: {', '.join(columns)})"
            )
        run_id = args["run_id"] or new_run_id()
        if not RUN_ID_PATTERN.match(run_id):
            raise JobError(f"--run_id must look like YYYYMMDDTHHMMSSZ-<8 hex>, got {run_id!r}")
        if not args["source_jdbc_url"].startswith("jdbc:"):
            raise JobError(
                f"--source_jdbc_url must be a JDBC URL (jdbc:mysql://host:port/db), got {args['source_jdbc_url']!r}"
            )
        ratio = _number(args, "max_orphan_ratio", float)
        if not 0.0 <= ratio <= 1.0:
            raise JobError(f"--max_orphan_ratio must be between 0 and 1, got {ratio}")
        if bool(args["catalog_database"]) != bool(args["catalog_table"]):
            raise JobError("--catalog_database and --catalog_table go together (both set, or both empty)")
        return cls(
            source_jdbc_url=args["source_jdbc_url"],
            source_secret_id=args["source_secret_id"],
            source_user=args["source_user"],
            source_password=args["source_password"],
            jdbc_driver=args["jdbc_driver"],
            target_bucket=target.netloc,
            target_prefix=target.path.strip("/") + "/",
            partition_key=args["partition_key"],
            num_partitions=_number(args, "num_partitions", int),
            rows_per_read_partition=max(1, _number(args, "rows_per_read_partition", int)),
            fetch_size=_number(args, "fetch_size", int),
            broadcast_max_rows=_number(args, "broadcast_max_rows", int),
            max_records_per_file=_number(args, "max_records_per_file", int),
            max_orphan_ratio=ratio,
            staging_dir=args["staging_dir"],
            spark_scheme=args["spark_scheme"],
            run_id=run_id,
            catalog_database=args["catalog_database"],
            catalog_table=args["catalog_table"],
        )

    @property
    def snapshot_prefix(self) -> str:
        return f"{self.target_prefix}{SNAPSHOTS_DIR}{self.run_id}/"

    @property
    def manifest_key(self) -> str:
        return self.target_prefix + TRAINING_MANIFEST

    def spark_snapshot_path(self) -> str:
        """Where Spark writes the snapshot: the staging folder, or the S3 snapshot prefix itself."""
        if self.staging_dir:
            return Path(self.staging_dir, self.run_id).resolve().as_uri()
        scheme = self.spark_scheme or "s3"
        return f"{scheme}://{self.target_bucket}/{self.snapshot_prefix}"


def _number(args: dict[str, str], name: str, kind: type):
    try:
        value = kind(args[name])
    except ValueError:
        raise JobError(f"--{name} must be a number, got {args[name]!r}") from None
    if value < 0:
        raise JobError(f"--{name} must not be negative, got {value}")
    return value


def new_run_id(now: datetime | None = None) -> str:
    """A sortable snapshot id: UTC time plus 8 random hex digits."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


# -- source -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TableBounds:
    """Row count and key range of a source table, for sizing range-partitioned reads."""

    rows: int
    low: int | None = None
    high: int | None = None


def source_credentials(config: JobConfig, secrets_client_factory) -> tuple[str, str]:
    """(user, password): from the Secrets Manager secret when named, else from the arguments."""
    if config.source_secret_id:
        try:
            secret = secrets_client_factory().get_secret_value(SecretId=config.source_secret_id)
            fields = json.loads(secret["SecretString"])
            return fields["username"], fields["password"]
        except (ClientError, KeyError, ValueError) as exc:
            raise JobError(f"cannot read username/password from secret {config.source_secret_id!r}: {exc}") from exc
    if not config.source_user:
        raise JobError("no source credentials: pass --source_secret_id or --source_user/--source_password")
    return config.source_user, config.source_password


def jdbc_options(config: JobConfig, user: str, password: str) -> dict[str, str]:
    """Options shared by every JDBC read."""
    return {
        "url": config.source_jdbc_url,
        "driver": config.jdbc_driver,
        "user": user,
        "password": password,
        "fetchsize": str(config.fetch_size),
    }


def java_root_cause(exc: BaseException) -> str:
    """The innermost Java exception's message (e.g. the driver's 'Access denied ...'), else str(exc)."""
    java = getattr(exc, "java_exception", None)
    if java is None:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    while java.getCause() is not None:
        java = java.getCause()
    return f"{java.getClass().getSimpleName()}: {java.getMessage()}"


def read_bounds(spark: SparkSession, options: dict[str, str], tables: dict[str, str | None]) -> dict[str, TableBounds]:
    """COUNT(*) (and MIN/MAX of the numeric key, when named) of every table in ``tables`` (name -> key),
    in ONE small query: one JDBC round trip and one Spark job however many tables."""
    selects = [
        f"SELECT '{table}' AS t, COUNT(*) AS n, "
        + (f"MIN({key}) AS lo, MAX({key}) AS hi" if key else "NULL AS lo, NULL AS hi")
        + f" FROM {table}"
        for table, key in tables.items()
    ]
    try:
        rows = (
            spark.read.format("jdbc").options(**options).option("query", " UNION ALL ".join(selects)).load().collect()
        )
    except Exception as exc:  # Py4JJavaError and friends: the driver's message is what matters
        raise JobError(f"cannot query {', '.join(tables)} at {options['url']}: {java_root_cause(exc)}") from exc
    found = {row["t"]: row for row in rows}
    return {
        table: TableBounds(int(found[table]["n"]), *(_int_or_none(found[table][end]) for end in ("lo", "hi")))
        if key
        else TableBounds(int(found[table]["n"]))
        for table, key in tables.items()
    }


def _int_or_none(value) -> int | None:
    return None if value is None else int(value)


def read_table(
    spark: SparkSession,
    options: dict[str, str],
    table: str,
    columns: tuple[str, ...],
    bounds: TableBounds,
    config: JobConfig,
    key: str | None = None,
) -> DataFrame:
    """``table``'s ``columns`` over JDBC, range-partitioned on ``key`` into as many reads as its size needs."""
    max_parts = config.num_partitions or 2 * spark.sparkContext.defaultParallelism
    parts = min(max_parts, max(1, math.ceil(bounds.rows / config.rows_per_read_partition)))
    reader = spark.read.format("jdbc").options(**options).option("dbtable", table)
    if key and parts > 1 and bounds.low is not None:
        reader = (
            reader.option("partitionColumn", key)
            .option("lowerBound", str(bounds.low))
            .option("upperBound", str(bounds.high + 1))
            .option("numPartitions", str(parts))
        )
    else:
        parts = 1
    log.info(
        "read %s: %s rows in %d JDBC partition(s)%s",
        table,
        f"{bounds.rows:,}",
        parts,
        f" on {key} {bounds.low}..{bounds.high}" if parts > 1 else "",
    )
    return reader.load().select(*columns)


# -- transform and quality ----------------------------------------------------------------------
@dataclass
class QualityReport:
    """Data-quality figures of one run (the manifest's ``quality``)."""

    ratings_in: int
    rows_out: int
    orphan_ratings: int
    null_keys: int
    ratings_out_of_range: int
    customers_in: int
    products_in: int

    def violations(self, max_orphan_ratio: float) -> list[str]:
        """Every broken invariant, each naming its rule and count (empty = publishable)."""
        broken = []
        if self.rows_out == 0:
            broken.append(f"non_empty: 0 training rows (ratings_in={self.ratings_in})")
        if self.null_keys:
            broken.append(f"no_null_keys: {self.null_keys} rows with null {'/'.join(KEY_COLUMNS)}")
        if self.ratings_out_of_range:
            broken.append(
                f"rating_in_range: {self.ratings_out_of_range} ratings outside {RATING_RANGE[0]}..{RATING_RANGE[1]}"
            )
        orphan_ratio = self.orphan_ratings / self.ratings_in if self.ratings_in else 0.0
        if orphan_ratio > max_orphan_ratio:
            broken.append(
                f"max_orphan_ratio: {self.orphan_ratings} orphan ratings "
                f"({orphan_ratio:.4%} of {self.ratings_in}) > {max_orphan_ratio:.4%}"
            )
        return broken


@dataclass
class QualityProbes:
    """Spark ``Observation``s filled in by the write itself, so quality costs no extra pass."""

    ratings: Observation
    customers: Observation
    products: Observation

    @classmethod
    def create(cls) -> QualityProbes:
        return cls(Observation("ratings"), Observation("customers"), Observation("products"))

    def report(self) -> QualityReport:
        ratings = self.ratings.get
        return QualityReport(
            ratings_in=int(ratings["ratings_in"]),
            rows_out=int(ratings["rows_out"] or 0),
            orphan_ratings=int(ratings["orphan_ratings"] or 0),
            null_keys=int(ratings["null_keys"] or 0),
            ratings_out_of_range=int(ratings["ratings_out_of_range"] or 0),
            customers_in=int(self.customers.get["n"]),
            products_in=int(self.products.get["n"]),
        )


def _count_if(condition) -> F.Column:
    return F.sum(F.when(condition, 1).otherwise(0))


def training_frame(
    ratings: DataFrame,
    customers: DataFrame,
    products: DataFrame,
    probes: QualityProbes,
    broadcast_customers: bool,
    broadcast_products: bool,
) -> DataFrame:
    """The 13 contract columns, one row per rating whose customer and product exist.

    Left joins keep orphan ratings long enough to be counted by the observation, then drop them.
    """
    customers = customers.observe(probes.customers, F.count(F.lit(1)).alias("n")).withColumn(
        "_customer_found", F.lit(True)
    )
    products = products.observe(probes.products, F.count(F.lit(1)).alias("n")).withColumn("_product_found", F.lit(True))
    joined = ratings.join(F.broadcast(customers) if broadcast_customers else customers, "customerNumber", "left").join(
        F.broadcast(products) if broadcast_products else products, "productCode", "left"
    )
    matched = F.col("_customer_found").isNotNull() & F.col("_product_found").isNotNull()
    null_key = F.lit(False)
    for column in KEY_COLUMNS:
        null_key = null_key | F.col(column).isNull()
    low, high = RATING_RANGE
    observed = joined.observe(
        probes.ratings,
        F.count(F.lit(1)).alias("ratings_in"),
        _count_if(matched).alias("rows_out"),
        _count_if(~matched).alias("orphan_ratings"),
        _count_if(matched & null_key).alias("null_keys"),
        _count_if(~F.col("productRating").between(low, high)).alias("ratings_out_of_range"),
    )
    return observed.where(matched).select(*(F.col(name).cast(kind).alias(name) for name, kind in TRAINING_COLUMNS))


def check_contract(frame: DataFrame) -> list[dict[str, str]]:
    """The frame's columns as manifest entries; ``JobError`` unless they are exactly the contract's."""
    columns = [{"name": f.name, "type": f.dataType.simpleString()} for f in frame.schema.fields]
    expected = [{"name": name, "type": kind} for name, kind in TRAINING_COLUMNS]
    if columns != expected:
        raise JobError(f"training frame does not match the contract: {columns} != {expected}")
    return columns


# -- write, upload, publish ---------------------------------------------------------------------
def write_snapshot(frame: DataFrame, config: JobConfig, path: str) -> None:
    """Snappy Parquet, Hive-partitioned by the partition key, each key value in one task (bounded files)."""
    # Keep a few writers open per task instead of sorting every task by the partition key first
    # (measured about 2x faster here); a task with more values than that falls back to sorting.
    spark = frame.sparkSession
    spark.conf.set("spark.sql.optimizer.plannedWrite.enabled", "false")
    spark.conf.set("spark.sql.maxConcurrentOutputFileWriters", str(CONCURRENT_WRITERS))
    writer = (
        frame.repartition(F.col(config.partition_key))
        .write.mode("errorifexists")
        .option("compression", "snappy")
        .partitionBy(config.partition_key)
    )
    if config.max_records_per_file:
        writer = writer.option("maxRecordsPerFile", str(config.max_records_per_file))
    try:
        writer.parquet(path)
    except Exception as exc:
        raise JobError(f"writing the snapshot to {path} failed: {java_root_cause(exc)}") from exc


def snapshot_file_rows(spark: SparkSession, path: str, schema=None) -> dict[str, int]:
    """Rows of every Parquet file under ``path``, keyed by path relative to it (``<key>=<v>/part-…``).

    Read back with Spark so it works the same for a local staging folder and for S3; only the
    footers are read, and with the written frame's ``schema`` Spark does not infer one first.
    """
    reader = spark.read.schema(schema) if schema is not None else spark.read
    counts = reader.parquet(path).groupBy(F.input_file_name().alias("file")).count().collect()
    return {"/".join(unquote(row["file"]).rstrip("/").split("/")[-2:]): int(row["count"]) for row in counts}


def upload_staging(s3, staging: Path, bucket: str, prefix: str) -> int:
    """Upload the staged snapshot: data files in parallel, then ``_SUCCESS``; returns bytes uploaded."""
    data_files = sorted(p for p in staging.rglob("*.parquet") if p.is_file())
    started = time.perf_counter()

    def upload(path: Path) -> int:
        s3.upload_file(str(path), bucket, prefix + path.relative_to(staging).as_posix())
        return path.stat().st_size

    with ThreadPoolExecutor(max_workers=8) as pool:
        total = 0
        for done, size in enumerate(pool.map(upload, data_files), start=1):
            total += size
            if done % 500 == 0 or done == len(data_files):
                log.info("uploaded %d/%d files (%.1f MB)", done, len(data_files), total / 1e6)
    s3.put_object(Bucket=bucket, Key=prefix + SNAPSHOT_SUCCESS, Body=b"")
    log.info("upload done in %.1f s", time.perf_counter() - started)
    return total


def list_keys(s3, bucket: str, prefix: str) -> list[dict]:
    """Every object under ``prefix`` (``Key``, ``Size``)."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [obj for page in pages for obj in page.get("Contents", [])]


def snapshot_files(s3, config: JobConfig, rows_by_file: dict[str, int]) -> list[dict]:
    """The manifest's ``files``: every data file in S3 with size and rows; ``JobError`` on any mismatch."""
    objects = list_keys(s3, config.target_bucket, config.snapshot_prefix)
    names = {obj["Key"][len(config.snapshot_prefix) :]: obj for obj in objects}
    if SNAPSHOT_SUCCESS not in names:
        raise JobError(f"snapshot s3://{config.target_bucket}/{config.snapshot_prefix} has no {SNAPSHOT_SUCCESS}")
    listed = {name: obj for name, obj in names.items() if name.endswith(".parquet")}
    if set(listed) != set(rows_by_file):
        missing = sorted(set(rows_by_file) - set(listed))[:3]
        extra = sorted(set(listed) - set(rows_by_file))[:3]
        raise JobError(f"snapshot in S3 does not match what was written (missing {missing}, unexpected {extra})")
    return [
        {"key": listed[name]["Key"], "size": int(listed[name]["Size"]), "rows": rows_by_file[name]}
        for name in sorted(listed)
    ]


def build_manifest(config: JobConfig, columns: list[dict], files: list[dict], quality: QualityReport) -> dict:
    """The publish marker's content (docs/contracts.md section 1)."""
    return {
        "run_id": config.run_id,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "snapshot_prefix": config.snapshot_prefix,
        "partition_key": config.partition_key,
        "row_count": sum(f["rows"] for f in files),
        "columns": columns,
        "files": files,
        "quality": asdict(quality),
        "source": config.source_jdbc_url,
        "producer": PRODUCER,
    }


def current_manifest(s3, config: JobConfig) -> dict | None:
    """The published manifest, or None when nothing is published yet."""
    try:
        body = s3.get_object(Bucket=config.target_bucket, Key=config.manifest_key)["Body"].read()
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
            return None
        raise
    return json.loads(body)


def publish_manifest(s3, config: JobConfig, manifest: dict) -> None:
    """Move the publish marker to this snapshot in one PUT, unless a newer run already published."""
    published = current_manifest(s3, config)
    if published and published.get("run_id", "") > config.run_id:
        raise JobError(
            f"a newer snapshot {published['run_id']} was published while run {config.run_id} "
            "was in progress; not replacing it"
        )
    s3.put_object(
        Bucket=config.target_bucket,
        Key=config.manifest_key,
        Body=json.dumps(manifest, indent=2).encode(),
        ContentType="application/json",
    )


def delete_keys(s3, bucket: str, keys: list[str]) -> None:
    """Delete ``keys`` in batches of 1000 (the S3 limit)."""
    for start in range(0, len(keys), 1000):
        batch = [{"Key": key} for key in keys[start : start + 1000]]
        errors = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True}).get("Errors", [])
        if errors:  # leftovers are harmless to readers (not in the manifest); the next run retries them
            log.warning(
                "could not delete %d objects, e.g. %s: %s", len(errors), errors[0].get("Key"), errors[0].get("Message")
            )


def delete_older_snapshots(s3, config: JobConfig) -> list[str]:
    """Remove every snapshot older than this run's (newer ones may belong to a run still writing)."""
    root = config.target_prefix + SNAPSHOTS_DIR
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=config.target_bucket, Prefix=root, Delimiter="/")
    older = [
        p["Prefix"]
        for page in pages
        for p in page.get("CommonPrefixes", [])
        if p["Prefix"][len(root) :].rstrip("/") < config.run_id
    ]
    for prefix in older:
        delete_keys(s3, config.target_bucket, [o["Key"] for o in list_keys(s3, config.target_bucket, prefix)])
    return older


def discard_snapshot(s3, config: JobConfig) -> None:
    """Best-effort removal of this run's unpublished snapshot after a failure (readers never saw it)."""
    try:
        published = current_manifest(s3, config)
        if published and published.get("run_id") == config.run_id:
            return  # the manifest PUT went through although it reported an error: the snapshot is live
        delete_keys(
            s3, config.target_bucket, [o["Key"] for o in list_keys(s3, config.target_bucket, config.snapshot_prefix)]
        )
    except Exception as exc:  # the original failure matters more; the next run deletes leftovers
        log.warning("could not remove unpublished snapshot %s: %s", config.snapshot_prefix, exc)


# -- Glue Data Catalog ----------------------------------------------------------------------------
PARQUET_STORAGE = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"},
}


def snapshot_partitions(manifest: dict) -> dict[str, str]:
    """Partition value -> its directory (relative to the snapshot) for every data file in the manifest."""
    key = manifest["partition_key"] + "="
    partitions = {}
    for entry in manifest["files"]:
        relative = entry["key"][len(manifest["snapshot_prefix"]) :]
        directory = relative.rsplit("/", 1)[0]
        if directory.startswith(key):
            partitions[unquote(directory[len(key) :])] = directory + "/"
    return partitions


def catalog_table_input(config: JobConfig, manifest: dict) -> dict:
    """The catalog table describing the published snapshot: its location, data and partition columns."""
    columns = [{"Name": c["name"], "Type": c["type"]} for c in manifest["columns"]]
    return {
        "Name": config.catalog_table,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {
            "classification": "parquet",
            "parquet.compression": "SNAPPY",
            "recsys_run_id": manifest["run_id"],
            "recsys_row_count": str(manifest["row_count"]),
        },
        "PartitionKeys": [c for c in columns if c["Name"] == manifest["partition_key"]],
        "StorageDescriptor": {
            "Columns": [c for c in columns if c["Name"] != manifest["partition_key"]],
            "Location": f"s3://{config.target_bucket}/{manifest['snapshot_prefix']}",
            **PARQUET_STORAGE,
        },
    }


def point_catalog_at_snapshot(glue, config: JobConfig, manifest: dict) -> int:
    """Rewrite ``catalog_table`` to describe the published snapshot; returns its partition count.

    Engines that read through the catalog (Athena, Glue, EMR) then see exactly the manifest's
    snapshot; partitions are swapped after the table, so a query in that instant may see none.
    """
    table = catalog_table_input(config, manifest)
    where = {"DatabaseName": config.catalog_database}
    try:
        glue.update_table(**where, TableInput=table)
    except glue.exceptions.EntityNotFoundException:
        glue.create_table(**where, TableInput=table)
    old = [
        p["Values"]
        for page in glue.get_paginator("get_partitions").paginate(**where, TableName=table["Name"])
        for p in page["Partitions"]
    ]
    for start in range(0, len(old), 25):  # BatchDeletePartition takes 25 at a time
        glue.batch_delete_partition(
            **where, TableName=table["Name"], PartitionsToDelete=[{"Values": v} for v in old[start : start + 25]]
        )
    location = table["StorageDescriptor"]["Location"]
    new = [
        {
            "Values": [value],  # a null key stays Hive's __HIVE_DEFAULT_PARTITION__, as Spark wrote it
            "StorageDescriptor": {**table["StorageDescriptor"], "Location": location + directory},
        }
        for value, directory in sorted(snapshot_partitions(manifest).items())
    ]
    for start in range(0, len(new), 100):  # BatchCreatePartition takes 100 at a time
        response = glue.batch_create_partition(
            **where, TableName=table["Name"], PartitionInputList=new[start : start + 100]
        )
        if response.get("Errors"):
            raise JobError(
                f"catalog {config.catalog_database}.{config.catalog_table}: "
                f"{len(response['Errors'])} partitions not created: {response['Errors'][0]}"
            )
    log.info("catalog %s.%s -> %s (%d partitions)", config.catalog_database, config.catalog_table, location, len(new))
    return len(new)


# -- the job ------------------------------------------------------------------------------------
def aws_client(service: str):
    """A boto3 client; boto3 itself honours AWS_ENDPOINT_URL, credentials and region from the environment."""
    return boto3.client(service, config=Config(retries={"max_attempts": 5, "mode": "standard"}))


def run(spark: SparkSession, config: JobConfig, s3=None, secrets_client_factory=None) -> dict:
    """Extract, transform, check, write and publish one snapshot; returns the published manifest."""
    global last_run_seconds
    started = time.perf_counter()
    watch = Stopwatch()
    last_run_seconds = watch.seconds
    s3 = s3 or aws_client("s3")
    user, password = source_credentials(config, secrets_client_factory or (lambda: aws_client("secretsmanager")))
    options = jdbc_options(config, user, password)
    log.info(
        "run %s: %s -> s3://%s/%s (partition_key=%s)",
        config.run_id,
        config.source_jdbc_url,
        config.target_bucket,
        config.snapshot_prefix,
        config.partition_key,
    )

    with watch.phase("bounds"):  # the source's sizes and key ranges, then each table's schema
        bounds = read_bounds(
            spark, options, {"ratings": "customerNumber", "customers": "customerNumber", "products": None}
        )
        ratings = read_table(spark, options, "ratings", RATING_COLUMNS, bounds["ratings"], config, "customerNumber")
        customers = read_table(
            spark, options, "customers", CUSTOMER_COLUMNS, bounds["customers"], config, "customerNumber"
        )
        products = read_table(spark, options, "products", PRODUCT_COLUMNS, bounds["products"], config)
    if config.partition_key == "customerNumber":
        log.warning(
            "partition_key=customerNumber writes one directory and file per customer "
            "(~%s here): fine for lab parity, slow to list and read at scale; prefer productLine",
            f"{bounds['customers'].rows:,}",
        )

    probes = QualityProbes.create()
    frame = training_frame(
        ratings,
        customers,
        products,
        probes,
        broadcast_customers=bounds["customers"].rows <= config.broadcast_max_rows,
        broadcast_products=bounds["products"].rows <= config.broadcast_max_rows,
    )
    columns = check_contract(frame)
    spark_path = config.spark_snapshot_path()
    try:
        with watch.phase("write"):  # the JDBC reads, the join and the Parquet write: one Spark job
            write_snapshot(frame, config, spark_path)
        quality = probes.report()
        log.info("quality: %s", json.dumps(asdict(quality)))
        broken = quality.violations(config.max_orphan_ratio)
        if broken:
            raise QualityError("data quality check failed, nothing published: " + "; ".join(broken))
        with watch.phase("file_rows"):
            rows_by_file = snapshot_file_rows(spark, spark_path, frame.schema)
        log.info(
            "wrote %s rows in %d files (%s)",
            f"{sum(rows_by_file.values()):,}",
            len(rows_by_file),
            "staged locally" if config.staging_dir else "directly to S3",
        )
        if len(rows_by_file) > MANY_FILES:
            log.warning("%d files in one snapshot: consider a partition key with fewer values", len(rows_by_file))
        if config.staging_dir:
            with watch.phase("upload"):
                upload_staging(
                    s3, Path(config.staging_dir, config.run_id), config.target_bucket, config.snapshot_prefix
                )
        with watch.phase("publish"):
            manifest = build_manifest(config, columns, snapshot_files(s3, config, rows_by_file), quality)
            publish_manifest(s3, config, manifest)
    except BaseException:
        discard_snapshot(s3, config)
        raise
    finally:
        if config.staging_dir:
            shutil.rmtree(Path(config.staging_dir, config.run_id), ignore_errors=True)
    with watch.phase("publish"):
        if config.catalog_table:
            point_catalog_at_snapshot(aws_client("glue"), config, manifest)
        removed = delete_older_snapshots(s3, config)
    log.info("phase seconds: %s", watch.line())
    log.info(
        "published s3://%s/%s -> %s: %s rows, %d files; removed %d older snapshot(s); %.1f s",
        config.target_bucket,
        config.manifest_key,
        config.run_id,
        f"{manifest['row_count']:,}",
        len(manifest["files"]),
        len(removed),
        time.perf_counter() - started,
    )
    return manifest


def main(argv: list[str] | None = None) -> dict:
    """Entry point on Glue, under spark-submit and in-process: parse arguments, run, commit the Glue job."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    log.setLevel(logging.INFO)
    args = parse_arguments(sys.argv if argv is None else argv)
    config = JobConfig.from_arguments(args)
    glue_job = None
    if GlueContext is not None:
        from pyspark.context import SparkContext

        glue_context = GlueContext(SparkContext.getOrCreate())
        spark = glue_context.spark_session
        glue_job = Job(glue_context)
        glue_job.init(args.get("JOB_NAME", "recsys-etl"), args)
    else:
        spark = SparkSession.builder.appName("recsys-etl").getOrCreate()
    manifest = run(spark, config)
    if glue_job is not None:
        glue_job.commit()
    return manifest


if __name__ == "__main__":
    try:
        main()
    except JobError as error:
        log.error("%s", error)
        sys.exit(1)
