"""Local Firehose delivery: Kinesis -> transformation Lambda -> S3, per the delivery stream's configuration."""
