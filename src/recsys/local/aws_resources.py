"""The AWS resources an emulator needs, defined once: buckets, the Kinesis stream, the Firehose
delivery stream (Kinesis source, extended S3, Lambda processor) and, where the emulator runs
functions, the Lambda.

``recsys stack up`` and LocalStack's init hook (``localstack/init/ready.d``, which runs this module)
both call ``ensure_resources``; Terraform declares the same names and settings for AWS (checked by
the Terraform tests). Every step is idempotent: existing resources are left as they are. It needs
only boto3 and the standard library, so it runs inside the LocalStack container too.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass
from typing import Any

from recsys import contracts
from recsys.core import aws
from recsys.core.config import Settings, load_settings

log = logging.getLogger(__name__)

KINESIS_SHARDS = 2
# Firehose's own default layout, spelled out: Ok records under YYYY/MM/DD/HH/, failures under
# processing-failed/YYYY/MM/DD/HH/ (the error-output-type expression expands to PROCESSING_FAILED).
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
        buckets={
            "datalake": settings.datalake_bucket,
            "artifacts": settings.artifacts_bucket,
            "recommendations": settings.recommendations_bucket,
            "scripts": settings.scripts_bucket,
        },
        stream=settings.kinesis_stream,
        delivery_stream=settings.firehose_stream,
        function=settings.lambda_function,
    )


def lambda_environment(settings: Settings) -> dict[str, str]:
    """The function's environment: the settings it reads (``contracts.LAMBDA_ENVIRONMENT``) that are set."""
    return {name: value for name, value in settings.as_env().items() if name in contracts.LAMBDA_ENVIRONMENT and value}


def delivery_stream_definition(names: ResourceNames, buffer_seconds: int) -> dict:
    """Arguments for ``firehose.create_delivery_stream``: Kinesis source, extended S3, Lambda processor."""
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
    s3 = aws.client("s3", settings)
    try:
        s3.head_bucket(Bucket=name)
        return
    except s3.exceptions.ClientError:
        pass
    args: dict[str, Any] = {"Bucket": name}
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


def buffering(destination: dict) -> dict[str, float]:
    """The buffering hints of an extended S3 destination (its create configuration or its description)."""
    hints = destination.get("BufferingHints", {})
    processors = destination.get("ProcessingConfiguration", {}).get("Processors", [])
    params = {
        p["ParameterName"]: p["ParameterValue"] for p in (processors[0].get("Parameters", []) if processors else [])
    }
    return {
        "S3 interval s": float(hints.get("IntervalInSeconds", 300)),
        "S3 size MB": float(hints.get("SizeInMBs", 5)),
        "Lambda interval s": float(params.get("BufferIntervalInSeconds", 60)),
        "Lambda size MB": float(params.get("BufferSizeInMBs", 1)),
    }


def _ensure_delivery_stream(firehose, definition: dict) -> None:
    """Create the delivery stream, or bring an existing one's buffering in line with the definition
    (so a changed RECSYS_BUFFER_SECONDS takes effect instead of being silently ignored)."""
    name = definition["DeliveryStreamName"]
    try:
        firehose.create_delivery_stream(**definition)
        log.info("created Firehose delivery stream %s", name)
        return
    except firehose.exceptions.ResourceInUseException:
        pass
    description = firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
    destination = description["Destinations"][0]
    wanted = definition["ExtendedS3DestinationConfiguration"]
    current = buffering(destination.get("ExtendedS3DestinationDescription", {}))
    if current == buffering(wanted):
        return
    firehose.update_destination(
        DeliveryStreamName=name,
        CurrentDeliveryStreamVersionId=description["VersionId"],
        DestinationId=destination["DestinationId"],
        ExtendedS3DestinationUpdate={
            "BufferingHints": wanted["BufferingHints"],
            "ProcessingConfiguration": wanted["ProcessingConfiguration"],
        },
    )
    changes = ", ".join(f"{k} {current[k]:g} -> {v:g}" for k, v in buffering(wanted).items() if current[k] != v)
    log.info(
        "updated Firehose delivery stream %s buffering (%s); a running `recsys firehose` applies it when restarted",
        name,
        changes,
    )


def _ensure_lambda_role(iam) -> str:
    """The execution role an emulator wants to exist (Terraform defines the real, least-privilege one)."""
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": "lambda.amazonaws.com"}}
        ],
    }
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
        Runtime=contracts.LAMBDA_RUNTIME,
        Handler=contracts.LAMBDA_HANDLER,
        Role=role_arn,
        Code={"ZipFile": zip_bytes},
        Timeout=60,
        MemorySize=1024,
        Environment={"Variables": environment},
    )
    log.info("created Lambda %s", names.function)


def ensure_resources(settings: Settings, *, lambda_zip: bytes | None = None) -> ResourceNames:
    """Create buckets, the Kinesis stream and the Firehose delivery stream (and the Lambda when a zip is given)."""
    account = aws.client("sts", settings).get_caller_identity()["Account"]
    names = resource_names(settings, account)
    for bucket in names.buckets.values():
        ensure_bucket(settings, bucket)
    _ensure_stream(aws.client("kinesis", settings), names.stream)
    _ensure_delivery_stream(
        aws.client("firehose", settings), delivery_stream_definition(names, settings.buffer_seconds)
    )
    if lambda_zip is not None:
        _ensure_lambda(
            aws.client("lambda", settings), aws.client("iam", settings), names, lambda_zip, lambda_environment(settings)
        )
    return names


def main() -> None:
    """The emulator init hook's entry: create everything against ``AWS_ENDPOINT_URL``, retrying while
    the emulator starts; the Lambda too when ``RECSYS_LAMBDA_ZIP`` exists."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = load_settings()
    zip_bytes = settings.lambda_zip.read_bytes() if settings.lambda_zip.is_file() else None
    for _ in range(30):
        try:
            names = ensure_resources(settings, lambda_zip=zip_bytes)
            print(
                f"resources ready: buckets={sorted(names.buckets.values())} stream={names.stream} "
                f"delivery={names.delivery_stream}"
            )
            return
        except Exception as exc:  # the emulator may still be starting
            print(f"waiting for the AWS endpoint ({exc})", file=sys.stderr)
            time.sleep(1)
    sys.exit("resources: AWS endpoint never became ready")


if __name__ == "__main__":
    main()
