"""The shape of the code (see docs/architecture.md), computed from the source itself: the real
import graph (every import, those under ``TYPE_CHECKING`` and inside functions included), the
direction between layers, who touches files, and sizes that keep a module livable. A change that
breaks a rule fails here with the place named."""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "charrnn"
MODULE_MAX, FUNCTION_MAX, CLASS_MAX = 400, 50, 200  # lines; a body's docstring not counted

# The layers, lowest first. A module may import its own subpackage's modules and any module of a
# LOWER layer, never one of its own layer's other parts or of a higher layer.
LAYERS: list[set[str]] = [
    {"_version", "errors", "units", "protocols"},  # leaves: standard library only
    {"device"},
    {"text", "model"},
    {"store", "evaluation"},
    {"training", "sample"},
    {"run", "serve"},
    {"cli", "api"},  # the command line and the Python API: two faces, neither uses the other
    {"", "__main__"},  # the package itself (the Python API) and python -m charrnn
]
LAYER_OF = {part: i for i, layer in enumerate(LAYERS) for part in layer}

# Only these modules touch the file system (everything else goes through them).
FILE_OWNERS = {
    "store/atomic.py",  # the one atomic-write helper
    "store/checkpoint.py",  # finding and reading checkpoint folders and pointers
    "store/saving.py",  # writing them
    "store/disk.py",  # sizes and times on disk, pointer folders
    "store/metrics.py",  # metrics.jsonl
    "store/tensorfile.py",  # safetensors headers
    "text/reading.py",  # reading text files and stdin
    "run/corpus.py",  # a run's token cache
    "run/folder.py",  # run folders and their lock
    "cli/common.py",  # the terminal's streams (stdout to /dev/null after a closed pipe)
    "serve/app.py",  # the playground page: package data, read with importlib.resources
}
FILE_ACCESS = re.compile(
    r"(?<![\w.])open\(|\.(read|write)_(bytes|text)\(|np\.memmap\(|\bshutil\.|\btempfile\."
    r"|\bos\.(open|replace|rename|remove|unlink|mkdir|makedirs|rmdir|listdir|scandir|fsync"
    r"|ftruncate|truncate|link|symlink|chmod)\("
    r"|\.(mkdir|unlink|rmdir|touch|iterdir|glob|rglob|open)\("
)


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    """``charrnn.run.plan`` for charrnn/run/plan.py, ``charrnn.run`` for its ``__init__``."""
    parts = ["charrnn", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in _sources()}


def _part(module: str) -> str:
    """The layer part a module belongs to: its subpackage, or its own name for a top module."""
    return module.split(".")[1] if "." in module else ""


def _targets(module: str, node: ast.ImportFrom | ast.Import) -> Iterator[str]:
    """The package modules an import statement loads (``from . import x`` loads ``.x``)."""
    if isinstance(node, ast.Import):
        yield from (a.name for a in node.names if a.name.split(".")[0] == "charrnn")
        return
    if node.level:
        is_package = MODULES[module].name == "__init__.py"
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join([*base, *([node.module] if node.module else [])])
    elif node.module and node.module.split(".")[0] == "charrnn":
        target = node.module
    else:
        return
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        yield sub if sub in MODULES else target


@cache
def _graph() -> dict[str, dict[str, int]]:
    """module -> {imported module: line}, for every import anywhere in the module."""
    graph: dict[str, dict[str, int]] = {}
    for module, path in MODULES.items():
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in _targets(module, node):
                    if target != module:
                        edges.setdefault(target, node.lineno)
        graph[module] = edges
    return graph


def _third_party(path: Path, top_level: bool = False) -> set[str]:
    """Outside packages ``path`` imports (only those run on import with ``top_level``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body if top_level else ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"__future__", "charrnn"}


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


# ----------------------------------------------------------------------------- the imports


def test_the_graph_is_read_from_real_imports() -> None:
    """The rules below are only as good as the graph: check it sees the imports it must."""
    graph = _graph()
    assert "charrnn.run.plan" in graph["charrnn.run.start"]  # from .plan import ...
    assert "charrnn.run.defaults" in graph["charrnn.run.plan"]  # from . import defaults
    assert "charrnn.model.rnn" in graph["charrnn.sample.generate"]  # under TYPE_CHECKING
    assert "charrnn.cli" in graph["charrnn.__main__"]
    assert sum(len(e) for e in graph.values()) > 150


def test_no_import_cycles() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_every_part_of_the_package_has_a_layer() -> None:
    assert {_part(m) for m in MODULES} <= set(LAYER_OF), sorted(
        {_part(m) for m in MODULES} - set(LAYER_OF)
    )


def test_imports_point_down_the_layers() -> None:
    wrong = []
    for module, edges in _graph().items():
        here = _part(module)
        for target, line in edges.items():
            there = _part(target)
            if there == here and here != "":
                continue  # within one subpackage
            if LAYER_OF[there] >= LAYER_OF[here]:
                wrong.append(f"{MODULES[module].relative_to(PACKAGE)}:{line} imports {target}")
    assert wrong == []


def test_subpackage_inits_are_empty() -> None:
    """An import of ``charrnn.sample.x`` must not load torch through ``sample/__init__.py``."""
    full = []
    for path in PACKAGE.glob("*/__init__.py"):
        if path.parent.name == "cli":
            continue  # the command line's app
        tree = ast.parse(path.read_text(encoding="utf-8"))
        body = [n for n in tree.body if not isinstance(n, ast.Expr)]  # a docstring is fine
        if body:
            full.append(str(path.relative_to(PACKAGE)))
    assert full == []


def test_the_library_does_not_know_the_command_line() -> None:
    offenders = []
    for path in _sources():
        if path.parent.name == "cli" or path.name == "__main__.py":
            continue
        bad = _third_party(path) & {"typer", "rich", "click"}
        if bad:
            offenders.append(f"{path.relative_to(PACKAGE)} imports {sorted(bad)}")
    assert offenders == []


def test_leaves_and_configs_import_little() -> None:
    """The modules that torch-free paths and every layer read stay light when imported (an
    import inside a function runs only when it is called; tests/test_startup.py checks that the
    torch-free commands never load torch)."""
    light = {
        "_version.py": set(),
        "errors.py": set(),
        "units.py": set(),
        "model/config.py": set(),
        "text/vocab.py": set(),
        "training/config.py": set(),
        "store/atomic.py": set(),
        "model/arrays.py": {"numpy"},
        "sample/numpy_engine.py": {"numpy"},
    }
    heavy = {m: _third_party(PACKAGE / m, top_level=True) - allowed for m, allowed in light.items()}
    assert {m: sorted(v) for m, v in heavy.items() if v} == {}


# ----------------------------------------------------------------------------- files


def test_only_the_file_owning_modules_touch_files() -> None:
    touching = []
    for path in _sources():
        rel = str(path.relative_to(PACKAGE))
        if rel in FILE_OWNERS:
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if FILE_ACCESS.search(line.split("#")[0]):
                touching.append(f"{rel}:{n}: {line.strip()}")
    assert touching == []


def test_the_file_rule_sees_os_and_shutil() -> None:
    for line in ("os.replace(a, b)", "shutil.rmtree(p)", "fd = os.open(p, 0)", "p.unlink()"):
        assert FILE_ACCESS.search(line), line
    assert not FILE_ACCESS.search('name.replace("_", "-")')


# ----------------------------------------------------------------------------- sizes


def _body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> int:
    """Lines of a definition's body, its docstring not counted (nor a signature)."""
    body = node.body
    first = body[0]
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
        and len(body) > 1
    ):
        body = body[1:]
    return (node.end_lineno or body[-1].lineno) - body[0].lineno + 1


def test_modules_functions_and_classes_stay_small() -> None:
    too_big = []
    for path in _sources():
        rel = str(path.relative_to(PACKAGE))
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > MODULE_MAX:
            too_big.append(f"{rel}: {len(text.splitlines())} lines (> {MODULE_MAX})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                cap = CLASS_MAX if isinstance(node, ast.ClassDef) else FUNCTION_MAX
                if _body_lines(node) > cap:
                    too_big.append(f"{rel}:{node.lineno} {node.name}: {_body_lines(node)} > {cap}")
    assert too_big == []


# ----------------------------------------------------------------------------- tests


def test_tests_mirror_the_package() -> None:
    """Each library module has its test file, named after its path: charrnn/run/plan.py is
    tested in tests/test_run_plan.py (a top module: tests/test_units.py)."""
    tests = {p.stem for p in (PACKAGE.parent / "tests").glob("test_*.py")}
    missing = []
    for path in _sources():
        rel = path.relative_to(PACKAGE).with_suffix("")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        defines = any(isinstance(n, ast.FunctionDef | ast.ClassDef) for n in tree.body)
        if rel.name in ("__init__", "__main__", "errors") or not defines:
            continue  # the package's face, exception classes, constants only
        want = "test_" + "_".join(rel.parts)
        if want not in tests:
            missing.append(f"{rel}.py -> tests/{want}.py")
    assert missing == []
