"""The locked requirements (requirements/*.txt, written by `make lock`) still satisfy pyproject.toml.

A dependency added or a range moved in pyproject.toml without `make lock` fails here, before an
install from the lock would quietly run other versions than the project declares.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
RUNTIME_LOCK = REPO / "requirements" / "runtime.txt"
DEV_LOCK = REPO / "requirements" / "dev.txt"
# the environment the lock is resolved for (Makefile: UV_COMPILE)
TARGET = {
    "python_version": "3.11",
    "python_full_version": "3.11.11",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==(\S+)")


def pins(lock: Path) -> dict[str, str]:
    """Canonical name -> pinned version; every pin carries at least one sha256."""
    found: dict[str, str] = {}
    entries = re.split(r"\n(?=\S)", lock.read_text())
    for entry in entries:
        match = PIN.match(entry)
        if match is None:
            assert entry.startswith("#") or not entry.strip(), f"{lock.name}: not a pin: {entry[:80]!r}"
            continue
        assert "--hash=sha256:" in entry, f"{lock.name}: {match[1]} has no hash"
        found[canonicalize_name(match[1])] = match[3]
    return found


def declared(*extras: str) -> list[Requirement]:
    project = PYPROJECT["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in extras:
        reqs += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return [r for r in reqs if r.marker is None or r.marker.evaluate(TARGET)]


@pytest.mark.parametrize("lock, extras", [(RUNTIME_LOCK, ()), (DEV_LOCK, ("test", "lint"))])
def test_every_declared_dependency_is_pinned_within_its_range(lock, extras):
    locked = pins(lock)
    for req in declared(*extras):
        name = canonicalize_name(req.name)
        assert name in locked, f"{req.name} is declared but not in {lock.name}: run `make lock`"
        assert req.specifier.contains(locked[name], prereleases=True), (
            f"{lock.name} pins {req.name}=={locked[name]}, outside {req.specifier}: run `make lock`"
        )


def test_the_runtime_lock_holds_no_test_or_lint_tool():
    tools = {"pytest", "ruff", "mypy", "pre-commit", "uv", "selenium", "schemathesis"}
    assert tools <= {canonicalize_name(r.name) for r in declared("test", "lint")}
    assert not tools & pins(RUNTIME_LOCK).keys(), "the image's lock installs test or lint tools"


def test_the_dev_lock_pins_the_runtime_as_the_image_does():
    runtime, dev = pins(RUNTIME_LOCK), pins(DEV_LOCK)
    differ = {name: (version, dev.get(name)) for name, version in runtime.items() if dev.get(name) != version}
    assert not differ, f"requirements/dev.txt and runtime.txt disagree (run `make lock`): {differ}"
