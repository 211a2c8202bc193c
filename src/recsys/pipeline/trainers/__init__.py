"""The training half of each model kind (fit, evaluation rankers, published model), one module per
kind, chosen by ``registry.TRAINERS``; the serving half is ``recsys.model`` (numpy only)."""
