"""The shape of the code (see README "Map of the code"): sizes that keep a module livable and
dependencies that point one way. Each rule reads the source, so a change that breaks one fails
here with the place named."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "charrnn"
MODULE_MAX, RUNS_MAX, FUNCTION_MAX, CLASS_MAX = 450, 400, 60, 210
STDLIB = set(sys.stdlib_module_names)
FILE_ACCESS = re.compile(r"(?<![\w.])open\(|\.(read|write)_(bytes|text)\(|np\.memmap\(")


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> int:
    """Lines of a definition's body, its docstring not counted (nor a signature)."""
    body = node.body
    first = body[0]
    docstring = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
    if docstring and isinstance(first.value.value, str) and len(body) > 1:  # type: ignore[attr-defined]
        body = body[1:]
    end = node.end_lineno or body[-1].lineno
    return end - body[0].lineno + 1


def _imports(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports ('.x' for the package's own)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                names.add("." * node.level + (node.module or "").split(".")[0])
            elif node.module:
                names.add(node.module.split(".")[0])
    return names


def test_modules_functions_and_classes_stay_small() -> None:
    too_big = []
    for path in _sources():
        name = str(path.relative_to(PACKAGE))
        lines = len(path.read_text(encoding="utf-8").splitlines())
        limit = RUNS_MAX if name == "runs.py" else MODULE_MAX
        if lines > limit:
            too_big.append(f"{name}: {lines} lines (> {limit})")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                n = _body_lines(node)
                cap = CLASS_MAX if isinstance(node, ast.ClassDef) else FUNCTION_MAX
                if n > cap:
                    too_big.append(f"{name}:{node.lineno} {node.name}: {n} lines (> {cap})")
    assert too_big == []


def test_the_library_does_not_know_the_command_line() -> None:
    offenders = []
    for path in _sources():
        if path.parent.name == "cli" or path.name == "__main__.py":  # python -m charrnn
            continue
        bad = _imports(path) & {"typer", "rich", "click", ".cli"}
        if bad:
            offenders.append(f"{path.name} imports {sorted(bad)}")
    assert offenders == []


@pytest.mark.parametrize(
    ("module", "allowed"),
    [
        ("model/rnn.py", {"torch", ".config"}),  # ModelConfig lives in the torch-free config
        ("model/config.py", set()),
        ("text/vocab.py", set()),
        ("units.py", set()),
        ("training/events.py", {"..units", ".loop"}),  # .training for type checking only
        ("store/atomic.py", set()),
        ("training/schedule.py", {".config"}),
        ("store/metrics.py", {"..errors", "..training", "..units"}),
    ],
)
def test_pure_modules_import_little(module: str, allowed: set[str]) -> None:
    imported = _imports(PACKAGE / module) - STDLIB - {"__future__"}
    assert imported <= allowed, f"{module} imports {sorted(imported - allowed)}"


def test_only_the_file_owning_modules_open_files() -> None:
    owners = {
        "atomic.py",
        "checkpoint.py",
        "corpus.py",
        "reading.py",
        "metrics.py",
        "tensorfile.py",
        "tokenizers.py",  # sentencepiece model bytes, in memory only
    }
    opening = set()
    for path in _sources():
        if path.parent.name == "cli":
            continue
        if FILE_ACCESS.search(path.read_text(encoding="utf-8")):
            opening.add(path.name)
    assert opening <= owners, sorted(opening - owners)
