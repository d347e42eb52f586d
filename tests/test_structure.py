"""The codebase's own rules, checked: short functions, no video decoder loaded by importing the
library, a self-contained codebase (no citation of documents or issues outside the repository),
and the one-way dependencies (sampling never imports model; nothing imports longllava_cli)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("longllava_cli", "model", "sampling")
MAX_BODY_LINES = 60


def _python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def _body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from the first statement after the docstring to the last."""
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return body[-1].end_lineno - body[0].lineno + 1 if body else 0


def test_no_function_body_over_60_lines():
    long = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({_body_lines(node)} lines)"
        for path in _python_files(*PACKAGES)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _body_lines(node) > MAX_BODY_LINES
    ]
    assert long == []


def test_importing_the_library_loads_no_video_decoder():
    code = "import sys, model, model.api; print([m for m in ('cv2', 'av', 'decord') if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == "[]"


# A section sign after the old reference notes' name, or an issue number: documents and trackers
# that are not in the repository.
_OUTSIDE = re.compile(r"REFERENCE(\.md)?\s*§|\bissues? #?\d+|shared/[A-Z]+\.md")


@pytest.mark.parametrize("folder", ["longllava_cli", "model", "sampling", "tests", "benchmarks", "examples"])
def test_no_citation_outside_the_repository(folder):
    this = Path(__file__).resolve()
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in _python_files(folder)
        if path != this
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if _OUTSIDE.search(line)
    ]
    assert found == []


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_dependencies_point_one_way():
    sampling_uses_model = [p.name for p in _python_files("sampling") if "model" in _imports(p)]
    library_uses_cli = [p.name for p in _python_files("model", "sampling") if "longllava_cli" in _imports(p)]
    assert sampling_uses_model == [] and library_uses_cli == []
