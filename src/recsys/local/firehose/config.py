"""The delivery stream's configuration, read through the Firehose API (``describe_delivery_stream``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from botocore.exceptions import EndpointConnectionError

from recsys.core import aws
from recsys.core.config import Settings
from recsys.core.errors import PipelineError

log = logging.getLogger(__name__)
MAX_RETRY_SECONDS = 10.0


@dataclass(frozen=True)
class DeliveryConfig:
    """The parts of ``describe_delivery_stream`` that delivery obeys."""

    name: str
    arn: str
    version_id: str
    source_stream_arn: str
    bucket: str
    prefix: str
    error_prefix: str
    s3_buffer_bytes: int
    s3_buffer_seconds: float
    lambda_arn: str
    lambda_buffer_bytes: int
    lambda_buffer_seconds: float
    retries: int

    @property
    def source_stream_name(self) -> str:
        return self.source_stream_arn.rsplit("/", 1)[-1]

    @property
    def region(self) -> str:
        return self.arn.split(":")[3]

    @classmethod
    def from_description(cls, description: dict) -> DeliveryConfig:
        """Parse ``describe_delivery_stream()["DeliveryStreamDescription"]``."""
        name = description["DeliveryStreamName"]
        source = (description.get("Source") or {}).get("KinesisStreamSourceDescription") or {}
        if not source.get("KinesisStreamARN"):
            raise PipelineError(f"delivery stream {name} has no Kinesis stream source")
        destination = description["Destinations"][0].get("ExtendedS3DestinationDescription")
        if destination is None:
            raise PipelineError(f"delivery stream {name} has no extended S3 destination")
        processors = [
            p for p in destination.get("ProcessingConfiguration", {}).get("Processors", []) if p.get("Type") == "Lambda"
        ]
        if not destination.get("ProcessingConfiguration", {}).get("Enabled") or not processors:
            raise PipelineError(f"delivery stream {name} has no enabled Lambda processor")
        params = {p["ParameterName"]: p["ParameterValue"] for p in processors[0].get("Parameters", [])}
        hints = destination.get("BufferingHints", {})
        return cls(
            name=name,
            arn=description["DeliveryStreamARN"],
            version_id=str(description.get("VersionId", "1")),
            source_stream_arn=source["KinesisStreamARN"],
            bucket=destination["BucketARN"].split(":::", 1)[-1],
            prefix=destination.get("Prefix", ""),
            error_prefix=destination.get("ErrorOutputPrefix", ""),
            s3_buffer_bytes=int(float(hints.get("SizeInMBs", 5)) * 1024 * 1024),
            s3_buffer_seconds=float(hints.get("IntervalInSeconds", 300)),
            lambda_arn=params["LambdaArn"],
            lambda_buffer_bytes=int(float(params.get("BufferSizeInMBs", 1)) * 1024 * 1024),
            lambda_buffer_seconds=float(params.get("BufferIntervalInSeconds", 60)),
            retries=int(params.get("NumberOfRetries", 3)),
        )


def describe_delivery(
    settings: Settings, *, wait_seconds: float = 0.0, sleep: Callable[[float], None] = time.sleep
) -> DeliveryConfig:
    """The configured delivery stream's configuration, through the Firehose API.

    While the stream does not exist yet (an emulator's init hook still creating it) or the endpoint
    does not answer, retry with backoff for up to ``wait_seconds``, logging each wait.
    """
    firehose = aws.client("firehose", settings)
    deadline = time.monotonic() + wait_seconds
    delay = 1.0
    while True:
        try:
            description = firehose.describe_delivery_stream(DeliveryStreamName=settings.firehose_stream)
            return DeliveryConfig.from_description(description["DeliveryStreamDescription"])
        except (firehose.exceptions.ResourceNotFoundException, EndpointConnectionError) as exc:
            missing = isinstance(exc, firehose.exceptions.ResourceNotFoundException)
            problem = (
                f"delivery stream {settings.firehose_stream!r} does not exist"
                if missing
                else f"the Firehose endpoint does not answer ({exc})"
            )
            if time.monotonic() + delay > deadline:
                waited = f" after waiting {wait_seconds:g} s" if wait_seconds else ""
                raise PipelineError(
                    f"{problem}{waited}: start the stack (`recsys stack up`) or create it with terraform"
                ) from exc
            log.warning("%s yet; retrying in %.0f s", problem, delay)
            sleep(delay)
            delay = min(delay * 2, MAX_RETRY_SECONDS)
