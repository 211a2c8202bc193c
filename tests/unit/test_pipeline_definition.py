"""The pipeline defined once: the rendered state machine is valid ASL, is the file Terraform reads, and
has the local runner's states, order, timeouts, retries and catches (walked here from the JSON alone)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from recsys.pipeline import definition
from recsys.pipeline.definition import (
    EXAMPLE_TARGETS,
    HANDLERS,
    PIPELINE,
    STAGES,
    TASK_FAILED,
    TIMEOUT,
    Stage,
    asl_json,
    asl_template,
    container_command,
)
from recsys.pipeline.runner import StageFailed, attempt_stage

REPO = Path(__file__).resolve().parents[2]
VALIDATOR = REPO / ".venv-tools" / "node_modules" / ".bin" / "asl-validator"
TEMPLATE = REPO / "terraform" / "modules" / "pipeline" / "state_machine.asl.json.tftpl"


@pytest.fixture(scope="module")
def document() -> dict:
    return json.loads(asl_json(EXAMPLE_TARGETS))


def fill_template(text: str, targets: definition.Targets) -> str:
    """What Terraform's templatefile() makes of the template, for the values of ``targets``."""
    values = {
        "glue_job_name": targets.glue_job_name,
        "cluster_arn": targets.cluster_arn,
        "topic_arn": targets.topic_arn,
        "artifacts_bucket": targets.artifacts_bucket,
        **{f"task_definition_{task}": arn for task, arn in targets.task_definitions.items()},
    }
    text = text.replace("${jsonencode(subnet_ids)}", json.dumps(targets.subnet_ids))
    text = text.replace("${jsonencode(security_group_ids)}", json.dumps(targets.security_group_ids))
    text = re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], text)
    assert "${" not in text and "%{" not in text, "a template directive Terraform would interpret"
    return text


def test_rendered_document_is_valid_asl(tmp_path):
    assert VALIDATOR.exists(), "asl-validator missing: `make install` installs it into .venv-tools (npm)"
    path = tmp_path / "state_machine.json"
    path.write_text(asl_json(EXAMPLE_TARGETS))
    proc = subprocess.run([str(VALIDATOR), "--json-path", str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_validator_refuses_a_broken_document(tmp_path):
    """The validation above can fail: a dangling transition is refused."""
    document = json.loads(asl_json(EXAMPLE_TARGETS))
    document["States"]["Train"]["Next"] = "NoSuchState"
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(document))
    proc = subprocess.run([str(VALIDATOR), "--json-path", str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode != 0 and "NoSuchState" in proc.stdout + proc.stderr


def test_terraform_reads_the_rendered_template():
    assert TEMPLATE.read_text() == asl_template(), "re-render: recsys pipeline render --template --output " + str(
        TEMPLATE.relative_to(REPO)
    )


def test_template_filled_in_is_the_rendered_document():
    assert json.loads(fill_template(TEMPLATE.read_text(), EXAMPLE_TARGETS)) == json.loads(asl_json(EXAMPLE_TARGETS))


def walk(document: dict, *, failing: dict[str, int] | None = None, promote: bool = True) -> tuple[list[str], str]:
    """Follow the document from StartAt as Step Functions would: ``failing`` = state -> attempts that fail
    with States.TaskFailed (retried by the state's Retry, then caught by its Catch), ``promote`` = the gate's
    decision. Returns the Task states that ran a stage (ECS or Glue) and the end state."""
    failing = dict(failing or {})
    states = document["States"]
    name, ran = document["StartAt"], []
    while True:
        state = states[name]
        if state["Type"] in ("Succeed", "Fail"):
            return ran, name
        if state["Type"] == "Choice":
            rule = state["Choices"][0]
            assert rule["Variable"] == "$.run.record.gate.promote" and rule["BooleanEquals"] is True
            name = rule["Next"] if promote else state["Default"]
            continue
        resource = state["Resource"]
        if resource.endswith(("ecs:runTask.sync", "glue:startJobRun.sync")):
            ran.append(name)
            budget = sum(r["MaxAttempts"] for r in state["Retry"] if TASK_FAILED in r["ErrorEquals"]) + 1
            if failing.get(name, 0) >= budget:
                name = next(c["Next"] for c in state["Catch"] if "States.ALL" in c["ErrorEquals"])
                continue
        name = state["Next"]


def test_happy_path_is_the_definition_order(document):
    ran, end = walk(document)
    assert (
        ran
        == [stage.state for stage in PIPELINE]
        == ["DatabaseRoles", "Etl", "Train", "QualityGate", "LoadEmbeddings", "Promote", "SmokeTest"]
    )
    assert end == definition.SUCCEEDED


def test_refused_candidate_ends_not_promoted_after_a_notification(document):
    ran, end = walk(document, promote=False)
    assert ran == ["DatabaseRoles", "Etl", "Train", "QualityGate"] and end == definition.NOT_PROMOTED
    notify = document["States"][definition.NOTIFY_NOT_PROMOTED]
    assert notify["Resource"] == "arn:aws:states:::sns:publish" and notify["Next"] == definition.NOT_PROMOTED
    assert "$.run.record.gate.summary" in notify["Parameters"]["Message.$"]


@pytest.mark.parametrize("stage", PIPELINE, ids=lambda s: s.state)
def test_a_stage_that_keeps_failing_ends_in_a_notified_failure(document, stage):
    ran, end = walk(document, failing={stage.state: 99})
    expected = [s.state for s in PIPELINE[: PIPELINE.index(stage) + 1]]
    if stage.on_error == definition.ROLLBACK:
        expected.append(definition.ROLLBACK)
    assert ran == expected and end == definition.FAILED
    assert document["States"][definition.NOTIFY_FAILURE]["Next"] == definition.FAILED


@pytest.mark.parametrize("stage", [*PIPELINE, *HANDLERS], ids=lambda s: s.state)
def test_each_state_has_the_stage_timeout_retries_catch_and_command(document, stage: Stage):
    state = document["States"][stage.state]
    assert state["TimeoutSeconds"] == stage.timeout_seconds
    assert state["Retry"] == [retry.asl() for retry in stage.retries]
    assert state["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": stage.on_error}]
    if stage.service == definition.GLUE:
        assert state["Parameters"] == {"JobName": EXAMPLE_TARGETS.glue_job_name}
        return
    params = state["Parameters"]
    assert params["TaskDefinition"] == EXAMPLE_TARGETS.task_definitions[stage.task]
    assert params["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] == "DISABLED"
    command = params["Overrides"]["ContainerOverrides"][0]["Command.$"]
    # the container runs exactly what the local runner runs, with the execution name as the run id
    literal = ", ".join(f"'{part}'" for part in container_command(stage, "X")[:-1])
    assert command == f"States.Array({literal}, $$.Execution.Name)"


def test_every_state_is_reachable_and_every_transition_exists(document):
    states = document["States"]
    targets = {document["StartAt"]}
    for state in states.values():
        targets |= {state[key] for key in ("Next", "Default") if key in state}
        targets |= {c["Next"] for c in state.get("Catch", []) + state.get("Choices", [])}
    assert targets == set(states)


# -- the local runner's retries, as Step Functions computes them ------------------------------------


def scripted(failures: list[str]):
    """An executor whose attempts fail with the given errors in turn, then succeed."""
    calls = []

    def execute(stage, run_id):
        calls.append(stage.state)
        if len(calls) <= len(failures):
            raise StageFailed(failures[len(calls) - 1], "scripted")
        return "ok"

    return execute, calls


def test_runner_retries_a_failed_task_as_the_retrier_says():
    stage = STAGES["LoadEmbeddings"]  # TaskFailed: 2 retries, 60 s then 120 s
    waits = []
    execute, _ = scripted([TASK_FAILED, TASK_FAILED])
    assert attempt_stage(stage, "r", execute, waits.append) == ("ok", 3)
    assert waits == [60, 120]


def test_runner_gives_up_after_the_retriers_budget():
    stage = STAGES["Train"]  # TaskFailed: 1 retry
    execute, calls = scripted([TASK_FAILED] * 5)
    with pytest.raises(StageFailed) as failure:
        attempt_stage(stage, "r", execute, lambda s: None)
    assert len(calls) == 2 and failure.value.error == TASK_FAILED


def test_runner_does_not_retry_a_timeout():
    """No retrier names States.Timeout: a stage that ran out of time goes to its catch at once."""
    execute, calls = scripted([TIMEOUT])
    with pytest.raises(StageFailed):
        attempt_stage(STAGES["Train"], "r", execute, lambda s: None)
    assert calls == ["Train"]


def test_retriers_count_separately():
    stage = STAGES["Promote"]  # ECS service errors: 3 retries (30, 60, 120 s); TaskFailed: 2 (60, 120 s)
    waits = []
    execute, _ = scripted(["ECS.AmazonECSException", TASK_FAILED, "ECS.AmazonECSException", TASK_FAILED])
    assert attempt_stage(stage, "r", execute, waits.append) == ("ok", 5)
    assert waits == [30, 60, 60, 120]
