variable "project" {
  type        = string
  description = "Name prefix of every resource."
}

variable "kms_key_arn" {
  type        = string
  description = "Customer-managed KMS key for the Lambda environment and the log group."
}

variable "log_retention_days" {
  type        = number
  description = "Retention of the Lambda's log group."
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
  description = "ml-artifacts bucket the API loads the model pointer and artifacts from."
}

variable "artifacts_bucket_arn" {
  type        = string
  description = "ARN of the ml-artifacts bucket."
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
  description = "Database of item_emb, user_emb and user_rated (PGDATABASE)."
}

variable "db_username" {
  type        = string
  description = "DB user (PGUSER); its password is read from db_secret_arn."
}

variable "db_secret_arn" {
  type        = string
  description = "RDS-managed secret with username and password (RECSYS_DB_SECRET_ARN)."
}

variable "zip_path" {
  type        = string
  description = "Deployment zip of the API (built by `make api-zip`)."

  validation {
    condition     = fileexists(var.zip_path)
    error_message = "The API deployment zip does not exist: run `make api-zip` (it writes build/api.zip) or set api_zip_path."
  }
}

variable "runtime" {
  type        = string
  description = "Lambda runtime: the Firehose Lambda's (recsys.contracts.LAMBDA_RUNTIME), which the zip is built for."
}

variable "memory_mb" {
  type        = number
  description = "Memory of the Lambda in MB (CPU grows with it)."
  default     = 1024
}

variable "timeout_seconds" {
  type        = number
  description = "Timeout of one request in seconds (a cold start loads the model from S3)."
  default     = 30

  validation {
    condition     = var.timeout_seconds >= 1 && var.timeout_seconds <= 900
    error_message = "timeout_seconds must be 1..900."
  }
}

variable "reserved_concurrency" {
  type        = number
  description = "Reserved concurrency of the Lambda: caps its DB connections (one per execution environment); null: unreserved."
  default     = null
}

variable "log_level" {
  type        = string
  description = "LOG_LEVEL of the Lambda."
  default     = "INFO"
}

variable "top_k" {
  type        = number
  description = "Items per list of POST /recommendations, as in the stream (RECSYS_TOP_K)."
  default     = 10
}

variable "pointer_ttl_seconds" {
  type        = number
  description = "Cache lifetime of the model-version pointer (RECSYS_POINTER_TTL_SECONDS)."
  default     = 60
}

variable "invoker_role_names" {
  type        = list(string)
  description = "IAM roles (same account) given the policy to call the function URL."
  default     = []
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
