"""The batch pipeline, defined once: database roles -> ETL -> train -> quality gate -> load embeddings -> promote
-> smoke test.

``PIPELINE`` is the only list of stages. Two things are made from it:

* ``render_definition`` renders the Amazon States Language document AWS Step Functions runs
  (terraform/modules/pipeline reads ``asl_template()``, committed as
  terraform/modules/pipeline/state_machine.asl.json.tftpl): the ETL as ``glue:startJobRun.sync``, every
  other stage as an ``ecs:runTask.sync`` Fargate task of the project image running
  ``recsys pipeline stage <command> --run-id <execution name>``; failures and timeouts go to an SNS topic.
* ``recsys.pipeline.runner`` walks the same stages locally, each as that same command in a subprocess.

Stages pass nothing through the state machine's JSON: each reads and writes the run record
``s3://<artifacts>/pipeline/runs/<run id>.json`` (``recsys.pipeline.stages``). After the quality gate
the state machine reads the record (``s3:getObject``) and goes on only when the gate promoted the
candidate; otherwise it notifies "not promoted" and ends. The gate precedes the load because the
loader's switch of the live tables is part of the load (``vector_load.load_embeddings``): loading
first would serve the candidate before it is judged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from recsys.contracts import PIPELINE_RUNS_PREFIX, TASK_DBROLES, TASK_GATE, TASK_LOAD, TASK_TRAIN

GLUE, ECS = "glue", "ecs"
CONTAINER_NAME = "recsys"  # the container of every pipeline task definition (terraform/modules/pipeline)
STAGE_COMMAND = ("pipeline", "stage")  # after the image's ENTRYPOINT ["recsys"]
# The ECS task definitions (each with its own task role) and what they may do.
TASKS = (TASK_DBROLES, TASK_TRAIN, TASK_LOAD, TASK_GATE)

# Step Functions error names the runner maps its own failures to.
TASK_FAILED = "States.TaskFailed"  # a stage's process exited non-zero (an ECS container, a Glue job run)
TIMEOUT = "States.Timeout"
ALL_ERRORS = "States.ALL"
ECS_SERVICE_ERRORS = ("ECS.AmazonECSException", "ECS.ServerException")  # capacity, throttling: retried
GLUE_SERVICE_ERRORS = ("Glue.ConcurrentRunsExceededException", "Glue.InternalServiceException")

# States that are not stages.
READ_GATE_DECISION = "ReadGateDecision"
GATE_DECISION = "GateDecision"
NOTIFY_NOT_PROMOTED = "NotifyNotPromoted"
NOT_PROMOTED = "NotPromoted"
NOTIFY_FAILURE = "NotifyFailure"
FAILED = "Failed"
SUCCEEDED = "Succeeded"
ROLLBACK = "Rollback"


@dataclass(frozen=True)
class Retry:
    """A Step Functions retrier: ``max_attempts`` more tries after the first, waits growing by ``backoff_rate``."""

    errors: tuple[str, ...]
    max_attempts: int
    interval_seconds: int
    backoff_rate: float = 2.0

    def asl(self) -> dict[str, Any]:
        return {
            "ErrorEquals": list(self.errors),
            "IntervalSeconds": self.interval_seconds,
            "MaxAttempts": self.max_attempts,
            "BackoffRate": self.backoff_rate,
        }

    def wait_seconds(self, retry_number: int) -> float:
        """The wait before retry ``retry_number`` (1-based), as Step Functions computes it."""
        return self.interval_seconds * self.backoff_rate ** (retry_number - 1)


@dataclass(frozen=True)
class Stage:
    """One stage: a state of the state machine and one ``recsys pipeline stage`` command."""

    state: str  # the state's name
    command: str  # recsys pipeline stage <command>
    service: str  # GLUE or ECS
    task: str  # the ECS task definition (TASKS); "" for the Glue job
    timeout_seconds: int
    retries: tuple[Retry, ...]
    on_error: str  # where any error that retries did not cure goes
    next: str
    gate: bool = False  # the run record's gate decision chooses between ``next`` and NOT_PROMOTED
    description: str = field(default="", compare=False)


def _ecs_retry(attempts: int = 2) -> tuple[Retry, ...]:
    return (Retry(ECS_SERVICE_ERRORS, 3, 30), Retry((TASK_FAILED,), attempts, 60))


# The stages in the order they run, then the handler that only an error reaches.
PIPELINE: tuple[Stage, ...] = (
    Stage(
        "DatabaseRoles",
        "db-roles",
        ECS,
        TASK_DBROLES,
        600,
        _ecs_retry(2),
        NOTIFY_FAILURE,
        "Etl",
        description="the vector DB's loader and serving roles (sql/roles.sql), their passwords from their secrets",
    ),
    Stage(
        "Etl",
        "etl",
        GLUE,
        "",
        2 * 3600,
        (Retry(GLUE_SERVICE_ERRORS, 3, 60),),
        NOTIFY_FAILURE,
        "Train",
        description="Glue job: MySQL -> partitioned Parquet training set in S3",
    ),
    Stage(
        "Train",
        "train",
        ECS,
        TASK_TRAIN,
        4 * 3600,
        _ecs_retry(1),
        NOTIFY_FAILURE,
        "QualityGate",
        description="train and evaluate; publish a candidate version (the serving pointer stays)",
    ),
    Stage(
        "QualityGate",
        "gate",
        ECS,
        TASK_GATE,
        2 * 3600,
        _ecs_retry(1),
        NOTIFY_FAILURE,
        "LoadEmbeddings",
        gate=True,
        description="candidate vs live model on the same held-out split",
    ),
    Stage(
        "LoadEmbeddings",
        "load",
        ECS,
        TASK_LOAD,
        2 * 3600,
        _ecs_retry(2),
        NOTIFY_FAILURE,
        "Promote",
        description="the candidate's embeddings into pgvector, switched in atomically",
    ),
    Stage(
        "Promote",
        "promote",
        ECS,
        TASK_GATE,
        600,
        _ecs_retry(2),
        NOTIFY_FAILURE,
        "SmokeTest",
        description="move the serving pointer to the candidate",
    ),
    Stage(
        "SmokeTest",
        "smoke",
        ECS,
        TASK_GATE,
        600,
        _ecs_retry(2),
        ROLLBACK,
        SUCCEEDED,
        description="recommendations for one known and one new customer; failure rolls back",
    ),
)
HANDLERS: tuple[Stage, ...] = (
    Stage(
        ROLLBACK,
        "rollback",
        ECS,
        TASK_LOAD,
        2 * 3600,
        _ecs_retry(2),
        NOTIFY_FAILURE,
        NOTIFY_FAILURE,
        description="the pointer and the live tables back to the version live before the run",
    ),
)
STAGES = {stage.state: stage for stage in (*PIPELINE, *HANDLERS)}


def stage_named(command: str) -> Stage:
    """The stage a ``recsys pipeline stage`` command runs."""
    for stage in STAGES.values():
        if stage.command == command:
            return stage
    raise KeyError(command)


def run_record_key(run_id: str) -> str:
    return f"{PIPELINE_RUNS_PREFIX}{run_id}.json"


def container_command(stage: Stage, run_id: str) -> list[str]:
    """What the stage's container runs (after the ``recsys`` entry point), and the local runner too."""
    return [*STAGE_COMMAND, stage.command, "--run-id", run_id]


# -- the Amazon States Language document ------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """A JSON value written verbatim into the document (a template expression standing for a list)."""

    text: str


@dataclass(frozen=True)
class Targets:
    """What the document names: the Glue job, the cluster and task definitions, the network, the topic."""

    glue_job_name: str
    cluster_arn: str
    task_definitions: dict[str, str]  # TASKS -> task definition ARN
    subnet_ids: list[str] | Raw
    security_group_ids: list[str] | Raw
    topic_arn: str
    artifacts_bucket: str


TEMPLATE_TARGETS = Targets(  # terraform/modules/pipeline fills these in with templatefile()
    glue_job_name="${glue_job_name}",
    cluster_arn="${cluster_arn}",
    task_definitions={task: f"${{task_definition_{task}}}" for task in TASKS},
    subnet_ids=Raw("${jsonencode(subnet_ids)}"),
    security_group_ids=Raw("${jsonencode(security_group_ids)}"),
    topic_arn="${topic_arn}",
    artifacts_bucket="${artifacts_bucket}",
)
EXECUTION_NAME = "$$.Execution.Name"  # the run id of every stage


def _array_literal(items: list[str]) -> str:
    return ", ".join(f"'{item}'" for item in items)


def _task_state(stage: Stage, targets: Targets) -> dict[str, Any]:
    parameters: dict[str, Any]
    if stage.service == GLUE:
        resource, parameters = "arn:aws:states:::glue:startJobRun.sync", {"JobName": targets.glue_job_name}
    else:
        command = f"States.Array({_array_literal(container_command(stage, '')[:-1])}, {EXECUTION_NAME})"
        resource = "arn:aws:states:::ecs:runTask.sync"
        parameters = {
            "LaunchType": "FARGATE",
            "Cluster": targets.cluster_arn,
            "TaskDefinition": targets.task_definitions[stage.task],
            "NetworkConfiguration": {
                "AwsvpcConfiguration": {
                    "Subnets": targets.subnet_ids,
                    "SecurityGroups": targets.security_group_ids,
                    "AssignPublicIp": "DISABLED",
                }
            },
            "Overrides": {"ContainerOverrides": [{"Name": CONTAINER_NAME, "Command.$": command}]},
        }
    state: dict[str, Any] = {
        "Type": "Task",
        "Comment": stage.description,
        "Resource": resource,
        "Parameters": parameters,
        "TimeoutSeconds": stage.timeout_seconds,
        "ResultPath": None,
        "Retry": [retry.asl() for retry in stage.retries],
        "Catch": [{"ErrorEquals": [ALL_ERRORS], "ResultPath": "$.error", "Next": stage.on_error}],
    }
    state["Next"] = READ_GATE_DECISION if stage.gate else stage.next
    return state


def _notify(targets: Targets, subject: str, message: str, next_state: str) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::sns:publish",
        "Parameters": {"TopicArn": targets.topic_arn, "Subject": subject, "Message.$": message},
        "ResultPath": None,
        "Retry": [Retry(("States.ALL",), 3, 10).asl()],
        "Next": next_state,
    }


def render_definition(targets: Targets) -> dict[str, Any]:
    """The state machine as a dict (``asl_json`` writes it)."""
    gate = next(stage for stage in PIPELINE if stage.gate)
    states: dict[str, dict[str, Any]] = {}
    for stage in (*PIPELINE, *HANDLERS):
        states[stage.state] = _task_state(stage, targets)
        if stage.gate:
            states[READ_GATE_DECISION] = {
                "Type": "Task",
                "Comment": "the gate's decision, from the run record it wrote",
                "Resource": "arn:aws:states:::aws-sdk:s3:getObject",
                "Parameters": {
                    "Bucket": targets.artifacts_bucket,
                    "Key.$": f"States.Format('{run_record_key('{}')}', {EXECUTION_NAME})",
                },
                "ResultSelector": {"record.$": "States.StringToJson($.Body)"},
                "ResultPath": "$.run",
                "TimeoutSeconds": 60,
                "Retry": [Retry(("States.ALL",), 3, 5).asl()],
                "Catch": [{"ErrorEquals": [ALL_ERRORS], "ResultPath": "$.error", "Next": NOTIFY_FAILURE}],
                "Next": GATE_DECISION,
            }
            states[GATE_DECISION] = {
                "Type": "Choice",
                "Choices": [{"Variable": "$.run.record.gate.promote", "BooleanEquals": True, "Next": gate.next}],
                "Default": NOTIFY_NOT_PROMOTED,
            }
    states[NOTIFY_NOT_PROMOTED] = _notify(
        targets,
        "recsys pipeline: model not promoted",
        f"States.Format('recsys pipeline run {{}}: {{}}', {EXECUTION_NAME}, $.run.record.gate.summary)",
        NOT_PROMOTED,
    )
    states[NOT_PROMOTED] = {"Type": "Succeed", "Comment": "the gate kept the live model"}
    states[NOTIFY_FAILURE] = _notify(
        targets,
        "recsys pipeline: run failed",
        f"States.Format('recsys pipeline run {{}} failed: {{}} {{}}', {EXECUTION_NAME}, $.error.Error, $.error.Cause)",
        FAILED,
    )
    states[FAILED] = {
        "Type": "Fail",
        "Error": "PipelineFailed",
        "Cause": "a stage failed or timed out (see the SNS notification and the execution history)",
    }
    states[SUCCEEDED] = {"Type": "Succeed"}
    return {
        "Comment": "recsys batch pipeline (rendered from recsys.pipeline.definition; do not edit by hand)",
        "StartAt": PIPELINE[0].state,
        "TimeoutSeconds": sum(stage.timeout_seconds for stage in (*PIPELINE, *HANDLERS)) + 3600,
        "States": states,
    }


def asl_json(targets: Targets) -> str:
    """The document as JSON text; ``Raw`` values are written verbatim (so a template may not be JSON)."""
    raws: dict[str, str] = {}

    def encode(value: object) -> str:
        if isinstance(value, Raw):
            marker = f"__raw_{len(raws)}__"
            raws[marker] = value.text
            return marker
        raise TypeError(type(value))

    text = json.dumps(render_definition(targets), indent=2, default=encode) + "\n"
    for marker, raw in raws.items():
        text = text.replace(f'"{marker}"', raw)
    return text


def asl_template() -> str:
    """The document as the Terraform template terraform/modules/pipeline renders with templatefile()."""
    return asl_json(TEMPLATE_TARGETS)


EXAMPLE_TARGETS = Targets(  # concrete values: what the validator and the tests check
    glue_job_name="recsys-etl",
    cluster_arn="arn:aws:ecs:eu-west-1:123456789012:cluster/recsys-pipeline",
    task_definitions={task: f"arn:aws:ecs:eu-west-1:123456789012:task-definition/recsys-{task}:1" for task in TASKS},
    subnet_ids=["subnet-0a1b2c3d", "subnet-4e5f6a7b"],
    security_group_ids=["sg-0123456789abcdef0"],
    topic_arn="arn:aws:sns:eu-west-1:123456789012:recsys-pipeline",
    artifacts_bucket="recsys-example-artifacts",
)
