# Every phase on: `terraform apply -var-file=all-phases.tfvars` (after terraform.tfvars), which needs
# both zips: `make lambda-zip api-zip`. The static checks run checkov with terraform.tfvars.example
# plus this file, so every module is evaluated with its inputs.
enable_etl       = true
enable_vector_db = true
enable_streaming = true
enable_api       = true
enable_pipeline  = true
