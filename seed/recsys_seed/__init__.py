"""Faker seeder for the MySQL source and synthetic activity events, with planted, learnable tastes.

``seed_source`` fills a database; ``source_spec`` reads back which arguments seeded it, and
``planted_truth`` regenerates the generating model from them (the evaluation's ceiling);
``synthesize_events`` draws activity events from it. Independent of ``recsys``: callers pass a
connection (or a function that makes one).
"""

from recsys_seed.events import POISON_KINDS, Catalogue, load_catalogue, poison_record, poison_records, synthesize_events
from recsys_seed.generate import PlantedTruth, SeedSpec, planted_truth
from recsys_seed.seeder import SeedError, SeedSummary, seed_source, source_spec

__all__ = [
    "POISON_KINDS",
    "Catalogue",
    "PlantedTruth",
    "SeedError",
    "SeedSpec",
    "SeedSummary",
    "load_catalogue",
    "planted_truth",
    "poison_record",
    "poison_records",
    "seed_source",
    "source_spec",
    "synthesize_events",
]
