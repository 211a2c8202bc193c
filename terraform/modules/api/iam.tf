# --- the function's role: read model artifacts and the DB secret, run in the VPC, logs, traces ---
data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "api" {
  name               = local.function_name
  description        = "Recommendations API Lambda: read model artifacts and the DB secret"
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

resource "aws_iam_role_policy" "api" {
  name   = "api"
  role   = aws_iam_role.api.id
  policy = data.aws_iam_policy_document.api.json
}

data "aws_iam_policy_document" "api" {
  # Without s3:ListBucket, S3 answers a missing key (no model published yet) with 403 AccessDenied
  # instead of 404 NoSuchKey, and /health could not tell "no model" (503) from a fault.
  statement {
    sid       = "ListModels"
    actions   = ["s3:ListBucket"]
    resources = [var.artifacts_bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["models/*"]
    }
  }

  statement {
    sid       = "ReadModels" # models/serving.json and models/<version>/ (fold-in, popular fallback)
    actions   = ["s3:GetObject"]
    resources = ["${var.artifacts_bucket_arn}/models/*"]
  }

  statement {
    sid       = "ReadDbSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [var.db_secret_arn]
  }

  statement {
    sid       = "DecryptArtifactsSecretAndEnvironment"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
  }

  statement {
    sid       = "WriteLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.api.arn}:*"]
  }

  # What AWSLambdaVPCAccessExecutionRole would grant, without its logs:* on every log group: the
  # network interfaces Lambda creates for the function in its subnets with its security group.
  statement {
    sid       = "DescribeNetwork" # Describe* actions have no resource-level permissions
    actions   = ["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups", "ec2:DescribeVpcs"]
    resources = ["*"]
  }

  statement {
    sid     = "ManageFunctionNetworkInterfaces"
    actions = ["ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"]
    resources = concat(
      ["${local.ec2_arn}:network-interface/*", "${local.ec2_arn}:security-group/${aws_security_group.api.id}"],
      [for id in var.subnet_ids : "${local.ec2_arn}:subnet/${id}"],
    )
  }

  statement {
    sid       = "WriteTraces"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"] # X-Ray has no resource-level permissions for these actions
  }
}

# --- who may call the URL: a managed policy to attach to callers' roles ------------------------
# Since October 2025 a function URL call needs lambda:InvokeFunctionUrl and lambda:InvokeFunction;
# the latter is limited to calls that come through the URL. Same-account identity policies need no
# resource-based permission on the function.
data "aws_iam_policy_document" "invoke" {
  statement {
    sid       = "CallTheUrl"
    actions   = ["lambda:InvokeFunctionUrl"]
    resources = [aws_lambda_function.api.arn]
    condition {
      test     = "StringEquals"
      variable = "lambda:FunctionUrlAuthType"
      values   = ["AWS_IAM"]
    }
  }

  statement {
    sid       = "InvokeThroughTheUrlOnly"
    actions   = ["lambda:InvokeFunction"]
    resources = [aws_lambda_function.api.arn]
    condition {
      test     = "Bool"
      variable = "lambda:InvokedViaFunctionUrl"
      values   = ["true"]
    }
  }
}

resource "aws_iam_policy" "invoke" {
  name        = "${local.function_name}-invoke"
  description = "Call the recommendations API's function URL (SigV4)"
  policy      = data.aws_iam_policy_document.invoke.json
}

resource "aws_iam_role_policy_attachment" "invokers" {
  for_each   = toset(var.invoker_role_names)
  role       = each.value
  policy_arn = aws_iam_policy.invoke.arn
}
