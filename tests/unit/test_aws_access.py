"""Terraform checked against the code that runs on AWS: every AWS API the Glue job and the Lambda
call is allowed by their IAM role and reachable from their subnets.

The calls are derived from the code itself (``glue/etl_job.py``, ``src/recsys/serving/*.py``) by an
AST scan: boto3 clients (``boto3.client("svc")`` and factories such as ``aws_client("svc")`` or
``lambda: boto3.client("svc")``) are followed through assignments, attributes (``self._s3``),
closures and call arguments into other functions and classes, and every ``<client>.<operation>(``
(and ``get_paginator("op")``) on them is an API call. Each call maps to its IAM action (with S3's
and KMS's implied ones); the roles' policies are read from ``terraform/modules/*/iam.tf`` with
python-hcl2, and the routes from ``terraform/main.tf`` (the services each component reaches
through ``modules/vpc-endpoints``, or a NAT when ``create_vpc_endpoints = false``). A new boto3 call
without its permission or route fails here, naming the call and what is missing.
"""

from __future__ import annotations

import ast
import fnmatch
import re
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import pytest
from test_terraform import MODULES, TF, load_hcl, module_tf, parse_dir

REPO = Path(__file__).resolve().parents[2]
GLUE_JOB = REPO / "glue" / "etl_job.py"
LAMBDA_FILES = tuple(sorted((REPO / "src" / "recsys" / "serving").glob("*.py")))

# -- 1. the code's AWS calls ----------------------------------------------------------------------
NOT_API = {"close", "can_paginate", "get_waiter", "generate_presigned_url", "generate_presigned_post", "meta"}


@dataclass(frozen=True)
class ApiCall:
    service: str  # boto3's service name
    operation: str  # boto3's snake_case operation (or transfer method)
    where: str  # file:line

    def __str__(self) -> str:
        return f"{self.where} {self.service}.{self.operation}"


@dataclass
class _Scope:
    node: ast.AST
    parent: _Scope | None
    cls: str | None  # enclosing class name, for self.<attr>
    clients: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    factories: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))


class ClientFlow:
    """Where boto3 clients go in a set of files, and the operations called on them."""

    def __init__(self, files: list[Path]):
        self.trees = {path: ast.parse(path.read_text(), filename=str(path)) for path in files}
        self.scopes: dict[ast.AST, _Scope] = {}
        self.functions: dict[str, list[ast.AST]] = defaultdict(list)  # name -> defs (any file, any class)
        self.classes: dict[str, ast.ClassDef] = {}
        self.attributes: dict[tuple[str, str], set[str]] = defaultdict(set)  # (class, attr) -> services
        self.factory_functions: set[str] = set()  # def f(service): return boto3.client(service, ...)
        for tree in self.trees.values():
            self._index(tree, None, None)
        self._find_wrapping_factories()
        self._propagate()

    # -- indexing -----------------------------------------------------------------------------
    def _index(self, node: ast.AST, parent: _Scope | None, cls: str | None) -> None:
        scope = _Scope(node, parent, cls)
        self.scopes[node] = scope
        for child in ast.iter_child_nodes(node):
            self._index_child(child, scope, cls)

    def _index_child(self, node: ast.AST, scope: _Scope, cls: str | None) -> None:
        if isinstance(node, ast.ClassDef):
            self.classes[node.name] = node
            for item in node.body:
                self._index_child(item, scope, node.name)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            self.functions[node.name].append(node)
            if self._returns_client_of_parameter(node):
                self.factory_functions.add(node.name)
            self._index(node, scope, cls)
        elif isinstance(node, ast.Lambda):
            self._index(node, scope, cls)
        else:
            for child in ast.iter_child_nodes(node):
                self._index_child(child, scope, cls)

    @staticmethod
    def _is_boto3_client(call: ast.AST) -> bool:
        """``boto3.client(...)`` or ``boto3.session.Session(...).client(...)``."""
        return (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Attribute)
            and call.func.attr == "client"
            and ast.unparse(call.func.value).split(".")[0].split("(")[0] == "boto3"
        )

    def _is_factory_call(self, call: ast.AST) -> bool:
        """A call of a client factory by name or as a module attribute (``client(...)``, ``aws.client(...)``)."""
        if not isinstance(call, ast.Call):
            return False
        func = call.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        return name in self.factory_functions

    def _find_wrapping_factories(self) -> None:
        """Functions returning a factory's client of their own parameter are factories too
        (``def client(service, settings): return _client(service, ...)``)."""
        changed = True
        while changed:
            changed = False
            for name, defs in self.functions.items():
                if name in self.factory_functions:
                    continue
                for function in defs:
                    params = {a.arg for a in function.args.args}
                    if any(
                        isinstance(n, ast.Return)
                        and self._is_factory_call(n.value)
                        and n.value.args
                        and isinstance(n.value.args[0], ast.Name)
                        and n.value.args[0].id in params
                        for n in ast.walk(function)
                    ):
                        self.factory_functions.add(name)
                        changed = True

    def _returns_client_of_parameter(self, function) -> bool:
        params = {a.arg for a in function.args.args}
        return any(
            isinstance(n, ast.Return)
            and self._is_boto3_client(n.value)
            and n.value.args
            and isinstance(n.value.args[0], ast.Name)
            and n.value.args[0].id in params
            for n in ast.walk(function)
        )

    # -- evaluation ---------------------------------------------------------------------------
    def _lookup(self, scope: _Scope | None, name: str, kind: str) -> set[str]:
        while scope is not None:
            found = getattr(scope, kind).get(name)
            if found:
                return found
            scope = scope.parent
        return set()

    def services(self, expr: ast.AST | None, scope: _Scope) -> set[str]:
        """The services of the clients ``expr`` may evaluate to."""
        if expr is None:
            return set()
        if isinstance(expr, ast.Call):
            literal = expr.args[0].value if expr.args and isinstance(expr.args[0], ast.Constant) else None
            if self._is_boto3_client(expr) and isinstance(literal, str):
                return {literal}
            if self._is_factory_call(expr) and isinstance(literal, str):
                return {literal}
            return self.factory(expr.func, scope)  # calling a client factory
        if isinstance(expr, ast.Name):
            return self._lookup(scope, expr.id, "clients")
        if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name) and expr.value.id == "self":
            return self.attributes.get((scope.cls, expr.attr), set())
        if isinstance(expr, ast.BoolOp):
            return set().union(*(self.services(v, scope) for v in expr.values))
        if isinstance(expr, ast.IfExp):
            return self.services(expr.body, scope) | self.services(expr.orelse, scope)
        return set()

    def factory(self, expr: ast.AST, scope: _Scope) -> set[str]:
        """The services of the clients calling ``expr`` returns (a lambda or a name bound to one)."""
        if isinstance(expr, ast.Lambda):
            return self.services(expr.body, self.scopes[expr])
        if isinstance(expr, ast.Name):
            return self._lookup(scope, expr.id, "factories")
        if isinstance(expr, ast.BoolOp):
            return set().union(*(self.factory(v, scope) for v in expr.values))
        return set()

    # -- propagation --------------------------------------------------------------------------
    def _bind(self, scope: _Scope, target: ast.AST, value: ast.AST, value_scope: _Scope | None = None) -> bool:
        """Let ``target`` (in ``scope``) also hold what ``value`` (evaluated in ``value_scope``) holds."""
        value_scope = value_scope or scope
        if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple) and len(target.elts) == len(value.elts):
            return any([self._bind(scope, t, v, value_scope) for t, v in zip(target.elts, value.elts, strict=False)])  # noqa: C419 binds every name
        clients, factories = self.services(value, value_scope), self.factory(value, value_scope)
        if isinstance(target, ast.Name):
            before = (len(scope.clients[target.id]), len(scope.factories[target.id]))
            scope.clients[target.id] |= clients
            scope.factories[target.id] |= factories
            return before != (len(scope.clients[target.id]), len(scope.factories[target.id]))
        if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self":
            before = len(self.attributes[(scope.cls, target.attr)])
            self.attributes[(scope.cls, target.attr)] |= clients
            return before != len(self.attributes[(scope.cls, target.attr)])
        return False

    def _callees(self, call: ast.Call, scope: _Scope) -> list[tuple[ast.AST, int]]:
        """Function definitions a call may run, with how many leading parameters it fills itself (self)."""
        func = call.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        if name in self.classes:
            return [(f, 1) for f in self.functions.get("__init__", []) if f in self.classes[name].body]
        bound = isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "self"
        return [
            (f, 1 if bound or (f.args.args and f.args.args[0].arg == "self") else 0)
            for f in self.functions.get(name, [])
        ]

    def _bind_arguments(self, call: ast.Call, scope: _Scope) -> bool:
        changed = False
        for function, skip in self._callees(call, scope):
            callee = self.scopes[function]
            params = [a.arg for a in function.args.args][skip:]
            pairs = list(zip(params, call.args, strict=False)) + [
                (k.arg, k.value) for k in call.keywords if k.arg in params
            ]
            for param, arg in pairs:
                changed |= self._bind(callee, ast.Name(id=param, ctx=ast.Store()), arg, scope)
        return changed

    def _propagate(self) -> None:
        changed = True
        while changed:
            changed = False
            for node, scope in self.scopes.items():
                for child in self._own_nodes(node):
                    if isinstance(child, ast.Assign):
                        for target in child.targets:
                            changed |= self._bind(scope, target, child.value)
                    elif isinstance(child, ast.AnnAssign) and child.value is not None:
                        changed |= self._bind(scope, child.target, child.value)
                    elif isinstance(child, ast.Call):
                        changed |= self._bind_arguments(child, scope)

    def _own_nodes(self, node: ast.AST):
        """Nodes of a scope, not descending into nested functions, lambdas or classes (own scopes)."""
        stack = list(ast.iter_child_nodes(node)) if not isinstance(node, ast.Lambda) else [node.body]
        while stack:
            child = stack.pop()
            yield child
            if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                stack.extend(ast.iter_child_nodes(child))
            elif isinstance(child, ast.ClassDef):
                stack.extend(c for c in child.body if not isinstance(c, (ast.FunctionDef, ast.AsyncFunctionDef)))

    # -- result ---------------------------------------------------------------------------------
    def calls(self) -> set[ApiCall]:
        """Every ``<client>.<operation>(`` on a client, with where it is."""
        paths = {tree: path for path, tree in self.trees.items()}
        found = set()
        for node, scope in self.scopes.items():
            path = paths[self._file_of(node)]
            for child in self._own_nodes(node):
                if not (isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute)):
                    continue
                operation = child.func.attr
                if operation == "get_paginator" and child.args and isinstance(child.args[0], ast.Constant):
                    operation = child.args[0].value
                if operation in NOT_API:
                    continue
                for service in self.services(child.func.value, scope):
                    found.add(ApiCall(service, operation, f"{path.relative_to(path.parents[1])}:{child.lineno}"))
        return found

    def _file_of(self, node: ast.AST) -> ast.AST:
        scope = self.scopes[node]
        while scope.parent is not None:
            scope = scope.parent
        return scope.node


def api_calls(files) -> set[ApiCall]:
    return ClientFlow(list(files)).calls()


# -- 2. IAM actions of a call ---------------------------------------------------------------------
S3_ACTIONS = {
    "get_object": ("s3:GetObject",),
    "head_object": ("s3:GetObject",),
    "download_file": ("s3:GetObject",),
    "download_fileobj": ("s3:GetObject",),
    "put_object": ("s3:PutObject",),
    "upload_file": ("s3:PutObject",),
    "upload_fileobj": ("s3:PutObject",),
    "copy_object": ("s3:GetObject", "s3:PutObject"),
    "delete_object": ("s3:DeleteObject",),
    "delete_objects": ("s3:DeleteObject",),
    "list_objects": ("s3:ListBucket",),
    "list_objects_v2": ("s3:ListBucket",),
    "head_bucket": ("s3:ListBucket",),
}
IAM_PREFIX = {"cloudwatch": "cloudwatch"}  # boto3 service -> IAM prefix where they differ
ENDPOINT_NAME = {"cloudwatch": "monitoring"}  # boto3 service -> VPC endpoint service name where they differ


def iam_actions(call: ApiCall) -> tuple[str, ...]:
    if call.service == "s3" and call.operation in S3_ACTIONS:
        return S3_ACTIONS[call.operation]
    pascal = "".join(part.capitalize() for part in call.operation.split("_"))
    return (f"{IAM_PREFIX.get(call.service, call.service)}:{pascal}",)


# -- 3. what Terraform grants and routes ----------------------------------------------------------
@dataclass(frozen=True)
class Component:
    """A piece of code that runs on AWS, its role's policy document, its key and its network."""

    name: str
    files: tuple[Path, ...]
    module: str  # terraform/modules/<module>
    policy: str  # data "aws_iam_policy_document" "<policy>" in the module's iam.tf
    secret_key: str  # the variable holding the KMS key of the secret it reads
    services_local: str  # locals.<name> in terraform/main.tf: services reached from its subnets
    subnet_reference: str  # how terraform/main.tf names its subnets


COMPONENTS = (
    Component(
        "glue_job",
        (GLUE_JOB,),
        "etl",
        "glue_job",
        "var.source_db_secret_kms_key_arn",
        "glue_job_services",
        "var.source_db_subnet_id",
    ),
    Component(
        "lambda",
        LAMBDA_FILES,
        "streaming-inference",
        "lambda",
        "var.kms_key_arn",
        "lambda_services",
        "var.private_subnet_ids",
    ),
    # the API Lambda runs the same package (recsys.serving) under its own role, in the same subnets
    Component("api", LAMBDA_FILES, "api", "api", "var.kms_key_arn", "lambda_services", "var.private_subnet_ids"),
)
DATA_KEY = "var.kms_key_arn"  # SSE-KMS key of every bucket


def policy_statements(component: Component) -> list[dict]:
    """Allow statements of the role's policy document (dynamic statements with their for_each resources)."""
    for block in load_hcl(MODULES / component.module / "iam.tf").get("data", []):
        document = block.get("aws_iam_policy_document", {}).get(component.policy)
        if document is None:
            continue
        statements = list(document.get("statement", []))
        for dynamic in document.get("dynamic", []):
            spec = dynamic.get("statement")
            if spec:
                for content in spec["content"]:
                    resources = [
                        spec["for_each"] if "statement.value" in r else r for r in content.get("resources", [])
                    ]
                    statements.append({**content, "resources": resources})
        return [s for s in statements if s.get("effect", "Allow") == "Allow"]
    raise AssertionError(f"no aws_iam_policy_document {component.policy} in modules/{component.module}/iam.tf")


def allows(statements: list[dict], action: str, resource_reference: str | None = None) -> bool:
    return any(
        any(fnmatch.fnmatchcase(action, pattern) for pattern in s.get("actions", []))
        and (resource_reference is None or any(resource_reference in r for r in s.get("resources", [])))
        for s in statements
    )


def access_problems(component: Component, calls: set[ApiCall], statements: list[dict] | None = None) -> list[str]:
    """Every call the role (its policy, or ``statements``) does not allow or the subnets cannot reach."""
    statements = policy_statements(component) if statements is None else statements
    root = parse_dir(TF)
    reachable = set(root.locals.get(component.services_local, []))
    role = f"modules/{component.module} role ({component.policy})"
    problems = []
    # Code that tells a missing key (NoSuchKey: "no model yet", a 503) from other errors needs
    # s3:ListBucket: without it S3 answers a missing key with 403 AccessDenied, which is a fault (500).
    tells_missing_keys = any("NoSuchKey" in path.read_text() for path in component.files)
    for call in sorted(calls, key=str):
        needed = [(action, None) for action in iam_actions(call)]
        if call.service == "s3" and "s3:GetObject" in iam_actions(call) and tells_missing_keys:
            needed.append(("s3:ListBucket", None))
        if call.service == "secretsmanager" and call.operation == "get_secret_value":
            needed.append(("kms:Decrypt", component.secret_key))  # a customer-managed key's secret
        if "s3:GetObject" in iam_actions(call):
            needed.append(("kms:Decrypt", DATA_KEY))  # SSE-KMS buckets
        if "s3:PutObject" in iam_actions(call):
            needed.append(("kms:GenerateDataKey", DATA_KEY))
        for action, resource in needed:
            if not allows(statements, action, resource):
                on = f" on {resource}" if resource else ""
                problems.append(f"{call}: {role} lacks {action}{on}")
        endpoint = ENDPOINT_NAME.get(call.service, call.service)
        if endpoint not in reachable:
            problems.append(
                f"{call}: no route from {component.name}'s subnets to {endpoint}: add it to "
                f"local.{component.services_local} in terraform/main.tf (modules/vpc-endpoints then "
                "creates its endpoint), or rely on a NAT with create_vpc_endpoints = false"
            )
    return problems


# -- 4. the tests -----------------------------------------------------------------------------------
@pytest.mark.parametrize("component", COMPONENTS, ids=lambda c: c.name)
def test_every_aws_call_is_allowed_and_routed(component):
    calls = api_calls(component.files)
    assert calls, f"the scan found no AWS call in {component.name}: the scanner is broken"
    problems = access_problems(component, calls)
    assert not problems, "\n".join(problems)


def test_the_scan_follows_clients_through_factories_parameters_and_attributes():
    glue = {(c.service, c.operation) for c in api_calls([GLUE_JOB])}
    assert {
        ("secretsmanager", "get_secret_value"),
        ("s3", "upload_file"),
        ("s3", "list_objects_v2"),
        ("s3", "delete_objects"),
        ("glue", "update_table"),
        ("glue", "create_table"),
        ("glue", "get_partitions"),
        ("glue", "batch_create_partition"),
    } <= glue
    lam = {(c.service, c.operation) for c in api_calls(LAMBDA_FILES)}
    assert lam == {("s3", "get_object"), ("secretsmanager", "get_secret_value")}


def _planted(tmp_path: Path, source: Path, anchor: str, extra: str) -> Path:
    text = source.read_text()
    assert anchor in text, f"{source.name} changed: update the planted call's anchor"
    copy = tmp_path / source.name
    copy.write_text(text.replace(anchor, anchor + extra, 1))
    return copy


def test_a_planted_call_without_permission_or_route_fails(tmp_path):
    glue_job = _planted(
        tmp_path,
        GLUE_JOB,
        "    table = catalog_table_input(config, manifest)\n",
        "    glue.get_database(Name=config.catalog_database)\n"
        "    boto3.client('dynamodb').put_item(TableName='t', Item={})\n",
    )
    problems = "\n".join(access_problems(COMPONENTS[0], api_calls([glue_job])))
    assert "glue.get_database: modules/etl role (glue_job) lacks glue:GetDatabase" in problems
    assert "dynamodb.put_item: modules/etl role (glue_job) lacks dynamodb:PutItem" in problems
    assert "dynamodb.put_item: no route from glue_job's subnets to dynamodb" in problems

    model = next(p for p in LAMBDA_FILES if p.name == "model_cache.py")
    planted = _planted(
        tmp_path,
        model,
        '    """The version ``models/serving.json`` names."""\n',
        "    s3.put_object(Bucket=bucket, Key='x', Body=b'')\n",
    )
    files = [planted if p == model else p for p in LAMBDA_FILES]
    problems = "\n".join(access_problems(COMPONENTS[1], api_calls(files)))
    assert "s3.put_object: modules/streaming-inference role (lambda) lacks s3:PutObject" in problems
    assert "lacks kms:GenerateDataKey on var.kms_key_arn" in problems


def test_a_role_that_reads_possibly_missing_keys_needs_list_bucket():
    """Before a model exists, /health must say 503 (NoSuchKey), not 500 (AccessDenied without ListBucket)."""
    statements = [s for s in policy_statements(COMPONENTS[2]) if "s3:ListBucket" not in s.get("actions", [])]
    assert not access_problems(COMPONENTS[2], api_calls(LAMBDA_FILES))
    problems = "\n".join(access_problems(COMPONENTS[2], api_calls(LAMBDA_FILES), statements))
    assert "s3.get_object: modules/api role (api) lacks s3:ListBucket" in problems


def test_the_routes_exist_in_terraform():
    """The services each component reaches are endpoints of modules/vpc-endpoints, on its subnets,
    created unless the NAT alternative is chosen."""
    root = parse_dir(TF)
    call = root.modules["vpc_endpoints"]
    assert call["count"] == "${var.create_vpc_endpoints && length(local.endpoint_subnet_ids) > 0 ? 1 : 0}"
    variable = root.variables["create_vpc_endpoints"]
    assert variable["default"] is True and "NAT" in variable["description"]
    subnets = root.locals["endpoint_subnet_ids"]
    clients = root.locals["endpoint_clients"]
    for component in COMPONENTS:
        assert component.subnet_reference in subnets, f"{component.name}'s subnets get no endpoint routes"
        assert f"local.{component.services_local}" in clients, f"{component.name} is not an endpoint client"
    assert "local.vector_db_services" in call["route_only_services"]  # RDS's aws_s3 import reaches S3
    endpoints = module_tf("vpc-endpoints")
    gateway = endpoints.resources[("aws_vpc_endpoint", "s3")]
    assert gateway["vpc_endpoint_type"] == "Gateway" and gateway["service_name"].endswith(".s3")
    assert "local.route_table_ids" in gateway["route_table_ids"]
    interface = endpoints.resources[("aws_vpc_endpoint", "interface")]
    assert interface["vpc_endpoint_type"] == "Interface" and interface["private_dns_enabled"] is True
    assert interface["service_name"] == "com.amazonaws.${local.region}.${each.key}"
    assert interface["for_each"] == "${local.interface_services}"
    rule = endpoints.resources[("aws_vpc_security_group_ingress_rule", "endpoint")]
    assert rule["from_port"] == rule["to_port"] == 443 and "referenced_security_group_id" in rule
    assert not {"cidr_ipv4", "cidr_ipv6"} & set(rule), "endpoints admit only their clients' security groups"
    every = {s for c in COMPONENTS for s in root.locals[c.services_local]} | set(root.locals["vector_db_services"])
    assert every >= {"s3", "secretsmanager", "glue", "sts", "kms", "logs"}
    assert re.search(r"create_vpc_endpoints\s*=\s*false", (REPO / "docs" / "aws.md").read_text()), (
        "document the NAT way"
    )


# -- 5. the pipeline's ECS tasks and its state machine -----------------------------------------------
# Each task definition runs some stages (recsys.pipeline.definition); its code path is every function
# reachable from those stages' functions (recsys.pipeline.stages.STAGE_FUNCTIONS) by name, across the
# package, and its role must allow exactly the calls on that path (plus the KMS actions they imply).
from recsys.pipeline.definition import EXAMPLE_TARGETS, STAGES, TASKS, render_definition  # noqa: E402
from recsys.pipeline.stages import STAGE_FUNCTIONS  # noqa: E402

# What a stage may run: the layers below recsys.pipeline (test_layout.py keeps local, apps and cli out of it).
PACKAGE_FILES = tuple(
    sorted(
        p for part in ("pipeline", "core", "serving", "model") for p in (REPO / "src" / "recsys" / part).rglob("*.py")
    )
)
PIPELINE_MODULE = MODULES / "pipeline"


def _relative(path: Path) -> str:
    return str(path.relative_to(path.parents[1]))


@lru_cache(maxsize=4)
def client_flow(files: tuple[Path, ...]) -> ClientFlow:
    return ClientFlow(list(files))


def reachable_calls(files: tuple[Path, ...], roots: set[str]) -> set[ApiCall]:
    """The API calls inside functions reachable from ``roots``: calls by bare name, or as an attribute of
    a name imported from recsys (``artifacts.write_serving_pointer``) or of ``self``, and functions passed
    as arguments."""
    flow = client_flow(files)
    ours = {
        alias.asname or alias.name
        for tree in flow.trees.values()
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("recsys")
        for alias in node.names
    }
    ours.add("self")
    reached, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name in reached:
            continue
        reached.add(name)
        for function in flow.functions.get(name, []):
            local = {a.arg for a in ast.walk(function.args) if isinstance(a, ast.arg)} | {
                n.id for n in ast.walk(function) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
            }
            for node in ast.walk(function):
                if isinstance(node, ast.Call):
                    func = node.func
                    if isinstance(func, ast.Name):
                        todo.append(func.id)
                    elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in ours:
                        todo.append(func.attr)
                    todo.extend(
                        arg.id
                        for arg in [*node.args, *(k.value for k in node.keywords)]  # passed as a value
                        if isinstance(arg, ast.Name) and arg.id in flow.functions and arg.id not in local
                    )
    spans = defaultdict(list)
    for path, tree in flow.trees.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in reached:
                spans[_relative(path)].append((node.lineno, node.end_lineno))

    def inside(call: ApiCall) -> bool:
        where, _, line = call.where.rpartition(":")
        return any(start <= int(line) <= end for start, end in spans[where])

    return {call for call in flow.calls() if inside(call)}


def task_calls(task: str) -> set[ApiCall]:
    roots = {STAGE_FUNCTIONS[stage.command].__name__ for stage in STAGES.values() if stage.task == task}
    assert roots, f"no stage runs on task {task}"
    return reachable_calls(PACKAGE_FILES, roots)


def pipeline_statements(policy: str) -> list[dict]:
    for block in load_hcl(PIPELINE_MODULE / "iam.tf").get("data", []):
        document = block.get("aws_iam_policy_document", {}).get(policy)
        if document is not None:
            return [s for s in document.get("statement", []) if s.get("effect", "Allow") == "Allow"]
    return []  # no policy document: the role may do nothing


def needed_actions(calls: set[ApiCall]) -> set[str]:
    needed = set()
    for call in calls:
        actions = iam_actions(call)
        needed |= set(actions)
        if "s3:GetObject" in actions:
            needed.add("kms:Decrypt")
        if "s3:PutObject" in actions:
            needed.add("kms:GenerateDataKey")
    return needed


@pytest.mark.parametrize("task", list(TASKS), ids=str)
def test_pipeline_task_roles_allow_exactly_what_their_stages_call(task):
    calls = task_calls(task)
    statements = pipeline_statements(task)
    granted = {a for s in statements for a in s.get("actions", [])}
    needed = needed_actions(calls)
    missing = sorted(a for a in needed if not allows(statements, a))
    assert not missing, f"modules/pipeline role {task} lacks {missing} for {sorted(map(str, calls))}"
    extra = sorted(granted - needed)
    assert not extra, f"modules/pipeline role {task} grants {extra}, which no stage of it calls"


def test_pipeline_task_scan_sees_each_tasks_own_calls():
    """The reachability is real: only train deletes (a failed publish), dbroles calls nothing."""
    ops = {task: {(c.service, c.operation) for c in task_calls(task)} for task in TASKS}
    assert ("s3", "delete_objects") in ops["train"]
    assert ("s3", "delete_objects") not in ops["load"] | ops["gate"]
    assert ("s3", "head_object") in ops["load"] and ("s3", "head_object") not in ops["train"]
    assert ops["dbroles"] == set()
    assert all(service == "s3" for calls in ops.values() for service, _ in calls)


def test_pipeline_tasks_reach_their_services():
    root = parse_dir(TF)
    reachable = set(root.locals["pipeline_task_services"])
    for task in TASKS:
        for call in task_calls(task):
            assert ENDPOINT_NAME.get(call.service, call.service) in reachable, f"{call}: no route from the tasks"
    assert {"ecr.api", "ecr.dkr", "logs", "secretsmanager", "s3"} <= reachable  # what the ECS agent needs
    assert "local.pipeline_task_services" in root.locals["endpoint_clients"]


# What Step Functions calls for each integration of the document (the Step Functions developer guide's
# "IAM policies for integrated services").
INTEGRATION_ACTIONS = {
    "arn:aws:states:::glue:startJobRun.sync": {
        "glue:StartJobRun",
        "glue:GetJobRun",
        "glue:GetJobRuns",
        "glue:BatchStopJobRun",
    },
    "arn:aws:states:::ecs:runTask.sync": {
        "ecs:RunTask",
        "ecs:StopTask",
        "ecs:DescribeTasks",
        "events:PutTargets",
        "events:PutRule",
        "events:DescribeRule",
        "iam:PassRole",
    },
    "arn:aws:states:::sns:publish": {"sns:Publish", "kms:GenerateDataKey", "kms:Decrypt"},
    "arn:aws:states:::aws-sdk:s3:getObject": {"s3:GetObject", "kms:Decrypt"},
}
# What its logging and tracing configuration needs.
CONFIGURATION_ACTIONS = {
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
}


def test_state_machine_role_allows_exactly_what_its_document_calls():
    document = render_definition(EXAMPLE_TARGETS)
    resources = {state["Resource"] for state in document["States"].values() if state["Type"] == "Task"}
    assert resources <= set(INTEGRATION_ACTIONS), f"an integration without its IAM actions here: {resources}"
    needed = set().union(*(INTEGRATION_ACTIONS[r] for r in resources)) | CONFIGURATION_ACTIONS
    granted = {a for s in pipeline_statements("state_machine") for a in s.get("actions", [])}
    assert granted == needed, f"missing {sorted(needed - granted)}, extra {sorted(granted - needed)}"
    passed = next(s for s in pipeline_statements("state_machine") if "iam:PassRole" in s["actions"])
    assert passed["condition"][0]["values"] == ["ecs-tasks.amazonaws.com"]
