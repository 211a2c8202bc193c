"""Tests that depend on an optional part of the environment (a Docker engine, Chromium, root, the
Lambda's Python 3.13, node, ...) say so with ``@pytest.mark.environment("<what>")`` (``needs`` adds
the skip too). At the end of the run one line says, per part, how many of its tests ran and how many
were skipped and why, so that a green run that could not check something says so.

A pytest plugin (``pytest_plugins`` in tests/conftest.py).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from typing import TypeVar

import pytest

MARK = "environment"
T = TypeVar("T")


def needs(what: str, available: bool, reason: str) -> Callable[[T], T]:
    """Decorator: the test needs ``what``, and is skipped with ``reason`` when it is not ``available``."""

    def decorate(test: T) -> T:
        return pytest.mark.skipif(not available, reason=reason)(pytest.mark.environment(what)(test))

    return decorate


def summary_line(ran: Counter, skipped: dict[str, Counter]) -> str | None:
    """``environment-dependent tests: docker 0 ran, 2 skipped (no Docker engine ...); root 4 ran``."""
    texts = []
    for name in sorted(set(ran) | set(skipped)):
        text = f"{name} {ran[name]} ran"
        if skipped.get(name):
            text += f", {sum(skipped[name].values())} skipped ({'; '.join(skipped[name])})"
        texts.append(text)
    return "environment-dependent tests: " + "; ".join(texts) if texts else None


class EnvironmentReport:
    """Counts the marked tests' outcomes per part of the environment."""

    def __init__(self) -> None:
        self.parts: dict[str, list[str]] = {}  # node id -> what it needs
        self.ran: Counter = Counter()
        self.skipped: dict[str, Counter] = defaultdict(Counter)

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            names = [str(mark.args[0]) for mark in item.iter_markers(MARK) if mark.args]
            if names:
                self.parts[item.nodeid] = names

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        names = self.parts.get(report.nodeid, [])
        if report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            for name in names:
                self.skipped[name][reason.removeprefix("Skipped: ")] += 1
        elif report.when == "call":
            for name in names:
                self.ran[name] += 1

    def pytest_terminal_summary(self, terminalreporter) -> None:
        line = summary_line(self.ran, self.skipped)
        if line:
            terminalreporter.write_line(line)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARK}(what): needs an optional part of the environment "
        "(the run ends with a line saying which of these ran or were skipped)",
    )
    config.pluginmanager.register(EnvironmentReport(), "recsys-environment-report")
