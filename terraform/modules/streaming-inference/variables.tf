variable "project" {
  type        = string
  description = "Name prefix of every resource."
}

variable "kms_key_arn" {
  type        = string
  description = "Customer-managed KMS key for the stream, delivered objects, Lambda environment and logs."
}

variable "log_retention_days" {
  type        = number
  description = "Retention of the Lambda and Firehose log groups."
}

variable "vpc_id" {
  type        = string
  description = "VPC of the Lambda (the DB's VPC)."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnets of the Lambda, with a route to S3 and Secrets Manager (NAT or VPC endpoints)."
}

variable "db_security_group_id" {
  type        = string
  description = "Security group of the vector DB (the Lambda's egress target on the DB port)."
}

variable "artifacts_bucket_name" {
  type        = string
  description = "ml-artifacts bucket the Lambda loads the model pointer and artifacts from."
}

variable "artifacts_bucket_arn" {
  type        = string
  description = "ARN of the ml-artifacts bucket."
}

variable "recommendations_bucket_arn" {
  type        = string
  description = "ARN of the bucket Firehose delivers recommendations to."
}

variable "db_address" {
  type        = string
  description = "Host name of the vector DB (PGHOST)."
}

variable "db_port" {
  type        = number
  description = "Port of the vector DB (PGPORT)."
}

variable "db_name" {
  type        = string
  description = "Database of item_emb and user_emb (PGDATABASE)."
}

variable "db_username" {
  type        = string
  description = "DB user (PGUSER); its password is read from db_secret_arn."
}

variable "db_secret_arn" {
  type        = string
  description = "RDS-managed secret with username and password (RECSYS_DB_SECRET_ARN)."
}

variable "stream_mode" {
  type        = string
  description = "Kinesis capacity mode: ON_DEMAND or PROVISIONED."
  default     = "PROVISIONED"

  validation {
    condition     = contains(["ON_DEMAND", "PROVISIONED"], var.stream_mode)
    error_message = "stream_mode must be ON_DEMAND or PROVISIONED."
  }
}

variable "shard_count" {
  type        = number
  description = "Shards when stream_mode is PROVISIONED."
  default     = 1
}

variable "retention_hours" {
  type        = number
  description = "Kinesis record retention in hours (24 is included in the base price)."
  default     = 24
}

variable "buffer_seconds" {
  type        = number
  description = "Firehose buffering interval for the Lambda processor and the S3 destination."
  default     = 60

  validation {
    condition     = var.buffer_seconds >= 0 && var.buffer_seconds <= 900
    error_message = "buffer_seconds must be 0..900."
  }
}

variable "runtime" {
  type        = string
  description = "Lambda runtime the zip is built for (recsys.contracts.LAMBDA_RUNTIME)."
}

variable "lambda_zip_path" {
  type        = string
  description = "Deployment zip of the inference Lambda (built by `make lambda-zip`)."

  validation {
    condition     = fileexists(var.lambda_zip_path)
    error_message = "The Lambda deployment zip does not exist: run `make lambda-zip` (it writes build/lambda.zip) or set lambda_zip_path."
  }
}

variable "lambda_memory_mb" {
  type        = number
  description = "Memory of the Lambda in MB."
  default     = 1024
}

variable "lambda_timeout_seconds" {
  type        = number
  description = "Timeout of the Lambda in seconds (Firehose allows at most 300)."
  default     = 120

  validation {
    condition     = var.lambda_timeout_seconds >= 1 && var.lambda_timeout_seconds <= 300
    error_message = "A Firehose transformation Lambda must time out within 300 seconds."
  }
}

variable "reserved_concurrency" {
  type        = number
  description = "Reserved concurrency of the Lambda (caps DB connections); null: unreserved."
  default     = null
}

variable "log_level" {
  type        = string
  description = "LOG_LEVEL of the Lambda."
  default     = "INFO"
}

variable "top_k" {
  type        = number
  description = "Items recommended per event (RECSYS_TOP_K)."
  default     = 10
}

variable "pointer_ttl_seconds" {
  type        = number
  description = "Cache lifetime of the model-version pointer (RECSYS_POINTER_TTL_SECONDS)."
  default     = 60
}

variable "db_sslmode" {
  type        = string
  description = "libpq sslmode of the DB connections (PGSSLMODE): verify-full checks the RDS certificate against the zip's RDS CA bundle and the host name."
  default     = "verify-full"

  validation {
    condition     = contains(["require", "verify-ca", "verify-full"], var.db_sslmode)
    error_message = "db_sslmode must be require, verify-ca or verify-full (the DB forces TLS)."
  }
}
