output "function_name" {
  description = "The recommendations API Lambda."
  value       = aws_lambda_function.api.function_name
}

output "function_url" {
  description = "HTTPS endpoint of the API (AWS_IAM auth: sign requests with SigV4, service lambda)."
  value       = aws_lambda_function_url.api.function_url
}

output "invoke_policy_arn" {
  description = "Managed policy that lets a role call the function URL."
  value       = aws_iam_policy.invoke.arn
}

output "security_group_id" {
  description = "Security group of the API Lambda (allowed into the vector DB)."
  value       = aws_security_group.api.id
}
