"""Offline evaluation and tuning (docs/evaluation.md): split events, train on the earlier part,
query as the live service would, score the held-out items; choose settings on a validation
split; draw metric-versus-k charts.

It may depend on indicators/, indexer/ and query/; query/ (the serving layer) never imports it.
Importing it imports no pyspark: only the functions that split and train import Spark, inside
their bodies.
"""
