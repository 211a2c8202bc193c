variable "project" {
  type        = string
  description = "Name prefix of every resource."
}

variable "kms_key_arn" {
  type        = string
  description = "Customer-managed KMS key encrypting the SNS topic (its key policy lets CloudWatch and EventBridge use it)."
}

variable "alarm_email" {
  type        = string
  description = "Address subscribed to the alarm topic (it must confirm the subscription); empty: no subscription."
  default     = ""
}

# --- what is deployed (a phase's alarms exist only when its phase is on) -----------------------
variable "glue_job_name" {
  type        = string
  description = "Glue ETL job (phase 1)."
}

variable "recommendations_bucket_name" {
  type        = string
  description = "Bucket Firehose delivers to; new processing-failed/ objects there raise an alert (phase 3)."
}

variable "vector_db_enabled" {
  type        = bool
  description = "Phase 2 is on: alarm on the vector DB."
  default     = false
}

variable "vector_db_identifier" {
  type        = string
  description = "RDS instance identifier of the vector DB (phase 2)."
  default     = ""
}

variable "vector_db_burstable" {
  type        = bool
  description = "The DB's instance class is burstable (db.t*): alarm on its CPU credit balance."
  default     = true
}

variable "streaming_enabled" {
  type        = bool
  description = "Phase 3 is on: alarm on the stream, the delivery stream, the transformation Lambda and parked records."
  default     = false
}

variable "kinesis_stream_name" {
  type        = string
  description = "Kinesis stream of activity events (phase 3)."
  default     = ""
}

variable "delivery_stream_name" {
  type        = string
  description = "Firehose delivery stream (phase 3)."
  default     = ""
}

variable "inference_function_name" {
  type        = string
  description = "Firehose transformation Lambda (phase 3)."
  default     = ""
}

variable "api_enabled" {
  type        = bool
  description = "Phase 4 is on: alarm on the API Lambda and its function URL's 5xx answers."
  default     = false
}

variable "api_function_name" {
  type        = string
  description = "The API Lambda (phase 4)."
  default     = ""
}

# --- thresholds (defaults: the root's alarm_thresholds) ---------------------------------------------------------------------------------
variable "period_seconds" {
  type        = number
  description = "Period over which each alarm's statistic is taken."
}

variable "lambda_errors_threshold" {
  type        = number
  description = "Errors (failed invocations) of a Lambda per period at or above which its alarm fires."
}

variable "lambda_throttles_threshold" {
  type        = number
  description = "Throttled invocations of a Lambda per period at or above which its alarm fires."
}

variable "iterator_age_seconds_threshold" {
  type        = number
  description = "Age of the oldest unread Kinesis record (GetRecords.IteratorAgeMilliseconds, max) at or above which delivery is lagging."
}

variable "firehose_processing_success_threshold" {
  type        = number
  description = "Firehose ExecuteProcessing.Success (share of successful Lambda invocations, average) below which the alarm fires."
}

variable "api_5xx_threshold" {
  type        = number
  description = "5xx answers of the API's function URL per period (Url5xxCount, sum) at or above which its alarm fires."
}

variable "db_cpu_percent_threshold" {
  type        = number
  description = "Average CPU of the vector DB at or above which its alarm fires."
}

variable "db_cpu_credit_balance_threshold" {
  type        = number
  description = "CPU credit balance of a burstable DB at or below which its alarm fires (it will be throttled to baseline)."
}

variable "db_free_storage_mb_threshold" {
  type        = number
  description = "Free storage of the vector DB in MB at or below which its alarm fires."
}

variable "db_connections_threshold" {
  type        = number
  description = "Open connections to the vector DB at or above which its alarm fires (db.t4g.micro allows about 80)."
}
