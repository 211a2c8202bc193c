"""How delivery runs the Lambda: the Lambda Invoke API, or the deployment zip under ``awslambdaric``
(a pool of runtime processes, like Lambda's concurrent execution environments)."""

from __future__ import annotations

import hashlib
import os
import queue
import shutil
import time
import zipfile
from pathlib import Path
from typing import Protocol

from recsys.core import aws
from recsys.core.config import Settings
from recsys.core.errors import PipelineError
from recsys.local.aws_resources import lambda_environment
from recsys.local.firehose.config import DeliveryConfig
from recsys.local.lambda_python import lambda_python
from recsys.local.lambda_runtime import InvocationResult, LocalLambda
from recsys.local.private_files import private_dir

INVOKE_MODES = ("runtime", "api")


class Invoker(Protocol):
    def invoke(self, payload: bytes) -> InvocationResult: ...

    def set_environment(self, environment: dict[str, str]) -> bool:
        """Apply a new function environment; False when the function's environment is not ours to change."""
        ...

    def close(self) -> None: ...


class ApiInvoker:
    """The Lambda ``Invoke`` API (AWS, or an emulator that runs functions); boto3 clients are thread-safe."""

    def __init__(self, settings: Settings, function_arn: str):
        self._client = aws.client("lambda", settings)
        self._arn = function_arn

    def invoke(self, payload: bytes) -> InvocationResult:
        started = time.monotonic()
        response = self._client.invoke(FunctionName=self._arn, InvocationType="RequestResponse", Payload=payload)
        return InvocationResult(response["Payload"].read(), response.get("FunctionError"), time.monotonic() - started)

    def set_environment(self, environment: dict[str, str]) -> bool:
        return False  # the Lambda service owns the function's configuration

    def close(self) -> None:
        pass


class RuntimePool:
    """Copies of one function under ``awslambdaric``; each invoke takes a free copy, waiting while all are busy."""

    def __init__(self, functions: list[LocalLambda]):
        self.functions = functions
        self._free: queue.Queue[LocalLambda] = queue.Queue()
        for function in functions:
            self._free.put(function)

    @property
    def cold_starts(self) -> int:
        return sum(f.cold_starts for f in self.functions)

    def invoke(self, payload: bytes) -> InvocationResult:
        function = self._free.get()
        try:
            return function.invoke(payload)
        finally:
            self._free.put(function)

    def set_environment(self, environment: dict[str, str]) -> bool:
        """Restart every copy with ``environment`` (waits for invocations in flight to finish)."""
        taken = [self._free.get() for _ in self.functions]
        try:
            for function in taken:
                function.set_environment(environment)
        finally:
            for function in taken:
                self._free.put(function)
        return True

    def close(self) -> None:
        for function in self.functions:
            function.close()


def unpack_zip(zip_path: Path, cache_root: Path) -> Path:
    """The zip extracted once per content hash (Lambda's ``/var/task``)."""
    if not zip_path.is_file():
        raise PipelineError(f"Lambda zip {zip_path} not found: build it with `recsys lambda-zip`")
    digest = hashlib.sha256(zip_path.read_bytes()).hexdigest()[:16]
    target = cache_root / digest
    if not (target / ".complete").exists():
        staging = cache_root / f".{digest}.{os.getpid()}"
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(staging)
        (staging / ".complete").touch()
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    return target


def runtime_invoker(
    settings: Settings,
    config: DeliveryConfig,
    *,
    code_dir: Path | None,
    handler: str,
    timeout_seconds: float,
    concurrency: int = 1,
) -> RuntimePool:
    """``concurrency`` copies of the deployment zip (or an unpacked code dir) under ``awslambdaric``."""
    state = settings.state_dir
    python = lambda_python(settings)
    directory = code_dir or unpack_zip(settings.lambda_zip, private_dir(state / "lambda"))
    private_dir(state / "logs")
    return RuntimePool(
        [
            LocalLambda(
                directory,
                handler,
                lambda_environment(settings),
                function_name=config.lambda_arn.rsplit(":", 1)[-1],
                function_arn=config.lambda_arn,
                timeout_seconds=timeout_seconds,
                log_file=state / "logs" / "lambda.log",
                python=python,
            )
            for _ in range(concurrency)
        ]
    )


def build_invoker(
    settings: Settings,
    config: DeliveryConfig,
    *,
    mode: str,
    code_dir: Path | None = None,
    handler: str,
    timeout_seconds: float = 60.0,
    concurrency: int = 1,
) -> Invoker:
    """``mode`` "api": the Lambda Invoke API; "runtime": the zip (or ``code_dir``) under ``awslambdaric``."""
    if mode == "api":
        return ApiInvoker(settings, config.lambda_arn)
    return runtime_invoker(
        settings, config, code_dir=code_dir, handler=handler, timeout_seconds=timeout_seconds, concurrency=concurrency
    )
