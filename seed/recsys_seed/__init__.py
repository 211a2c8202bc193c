"""Faker seeder for the MySQL source: classicmodels-shaped tables with planted, learnable tastes.

``seed_source`` fills the configured database; ``source_spec`` reads back which arguments seeded it,
and ``planted_truth`` regenerates the generating model from them.
"""
from recsys_seed.generate import PlantedTruth, SeedSpec, planted_truth
from recsys_seed.seeder import SeedSummary, seed_source, source_spec

__all__ = ["PlantedTruth", "SeedSpec", "SeedSummary", "planted_truth", "seed_source", "source_spec"]
