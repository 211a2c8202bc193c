"""AWS Lambda entry point of the recommendations API (``recsys.serving.api_handler.lambda_handler``).

Mangum turns a Lambda Function URL (or API Gateway HTTP API) event into an ASGI request for the
same FastAPI app ``recsys api`` serves with uvicorn. Settings come from the environment, as for
the Firehose Lambda (names in ``recsys.contracts``), plus ``RECSYS_API_POOL_SIZE`` (default 8; 1
is enough on Lambda, which sends one request at a time to an execution environment) and
``RECSYS_API_MAX_BODY_BYTES`` (the body limit ``recsys api`` applies too; a Function URL takes at
most 6 MB, the app reads at most this). The app, its
model cache and its database connections are built once per cold start and reused.
"""

from __future__ import annotations

from typing import Any

import boto3
from mangum import Mangum
from mangum.adapter import DEFAULT_TEXT_MIME_TYPES
from mangum.types import LambdaContext

from recsys import contracts
from recsys.serving.api import PROBLEM_JSON, create_app
from recsys.serving.database import DatabasePool, params_from_environment
from recsys.serving.handler import BOTO_CONFIG, HandlerConfig, ServingRuntime, number_setting


def runtime_from_environment() -> ServingRuntime:
    """The serving runtime the API needs, configured by its environment (a bad value fails the cold start)."""
    size = number_setting(contracts.ENV_API_POOL_SIZE, contracts.DEFAULT_API_POOL_SIZE, int, 1, 64)
    pool = DatabasePool(params_from_environment(lambda: boto3.client("secretsmanager", config=BOTO_CONFIG)), size)
    return ServingRuntime(HandlerConfig.from_environment(), database=pool)


_handler: Mangum | None = None


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Function URL / HTTP API entry point."""
    global _handler
    if _handler is None:
        # problem details are text too: sent as is, not base64
        max_body = number_setting(
            contracts.ENV_API_MAX_BODY_BYTES,
            contracts.DEFAULT_API_MAX_BODY_BYTES,
            int,
            1024,
            contracts.MAX_API_MAX_BODY_BYTES,
        )
        _handler = Mangum(
            create_app(runtime_from_environment(), max_body),
            lifespan="off",
            text_mime_types=[*DEFAULT_TEXT_MIME_TYPES, PROBLEM_JSON],
        )
    return _handler(event, context)
