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
