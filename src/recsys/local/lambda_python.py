"""Which Python runs the Lambda's code locally: one of the runtime's own minor version, never another.

The deployment zip holds compiled wheels for ``contracts.LAMBDA_RUNTIME`` (cp313), so it runs only
under that Python minor, with what the Lambda runtime itself provides (``awslambdaric``, boto3):
``make install`` builds ``.venv-lambda`` from ``lambda/runtime-requirements.txt`` for that. The
interpreter comes from ``RECSYS_LAMBDA_PYTHON`` when set, else the first that fits of
``.venv-lambda/bin/python``, ``python3.13`` on PATH and pyenv's 3.13 installs. Anything else is one
``RecsysError`` line saying what is missing and how to get it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

from recsys import contracts
from recsys.core.config import PROJECT_ROOT, Settings
from recsys.core.errors import PipelineError, RecsysError

RUNTIME_VERSION: tuple[int, ...] = tuple(int(p) for p in contracts.LAMBDA_RUNTIME.removeprefix("python").split("."))
RUNTIME_MINOR = ".".join(map(str, RUNTIME_VERSION))  # "3.13"
LAMBDA_VENV = PROJECT_ROOT / ".venv-lambda"
RUNTIME_MODULES = ("awslambdaric", "boto3")  # what the Lambda runtime provides besides the zip
GET_PYTHON = (
    f"get Python {RUNTIME_MINOR} with `uv python install {RUNTIME_MINOR}`, `pyenv install {RUNTIME_MINOR}`, "
    f"`apt install python{RUNTIME_MINOR}-venv` (Debian 13, Ubuntu 24.04+) or `brew install "
    f"python@{RUNTIME_MINOR}`, then run `make install`"
)
_PROBE = (
    "import importlib.util, json, sys; print(json.dumps({'version': sys.version_info[:2], "
    "'missing': [m for m in sys.argv[1:] if importlib.util.find_spec(m) is None]}))"
)
_EXTENSION_ABI = re.compile(r"\.cpython-3(\d+)-")


class LambdaPythonMissing(RecsysError):
    """No interpreter of the Lambda runtime's Python minor (with the runtime's modules) was found."""


@cache
def probe(python: str) -> tuple[tuple[int, int], tuple[str, ...]] | None:
    """(version, runtime modules it lacks) of an interpreter; None when it does not run."""
    try:
        out = subprocess.run(
            [python, "-c", _PROBE, *RUNTIME_MODULES], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    found = json.loads(out.stdout)
    return tuple(found["version"]), tuple(found["missing"])


def candidates() -> list[str]:
    """Where a Python of the runtime's minor is looked for, in order (without RECSYS_LAMBDA_PYTHON)."""
    found = [str(LAMBDA_VENV / "bin" / "python")]
    on_path = shutil.which(f"python{RUNTIME_MINOR}")
    if on_path:
        found.append(on_path)
    found += [str(p) for p in sorted(Path.home().glob(f".pyenv/versions/{RUNTIME_MINOR}*/bin/python"), reverse=True)]
    return list(dict.fromkeys(found))


def _fits(python: str) -> str | None:
    """Why ``python`` cannot run the Lambda, or None when it can."""
    found = probe(python)
    if found is None:
        return f"{python} does not run"
    version, missing = found
    if version != RUNTIME_VERSION:
        return f"{python} is Python {version[0]}.{version[1]}, not {RUNTIME_MINOR}"
    if missing:
        return (
            f"{python} lacks {', '.join(missing)} (install lambda/runtime-requirements.txt into it, "
            "or run `make install`, which builds .venv-lambda)"
        )
    return None


def lambda_python(settings: Settings) -> str:
    """The interpreter that runs the Lambda locally; ``LambdaPythonMissing`` (one line) when there is none."""
    if settings.lambda_python is not None:
        problem = _fits(str(settings.lambda_python))
        if problem:
            raise LambdaPythonMissing(f"RECSYS_LAMBDA_PYTHON: {problem}; the Lambda runs {contracts.LAMBDA_RUNTIME}")
        return str(settings.lambda_python)
    problems = []
    for python in candidates():
        if Path(python).exists():
            problem = _fits(python)
            if problem is None:
                return python
            problems.append(problem)
    near = next((p for p in problems if " lacks " in p), None)
    if near:
        raise LambdaPythonMissing(f"the Lambda runs {contracts.LAMBDA_RUNTIME} locally under the same Python: {near}")
    raise LambdaPythonMissing(
        f"the Lambda runs {contracts.LAMBDA_RUNTIME} locally under the same Python, but no "
        f"Python {RUNTIME_MINOR} was found (RECSYS_LAMBDA_PYTHON, .venv-lambda, "
        f"python{RUNTIME_MINOR} on PATH, pyenv): {GET_PYTHON}"
    )


def code_python_version(code_dir: Path) -> tuple[int, int] | None:
    """The Python minor the compiled extensions in ``code_dir`` were built for (None: pure Python)."""
    for path in code_dir.rglob("*.so"):
        match = _EXTENSION_ABI.search(path.name)
        if match:
            return 3, int(match.group(1))
    return None


def python_version(python: str) -> tuple[int, int]:
    """The (major, minor) of an interpreter; ``LambdaPythonMissing`` when it does not run."""
    found = probe(python)
    if found is None:
        raise LambdaPythonMissing(f"{python} does not run")
    return found[0]


def check_code_matches(code_dir: Path, runs_on: tuple[int, int]) -> None:
    """``PipelineError`` when ``code_dir``'s compiled extensions were built for another Python minor than
    the interpreter it is about to run on (``runs_on``): a stale zip, or the wrong interpreter."""
    built_for = code_python_version(code_dir)
    if built_for is not None and built_for != tuple(runs_on):
        raise PipelineError(
            f"the Lambda code in {code_dir} was built for Python {built_for[0]}.{built_for[1]} and "
            f"cannot run on Python {runs_on[0]}.{runs_on[1]}; the runtime is {contracts.LAMBDA_RUNTIME}: "
            "rebuild the zip with `recsys lambda-zip`"
        )
