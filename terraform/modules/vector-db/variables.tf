variable "project" {
  type        = string
  description = "Name prefix of every resource."
}

variable "kms_key_arn" {
  type        = string
  description = "Customer-managed KMS key for storage, the managed secret, Performance Insights and logs."
}

variable "vpc_id" {
  type        = string
  description = "VPC of the DB."

  validation {
    condition     = startswith(var.vpc_id, "vpc-")
    error_message = "vpc_id is required for the vector DB phase."
  }
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnets of the DB subnet group (at least two AZs)."

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "A DB subnet group needs private subnets in at least two availability zones."
  }
}

variable "client_security_group_ids" {
  type        = map(string)
  description = "Security groups allowed to connect on 5432, keyed by a static name (e.g. lambda)."
  default     = {}
}

variable "artifacts_bucket_arn" {
  type        = string
  description = "ARN of the ml-artifacts bucket that aws_s3.table_import_from_s3 reads."
}

variable "log_retention_days" {
  type        = number
  description = "Retention of the exported PostgreSQL logs."
}

variable "instance_class" {
  type        = string
  description = "RDS instance class."
  default     = "db.t4g.micro"
}

variable "engine_version" {
  type        = string
  description = "PostgreSQL version (17 or 17.x); pgvector ships with RDS PostgreSQL 17."
  default     = "17"

  validation {
    condition     = can(regex("^17(\\.[0-9]+)?$", var.engine_version))
    error_message = "engine_version must be 17 or 17.x (the parameter group family is postgres17)."
  }
}

variable "allocated_storage" {
  type        = number
  description = "Initial gp3 storage in GiB."
  default     = 20
}

variable "max_allocated_storage" {
  type        = number
  description = "Storage autoscaling ceiling in GiB (0 disables autoscaling)."
  default     = 100
}

variable "db_name" {
  type        = string
  description = "Database holding item_emb and user_emb."
  default     = "recsys"
}

variable "username" {
  type        = string
  description = "Master user name; RDS generates the password and keeps it in Secrets Manager."
  default     = "recsys_admin"
}

variable "multi_az" {
  type        = bool
  description = "Run a synchronous standby in a second AZ."
  default     = false
}

variable "deletion_protection" {
  type        = bool
  description = "Refuse to delete the instance."
  default     = true
}

variable "skip_final_snapshot" {
  type        = bool
  description = "Skip the final snapshot on delete."
  default     = false
}

variable "backup_retention_period" {
  type        = number
  description = "Automated backup retention in days."
  default     = 7
}

variable "iam_database_authentication_enabled" {
  type        = bool
  description = "Allow IAM database authentication besides the managed password."
  default     = true
}

variable "performance_insights_enabled" {
  type        = bool
  description = "Enable Performance Insights (7 days retention is free)."
  default     = true
}

variable "monitoring_interval" {
  type        = number
  description = "Enhanced Monitoring interval in seconds (0 disables it)."
  default     = 60
}

variable "slow_query_ms" {
  type        = number
  description = "log_min_duration_statement: log statements slower than this (ms)."
  default     = 1000
}

variable "hnsw_index_mb" {
  type        = number
  description = "Total size in MB of the HNSW indexes (item_emb + user_emb) the parameter group is sized for: what `recsys load-embeddings` or sql/embeddings.sql reports (555 MB for 1M items + 20k users x 64-d, m 16)."
  default     = 555

  validation {
    condition     = var.hnsw_index_mb >= 0
    error_message = "hnsw_index_mb must be >= 0."
  }
}

variable "hnsw_largest_index_mb" {
  type        = number
  description = "Size in MB of the largest single HNSW index (item_emb's): the graph built in memory by one CREATE INDEX."
  default     = 544

  validation {
    condition     = var.hnsw_largest_index_mb >= 0
    error_message = "hnsw_largest_index_mb must be >= 0."
  }
}
