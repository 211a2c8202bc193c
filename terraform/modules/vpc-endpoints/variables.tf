variable "project" {
  type        = string
  description = "Name prefix of every resource."
}

variable "vpc_id" {
  type        = string
  description = "VPC of the subnets (the endpoints are created in it)."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Subnets the project's code runs in: their route tables get the S3 gateway endpoint, one per AZ hosts the interface endpoints."
}

variable "clients" {
  type = map(object({
    security_group_id = string
    services          = list(string)
  }))
  description = "Components in the VPC, by a static name: their security group and the AWS services they call (s3, secretsmanager, glue, sts, kms, logs, ...)."
}

variable "route_only_services" {
  type        = list(string)
  description = "Services reached by clients without a security group of ours (RDS's aws_s3 import: s3 through the gateway route)."
  default     = []
}
