"""What stands in for AWS on a laptop: the embedded stack (moto, PostgreSQL + pgvector), the
resources an emulator needs, the Firehose delivery process and the Lambda runtime."""
