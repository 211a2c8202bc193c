output "alarm_topic_arn" {
  description = "SNS topic every alarm and event rule notifies (subscribe more endpoints to it)."
  value       = aws_sns_topic.alarms.arn
}

output "dashboard_name" {
  description = "The CloudWatch dashboard of the pipeline's health."
  value       = aws_cloudwatch_dashboard.pipeline.dashboard_name
}

output "alarm_names" {
  description = "Every CloudWatch alarm, by signal."
  value       = { for key, alarm in aws_cloudwatch_metric_alarm.signal : key => alarm.alarm_name }
}
