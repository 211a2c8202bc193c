output "kinesis_stream_name" {
  description = "Kinesis stream of activity events."
  value       = aws_kinesis_stream.events.name
}

output "kinesis_stream_arn" {
  description = "ARN of the Kinesis stream."
  value       = aws_kinesis_stream.events.arn
}

output "delivery_stream_name" {
  description = "Firehose delivery stream."
  value       = aws_kinesis_firehose_delivery_stream.recommendations.name
}

output "lambda_function_name" {
  description = "Firehose transformation Lambda."
  value       = aws_lambda_function.inference.function_name
}

output "lambda_security_group_id" {
  description = "Security group of the Lambda (allowed into the vector DB)."
  value       = aws_security_group.lambda.id
}
