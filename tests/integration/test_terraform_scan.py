"""checkov over ``terraform/``: a scan of the root with every phase on, and of each module alone.

Not a unit test: it needs the scanner from ``.venv-tools`` (``make install``) and takes tens of
seconds; the static checks of the same files are in ``tests/unit/test_terraform.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.environment("checkov")]  # not in `make test-fast` (pytest -m 'not slow')

ROOT = Path(__file__).resolve().parents[2]
TF = ROOT / "terraform"
TFVARS = (TF / "terraform.tfvars.example", TF / "all-phases.tfvars")  # root scan: every phase on
CHECKOV = ROOT / ".venv-tools" / "bin" / "checkov"
CHECKOV_CONFIG = TF / ".checkov.yaml"


def tf_dirs() -> list[Path]:
    """Every directory under terraform/ holding .tf files."""
    return sorted({p.parent for p in TF.rglob("*.tf") if ".terraform" not in p.parts})


CHECKOV_TARGETS = [pytest.param(TF, tuple(a for p in TFVARS for a in ("--var-file", str(p))), id="root-all-phases")] + [
    pytest.param(d, (), id=str(d.relative_to(TF))) for d in tf_dirs() if d != TF
]


@pytest.mark.parametrize("directory, extra", CHECKOV_TARGETS)
def test_checkov(directory, extra):
    """checkov on the root (every phase on, via the example tfvars) and on each module alone
    (module defaults that the root never overrides are only evaluated this way)."""
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV} not found: run `make install` (it creates .venv-tools with checkov; CI does too)")
    command = [
        str(CHECKOV),
        "-d",
        str(directory),
        *extra,
        "--framework",
        "terraform",
        "--config-file",
        str(CHECKOV_CONFIG),
        "-o",
        "json",
        "--quiet",
    ]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
        timeout=600,
        check=False,
    )
    report = json.loads(result.stdout)
    summary = report["summary"]
    assert summary["parsing_errors"] == 0 and summary["resource_count"] > 0, summary
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
        for c in report.get("results", {}).get("failed_checks", [])
    ]
    assert not failed, "checkov findings (fix them, or skip with a reason in terraform/.checkov.yaml):\n" + "\n".join(
        failed
    )
