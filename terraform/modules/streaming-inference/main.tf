# Phase 3: Kinesis stream -> Firehose (Lambda transformation) -> S3 recommendations bucket.
# Names, prefixes, buffering and retries match recsys.resources (the local stack).

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  ec2_arn    = "arn:${data.aws_partition.current.partition}:ec2:${data.aws_region.current.name}:${local.account_id}"
  # the RDS CA bundle `recsys lambda-zip` puts at the zip's root (recsys.contracts.RDS_CA_BUNDLE)
  db_ca_bundle         = "/var/task/rds-ca-bundle.pem"
  stream_name          = "${var.project}-activity-events"
  delivery_stream_name = "${var.project}-recommendations-delivery"
  function_name        = "${var.project}-model-inference"

  s3_prefix           = "!{timestamp:yyyy/MM/dd/HH}/"
  s3_error_prefix     = "!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd/HH}/"
  s3_buffer_mb        = 1
  lambda_buffer_mb    = "1"
  lambda_retries      = "3"
  firehose_log_stream = "DestinationDelivery"
}

# ---------------------------------------------------------------------------------------------
# Kinesis
# ---------------------------------------------------------------------------------------------
resource "aws_kinesis_stream" "events" {
  name             = local.stream_name
  shard_count      = var.stream_mode == "PROVISIONED" ? var.shard_count : null
  retention_period = var.retention_hours
  encryption_type  = "KMS"
  kms_key_id       = var.kms_key_arn

  stream_mode_details {
    stream_mode = var.stream_mode
  }
}

# ---------------------------------------------------------------------------------------------
# Lambda
# ---------------------------------------------------------------------------------------------
resource "aws_security_group" "lambda" {
  name        = local.function_name
  description = "Lambda ${local.function_name}: PostgreSQL to the vector DB, HTTPS to AWS APIs"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_egress_rule" "lambda_db" {
  security_group_id            = aws_security_group.lambda.id
  description                  = "PostgreSQL to the vector DB"
  ip_protocol                  = "tcp"
  from_port                    = var.db_port
  to_port                      = var.db_port
  referenced_security_group_id = var.db_security_group_id
}

resource "aws_vpc_security_group_egress_rule" "lambda_https" {
  security_group_id = aws_security_group.lambda.id
  description       = "HTTPS to S3 and Secrets Manager (NAT or interface endpoints)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_cloudwatch_log_group" "lambda" {
  name              = "/aws/lambda/${local.function_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

resource "aws_lambda_function" "inference" {
  function_name                  = local.function_name
  description                    = "Firehose transformation: activity event -> recommendations (pgvector k-NN)"
  role                           = aws_iam_role.lambda.arn
  filename                       = var.lambda_zip_path
  source_code_hash               = filebase64sha256(var.lambda_zip_path)
  runtime                        = var.runtime
  handler                        = "recsys.serving.handler.lambda_handler"
  memory_size                    = var.lambda_memory_mb
  timeout                        = var.lambda_timeout_seconds
  reserved_concurrent_executions = var.reserved_concurrency
  kms_key_arn                    = var.kms_key_arn

  vpc_config {
    subnet_ids         = var.subnet_ids
    security_group_ids = [aws_security_group.lambda.id]
  }

  tracing_config {
    mode = "Active"
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.lambda.name
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
      POWERTOOLS_SERVICE_NAME    = local.function_name
      LOG_LEVEL                  = var.log_level
    }
  }

  depends_on = [aws_iam_role_policy.lambda]
}

# ---------------------------------------------------------------------------------------------
# Firehose
# ---------------------------------------------------------------------------------------------
resource "aws_cloudwatch_log_group" "firehose" {
  name              = "/aws/kinesisfirehose/${local.delivery_stream_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

resource "aws_cloudwatch_log_stream" "firehose" {
  name           = local.firehose_log_stream
  log_group_name = aws_cloudwatch_log_group.firehose.name
}

resource "aws_kinesis_firehose_delivery_stream" "recommendations" {
  name        = local.delivery_stream_name
  destination = "extended_s3"

  kinesis_source_configuration {
    kinesis_stream_arn = aws_kinesis_stream.events.arn
    role_arn           = aws_iam_role.firehose.arn
  }

  extended_s3_configuration {
    role_arn            = aws_iam_role.firehose.arn
    bucket_arn          = var.recommendations_bucket_arn
    prefix              = local.s3_prefix
    error_output_prefix = local.s3_error_prefix
    buffering_size      = local.s3_buffer_mb
    buffering_interval  = var.buffer_seconds
    compression_format  = "UNCOMPRESSED"
    kms_key_arn         = var.kms_key_arn

    cloudwatch_logging_options {
      enabled         = true
      log_group_name  = aws_cloudwatch_log_group.firehose.name
      log_stream_name = aws_cloudwatch_log_stream.firehose.name
    }

    processing_configuration {
      enabled = true

      processors {
        type = "Lambda"

        parameters {
          parameter_name  = "LambdaArn"
          parameter_value = "${aws_lambda_function.inference.arn}:$LATEST"
        }
        parameters {
          parameter_name  = "NumberOfRetries"
          parameter_value = local.lambda_retries
        }
        parameters {
          parameter_name  = "BufferSizeInMBs"
          parameter_value = local.lambda_buffer_mb
        }
        parameters {
          parameter_name  = "BufferIntervalInSeconds"
          parameter_value = tostring(var.buffer_seconds)
        }
      }
    }
  }

  depends_on = [aws_iam_role_policy.firehose]
}
