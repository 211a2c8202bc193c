# Phased deployment of the two-speed recommender: enable_etl (batch), then enable_vector_db,
# then enable_streaming and/or enable_api. Each phase is one module, switched on by a boolean (count), so a phase
# is added with `-var enable_... = true` (or a .tfvars file), never by editing this file.

provider "aws" {
  region = var.region

  default_tags {
    tags = merge({ Project = var.project, ManagedBy = "terraform" }, var.tags)
  }
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  account_id      = data.aws_caller_identity.current.account_id
  lambda_zip_path = coalesce(var.lambda_zip_path, "${path.root}/../build/lambda.zip")
  api_zip_path    = coalesce(var.api_zip_path, "${path.root}/../build/api.zip")
  # Both Lambdas run the zip `recsys lambda-zip` builds for recsys.contracts.LAMBDA_RUNTIME.
  lambda_runtime = "python3.13"
  # The DB accepts 5432 only from these security groups: the Lambdas' (phases 3 and 4) and any admin host's.
  # (module.x[0].output, not module.x[*]: a splat would depend on every output and form a cycle.)
  lambda_security_group_ids = var.enable_streaming ? [module.streaming_inference[0].lambda_security_group_id] : []
  api_security_group_ids    = var.enable_api ? [module.api[0].security_group_id] : []

  # The Lambdas connect as the serving role (sql/roles.sql) once the pipeline, which creates the roles and
  # their secrets, is on; until then (no model is loaded on AWS without it) as the master.
  serving_db_secret_arn = var.enable_pipeline ? module.pipeline[0].serving_db_secret_arn : one(module.vector_db[*].master_user_secret_arn)
  serving_db_username   = var.enable_pipeline ? "recsys_serving" : one(module.vector_db[*].username)

  db_client_security_group_ids = merge(
    var.db_admin_security_group_ids,
    { for sg in local.lambda_security_group_ids : "lambda" => sg },
    { for sg in local.api_security_group_ids : "api" => sg },
  )
}

# One customer-managed key for the project's data at rest: S3, Glue, Kinesis, RDS, the RDS-managed
# secret, Lambda environment and CloudWatch logs.
resource "aws_kms_key" "main" {
  description             = "${var.project}: data at rest (S3, Glue, Kinesis, RDS, logs)"
  enable_key_rotation     = true
  deletion_window_in_days = 30

  # A key policy (resource policy): "Resource": "*" means this key. The first statement is AWS's
  # default (the account administers the key through IAM policies, which scope it per role).
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountAdministersKeyThroughIam"
        Effect    = "Allow"
        Principal = { AWS = "arn:${data.aws_partition.current.partition}:iam::${local.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "CloudWatchLogsEncryptsThisAccountsLogGroups"
        Effect    = "Allow"
        Principal = { Service = "logs.${var.region}.amazonaws.com" }
        Action    = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
        Resource  = "*"
        Condition = {
          ArnLike = {
            "kms:EncryptionContext:aws:logs:arn" = "arn:${data.aws_partition.current.partition}:logs:${var.region}:${local.account_id}:log-group:*"
          }
        }
      },
      {
        # CloudWatch alarms and EventBridge rules publish to the encrypted alarm topic (modules/monitoring)
        Sid       = "AlarmsPublishToTheEncryptedTopic"
        Effect    = "Allow"
        Principal = { Service = ["cloudwatch.amazonaws.com", "events.amazonaws.com"] }
        Action    = ["kms:Decrypt", "kms:GenerateDataKey*"]
        Resource  = "*"
        Condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
      },
    ]
  })
}

resource "aws_kms_alias" "main" {
  name          = "alias/${var.project}"
  target_key_id = aws_kms_key.main.key_id
}

module "etl" {
  source = "./modules/etl"
  count  = var.enable_etl ? 1 : 0

  project               = var.project
  kms_key_arn           = aws_kms_key.main.arn
  log_retention_days    = var.log_retention_days
  force_destroy_buckets = var.bucket_force_destroy

  source_db_endpoint          = var.source_db_endpoint
  source_db_port              = var.source_db_port
  source_db_name              = var.source_db_name
  source_db_secret_arn        = var.source_db_secret_arn
  source_db_subnet_id         = var.source_db_subnet_id
  source_db_security_group_id = var.source_db_security_group_id

  source_db_secret_kms_key_arn = var.source_db_secret_kms_key_arn
  source_db_ssl_mode           = var.source_db_ssl_mode

  glue_script_path       = "${path.root}/../glue/etl_job.py"
  package_dir            = "${path.root}/../src/recsys"
  glue_worker_type       = var.glue_worker_type
  glue_number_of_workers = var.glue_number_of_workers
  partition_key          = var.glue_partition_key
}

module "vector_db" {
  source = "./modules/vector-db"
  count  = var.enable_vector_db ? 1 : 0

  project                   = var.project
  kms_key_arn               = aws_kms_key.main.arn
  vpc_id                    = var.vpc_id
  subnet_ids                = var.private_subnet_ids
  client_security_group_ids = local.db_client_security_group_ids
  artifacts_bucket_arn      = module.etl[0].artifacts_bucket_arn
  log_retention_days        = var.log_retention_days

  instance_class          = var.db_instance_class
  engine_version          = var.db_engine_version
  allocated_storage       = var.db_allocated_storage
  max_allocated_storage   = var.db_max_allocated_storage
  db_name                 = var.db_name
  username                = var.db_username
  multi_az                = var.db_multi_az
  deletion_protection     = var.db_deletion_protection
  skip_final_snapshot     = var.db_skip_final_snapshot
  backup_retention_period = var.db_backup_retention_days
  hnsw_index_mb           = var.db_hnsw_index_mb
  hnsw_largest_index_mb   = var.db_hnsw_largest_index_mb
}

module "streaming_inference" {
  source = "./modules/streaming-inference"
  count  = var.enable_streaming ? 1 : 0

  project            = var.project
  kms_key_arn        = aws_kms_key.main.arn
  log_retention_days = var.log_retention_days

  vpc_id               = var.vpc_id
  subnet_ids           = var.private_subnet_ids
  db_security_group_id = module.vector_db[0].security_group_id

  artifacts_bucket_name      = module.etl[0].artifacts_bucket_name
  artifacts_bucket_arn       = module.etl[0].artifacts_bucket_arn
  recommendations_bucket_arn = module.etl[0].recommendations_bucket_arn

  db_address    = module.vector_db[0].address
  db_port       = module.vector_db[0].port
  db_name       = module.vector_db[0].db_name
  db_username   = local.serving_db_username
  db_secret_arn = local.serving_db_secret_arn
  db_sslmode    = var.db_sslmode

  stream_mode            = var.kinesis_stream_mode
  shard_count            = var.kinesis_shard_count
  buffer_seconds         = var.firehose_buffer_seconds
  lambda_zip_path        = local.lambda_zip_path
  runtime                = local.lambda_runtime
  lambda_memory_mb       = var.lambda_memory_mb
  lambda_timeout_seconds = var.lambda_timeout_seconds
  reserved_concurrency   = var.lambda_reserved_concurrency
  log_level              = var.lambda_log_level
  top_k                  = var.recommendations_top_k
  pointer_ttl_seconds    = var.model_pointer_ttl_seconds
}

# ---------------------------------------------------------------------------------------------
# Network: private routes to the AWS APIs the code calls (create_vpc_endpoints), or your NAT
# ---------------------------------------------------------------------------------------------
locals {
  # AWS services each component calls from inside the VPC. tests/unit/test_aws_access.py derives
  # the boto3 calls of glue/etl_job.py and src/recsys/serving from the code and checks these lists
  # and the IAM policies against them. Glue itself adds sts, kms (its security configuration) and
  # logs (real-time logging from the workers), and monitoring (CloudWatch: --enable-metrics publishes
  # the job's metrics from the workers); RDS's aws_s3.table_import_from_s3 needs s3.
  glue_job_services  = ["s3", "secretsmanager", "glue", "sts", "kms", "logs", "monitoring"]
  lambda_services    = ["s3", "secretsmanager"]
  vector_db_services = ["s3"]
  # The pipeline's ECS tasks: their code calls s3 (test_aws_access.py); the ECS agent pulls the image
  # (ecr.api, ecr.dkr; layers from S3), writes logs and injects the DB role secrets (secretsmanager).
  pipeline_task_services = ["s3", "ecr.api", "ecr.dkr", "logs", "secretsmanager"]

  endpoint_subnet_ids = distinct(concat(
    var.enable_etl ? [var.source_db_subnet_id] : [],
    var.enable_vector_db || var.enable_streaming || var.enable_api || var.enable_pipeline ? var.private_subnet_ids : [],
  ))
  endpoint_clients = merge(
    { for name, client in { glue_job = { security_group_id = one(module.etl[*].connection_security_group_id), services = local.glue_job_services } } : name => client if var.enable_etl },
    { for name, client in { lambda = { security_group_id = one(local.lambda_security_group_ids), services = local.lambda_services } } : name => client if var.enable_streaming },
    { for name, client in { api = { security_group_id = one(local.api_security_group_ids), services = local.lambda_services } } : name => client if var.enable_api },
    { for name, client in { pipeline = { security_group_id = one(module.pipeline[*].security_group_id), services = local.pipeline_task_services } } : name => client if var.enable_pipeline },
  )
}

module "vpc_endpoints" {
  source = "./modules/vpc-endpoints"
  count  = var.create_vpc_endpoints && length(local.endpoint_subnet_ids) > 0 ? 1 : 0

  project             = var.project
  vpc_id              = var.vpc_id != "" ? var.vpc_id : one(module.etl[*].connection_vpc_id)
  subnet_ids          = local.endpoint_subnet_ids
  clients             = local.endpoint_clients
  route_only_services = var.enable_vector_db ? local.vector_db_services : []
}

module "api" {
  source = "./modules/api"
  count  = var.enable_api ? 1 : 0

  project            = var.project
  kms_key_arn        = aws_kms_key.main.arn
  log_retention_days = var.log_retention_days

  vpc_id               = var.vpc_id
  subnet_ids           = var.private_subnet_ids
  db_security_group_id = module.vector_db[0].security_group_id

  artifacts_bucket_name = module.etl[0].artifacts_bucket_name
  artifacts_bucket_arn  = module.etl[0].artifacts_bucket_arn

  db_address    = module.vector_db[0].address
  db_port       = module.vector_db[0].port
  db_name       = module.vector_db[0].db_name
  db_username   = local.serving_db_username
  db_secret_arn = local.serving_db_secret_arn
  db_sslmode    = var.db_sslmode

  zip_path             = local.api_zip_path
  runtime              = local.lambda_runtime
  memory_mb            = var.api_memory_mb
  reserved_concurrency = var.api_reserved_concurrency
  log_level            = var.lambda_log_level
  top_k                = var.recommendations_top_k
  pointer_ttl_seconds  = var.model_pointer_ttl_seconds
  invoker_role_names   = var.api_invoker_role_names
}

# ---------------------------------------------------------------------------------------------
# Monitoring: alarms, event rules and a dashboard for whichever phases are on
# ---------------------------------------------------------------------------------------------
module "monitoring" {
  source = "./modules/monitoring"
  count  = var.enable_monitoring && var.enable_etl ? 1 : 0

  project     = var.project
  kms_key_arn = aws_kms_key.main.arn
  alarm_email = var.alarm_email

  glue_job_name               = module.etl[0].glue_job_name
  recommendations_bucket_name = module.etl[0].recommendations_bucket_name

  vector_db_enabled    = var.enable_vector_db
  vector_db_identifier = var.enable_vector_db ? module.vector_db[0].identifier : ""
  vector_db_burstable  = startswith(var.db_instance_class, "db.t")

  streaming_enabled       = var.enable_streaming
  kinesis_stream_name     = var.enable_streaming ? module.streaming_inference[0].kinesis_stream_name : ""
  delivery_stream_name    = var.enable_streaming ? module.streaming_inference[0].delivery_stream_name : ""
  inference_function_name = var.enable_streaming ? module.streaming_inference[0].lambda_function_name : ""

  api_enabled       = var.enable_api
  api_function_name = var.enable_api ? module.api[0].function_name : ""

  period_seconds                        = var.alarm_thresholds.period_seconds
  lambda_errors_threshold               = var.alarm_thresholds.lambda_errors
  lambda_throttles_threshold            = var.alarm_thresholds.lambda_throttles
  iterator_age_seconds_threshold        = var.alarm_thresholds.iterator_age_seconds
  firehose_processing_success_threshold = var.alarm_thresholds.firehose_processing_success
  api_5xx_threshold                     = var.alarm_thresholds.api_5xx
  db_cpu_percent_threshold              = var.alarm_thresholds.db_cpu_percent
  db_cpu_credit_balance_threshold       = var.alarm_thresholds.db_cpu_credit_balance
  db_free_storage_mb_threshold          = var.alarm_thresholds.db_free_storage_mb
  db_connections_threshold              = var.alarm_thresholds.db_connections
}

# ---------------------------------------------------------------------------------------------
# Phase 5: the batch pipeline (docs/pipeline.md)
# ---------------------------------------------------------------------------------------------
module "pipeline" {
  source = "./modules/pipeline"
  count  = var.enable_pipeline ? 1 : 0

  project            = var.project
  kms_key_arn        = aws_kms_key.main.arn
  log_retention_days = var.log_retention_days

  vpc_id               = var.vpc_id
  subnet_ids           = var.private_subnet_ids
  db_security_group_id = module.vector_db[0].security_group_id
  db_address           = module.vector_db[0].address
  db_port              = module.vector_db[0].port
  db_name              = module.vector_db[0].db_name
  db_master_secret_arn = module.vector_db[0].master_user_secret_arn

  datalake_bucket_name  = module.etl[0].datalake_bucket_name
  datalake_bucket_arn   = "arn:${data.aws_partition.current.partition}:s3:::${module.etl[0].datalake_bucket_name}"
  artifacts_bucket_name = module.etl[0].artifacts_bucket_name
  artifacts_bucket_arn  = module.etl[0].artifacts_bucket_arn
  glue_job_name         = module.etl[0].glue_job_name

  image_tag           = var.pipeline_image_tag
  train_cpu           = var.pipeline_train_cpu
  train_memory_mb     = var.pipeline_train_memory_mb
  task_cpu            = var.pipeline_task_cpu
  task_memory_mb      = var.pipeline_task_memory_mb
  schedule_expression = var.pipeline_schedule_expression
  schedule_enabled    = var.pipeline_schedule_enabled
  notification_email  = var.pipeline_notification_email
}
