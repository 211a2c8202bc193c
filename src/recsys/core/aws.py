"""The one factory for AWS clients: it honours ``AWS_ENDPOINT_URL`` and the region from settings.

On AWS the endpoint is empty and boto3 resolves the real service; locally the stack's emulator
URL is used. No other module builds endpoints or branches on where it runs.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from recsys.core.config import Settings

_RETRIES = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5, read_timeout=60)


@lru_cache(maxsize=64)
def _client(service: str, endpoint_url: str | None, region: str, key_id: str, secret: str) -> Any:
    credentials = {"aws_access_key_id": key_id, "aws_secret_access_key": secret} if key_id else {}
    # the service name is the caller's: any client, typed by the caller's use rather than here; one
    # expression from boto3 to the client, which tests/unit/test_aws_access.py's scan follows
    return boto3.session.Session(region_name=region, **credentials).client(  # type: ignore[call-overload,arg-type]
        service, endpoint_url=endpoint_url, config=_RETRIES
    )


def client(service: str, settings: Settings) -> Any:
    """A boto3 client for ``service`` configured from settings (cached per endpoint, region, key)."""
    return _client(
        service, settings.endpoint_url, settings.region, settings.aws_access_key_id, settings.aws_secret_access_key
    )


# S3's answers for "not there": GetObject says NoSuchKey/NoSuchBucket, HeadObject a bare 404/NotFound
MISSING_CODES = ("NoSuchKey", "NoSuchBucket", "NotFound", "404")


def is_missing(exc: ClientError) -> bool:
    """True when an S3 error means the key (or its bucket) does not exist."""
    return exc.response.get("Error", {}).get("Code") in MISSING_CODES


def read_object(settings: Settings, bucket: str, key: str) -> bytes | None:
    """The object's bytes, or None when the key (or its bucket) does not exist."""
    try:
        body: bytes = client("s3", settings).get_object(Bucket=bucket, Key=key)["Body"].read()
        return body
    except ClientError as exc:
        if is_missing(exc):
            return None
        raise
