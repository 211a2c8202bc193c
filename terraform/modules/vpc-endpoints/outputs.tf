output "s3_gateway_endpoint_id" {
  description = "The S3 gateway endpoint (null when no client calls S3)."
  value       = one(aws_vpc_endpoint.s3[*].id)
}

output "interface_endpoint_ids" {
  description = "Interface endpoints by service."
  value       = { for service, endpoint in aws_vpc_endpoint.interface : service => endpoint.id }
}

output "security_group_ids" {
  description = "Security group of each interface endpoint, by service."
  value       = { for service, group in aws_security_group.endpoint : service => group.id }
}
