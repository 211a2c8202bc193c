"""recsys: a two-speed recommender pipeline that runs whole on a laptop and deploys unchanged to AWS."""

__version__ = "0.1.0"
