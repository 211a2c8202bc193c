"""The Firehose transformation Lambda: handler, model loading, fold-in and pgvector queries (ships as build/lambda.zip)."""
