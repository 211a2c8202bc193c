# Names and endpoints only: the DB password lives in Secrets Manager (see db_master_user_secret_arn).
# Outputs of a disabled phase are null.

output "kms_key_arn" {
  description = "Customer-managed KMS key encrypting the project's data at rest."
  value       = aws_kms_key.main.arn
}

output "datalake_bucket" {
  description = "S3 bucket of the training set (RECSYS_DATALAKE_BUCKET)."
  value       = one(module.etl[*].datalake_bucket_name)
}

output "artifacts_bucket" {
  description = "S3 bucket of model artifacts (RECSYS_ARTIFACTS_BUCKET)."
  value       = one(module.etl[*].artifacts_bucket_name)
}

output "recommendations_bucket" {
  description = "S3 bucket Firehose delivers recommendations to (RECSYS_RECOMMENDATIONS_BUCKET)."
  value       = one(module.etl[*].recommendations_bucket_name)
}

output "scripts_bucket" {
  description = "S3 bucket of the Glue script and Glue temporary files (RECSYS_SCRIPTS_BUCKET)."
  value       = one(module.etl[*].scripts_bucket_name)
}

output "glue_job_name" {
  description = "Glue job that builds the training set (`aws glue start-job-run --job-name ...`)."
  value       = one(module.etl[*].glue_job_name)
}

output "glue_catalog_table" {
  description = "Glue Data Catalog table of the published training-set snapshot (query it with Athena)."
  value       = one(module.etl[*].catalog_table_name)
}

output "glue_catalog_database" {
  description = "Glue Data Catalog database of the training set."
  value       = one(module.etl[*].catalog_database_name)
}

output "training_set_path" {
  description = "S3 URI of the training set."
  value       = one(module.etl[*].training_set_path)
}

output "db_address" {
  description = "Host name of the vector DB (PGHOST)."
  value       = one(module.vector_db[*].address)
}

output "db_port" {
  description = "Port of the vector DB (PGPORT)."
  value       = one(module.vector_db[*].port)
}

output "db_name" {
  description = "Database of item_emb and user_emb (PGDATABASE)."
  value       = one(module.vector_db[*].db_name)
}

output "db_username" {
  description = "Master user of the vector DB (PGUSER)."
  value       = one(module.vector_db[*].username)
}

output "db_master_user_secret_arn" {
  description = "ARN of the RDS-managed Secrets Manager secret holding the master password (fetch it, never print it)."
  value       = one(module.vector_db[*].master_user_secret_arn)
}

output "db_s3_import_role_arn" {
  description = "IAM role RDS assumes for aws_s3.table_import_from_s3."
  value       = one(module.vector_db[*].s3_import_role_arn)
}

output "kinesis_stream_name" {
  description = "Kinesis stream of activity events (RECSYS_KINESIS_STREAM)."
  value       = one(module.streaming_inference[*].kinesis_stream_name)
}

output "kinesis_stream_arn" {
  description = "ARN of the Kinesis stream."
  value       = one(module.streaming_inference[*].kinesis_stream_arn)
}

output "firehose_delivery_stream_name" {
  description = "Firehose delivery stream (RECSYS_FIREHOSE_STREAM)."
  value       = one(module.streaming_inference[*].delivery_stream_name)
}

output "lambda_function_name" {
  description = "Firehose transformation Lambda (RECSYS_LAMBDA_FUNCTION)."
  value       = one(module.streaming_inference[*].lambda_function_name)
}

output "api_function_name" {
  description = "The recommendations API Lambda."
  value       = one(module.api[*].function_name)
}

output "api_url" {
  description = "HTTPS endpoint of the recommendations API (AWS_IAM: SigV4-signed requests, service lambda)."
  value       = one(module.api[*].function_url)
}

output "api_invoke_policy_arn" {
  description = "Managed policy to attach to roles that call the API."
  value       = one(module.api[*].invoke_policy_arn)
}

output "alarm_topic_arn" {
  description = "SNS topic of every alarm and event rule (subscribe on-call endpoints to it)."
  value       = one(module.monitoring[*].alarm_topic_arn)
}

output "dashboard_name" {
  description = "CloudWatch dashboard of the pipeline's health."
  value       = one(module.monitoring[*].dashboard_name)
}

output "pipeline_state_machine_arn" {
  description = "Start a run: recsys pipeline start --state-machine-arn <this> (or aws stepfunctions start-execution)."
  value       = one(module.pipeline[*].state_machine_arn)
}

output "pipeline_ecr_repository_url" {
  description = "Where `make push-image` pushes the project image."
  value       = one(module.pipeline[*].ecr_repository_url)
}

output "pipeline_notification_topic_arn" {
  description = "SNS topic of pipeline failures and refused candidates."
  value       = one(module.pipeline[*].notification_topic_arn)
}
