"""Serving: the Firehose transformation Lambda and the recommendations API over the live model in
pgvector (event validation, model cache, recommendation building, database access). Ships in the
Lambda zips with ``recsys.model`` and ``recsys.contracts``, and imports nothing else of ``recsys``."""
