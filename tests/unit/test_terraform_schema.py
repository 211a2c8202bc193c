"""terraform/ against the AWS provider's schema, in place of `terraform validate` (no provider can be
downloaded here): every resource and data block's arguments and nested blocks exist in the schema,
and the required ones are present.

The schema is extracted from the prebuilt CDK for Terraform binding ``@cdktf/provider-aws`` at the
provider version terraform/versions.tf pins (``tests/tools/aws_provider_schema.py``, ``make
provider-schema``) into ``tests/unit/data/aws_provider_schema.json``, which holds the types used here.
Value types and cross-argument rules (ConflictsWith, ExactlyOneOf) are not checked.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_terraform import TF, load_hcl
from tests.tools import aws_provider_schema

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = Path(__file__).parent / "data" / "aws_provider_schema.json"

META = {
    "resource": {"count", "for_each", "depends_on", "provider", "lifecycle", "provisioner", "connection"},
    "data": {"count", "for_each", "depends_on", "provider", "lifecycle"},
}
TF_FILES = sorted(p for p in TF.rglob("*.tf") if ".terraform" not in p.parts)


def schema() -> dict:
    return json.loads(SCHEMA_FILE.read_text())


def block_problems(body: dict, spec: dict, where: str, meta: set[str] = frozenset()) -> list[str]:
    """Names in ``body`` the schema ``spec`` does not know, and required names it lacks."""
    problems = []
    present = set(body)
    for key, value in body.items():
        if key in meta:
            continue
        if key == "dynamic":
            for dynamic in value:
                for name, generator in dynamic.items():
                    present.add(name)
                    if name not in spec["blocks"]:
                        problems.append(f"{where}: no nested block {name!r} (dynamic)")
                        continue
                    for content in generator.get("content", []):
                        problems += block_problems(content, spec["blocks"][name], f"{where}.{name}")
        elif key in spec["blocks"]:
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, dict):
                    problems += block_problems(item, spec["blocks"][key], f"{where}.{key}")
        elif key not in spec["arguments"]:
            problems.append(f"{where}: no argument or block {key!r}")
    problems += [
        f"{where}: required argument {name!r} missing"
        for name, required in spec["arguments"].items()
        if required and name not in present
    ]
    problems += [
        f"{where}: required block {name!r} missing"
        for name, block in spec["blocks"].items()
        if block["required"] and name not in present
    ]
    return problems


def file_problems(path: Path, provider: dict, root: Path = ROOT) -> list[str]:
    """Every schema problem of the resource and data blocks of one .tf file (paths relative to ``root``)."""
    problems = []
    document = load_hcl(path)
    for kind in ("resource", "data"):
        for block in document.get(kind, []):
            for rtype, named in block.items():
                if not rtype.startswith("aws_"):
                    continue  # archive_file etc.: other providers
                for name, body in named.items():
                    where = f"{path.relative_to(root)}: {kind} {rtype}.{name}"
                    if rtype not in provider[kind]:
                        problems.append(f"{where}: {rtype} is not in the extracted schema (run `make provider-schema`)")
                        continue
                    problems += block_problems(body, provider[kind][rtype], where, META[kind])
    return problems


def test_schema_is_the_pinned_provider_version():
    pinned = load_hcl(TF / "versions.tf")["terraform"][0]["required_providers"][0]["aws"]["version"]
    floor = re.fullmatch(r"~>\s*(\d+)\.(\d+)", pinned)
    assert floor, f"pin the AWS provider as ~> MAJOR.MINOR, got {pinned!r}"
    major, minor, _ = (int(x) for x in schema()["provider_version"].split("."))
    # the schema is of the lowest minor the pin allows: an argument added later would not pass here
    assert (major, minor) == (int(floor[1]), int(floor[2])), f"schema {schema()['provider_version']} vs pin {pinned}"


@pytest.mark.parametrize("path", [pytest.param(p, id=str(p.relative_to(TF))) for p in TF_FILES])
def test_every_block_matches_the_provider_schema(path):
    problems = file_problems(path, schema())
    assert not problems, "\n".join(problems)


def test_the_schema_file_covers_every_type_used():
    used = aws_provider_schema.used_types()
    provider = schema()
    for kind in ("resource", "data"):
        assert used[kind] <= set(provider[kind]), (
            f"run `make provider-schema`: {sorted(used[kind] - set(provider[kind]))}"
        )


def test_a_wrong_argument_and_a_missing_required_one_fail(tmp_path):
    """Planted in a copy of modules/vector-db/main.tf: a misspelt argument, a required one removed,
    a misspelt nested block argument and a missing required nested block."""
    source = (TF / "modules" / "vector-db" / "main.tf").read_text()
    planted = (
        source.replace("  engine_version = var.engine_version\n", "  engine_versoin = var.engine_version\n", 1)
        .replace("  instance_class = var.instance_class\n", "", 1)
        .replace('    name  = "rds.force_ssl"\n', '    nmae  = "rds.force_ssl"\n', 1)
    )
    assert planted.count("engine_versoin") == 1 and "instance_class = var.instance_class" not in planted
    copy = tmp_path / "main.tf"
    copy.write_text(planted)
    problems = "\n".join(file_problems(copy, schema(), tmp_path))
    assert "resource aws_db_instance.this: no argument or block 'engine_versoin'" in problems
    assert "resource aws_db_instance.this: required argument 'instance_class' missing" in problems
    assert "resource aws_db_parameter_group.this.parameter: no argument or block 'nmae'" in problems
    assert "resource aws_db_parameter_group.this.parameter: required argument 'name' missing" in problems
    glue = (TF / "modules" / "etl" / "main.tf").read_text()
    start = glue.index("  command {")
    copy.write_text(glue[:start] + glue[glue.index("  }\n", start) + 4 :])
    assert "resource aws_glue_job.etl: required block 'command' missing" in "\n".join(
        file_problems(copy, schema(), tmp_path)
    )


def test_the_schema_file_is_what_the_binding_holds():
    """The committed extract equals a fresh one from the installed package (`make install` unpacks it)."""
    package = aws_provider_schema.PACKAGE
    if not (package / ".jsii").is_file():
        pytest.skip(f"needs {package.relative_to(ROOT)}/.jsii (`make install` or `make provider-schema`)")
    assert aws_provider_schema.extract(package) == schema()
