"""The model math shared by training and serving, in plain numpy: ALS fold-in, the embedding
transform and the hybrid model's attribute prior. Ships in the Lambda zips; imports only numpy and
``recsys.contracts``."""
