# The four buckets (datalake, ml-artifacts, recommendations, scripts), each a private bucket.
module "bucket" {
  source   = "./modules/bucket"
  for_each = local.bucket_names

  name                               = each.value
  kms_key_arn                        = var.kms_key_arn
  force_destroy                      = var.force_destroy_buckets
  noncurrent_version_expiration_days = var.noncurrent_version_expiration_days
}
