variable "project" {
  type        = string
  description = "Name prefix of every resource."
}

variable "kms_key_arn" {
  type        = string
  description = "The project's customer-managed key: buckets (SSE-KMS), logs, SNS, the ECR repository."
}

variable "log_retention_days" {
  type        = number
  description = "CloudWatch retention of the tasks' and the state machine's logs."
}

variable "vpc_id" {
  type        = string
  description = "VPC of the private subnets the tasks run in."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnets of the ECS tasks (no public IP; AWS APIs through VPC endpoints or a NAT)."
}

variable "db_security_group_id" {
  type        = string
  description = "The vector DB's security group: the tasks' egress to 5432 goes there."
}

variable "db_address" {
  type        = string
  description = "The vector DB's address (PGHOST of the tasks)."
}

variable "db_port" {
  type        = number
  description = "The vector DB's port."
}

variable "db_name" {
  type        = string
  description = "The database holding the serving tables."
}

variable "db_master_secret_arn" {
  type        = string
  description = "The RDS-managed master secret: only the database-roles task gets it (creates the roles, no data)."
}

variable "datalake_bucket_name" {
  type        = string
  description = "The datalake bucket (the training set)."
}

variable "datalake_bucket_arn" {
  type        = string
  description = "Its ARN."
}

variable "artifacts_bucket_name" {
  type        = string
  description = "The ml-artifacts bucket (models, the serving pointer, run records)."
}

variable "artifacts_bucket_arn" {
  type        = string
  description = "Its ARN."
}

variable "glue_job_name" {
  type        = string
  description = "The ETL's Glue job (modules/etl): the state machine's first stage."
}

variable "image_tag" {
  type        = string
  description = "Tag of the project image in the ECR repository the tasks run (`make push-image` pushes it)."
}

variable "train_cpu" {
  type        = number
  description = "Fargate vCPU units of the train task (1024 = 1 vCPU)."
}

variable "train_memory_mb" {
  type        = number
  description = "Memory of the train task: ~2.5 GB at 5M ratings (docs/train.md), with headroom."
}

variable "task_cpu" {
  type        = number
  description = "Fargate vCPU units of the load and gate tasks."
}

variable "task_memory_mb" {
  type        = number
  description = "Memory of the load and gate tasks (the gate refits both models on the held-out split)."
}

variable "schedule_expression" {
  type        = string
  description = "EventBridge Scheduler expression of the retraining run, e.g. cron(0 3 ? * MON *)."
}

variable "schedule_enabled" {
  type        = bool
  description = "Whether the schedule starts runs (off by default: start runs by hand until the first succeeded)."
}

variable "notification_email" {
  type        = string
  description = "Email subscribed to the failure / not-promoted topic (confirm the subscription mail); empty: none."
}
