"""The floor plan, checked: the import graph of src/, seed/ and glue/ has no cycle and keeps
its layers, and every contract constant is written once, in ``recsys.contracts``.

The graph is built from the code's own ``import`` statements (module level and inside functions).
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from recsys import contracts

REPO = Path(__file__).resolve().parents[2]
ROOTS = {"src": REPO / "src", "seed": REPO / "seed"}
GLUE_JOB = REPO / "glue" / "etl_job.py"
OURS = ("recsys", "recsys_seed")
# what the Lambda zips and the Glue job ship of recsys (recsys.deploy.lambda_zip.SHIPPED)
SHIPPED_PACKAGES = ("recsys.model", "recsys.serving")


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of our packages (and the Glue script)."""
    found = {}
    for root in ROOTS.values():
        for path in root.rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    found["glue.etl_job"] = GLUE_JOB
    return found


def imported_names(path: Path) -> Iterator[str]:
    """Every name ``path`` imports, anywhere in the file: ``pkg.module`` for ``from pkg import module``."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{path}: relative import"
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def import_graph() -> dict[str, set[str]]:
    """module -> the modules of ours it imports (an imported name that is not a module maps to the
    module defining it: ``from pkg.mod import func`` -> ``pkg.mod``, ``from pkg import func`` -> ``pkg``)."""
    known = modules()
    graph = {}
    for module, path in known.items():
        targets = set()
        for imported in imported_names(path):
            name = imported
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module and name.split(".")[0] in OURS:
                targets.add(name)
        graph[module] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None (depth-first search with colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


GRAPH = import_graph()


def importers_of(target_prefix: str, *, from_prefix: str) -> dict[str, set[str]]:
    return {
        m: {t for t in targets if t == target_prefix or t.startswith(target_prefix + ".")}
        for m, targets in GRAPH.items()
        if m == from_prefix or m.startswith(from_prefix + ".")
    }


def test_the_graph_is_read():
    assert "recsys.pipeline.train" in GRAPH and "recsys.contracts" in GRAPH["recsys.pipeline.train"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycles():
    assert find_cycle(GRAPH) is None, f"import cycle: {' -> '.join(find_cycle(GRAPH))}"


# (importer, imported, why): none of these may ever exist
FORBIDDEN = [
    ("recsys.pipeline", "recsys.local", "the batch stages run unchanged on AWS: no local stand-ins"),
    ("recsys.pipeline", "recsys.apps", "stages are below the apps that use them"),
    ("recsys.pipeline", "recsys_seed", "stages do not know how the source was made (the ceiling is passed in)"),
    ("recsys.core", "recsys.pipeline", "core is below everything"),
    ("recsys.core", "recsys.local", "core is below everything"),
    ("recsys.core", "recsys.apps", "core is below everything"),
    ("recsys.local", "recsys.apps", "the local stack is below the apps"),
    ("recsys.local", "recsys.pipeline", "the stand-ins do not run stages"),
    ("recsys.deploy", "recsys.local", "what ships to AWS is built from the project alone"),
    ("recsys.apps", "recsys.cli", "the CLI is on top"),
    ("recsys.model", "recsys.serving", "the model math is below serving: training imports it without serving"),
    ("recsys.pipeline", "recsys.serving.handler", "stages do not run the Lambda"),
    ("recsys.pipeline", "recsys.serving.api", "stages do not run the API"),
    ("recsys_seed", "recsys", "the seeder is independent of the package"),
]


@pytest.mark.parametrize("importer, imported, why", FORBIDDEN, ids=[f"{a}->{b}" for a, b, _ in FORBIDDEN])
def test_layers(importer, imported, why):
    offenders = {m: t for m, t in importers_of(imported, from_prefix=importer).items() if t}
    assert not offenders, f"{why}: {offenders}"


def test_shipped_code_imports_only_what_ships():
    """The Lambda zips ship recsys.model, recsys.serving and the contract; the Glue job the contract only."""
    for module, targets in GRAPH.items():
        used = {t for t in targets if t.startswith("recsys")}
        if module.startswith("glue."):
            assert used <= {"recsys", "recsys.contracts"}, f"{module} imports {used}"
        elif module.startswith(SHIPPED_PACKAGES):
            outside = {
                t for t in used if t not in {"recsys", "recsys.contracts"} and not t.startswith(SHIPPED_PACKAGES)
            }
            assert not outside, f"{module} imports {outside}, which the Lambda zips do not ship"


def test_only_the_projects_namespaces_are_installed():
    """One source root per distribution: installing the project adds recsys and the seeder, nothing generic."""
    find = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    tops = {path.name for root in find["where"] for path in (REPO / root).iterdir() if (path / "__init__.py").is_file()}
    assert tops == set(OURS), f"top-level packages: {sorted(tops)}"
    assert all(pattern.split("*")[0] in OURS for pattern in find["include"]), find["include"]


def test_the_contract_module_imports_nothing_of_ours():
    assert GRAPH["recsys.contracts"] == set()


def test_function_level_imports_are_only_heavy_optional_dependencies():
    """Imports inside functions only for what is slow to load and not always needed."""
    allowed = {"pyspark", "implicit", "matplotlib", "faker", "werkzeug", "dotenv", "awsglue"}
    for module, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)):
                        names = [inner.module] if isinstance(inner, ast.ImportFrom) else [a.name for a in inner.names]
                        for name in names:
                            assert name.split(".")[0] in allowed, (
                                f"{module}:{inner.lineno} imports {name} in a function"
                            )


def contract_values() -> dict[str, str]:
    """The contract's distinctive string constants (short generic words such as "Ok" are left out)."""
    return {
        name: value
        for name, value in vars(contracts).items()
        if name.isupper() and isinstance(value, str) and len(value) >= 8 and not value.startswith(("python", "RECSYS_"))
    }


def test_contract_constants_are_written_once():
    """No other module spells a contract key or name as a literal (docstrings and comments aside)."""
    values = contract_values()
    assert {"SERVING_POINTER_KEY", "TRAINING_PREFIX", "PROCESSING_FAILED", "LAMBDA_HANDLER"} <= set(values)
    offenders = []
    for module, path in modules().items():
        if module == "recsys.contracts":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                for name, value in values.items():
                    if re.search(rf"(?<![A-Za-z0-9_]){re.escape(value)}(?![A-Za-z0-9_])", node.value):
                        offenders.append(f"{path.relative_to(REPO)}:{node.lineno} spells {name} ({value!r})")
    assert not offenders, "\n".join(offenders)
