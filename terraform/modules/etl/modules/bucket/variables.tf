variable "name" {
  type        = string
  description = "Globally unique bucket name."
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key for default SSE-KMS encryption."
}

variable "force_destroy" {
  type        = bool
  description = "Let `terraform destroy` delete the bucket with every object version in it."
  default     = false
}

variable "noncurrent_version_expiration_days" {
  type        = number
  description = "Days after which noncurrent object versions are deleted."
  default     = 30
}

variable "access_log_bucket" {
  type        = string
  description = "Bucket that receives this bucket's S3 server access logs (SSE-S3)."
}

variable "access_log_prefix" {
  type        = string
  description = "Key prefix of this bucket's access logs in access_log_bucket."
}
