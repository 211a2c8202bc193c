"""The batch pipeline: Glue job runner, training-set reader, trainer and evaluation, model artifacts,
vector-DB loader. Runs the same against AWS or the local stack; never imports ``recsys.local``."""
