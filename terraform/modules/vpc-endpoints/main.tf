# Private routes from the project's subnets to the AWS APIs its code calls, without a NAT gateway:
# an S3 gateway endpoint on the subnets' route tables, and one interface endpoint (private DNS)
# per other service, each behind a security group that admits HTTPS only from the clients that
# call that service. The root passes which client calls which service (locals *_services in
# terraform/main.tf; tests/unit/test_aws_access.py derives the calls from the code and checks them).

data "aws_region" "current" {}

data "aws_subnet" "this" {
  for_each = toset(var.subnet_ids)
  id       = each.value

  lifecycle {
    postcondition {
      condition     = self.vpc_id == var.vpc_id
      error_message = "Subnet ${self.id} is in ${self.vpc_id}, not ${var.vpc_id}: the endpoints serve one VPC. Put the Glue connection's subnet in vpc_id, or set create_vpc_endpoints = false and give each VPC its own routes (NAT or endpoints)."
    }
  }
}

# A subnet without an explicit route table association uses the VPC's main route table.
data "aws_route_tables" "explicit" {
  for_each = toset(var.subnet_ids)
  vpc_id   = var.vpc_id

  filter {
    name   = "association.subnet-id"
    values = [each.value]
  }
}

data "aws_route_table" "main" {
  vpc_id = var.vpc_id

  filter {
    name   = "association.main"
    values = ["true"]
  }
}

locals {
  region   = data.aws_region.current.name
  services = toset(concat(flatten([for client in values(var.clients) : client.services]), var.route_only_services))

  interface_services = setsubtract(local.services, ["s3"])
  route_table_ids = distinct([
    for id in var.subnet_ids :
    length(data.aws_route_tables.explicit[id].ids) > 0 ? data.aws_route_tables.explicit[id].ids[0] : data.aws_route_table.main.id
  ])
  # An interface endpoint takes at most one subnet per availability zone.
  subnets_by_az     = { for id, subnet in data.aws_subnet.this : subnet.availability_zone => id... }
  interface_subnets = [for az in sort(keys(local.subnets_by_az)) : sort(local.subnets_by_az[az])[0]]
  # (service, client) pairs: who may reach each interface endpoint on 443
  endpoint_ingress = merge([
    for service in local.interface_services : {
      for name, client in var.clients : "${service}/${name}" => { service = service, security_group_id = client.security_group_id }
      if contains(client.services, service)
    }
  ]...)
}

resource "aws_vpc_endpoint" "s3" {
  count = contains(local.services, "s3") ? 1 : 0

  vpc_id            = var.vpc_id
  service_name      = "com.amazonaws.${local.region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = local.route_table_ids
  tags              = { Name = "${var.project}-s3" }
}

resource "aws_security_group" "endpoint" {
  for_each = local.interface_services

  name        = "${var.project}-endpoint-${each.key}"
  description = "Interface endpoint ${each.key}: HTTPS from the ${var.project} components that call it"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "endpoint" {
  for_each = local.endpoint_ingress

  security_group_id            = aws_security_group.endpoint[each.value.service].id
  description                  = "HTTPS to ${each.value.service} from ${split("/", each.key)[1]}"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = each.value.security_group_id
}

resource "aws_vpc_endpoint" "interface" {
  for_each = local.interface_services

  vpc_id              = var.vpc_id
  service_name        = "com.amazonaws.${local.region}.${each.key}"
  vpc_endpoint_type   = "Interface"
  private_dns_enabled = true
  subnet_ids          = local.interface_subnets
  security_group_ids  = [aws_security_group.endpoint[each.key].id]
  tags                = { Name = "${var.project}-${each.key}" }
}
