output "bucket_names" {
  description = "Bucket names keyed like recsys.config.Settings.buckets."
  value       = { for key, bucket in module.bucket : key => bucket.id }
}

output "datalake_bucket_name" {
  description = "S3 bucket of the training set."
  value       = module.bucket["datalake"].id
}

output "artifacts_bucket_name" {
  description = "S3 bucket of model artifacts."
  value       = module.bucket["artifacts"].id
}

output "artifacts_bucket_arn" {
  description = "ARN of the model artifacts bucket."
  value       = module.bucket["artifacts"].arn
}

output "recommendations_bucket_name" {
  description = "S3 bucket Firehose delivers to."
  value       = module.bucket["recommendations"].id
}

output "recommendations_bucket_arn" {
  description = "ARN of the recommendations bucket."
  value       = module.bucket["recommendations"].arn
}

output "scripts_bucket_name" {
  description = "S3 bucket of the Glue script and temporary files."
  value       = module.bucket["scripts"].id
}

output "glue_job_name" {
  description = "Name of the Glue ETL job."
  value       = aws_glue_job.etl.name
}

output "catalog_table_name" {
  description = "Glue Data Catalog table of the published training-set snapshot."
  value       = aws_glue_catalog_table.training_set.name
}

output "catalog_database_name" {
  description = "Glue Data Catalog database of the training set."
  value       = aws_glue_catalog_database.this.name
}

output "training_set_path" {
  description = "S3 URI of the training set."
  value       = local.training_path
}

output "connection_vpc_id" {
  description = "VPC of the Glue connection's subnet (where the job's network interfaces live)."
  value       = data.aws_subnet.source.vpc_id
}

output "connection_security_group_id" {
  description = "Security group of the Glue connection's network interfaces (created here, self-referencing)."
  value       = aws_security_group.glue_connection.id
}
