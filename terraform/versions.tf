terraform {
  # 1.10+: S3 backend native locking (use_lockfile) and cross-variable validation.
  required_version = ">= 1.10.0, < 2.0.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.99" # the schema tests/unit/test_terraform_schema.py checks against: 5.99.1
    }
    archive = {
      source  = "hashicorp/archive"
      version = "~> 2.7"
    }
  }
}
