# Least-privilege role for the Glue job.

data "aws_iam_policy_document" "glue_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["glue.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

locals {
  ec2_arn  = "arn:${local.partition}:ec2:${local.region}:${local.account_id}"
  glue_arn = "arn:${local.partition}:glue:${local.region}:${local.account_id}"
  logs_arn = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/aws-glue/*"
}

# --- Glue job ---------------------------------------------------------------------------------
resource "aws_iam_role" "glue_job" {
  name               = "${var.project}-glue-job"
  description        = "Glue ETL job: read the MySQL secret and script, write the training set"
  assume_role_policy = data.aws_iam_policy_document.glue_assume.json
}

resource "aws_iam_role_policy" "glue_job" {
  name   = "etl"
  role   = aws_iam_role.glue_job.id
  policy = data.aws_iam_policy_document.glue_job.json
}

data "aws_iam_policy_document" "glue_job" {
  statement {
    sid       = "ReadScript"
    actions   = ["s3:GetObject"]
    resources = ["${module.bucket["scripts"].arn}/${local.script_key}", "${module.bucket["scripts"].arn}/${local.job_modules_key}"]
  }

  statement {
    sid       = "ListOwnBuckets"
    actions   = ["s3:ListBucket"]
    resources = [module.bucket["datalake"].arn, module.bucket["scripts"].arn]
  }

  statement {
    sid     = "WriteTrainingSetAndTemp"
    actions = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = [
      "${module.bucket["datalake"].arn}/${local.training_dir}*", # also EMRFS "_$folder$" markers
      "${module.bucket["scripts"].arn}/${local.temp_dir}*",
    ]
  }

  statement {
    sid       = "ReadSourceCredentials"
    actions   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    resources = [var.source_db_secret_arn]
  }

  statement {
    sid = "PointCatalogAtSnapshot" # CreateTable: the job recreates the table if it was deleted
    actions = [
      "glue:GetTable",
      "glue:CreateTable",
      "glue:UpdateTable",
      "glue:GetPartitions",
      "glue:BatchCreatePartition",
      "glue:BatchDeletePartition",
    ]
    resources = [
      "${local.glue_arn}:catalog",
      "${local.glue_arn}:database/${aws_glue_catalog_database.this.name}",
      "${local.glue_arn}:table/${aws_glue_catalog_database.this.name}/${aws_glue_catalog_table.training_set.name}",
    ]
  }

  # A source secret encrypted with a customer-managed key: Secrets Manager decrypts it as the job.
  dynamic "statement" {
    for_each = var.source_db_secret_kms_key_arn == null ? [] : [var.source_db_secret_kms_key_arn]
    content {
      sid       = "DecryptSourceSecret"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]
      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["secretsmanager.${local.region}.amazonaws.com"]
      }
    }
  }

  statement {
    sid       = "UseConnection"
    actions   = ["glue:GetConnection"]
    resources = ["${local.glue_arn}:catalog", "${local.glue_arn}:connection/${aws_glue_connection.source.name}"]
  }

  statement {
    sid       = "UseKey"
    actions   = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
  }

  statement {
    sid       = "WriteLogs"
    actions   = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:AssociateKmsKey"]
    resources = [local.logs_arn, "${local.logs_arn}:*"]
  }

  statement {
    sid       = "PublishGlueMetrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"] # PutMetricData has no resource type; scoped by namespace
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = ["Glue"]
    }
  }

  statement {
    sid = "DescribeNetwork"
    # Describe* actions do not support resource-level permissions.
    actions = [
      "ec2:DescribeNetworkInterfaces",
      "ec2:DescribeSecurityGroups",
      "ec2:DescribeSubnets",
      "ec2:DescribeVpcEndpoints",
      "ec2:DescribeRouteTables",
    ]
    resources = ["*"]
  }

  statement {
    sid       = "DescribeConnectionVpc"
    actions   = ["ec2:DescribeVpcAttribute"]
    resources = ["${local.ec2_arn}:vpc/${data.aws_subnet.source.vpc_id}"]
  }

  statement {
    sid     = "ConnectionNetworkInterfaces"
    actions = ["ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface", "ec2:CreateTags", "ec2:DeleteTags"]
    resources = [
      "${local.ec2_arn}:network-interface/*",
      "${local.ec2_arn}:subnet/${var.source_db_subnet_id}",
      "${local.ec2_arn}:security-group/${aws_security_group.glue_connection.id}",
    ]
  }
}
