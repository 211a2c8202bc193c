output "address" {
  description = "Host name of the DB (PGHOST)."
  value       = aws_db_instance.this.address
}

output "port" {
  description = "Port of the DB (PGPORT)."
  value       = aws_db_instance.this.port
}

output "db_name" {
  description = "Database holding item_emb and user_emb (PGDATABASE)."
  value       = aws_db_instance.this.db_name
}

output "username" {
  description = "Master user name (PGUSER)."
  value       = aws_db_instance.this.username
}

output "master_user_secret_arn" {
  description = "ARN of the RDS-managed secret with username and password."
  value       = aws_db_instance.this.master_user_secret[0].secret_arn
}

output "security_group_id" {
  description = "Security group of the DB."
  value       = aws_security_group.db.id
}

output "s3_import_role_arn" {
  description = "Role associated with feature s3Import."
  value       = aws_iam_role.s3_import.arn
}

output "identifier" {
  description = "RDS instance identifier (the CloudWatch dimension DBInstanceIdentifier)."
  value       = aws_db_instance.this.identifier
}
