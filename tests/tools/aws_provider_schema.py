"""Extract the AWS provider's schema for the resource and data types terraform/ uses, from the
prebuilt CDK for Terraform binding ``@cdktf/provider-aws`` (its jsii assembly, ``.jsii``, describes
every resource's configuration: argument names, which are required, nested blocks).

    python tests/tools/aws_provider_schema.py [.venv-tools/node_modules/@cdktf/provider-aws] > out.json

``make provider-schema`` writes tests/unit/data/aws_provider_schema.json with it; the unit test
``tests/unit/test_terraform_schema.py`` validates terraform/ against that file and, when the package
is installed, checks the file is what this script extracts.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / ".venv-tools" / "provider-aws-19.65.1"  # the Makefile's PROVIDER_AWS
TF = ROOT / "terraform"
# "Represents a {@link https://registry.terraform.io/providers/hashicorp/aws/5.99.1/docs/resources/db_instance
# aws_db_instance}." (one line in the binding)
REPRESENTS = re.compile(
    r"providers/hashicorp/aws/(?P<version>[\d.]+)/docs/(?P<kind>resources|data-sources)/\w+ (?P<type>aws_\w+)\}"
)
ANCHOR = re.compile(r"#(\w+) \w+#\w+\}")
BLOCK_SUMMARY = re.compile(r"^(\w+) block\.")
BLOCK_TYPE = re.compile(r'^\s*(resource|data)\s+"(aws_\w+)"', re.M)


def used_types(tf_dir: Path = TF) -> dict[str, set[str]]:
    """{"resource": {...}, "data": {...}}: the AWS types declared anywhere under terraform/."""
    used: dict[str, set[str]] = {"resource": set(), "data": set()}
    for path in tf_dir.rglob("*.tf"):
        for kind, rtype in BLOCK_TYPE.findall(path.read_text()):
            used[kind].add(rtype)
    return used


def _struct(type_ref: dict, types: dict) -> str | None:
    """The fqn of the struct a property's type is made of (a nested block), if any."""
    if "fqn" in type_ref:
        return type_ref["fqn"] if types.get(type_ref["fqn"], {}).get("datatype") else None
    if "collection" in type_ref:
        return _struct(type_ref["collection"]["elementtype"], types)
    if "union" in type_ref:
        return next((s for t in type_ref["union"]["types"] if (s := _struct(t, types))), None)
    return None


def _tf_name(prop: dict) -> str:
    docs = prop.get("docs", {})
    text = docs.get("summary", "") + " " + docs.get("remarks", "")
    found = ANCHOR.search(text) or BLOCK_SUMMARY.search(docs.get("summary", ""))
    if not found:
        raise ValueError(f"no Terraform name in the docs of {prop['name']}")
    return found.group(1)


def block_schema(fqn: str, types: dict) -> dict:
    """{"arguments": {name: required}, "blocks": {name: {"required": bool, ...block_schema}}}."""
    arguments, blocks = {}, {}
    for prop in types[fqn].get("properties", []):
        name, required = _tf_name(prop), not prop.get("optional", False)
        struct = _struct(prop["type"], types)
        if struct is None:
            arguments[name] = required
        else:
            blocks[name] = {"required": required, **block_schema(struct, types)}
    return {"arguments": dict(sorted(arguments.items())), "blocks": dict(sorted(blocks.items()))}


def extract(package: Path = PACKAGE, wanted: dict[str, set[str]] | None = None) -> dict:
    assembly = json.loads((package / ".jsii").read_text())
    types = assembly["types"]
    wanted = wanted or used_types()
    schema: dict = {
        "package": f"{assembly['name']}@{assembly['version']}",
        "provider_version": None,
        "resource": {},
        "data": {},
    }
    for fqn, spec in types.items():
        found = REPRESENTS.search(spec.get("docs", {}).get("summary", "")) if spec.get("kind") == "class" else None
        if not found:
            continue
        kind = "resource" if found["kind"] == "resources" else "data"
        schema["provider_version"] = found["version"]
        if found["type"] in wanted[kind]:
            schema[kind][found["type"]] = block_schema(fqn + "Config", types)
    missing = {kind: sorted(wanted[kind] - set(schema[kind])) for kind in wanted}
    if any(missing.values()):
        raise SystemExit(f"not in {schema['package']}: {missing}")
    schema["resource"] = dict(sorted(schema["resource"].items()))
    schema["data"] = dict(sorted(schema["data"].items()))
    return schema


if __name__ == "__main__":
    print(json.dumps(extract(Path(sys.argv[1]) if len(sys.argv) > 1 else PACKAGE), indent=1))
