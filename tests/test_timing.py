"""No test judges the machine's speed: every time limit in tests/ is the shared hang guard (see tests/timing.py)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
EXEMPT = "hang guard exempt:"


def literal_limits(path: Path) -> list[str]:
    """`timeout=<number>`, a `timeout` parameter defaulting to a number, and `time.monotonic() + <number>`."""
    source = path.read_text()
    lines = source.splitlines()
    found = []

    def report(node: ast.AST, what: str) -> None:
        if EXEMPT not in lines[node.lineno - 1]:
            found.append(f"{path.relative_to(TESTS)}:{node.lineno}: {what}")

    def is_number(node: ast.AST | None) -> bool:
        return (
            isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool)
        )

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg and "timeout" in keyword.arg and is_number(keyword.value):
                    report(node, f"{keyword.arg}={keyword.value.value}")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args.args + node.args.kwonlyargs
            defaults = [None] * (len(node.args.args) - len(node.args.defaults)) + node.args.defaults
            defaults += node.args.kw_defaults
            for arg, default in zip(args, defaults, strict=True):
                if "timeout" in arg.arg and is_number(default):
                    report(node, f"parameter {arg.arg}={default.value}")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add) and is_number(node.right):
            if "monotonic" in ast.unparse(node.left) or "time()" in ast.unparse(node.left):
                report(node, ast.unparse(node))
    return found


def test_time_limits_are_hang_guards_only():
    found = [hit for path in sorted(TESTS.rglob("*.py")) for hit in literal_limits(path)]
    assert not found, "literal time limits (use tests.timing.HANG_GUARD_S):\n" + "\n".join(found)
