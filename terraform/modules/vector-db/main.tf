# Phase 2: RDS PostgreSQL 17 with pgvector, private, encrypted, password managed by RDS in
# Secrets Manager, and an IAM role so aws_s3.table_import_from_s3 reads the ml-artifacts bucket.

data "aws_region" "current" {}
data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  identifier = "${var.project}-vector-db"
  port       = 5432
  log_types  = ["postgresql", "upgrade"]

  # Memory for the HNSW indexes: the rule of recsys.pipeline.vector_load.memory_settings, which the
  # loader applies to the embedded server and reports for RDS ("size the server's parameters to at
  # least ..."). shared_buffers keeps the indexes (+25% for heap pages of the hits and the next
  # version's build, +128 MB) in PostgreSQL's own cache: at 1M x 64-d the 0.55 GB index did not fit
  # 256 MB and p50 at ef_search 250 doubled (docs/vectordb.md). effective_cache_size: shared_buffers +
  # twice the indexes, at least PostgreSQL's 4 GB. maintenance_work_mem: twice the largest index + 64 MB,
  # so the HNSW graph is built in memory. Each is capped by a share of the instance's RAM (40%, 75%,
  # 25%) with RDS's DBInstanceClassMemory formula; pick an instance class whose share covers them
  # (db.t4g.micro's 1 GB does not for a million items; db.t4g.large's 8 GB does).
  shared_buffers_mb       = max(256, ceil((var.hnsw_index_mb * 1.25 + 128) / 64) * 64)
  effective_cache_size_mb = max(4096, local.shared_buffers_mb + ceil(2 * var.hnsw_index_mb / 64) * 64)
  maintenance_work_mem_mb = max(64, ceil((2 * var.hnsw_largest_index_mb + 64) / 64) * 64)

  # RAM of an instance class: GiB by size for the burstable (t) and general-purpose (m) families,
  # twice that for memory-optimised (r); null for any other class (the check below stays silent).
  instance_size_gib = {
    micro      = 1, small = 2, medium = 4, large = 8, xlarge = 16, "2xlarge" = 32, "4xlarge" = 64, "8xlarge" = 128,
    "12xlarge" = 192, "16xlarge" = 256, "24xlarge" = 384,
  }
  instance_family_factor = { t = 1, m = 1, r = 2 }
  instance_class_parts   = try(regex("^db\\.([a-z])[0-9]+[a-z]*\\.([a-z0-9]+)$", var.instance_class), ["", ""])
  instance_memory_mb = try(
    local.instance_size_gib[local.instance_class_parts[1]] * 1024 * local.instance_family_factor[local.instance_class_parts[0]],
    null,
  )
}

# S3's address ranges in this region: egress for table_import_from_s3 (gateway endpoint or NAT).
data "aws_ec2_managed_prefix_list" "s3" {
  name = "com.amazonaws.${data.aws_region.current.name}.s3"
}

resource "aws_db_subnet_group" "this" {
  name        = local.identifier
  description = "Private subnets of ${local.identifier}"
  subnet_ids  = var.subnet_ids
}

resource "aws_security_group" "db" {
  name        = local.identifier
  description = "PostgreSQL ${local.identifier}: 5432 from its clients only"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "clients" {
  for_each = var.client_security_group_ids

  security_group_id            = aws_security_group.db.id
  description                  = "PostgreSQL from ${each.key}"
  ip_protocol                  = "tcp"
  from_port                    = local.port
  to_port                      = local.port
  referenced_security_group_id = each.value
}

resource "aws_vpc_security_group_egress_rule" "s3" {
  security_group_id = aws_security_group.db.id
  description       = "HTTPS to S3 for aws_s3.table_import_from_s3"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  prefix_list_id    = data.aws_ec2_managed_prefix_list.s3.id
}

resource "aws_db_parameter_group" "this" {
  name        = local.identifier
  family      = "postgres17"
  description = "${local.identifier}: TLS only, statement logging, memory sized for the HNSW indexes"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  parameter {
    name  = "log_statement"
    value = "ddl"
  }

  parameter {
    name  = "log_min_duration_statement"
    value = tostring(var.slow_query_ms)
  }

  # Units: shared_buffers and effective_cache_size in 8 kB pages, maintenance_work_mem in kB.
  parameter {
    name         = "shared_buffers"
    value        = "LEAST({DBInstanceClassMemory/20480},${local.shared_buffers_mb * 128})"
    apply_method = "pending-reboot" # static: applies at the next reboot
  }

  parameter {
    name  = "effective_cache_size"
    value = "LEAST({DBInstanceClassMemory*3/32768},${local.effective_cache_size_mb * 128})"
  }

  parameter {
    name  = "maintenance_work_mem"
    value = "LEAST({DBInstanceClassMemory/4096},${local.maintenance_work_mem_mb * 1024})"
  }

  parameter {
    name  = "max_parallel_maintenance_workers"
    value = "2"
  }
}

# RDS creates these on first export; declaring them first sets retention and the key.
resource "aws_cloudwatch_log_group" "exports" {
  for_each = toset(local.log_types)

  name              = "/aws/rds/instance/${local.identifier}/${each.value}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

resource "aws_db_instance" "this" {
  identifier     = local.identifier
  engine         = "postgres"
  engine_version = var.engine_version
  instance_class = var.instance_class
  port           = local.port

  allocated_storage     = var.allocated_storage
  max_allocated_storage = var.max_allocated_storage
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = var.kms_key_arn

  db_name                             = var.db_name
  username                            = var.username
  manage_master_user_password         = true
  master_user_secret_kms_key_id       = var.kms_key_arn
  iam_database_authentication_enabled = var.iam_database_authentication_enabled

  db_subnet_group_name   = aws_db_subnet_group.this.name
  vpc_security_group_ids = [aws_security_group.db.id]
  publicly_accessible    = false
  multi_az               = var.multi_az
  parameter_group_name   = aws_db_parameter_group.this.name
  ca_cert_identifier     = "rds-ca-rsa2048-g1"

  backup_retention_period = var.backup_retention_period
  copy_tags_to_snapshot   = true
  deletion_protection     = var.deletion_protection
  skip_final_snapshot     = var.skip_final_snapshot
  # Unique per instance (the time of its creation plan): a second destroy of a re-created DB does
  # not collide with the first one's snapshot.
  final_snapshot_identifier = "${local.identifier}-final-${formatdate("YYYYMMDDhhmmss", plantimestamp())}"

  auto_minor_version_upgrade      = true
  enabled_cloudwatch_logs_exports = local.log_types
  performance_insights_enabled    = var.performance_insights_enabled
  performance_insights_kms_key_id = var.performance_insights_enabled ? var.kms_key_arn : null
  monitoring_interval             = var.monitoring_interval
  monitoring_role_arn             = var.monitoring_interval > 0 ? aws_iam_role.monitoring.arn : null

  depends_on = [aws_cloudwatch_log_group.exports, aws_iam_role_policy_attachment.monitoring]

  lifecycle {
    ignore_changes = [final_snapshot_identifier] # keep the creation-time name, not a new one per plan
  }
}

# The parameter group caps each memory setting at a share of the instance's RAM: an instance class
# too small for the indexes still starts, but the HNSW graph no longer stays in shared_buffers and
# queries read it from disk (p50 doubled at 1M items, docs/vectordb.md). Said at plan time:
check "instance_memory_holds_the_hnsw_indexes" {
  assert {
    condition     = local.instance_memory_mb == null || local.shared_buffers_mb <= 0.4 * local.instance_memory_mb
    error_message = "db_instance_class ${var.instance_class} (${coalesce(local.instance_memory_mb, 0)} MB) cannot keep ${var.hnsw_index_mb} MB of HNSW indexes in shared_buffers (${local.shared_buffers_mb} MB needed, 40% of RAM available): choose a class with at least ${ceil(local.shared_buffers_mb / 0.4 / 1024)} GiB or lower db_hnsw_index_mb to what `recsys load-embeddings` reports."
  }
}

resource "aws_db_instance_role_association" "s3_import" {
  db_instance_identifier = aws_db_instance.this.identifier
  feature_name           = "s3Import"
  role_arn               = aws_iam_role.s3_import.arn
}
