# Phase 4: the online recommendations API. The same FastAPI app `recsys api` serves locally
# (src/recsys/serving/api.py), as a Lambda in the VPC next to the vector DB, behind a Function URL
# that only accepts SigV4-signed requests (AWS_IAM): never open to the internet without auth.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  ec2_arn    = "arn:${data.aws_partition.current.partition}:ec2:${data.aws_region.current.name}:${local.account_id}"
  # the RDS CA bundle `recsys lambda-zip` puts at the zip's root (recsys.contracts.RDS_CA_BUNDLE)
  db_ca_bundle  = "/var/task/rds-ca-bundle.pem"
  function_name = "${var.project}-api"
}

resource "aws_security_group" "api" {
  name        = local.function_name
  description = "Lambda ${local.function_name}: PostgreSQL to the vector DB, HTTPS to AWS APIs"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_egress_rule" "api_db" {
  security_group_id            = aws_security_group.api.id
  description                  = "PostgreSQL to the vector DB"
  ip_protocol                  = "tcp"
  from_port                    = var.db_port
  to_port                      = var.db_port
  referenced_security_group_id = var.db_security_group_id
}

resource "aws_vpc_security_group_egress_rule" "api_https" {
  security_group_id = aws_security_group.api.id
  description       = "HTTPS to S3 and Secrets Manager (NAT or interface endpoints)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_cloudwatch_log_group" "api" {
  name              = "/aws/lambda/${local.function_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

resource "aws_lambda_function" "api" {
  function_name                  = local.function_name
  description                    = "Recommendations API (FastAPI via Mangum): pgvector k-NN on request"
  role                           = aws_iam_role.api.arn
  filename                       = var.zip_path
  source_code_hash               = filebase64sha256(var.zip_path)
  runtime                        = var.runtime
  handler                        = "recsys.serving.api_handler.lambda_handler"
  memory_size                    = var.memory_mb
  timeout                        = var.timeout_seconds
  reserved_concurrent_executions = var.reserved_concurrency
  kms_key_arn                    = var.kms_key_arn

  vpc_config {
    subnet_ids         = var.subnet_ids
    security_group_ids = [aws_security_group.api.id]
  }

  tracing_config {
    mode = "Active"
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.api.name
  }

  environment {
    variables = {
      RECSYS_ARTIFACTS_BUCKET    = var.artifacts_bucket_name
      PGHOST                     = var.db_address
      PGPORT                     = tostring(var.db_port)
      PGDATABASE                 = var.db_name
      PGUSER                     = var.db_username
      RECSYS_DB_SECRET_ARN       = var.db_secret_arn
      PGSSLMODE                  = var.db_sslmode
      PGSSLROOTCERT              = local.db_ca_bundle
      RECSYS_POINTER_TTL_SECONDS = tostring(var.pointer_ttl_seconds)
      RECSYS_TOP_K               = tostring(var.top_k)
      RECSYS_API_POOL_SIZE       = "1" # Lambda sends one request at a time to an execution environment
      POWERTOOLS_SERVICE_NAME    = local.function_name
      LOG_LEVEL                  = var.log_level
    }
  }

  depends_on = [aws_iam_role_policy.api]
}

# SigV4-signed HTTPS requests only; callers need the invoke policy below.
resource "aws_lambda_function_url" "api" {
  function_name      = aws_lambda_function.api.function_name
  authorization_type = "AWS_IAM"
}
