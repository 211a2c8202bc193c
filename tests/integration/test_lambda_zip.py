"""The deployment zip for the python3.13 runtime: cp313 wheels, the same bytes whichever interpreter
path ran pip, and it imports and answers under Python 3.13 with the runtime's modules (awslambdaric).
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from recsys import contracts
from recsys.core.config import load_settings
from recsys.deploy.lambda_zip import LAMBDA_DIR, install_dependencies, write_deterministic_zip, zip_entries
from recsys.local.firehose.invokers import unpack_zip
from recsys.local.lambda_python import lambda_python
from recsys.local.lambda_runtime import LocalLambda

pytestmark = [pytest.mark.slow, pytest.mark.environment("lambda-python3.13")]  # not in `make test-fast`


def test_zip_holds_cp313_wheels_and_no_unused_adapter(streaming_zip):
    names = zipfile.ZipFile(streaming_zip).namelist()
    extensions = [n for n in names if n.endswith(".so") and ".cpython-" in n]
    assert extensions and all(".cpython-313-x86_64-linux-gnu.so" in n for n in extensions), extensions[:3]
    assert any(n.startswith("numpy-2.5.5.dist-info/") for n in names)
    assert not any(n.startswith("pgvector") for n in names), "the Lambda sends vectors as text: no adapter"


def test_zip_bytes_do_not_depend_on_where_the_building_python_lives(streaming_zip, tmp_path):
    """pip writes the running interpreter's path into console-script shebangs and their RECORD hashes;
    a build from a venv at another path must still give the same zip."""
    other = tmp_path / "another" / "path" / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(other)], check=True)
    site = next(other.glob("lib/python*/site-packages"))
    (site / "project-pip.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # the project's pip, run from there
    deps = install_dependencies(
        LAMBDA_DIR / "requirements.txt", tmp_path / "deps", force=True, python=str(other / "bin" / "python")
    )
    assert str(other) in (deps / "bin" / "f2py").read_text(), "pip wrote this interpreter's path into the script"
    rebuilt = write_deterministic_zip(zip_entries(deps), tmp_path / "lambda.zip")
    assert rebuilt.path.read_bytes() == streaming_zip.read_bytes()


def test_zip_imports_and_answers_under_the_runtime_python(streaming_zip, tmp_path):
    """Cold start of the real handler under Python 3.13 + awslambdaric: every record of a batch of
    malformed events comes back ProcessingFailed (no model or DB needed to decide that)."""
    python = lambda_python(load_settings())
    code = unpack_zip(streaming_zip, tmp_path / "unpacked")
    event = {
        "invocationId": "i",
        "deliveryStreamArn": "arn:aws:firehose:us-east-1:1:deliverystream/x",
        "region": "us-east-1",
        "records": [
            {
                "recordId": "r1",
                "data": "bm90IGpzb24=",  # "not json"
                "approximateArrivalTimestamp": 0,
            }
        ],
    }
    with LocalLambda(
        code,
        contracts.LAMBDA_HANDLER,
        {"AWS_DEFAULT_REGION": "us-east-1"},
        python=python,
        log_file=tmp_path / "lambda.log",
    ) as fn:
        result = fn.invoke(json.dumps(event).encode())
    assert result.ok, result.error()
    assert [r["result"] for r in json.loads(result.payload)["records"]] == [contracts.RESULT_FAILED]
