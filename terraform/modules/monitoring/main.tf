# Monitoring of whatever phases are on: one SNS topic, a CloudWatch alarm per signal (thresholds are
# variables), EventBridge rules for failed Glue runs and newly parked Firehose records, and one
# dashboard. The local stand-ins show the same signals with `recsys status`.

data "aws_region" "current" {}
data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  region = data.aws_region.current.name
  period = var.period_seconds
  # The switches are plain booleans, known at plan time: the alarms' keys must be.
  lambdas = { for role, function in {
    inference = { name = var.inference_function_name, on = var.streaming_enabled }
    api       = { name = var.api_function_name, on = var.api_enabled }
  } : role => function.name if function.on }

  # Every alarm of the deployed phases, one object shape: one dimension each.
  alarm_list = concat(
    flatten([for role, name in local.lambdas : [
      {
        key        = "${role}_errors", description = "Lambda ${name}: failed invocations (Firehose parks the batch, the API answers 5xx)"
        namespace  = "AWS/Lambda", metric = "Errors", dimension = "FunctionName", value = name, statistic = "Sum"
        comparison = "GreaterThanOrEqualToThreshold", threshold = var.lambda_errors_threshold
      },
      {
        key        = "${role}_throttles", description = "Lambda ${name}: throttled (reserved or account concurrency exhausted)"
        namespace  = "AWS/Lambda", metric = "Throttles", dimension = "FunctionName", value = name, statistic = "Sum"
        comparison = "GreaterThanOrEqualToThreshold", threshold = var.lambda_throttles_threshold
      },
    ]]),
    [for alarm in [
      {
        key       = "kinesis_iterator_age", description = "Stream ${var.kinesis_stream_name}: delivery lags behind the events"
        namespace = "AWS/Kinesis", metric = "GetRecords.IteratorAgeMilliseconds", dimension = "StreamName"
        value     = var.kinesis_stream_name, statistic = "Maximum", comparison = "GreaterThanOrEqualToThreshold"
        threshold = var.iterator_age_seconds_threshold * 1000
      },
      {
        key       = "firehose_processing", description = "Firehose ${var.delivery_stream_name}: transformation invocations failing"
        namespace = "AWS/Firehose", metric = "ExecuteProcessing.Success", dimension = "DeliveryStreamName"
        value     = var.delivery_stream_name, statistic = "Average", comparison = "LessThanThreshold"
        threshold = var.firehose_processing_success_threshold
      },
    ] : alarm if var.streaming_enabled],
    [for alarm in [
      {
        key       = "api_5xx", description = "API ${var.api_function_name}: 5xx answers of its function URL"
        namespace = "AWS/Lambda", metric = "Url5xxCount", dimension = "FunctionName", value = var.api_function_name
        statistic = "Sum", comparison = "GreaterThanOrEqualToThreshold", threshold = var.api_5xx_threshold
      },
    ] : alarm if var.api_enabled],
    [for alarm in [
      {
        key       = "db_cpu", description = "Vector DB ${var.vector_db_identifier}: CPU", namespace = "AWS/RDS"
        metric    = "CPUUtilization", dimension = "DBInstanceIdentifier", value = var.vector_db_identifier
        statistic = "Average", comparison = "GreaterThanOrEqualToThreshold", threshold = var.db_cpu_percent_threshold
      },
      {
        key       = "db_free_storage", description = "Vector DB ${var.vector_db_identifier}: free storage", namespace = "AWS/RDS"
        metric    = "FreeStorageSpace", dimension = "DBInstanceIdentifier", value = var.vector_db_identifier
        statistic = "Minimum", comparison = "LessThanOrEqualToThreshold", threshold = var.db_free_storage_mb_threshold * 1048576
      },
      {
        key       = "db_connections", description = "Vector DB ${var.vector_db_identifier}: connections (one per Lambda environment)"
        namespace = "AWS/RDS", metric = "DatabaseConnections", dimension = "DBInstanceIdentifier"
        value     = var.vector_db_identifier, statistic = "Maximum", comparison = "GreaterThanOrEqualToThreshold"
        threshold = var.db_connections_threshold
      },
    ] : alarm if var.vector_db_enabled],
    [for alarm in [
      {
        key       = "db_cpu_credits", description = "Vector DB ${var.vector_db_identifier}: CPU credits running out (then baseline CPU)"
        namespace = "AWS/RDS", metric = "CPUCreditBalance", dimension = "DBInstanceIdentifier"
        value     = var.vector_db_identifier, statistic = "Minimum", comparison = "LessThanOrEqualToThreshold"
        threshold = var.db_cpu_credit_balance_threshold
      },
    ] : alarm if var.vector_db_enabled && var.vector_db_burstable],
  )
  alarms = { for alarm in local.alarm_list : alarm.key => alarm }
}

# ---------------------------------------------------------------------------------------------
# Where alerts go
# ---------------------------------------------------------------------------------------------
resource "aws_sns_topic" "alarms" {
  name              = "${var.project}-alarms"
  kms_master_key_id = var.kms_key_arn
}

resource "aws_sns_topic_policy" "alarms" {
  arn    = aws_sns_topic.alarms.arn
  policy = data.aws_iam_policy_document.alarms_topic.json
}

data "aws_iam_policy_document" "alarms_topic" {
  statement {
    sid       = "CloudWatchAlarmsOfThisAccount"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarms.arn]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }

  statement {
    sid       = "EventBridgeRulesOfThisProject"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarms.arn]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${data.aws_partition.current.partition}:events:${local.region}:${data.aws_caller_identity.current.account_id}:rule/${var.project}-*"]
    }
  }
}

resource "aws_sns_topic_subscription" "email" {
  count     = var.alarm_email == "" ? 0 : 1
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

# ---------------------------------------------------------------------------------------------
# Alarms: one per signal of the deployed phases
# ---------------------------------------------------------------------------------------------
resource "aws_cloudwatch_metric_alarm" "signal" {
  for_each = local.alarms

  alarm_name          = "${var.project}-${replace(each.key, "_", "-")}"
  alarm_description   = each.value.description
  namespace           = each.value.namespace
  metric_name         = each.value.metric
  dimensions          = { (each.value.dimension) = each.value.value }
  statistic           = each.value.statistic
  comparison_operator = each.value.comparison
  threshold           = each.value.threshold
  period              = local.period
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching" # no traffic is not an incident
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

# ---------------------------------------------------------------------------------------------
# Events: a Glue run that failed or timed out, a record parked under processing-failed/
# ---------------------------------------------------------------------------------------------
resource "aws_cloudwatch_event_rule" "glue_job_failed" {
  name        = "${var.project}-glue-job-failed"
  description = "Glue job ${var.glue_job_name} run FAILED or TIMEOUT"
  event_pattern = jsonencode({
    source        = ["aws.glue"]
    "detail-type" = ["Glue Job State Change"]
    detail        = { jobName = [var.glue_job_name], state = ["FAILED", "TIMEOUT", "ERROR"] }
  })
}

resource "aws_cloudwatch_event_target" "glue_job_failed" {
  rule = aws_cloudwatch_event_rule.glue_job_failed.name
  arn  = aws_sns_topic.alarms.arn
}

# The recommendations bucket sends its object events to EventBridge (the bucket's only notification
# configuration); the rule picks parked records: processing-failed/<yyyy>/..., not the redrive
# markers under processing-failed/redriven/.
resource "aws_s3_bucket_notification" "recommendations" {
  count       = var.streaming_enabled ? 1 : 0
  bucket      = var.recommendations_bucket_name
  eventbridge = true
}

resource "aws_cloudwatch_event_rule" "records_parked" {
  count       = var.streaming_enabled ? 1 : 0
  name        = "${var.project}-records-parked"
  description = "Firehose parked records under processing-failed/ in ${var.recommendations_bucket_name}"
  event_pattern = jsonencode({
    source        = ["aws.s3"]
    "detail-type" = ["Object Created"]
    detail = {
      bucket = { name = [var.recommendations_bucket_name] }
      object = { key = [{ prefix = "processing-failed/2" }] }
    }
  })
}

resource "aws_cloudwatch_event_target" "records_parked" {
  count = var.streaming_enabled ? 1 : 0
  rule  = aws_cloudwatch_event_rule.records_parked[0].name
  arn   = aws_sns_topic.alarms.arn
}

# ---------------------------------------------------------------------------------------------
# One dashboard: every alarm's metric, by phase
# ---------------------------------------------------------------------------------------------
resource "aws_cloudwatch_dashboard" "pipeline" {
  dashboard_name = "${var.project}-pipeline"
  dashboard_body = jsonencode({
    widgets = concat(
      [{
        type = "metric", x = 0, y = 0, width = 12, height = 6
        properties = {
          title = "Glue job runs", region = local.region, stat = "Sum", period = local.period
          metrics = [
            ["Glue", "glue.driver.aggregate.numCompletedTasks", "JobName", var.glue_job_name, "JobRunId", "ALL", "Type", "count"],
            ["Glue", "glue.driver.aggregate.numFailedTasks", "JobName", var.glue_job_name, "JobRunId", "ALL", "Type", "count"],
          ]
        }
      }],
      [for i, key in sort(keys(local.alarms)) : {
        type = "metric", x = 12 * ((i + 1) % 2), y = 6 * floor((i + 1) / 2), width = 12, height = 6
        properties = {
          title       = local.alarms[key].description
          region      = local.region
          stat        = local.alarms[key].statistic
          period      = local.period
          metrics     = [concat([local.alarms[key].namespace, local.alarms[key].metric], flatten([for k, v in local.alarms[key].dimensions : [k, v]]))]
          annotations = { horizontal = [{ label = "alarm", value = local.alarms[key].threshold }] }
        }
      }],
    )
  })
}
