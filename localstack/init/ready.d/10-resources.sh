#!/bin/bash
# LocalStack ready hook: create the pipeline's buckets, Kinesis stream, Firehose delivery stream and,
# when the deployment zip is mounted, the transformation Lambda, with the same code `recsys stack up`
# uses (recsys.resources needs only boto3, which LocalStack's image ships).
#
# docker-compose.yml mounts the repository at /opt/recsys; build the zip first (`make lambda-zip`).
set -euo pipefail

RECSYS_ROOT="${RECSYS_ROOT:-/opt/recsys}"
export PYTHONPATH="${RECSYS_ROOT}/src${PYTHONPATH:+:${PYTHONPATH}}"
export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-http://localhost:4566}"
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
export RECSYS_LAMBDA_ZIP="${RECSYS_LAMBDA_ZIP:-${RECSYS_ROOT}/build/lambda.zip}"
# The Lambda runs in its own container: it reaches LocalStack and PostgreSQL by their compose names.
export PGHOST="${PGHOST:-postgres}"

if [ ! -f "${RECSYS_LAMBDA_ZIP}" ]; then
  echo "10-resources: ${RECSYS_LAMBDA_ZIP} not found; creating resources without the Lambda (run make lambda-zip)" >&2
fi
exec python3 -m recsys.local.aws_resources
