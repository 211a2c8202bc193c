"""``recsys pipeline``: the batch pipeline, run locally or started and watched on AWS Step Functions."""

from __future__ import annotations

import json
from pathlib import Path

import click

from recsys.cli.options import FiniteFloatRange
from recsys.core import aws
from recsys.core.config import load_settings
from recsys.local.stack import EmbeddedStack
from recsys.pipeline.definition import EXAMPLE_TARGETS, STAGES, asl_json, asl_template
from recsys.pipeline.runner import NOT_PROMOTED_STATUS, SUCCEEDED_STATUS, run_pipeline, subprocess_executor
from recsys.pipeline.stages import ENV_GATE_TOLERANCE, ENV_TRAIN_PARAMS, STAGE_FUNCTIONS, new_run_id

STATE_MACHINE_ARN = click.option(
    "--state-machine-arn",
    envvar="RECSYS_STATE_MACHINE_ARN",
    required=True,
    help="The state machine (terraform output pipeline_state_machine_arn; env RECSYS_STATE_MACHINE_ARN).",
)


@click.group("pipeline")
def pipeline() -> None:
    """The batch pipeline: ETL -> train -> quality gate -> load embeddings -> promote -> smoke test."""


@pipeline.command("run")
@click.option("--run-id", default=None, help="Run id (default: run-<UTC time>-<random>).")
@click.option(
    "--train-params",
    default=None,
    metavar="JSON",
    help="TrainParams fields for the train stage, e.g. '{\"factors\": 32}' (default: the trainer's).",
)
@click.option(
    "--tolerance",
    type=FiniteFloatRange(0, 1, max_open=True),
    default=None,
    help="NDCG@10 the gate lets a candidate lose against the live model (default: 0.01).",
)
@click.option(
    "--log-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where each stage's log goes (default: <state dir>/logs/pipeline).",
)
def run_command(run_id: str | None, train_params: str | None, tolerance: float | None, log_dir: Path | None) -> None:
    """Run every stage locally, in the deployed state machine's order, retries and catches."""
    settings = load_settings()
    env = {}
    if train_params:
        try:
            if not isinstance(json.loads(train_params), dict):
                raise ValueError("not an object")
        except ValueError as exc:
            raise click.BadParameter(f"not a JSON object: {exc}", param_hint="--train-params") from None
        env[ENV_TRAIN_PARAMS] = train_params
    if tolerance is not None:
        env[ENV_GATE_TOLERANCE] = repr(tolerance)
    run_id = run_id or new_run_id()
    task_env = EmbeddedStack(settings).pipeline_task_env()  # each task's database role, as on AWS
    executor = subprocess_executor(settings, log_dir or settings.state_dir / "logs" / "pipeline", env, task_env)
    outcome = run_pipeline(settings, run_id, executor, echo=click.echo)
    click.echo(f"run {run_id}: {outcome.status} ({' -> '.join(outcome.path)})")
    if outcome.status not in (SUCCEEDED_STATUS, NOT_PROMOTED_STATUS):
        raise SystemExit(1)


@pipeline.command("stage", hidden=True)
@click.argument("command", type=click.Choice([stage.command for stage in STAGES.values()]))
@click.option("--run-id", required=True, help="The run (the Step Functions execution name).")
def stage_command(command: str, run_id: str) -> None:
    """Run one stage of a run (what each ECS task and the local runner run)."""
    click.echo(STAGE_FUNCTIONS[command](load_settings(), run_id))


@pipeline.command("render")
@click.option("--template", is_flag=True, help="The Terraform template (placeholders) instead of example values.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write here.")
def render_command(template: bool, output: Path | None) -> None:
    """Print the Amazon States Language document rendered from the pipeline definition."""
    text = asl_template() if template else asl_json(EXAMPLE_TARGETS)
    if output:
        output.write_text(text)
    else:
        click.echo(text, nl=False)


@pipeline.command("start")
@STATE_MACHINE_ARN
@click.option("--run-id", default=None, help="Execution name (default: run-<UTC time>-<random>).")
def start_command(state_machine_arn: str, run_id: str | None) -> None:
    """Start a run on AWS Step Functions (states:StartExecution); prints the execution ARN."""
    sfn = aws.client("stepfunctions", load_settings())
    answer = sfn.start_execution(stateMachineArn=state_machine_arn, name=run_id or new_run_id(), input="{}")
    click.echo(answer["executionArn"])
    click.echo(f"console: {console_url(answer['executionArn'])}")


@pipeline.command("status")
@click.argument("execution_arn")
def status_command(execution_arn: str) -> None:
    """A run's status on AWS Step Functions (states:DescribeExecution)."""
    answer = aws.client("stepfunctions", load_settings()).describe_execution(executionArn=execution_arn)
    stopped = answer.get("stopDate")
    click.echo(
        f"{answer['name']}: {answer['status']} (started {answer['startDate']:%Y-%m-%d %H:%M:%S %Z}"
        + (f", stopped {stopped:%Y-%m-%d %H:%M:%S %Z})" if stopped else ")")
    )
    for key in ("error", "cause", "output"):
        if answer.get(key):
            click.echo(f"{key}: {answer[key]}")
    click.echo(f"console: {console_url(execution_arn)}")


def console_url(execution_arn: str) -> str:
    region = execution_arn.split(":")[3]
    return f"https://{region}.console.aws.amazon.com/states/home?region={region}#/v2/executions/details/{execution_arn}"
