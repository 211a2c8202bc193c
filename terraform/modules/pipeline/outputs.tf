output "state_machine_arn" {
  description = "Start a run: `recsys pipeline start --state-machine-arn <this>` or aws stepfunctions start-execution."
  value       = aws_sfn_state_machine.pipeline.arn
}

output "ecr_repository_url" {
  description = "Where `make push-image` pushes the project image."
  value       = aws_ecr_repository.project.repository_url
}

output "notification_topic_arn" {
  description = "SNS topic of failures and refused candidates."
  value       = aws_sns_topic.pipeline.arn
}

output "cluster_name" {
  description = "The ECS cluster the tasks run on."
  value       = aws_ecs_cluster.pipeline.name
}

output "security_group_id" {
  description = "The tasks' security group (the vector DB admits it on 5432)."
  value       = aws_security_group.tasks.id
}

output "serving_db_secret_arn" {
  description = "Secret of the serving database role (recsys_serving): what the Lambdas connect with."
  value       = aws_secretsmanager_secret.db_role["serving"].arn
}
