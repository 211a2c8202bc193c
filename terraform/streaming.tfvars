# Phase 3 (streaming) on top of phases 1 and 2: `terraform apply -var-file=streaming.tfvars` after
# `make lambda-zip`. The API (phase 4) stays off: all-phases.tfvars adds it, after `make api-zip`.
enable_etl       = true
enable_vector_db = true
enable_streaming = true
enable_api       = false
