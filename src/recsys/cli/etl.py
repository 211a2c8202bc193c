"""The ``etl`` command, in a module of its own: it imports only what the Spark job needs (not the
trainer's numpy/scipy/implicit), because its start-up is part of every ETL run's wall time."""

from __future__ import annotations

import time

import click

from recsys.cli.options import FiniteFloatRange
from recsys.core.config import load_settings
from recsys.pipeline.etl import MARIADB_JDBC_JAR, job_argument_defaults, run_etl, summary_line

_JOB_DEFAULTS = {name: value for name, value in job_argument_defaults().items() if value is not None}


@click.command("etl")
@click.option(
    "--partition-key",
    default=_JOB_DEFAULTS["partition_key"],
    show_default=True,
    help="Training column to partition by (customerNumber = the lab's layout: one file per customer).",
)
@click.option(
    "--num-partitions",
    type=click.IntRange(min=0),
    default=int(_JOB_DEFAULTS["num_partitions"]),
    show_default=True,
    help="Max parallel JDBC reads per table (0 = 2 x cores).",
)
@click.option(
    "--fetch-size",
    type=click.IntRange(min=1),
    default=int(_JOB_DEFAULTS["fetch_size"]),
    show_default=True,
    help="JDBC rows per round trip.",
)
@click.option(
    "--max-orphan-ratio",
    type=FiniteFloatRange(0, 1),
    default=float(_JOB_DEFAULTS["max_orphan_ratio"]),
    show_default=True,
    help="Fail when more than this share of ratings has no customer/product.",
)
@click.option(
    "--max-records-per-file",
    type=click.IntRange(min=0),
    default=int(_JOB_DEFAULTS["max_records_per_file"]),
    show_default=True,
    help="Cap rows per Parquet file (0 = no cap).",
)
@click.option("--jdbc-jar", default=MARIADB_JDBC_JAR, show_default=True, help="JDBC driver jar for Spark.")
def etl_command(
    partition_key: str,
    num_partitions: int,
    fetch_size: int,
    max_orphan_ratio: float,
    max_records_per_file: int,
    jdbc_jar: str,
) -> None:
    """Run the Glue ETL job locally: MySQL -> partitioned Parquet training set in S3 (manifest last)."""
    settings = load_settings()
    started = time.perf_counter()
    manifest = run_etl(
        settings,
        jdbc_jar=jdbc_jar,
        partition_key=partition_key,
        num_partitions=num_partitions,
        fetch_size=fetch_size,
        max_orphan_ratio=max_orphan_ratio,
        max_records_per_file=max_records_per_file,
    )
    click.echo(summary_line(manifest, time.perf_counter() - started, settings.datalake_bucket))
