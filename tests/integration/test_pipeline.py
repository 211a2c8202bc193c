"""`recsys pipeline run` end to end on the embedded stack: each stage the command its ECS task runs, in a
subprocess, against MySQL, the emulator's S3 and PostgreSQL + pgvector of the test's own.

Three runs on one source: a good model (promoted: nothing was live), a deliberately worse one (ALS with one
factor and one sweep: the gate refuses it, the pointer and the live tables stay, the run ends "not promoted"
with both figures), and a good one again (promoted over the live one). Then the rollback the state machine
runs after a failed smoke test puts the first version back. And `recsys pipeline start` / `status` against
the emulator's Step Functions, with the rendered document.
"""

from __future__ import annotations

import json
from contextlib import closing
from dataclasses import replace

import pytest
from click.testing import CliRunner
from tests.support.fixtures_stack import running_emulator

from recsys.cli import cli
from recsys.contracts import DB_LOADER_ROLE
from recsys.core import aws
from recsys.core.db import connect_pg
from recsys.local.aws_resources import ensure_bucket
from recsys.local.stack import EmbeddedStack
from recsys.pipeline import stages
from recsys.pipeline.artifacts import serving_version
from recsys.pipeline.definition import EXAMPLE_TARGETS, PIPELINE, TASK_FAILED, asl_json
from recsys.pipeline.runner import (
    FAILED_STATUS,
    NOT_PROMOTED_STATUS,
    SUCCEEDED_STATUS,
    StageFailed,
    run_pipeline,
    subprocess_executor,
)
from recsys.serving.vector_store import live_version

WORSE_MODEL = {"model": "als", "factors": 1, "iterations": 1}
PIPELINE_DATABASE = "recsys_pipeline_test"


@pytest.fixture(scope="module")
def pipeline_settings(train_settings):
    """The trainer's seeded source, with buckets and a PostgreSQL database of the pipeline tests' own."""
    settings = replace(
        train_settings, datalake_bucket="pipeline-test-datalake", artifacts_bucket="pipeline-test-artifacts"
    )
    for bucket in (settings.datalake_bucket, settings.artifacts_bucket):
        ensure_bucket(settings, bucket)
    with closing(connect_pg(settings)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {PIPELINE_DATABASE}")
            cur.execute(f"CREATE DATABASE {PIPELINE_DATABASE}")
    yield replace(settings, pg_database=PIPELINE_DATABASE)
    with closing(connect_pg(settings)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {PIPELINE_DATABASE} WITH (FORCE)")


def db_live_version(settings) -> str | None:
    with closing(connect_pg(settings)) as conn:
        return live_version(conn)


def run(settings, tmp_path, name: str, **env):
    lines: list[str] = []
    # each stage connects as its task's database role, as the task definitions give them on AWS
    execute = subprocess_executor(settings, tmp_path / "logs", env, EmbeddedStack(settings).pipeline_task_env())
    outcome = run_pipeline(settings, f"run-test-{name}", execute, echo=lines.append)
    record = stages.read_run(settings, outcome.run_id)
    return outcome, record, {"pointer": serving_version(settings), "db": db_live_version(settings), "echo": lines}


@pytest.fixture(scope="module")
def runs(pipeline_settings, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    return {
        name: run(pipeline_settings, tmp, name, **env)
        for name, env in (("first", {}), ("worse", {stages.ENV_TRAIN_PARAMS: json.dumps(WORSE_MODEL)}), ("again", {}))
    }


def test_first_run_promotes_its_model_through_every_stage(runs, pipeline_settings):
    outcome, record, after = runs["first"]
    assert outcome.status == SUCCEEDED_STATUS, outcome.steps
    assert outcome.path == [stage.state for stage in PIPELINE]
    assert record["live_before"] is None and record["gate"]["promote"] is True
    assert after["pointer"] == after["db"] == record["candidate"] == record["promoted"]
    smoke = outcome.steps[-1].detail
    assert "known customer" in smoke and "new customer" in smoke and "known_customer" in smoke
    with closing(connect_pg(pipeline_settings)) as conn, conn.cursor() as cur:  # the loader's switch
        cur.execute("SELECT tableowner FROM pg_tables WHERE tablename IN ('item_emb', 'user_emb', 'live_model')")
        assert {owner for (owner,) in cur.fetchall()} == {DB_LOADER_ROLE}


def test_worse_model_is_refused_and_the_live_one_stays(runs):
    first = runs["first"][1]["candidate"]
    outcome, record, after = runs["worse"]
    assert outcome.status == NOT_PROMOTED_STATUS
    assert outcome.path == ["DatabaseRoles", "Etl", "Train", "QualityGate"]
    assert record["live_before"] == first and record["candidate"] != first
    assert after["pointer"] == after["db"] == first  # neither the pointer nor the live tables moved
    gate = record["gate"]
    assert gate["promote"] is False
    assert gate["candidate"]["known_ndcg"] < gate["live"]["known_ndcg"] - gate["tolerance"]
    (notification,) = outcome.notifications
    assert "not promoted" in notification
    for figures in (gate["candidate"], gate["live"]):  # both figures, as the notification says
        assert f"{figures['known_ndcg']:.4f}" in notification and figures["version"] in notification


def test_good_model_is_promoted_over_the_live_one(runs):
    first = runs["first"][1]["candidate"]
    outcome, record, after = runs["again"]
    assert outcome.status == SUCCEEDED_STATUS
    assert record["live_before"] == first and record["gate"]["promote"] is True
    assert record["gate"]["live"]["version"] == first
    assert record["gate"]["summary"].startswith("promoted: candidate")
    assert after["pointer"] == after["db"] == record["candidate"] != first


def test_rollback_puts_the_version_live_before_the_run_back(runs, pipeline_settings):
    first = runs["first"][1]["candidate"]
    run_id = runs["again"][0].run_id
    assert "rolled back to " + first in stages.rollback(pipeline_settings, run_id)
    assert serving_version(pipeline_settings) == db_live_version(pipeline_settings) == first
    assert stages.read_run(pipeline_settings, run_id)["rolled_back"] == first


def test_promote_refuses_a_candidate_the_gate_did_not_pass(runs, pipeline_settings):
    with pytest.raises(Exception, match="did not pass"):
        stages.promote(pipeline_settings, runs["worse"][0].run_id)


def test_a_failed_smoke_test_rolls_back_and_fails_the_run(runs, pipeline_settings, tmp_path):
    """The catch of SmokeTest, on a real run: the smoke test's failure is planted (a serving fault is not
    something this stack can be made to have on cue); Rollback then really puts the previous version back."""
    before = serving_version(pipeline_settings)
    real = subprocess_executor(pipeline_settings, tmp_path, {}, EmbeddedStack(pipeline_settings).pipeline_task_env())

    def execute(stage, run_id):
        if stage.state == "SmokeTest":
            raise StageFailed(TASK_FAILED, "planted smoke-test failure")
        return real(stage, run_id)

    outcome = run_pipeline(pipeline_settings, "run-test-smoke", execute, sleep=lambda seconds: None, echo=print)
    assert outcome.status == FAILED_STATUS
    assert outcome.path == [stage.state for stage in PIPELINE] + ["Rollback"]
    assert outcome.steps[-2].attempts == 3  # SmokeTest: the first try and its two retries
    record = stages.read_run(pipeline_settings, "run-test-smoke")
    assert record["promoted"] != before and record["rolled_back"] == before
    assert serving_version(pipeline_settings) == db_live_version(pipeline_settings) == before
    (notification,) = outcome.notifications
    assert "failed: States.TaskFailed planted smoke-test failure" in notification


def test_start_and_status_against_the_emulators_step_functions():
    with running_emulator("moto") as settings:
        sfn = aws.client("stepfunctions", settings)
        machine = sfn.create_state_machine(
            name="recsys-pipeline",
            definition=asl_json(EXAMPLE_TARGETS),
            roleArn="arn:aws:iam::123456789012:role/recsys-pipeline",
        )
        env = settings.as_env()
        started = CliRunner().invoke(
            cli,
            ["pipeline", "start", "--state-machine-arn", machine["stateMachineArn"], "--run-id", "run-test-start"],
            env=env,
        )
        assert started.exit_code == 0, started.output
        execution_arn = started.output.splitlines()[0]
        assert execution_arn.endswith(":run-test-start")
        status = CliRunner().invoke(cli, ["pipeline", "status", execution_arn], env=env)
        assert status.exit_code == 0, status.output
        assert status.output.startswith("run-test-start: ")
        assert sfn.describe_execution(executionArn=execution_arn)["status"] in status.output
