"""The AWS resources the pipeline needs, defined once.

``recsys stack up`` (moto) and LocalStack's init hook (``localstack/init/ready.d``) both call
``ensure_resources``; Terraform declares the same names (checked by ``tests/test_terraform.py``).
Every step is idempotent: existing resources are left as they are.

Run as ``python -m recsys.resources`` it creates them against ``AWS_ENDPOINT_URL``; it needs only
boto3, so it runs inside the LocalStack container with the source tree mounted.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from recsys.config import Settings, load_settings

log = logging.getLogger(__name__)

KINESIS_SHARDS = 2
# Firehose's own default layout, spelled out: Ok records under YYYY/MM/DD/HH/, failures under
# processing-failed/YYYY/MM/DD/HH/ (the error-output-type expression expands to "processing-failed").
S3_PREFIX = "!{timestamp:yyyy/MM/dd/HH}/"
S3_ERROR_PREFIX = "!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd/HH}/"
S3_BUFFER_MB = 1  # S3 destination: 1-128 MB
LAMBDA_BUFFER_MB = "1"  # Lambda processor: 0.2-3 MB
LAMBDA_RETRIES = "3"
FIREHOSE_ROLE = "recsys-firehose-delivery"
LAMBDA_ROLE = "recsys-lambda"


@dataclass(frozen=True)
class ResourceNames:
    """Names (and ARNs) of everything ``ensure_resources`` creates."""

    region: str
    account: str
    buckets: dict[str, str]
    stream: str
    delivery_stream: str
    function: str

    @property
    def stream_arn(self) -> str:
        return f"arn:aws:kinesis:{self.region}:{self.account}:stream/{self.stream}"

    @property
    def function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account}:function:{self.function}"

    @property
    def role_arn(self) -> str:
        return f"arn:aws:iam::{self.account}:role/{FIREHOSE_ROLE}"


def resource_names(settings: Settings, account: str) -> ResourceNames:
    return ResourceNames(
        region=settings.region,
        account=account,
        buckets=settings.buckets,
        stream=settings.recsys_kinesis_stream,
        delivery_stream=settings.recsys_firehose_stream,
        function=settings.recsys_lambda_function,
    )


def delivery_stream_definition(names: ResourceNames, buffer_seconds: int) -> dict:
    """Arguments for ``firehose.create_delivery_stream``: Kinesis source, extended S3, Lambda processor."""
    if not 0 <= buffer_seconds <= 900:
        raise ValueError(f"RECSYS_BUFFER_SECONDS must be 0..900, got {buffer_seconds}")
    return {
        "DeliveryStreamName": names.delivery_stream,
        "DeliveryStreamType": "KinesisStreamAsSource",
        "KinesisStreamSourceConfiguration": {"KinesisStreamARN": names.stream_arn, "RoleARN": names.role_arn},
        "ExtendedS3DestinationConfiguration": {
            "RoleARN": names.role_arn,
            "BucketARN": f"arn:aws:s3:::{names.buckets['recommendations']}",
            "Prefix": S3_PREFIX,
            "ErrorOutputPrefix": S3_ERROR_PREFIX,
            "BufferingHints": {"SizeInMBs": S3_BUFFER_MB, "IntervalInSeconds": buffer_seconds},
            "CompressionFormat": "UNCOMPRESSED",
            "ProcessingConfiguration": {
                "Enabled": True,
                "Processors": [
                    {
                        "Type": "Lambda",
                        "Parameters": [
                            {"ParameterName": "LambdaArn", "ParameterValue": names.function_arn},
                            {"ParameterName": "NumberOfRetries", "ParameterValue": LAMBDA_RETRIES},
                            {"ParameterName": "BufferSizeInMBs", "ParameterValue": LAMBDA_BUFFER_MB},
                            {"ParameterName": "BufferIntervalInSeconds", "ParameterValue": str(buffer_seconds)},
                        ],
                    }
                ],
            },
        },
    }


def ensure_bucket(settings: Settings, name: str) -> None:
    """Create the bucket ``name`` unless it exists."""
    from recsys import aws

    s3 = aws.client("s3", settings)
    try:
        s3.head_bucket(Bucket=name)
        return
    except s3.exceptions.ClientError:
        pass
    args = {"Bucket": name}
    if settings.region != "us-east-1":
        args["CreateBucketConfiguration"] = {"LocationConstraint": settings.region}
    s3.create_bucket(**args)
    log.info("created bucket %s", name)


def _ensure_stream(kinesis, name: str) -> None:
    try:
        kinesis.create_stream(StreamName=name, ShardCount=KINESIS_SHARDS)
        log.info("created Kinesis stream %s", name)
    except kinesis.exceptions.ResourceInUseException:
        pass
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})


def _ensure_delivery_stream(firehose, definition: dict) -> None:
    try:
        firehose.create_delivery_stream(**definition)
        log.info("created Firehose delivery stream %s", definition["DeliveryStreamName"])
    except firehose.exceptions.ResourceInUseException:
        pass


def _ensure_lambda_role(iam) -> str:
    """The execution role an emulator wants to exist (Terraform defines the real, least-privilege one)."""
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"Service": "lambda.amazonaws.com"}}]}
    try:
        return iam.create_role(RoleName=LAMBDA_ROLE, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    except iam.exceptions.EntityAlreadyExistsException:
        return iam.get_role(RoleName=LAMBDA_ROLE)["Role"]["Arn"]


def _ensure_lambda(lambda_client, iam, names: ResourceNames, zip_bytes: bytes, environment: dict[str, str]) -> None:
    """Create the transformation Lambda in an emulator that runs functions (LocalStack)."""
    try:
        lambda_client.get_function(FunctionName=names.function)
        return
    except lambda_client.exceptions.ResourceNotFoundException:
        pass
    role_arn = _ensure_lambda_role(iam)
    lambda_client.create_function(
        FunctionName=names.function,
        Runtime="python3.11",
        Handler="inference.handler.lambda_handler",
        Role=role_arn,
        Code={"ZipFile": zip_bytes},
        Timeout=60,
        MemorySize=1024,
        Environment={"Variables": environment},
    )
    log.info("created Lambda %s", names.function)


def ensure_resources(settings: Settings | None = None, *, lambda_zip: bytes | None = None,
                     lambda_environment: dict[str, str] | None = None) -> ResourceNames:
    """Create buckets, the Kinesis stream and the Firehose delivery stream (and the Lambda when a zip is given)."""
    from recsys import aws

    s = settings or load_settings()
    account = aws.client("sts", s).get_caller_identity()["Account"]
    names = resource_names(s, account)
    for bucket in names.buckets.values():
        ensure_bucket(s, bucket)
    _ensure_stream(aws.client("kinesis", s), names.stream)
    _ensure_delivery_stream(aws.client("firehose", s), delivery_stream_definition(names, int(s.recsys_buffer_seconds)))
    if lambda_zip is not None:
        _ensure_lambda(aws.client("lambda", s), aws.client("iam", s), names, lambda_zip, lambda_environment or {})
    return names


def main() -> None:
    import os
    import sys

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    zip_path = os.environ.get("RECSYS_LAMBDA_ZIP")
    zip_bytes = open(zip_path, "rb").read() if zip_path and os.path.exists(zip_path) else None
    lambda_env = {k: v for k, v in os.environ.items() if k.startswith(("RECSYS_", "PG"))}
    for attempt in range(30):
        try:
            names = ensure_resources(lambda_zip=zip_bytes, lambda_environment=lambda_env)
            print(f"resources ready: buckets={sorted(names.buckets.values())} stream={names.stream} "
                  f"delivery={names.delivery_stream}")
            return
        except Exception as exc:  # the emulator may still be starting
            print(f"waiting for the AWS endpoint ({exc})", file=sys.stderr)
            time.sleep(1)
    sys.exit("resources: AWS endpoint never became ready")


if __name__ == "__main__":
    main()
