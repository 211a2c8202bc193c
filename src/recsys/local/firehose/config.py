"""The delivery stream's configuration, read through the Firehose API (``describe_delivery_stream``)."""
from __future__ import annotations

from dataclasses import dataclass

from recsys.core import aws
from recsys.core.config import Settings
from recsys.core.errors import PipelineError


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
        processors = [p for p in destination.get("ProcessingConfiguration", {}).get("Processors", [])
                      if p.get("Type") == "Lambda"]
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


def describe_delivery(settings: Settings) -> DeliveryConfig:
    """The configured delivery stream's configuration, through the Firehose API."""
    firehose = aws.client("firehose", settings)
    try:
        description = firehose.describe_delivery_stream(DeliveryStreamName=settings.firehose_stream)
    except firehose.exceptions.ResourceNotFoundException as exc:
        raise PipelineError(f"delivery stream {settings.firehose_stream!r} does not exist: "
                            "start the stack (`recsys stack up`) or create it with terraform") from exc
    return DeliveryConfig.from_description(description["DeliveryStreamDescription"])
