"""The local ETL launcher's start-up parts (no Spark work): the class-data sharing archive's life
cycle, the time breakdown, and the JVM options setting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.environment import needs

from recsys.core.config import load_settings
from recsys.core.errors import ConfigError
from recsys.pipeline import etl

needs_jar = needs("mariadb-jdbc", Path(etl.MARIADB_JDBC_JAR).is_file(), "no JDBC jar (make system-deps)")


def finished_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@needs_jar
def test_an_archive_directory_that_cannot_be_created_means_no_archive(tmp_path):
    """The project image's /opt/recsys is root's and `recsys etl` runs as recsys: start without CDS, don't fail."""
    blocker = tmp_path / "build"
    blocker.write_text("a file where the archive directory would go\n")
    assert etl.cds_options(etl.MARIADB_JDBC_JAR, blocker / "spark-cds") == []


@needs_jar
def test_first_run_dumps_an_archive_that_a_later_run_uses(tmp_path):
    first = etl.cds_options(etl.MARIADB_JDBC_JAR, tmp_path)
    dump = [o for o in first if o.startswith("-XX:ArchiveClassesAtExit=")]
    assert len(dump) == 1 and "-Xlog:cds=off" in first
    dumped = tmp_path / dump[0].split("=", 1)[1].rsplit("/", 1)[1]
    key, writer, _ = dumped.name.split(".")
    assert writer == str(os.getpid())  # this process's JVM writes it when it exits

    # a dump whose writer still runs is left alone: it may be half written
    (tmp_path / f"{key}.{writer}.jsa").write_bytes(b"partial")
    assert any(o.startswith("-XX:ArchiveClassesAtExit=") for o in etl.cds_options(etl.MARIADB_JDBC_JAR, tmp_path))
    assert not (tmp_path / f"{key}.jsa").exists()

    # a finished dump (its writer gone) becomes the archive every later run starts from
    # (two first runs at once leave two; the second is removed, not kept beside the archive)
    (tmp_path / f"{key}.{writer}.jsa").unlink()
    for dumped in (finished_pid(), finished_pid()):
        (tmp_path / f"{key}.{dumped}.jsa").write_bytes(b"archive")
    later = etl.cds_options(etl.MARIADB_JDBC_JAR, tmp_path)
    assert f"-XX:SharedArchiveFile={tmp_path / f'{key}.jsa'}" in later
    assert (tmp_path / f"{key}.jsa").read_bytes() == b"archive"
    assert [p.name for p in tmp_path.iterdir()] == [f"{key}.jsa"]


@needs_jar
def test_archive_key_changes_with_the_jdbc_jar(tmp_path):
    other = tmp_path / "other.jar"
    other.write_bytes(b"jar")
    names = {
        o.split("=", 1)[1].rsplit("/", 1)[1].split(".")[0]
        for jar in (etl.MARIADB_JDBC_JAR, str(other))
        for o in etl.cds_options(jar, tmp_path / "cds")
        if o.startswith("-XX:ArchiveClassesAtExit=")
    }
    assert len(names) == 2


def test_run_seconds_splits_the_write_and_counts_the_start_once(monkeypatch):
    monkeypatch.setattr(etl, "SPARK_START_SECONDS", {"jvm": 1.5, "session": 0.5})
    phases = {"bounds": 0.4, "write": 6.0, "file_rows": 0.3, "upload": 0.2, "publish": 0.1}
    first = dict(etl.run_seconds(phases, parquet_write=2.5))
    assert first == {
        "jvm": 1.5,
        "session": 0.5,
        "bounds": 0.4,
        "read_join": 3.5,
        "parquet_write": 2.5,
        "file_rows": 0.3,
        "upload": 0.2,
        "publish": 0.1,
    }
    assert "jvm" not in dict(etl.run_seconds(phases, parquet_write=2.5))  # a second run in the process


def test_spark_java_options_setting(tmp_path):
    base = {"RECSYS_STATE_DIR": str(tmp_path)}
    assert "-XX:Tier4InvocationThreshold=200000" in load_settings(base).spark_java_options.split()
    assert (
        load_settings({**base, "RECSYS_SPARK_JAVA_OPTIONS": "  -XX:+UseParallelGC   -Dx=1 "}).spark_java_options
        == "-XX:+UseParallelGC -Dx=1"
    )
    assert load_settings({**base, "RECSYS_SPARK_JAVA_OPTIONS": ""}).spark_java_options == ""
    with pytest.raises(ConfigError, match=r"invalid setting RECSYS_SPARK_JAVA_OPTIONS='rm -rf': expected space-sep"):
        load_settings({**base, "RECSYS_SPARK_JAVA_OPTIONS": "rm -rf"})
    with pytest.raises(ConfigError, match="RECSYS_SPARK_CDS"):
        load_settings({**base, "RECSYS_SPARK_CDS": "yes"})
