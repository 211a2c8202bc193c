# ---------------------------------------------------------------------------------------------
# General
# ---------------------------------------------------------------------------------------------
variable "project" {
  type        = string
  description = "Name prefix of every resource; must match the local stack's names (recsys)."
  default     = "recsys"
}

variable "region" {
  type        = string
  description = "AWS region to deploy to."
  default     = "us-east-1"
}

variable "tags" {
  type        = map(string)
  description = "Extra tags applied to every resource."
  default     = {}
}

variable "log_retention_days" {
  type        = number
  description = "Retention of every CloudWatch log group created here."
  default     = 365
}

# ---------------------------------------------------------------------------------------------
# Phases: enable one module at a time (batch, then vector DB, then streaming)
# ---------------------------------------------------------------------------------------------
variable "enable_etl" {
  type        = bool
  description = "Phase 1: S3 buckets, Glue connection, job and catalog table."
  default     = true
}

variable "enable_vector_db" {
  type        = bool
  description = "Phase 2: RDS PostgreSQL 17 with pgvector (needs enable_etl)."
  default     = false

  validation {
    condition     = !var.enable_vector_db || var.enable_etl
    error_message = "enable_vector_db needs enable_etl (the DB imports embeddings from the ml-artifacts bucket)."
  }
}

variable "enable_streaming" {
  type        = bool
  description = "Phase 3: Kinesis stream, Firehose delivery stream and the inference Lambda (needs enable_etl and enable_vector_db)."
  default     = false

  validation {
    condition     = !var.enable_streaming || (var.enable_etl && var.enable_vector_db)
    error_message = "enable_streaming needs enable_etl and enable_vector_db (the Lambda reads artifacts and queries pgvector)."
  }
}

variable "enable_api" {
  type        = bool
  description = "Phase 4: the recommendations API Lambda behind an AWS_IAM function URL (needs enable_etl and enable_vector_db)."
  default     = false

  validation {
    condition     = !var.enable_api || (var.enable_etl && var.enable_vector_db)
    error_message = "enable_api needs enable_etl and enable_vector_db (the API reads artifacts and queries pgvector)."
  }
}

# ---------------------------------------------------------------------------------------------
# Network: an existing VPC with private subnets; routes to AWS APIs by VPC endpoints or your NAT
# ---------------------------------------------------------------------------------------------
variable "create_vpc_endpoints" {
  type        = bool
  description = "Create the VPC endpoints the code needs (S3 gateway; Secrets Manager, Glue, STS, KMS, CloudWatch Logs interface endpoints with private DNS). Set false when the subnets already reach AWS through a NAT gateway (or endpoints of your own)."
  default     = true
}

variable "vpc_id" {
  type        = string
  description = "VPC of the vector DB and the Lambda (phases 2 and 3)."
  default     = ""
}

variable "private_subnet_ids" {
  type        = list(string)
  description = "Private subnets (at least two AZs) for the DB subnet group and the Lambda (phases 2 and 3)."
  default     = []
}

# ---------------------------------------------------------------------------------------------
# Phase 1: the existing RDS MySQL source and the Glue job
# ---------------------------------------------------------------------------------------------
variable "bucket_force_destroy" {
  type        = bool
  description = "Let `terraform destroy` delete the buckets with their contents (set true before teardown)."
  default     = false
}

variable "source_db_endpoint" {
  type        = string
  description = "Host name of the existing RDS MySQL source (without port)."
  default     = ""
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
  default     = ""
}

variable "source_db_secret_kms_key_arn" {
  type        = string
  description = "Customer-managed KMS key that encrypts the source secret (the Glue job gets kms:Decrypt on it via Secrets Manager); null for the AWS-managed aws/secretsmanager key."
  default     = null
}

variable "source_db_subnet_id" {
  type        = string
  description = "Subnet from which Glue reaches the MySQL source (a private subnet of its VPC)."
  default     = ""
}

variable "source_db_security_group_id" {
  type        = string
  description = "Security group of the RDS MySQL source. Terraform creates the Glue connection's own group (with Glue's self-referencing rule) and adds an ingress rule on source_db_port from it to this one."
  default     = ""
}

variable "glue_worker_type" {
  type        = string
  description = "Glue worker type (G.1X, G.2X, ...)."
  default     = "G.1X"
}

variable "glue_number_of_workers" {
  type        = number
  description = "Number of Glue workers (2 is the minimum)."
  default     = 2
}

variable "glue_partition_key" {
  type        = string
  description = "Partition column of the training set (bounded file count)."
  default     = "productLine"
}

# ---------------------------------------------------------------------------------------------
# Phase 2: vector DB
# ---------------------------------------------------------------------------------------------
variable "db_admin_security_group_ids" {
  type        = map(string)
  description = "Extra security groups allowed into the DB on 5432, by a static name (e.g. { bastion = \"sg-...\" }) for loading embeddings."
  default     = {}
}

variable "db_instance_class" {
  type        = string
  description = "RDS instance class of the vector DB: its memory must hold the HNSW indexes (db_hnsw_index_mb); plan warns when it cannot."
  default     = "db.t4g.micro"
}

variable "db_hnsw_index_mb" {
  type        = number
  description = "Total size in MB of the HNSW indexes (item_emb + user_emb) the parameter group is sized for: what `recsys load-embeddings` or sql/embeddings.sql reports (555 MB for 1M items + 20k users x 64-d, m 16)."
  default     = 555
}

variable "db_hnsw_largest_index_mb" {
  type        = number
  description = "Size in MB of the largest single HNSW index (item_emb's): the graph one CREATE INDEX builds in memory."
  default     = 544
}

variable "db_engine_version" {
  type        = string
  description = "PostgreSQL engine version (17 or a 17.x minor; pgvector is built in)."
  default     = "17"
}

variable "db_allocated_storage" {
  type        = number
  description = "Initial storage in GiB."
  default     = 20
}

variable "db_max_allocated_storage" {
  type        = number
  description = "Storage autoscaling ceiling in GiB (0 disables autoscaling)."
  default     = 100
}

variable "db_name" {
  type        = string
  description = "Database holding item_emb and user_emb."
  default     = "recsys"
}

variable "db_username" {
  type        = string
  description = "Master user name (its password is generated and kept by RDS in Secrets Manager)."
  default     = "recsys_admin"
}

variable "db_sslmode" {
  type        = string
  description = "TLS of the Lambdas' DB connections (libpq sslmode): verify-full checks the server's certificate against the RDS CA bundle in the zips and its host name."
  default     = "verify-full"

  validation {
    condition     = contains(["require", "verify-ca", "verify-full"], var.db_sslmode)
    error_message = "db_sslmode must be require, verify-ca or verify-full (the DB forces TLS)."
  }
}

variable "source_db_ssl_mode" {
  type        = string
  description = "TLS of the Glue job's JDBC connection to MySQL (Connector/J sslMode): VERIFY_IDENTITY checks the RDS certificate and host name."
  default     = "VERIFY_IDENTITY"

  validation {
    condition     = contains(["REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY"], var.source_db_ssl_mode)
    error_message = "source_db_ssl_mode must be REQUIRED, VERIFY_CA or VERIFY_IDENTITY."
  }
}

variable "db_multi_az" {
  type        = bool
  description = "Run a standby in a second AZ (doubles the instance cost)."
  default     = false
}

variable "db_deletion_protection" {
  type        = bool
  description = "Refuse to delete the instance; set false before `terraform destroy`."
  default     = true
}

variable "db_skip_final_snapshot" {
  type        = bool
  description = "Skip the final snapshot on delete (embeddings can be reloaded from S3)."
  default     = false
}

variable "db_backup_retention_days" {
  type        = number
  description = "Automated backup retention in days."
  default     = 7
}

# ---------------------------------------------------------------------------------------------
# Phase 3: streaming inference
# ---------------------------------------------------------------------------------------------
variable "kinesis_stream_mode" {
  type        = string
  description = "Kinesis capacity mode: ON_DEMAND or PROVISIONED."
  default     = "PROVISIONED"
}

variable "kinesis_shard_count" {
  type        = number
  description = "Shards when kinesis_stream_mode is PROVISIONED."
  default     = 1
}

variable "firehose_buffer_seconds" {
  type        = number
  description = "Firehose buffering interval for the Lambda processor and the S3 destination (0-900)."
  default     = 60
}

variable "lambda_zip_path" {
  type        = string
  description = "Deployment zip built by `make lambda-zip`; null means <repo>/build/lambda.zip."
  default     = null
}

variable "lambda_memory_mb" {
  type        = number
  description = "Memory of the inference Lambda in MB."
  default     = 1024
}

variable "lambda_timeout_seconds" {
  type        = number
  description = "Timeout of the inference Lambda (Firehose allows up to 300 s per invocation)."
  default     = 120
}

variable "lambda_reserved_concurrency" {
  type        = number
  description = "Reserved concurrency of the inference Lambda (caps DB connections); null leaves it unreserved, which new accounts with a low concurrency quota need (AWS keeps 10 unreserved)."
  default     = null

  validation {
    condition     = var.lambda_reserved_concurrency == null ? true : var.lambda_reserved_concurrency >= 1
    error_message = "lambda_reserved_concurrency must be null (unreserved) or at least 1."
  }
}

variable "lambda_log_level" {
  type        = string
  description = "LOG_LEVEL of the inference Lambda."
  default     = "INFO"
}

variable "recommendations_top_k" {
  type        = number
  description = "Items recommended per event (RECSYS_TOP_K)."
  default     = 10
}

variable "model_pointer_ttl_seconds" {
  type        = number
  description = "How long the Lambda caches the model-version pointer (RECSYS_POINTER_TTL_SECONDS)."
  default     = 60
}

# ---------------------------------------------------------------------------------------------
# Phase 4: the recommendations API
# ---------------------------------------------------------------------------------------------
variable "api_zip_path" {
  type        = string
  description = "Deployment zip built by `make api-zip`; null means <repo>/build/api.zip."
  default     = null
}

variable "api_memory_mb" {
  type        = number
  description = "Memory of the API Lambda in MB."
  default     = 1024
}

variable "api_reserved_concurrency" {
  type        = number
  description = "Reserved concurrency of the API Lambda (caps its DB connections); null leaves it unreserved, which new accounts with a low concurrency quota need (AWS keeps 10 unreserved)."
  default     = null

  validation {
    condition     = var.api_reserved_concurrency == null ? true : var.api_reserved_concurrency >= 1
    error_message = "api_reserved_concurrency must be null (unreserved) or at least 1."
  }
}

variable "api_invoker_role_names" {
  type        = list(string)
  description = "IAM roles of this account that get the policy to call the API's function URL."
  default     = []
}

# ---------------------------------------------------------------------------------------------
# Monitoring (on with phase 1; alarms follow the phases that are on)
# ---------------------------------------------------------------------------------------------
variable "enable_monitoring" {
  type        = bool
  description = "SNS alarm topic, CloudWatch alarms, EventBridge rules (failed Glue runs, parked records) and the dashboard."
  default     = true
}

variable "alarm_email" {
  type        = string
  description = "Email address subscribed to the alarm topic (confirm the mail AWS sends); empty: subscribe yourself."
  default     = ""
}

variable "alarm_thresholds" {
  type = object({
    period_seconds              = optional(number, 300)  # each alarm's statistic over this period, 1 period
    lambda_errors               = optional(number, 1)    # failed invocations of a Lambda (sum)
    lambda_throttles            = optional(number, 1)    # throttled invocations of a Lambda (sum)
    iterator_age_seconds        = optional(number, 900)  # oldest unread Kinesis event (max)
    firehose_processing_success = optional(number, 1)    # ExecuteProcessing.Success below this (average)
    api_5xx                     = optional(number, 5)    # 5xx answers of the API's function URL (sum)
    db_cpu_percent              = optional(number, 80)   # vector DB CPU (average)
    db_cpu_credit_balance       = optional(number, 20)   # burstable DB's CPU credits at or below (minimum)
    db_free_storage_mb          = optional(number, 2048) # vector DB free storage at or below (minimum)
    db_connections              = optional(number, 60)   # vector DB connections (max)
  })
  description = "Alarm thresholds; set only the ones to change, e.g. { api_5xx = 20 }."
  default     = {}
}

# ---------------------------------------------------------------------------------------------
# Phase 5: the batch pipeline on AWS (Step Functions + ECS Fargate), docs/pipeline.md
# ---------------------------------------------------------------------------------------------
variable "enable_pipeline" {
  type        = bool
  description = "Phase 5: the batch pipeline (ETL, train, gate, load, promote, smoke test) as a Step Functions state machine running the project image on ECS Fargate (needs enable_etl and enable_vector_db)."
  default     = false

  validation {
    condition     = !var.enable_pipeline || (var.enable_etl && var.enable_vector_db)
    error_message = "enable_pipeline needs enable_etl (the Glue job, the buckets) and enable_vector_db (the load target)."
  }
}

variable "pipeline_image_tag" {
  type        = string
  description = "Tag of the project image the pipeline tasks run: the commit `make push-image` pushed and printed (tags are immutable). Until the first push the tasks cannot start."
  default     = "not-pushed-yet"
}

variable "pipeline_schedule_expression" {
  type        = string
  description = "When EventBridge Scheduler starts a retraining run (UTC)."
  default     = "cron(0 3 ? * MON *)"
}

variable "pipeline_schedule_enabled" {
  type        = bool
  description = "Start runs on the schedule (off by default: start the first runs by hand)."
  default     = false
}

variable "pipeline_notification_email" {
  type        = string
  description = "Email subscribed to the pipeline's failure / not-promoted notifications (empty: none)."
  default     = ""
}

variable "pipeline_train_cpu" {
  type        = number
  description = "Fargate vCPU units of the train task."
  default     = 2048
}

variable "pipeline_train_memory_mb" {
  type        = number
  description = "Memory of the train task (~2.5 GB at 5M ratings, docs/train.md)."
  default     = 8192
}

variable "pipeline_task_cpu" {
  type        = number
  description = "Fargate vCPU units of the gate, load and database-roles tasks."
  default     = 1024
}

variable "pipeline_task_memory_mb" {
  type        = number
  description = "Memory of the gate, load and database-roles tasks."
  default     = 4096
}
