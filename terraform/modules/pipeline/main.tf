# The batch pipeline on AWS (phase enable_pipeline): a Step Functions state machine rendered from
# recsys.pipeline.definition (state_machine.asl.json.tftpl, `recsys pipeline render --template`) runs
# the Glue ETL, then the project image as ECS Fargate tasks in the private subnets, each task definition
# with its own least-privilege task role: train | gate (quality gate, promote, smoke test) | load (load
# embeddings, rollback). EventBridge Scheduler starts runs (off by default); failures, timeouts and a
# refused candidate go to an SNS topic.

data "aws_region" "current" {}
data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  name      = "${var.project}-pipeline"
  region    = data.aws_region.current.name
  container = "recsys" # recsys.pipeline.definition.CONTAINER_NAME
  image     = "${aws_ecr_repository.project.repository_url}:${var.image_tag}"

  # What every stage reads from its environment (recsys.core.config); DB credentials come as secrets.
  common_environment = [
    { name = "AWS_DEFAULT_REGION", value = local.region },
    { name = "RECSYS_DATALAKE_BUCKET", value = var.datalake_bucket_name },
    { name = "RECSYS_ARTIFACTS_BUCKET", value = var.artifacts_bucket_name },
    { name = "RECSYS_REPORTS_DIR", value = "/tmp/reports" },
    { name = "PGHOST", value = var.db_address },
    { name = "PGPORT", value = tostring(var.db_port) },
    { name = "PGDATABASE", value = var.db_name },
    { name = "PGSSLMODE", value = "verify-full" },                       # TLS, and the certificate checked against the RDS CAs
    { name = "PGSSLROOTCERT", value = "/opt/recsys/rds-ca-bundle.pem" }, # in the image (Dockerfile)
  ]
  db_role_secret_arns = { for role, secret in aws_secretsmanager_secret.db_role : role => secret.arn }
  # task -> its size and database credentials: train never connects; load is the loader role, gate the
  # serving role (smoke test); dbroles alone gets the master, and the roles' passwords to set.
  tasks = {
    train   = { cpu = var.train_cpu, memory = var.train_memory_mb, db_secret_arn = "", role_passwords = {} }
    load    = { cpu = var.task_cpu, memory = var.task_memory_mb, db_secret_arn = local.db_role_secret_arns["loader"], role_passwords = {} }
    gate    = { cpu = var.task_cpu, memory = var.task_memory_mb, db_secret_arn = local.db_role_secret_arns["serving"], role_passwords = {} }
    dbroles = { cpu = var.task_cpu, memory = var.task_memory_mb, db_secret_arn = var.db_master_secret_arn, role_passwords = local.db_role_secret_arns }
  }
  task_role_arns = {
    train   = aws_iam_role.train.arn
    load    = aws_iam_role.load.arn
    gate    = aws_iam_role.gate.arn
    dbroles = aws_iam_role.dbroles.arn
  }
}

# --- database roles (sql/roles.sql): their passwords, which the dbroles task sets at each run --------------
data "aws_secretsmanager_random_password" "db_role" {
  for_each            = toset(["loader", "serving"])
  password_length     = 40
  exclude_punctuation = true
}

resource "aws_secretsmanager_secret" "db_role" {
  #checkov:skip=CKV2_AWS_57:no rotation Lambda needed: put a new secret version and the next run's DatabaseRoles stage sets it
  for_each    = toset(["loader", "serving"])
  name        = "${local.name}-db-${each.key}"
  description = "PostgreSQL role recsys_${each.key} (sql/roles.sql) of the recsys vector DB"
  kms_key_id  = var.kms_key_arn
}

resource "aws_secretsmanager_secret_version" "db_role" {
  for_each  = aws_secretsmanager_secret.db_role
  secret_id = each.value.id
  secret_string = jsonencode({
    username = "recsys_${each.key}" # recsys.contracts.DB_LOADER_ROLE / DB_SERVING_ROLE
    password = data.aws_secretsmanager_random_password.db_role[each.key].random_password
  })

  lifecycle {
    ignore_changes = [secret_string] # generated once; rotate by putting a new version
  }
}

# The vector DB admits the tasks on 5432.
resource "aws_vpc_security_group_ingress_rule" "db_from_tasks" {
  security_group_id            = var.db_security_group_id
  description                  = "PostgreSQL from the recsys pipeline tasks"
  ip_protocol                  = "tcp"
  from_port                    = var.db_port
  to_port                      = var.db_port
  referenced_security_group_id = aws_security_group.tasks.id
}

# --- the project image ------------------------------------------------------------------------------
resource "aws_ecr_repository" "project" {
  name                 = var.project
  image_tag_mutability = "IMMUTABLE"

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = var.kms_key_arn
  }
}

resource "aws_ecr_lifecycle_policy" "project" {
  repository = aws_ecr_repository.project.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "keep the 10 newest images"
      selection    = { tagStatus = "any", countType = "imageCountMoreThan", countNumber = 10 }
      action       = { type = "expire" }
    }]
  })
}

# --- ECS on Fargate, private subnets ------------------------------------------------------------------
resource "aws_ecs_cluster" "pipeline" {
  name = local.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_security_group" "tasks" {
  #checkov:skip=CKV2_AWS_5:attached by the state machine's RunTask calls (state_machine.asl.json.tftpl), not a Terraform resource
  name        = local.name
  description = "Pipeline tasks: PostgreSQL to the vector DB, HTTPS to AWS APIs"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_egress_rule" "tasks_db" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "PostgreSQL to the vector DB"
  ip_protocol                  = "tcp"
  from_port                    = var.db_port
  to_port                      = var.db_port
  referenced_security_group_id = var.db_security_group_id
}

resource "aws_vpc_security_group_egress_rule" "tasks_https" {
  security_group_id = aws_security_group.tasks.id
  description       = "HTTPS to S3, ECR, logs and Secrets Manager (NAT or interface endpoints)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_cloudwatch_log_group" "tasks" {
  name              = "/ecs/${local.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

resource "aws_ecs_task_definition" "task" {
  for_each = local.tasks

  family                   = "${local.name}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = each.value.cpu
  memory                   = each.value.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = local.task_role_arns[each.key]

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  container_definitions = jsonencode([{
    name                   = local.container
    image                  = local.image
    essential              = true
    readonlyRootFilesystem = false # Spark-free stages still write /tmp (reports, the lock file)
    environment            = local.common_environment
    secrets = concat(each.value.db_secret_arn == "" ? [] : [
      { name = "PGUSER", valueFrom = "${each.value.db_secret_arn}:username::" },
      { name = "PGPASSWORD", valueFrom = "${each.value.db_secret_arn}:password::" },
      ], [for role, arn in each.value.role_passwords :
      { name = "RECSYS_DB_${upper(role)}_PASSWORD", valueFrom = "${arn}:password::" }
    ])
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.tasks.name
        awslogs-region        = local.region
        awslogs-stream-prefix = each.key
      }
    }
  }])
}

# --- the state machine --------------------------------------------------------------------------------
resource "aws_cloudwatch_log_group" "state_machine" {
  name              = "/aws/vendedlogs/states/${local.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

resource "aws_sfn_state_machine" "pipeline" {
  name     = local.name
  role_arn = aws_iam_role.state_machine.arn
  definition = templatefile("${path.module}/state_machine.asl.json.tftpl", {
    glue_job_name           = var.glue_job_name
    cluster_arn             = aws_ecs_cluster.pipeline.arn
    task_definition_train   = aws_ecs_task_definition.task["train"].arn
    task_definition_load    = aws_ecs_task_definition.task["load"].arn
    task_definition_gate    = aws_ecs_task_definition.task["gate"].arn
    task_definition_dbroles = aws_ecs_task_definition.task["dbroles"].arn
    subnet_ids              = var.subnet_ids
    security_group_ids      = [aws_security_group.tasks.id]
    topic_arn               = aws_sns_topic.pipeline.arn
    artifacts_bucket        = var.artifacts_bucket_name
  })

  logging_configuration {
    log_destination        = "${aws_cloudwatch_log_group.state_machine.arn}:*"
    include_execution_data = true # run records and stage errors: versions and figures, no secrets
    level                  = "ALL"
  }

  tracing_configuration {
    enabled = true
  }
}

# --- notifications ------------------------------------------------------------------------------------
resource "aws_sns_topic" "pipeline" {
  name              = local.name
  kms_master_key_id = var.kms_key_arn
}

resource "aws_sns_topic_subscription" "email" {
  count     = var.notification_email == "" ? 0 : 1
  topic_arn = aws_sns_topic.pipeline.arn
  protocol  = "email"
  endpoint  = var.notification_email
}

# A run that fails outside a stage (the whole-run timeout, an abort, a failing notification) never
# reaches the NotifyFailure state: Step Functions' own status events cover those.
resource "aws_cloudwatch_event_rule" "run_failed" {
  name        = "${local.name}-run-failed"
  description = "recsys pipeline runs that failed, timed out or were aborted"
  event_pattern = jsonencode({
    source        = ["aws.states"]
    "detail-type" = ["Step Functions Execution Status Change"]
    detail        = { stateMachineArn = [aws_sfn_state_machine.pipeline.arn], status = ["FAILED", "TIMED_OUT", "ABORTED"] }
  })
}

resource "aws_cloudwatch_event_target" "run_failed" {
  rule = aws_cloudwatch_event_rule.run_failed.name
  arn  = aws_sns_topic.pipeline.arn
}

resource "aws_sns_topic_policy" "pipeline" {
  arn = aws_sns_topic.pipeline.arn
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "EventBridgePublishesRunFailures"
      Effect    = "Allow"
      Principal = { Service = "events.amazonaws.com" }
      Action    = "sns:Publish"
      Resource  = aws_sns_topic.pipeline.arn
      Condition = { ArnEquals = { "aws:SourceArn" = aws_cloudwatch_event_rule.run_failed.arn } }
    }]
  })
}

# --- the schedule -------------------------------------------------------------------------------------
resource "aws_scheduler_schedule" "pipeline" {
  name        = local.name
  description = "recsys retraining run"
  state       = var.schedule_enabled ? "ENABLED" : "DISABLED"

  schedule_expression = var.schedule_expression
  kms_key_arn         = var.kms_key_arn

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = aws_sfn_state_machine.pipeline.arn
    role_arn = aws_iam_role.scheduler.arn
    input    = "{}"
  }
}
