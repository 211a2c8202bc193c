"""Static checks of ``terraform/`` (no ``terraform init``: providers cannot be downloaded here).

The HCL is parsed with python-hcl2. The checks cover the wiring Terraform itself would reject
(variables, locals, module inputs and outputs), the contracts with the code that Terraform deploys
(the Glue script's ``JOB_ARGUMENTS``, the Lambda handler and its environment), the names the local
stack uses (``recsys.local.aws_resources``), secrets hygiene, ``terraform fmt`` and checkov's skip list.
"""

from __future__ import annotations

import ast
import json
import math
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import hcl2
import pytest
import yaml

from recsys import contracts
from recsys.core import config
from recsys.local import aws_resources as resources

ROOT = Path(__file__).resolve().parents[2]
TF = ROOT / "terraform"
MODULES = TF / "modules"
TFVARS = (TF / "terraform.tfvars.example", TF / "all-phases.tfvars")  # root scan: every phase on
CHECKOV_CONFIG = TF / ".checkov.yaml"
GLUE_SCRIPT = ROOT / "glue" / "etl_job.py"
LAMBDA_HANDLER = ROOT / "src" / "recsys" / "serving" / "handler.py"

PHASES = {
    "etl": "enable_etl",
    "vector_db": "enable_vector_db",
    "streaming_inference": "enable_streaming",
    "api": "enable_api",
    "pipeline": "enable_pipeline",
}
MODULE_META_ARGUMENTS = {"source", "version", "count", "for_each", "providers", "depends_on"}
# Arguments Glue itself interprets ("Using job parameters in AWS Glue jobs" in the Glue guide).
GLUE_RESERVED_PREFIXES = (
    "--job-",
    "--enable-",
    "--TempDir",
    "--continuous-log-",
    "--extra-",
    "--additional-python-modules",
    "--python-modules-installer-option",
    "--conf",
    "--datalake-formats",
    "--spark-event-logs-path",
    "--user-jars-first",
    "--encryption-type",
    "--scriptLocation",
    "--customer-driver-env-vars",
    "--customer-executor-env-vars",
    "--custom-logGroup-prefix",
    "--custom-logStream-prefix",
)
# Glue 4.0's continuous-logging arguments: Glue 5.0 ignores them (it always logs in real time)
GLUE_4_LOGGING_ARGUMENTS = ("--enable-continuous-cloudwatch-log", "--continuous-log-")
LAMBDA_HANDLER_STRING = contracts.LAMBDA_HANDLER
LAMBDA_RUNTIME = contracts.LAMBDA_RUNTIME
LAMBDA_ENVIRONMENT = {
    "RECSYS_ARTIFACTS_BUCKET",
    "PGHOST",
    "PGPORT",
    "PGDATABASE",
    "PGUSER",
    "RECSYS_DB_SECRET_ARN",
    "RECSYS_POINTER_TTL_SECONDS",
    "RECSYS_TOP_K",
    "POWERTOOLS_SERVICE_NAME",
    "LOG_LEVEL",
    contracts.ENV_PG_SSLMODE,
    contracts.ENV_PG_SSLROOTCERT,
}

VAR_REF = re.compile(r"(?<![\w.])var\.([A-Za-z_][\w-]*)")
LOCAL_REF = re.compile(r"(?<![\w.])local\.([A-Za-z_][\w-]*)")
MODULE_OUTPUT_REF = re.compile(r"(?<![\w.])module\.([A-Za-z_][\w-]*)(?:\[[^\]]*\])?\.([A-Za-z_][\w-]*)")
INTERPOLATION = re.compile(r"\$\{([^}]*)\}")


# ---------------------------------------------------------------------------------------------
# Parsing helpers
# ---------------------------------------------------------------------------------------------
def _unquote(value):
    """Strip the quotes python-hcl2 v8 keeps around strings and keys, and its block markers."""
    if isinstance(value, dict):
        return {_unquote(k): _unquote(v) for k, v in value.items() if not str(k).startswith("__")}
    if isinstance(value, list):
        return [_unquote(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def load_hcl(path: Path) -> dict:
    """Parse one HCL file into plain Python values (python-hcl2 7 or 8)."""
    options = {}
    if hasattr(hcl2, "SerializationOptions"):  # v8: ask for plain strings and no block markers
        options["serialization_options"] = hcl2.SerializationOptions(
            strip_string_quotes=True, explicit_blocks=False, with_comments=False
        )
    with path.open() as handle:
        return _unquote(hcl2.load(handle, **options))


def iter_strings(value):
    """Every string (keys included) inside a parsed HCL value."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from iter_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from iter_strings(item)
    elif isinstance(value, str):
        yield value


@dataclass
class TfDir:
    """The blocks of one Terraform module directory, merged over its ``.tf`` files."""

    path: Path
    variables: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    modules: dict = field(default_factory=dict)
    locals: dict = field(default_factory=dict)
    resources: dict = field(default_factory=dict)  # (type, name) -> body
    raw: list = field(default_factory=list)

    def strings(self):
        """Every string in every file of the directory."""
        for document in self.raw:
            yield from iter_strings(document)

    def resources_of(self, resource_type: str) -> dict:
        """Bodies of the resources of one type, by name."""
        return {name: body for (rtype, name), body in self.resources.items() if rtype == resource_type}

    def only(self, resource_type: str) -> dict:
        """The body of the single resource of a type."""
        found = self.resources_of(resource_type)
        assert len(found) == 1, f"{self.path}: expected one {resource_type}, found {sorted(found)}"
        return next(iter(found.values()))


def tf_dirs() -> list[Path]:
    """Every directory under terraform/ holding .tf files."""
    return sorted({p.parent for p in TF.rglob("*.tf") if ".terraform" not in p.parts})


@cache
def parse_dir(path: Path) -> TfDir:
    """Parse and merge all .tf files of one directory."""
    tf = TfDir(path)
    for file in sorted(path.glob("*.tf")):
        document = load_hcl(file)
        tf.raw.append(document)
        for block in document.get("variable", []):
            tf.variables.update(block)
        for block in document.get("output", []):
            tf.outputs.update(block)
        for block in document.get("module", []):
            tf.modules.update(block)
        for block in document.get("locals", []):
            tf.locals.update(block)
        for block in document.get("resource", []):
            for rtype, named in block.items():
                for name, body in named.items():
                    tf.resources[(rtype, name)] = body
    return tf


def module_dir(caller: TfDir, name: str) -> Path:
    """Directory of a module block with a local source."""
    source = caller.modules[name]["source"]
    assert source.startswith("./"), f"{caller.path}: module {name} must use a local source, got {source}"
    return (caller.path / source).resolve()


def single_block(body: dict, name: str) -> dict:
    """A nested block that appears once (python-hcl2 returns nested blocks as lists)."""
    block = body[name]
    if isinstance(block, list):
        assert len(block) == 1, f"expected one {name} block"
        return block[0]
    return block


def render(value: str, tf: TfDir, project: str) -> str:
    """Resolve ``${var.project}`` and ``${local.x}`` (recursively) in a string from module ``tf``."""

    def substitute(match: re.Match) -> str:
        expression = match.group(1).strip()
        if expression == "var.project":
            return project
        local = re.fullmatch(r"local\.(\w+)", expression)
        if local and local.group(1) in tf.locals:
            value = tf.locals[local.group(1)]
            return render(value, tf, project) if isinstance(value, str) else str(value)
        return match.group(0)

    return INTERPOLATION.sub(substitute, value)


def default_settings() -> config.Settings:
    """The local stack's settings with every default (no environment, no stack.env)."""
    return config.load_settings({"RECSYS_STATE_DIR": "/nonexistent"})


def module_tf(name: str) -> TfDir:
    """One of terraform/modules/<name>."""
    return parse_dir(MODULES / name)


@pytest.fixture(scope="module")
def root() -> TfDir:
    return parse_dir(TF)


@pytest.fixture(scope="module")
def project(root) -> str:
    return root.variables["project"]["default"]


DIRS = [pytest.param(d, id=str(d.relative_to(TF)) or "root") for d in tf_dirs()]


# ---------------------------------------------------------------------------------------------
# Layout and parsing
# ---------------------------------------------------------------------------------------------
def test_layout():
    for name in ("main.tf", "variables.tf", "outputs.tf", "versions.tf", "backend.tf.example"):
        assert (TF / name).is_file(), f"terraform/{name} missing"
    for name in ("etl", "vector-db", "streaming-inference", "api", "monitoring"):
        for file in ("main.tf", "variables.tf", "outputs.tf"):
            assert (MODULES / name / file).is_file(), f"terraform/modules/{name}/{file} missing"


@pytest.mark.parametrize("path", [pytest.param(p, id=str(p.relative_to(TF))) for p in sorted(TF.rglob("*.tf"))])
def test_tf_file_parses(path):
    assert isinstance(load_hcl(path), dict)


def test_backend_and_tfvars_examples_parse(root):
    backend = load_hcl(TF / "backend.tf.example")
    assert "s3" in backend["terraform"][0]["backend"][0]
    for path in TFVARS:
        unknown = set(load_hcl(path)) - set(root.variables)
        assert not unknown, f"{path.name} sets undeclared variables: {sorted(unknown)}"
    assert all(load_hcl(TFVARS[1])[flag] is True for flag in PHASES.values())


def test_versions_pinned():
    block = load_hcl(TF / "versions.tf")["terraform"][0]
    assert re.search(r"\d+\.\d+", block["required_version"])
    aws = block["required_providers"][0]["aws"]
    assert aws["source"] == "hashicorp/aws"
    assert re.search(r"\d+\.\d+", aws["version"]), "pin the AWS provider version"


# ---------------------------------------------------------------------------------------------
# Wiring: variables, locals, modules, outputs
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", DIRS)
def test_variables_have_type_and_description(path):
    for name, body in parse_dir(path).variables.items():
        assert body.get("type"), f"{path}: variable {name} has no type"
        assert body.get("description"), f"{path}: variable {name} has no description"


@pytest.mark.parametrize("path", DIRS)
def test_var_and_local_references_resolve(path):
    tf = parse_dir(path)
    text = list(tf.strings())
    undeclared_vars = {m for s in text for m in VAR_REF.findall(s)} - set(tf.variables)
    undeclared_locals = {m for s in text for m in LOCAL_REF.findall(s)} - set(tf.locals)
    assert not undeclared_vars, f"{path}: undeclared variables {sorted(undeclared_vars)}"
    assert not undeclared_locals, f"{path}: undeclared locals {sorted(undeclared_locals)}"


@pytest.mark.parametrize("path", DIRS)
def test_module_calls_match_module_variables(path):
    caller = parse_dir(path)
    for name, body in caller.modules.items():
        callee = parse_dir(module_dir(caller, name))
        passed = set(body) - MODULE_META_ARGUMENTS
        unknown = passed - set(callee.variables)
        missing = {v for v, spec in callee.variables.items() if "default" not in spec} - passed
        assert not unknown, f"module {name}: inputs the module does not declare {sorted(unknown)}"
        assert not missing, f"module {name}: required inputs not passed {sorted(missing)}"


@pytest.mark.parametrize("path", DIRS)
def test_module_output_references_exist(path):
    caller = parse_dir(path)
    for module, output in {m for s in caller.strings() for m in MODULE_OUTPUT_REF.findall(s)}:
        assert module in caller.modules, f"{path}: module.{module} is not declared"
        outputs = parse_dir(module_dir(caller, module)).outputs
        assert output in outputs, f"{path}: module.{module} has no output {output}"


def test_phases_are_enabled_by_boolean_variables(root):
    for module, flag in PHASES.items():
        assert root.variables[flag]["type"] == "bool"
        count = root.modules[module].get("count") or root.modules[module].get("for_each")
        assert count and f"var.{flag}" in count, f"module {module} must be switched by var.{flag}"
    assert root.variables["enable_etl"]["default"] is True


@pytest.mark.parametrize("path", DIRS)
def test_outputs_expose_no_password(path):
    for name, body in parse_dir(path).outputs.items():
        value = json.dumps(body.get("value"))
        assert "password" not in name.lower() and "password" not in value.lower(), f"output {name} exposes a password"
        assert not body.get("sensitive"), f"output {name} is sensitive: outputs carry names and ARNs only"
        for attribute in re.findall(r"master_user_secret\[0\]\.(\w+)", value):
            assert attribute == "secret_arn", f"output {name} exposes master_user_secret.{attribute}"


# ---------------------------------------------------------------------------------------------
# ETL: buckets, Glue job and its script's arguments
# ---------------------------------------------------------------------------------------------
def test_bucket_names_match_local_stack(project):
    etl = module_tf("etl")
    expected = resources.resource_names(default_settings(), "123456789012").buckets
    suffix = "-${local.account_id}"
    assert set(etl.locals["bucket_names"]) == set(expected)
    for key, name in etl.locals["bucket_names"].items():
        assert name.endswith(suffix), f"bucket {key} must end with the account id for global uniqueness"
        assert render(name.removesuffix(suffix), etl, project) == expected[key]


def test_buckets_are_encrypted_versioned_and_private():
    bucket = parse_dir(MODULES / "etl" / "modules" / "bucket")
    sse = single_block(
        single_block(bucket.only("aws_s3_bucket_server_side_encryption_configuration"), "rule"),
        "apply_server_side_encryption_by_default",
    )
    assert sse["sse_algorithm"] == "aws:kms" and sse["kms_master_key_id"]
    assert single_block(bucket.only("aws_s3_bucket_versioning"), "versioning_configuration")["status"] == "Enabled"
    block = bucket.only("aws_s3_bucket_public_access_block")
    assert all(
        block[k] is True
        for k in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets")
    )


def test_glue_job_definition(root):
    etl = module_tf("etl")
    job = etl.only("aws_glue_job")
    command = single_block(job, "command")
    assert job["glue_version"] == "5.0" and command["python_version"] == "3" and command["name"] == "glueetl"
    assert job["worker_type"] == "${var.glue_worker_type}"
    assert job["number_of_workers"] == "${var.glue_number_of_workers}"
    assert "aws_s3_object.etl_script" in command["script_location"]
    script = etl.resources[("aws_s3_object", "etl_script")]
    assert script["source"] == "${var.glue_script_path}" and "filemd5(var.glue_script_path)" in script["source_hash"]
    assert root.modules["etl"]["glue_script_path"] == "${path.root}/../glue/etl_job.py"
    assert etl.resources_of("aws_glue_connection") and etl.resources_of("aws_glue_catalog_table")
    # the job keeps the catalog table on the published snapshot (a crawler would list every snapshot)
    assert not etl.resources_of("aws_glue_crawler")
    arguments = job["default_arguments"]
    # the job imports recsys.contracts: it ships as a zip of the package's two files
    assert "aws_s3_object.job_modules" in arguments["--extra-py-files"]
    shipped = re.findall(r'filename\s*=\s*"([^"]+)"', (MODULES / "etl" / "main.tf").read_text())
    assert {"recsys/__init__.py", "recsys/contracts.py"} <= set(shipped)
    assert root.modules["etl"]["package_dir"] == "${path.root}/../src/recsys"
    assert "aws_glue_catalog_table.training_set.name" in arguments["--catalog_table"]
    assert "aws_glue_catalog_database.this.name" in arguments["--catalog_database"]


def read_job_arguments(path: Path) -> dict[str, str | None]:
    """The literal ``JOB_ARGUMENTS`` of the Glue script, read with ``ast`` (the script is not imported)."""
    for node in ast.parse(path.read_text()).body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(isinstance(t, ast.Name) and t.id == "JOB_ARGUMENTS" for t in targets) and node.value is not None:
            return ast.literal_eval(node.value)
    raise AssertionError(f"{path} defines no module-level JOB_ARGUMENTS literal")


def test_glue_default_arguments_match_script():
    accepted = read_job_arguments(GLUE_SCRIPT)
    arguments = module_tf("etl").only("aws_glue_job")["default_arguments"]
    own = {k.removeprefix("--") for k in arguments if not k.startswith(GLUE_RESERVED_PREFIXES)}
    assert not own - set(accepted), f"arguments the script does not accept: {sorted(own - set(accepted))}"
    required = {name for name, default in accepted.items() if default is None}
    assert not required - own, f"required script arguments not given: {sorted(required - own)}"
    assert "source_secret_id" in own, "pass the MySQL credentials as a secret id"
    assert not any("password" in k.lower() for k in own), "never pass a password as a Glue argument"


def test_glue_5_logs_go_to_the_declared_encrypted_log_groups(project):
    """Glue 5.0 ignores 4.0's continuous-logging arguments; with --custom-logGroup-prefix and an SSE-KMS
    security configuration it writes <prefix>/<security configuration>-role/<role>/{error,output}."""
    etl = module_tf("etl")
    job = etl.only("aws_glue_job")
    arguments = job["default_arguments"]
    assert not [k for k in arguments if k.startswith(GLUE_4_LOGGING_ARGUMENTS)], "Glue 5.0 ignores these"
    assert arguments["--custom-logGroup-prefix"] == "${local.log_group_prefix}"
    prefix = render(etl.locals["log_group_prefix"], etl, project)
    assert prefix == f"/aws-glue/jobs/{project}-ratings-etl"
    security = single_block(etl.only("aws_glue_security_configuration"), "encryption_configuration")
    assert single_block(security, "cloudwatch_encryption")["cloudwatch_encryption_mode"] == "SSE-KMS"
    assert "aws_glue_security_configuration.this.name" in job["security_configuration"]
    groups = etl.resources[("aws_cloudwatch_log_group", "glue_job")]
    assert groups["name"] == (
        "${local.log_group_prefix}/${aws_glue_security_configuration.this.name}-role/"
        "${aws_iam_role.glue_job.name}/${each.key}"
    )
    assert set(re.findall(r'"(\w+)"', groups["for_each"])) == {"error", "output"}
    assert groups["kms_key_id"] and groups["retention_in_days"]
    assert "aws_cloudwatch_log_group.glue_job" in str(job.get("depends_on")), "groups first: retention and key"
    assert prefix.startswith(etl.locals["logs_arn"].split(":log-group:")[1].rstrip("*")), "WriteLogs covers it"


def test_every_bucket_logs_access_to_an_sse_s3_log_bucket(project):
    """CKV_AWS_18 holds for real: server access logs of each bucket go to a bucket S3 can deliver to."""
    bucket = parse_dir(MODULES / "etl" / "modules" / "bucket")
    logging = bucket.only("aws_s3_bucket_logging")
    assert logging["target_bucket"] == "${var.access_log_bucket}" and logging["target_prefix"]
    etl = module_tf("etl")
    call = etl.modules["bucket"]
    assert call["access_log_bucket"] == "${aws_s3_bucket.access_logs.id}"
    sse = single_block(
        single_block(etl.resources[("aws_s3_bucket_server_side_encryption_configuration", "access_logs")], "rule"),
        "apply_server_side_encryption_by_default",
    )
    assert sse["sse_algorithm"] == "AES256", "S3 server access logging cannot deliver to SSE-KMS buckets"
    policy = (MODULES / "etl" / "s3.tf").read_text()
    assert '"logging.s3.amazonaws.com"' in policy and '"aws:SourceAccount"' in policy
    for kind in (
        "aws_s3_bucket_public_access_block",
        "aws_s3_bucket_versioning",
        "aws_s3_bucket_lifecycle_configuration",
    ):
        assert "access_logs" in etl.resources_of(kind), f"access-log bucket lacks {kind}"
    assert "CKV_AWS_18" not in skipped_checks()


def test_lambda_concurrency_is_unreserved_unless_asked(root):
    """A new account's concurrency quota (10) cannot reserve any: the default must not reserve."""
    assert root.variables["lambda_reserved_concurrency"]["default"] is None
    assert module_tf("streaming-inference").variables["reserved_concurrency"]["default"] is None
    function = module_tf("streaming-inference").only("aws_lambda_function")
    assert function["reserved_concurrent_executions"] == "${var.reserved_concurrency}"


# ---------------------------------------------------------------------------------------------
# Vector DB
# ---------------------------------------------------------------------------------------------
def test_vector_db_is_private_encrypted_and_managed():
    db = module_tf("vector-db")
    instance = db.only("aws_db_instance")
    assert instance["engine"] == "postgres" and instance["engine_version"] == "${var.engine_version}"
    assert db.variables["engine_version"]["default"].startswith("17")
    assert instance["publicly_accessible"] is False
    assert instance["storage_encrypted"] is True
    assert instance["manage_master_user_password"] is True
    assert "password" not in instance, "the master password is managed by RDS in Secrets Manager"
    assert db.only("aws_db_instance_role_association")["feature_name"] == "s3Import"
    assert db.resources_of("aws_db_subnet_group")


def test_vector_db_accepts_5432_only_from_client_security_groups():
    db = module_tf("vector-db")
    for name, rule in db.resources_of("aws_vpc_security_group_ingress_rule").items():
        ports = {render(str(rule[key]), db, "") for key in ("from_port", "to_port")}
        assert ports == {"5432"}, f"ingress {name} must open 5432 only, got {ports}"
        assert "referenced_security_group_id" in rule and not {"cidr_ipv4", "cidr_ipv6"} & set(rule), name
    assert not db.resources_of("aws_security_group_rule")
    assert not any("ingress" in sg for sg in db.resources_of("aws_security_group").values())


# ---------------------------------------------------------------------------------------------
# Streaming inference
# ---------------------------------------------------------------------------------------------
def test_stream_delivery_and_function_names_match_local_stack(project):
    streaming = module_tf("streaming-inference")
    settings = default_settings()
    names = {
        "aws_kinesis_stream": ("name", settings.kinesis_stream),
        "aws_kinesis_firehose_delivery_stream": ("name", settings.firehose_stream),
        "aws_lambda_function": ("function_name", settings.lambda_function),
    }
    for rtype, (attribute, expected) in names.items():
        assert render(streaming.only(rtype)[attribute], streaming, project) == expected, rtype
    role = streaming.resources[("aws_iam_role", "firehose")]["name"]
    assert render(role, streaming, project) == resources.FIREHOSE_ROLE


def test_firehose_matches_local_delivery_definition(project):
    streaming = module_tf("streaming-inference")
    stream = streaming.only("aws_kinesis_firehose_delivery_stream")
    assert stream["destination"] == "extended_s3" and single_block(stream, "kinesis_source_configuration")
    s3 = single_block(stream, "extended_s3_configuration")
    value = lambda key: render(str(s3[key]), streaming, project)  # noqa: E731
    assert value("prefix") == resources.S3_PREFIX
    assert value("error_output_prefix") == resources.S3_ERROR_PREFIX
    assert value("buffering_size") == str(resources.S3_BUFFER_MB)
    assert "buffering_interval" in s3
    processor = single_block(single_block(s3, "processing_configuration"), "processors")
    assert processor["type"] == "Lambda"
    parameters = {
        p["parameter_name"]: render(str(p["parameter_value"]), streaming, project) for p in processor["parameters"]
    }
    assert set(parameters) == {"LambdaArn", "NumberOfRetries", "BufferSizeInMBs", "BufferIntervalInSeconds"}
    assert parameters["NumberOfRetries"] == resources.LAMBDA_RETRIES
    assert parameters["BufferSizeInMBs"] == resources.LAMBDA_BUFFER_MB
    assert "aws_lambda_function.inference.arn" in parameters["LambdaArn"]


def test_kinesis_stream_is_encrypted_with_selectable_capacity():
    streaming = module_tf("streaming-inference")
    stream = streaming.only("aws_kinesis_stream")
    assert stream["encryption_type"] == "KMS" and stream["kms_key_id"]
    assert single_block(stream, "stream_mode_details")["stream_mode"] == "${var.stream_mode}"
    assert "var.shard_count" in stream["shard_count"]


def test_lambda_function_definition():
    streaming = module_tf("streaming-inference")
    function = streaming.only("aws_lambda_function")
    # the root's one lambda_runtime (= the contract's, python3.13) reaches the function
    assert function["runtime"] == "${var.runtime}" and LAMBDA_RUNTIME == "python3.13"
    assert parse_dir(TF).modules["streaming_inference"]["runtime"] == "${local.lambda_runtime}"
    assert function["handler"] == LAMBDA_HANDLER_STRING
    assert function["filename"] == "${var.lambda_zip_path}"
    assert "filebase64sha256(var.lambda_zip_path)" in function["source_code_hash"]
    assert set(single_block(function, "environment")["variables"]) == LAMBDA_ENVIRONMENT
    assert single_block(function, "tracing_config")["mode"] == "Active"
    vpc = single_block(function, "vpc_config")
    assert vpc["subnet_ids"] and "aws_security_group.lambda" in str(vpc["security_group_ids"])
    for attribute in ("reserved_concurrent_executions", "timeout", "memory_size"):
        assert function[attribute].startswith("${var."), f"{attribute} must be a variable"
    assert any(
        "fileexists(var.lambda_zip_path)" in v["condition"]
        for v in streaming.variables["lambda_zip_path"].get("validation", [])
    ), "guard the zip path"


def test_lambda_handler_exists_in_the_repo():
    module_path, function = LAMBDA_HANDLER_STRING.rsplit(".", 1)
    assert ROOT / "src" / Path(*module_path.split(".")).with_suffix(".py") == LAMBDA_HANDLER
    defined = {n.name for n in ast.parse(LAMBDA_HANDLER.read_text()).body if isinstance(n, ast.FunctionDef)}
    assert function in defined, f"{LAMBDA_HANDLER} defines no {function}"


# ---------------------------------------------------------------------------------------------
# The recommendations API
# ---------------------------------------------------------------------------------------------
API_ENVIRONMENT = LAMBDA_ENVIRONMENT | {contracts.ENV_API_POOL_SIZE}


def test_api_function_runs_the_api_handler_on_the_firehose_lambdas_runtime(root):
    api = module_tf("api")
    function = api.only("aws_lambda_function")
    assert function["handler"] == contracts.API_HANDLER
    module_path, name = contracts.API_HANDLER.rsplit(".", 1)
    source = ROOT / "src" / Path(*module_path.split(".")).with_suffix(".py")
    assert name in {n.name for n in ast.parse(source.read_text()).body if isinstance(n, ast.FunctionDef)}
    # one runtime for both Lambdas: the one the zips are built for
    assert function["runtime"] == "${var.runtime}" and root.modules["api"]["runtime"] == "${local.lambda_runtime}"
    assert root.locals["lambda_runtime"] == contracts.LAMBDA_RUNTIME
    assert root.modules["streaming_inference"]["runtime"] == "${local.lambda_runtime}"
    assert (
        function["filename"] == "${var.zip_path}" and "filebase64sha256(var.zip_path)" in function["source_code_hash"]
    )
    assert "build/api.zip" in root.locals["api_zip_path"]
    assert any("fileexists(var.zip_path)" in v["condition"] for v in api.variables["zip_path"]["validation"])
    assert set(single_block(function, "environment")["variables"]) == API_ENVIRONMENT
    assert single_block(function, "tracing_config")["mode"] == "Active"
    vpc = single_block(function, "vpc_config")
    assert vpc["subnet_ids"] and "aws_security_group.api" in str(vpc["security_group_ids"])


def test_api_is_never_open_without_auth():
    api = module_tf("api")
    assert api.only("aws_lambda_function_url")["authorization_type"] == "AWS_IAM"
    assert not api.resources_of("aws_lambda_permission"), "callers get an identity policy, not a resource grant"
    invoke = (MODULES / "api" / "iam.tf").read_text()
    assert '"lambda:FunctionUrlAuthType"' in invoke and '"lambda:InvokedViaFunctionUrl"' in invoke
    assert '"*"' not in invoke.split('data "aws_iam_policy_document" "invoke"')[1]


def test_api_reaches_the_db_through_its_own_security_group(root):
    assert "local.api_security_group_ids" in root.locals["db_client_security_group_ids"]
    assert "module.api[0].security_group_id" in root.locals["api_security_group_ids"]
    api = module_tf("api")
    db_rule = api.resources[("aws_vpc_security_group_egress_rule", "api_db")]
    assert db_rule["referenced_security_group_id"] == "${var.db_security_group_id}"


@pytest.mark.parametrize("path", DIRS)
def test_log_groups_have_retention_and_kms(path):
    for name, group in parse_dir(path).resources_of("aws_cloudwatch_log_group").items():
        assert group.get("retention_in_days") and group.get("kms_key_id"), f"{path}: log group {name}"


# ---------------------------------------------------------------------------------------------
# Tools: terraform fmt and the checkov skip list (the scan itself: tests/integration/test_terraform_scan.py)
# ---------------------------------------------------------------------------------------------
HCL_TOOLS = ROOT / ".venv-tools" / "node_modules" / "@cdktf" / "hcl-tools"
FMT_SCRIPT = ROOT / "tests" / "tools" / "terraform_fmt.cjs"
INTERPOLATION_ONLY = re.compile(r'^\s*[\w"-]+\s*=\s*"\$\{[^"{}]*\}"\s*$')  # fmt unwraps "${x}" to x
QUOTED_TYPE = re.compile(r'^\s*type\s*=\s*"\w+"\s*$')  # fmt unquotes legacy type constraints


@pytest.mark.environment("terraform-fmt")
def test_terraform_fmt():
    """`terraform fmt -check` when a terraform binary exists; else its formatter, HashiCorp's
    hclwrite.Format (compiled to WebAssembly in @cdktf/hcl-tools, installed by `make install`), plus
    the two rewrites terraform fmt adds to it (interpolation-only strings, quoted type constraints)."""
    files = sorted(str(p) for p in TF.rglob("*.tf") if ".terraform" not in p.parts)
    binary = shutil.which("terraform")
    if binary is not None:
        result = subprocess.run(
            [binary, "fmt", "-check", "-recursive", str(TF)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, f"run `terraform fmt -recursive terraform`:\n{result.stdout}{result.stderr}"
        return
    node = shutil.which("node")
    if node is None or not HCL_TOOLS.is_dir():
        pytest.skip("neither terraform nor node with @cdktf/hcl-tools (make install) is available for fmt")
    result = subprocess.run([node, str(FMT_SCRIPT), *files], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"run `make fmt`:\n{result.stdout}{result.stderr}"
    legacy = [
        f"{path}:{n}: {line.strip()}"
        for path in files
        for n, line in enumerate(Path(path).read_text().splitlines(), 1)
        if INTERPOLATION_ONLY.match(line) or QUOTED_TYPE.match(line)
    ]
    assert not legacy, "terraform fmt would rewrite these lines:\n" + "\n".join(legacy)


@pytest.mark.environment("terraform-fmt")
def test_fmt_check_catches_a_misaligned_file(tmp_path):
    """The formatter used above is a real one: it flags a file terraform fmt would change."""
    node = shutil.which("node")
    if node is None or not HCL_TOOLS.is_dir():
        pytest.skip("node with @cdktf/hcl-tools (make install) is not available")
    bad = tmp_path / "bad.tf"
    bad.write_text('resource "x" "y" {\n  a = 1\n  long_name = 2\n}\n')
    result = subprocess.run([node, str(FMT_SCRIPT), str(bad)], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1 and "+   a         = 1" in result.stdout


def skipped_checks() -> dict[str, str]:
    """Checks skipped in .checkov.yaml, each with the comment block above it (its reason)."""
    skips = yaml.safe_load(CHECKOV_CONFIG.read_text()).get("skip-check", [])
    reasons, comment = {}, []
    for line in CHECKOV_CONFIG.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped.lstrip("# "))
        elif stripped.startswith("- ") and stripped[2:].split("#")[0].strip() in skips:
            check = stripped[2:].split("#")[0].strip()
            inline = stripped.partition("#")[2].strip()
            reasons[check] = " ".join(comment + [inline]).strip()
            comment = []
        else:
            comment = []
    return {check: reasons.get(check, "") for check in skips}


def test_checkov_skips_are_few_and_explained():
    skips = skipped_checks()
    assert len(skips) <= 8, "keep the skip list short: fix findings instead"
    for check, reason in skips.items():
        assert len(reason) > 20, f"{check} is skipped in .checkov.yaml without a reason (comment above it)"


# ---------------------------------------------------------------------------------------------
# Apply blockers and operability of the AWS deployment
# ---------------------------------------------------------------------------------------------
def test_api_concurrency_is_unreserved_unless_asked(root):
    """Like the streaming Lambda's: a reservation of 20 fails on an account whose quota is 10."""
    assert root.variables["api_reserved_concurrency"]["default"] is None
    assert any(
        "var.api_reserved_concurrency == null" in v["condition"]
        for v in root.variables["api_reserved_concurrency"]["validation"]
    )
    api = module_tf("api")
    assert api.variables["reserved_concurrency"]["default"] is None
    assert root.modules["api"]["reserved_concurrency"] == "${var.api_reserved_concurrency}"
    assert api.only("aws_lambda_function")["reserved_concurrent_executions"] == "${var.reserved_concurrency}"


def test_glue_connection_gets_its_own_self_referencing_security_group():
    """Glue refuses to start a job whose connection's group lacks a self-referencing all-TCP rule:
    Terraform creates the group and the rule instead of leaving them a manual prerequisite."""
    etl = module_tf("etl")
    connection = single_block(etl.only("aws_glue_connection"), "physical_connection_requirements")
    assert connection["security_group_id_list"] == ["${aws_security_group.glue_connection.id}"]
    group = "${aws_security_group.glue_connection.id}"
    for kind in ("aws_vpc_security_group_ingress_rule", "aws_vpc_security_group_egress_rule"):
        assert any(
            rule["security_group_id"] == group
            and rule["referenced_security_group_id"] == group
            and rule["ip_protocol"] == "tcp"
            and (rule["from_port"], rule["to_port"]) == (0, 65535)
            for rule in etl.resources_of(kind).values()
        ), f"no self-referencing all-TCP {kind}"
    mysql = etl.resources[("aws_vpc_security_group_ingress_rule", "mysql_from_glue")]
    assert mysql["security_group_id"] == "${var.source_db_security_group_id}"
    assert mysql["referenced_security_group_id"] == group and mysql["from_port"] == "${var.source_db_port}"
    assert group.strip("${}") in (MODULES / "etl" / "iam.tf").read_text(), "the role creates ENIs in this group"
    assert "module.etl[*].connection_security_group_id" in parse_dir(TF).locals["endpoint_clients"]


def test_glue_metrics_have_a_route_to_cloudwatch(root):
    """--enable-metrics makes the workers call CloudWatch (endpoint service `monitoring`)."""
    arguments = module_tf("etl").only("aws_glue_job")["default_arguments"]
    if arguments.get("--enable-metrics") == "true":
        assert "monitoring" in root.locals["glue_job_services"], "add monitoring to local.glue_job_services"


def _policy_documents(module: str) -> dict:
    documents = {}
    for path in (MODULES / module).glob("*.tf"):
        for block in load_hcl(path).get("data", []):
            documents.update(block.get("aws_iam_policy_document", {}))
    return documents


@pytest.mark.parametrize(
    "module,policy,log_group",
    [
        ("api", "api", "aws_cloudwatch_log_group.api"),
        ("streaming-inference", "lambda", "aws_cloudwatch_log_group.lambda"),
    ],
)
def test_lambda_roles_write_only_their_own_log_group(module, policy, log_group):
    """No AWSLambdaVPCAccessExecutionRole (logs:* on every group): the VPC permissions inline, logs scoped."""
    tf = module_tf(module)
    attached = [a["policy_arn"] for a in tf.resources_of("aws_iam_role_policy_attachment").values()]
    assert not [arn for arn in attached if "AWSLambdaVPCAccessExecutionRole" in arn or "AWSLambdaBasic" in arn]
    statements = _policy_documents(module)[policy]["statement"]
    logs = [s for s in statements if any(a.startswith("logs:") for a in s["actions"])]
    assert logs and all(r.startswith("${" + log_group + ".arn}") for s in logs for r in s["resources"])
    eni = next(s for s in statements if "ec2:CreateNetworkInterface" in s["actions"])
    assert '"*"' not in json.dumps(eni["resources"]), "ENIs only in the function's subnets and security group"


def test_final_snapshot_name_is_unique_per_instance():
    """A fixed name makes the second destroy fail (the first one's snapshot has it)."""
    instance = module_tf("vector-db").only("aws_db_instance")
    assert "plantimestamp()" in instance["final_snapshot_identifier"]
    assert "final_snapshot_identifier" in str(single_block(instance, "lifecycle")["ignore_changes"])


def test_hnsw_sizing_is_set_from_the_root(root):
    sizing = {name for name in module_tf("vector-db").variables if name.startswith("hnsw_")}
    assert sizing == {"hnsw_index_mb", "hnsw_largest_index_mb"}
    for name in sizing:
        assert root.modules["vector_db"].get(name) == f"${{var.db_{name}}}", f"root does not set {name}"
        assert f"db_{name}" in root.variables


def _instance_check(instance_class: str, index_mb: float) -> bool:
    """The vector-db module's plan-time check, evaluated from its HCL for one input."""
    db = module_tf("vector-db")
    pattern = re.search(r'regex\("(.+?)", var\.instance_class\)', db.locals["instance_class_parts"]).group(1)
    match = re.fullmatch(pattern.replace("\\\\", "\\"), instance_class)
    family, size = match.groups() if match else ("", "")
    factor, sizes = db.locals["instance_family_factor"], db.locals["instance_size_gib"]
    memory = sizes[size] * 1024 * factor[family] if family in factor and size in sizes else None
    expression = db.locals["shared_buffers_mb"].strip("${}").replace("var.hnsw_index_mb", repr(index_mb))
    shared_buffers = eval(expression.replace("ceil(", "math.ceil("), {"math": math})
    check = load_hcl(MODULES / "vector-db" / "main.tf")["check"][0]["instance_memory_holds_the_hnsw_indexes"]
    condition = single_block(check, "assert")["condition"].strip("${}")
    condition = (
        condition.replace("||", " or ")
        .replace("null", "None")
        .replace("local.instance_memory_mb", repr(memory))
        .replace("local.shared_buffers_mb", repr(shared_buffers))
    )
    return eval(condition)


def test_plan_warns_when_the_instance_class_cannot_hold_the_index():
    """`check` block: plan says so when db_instance_class's RAM share is below the indexes' need."""
    assert _instance_check("db.t4g.micro", 555) is False  # the default class, 1M items: said at plan time
    assert _instance_check("db.t4g.large", 555) is True
    assert _instance_check("db.r7g.large", 3000) is True and _instance_check("db.m7g.large", 3000) is False
    assert _instance_check("db.t4g.micro", 50) is True  # a lab-sized index fits
    assert _instance_check("db.serverless", 100_000) is True  # unknown memory: silent


# ---------------------------------------------------------------------------------------------
# TLS: every connection on AWS verifies the server
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("module,call", [("api", "api"), ("streaming-inference", "streaming_inference")])
def test_lambda_db_connections_verify_the_rds_certificate(root, module, call):
    tf = module_tf(module)
    environment = single_block(tf.only("aws_lambda_function"), "environment")["variables"]
    assert environment[contracts.ENV_PG_SSLMODE] == "${var.db_sslmode}"
    assert tf.variables["db_sslmode"]["default"] == contracts.AWS_PG_SSLMODE == "verify-full"
    assert root.modules[call]["db_sslmode"] == "${var.db_sslmode}"
    assert root.variables["db_sslmode"]["default"] == contracts.AWS_PG_SSLMODE
    # the bundle `recsys lambda-zip` puts at the zip's root, where Lambda unpacks it
    assert (
        render(environment[contracts.ENV_PG_SSLROOTCERT], tf, "")
        == f"{contracts.LAMBDA_TASK_ROOT}/{contracts.RDS_CA_BUNDLE}"
    )


def test_glue_jdbc_connection_verifies_the_mysql_certificate(root):
    etl = module_tf("etl")
    assert etl.locals["jdbc_url"].endswith("?sslMode=${var.source_db_ssl_mode}")
    assert root.variables["source_db_ssl_mode"]["default"] == "VERIFY_IDENTITY"
    assert root.modules["etl"]["source_db_ssl_mode"] == "${var.source_db_ssl_mode}"
    properties = etl.only("aws_glue_connection")["connection_properties"]
    assert properties["JDBC_ENFORCE_SSL"] == "true"
    assert module_tf("etl").only("aws_glue_job")["default_arguments"]["--source_jdbc_url"] == "${local.jdbc_url}"


def test_local_connections_stay_plain_and_aws_settings_verify():
    assert default_settings().pg_sslmode == "prefer"  # the embedded server has no TLS
    aws_like = config.load_settings(
        {
            "RECSYS_STATE_DIR": "/nonexistent",
            contracts.ENV_PG_SSLMODE: "verify-full",
            contracts.ENV_PG_SSLROOTCERT: "/opt/rds-ca-bundle.pem",
        }
    )
    assert aws_like.pg_params()["sslmode"] == "verify-full"
    assert aws_like.pg_params()["sslrootcert"] == "/opt/rds-ca-bundle.pem"


def test_the_lambda_zips_ship_the_rds_ca_bundle(tmp_path):
    from recsys.core.errors import PipelineError
    from recsys.deploy.lambda_zip import DEFAULT_CA_BUNDLE, ca_bundle_entry

    assert DEFAULT_CA_BUNDLE.name == contracts.RDS_CA_BUNDLE
    pem = tmp_path / "bundle.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    assert ca_bundle_entry(pem) == (contracts.RDS_CA_BUNDLE, pem)
    pem.write_text("not a certificate")
    with pytest.raises(PipelineError, match="make rds-ca-bundle"):
        ca_bundle_entry(pem)
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^lambda-zip: .*\$\(RDS_CA_BUNDLE\)", makefile, re.M)
    assert re.search(r"^api-zip: .*\$\(RDS_CA_BUNDLE\)", makefile, re.M)


# ---------------------------------------------------------------------------------------------
# Monitoring: alarms, event rules and a dashboard
# ---------------------------------------------------------------------------------------------
# Each signal the deployment must report: (namespace, metric) -> the threshold it compares with
SIGNALS = {
    ("AWS/Lambda", "Errors"): "lambda_errors",
    ("AWS/Lambda", "Throttles"): "lambda_throttles",
    ("AWS/Kinesis", "GetRecords.IteratorAgeMilliseconds"): "iterator_age_seconds",
    ("AWS/Firehose", "ExecuteProcessing.Success"): "firehose_processing_success",
    ("AWS/Lambda", "Url5xxCount"): "api_5xx",
    ("AWS/RDS", "CPUUtilization"): "db_cpu_percent",
    ("AWS/RDS", "CPUCreditBalance"): "db_cpu_credit_balance",
    ("AWS/RDS", "FreeStorageSpace"): "db_free_storage_mb",
    ("AWS/RDS", "DatabaseConnections"): "db_connections",
}
ALARM_OBJECT = re.compile(
    r'namespace\s*=\s*"(?P<ns>[\w/]+)",?\s*metric\s*=\s*"(?P<metric>[\w.]+)".*?'
    r"threshold\s*=\s*(?P<threshold>[^\n},]+)",
    re.S,
)


def monitoring_alarms() -> dict[tuple[str, str], str]:
    """(namespace, metric) -> threshold expression of every alarm object in modules/monitoring."""
    text = (MODULES / "monitoring" / "main.tf").read_text()
    text = re.sub(r"\s*\n\s*", " ", text)  # one object per match, whatever the line breaks
    return {(m["ns"], m["metric"]): m["threshold"].strip() for m in ALARM_OBJECT.finditer(text)}


def test_monitoring_is_on_by_default_with_its_phase(root):
    call = root.modules["monitoring"]
    assert root.variables["enable_monitoring"]["default"] is True
    assert "var.enable_monitoring && var.enable_etl" in call["count"]
    for flag, switch in (
        ("enable_vector_db", "vector_db_enabled"),
        ("enable_streaming", "streaming_enabled"),
        ("enable_api", "api_enabled"),
    ):
        assert call[switch] == f"${{var.{flag}}}", f"{switch} follows {flag}"
    assert call["alarm_email"] == "${var.alarm_email}" and root.variables["alarm_email"]["default"] == ""


def test_every_signal_has_an_alarm_whose_threshold_is_a_variable(root):
    alarms = monitoring_alarms()
    assert set(SIGNALS) <= set(alarms), f"no alarm for {sorted(set(SIGNALS) - set(alarms))}"
    monitoring = module_tf("monitoring")
    thresholds = root.variables["alarm_thresholds"]["type"]
    for signal, name in SIGNALS.items():
        variable = re.search(r"var\.(\w+)", alarms[signal]).group(1)
        assert variable in monitoring.variables, f"{signal}: threshold {alarms[signal]}"
        assert root.modules["monitoring"][variable] == f"${{var.alarm_thresholds.{name}}}"
        assert re.search(rf"\b{name}\s*=\s*optional\(number,\s*[\d.]+\)", thresholds), f"{name} has no default"
    alarm = monitoring.only("aws_cloudwatch_metric_alarm")
    assert alarm["for_each"] == "${local.alarms}"
    assert alarm["alarm_actions"] == ["${aws_sns_topic.alarms.arn}"] and alarm["treat_missing_data"] == "notBreaching"


def test_alarm_topic_is_encrypted_and_mailed_when_asked():
    monitoring = module_tf("monitoring")
    assert monitoring.only("aws_sns_topic")["kms_master_key_id"] == "${var.kms_key_arn}"
    assert "var.alarm_email" in monitoring.only("aws_sns_topic_subscription")["count"]
    key_policy = (TF / "main.tf").read_text()
    assert '"cloudwatch.amazonaws.com", "events.amazonaws.com"' in key_policy, "they must use the topic's key"


def test_failed_glue_runs_and_parked_records_raise_events():
    monitoring = module_tf("monitoring")
    rules = monitoring.resources_of("aws_cloudwatch_event_rule")
    glue = rules["glue_job_failed"]["event_pattern"]
    assert '"aws.glue"' in glue and '"Glue Job State Change"' in glue and '"FAILED", "TIMEOUT"' in glue
    parked = rules["records_parked"]["event_pattern"]
    assert '"aws.s3"' in parked and '"Object Created"' in parked
    # parked records: processing-failed/<yyyy>/..., not the redrive markers under processing-failed/redriven/
    assert f'prefix = "{contracts.ERROR_KEY_PREFIX}2"' in parked
    assert not f"{contracts.ERROR_KEY_PREFIX}2".startswith(contracts.REDRIVE_MARKER_PREFIX)
    assert monitoring.only("aws_s3_bucket_notification")["eventbridge"] is True
    targets = monitoring.resources_of("aws_cloudwatch_event_target")
    assert set(targets) == set(rules) and all(t["arn"] == "${aws_sns_topic.alarms.arn}" for t in targets.values())


def test_one_dashboard_shows_every_alarm():
    dashboard = module_tf("monitoring").only("aws_cloudwatch_dashboard")
    assert "local.alarms" in dashboard["dashboard_body"] and "glue" in dashboard["dashboard_body"].lower()


# ---------------------------------------------------------------------------------------------
# Phase 5: the pipeline (state machine from recsys.pipeline.definition, ECS tasks in private subnets)
# ---------------------------------------------------------------------------------------------
def test_state_machine_is_the_rendered_definition(root):
    from recsys.pipeline.definition import TEMPLATE_TARGETS, asl_template

    pipeline = module_tf("pipeline")
    machine = pipeline.resources[("aws_sfn_state_machine", "pipeline")]
    assert machine["definition"].startswith('${templatefile("${path.module}/state_machine.asl.json.tftpl", {')
    template = (MODULES / "pipeline" / "state_machine.asl.json.tftpl").read_text()
    assert template == asl_template()
    placeholders = set(re.findall(r"\$\{(?:jsonencode\()?(\w+)\)?\}", template))
    passed = set(re.findall(r"(\w+)\s*=", machine["definition"].split("{", 2)[2]))
    assert placeholders == passed, f"template variables {placeholders} vs passed {passed}"
    assert '"AssignPublicIp": "DISABLED"' in template and TEMPLATE_TARGETS.subnet_ids.text in template


def test_pipeline_tasks_run_in_the_private_subnets_without_public_ips(root):
    call = root.modules["pipeline"]
    assert call["subnet_ids"] == "${var.private_subnet_ids}"
    assert call["count"] == "${var.enable_pipeline ? 1 : 0}"
    pipeline = module_tf("pipeline")
    machine = pipeline.resources[("aws_sfn_state_machine", "pipeline")]["definition"]
    assert "subnet_ids             = var.subnet_ids" in machine or "subnet_ids = var.subnet_ids" in re.sub(
        r"\s+", " ", machine
    )
    assert "assign_public_ip" not in str(pipeline.resources)  # no ECS service: tasks come only from the document


def test_pipeline_task_definitions_are_the_definitions_tasks():
    from recsys.pipeline.definition import CONTAINER_NAME, TASKS

    pipeline = module_tf("pipeline")
    tasks = pipeline.locals["tasks"]
    assert set(tasks) == set(TASKS)
    assert set(pipeline.locals["task_role_arns"]) == set(TASKS)
    assert pipeline.locals["container"] == CONTAINER_NAME
    definition = pipeline.resources[("aws_ecs_task_definition", "task")]
    assert definition["requires_compatibilities"] == ["FARGATE"] and definition["network_mode"] == "awsvpc"
    # only the dbroles task gets the master; the load task the loader role, the gate task the serving role
    assert "var.db_master_secret_arn" in tasks["dbroles"]["db_secret_arn"]
    assert "loader" in tasks["load"]["db_secret_arn"] and "serving" in tasks["gate"]["db_secret_arn"]
    assert tasks["train"]["db_secret_arn"] == ""
    secret = pipeline.resources[("aws_secretsmanager_secret_version", "db_role")]["secret_string"]
    assert "recsys_${each.key}" in secret
    roles = pipeline.resources[("aws_secretsmanager_secret", "db_role")]["for_each"]
    assert {f"recsys_{key}" for key in re.findall(r'"(\w+)"', roles)} == set(contracts.DB_ROLES)


def test_pipeline_schedule_is_off_by_default_and_notifies_by_email(root):
    assert root.variables["pipeline_schedule_enabled"]["default"] is False
    assert root.variables["pipeline_notification_email"]["default"] == ""
    pipeline = module_tf("pipeline")
    schedule = pipeline.resources[("aws_scheduler_schedule", "pipeline")]
    assert schedule["state"] == '${var.schedule_enabled ? "ENABLED" : "DISABLED"}'
    assert schedule["schedule_expression"] == "${var.schedule_expression}"
    subscription = pipeline.resources[("aws_sns_topic_subscription", "email")]
    assert subscription["protocol"] == "email" and subscription["count"] == '${var.notification_email == "" ? 0 : 1}'


LAPTOP_STEPS = re.compile(
    r"recsys (train|load-embeddings|etl)\b|psql |ssm start-session|PortForwarding|"
    r"aws ecs run-task"
)


def test_no_step_after_apply_needs_the_laptop_beyond_pushing_the_image_and_starting_a_run():
    """The AWS walkthrough (docs/aws.md, README links to it) and docs/pipeline.md's operator journey:
    after `terraform apply` the operator pushes the image and starts (and watches) runs; training and
    loading happen on AWS."""
    walkthrough = (ROOT / "docs" / "aws.md").read_text()
    deploy = walkthrough[walkthrough.index("## Configure") : walkthrough.index("## Teardown")]
    readme = (ROOT / "README.md").read_text()
    aws_section = re.search(r"^## [^\n]*AWS.*?(?=^## )", readme, re.S | re.M)
    assert aws_section, "README has a section on AWS that links to docs/aws.md"
    readme = aws_section.group(0)
    journey = (ROOT / "docs" / "pipeline.md").read_text()
    journey = journey[journey.index("## Operator journey") : journey.index("## By hand")]
    for name, text in (("docs/aws.md", deploy), ("README.md", readme), ("docs/pipeline.md", journey)):
        commands = [
            line.strip()
            for block in re.findall(r"```bash\n(.*?)```", text, re.S)
            for line in block.splitlines()
            if line.strip() and not line.strip().startswith("#")
        ]
        laptop = [c for c in commands if LAPTOP_STEPS.search(c)]
        assert not laptop, f"{name}: steps that need the laptop: {laptop}"
    assert "make push-image" in journey and "recsys pipeline start" in journey and "recsys pipeline status" in journey


def test_lambdas_connect_as_the_serving_role_once_the_pipeline_creates_it(root):
    """The master secret is used at run time only by the pipeline's DatabaseRoles stage."""
    for name in ("streaming_inference", "api"):
        call = root.modules[name]
        assert call["db_secret_arn"] == "${local.serving_db_secret_arn}", name
        assert call["db_username"] == "${local.serving_db_username}", name
    assert root.locals["serving_db_secret_arn"].startswith(
        "${var.enable_pipeline ? module.pipeline[0].serving_db_secret_arn :"
    )
    assert f'"{contracts.DB_SERVING_ROLE}"' in root.locals["serving_db_username"]
    master = [name for name, call in root.modules.items() if "master_user_secret_arn" in str(call)]
    assert master == ["pipeline"], f"modules given the master secret: {master}"
