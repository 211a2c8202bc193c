"""Run the Glue job script (glue/etl_job.py) with local PySpark against the configured MySQL source
and S3 endpoint.

The script is loaded from its file and run in this process, so the Spark session built here (with
the MariaDB JDBC driver on its classpath) is the one it uses. Local PySpark cannot write ``s3a://``
(no matching hadoop-aws on PyPI), so the script writes to a temporary staging folder and uploads
with boto3; everything else (reads, quality rules, publishing) is the exact code Glue runs.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from recsys.contracts import TRAINING_PREFIX
from recsys.core.config import PROJECT_ROOT, Settings, load_settings
from recsys.core.errors import PipelineError
from recsys.core.processes import pid_alive

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

GLUE_SCRIPT = PROJECT_ROOT / "glue" / "etl_job.py"
MARIADB_JDBC_JAR = "/usr/share/java/mariadb-java-client.jar"  # Debian package libmariadb-java
# The MariaDB driver with a jdbc:mysql:// URL: Spark then picks its MySQL dialect (docs/architecture.md).
MARIADB_JDBC_DRIVER = "org.mariadb.jdbc.Driver"
log = logging.getLogger(__name__)
AWS_ENVIRONMENT = ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def job_argument_defaults(script: Path = GLUE_SCRIPT) -> dict[str, str | None]:
    """The script's ``JOB_ARGUMENTS`` literal, read without importing Spark."""
    tree = ast.parse(script.read_text(), filename=str(script))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "JOB_ARGUMENTS" for t in node.targets):
            defaults: dict[str, str | None] = ast.literal_eval(node.value)
            return defaults
    raise PipelineError(f"{script} defines no JOB_ARGUMENTS")


@lru_cache(maxsize=1)
def load_job_module(script: Path = GLUE_SCRIPT) -> ModuleType:
    """glue/etl_job.py as a module (imported once; it is not part of the package)."""
    if not script.is_file():
        raise PipelineError(f"Glue job script not found at {script}")
    spec = importlib.util.spec_from_file_location("recsys_glue_etl_job", script)
    if spec is None or spec.loader is None:
        raise PipelineError(f"cannot load {script} as a module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def local_spark_session(
    jdbc_jar: str = MARIADB_JDBC_JAR,
    *,
    master: str = "local[*]",
    driver_memory: str = "2g",
    shuffle_partitions: int | None = None,
    settings: Settings | None = None,
) -> SparkSession:
    """The local SparkSession with the JDBC driver on the driver classpath, tuned for a short job.

    Created once per process: later calls (and the job's own ``getOrCreate()``) get the same session.
    The JVM options (``RECSYS_SPARK_JAVA_OPTIONS``) and the class-data sharing archive
    (``RECSYS_SPARK_CDS``) come from ``settings``; start-up seconds go to ``SPARK_START_SECONDS``.
    """
    if not Path(jdbc_jar).is_file():
        raise PipelineError(
            f"JDBC driver jar not found at {jdbc_jar}: install it with `make system-deps` "
            "(Debian package libmariadb-java)"
        )
    from pyspark import SparkConf, SparkContext  # heavy (JVM); only the ETL stage needs it
    from pyspark.sql import SparkSession

    settings = settings or load_settings()
    java_options = settings.spark_java_options.split()
    if settings.spark_cds == "on":
        java_options += cds_options(jdbc_jar)
    conf = (
        SparkConf()
        .setMaster(master)
        .setAppName("recsys-etl")
        .set("spark.jars", jdbc_jar)
        .set("spark.driver.extraClassPath", jdbc_jar)
        .set("spark.driver.memory", driver_memory)
        .set("spark.driver.extraJavaOptions", " ".join(java_options))
        .set("spark.sql.shuffle.partitions", str(shuffle_partitions or 2 * (os.cpu_count() or 2)))
        .set("spark.ui.enabled", "false")
        .set("spark.ui.showConsoleProgress", "false")
        .set("spark.eventLog.enabled", "false")
        .set("spark.sql.session.timeZone", "UTC")
    )
    started = time.perf_counter()
    if SparkContext._active_spark_context is None:  # the JVM alone, timed apart from the session
        SparkContext._ensure_initialized(conf=conf)
        SPARK_START_SECONDS["jvm"] = time.perf_counter() - started
    session_started = time.perf_counter()
    spark = SparkSession.builder.config(conf=conf).getOrCreate()
    SPARK_START_SECONDS["session"] = time.perf_counter() - session_started
    return spark


SPARK_START_SECONDS: dict[str, float] = {}  # this process's JVM launch and session creation
CDS_DIR = PROJECT_ROOT / "build" / "spark-cds"
# CDS logging off: dumping an archive lists thousands of classes it cannot share (signed jars etc.)
CDS_QUIET = ("-Xlog:cds=off", "-Xlog:cds+dynamic=off")


def cds_options(jdbc_jar: str, directory: Path = CDS_DIR) -> list[str]:
    """JVM options that start Spark's JVM from a dynamic class-data sharing archive.

    The archive is keyed by everything its validity depends on (Java, PySpark, the JDBC jar). The
    first run without one writes ``<key>.<pid>.jsa`` when its JVM exits; a later run promotes a
    finished one (its writer gone) to ``<key>.jsa`` and uses it. The JVM ignores an archive that
    does not match its class path, so a stale one costs nothing but the time it would have saved.
    Where ``directory`` cannot be created (a read-only install), no options: the archive only saves time.
    """
    import pyspark

    key = hashlib.sha256(
        "|".join([_java_identity(), pyspark.__version__, jdbc_jar, str(Path(jdbc_jar).stat().st_mtime_ns)]).encode()
    ).hexdigest()[:16]
    archive = directory / f"{key}.jsa"
    for dumped in directory.glob(f"{key}.*.jsa"):  # finished dumps: the first becomes the archive
        writer = dumped.name.split(".")[1]
        if writer.isdigit() and not pid_alive(int(writer)):
            if archive.is_file():
                dumped.unlink(missing_ok=True)  # another run's, made at the same time: not needed
            else:
                os.replace(dumped, archive)
    if archive.is_file():
        return [f"-XX:SharedArchiveFile={archive}", *CDS_QUIET]
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a read-only install (the project image's /opt/recsys): start without the archive
        log.info("no class-data sharing archive: cannot write %s (%s)", directory, exc.strerror or exc)
        return []
    return [f"-XX:ArchiveClassesAtExit={directory / f'{key}.{os.getpid()}.jsa'}", *CDS_QUIET]


def _java_identity() -> str:
    """The JVM Spark will start (JAVA_HOME's, else PATH's) by resolved path and modification time,
    which a JDK upgrade changes; read from the file system: no JVM started just to ask its version."""
    java = Path(os.environ["JAVA_HOME"], "bin", "java") if os.environ.get("JAVA_HOME") else shutil.which("java")
    try:
        if java is None:
            raise FileNotFoundError("java")
        path = Path(java).resolve(strict=True)
    except OSError:
        raise PipelineError(f"no java found ({java or 'not on PATH'}; Spark needs Java 17)") from None
    return f"{path}@{path.stat().st_mtime_ns}"


def parquet_write_seconds(spark: SparkSession, after_stage: int) -> float:
    """Wall seconds of the Spark stages after ``after_stage`` that wrote output (the Parquet write).

    Read from Spark's status store (kept with the UI off), so the job itself needs no timing code
    for it: the rest of the job's write phase is the JDBC read, the join and the shuffle.
    """
    stages = _stage_list(spark)
    seconds = 0.0
    for i in range(stages.size()):
        stage = stages.apply(i)
        if (
            stage.stageId() > after_stage
            and stage.outputRecords() > 0
            and stage.submissionTime().isDefined()
            and stage.completionTime().isDefined()
        ):
            seconds += (stage.completionTime().get().getTime() - stage.submissionTime().get().getTime()) / 1000
    return seconds


def last_stage_id(spark: SparkSession) -> int:
    """The highest stage id so far (-1 before any), to tell a run's stages from earlier ones."""
    stages = _stage_list(spark)
    return int(max((stages.apply(i).stageId() for i in range(stages.size())), default=-1))


def _stage_list(spark: SparkSession) -> Any:  # a py4j proxy of a Scala Seq
    context: Any = spark.sparkContext  # its py4j gateway and JVM view, set once the context runs
    store = context._jsc.sc().statusStore()
    return store.stageList(
        None, False, False, context._gateway.new_array(context._jvm.double, 0), context._jvm.java.util.ArrayList()
    )


def job_arguments(settings: Settings, staging_dir: str, **options: object) -> dict[str, str]:
    """The script's arguments for a local run: the source and target from settings, then ``options``."""
    defaults = job_argument_defaults()
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise PipelineError(f"unknown ETL option(s) {', '.join(unknown)}; known: {', '.join(defaults)}")
    arguments = {
        "source_jdbc_url": settings.mysql_jdbc_url,
        "source_user": settings.mysql_user,
        "source_password": settings.mysql_password,
        "jdbc_driver": MARIADB_JDBC_DRIVER,
        "target_path": f"s3://{settings.datalake_bucket}/{TRAINING_PREFIX}",
        "staging_dir": staging_dir,
    }
    arguments.update({name: str(value) for name, value in options.items() if value is not None})
    return arguments


def as_argv(arguments: dict[str, str]) -> list[str]:
    """``--name value`` pairs, as Glue passes them (argv[0] is the script)."""
    argv = [str(GLUE_SCRIPT)]
    for name, value in arguments.items():
        argv += [f"--{name}", value]
    return argv


@contextmanager
def aws_environment(settings: Settings) -> Iterator[None]:
    """The script's boto3 reads endpoint, region and credentials from the environment: set them from settings."""
    env = settings.as_env()
    saved = {name: os.environ.get(name) for name in AWS_ENVIRONMENT}
    try:
        for name in AWS_ENVIRONMENT:
            if env[name]:
                os.environ[name] = env[name]
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_etl(settings: Settings, *, jdbc_jar: str = MARIADB_JDBC_JAR, **options: object) -> dict[str, Any]:
    """Run glue/etl_job.py with local PySpark; returns the published manifest.

    ``options`` are the script's job arguments (``partition_key="customerNumber"``,
    ``max_orphan_ratio=0`` ...) and override the settings-derived source and target.
    Raises ``PipelineError`` with the job's message when it refuses or fails; nothing is published then.
    """
    job = load_job_module()
    with tempfile.TemporaryDirectory(prefix="recsys-etl-") as staging:
        argv = as_argv(job_arguments(settings, staging, **options))
        try:
            job.JobConfig.from_arguments(job.parse_arguments(argv))  # refuse bad options before Spark starts
            # first, so the script's getOrCreate() gets this session and its jar
            spark = local_spark_session(jdbc_jar, settings=settings)
            before = last_stage_id(spark)
            with aws_environment(settings):
                manifest: dict[str, Any] = job.main(argv)
        except job.JobError as exc:
            raise PipelineError(str(exc)) from exc
    log.info(
        "etl seconds: %s",
        " ".join(
            f"{name}={seconds:.2f}"
            for name, seconds in run_seconds(job.last_run_seconds, parquet_write_seconds(spark, before))
        ),
    )
    return manifest


def run_seconds(phases: dict[str, float], parquet_write: float) -> list[tuple[str, float]]:
    """Where a run's time went: JVM start and session (this process's first run only), then the
    job's phases with its write split into the JDBC read + join + shuffle and the Parquet write."""
    split = {"read_join": max(0.0, phases.get("write", 0.0) - parquet_write), "parquet_write": parquet_write}
    timed = {**SPARK_START_SECONDS, **{k: v for k, v in phases.items() if k != "write"}, **split}
    SPARK_START_SECONDS.clear()  # counted once
    order = ["jvm", "session", "bounds", "read_join", "parquet_write", "file_rows", "upload", "publish"]
    return [(name, timed[name]) for name in order if name in timed]


def summary_line(manifest: dict[str, Any], seconds: float, bucket: str) -> str:
    """One line: what was published, how big, how fast."""
    quality = manifest["quality"]
    rows = manifest["row_count"]
    size_mb = sum(f["size"] for f in manifest["files"]) / 1e6
    return (
        f"etl: published {rows:,} rows ({quality['orphan_ratings']:,} orphan ratings dropped) in "
        f"{len(manifest['files'])} files, {size_mb:.1f} MB, partition_key={manifest['partition_key']}, "
        f"run {manifest['run_id']} -> s3://{bucket}/{manifest['snapshot_prefix']} "
        f"in {seconds:.1f} s ({rows / seconds:,.0f} rows/s)"
    )
