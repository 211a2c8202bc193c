"""SQL is never built by pasting a name in: every value interpolated into a statement text is a
quoted identifier (``quote_mysql_identifier`` / ``recsys_seed.load.quote_identifier``, psycopg2
``sql.Identifier``) or a module constant (a contract table name); values go as query parameters.

Scans the statement texts handed to a database cursor (``execute``, ``executemany``, ``copy_expert``,
``mogrify``) across the code that talks to MySQL or PostgreSQL, including benchmarks and test fixtures.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCANNED = ("src", "seed", "glue", "lambda", "benchmarks", "tests/integration")
CURSOR_METHODS = {"execute", "executemany", "copy_expert", "mogrify"}
QUOTING_CALLS = {"quote_mysql_identifier", "quote_identifier", "Identifier"}


def _python_files() -> list[Path]:
    return sorted(p for top in SCANNED for p in (REPO / top).rglob("*.py") if ".venv" not in p.parts)


def _is_safe(node: ast.expr) -> bool:
    """A quoting call, a module constant (UPPER_CASE name or attribute), a literal, or
    ``", ".join(<f-string of safe fields> for ...)`` (a list of quoted names)."""
    if isinstance(node, ast.Call):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if (
            name == "join"
            and isinstance(func.value, ast.Constant)
            and len(node.args) == 1
            and isinstance(node.args[0], (ast.GeneratorExp, ast.ListComp))
        ):
            element = node.args[0].elt
            return not _pasted(element) if isinstance(element, ast.JoinedStr) else _is_safe(element)
        return name in QUOTING_CALLS
    if isinstance(node, ast.Name):
        return node.id.isupper()
    if isinstance(node, ast.Attribute):
        return node.attr.isupper()
    return isinstance(node, ast.Constant)


def _pasted(text: ast.expr) -> list[ast.expr]:
    """The values pasted into a statement text that are not safe (f-string fields, %, +, .format)."""
    if isinstance(text, ast.JoinedStr):
        return [v.value for v in text.values if isinstance(v, ast.FormattedValue) and not _is_safe(v.value)]
    if isinstance(text, ast.BinOp) and isinstance(text.op, (ast.Mod, ast.Add)):
        parts = [text.left, text.right] if isinstance(text.op, ast.Add) else [text.right]
        return [
            p
            for part in parts
            for p in ([part] if not isinstance(part, (ast.JoinedStr, ast.BinOp)) else _pasted(part))
            if not _is_safe(p)
        ]
    if (
        isinstance(text, ast.Call)
        and isinstance(text.func, ast.Attribute)
        and text.func.attr == "format"
        and isinstance(text.func.value, ast.Constant)
    ):  # "...{}".format(x); sql.SQL(...).format is fine
        return [a for a in [*text.args, *(k.value for k in text.keywords)] if not _is_safe(a)]
    return []


def _statement_texts(tree: ast.AST):
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in CURSOR_METHODS
            and node.args
        ):
            yield node.args[0]


def _findings() -> list[str]:
    found = []
    for path in _python_files():
        tree = ast.parse(path.read_text(), filename=str(path))
        for text in _statement_texts(tree):
            for value in _pasted(text):
                found.append(f"{path.relative_to(REPO)}:{value.lineno}: {ast.unparse(value)}")
    return found


def test_no_value_is_pasted_into_sql_unquoted():
    assert _findings() == []


@pytest.mark.parametrize(
    "source, unsafe",
    [
        ('cur.execute(f"DROP DATABASE {name}")', ["name"]),
        ('cur.execute(f"CREATE DATABASE `{settings.mysql_database}`")', ["settings.mysql_database"]),
        ('cur.execute("SELECT * FROM %s" % table)', ["table"]),
        ('cur.execute("SELECT * FROM " + table)', ["table"]),
        ('cur.execute("SELECT * FROM {}".format(table))', ["table"]),
        ('cur.execute(f"DROP DATABASE {quote_mysql_identifier(name)}")', []),
        ('cur.execute(f"LOCK TABLE {LIVE_TABLE}")', []),
        ('cur.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))', []),
        ('cur.execute("SELECT %s", (value,))', []),
        (
            'cur.execute("RENAME TABLE " + ", ".join(f"{quote_identifier(a)} TO {quote_identifier(b)}" for a, b in m))',
            [],
        ),
        (
            'cur.execute("RENAME TABLE " + ", ".join(f"{a} TO {b}" for a, b in m))',
            ["', '.join((f'{a} TO {b}' for a, b in m))"],
        ),
    ],
)
def test_the_scan_tells_pasted_from_quoted(source, unsafe):
    tree = ast.parse(source)
    assert [ast.unparse(v) for text in _statement_texts(tree) for v in _pasted(text)] == unsafe
