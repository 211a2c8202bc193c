"""The Lambda as deployed: built for its runtime's Python (python3.13, cp313 manylinux x86_64 wheels),
and run locally only under that same Python minor (``recsys.local.lambda_python``).

Real interpreters are used: the project's (3.11), ``.venv-lambda``'s (3.13, ``make install``) and a
bare 3.13 venv without the runtime's modules.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import pytest

from recsys import contracts
from recsys.core.config import load_settings
from recsys.core.errors import PipelineError
from recsys.deploy import lambda_zip
from recsys.local import lambda_python as lp
from recsys.local.lambda_runtime import LocalLambda

REPO = Path(__file__).resolve().parents[2]


def settings(tmp_path, **env):
    return load_settings({"RECSYS_STATE_DIR": str(tmp_path), **env})


@pytest.fixture(scope="module")
def runtime_python() -> str:
    """The Python 3.13 with awslambdaric and boto3 that ``make install`` builds (.venv-lambda)."""
    try:
        return lp.lambda_python(load_settings({"RECSYS_STATE_DIR": "/nonexistent"}))
    except lp.LambdaPythonMissing as exc:
        pytest.skip(f"no Lambda runtime Python here: {exc}")


def test_runtime_is_python313_everywhere_it_is_named():
    assert contracts.LAMBDA_RUNTIME == "python3.13" and lp.RUNTIME_VERSION == (3, 13)
    assert lambda_zip.RUNTIME_PYTHON == "3.13"
    requirements = (REPO / "lambda" / "requirements.txt").read_text()
    assert "python3.13" in requirements and "python3.11" not in requirements


def test_pip_flags_name_every_manylinux_tag_of_amazon_linux_2023():
    platforms = [a for flag, a in itertools.pairwise(lambda_zip.PIP_PLATFORM_ARGS) if flag == "--platform"]
    assert platforms[0] == "manylinux_2_34_x86_64" and platforms[-2:] == [
        "manylinux_2_17_x86_64",
        "manylinux2014_x86_64",
    ]
    assert len(platforms) == 34 - 17 + 2
    args = " ".join(lambda_zip.PIP_PLATFORM_ARGS)
    assert "--python-version 3.13 --implementation cp" in args and "--only-binary=:all:" in args


def test_old_pip_is_refused_with_one_line(tmp_path):
    no_pip = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(no_pip)], check=True)
    with pytest.raises(PipelineError) as error:
        lambda_zip.check_pip_version(str(no_pip / "bin" / "python"))
    assert "need pip >= 24.2" in str(error.value) and "\n" not in str(error.value)
    lambda_zip.check_pip_version(sys.executable)  # the project venv's pip (make install upgrades it)


def test_record_lists_only_shipped_files():
    record = (
        b"../../bin/f2py,sha256=abc,200\n"
        b"numpy/__init__.py,sha256=def,10\n"
        b"numpy/__pycache__/__init__.cpython-313.pyc,,\n"
        b"numpy-2.5.5.dist-info/RECORD,,\n"
    )
    shipped = {"numpy/__init__.py", "numpy-2.5.5.dist-info/RECORD"}
    assert lambda_zip.shipped_record(record, shipped) == (
        b"numpy/__init__.py,sha256=def,10\nnumpy-2.5.5.dist-info/RECORD,,\n"
    )


def test_the_project_python_is_refused_for_the_lambda(tmp_path):
    with pytest.raises(lp.LambdaPythonMissing) as error:
        lp.lambda_python(settings(tmp_path, RECSYS_LAMBDA_PYTHON=sys.executable))
    message = str(error.value)
    assert f"is Python {sys.version_info[0]}.{sys.version_info[1]}, not 3.13" in message and "\n" not in message


@pytest.mark.environment("lambda-python3.13")
def test_a_python313_without_the_runtime_modules_is_refused(tmp_path, runtime_python):
    bare = tmp_path / "bare313"
    subprocess.run([runtime_python, "-m", "venv", "--without-pip", str(bare)], check=True)
    with pytest.raises(lp.LambdaPythonMissing) as error:
        lp.lambda_python(settings(tmp_path, RECSYS_LAMBDA_PYTHON=str(bare / "bin" / "python")))
    assert "lacks awslambdaric, boto3" in str(error.value)


def test_no_python313_at_all_says_how_to_get_one_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(lp, "candidates", lambda: [str(tmp_path / "nothing" / "python")])
    with pytest.raises(lp.LambdaPythonMissing) as error:
        lp.lambda_python(settings(tmp_path))
    message = str(error.value)
    assert "no Python 3.13 was found" in message and "\n" not in message
    assert "uv python install 3.13" in message and "pyenv install 3.13" in message


@pytest.mark.environment("lambda-python3.13")
def test_discovery_finds_the_runtime_python(runtime_python):
    assert lp.probe(runtime_python) == ((3, 13), ())


def _fake_extension(code_dir: Path, tag: str) -> Path:
    path = code_dir / "numpy" / "_core" / f"_multiarray_umath.cpython-{tag}-x86_64-linux-gnu.so"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    return code_dir


def test_a_cp313_package_never_runs_on_another_python(tmp_path):
    code = _fake_extension(tmp_path / "code", "313")
    with pytest.raises(PipelineError) as error:
        LocalLambda(code, contracts.LAMBDA_HANDLER, {})  # the project's Python (3.11) by default
    assert "built for Python 3.13 and cannot run on Python 3.11" in str(error.value)


@pytest.mark.environment("lambda-python3.13")
def test_a_stale_cp311_zip_is_refused_by_the_runtime_python(tmp_path, runtime_python):
    code = _fake_extension(tmp_path / "code", "311")
    with pytest.raises(PipelineError) as error:
        LocalLambda(code, contracts.LAMBDA_HANDLER, {}, python=runtime_python)
    assert "rebuild the zip with `recsys lambda-zip`" in str(error.value)


def test_the_zips_ship_only_the_model_and_serving_parts_of_recsys(tmp_path):
    """The zip builder selects what the Lambdas import (contracts, model, serving) and nothing else of
    recsys; with only that on the path (no editable install), both handlers import."""
    deps = tmp_path / "deps"
    deps.mkdir()
    names = [name for name, _ in lambda_zip.zip_entries(deps)]
    ours = {name.split("/")[1] for name in names if name.startswith("recsys/")}
    assert ours == {"__init__.py", "contracts.py", "model", "serving"}, ours
    assert "recsys/serving/handler.py" in names and "recsys/model/foldin.py" in names
    code = tmp_path / "code"
    for name, path in lambda_zip.zip_entries(deps):
        (code / name).parent.mkdir(parents=True, exist_ok=True)
        (code / name).write_bytes(path.read_bytes())
    # -S: no site-packages .pth files, so the editable recsys is not importable; the runtime's
    # libraries come from the project venv's site-packages, appended after the unpacked code
    site = next(Path(sys.prefix).glob("lib/python*/site-packages"))
    check = (
        "import sys; sys.path[:] = [sys.argv[1], *sys.path, sys.argv[2]]; "
        "import recsys.serving.handler, recsys.serving.api_handler, recsys; "
        "assert recsys.__file__.startswith(sys.argv[1]), recsys.__file__; "
        "assert 'recsys.core' not in sys.modules and 'recsys.pipeline' not in sys.modules"
    )
    proc = subprocess.run(
        [sys.executable, "-S", "-c", check, str(code), str(site)],
        capture_output=True,
        text=True,
        env={"AWS_DEFAULT_REGION": "us-east-1", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
