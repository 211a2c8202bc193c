"""What the tests and the benchmarks share: the integration fixtures (``fixtures_*``, loaded as pytest
plugins by ``tests/conftest.py``), the helpers behind them (model publishers, the poison run) and the
in-memory training set of the seeder (``seeded_tables``).

Importable as ``tests.support`` from the repository root: pytest puts it on ``sys.path``
(``pythonpath`` in pyproject.toml) and the benchmarks run as modules from there
(``python -m benchmarks.bench_train``).
"""
