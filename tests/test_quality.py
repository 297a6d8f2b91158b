"""Static checks as tests, so the one test command also runs them: ruff (lint and format),
mypy --strict, and the shape of cloudroi/ (module and function sizes, radon complexity)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_ruff_is_clean() -> None:
    result = run("ruff", "check", "cloudroi", "tests", "benchmarks", "fuzz")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_applied() -> None:
    result = run("ruff", "format", "--check", "cloudroi", "tests", "benchmarks", "fuzz", "deploy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean() -> None:
    result = run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------------------------
# the shape of cloudroi/: modules, functions and complexity a newcomer can hold in their head
# --------------------------------------------------------------------------------------------

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
SOURCES = sorted((ROOT / "cloudroi").rglob("*.py"))


def _functions(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text())
    return [
        (node.name, (node.end_lineno or node.lineno) - node.lineno + 1)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    ]


def test_no_module_is_too_long() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in SOURCES
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_is_too_long() -> None:
    long = {
        f"{p.relative_to(ROOT)}:{name}": n
        for p in SOURCES
        for name, n in _functions(p)
        if n > MAX_FUNCTION_LINES
    }
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_radon_grades_no_function_d_or_worse() -> None:
    result = run("radon", "cc", "--min", "D", "--show-complexity", "cloudroi")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", result.stdout
