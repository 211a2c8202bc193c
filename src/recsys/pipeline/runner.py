"""The local runner: walks ``recsys.pipeline.definition`` as the state machine does, against the local stack.

Each stage runs as the command its ECS task runs (``recsys pipeline stage <command> --run-id <id>``),
in a subprocess killed at the stage's timeout; errors are named as Step Functions names them
(``States.TaskFailed``, ``States.Timeout``), retried by the stage's retriers (each counting its own
attempts, waits growing by the backoff rate) and then sent where the stage's catch sends them. After the
gate the run record's decision chooses between going on and ending "not promoted". Notifications
(SNS on AWS) are printed and kept in the run record.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from recsys.core.config import Settings
from recsys.pipeline.artifacts import utc_now_iso
from recsys.pipeline.definition import (
    ALL_ERRORS,
    NOTIFY_FAILURE,
    PIPELINE,
    STAGES,
    SUCCEEDED,
    TASK_FAILED,
    TIMEOUT,
    Stage,
    container_command,
)
from recsys.pipeline.stages import read_run, update_run

SUCCEEDED_STATUS, NOT_PROMOTED_STATUS, FAILED_STATUS = "succeeded", "not promoted", "failed"


class StageFailed(Exception):
    """A stage's error, named as Step Functions names it."""

    def __init__(self, error: str, cause: str):
        super().__init__(f"{error}: {cause}")
        self.error, self.cause = error, cause
        self.attempts = 1  # set by attempt_stage when retries gave up


@dataclass
class Step:
    state: str
    attempts: int
    seconds: float
    detail: str  # the stage's result line, or its error
    ok: bool


@dataclass
class RunOutcome:
    run_id: str
    status: str = FAILED_STATUS
    steps: list[Step] = field(default_factory=list)
    notifications: list[str] = field(default_factory=list)

    @property
    def path(self) -> list[str]:
        """The states run, in order."""
        return [step.state for step in self.steps]


Executor = Callable[[Stage, str], str]  # runs one attempt of a stage; returns its line or raises StageFailed


def subprocess_executor(
    settings: Settings,
    log_dir: Path,
    extra_env: dict[str, str] | None = None,
    task_env: dict[str, dict[str, str]] | None = None,
) -> Executor:
    """Run a stage as ``recsys pipeline stage ...`` in a subprocess (as its container would), output to a log;
    ``task_env`` is what each task definition adds to its container (the database role it connects as)."""
    recsys = str(Path(sys.executable).with_name("recsys"))
    env = {**os.environ, **settings.as_env(), **(extra_env or {})}
    log_dir.mkdir(parents=True, exist_ok=True)

    def execute(stage: Stage, run_id: str) -> str:
        log_path = log_dir / f"{run_id}-{stage.command}.log"
        stage_env = env | (task_env or {}).get(stage.task, {})
        with open(log_path, "ab") as log:
            try:
                proc = subprocess.run(
                    [recsys, *container_command(stage, run_id)],
                    env=stage_env,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    timeout=stage.timeout_seconds,
                    check=False,  # a failed stage is reported below with its output
                )
            except subprocess.TimeoutExpired:
                raise StageFailed(TIMEOUT, f"{stage.state} ran longer than {stage.timeout_seconds} s") from None
        out = proc.stdout.decode(errors="replace").strip()
        if proc.returncode:
            lines = log_path.read_text(errors="replace").strip().splitlines()
            raise StageFailed(
                TASK_FAILED,
                f"{stage.state} exited {proc.returncode}: {lines[-1] if lines else 'no output'} (log: {log_path})",
            )
        return " ".join(line.strip() for line in out.splitlines())  # the stage's result, on one line

    return execute


def _retrier(stage: Stage, error: str, used: list[int]) -> int | None:
    """The index of the first retrier matching ``error`` (Step Functions picks the first match)."""
    for index, retry in enumerate(stage.retries):
        if error in retry.errors or ALL_ERRORS in retry.errors:
            return index if used[index] < retry.max_attempts else None
    return None


def attempt_stage(stage: Stage, run_id: str, execute: Executor, sleep: Callable[[float], None]) -> tuple[str, int]:
    """Run a stage with its retriers; (its line, attempts). Raises the last StageFailed when retries give up."""
    used = [0] * len(stage.retries)
    attempts = 0
    while True:
        attempts += 1
        try:
            return execute(stage, run_id), attempts
        except StageFailed as failure:
            index = _retrier(stage, failure.error, used)
            if index is None:
                failure.attempts = attempts
                raise
            used[index] += 1
            sleep(stage.retries[index].wait_seconds(used[index]))


def run_pipeline(
    settings: Settings,
    run_id: str,
    execute: Executor,
    *,
    sleep: Callable[[float], None] = time.sleep,
    echo: Callable[[str], None] = print,
) -> RunOutcome:
    """Walk the definition from its first stage to an end state."""
    outcome = RunOutcome(run_id)
    update_run(settings, run_id, started_at=utc_now_iso(), runner="local")
    failure: StageFailed | None = None
    state = PIPELINE[0].state
    while state not in (SUCCEEDED, NOTIFY_FAILURE):
        stage = STAGES[state]
        echo(f"==> {stage.state}: {stage.description}")
        started = time.perf_counter()
        try:
            detail, attempts = attempt_stage(stage, run_id, execute, sleep)
        except StageFailed as exc:
            failure = exc
            outcome.steps.append(Step(stage.state, exc.attempts, time.perf_counter() - started, str(exc), False))
            echo(f"    failed: {exc}")
            state = stage.on_error
            continue
        outcome.steps.append(Step(stage.state, attempts, time.perf_counter() - started, detail, True))
        echo(f"    {detail} ({time.perf_counter() - started:.1f} s)")
        if stage.gate:
            decision = read_run(settings, run_id).get("gate") or {}
            if not decision.get("promote"):
                return _finish(settings, outcome, NOT_PROMOTED_STATUS, decision.get("summary", "not promoted"), echo)
        state = stage.next
    if state == SUCCEEDED:
        return _finish(settings, outcome, SUCCEEDED_STATUS, None, echo)
    assert failure is not None, "only a failed stage leads to the failure notification"
    return _finish(settings, outcome, FAILED_STATUS, f"failed: {failure.error} {failure.cause}", echo)


def _finish(
    settings: Settings, outcome: RunOutcome, status: str, notification: str | None, echo: Callable[[str], None]
) -> RunOutcome:
    outcome.status = status
    if notification:
        message = f"recsys pipeline run {outcome.run_id}: {notification}"
        outcome.notifications.append(message)
        echo(f"notification: {message}")
    update_run(
        settings,
        outcome.run_id,
        status=status,
        finished_at=utc_now_iso(),
        notifications=outcome.notifications,
        path=outcome.path,
    )
    return outcome
