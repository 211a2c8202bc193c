"""The Glue job's arguments, read the way Glue and Terraform read them (no Spark work)."""

from __future__ import annotations

import ast

import pytest

from recsys.pipeline.etl import GLUE_SCRIPT, load_job_module


@pytest.fixture(scope="module")
def etl_job():
    """glue/etl_job.py loaded as a module (importing PySpark starts no JVM)."""
    return load_job_module()


def test_job_arguments_is_a_literal_terraform_can_read():
    tree = ast.parse(GLUE_SCRIPT.read_text())
    literal = next(
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "JOB_ARGUMENTS"
    )
    arguments = ast.literal_eval(literal)
    assert {name for name, default in arguments.items() if default is None} == {"source_jdbc_url", "target_path"}
    assert arguments["partition_key"] == "productLine"
    assert arguments["jdbc_driver"] == "com.mysql.cj.jdbc.Driver"
    for name in ("source_secret_id", "source_user", "source_password", "num_partitions", "fetch_size", "staging_dir"):
        assert isinstance(arguments[name], str)


def test_parse_arguments_like_glue(etl_job):
    argv = [
        "etl_job.py",
        "--JOB_NAME",
        "j",
        "--source_jdbc_url",
        "jdbc:mysql://db:3306/classicmodels",
        "--TempDir",
        "s3://scripts/tmp/",
        "--target_path=s3://lake/ratings_ml_training/",
        "--partition_key",
        "customerNumber",
    ]
    args = etl_job.parse_arguments(argv)
    assert args["target_path"] == "s3://lake/ratings_ml_training/"
    assert args["partition_key"] == "customerNumber"
    assert args["fetch_size"] == etl_job.JOB_ARGUMENTS["fetch_size"]
    assert args["JOB_NAME"] == "j" and "TempDir" not in args
    config = etl_job.JobConfig.from_arguments(args)
    assert (config.target_bucket, config.target_prefix) == ("lake", "ratings_ml_training/")
    assert config.snapshot_prefix == f"ratings_ml_training/snapshots/{config.run_id}/"
    assert etl_job.RUN_ID_PATTERN.match(config.run_id)

    with pytest.raises(etl_job.JobError, match="--target_path"):
        etl_job.parse_arguments(argv[:5])
    with pytest.raises(etl_job.JobError, match="must look like s3://"):
        etl_job.JobConfig.from_arguments({**args, "target_path": "/tmp/out"})
