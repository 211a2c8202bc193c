variable "project" {
  type        = string
  description = "Name prefix of every resource."
}

variable "kms_key_arn" {
  type        = string
  description = "Customer-managed KMS key for the buckets, the Glue security configuration and logs."
}

variable "log_retention_days" {
  type        = number
  description = "Retention of the Glue log groups."
}

variable "force_destroy_buckets" {
  type        = bool
  description = "Let `terraform destroy` delete non-empty buckets (all object versions)."
  default     = false
}

variable "noncurrent_version_expiration_days" {
  type        = number
  description = "Days after which noncurrent object versions are deleted."
  default     = 30
}

variable "source_db_endpoint" {
  type        = string
  description = "Host name of the existing RDS MySQL source."

  validation {
    condition     = length(var.source_db_endpoint) > 0
    error_message = "source_db_endpoint is required for the ETL phase (the RDS MySQL host name)."
  }
}

variable "source_db_port" {
  type        = number
  description = "Port of the MySQL source."
  default     = 3306
}

variable "source_db_name" {
  type        = string
  description = "Database holding customers, products and ratings."
  default     = "classicmodels"
}

variable "source_db_secret_arn" {
  type        = string
  description = "Secrets Manager secret with username/password of the MySQL source."

  validation {
    condition     = startswith(var.source_db_secret_arn, "arn:")
    error_message = "source_db_secret_arn must be the ARN of a Secrets Manager secret with username and password."
  }
}

variable "source_db_secret_kms_key_arn" {
  type        = string
  description = "Customer-managed KMS key of the source secret (kms:Decrypt via Secrets Manager); null: the AWS-managed key."
  default     = null
}

variable "source_db_subnet_id" {
  type        = string
  description = "Subnet of the Glue connection's network interfaces."
}

variable "source_db_security_group_id" {
  type        = string
  description = "Security group of the RDS MySQL source: it gets an ingress rule on source_db_port from the Glue connection's own security group."
}

variable "glue_script_path" {
  type        = string
  description = "Local path of glue/etl_job.py, uploaded to the scripts bucket."
}

variable "package_dir" {
  type        = string
  description = "Local path of src/recsys: its __init__.py and contracts.py ship with the job (--extra-py-files)."
}

variable "glue_worker_type" {
  type        = string
  description = "Glue worker type."
  default     = "G.1X"
}

variable "glue_number_of_workers" {
  type        = number
  description = "Number of Glue workers."
  default     = 2
}

variable "glue_timeout_minutes" {
  type        = number
  description = "Glue job timeout in minutes."
  default     = 60
}

variable "partition_key" {
  type        = string
  description = "Partition column of the training set."
  default     = "productLine"
}

variable "source_db_ssl_mode" {
  type        = string
  description = "Connector/J sslMode of the JDBC URL (VERIFY_IDENTITY: certificate and host name verified)."
  default     = "VERIFY_IDENTITY"
}
