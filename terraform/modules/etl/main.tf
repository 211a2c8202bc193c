# Phase 1 (batch): the four buckets, the Glue connection to the existing RDS MySQL source, the
# Glue 5.0 job running glue/etl_job.py and a crawler cataloguing the training set.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

data "aws_subnet" "source" {
  id = var.source_db_subnet_id
}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name

  # Keys match recsys.config.Settings.buckets; names add the account id for global uniqueness.
  bucket_names = {
    datalake        = "${var.project}-datalake-${local.account_id}"
    artifacts       = "${var.project}-ml-artifacts-${local.account_id}"
    recommendations = "${var.project}-recommendations-${local.account_id}"
    scripts         = "${var.project}-scripts-${local.account_id}"
  }

  training_dir     = "ratings_ml_training"
  training_prefix  = "${local.training_dir}/"
  training_path    = "s3://${local.bucket_names.datalake}/${local.training_prefix}"
  script_key       = "glue/etl_job.py"
  temp_dir         = "glue-temp"
  jdbc_url         = "jdbc:mysql://${var.source_db_endpoint}:${var.source_db_port}/${var.source_db_name}"
  catalog_database = replace("${var.project}_catalog", "-", "_")
}

# ---------------------------------------------------------------------------------------------
# Glue
# ---------------------------------------------------------------------------------------------
resource "aws_s3_object" "etl_script" {
  bucket = module.bucket["scripts"].id
  key    = local.script_key
  source = var.glue_script_path
  # source_hash, not etag: with SSE-KMS the S3 ETag is not the MD5 and etag would never settle.
  source_hash = filemd5(var.glue_script_path)
}

resource "aws_glue_connection" "source" {
  name            = "${var.project}-mysql-source"
  description     = "JDBC connection to the RDS MySQL source (credentials from Secrets Manager)"
  connection_type = "JDBC"

  connection_properties = {
    JDBC_CONNECTION_URL = local.jdbc_url
    SECRET_ID           = var.source_db_secret_arn
  }

  physical_connection_requirements {
    availability_zone      = data.aws_subnet.source.availability_zone
    subnet_id              = var.source_db_subnet_id
    security_group_id_list = [var.source_db_security_group_id]
  }
}

resource "aws_glue_security_configuration" "this" {
  name = "${var.project}-glue"

  encryption_configuration {
    cloudwatch_encryption {
      cloudwatch_encryption_mode = "SSE-KMS"
      kms_key_arn                = var.kms_key_arn
    }
    job_bookmarks_encryption {
      job_bookmarks_encryption_mode = "CSE-KMS"
      kms_key_arn                   = var.kms_key_arn
    }
    s3_encryption {
      s3_encryption_mode = "SSE-KMS"
      kms_key_arn        = var.kms_key_arn
    }
  }
}

resource "aws_glue_job" "etl" {
  name                   = "${var.project}-ratings-etl"
  description            = "MySQL (customers, products, ratings) -> Parquet training set"
  role_arn               = aws_iam_role.glue_job.arn
  glue_version           = "5.0"
  worker_type            = var.glue_worker_type
  number_of_workers      = var.glue_number_of_workers
  timeout                = var.glue_timeout_minutes
  max_retries            = 0
  connections            = [aws_glue_connection.source.name]
  security_configuration = aws_glue_security_configuration.this.name

  command {
    name            = "glueetl"
    python_version  = "3"
    script_location = "s3://${aws_s3_object.etl_script.bucket}/${aws_s3_object.etl_script.key}"
  }

  execution_property {
    max_concurrent_runs = 1
  }

  # Keys other than Glue's own (--job-language, --enable-*, --TempDir, ...) are the script's
  # JOB_ARGUMENTS (tests/test_terraform.py checks them). No password here: the script reads
  # username/password from the secret.
  default_arguments = {
    "--job-language"                     = "python"
    "--job-bookmark-option"              = "job-bookmark-disable"
    "--enable-metrics"                   = "true"
    "--enable-continuous-cloudwatch-log" = "true"
    "--enable-spark-ui"                  = "false"
    "--continuous-log-logGroup"          = aws_cloudwatch_log_group.glue_job.name
    "--TempDir"                          = "s3://${local.bucket_names.scripts}/${local.temp_dir}/"
    "--source_jdbc_url"                  = local.jdbc_url
    "--source_secret_id"                 = var.source_db_secret_arn
    "--target_path"                      = local.training_path
    "--partition_key"                    = var.partition_key
  }
}

resource "aws_glue_catalog_database" "this" {
  name        = local.catalog_database
  description = "Training set of ${var.project}"
}

resource "aws_glue_crawler" "training_set" {
  name                   = "${var.project}-ratings-ml-training"
  description            = "Catalogues the Parquet training set written by the Glue job"
  database_name          = aws_glue_catalog_database.this.name
  role                   = aws_iam_role.glue_crawler.arn
  security_configuration = aws_glue_security_configuration.this.name

  # The job writes snapshots/<run_id>/ under the prefix and names the live one in _manifest.json;
  # the snapshot run id becomes a partition column of the table (filter on the manifest's run).
  s3_target {
    path       = local.training_path
    exclusions = ["_manifest.json", "**/_SUCCESS", "**_$folder$"]
  }

  schema_change_policy {
    update_behavior = "UPDATE_IN_DATABASE"
    delete_behavior = "LOG"
  }

  recrawl_policy {
    recrawl_behavior = "CRAWL_EVERYTHING"
  }
}

# Continuous (driver/executor) logs go here instead of Glue's shared, never-expiring group.
resource "aws_cloudwatch_log_group" "glue_job" {
  name              = "/aws-glue/jobs/${var.project}-ratings-etl"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}
