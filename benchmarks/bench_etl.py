"""Benchmark: the Glue ETL job (local PySpark, end to end) against a single-process baseline.

Starts its own embedded stack (temporary RECSYS_STATE_DIR) and MySQL database, seeds N ratings,
then runs, each in its own process so wall time and peak memory are the job's alone:

* ``recsys etl``: Spark session start, JDBC reads, join, quality, Parquet, upload, manifest;
* baseline ``pymysql``: one Python process runs the join in SQL, streams it with pymysql into Arrow,
  writes the same partitioned snappy Parquet with pyarrow and uploads it with boto3;
* baseline ``mysql-client``: the same, but the C ``mysql --batch`` client streams TSV that
  ``pyarrow.csv`` parses (the fastest single-machine path we know; two processes).

Prints rows/s, wall time, CPU seconds and peak RSS (process tree: Spark JVM + Python), where the
Spark run's time went (Python start, JVM start, session, bounds query, JDBC read + join, Parquet
write, rows per file, upload, publish: the job's own ``etl seconds`` log line), the load average
before and after each run, and the goal against the ``mysql`` client baseline of the same run:
<= 2x its wall time at 1M ratings, faster than it at 10M (5M and up are held to the 10M goal).
Exits 0; a goal not met is printed as "NOT met".

    .venv/bin/python -m benchmarks.bench_etl --ratings 1000000
    .venv/bin/python -m benchmarks.bench_etl --ratings 10000000 --customers 200000
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
RECSYS = REPO / ".venv" / "bin" / "recsys"
# STRAIGHT_JOIN: scan ratings in primary-key order and look customers/products up by key. Left to
# itself the optimizer drives from products through the ratings.productCode index, i.e. random
# reads of the whole ratings table, which at 10M ratings (beyond the buffer pool) takes many minutes.
TRAINING_SQL = (
    "SELECT STRAIGHT_JOIN r.customerNumber, c.city, c.state, c.postalCode, c.country, c.creditLimit, r.productCode, "
    "p.productLine, p.productScale, p.quantityInStock, p.buyPrice, p.MSRP, r.productRating "
    "FROM ratings r JOIN customers c ON c.customerNumber = r.customerNumber "
    "JOIN products p ON p.productCode = r.productCode"
)
BASELINE_PREFIX = "bench_baseline/"


GOAL_BASELINE = "baseline mysql-client"
LARGE = 5_000_000  # from here on the 10M goal (Spark faster than the baseline) applies
# where the Spark run's time went: the launcher's "etl seconds:" line (name=seconds ...)
PHASES = {
    "jvm": "JVM start",
    "session": "Spark session",
    "bounds": "bounds query + schemas",
    "read_join": "JDBC read + join + shuffle",
    "parquet_write": "Parquet write",
    "file_rows": "rows per file",
    "upload": "upload",
    "publish": "manifest + cleanup",
}


@dataclass
class Measurement:
    name: str
    seconds: float
    peak_rss_mb: float
    rows: int
    cpu_seconds: float = 0.0
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average before and after
    output: list[str] | None = None

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds


def process_tree_rss(proc: psutil.Process) -> int:
    """RSS of a process and all its descendants (the Spark JVM is a child of the Python driver)."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def process_tree_cpu(proc: psutil.Process, seen: dict[int, float]) -> None:
    """Record the CPU seconds (user + system) of a process and its descendants, by PID, in ``seen``."""
    for p in [proc, *proc.children(recursive=True)]:
        try:
            times = p.cpu_times()
            seen[p.pid] = times.user + times.system + times.children_user + times.children_system
        except psutil.Error:
            pass


@dataclass
class Watched:
    """A finished command: wall and CPU seconds and peak RSS of its process tree, its stdout lines."""

    seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    load: tuple[float, float]  # 1-minute load average before and after
    returncode: int
    output: list[str]


def run_watched(command: list[str], env: dict[str, str] | None = None, *, merge_stderr: bool = True) -> Watched:
    """Run ``command`` to completion, sampling its process tree's RSS and CPU time every 0.1 s
    (stderr joins stdout unless ``merge_stderr`` is False, when it passes through, progress bars included)."""
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT if merge_stderr else None, text=True
    )
    peak = 0
    cpu: dict[int, float] = {}
    watched = psutil.Process(proc.pid)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True)
    reader.start()
    while proc.poll() is None:
        try:
            peak = max(peak, process_tree_rss(watched))
            process_tree_cpu(watched, cpu)
        except psutil.Error:
            pass
        time.sleep(0.1)
    seconds = time.perf_counter() - started
    reader.join()
    return Watched(seconds, sum(cpu.values()), peak / 2**20, (load_before, os.getloadavg()[0]), proc.returncode, output)


def measure(name: str, command: list[str], env: dict[str, str], rows: int) -> Measurement:
    """Run ``command`` to completion, watched (``run_watched``); exit with its output if it fails."""
    print(f"  running {name} (load average {os.getloadavg()[0]:.1f}) ...", flush=True)
    run = run_watched(command, env)
    if run.returncode != 0:
        sys.exit(f"{name} failed ({run.returncode}):\n" + "".join(run.output[-30:]))
    last = [line for line in run.output if line.strip()][-1].strip()
    print(f"  {name}: {last}")
    return Measurement(name, run.seconds, run.peak_rss_mb, rows, run.cpu_seconds, run.load, run.output)


def phase_seconds(output: list[str]) -> dict[str, float]:
    """The launcher's ``etl seconds: jvm=1.52 session=0.61 ...`` line as a dict (empty when absent)."""
    for line in reversed(output):
        if "etl seconds:" in line:
            return {name: float(value) for name, value in re.findall(r"(\w+)=([\d.]+)", line.split("etl seconds:")[1])}
    return {}


# -- the single-process baselines -----------------------------------------------------------------
def training_schema():
    """The training set's Arrow schema, as the tests' reference training sets use it."""
    from tests.support.fixtures_train import TRAINING_SCHEMA

    return TRAINING_SCHEMA


def batches_pymysql(settings, schema, chunk: int = 100_000):
    """The SQL join streamed with pymysql (unbuffered cursor) as Arrow record batches."""
    import pyarrow as pa
    import pymysql.cursors

    from recsys.core.db import connect_mysql

    conn = connect_mysql(settings, cursorclass=pymysql.cursors.SSCursor)
    try:
        with conn.cursor() as cur:
            cur.execute(TRAINING_SQL)
            while rows := cur.fetchmany(chunk):
                columns = list(zip(*rows, strict=True))
                yield pa.RecordBatch.from_arrays(
                    [pa.array(col, type=field.type) for col, field in zip(columns, schema, strict=True)], schema=schema
                )
    finally:
        conn.close()


def batches_mysql_client(settings, schema):
    """The SQL join streamed by the ``mysql`` C client as TSV, parsed by pyarrow.csv."""
    import pyarrow.csv as pacsv

    command = [
        "mysql",
        "--batch",
        "--quick",
        f"--host={settings.mysql_host}",
        f"--port={settings.mysql_port}",
        f"--user={settings.mysql_user}",
        settings.mysql_database,
        "-e",
        TRAINING_SQL,
    ]
    env = {**os.environ, "MYSQL_PWD": settings.mysql_password}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, env=env)
    reader = pacsv.open_csv(
        proc.stdout,
        read_options=pacsv.ReadOptions(block_size=8 << 20),
        parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False, escape_char="\\"),
        convert_options=pacsv.ConvertOptions(column_types=schema, null_values=["NULL"], strings_can_be_null=True),
    )
    yield from reader
    if proc.wait() != 0:
        raise RuntimeError(f"mysql client exited with {proc.returncode}")


def run_baseline(method: str) -> None:
    """One process: join -> Arrow -> partitioned snappy Parquet -> upload. Prints one summary line."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from recsys.core.aws import client
    from recsys.core.config import load_settings

    settings = load_settings()
    schema = training_schema()
    source = batches_pymysql if method == "pymysql" else batches_mysql_client
    table = pa.Table.from_batches(list(source(settings, schema)), schema=schema)
    s3 = client("s3", settings)
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as staging:
        pq.write_to_dataset(table, staging, partition_cols=["productLine"], compression="snappy")
        files = list(Path(staging).rglob("*.parquet"))
        for path in files:
            s3.upload_file(
                str(path), settings.datalake_bucket, f"{BASELINE_PREFIX}{method}/{path.relative_to(staging).as_posix()}"
            )
    print(f"baseline {method}: {table.num_rows:,} rows, {len(files)} files")


# -- the benchmark --------------------------------------------------------------------------------
def seed(settings, customers: int, products: int, ratings: int) -> None:
    from recsys.apps.source import seed_configured_source
    from recsys_seed import SeedSpec

    started = time.perf_counter()
    summary = seed_configured_source(
        settings, SeedSpec(customers, products, ratings, 42), reset=True, show_progress=False
    )
    print(
        f"seeded {summary.ratings:,} ratings ({customers:,} customers x {products:,} products) "
        f"in {time.perf_counter() - started:.1f} s"
    )


def report(spark: Measurement, baselines: list[Measurement]) -> None:
    print(
        f"\n{'run':<24}{'wall s':>8}{'CPU s':>8}{'rows/s':>11}{'peak RSS MB':>13}{'time vs spark':>15}"
        f"{'load before/after':>19}"
    )
    for m in [spark, *baselines]:
        print(
            f"{m.name:<24}{m.seconds:>8.1f}{m.cpu_seconds:>8.1f}{m.rows_per_second:>11,.0f}{m.peak_rss_mb:>13,.0f}"
            f"{m.seconds / spark.seconds:>14.2f}x{m.load[0]:>11.1f} / {m.load[1]:.1f}"
        )
    report_phases(spark)
    for baseline in baselines:
        ratio = spark.seconds / baseline.seconds
        print(
            f"spark / {baseline.name} wall time: {ratio:.2f}x ({'spark faster' if ratio < 1 else 'baseline faster'}); "
            f"CPU time: {spark.cpu_seconds / baseline.cpu_seconds:.2f}x"
        )
    report_goal(spark, next((b for b in baselines if b.name == GOAL_BASELINE), None))


def report_phases(spark: Measurement) -> None:
    """Where the Spark run's wall time went, from the launcher's own timings."""
    phases = phase_seconds(spark.output or [])
    if not phases:
        print("\n(no 'etl seconds:' line in the Spark run's output: no breakdown)")
        return
    rest = spark.seconds - sum(phases.values())
    print(f"\nwhere the Spark run's {spark.seconds:.1f} s went:")
    for name, seconds in [*((PHASES.get(n, n), v) for n, v in phases.items()), ("Python start, imports, exit", rest)]:
        print(f"  {name:<30}{seconds:>7.2f} s {seconds / spark.seconds:>6.1%}")


def report_goal(spark: Measurement, baseline: Measurement | None) -> None:
    """The goal for this size against the mysql-client baseline, with "NOT met" when it is not."""
    if baseline is None:
        print(f"goal: not checked (needs --baselines with {GOAL_BASELINE.split()[-1]})")
        return
    ratio = spark.seconds / baseline.seconds
    if spark.rows >= LARGE:
        goal, met = "Spark faster than the mysql client (< 1x) at 10M ratings", ratio < 1
        if spark.rows < 10_000_000:
            goal += f" (measured at {spark.rows / 1e6:g}M)"
    else:
        goal, met = "Spark <= 2x the mysql client's wall time at 1M ratings", ratio <= 2
    print(
        f"goal: {goal}: {ratio:.2f}x -> {'met' if met else 'NOT met'} "
        f"(load average {spark.load[0]:.1f} -> {baseline.load[1]:.1f} on {os.cpu_count()} cores)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ratings", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=0, help="default: ratings / 50")
    parser.add_argument("--products", type=int, default=2_000)
    parser.add_argument("--baselines", default="pymysql,mysql-client")
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="run every contender this many times, interleaved; report each one's median run",
    )
    parser.add_argument("--baseline-only", choices=["pymysql", "mysql-client"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_only:
        run_baseline(args.baseline_only)
        return

    from recsys.local.stack import scratch_stack

    customers = args.customers or max(1, args.ratings // 50)
    with scratch_stack("bench_etl", OPENBLAS_NUM_THREADS="1") as settings:
        seed(settings, customers, args.products, args.ratings)
        env = dict(os.environ)
        print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}")
        commands = {
            "spark (recsys etl)": [str(RECSYS), "etl"],
            **{
                f"baseline {m}": [sys.executable, __file__, "--baseline-only", m]
                for m in args.baselines.split(",")
                if m
            },
        }
        if settings.spark_cds == "on" and not cds_archive_ready():
            print("no class-data sharing archive for Spark yet: a first, unmeasured run writes it")
            measure("warm-up (writes the archive)", commands["spark (recsys etl)"], env, args.ratings)
        runs: dict[str, list[Measurement]] = {name: [] for name in commands}
        for _ in range(args.repeats):
            for name, command in commands.items():
                runs[name].append(measure(name, command, env, args.ratings))
        spark, *baselines = [median_run(measured) for measured in runs.values()]
        report(spark, baselines)


def median_run(measured: list[Measurement]) -> Measurement:
    """The run with the median wall time (the lower middle one of an even count)."""
    return sorted(measured, key=lambda m: m.seconds)[(len(measured) - 1) // 2]


def cds_archive_ready() -> bool:
    """Whether `recsys etl` will start its JVM from a class-data sharing archive."""
    from recsys.pipeline.etl import MARIADB_JDBC_JAR, cds_options

    return any(option.startswith("-XX:SharedArchiveFile=") for option in cds_options(MARIADB_JDBC_JAR))


if __name__ == "__main__":
    main()
