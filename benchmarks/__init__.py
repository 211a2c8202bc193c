"""The benchmarks: run each as a module from the repository root, ``python -m benchmarks.bench_<name>``
(``make bench`` runs them all), so they import ``tests.support`` and each other without path edits."""
