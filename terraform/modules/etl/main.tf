# Phase 1 (batch): the four buckets, the Glue connection to the existing RDS MySQL source, the
# Glue 5.0 job running glue/etl_job.py, and the catalog table the job points at each published snapshot.

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
  access_log_bucket_name = "${var.project}-access-logs-${local.account_id}"

  training_dir     = "ratings_ml_training"
  training_prefix  = "${local.training_dir}/"
  training_path    = "s3://${local.bucket_names.datalake}/${local.training_prefix}"
  script_key       = "glue/etl_job.py"
  job_modules_key  = "glue/recsys-job-modules.zip"
  temp_dir         = "glue-temp"
  jdbc_url         = "jdbc:mysql://${var.source_db_endpoint}:${var.source_db_port}/${var.source_db_name}?sslMode=${var.source_db_ssl_mode}"
  catalog_database = replace("${var.project}_catalog", "-", "_")
  log_group_prefix = "/aws-glue/jobs/${var.project}-ratings-etl"
  catalog_table    = local.training_dir
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

# The one module of the project the job imports (recsys.contracts: the training set's keys and
# columns), zipped as a package and added to the job's Python path with --extra-py-files.
data "archive_file" "job_modules" {
  type        = "zip"
  output_path = "${path.root}/.terraform/recsys-job-modules.zip"

  source {
    filename = "recsys/__init__.py"
    content  = file("${var.package_dir}/__init__.py")
  }
  source {
    filename = "recsys/contracts.py"
    content  = file("${var.package_dir}/contracts.py")
  }
}

resource "aws_s3_object" "job_modules" {
  bucket = module.bucket["scripts"].id
  key    = local.job_modules_key
  source = data.archive_file.job_modules.output_path
  # the content's hash: the zip's own bytes carry timestamps
  source_hash = md5("${file("${var.package_dir}/__init__.py")}${file("${var.package_dir}/contracts.py")}")
}

# The Glue connection's own security group. Glue requires a self-referencing all-TCP rule (the
# job's workers talk to each other through it); the rest lets them reach MySQL and, over HTTPS,
# S3 and the AWS APIs (VPC endpoints or a NAT).
resource "aws_security_group" "glue_connection" {
  #checkov:skip=CKV2_AWS_5:attached to the Glue connection (physical_connection_requirements), which checkov does not follow
  name        = "${var.project}-glue-connection"
  description = "Glue connection ${var.project}-mysql-source: workers to each other, MySQL, HTTPS to AWS APIs"
  vpc_id      = data.aws_subnet.source.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "glue_self" {
  #checkov:skip=CKV_AWS_24:the source is this group itself (referenced_security_group_id), not 0.0.0.0/0
  #checkov:skip=CKV_AWS_25:the source is this group itself (referenced_security_group_id), not 0.0.0.0/0
  #checkov:skip=CKV_AWS_260:the source is this group itself (referenced_security_group_id), not 0.0.0.0/0
  security_group_id            = aws_security_group.glue_connection.id
  description                  = "All TCP between the job's workers (required by Glue)"
  ip_protocol                  = "tcp"
  from_port                    = 0
  to_port                      = 65535
  referenced_security_group_id = aws_security_group.glue_connection.id
}

resource "aws_vpc_security_group_egress_rule" "glue_self" {
  security_group_id            = aws_security_group.glue_connection.id
  description                  = "All TCP between the job's workers (required by Glue)"
  ip_protocol                  = "tcp"
  from_port                    = 0
  to_port                      = 65535
  referenced_security_group_id = aws_security_group.glue_connection.id
}

resource "aws_vpc_security_group_egress_rule" "glue_mysql" {
  security_group_id            = aws_security_group.glue_connection.id
  description                  = "MySQL source"
  ip_protocol                  = "tcp"
  from_port                    = var.source_db_port
  to_port                      = var.source_db_port
  referenced_security_group_id = var.source_db_security_group_id
}

resource "aws_vpc_security_group_egress_rule" "glue_https" {
  security_group_id = aws_security_group.glue_connection.id
  description       = "HTTPS to S3, Secrets Manager, Glue, STS, KMS, Logs, CloudWatch (endpoints or NAT)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

# The MySQL source's group admits the Glue workers on its port.
resource "aws_vpc_security_group_ingress_rule" "mysql_from_glue" {
  security_group_id            = var.source_db_security_group_id
  description                  = "MySQL from the ${var.project} Glue connection"
  ip_protocol                  = "tcp"
  from_port                    = var.source_db_port
  to_port                      = var.source_db_port
  referenced_security_group_id = aws_security_group.glue_connection.id
}

resource "aws_glue_connection" "source" {
  name            = "${var.project}-mysql-source"
  description     = "JDBC connection to the RDS MySQL source (credentials from Secrets Manager)"
  connection_type = "JDBC"

  connection_properties = {
    JDBC_CONNECTION_URL = local.jdbc_url
    JDBC_ENFORCE_SSL    = "true"
    SECRET_ID           = var.source_db_secret_arn
  }

  physical_connection_requirements {
    availability_zone      = data.aws_subnet.source.availability_zone
    subnet_id              = var.source_db_subnet_id
    security_group_id_list = [aws_security_group.glue_connection.id]
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
  # JOB_ARGUMENTS (tests/unit/test_terraform.py checks them). No password here: the script reads
  # username/password from the secret. Glue 5.0 always logs in real time; --custom-logGroup-prefix
  # (not 4.0's --continuous-log-*, which 5.0 ignores) puts its logs in the groups declared below.
  default_arguments = {
    "--job-language"           = "python"
    "--job-bookmark-option"    = "job-bookmark-disable"
    "--enable-metrics"         = "true"
    "--enable-spark-ui"        = "false"
    "--custom-logGroup-prefix" = local.log_group_prefix
    "--TempDir"                = "s3://${local.bucket_names.scripts}/${local.temp_dir}/"
    "--extra-py-files"         = "s3://${aws_s3_object.job_modules.bucket}/${aws_s3_object.job_modules.key}"
    "--source_jdbc_url"        = local.jdbc_url
    "--source_secret_id"       = var.source_db_secret_arn
    "--target_path"            = local.training_path
    "--partition_key"          = var.partition_key
    "--catalog_database"       = aws_glue_catalog_database.this.name
    "--catalog_table"          = aws_glue_catalog_table.training_set.name
  }

  depends_on = [aws_cloudwatch_log_group.glue_job]
}

resource "aws_glue_catalog_database" "this" {
  name        = local.catalog_database
  description = "Training set of ${var.project}"
}

# The job rewrites this table after each publish (location = the manifest's snapshot, one partition
# per value of the partition key), so Athena and other catalog readers see exactly the published
# snapshot. A crawler would catalogue every snapshot under the prefix, the run id as a column.
resource "aws_glue_catalog_table" "training_set" {
  name          = local.catalog_table
  database_name = aws_glue_catalog_database.this.name
  description   = "ratings_ml_training: the published snapshot of the training set (kept current by the Glue job)"
  table_type    = "EXTERNAL_TABLE"

  parameters = {
    classification = "parquet"
  }

  partition_keys {
    name = var.partition_key
    type = var.partition_key == "customerNumber" ? "int" : "string"
  }

  storage_descriptor {
    location      = local.training_path
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"

    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    }
  }

  # Location, columns and parameters belong to the job after its first run.
  lifecycle {
    ignore_changes = [storage_descriptor, parameters, partition_keys]
  }
}

# The job's driver and executor logs, instead of Glue's shared, never-expiring /aws-glue/jobs/{error,output}.
# With --custom-logGroup-prefix and a security configuration that encrypts CloudWatch logs
# (SSE-KMS), Glue 5.0 writes to <prefix>/<security configuration>-role/<role name>/{error,output}:
# declared here first, so they carry the retention and the key.
resource "aws_cloudwatch_log_group" "glue_job" {
  for_each = toset(["error", "output"])

  name              = "${local.log_group_prefix}/${aws_glue_security_configuration.this.name}-role/${aws_iam_role.glue_job.name}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}
