"""recsys: a two-speed recommender pipeline that runs whole on a laptop and deploys unchanged to AWS.

Subpackages by where their code runs: ``core`` (configuration, AWS and database access, errors),
``pipeline`` (the batch stages: ETL runner, training set, trainer, artifacts, vector-DB loader),
``local`` (what stands in for AWS on a laptop: embedded stack, Firehose delivery, Lambda runtime),
``deploy`` (what gets built for AWS), ``apps`` (demo, report, web page, replay producer) and
``cli`` on top. ``contracts`` is the one definition of every key and name shared between stages.
"""

import os

# Before anything loads numpy: implicit's ALS is slower, and warns, with threaded OpenBLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
