# One role per task definition, each allowed what its stages' code calls (tests/unit/test_aws_access.py
# derives the calls from recsys.pipeline and checks both ways), on the prefixes it touches:
#   train: read the training set; write a candidate under models/ (and delete it if publishing fails);
#          read the serving pointer; read/write the run record.
#   gate:  read the training set and models/ (manifests, model.npz of the smoke test); move the pointer
#          (promote); read/write the run record. Connects to the DB as the serving role (smoke test).
#   load:  read models/; move the pointer back (rollback); read/write the run record. Connects as the
#          loader role.
# Every bucket is SSE-KMS with the project key: reads need kms:Decrypt, writes kms:GenerateDataKey.

locals {
  training_objects = "${var.datalake_bucket_arn}/ratings_ml_training/*" # recsys.contracts.TRAINING_PREFIX
  model_objects    = "${var.artifacts_bucket_arn}/models/*"             # MODELS_PREFIX
  serving_pointer  = "${var.artifacts_bucket_arn}/models/serving.json"  # SERVING_POINTER_KEY
  run_records      = "${var.artifacts_bucket_arn}/pipeline/runs/*"      # PIPELINE_RUNS_PREFIX
}

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

# --- train ------------------------------------------------------------------------------------------
resource "aws_iam_role" "train" {
  name               = "${local.name}-train"
  description        = "recsys pipeline train task: training set in, candidate model out"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

resource "aws_iam_role_policy" "train" {
  name   = "train"
  role   = aws_iam_role.train.id
  policy = data.aws_iam_policy_document.train.json
}

data "aws_iam_policy_document" "train" {
  statement {
    sid       = "ReadTrainingSetPointerAndRun"
    actions   = ["s3:GetObject"]
    resources = [local.training_objects, local.serving_pointer, local.run_records]
  }
  statement {
    sid       = "PublishCandidateAndRun"
    actions   = ["s3:PutObject"]
    resources = [local.model_objects, local.run_records]
  }
  statement {
    sid       = "RemoveAFailedPublish"
    actions   = ["s3:DeleteObject"]
    resources = [local.model_objects]
  }
  statement {
    sid       = "BucketKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
  }
}

# --- gate: quality gate, promote, smoke test -----------------------------------------------------------
resource "aws_iam_role" "gate" {
  name               = "${local.name}-gate"
  description        = "recsys pipeline gate task: judge, promote and smoke-test a candidate"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

resource "aws_iam_role_policy" "gate" {
  name   = "gate"
  role   = aws_iam_role.gate.id
  policy = data.aws_iam_policy_document.gate.json
}

data "aws_iam_policy_document" "gate" {
  statement {
    sid       = "ReadTrainingSetModelsAndRun"
    actions   = ["s3:GetObject"]
    resources = [local.training_objects, local.model_objects, local.run_records]
  }
  statement {
    sid       = "MovePointerAndWriteRun"
    actions   = ["s3:PutObject"]
    resources = [local.serving_pointer, local.run_records]
  }
  statement {
    sid       = "BucketKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
  }
}

# --- load: load embeddings, rollback ---------------------------------------------------------------
resource "aws_iam_role" "load" {
  name               = "${local.name}-load"
  description        = "recsys pipeline load task: embeddings into pgvector, rollback"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

resource "aws_iam_role_policy" "load" {
  name   = "load"
  role   = aws_iam_role.load.id
  policy = data.aws_iam_policy_document.load.json
}

data "aws_iam_policy_document" "load" {
  statement {
    sid       = "ReadModelsAndRun"
    actions   = ["s3:GetObject"]
    resources = [local.model_objects, local.run_records]
  }
  statement {
    sid       = "MovePointerBackAndWriteRun"
    actions   = ["s3:PutObject"]
    resources = [local.serving_pointer, local.run_records]
  }
  statement {
    sid       = "BucketKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
  }
}

# --- dbroles: creates the database roles; calls no AWS API ------------------------------------------------
resource "aws_iam_role" "dbroles" {
  name               = "${local.name}-dbroles"
  description        = "recsys pipeline database-roles task: no AWS permissions (it only talks to PostgreSQL)"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

# --- execution role: pull the image, write logs, inject the DB role secrets ------------------------------
resource "aws_iam_role" "execution" {
  name               = "${local.name}-execution"
  description        = "ECS agent for the recsys pipeline tasks: image, logs, DB credentials"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

resource "aws_iam_role_policy" "execution" {
  name   = "execution"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "ImageToken"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] # the action has no resource
  }
  statement {
    sid       = "PullProjectImage"
    actions   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
    resources = [aws_ecr_repository.project.arn]
  }
  statement {
    sid       = "WriteTaskLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.tasks.arn}:*"]
  }
  statement {
    sid       = "DbRoleSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = concat(values(local.db_role_secret_arns), [var.db_master_secret_arn])
  }
  statement {
    sid       = "DecryptImageAndSecrets"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
  }
}

# --- the state machine: what its document's integrations call -------------------------------------------
data "aws_iam_policy_document" "states_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["states.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_iam_role" "state_machine" {
  name               = local.name
  description        = "recsys pipeline state machine"
  assume_role_policy = data.aws_iam_policy_document.states_assume.json
}

resource "aws_iam_role_policy" "state_machine" {
  name   = "run-pipeline"
  role   = aws_iam_role.state_machine.id
  policy = data.aws_iam_policy_document.state_machine.json
}

data "aws_iam_policy_document" "state_machine" {
  # glue:startJobRun.sync
  statement {
    sid       = "RunEtlJob"
    actions   = ["glue:StartJobRun", "glue:GetJobRun", "glue:GetJobRuns", "glue:BatchStopJobRun"]
    resources = ["arn:${data.aws_partition.current.partition}:glue:${local.region}:${data.aws_caller_identity.current.account_id}:job/${var.glue_job_name}"]
  }
  # ecs:runTask.sync
  statement {
    sid       = "RunPipelineTasks"
    actions   = ["ecs:RunTask"]
    resources = [for family in keys(local.tasks) : "arn:${data.aws_partition.current.partition}:ecs:${local.region}:${data.aws_caller_identity.current.account_id}:task-definition/${local.name}-${family}:*"]
    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.pipeline.arn]
    }
  }
  statement {
    sid       = "WatchPipelineTasks"
    actions   = ["ecs:StopTask", "ecs:DescribeTasks"]
    resources = ["arn:${data.aws_partition.current.partition}:ecs:${local.region}:${data.aws_caller_identity.current.account_id}:task/${aws_ecs_cluster.pipeline.name}/*"]
  }
  statement {
    sid       = "SyncRuleForEcs"
    actions   = ["events:PutTargets", "events:PutRule", "events:DescribeRule"]
    resources = ["arn:${data.aws_partition.current.partition}:events:${local.region}:${data.aws_caller_identity.current.account_id}:rule/StepFunctionsGetEventsForECSTaskRule"]
  }
  statement {
    sid       = "PassTaskRoles"
    actions   = ["iam:PassRole"]
    resources = concat(values(local.task_role_arns), [aws_iam_role.execution.arn])
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }
  # aws-sdk:s3:getObject (the gate's decision)
  statement {
    sid       = "ReadRunRecord"
    actions   = ["s3:GetObject"]
    resources = [local.run_records]
  }
  # sns:publish
  statement {
    sid       = "Notify"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.pipeline.arn]
  }
  statement {
    sid       = "RunRecordAndTopicKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
  }
  # the logging and tracing configuration
  statement {
    sid = "DeliverExecutionLogs"
    actions = ["logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies", "logs:DescribeLogGroups"]
    resources = ["*"] # CloudWatch Logs vended delivery has no resource-level permissions
  }
  statement {
    sid       = "Tracing"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules", "xray:GetSamplingTargets"]
    resources = ["*"] # X-Ray has no resource-level permissions
  }
}

# --- the scheduler -----------------------------------------------------------------------------------
data "aws_iam_policy_document" "scheduler_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_iam_role" "scheduler" {
  name               = "${local.name}-scheduler"
  description        = "EventBridge Scheduler: start recsys pipeline runs"
  assume_role_policy = data.aws_iam_policy_document.scheduler_assume.json
}

resource "aws_iam_role_policy" "scheduler" {
  name   = "start-run"
  role   = aws_iam_role.scheduler.id
  policy = data.aws_iam_policy_document.scheduler.json
}

data "aws_iam_policy_document" "scheduler" {
  statement {
    sid       = "StartRun"
    actions   = ["states:StartExecution"]
    resources = [aws_sfn_state_machine.pipeline.arn]
  }
  statement {
    sid       = "ScheduleKey"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
  }
}
