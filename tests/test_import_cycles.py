"""No import cycles between the modules of vega3d/, components/ and pipelines/.

Every import counts, also those inside functions (a lazy import still ties two modules together); imports under
``if TYPE_CHECKING:`` do not (they never run). A package's ``__init__`` is not counted as imported by its
submodules' imports (Python imports it, but no module depends on its content that way).
"""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTS = ("vega3d", "components", "pipelines")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports(node: ast.AST, package: str) -> set[str]:
    """Every name imported under ``node`` (``a.b`` and, for ``from a import b``, ``a`` and ``a.b``)."""
    if isinstance(node, ast.If) and _is_type_checking(node):
        return set()
    found: set[str] = set()
    if isinstance(node, ast.Import):
        found.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            parts = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join(parts + ([base] if base else []))
        found.add(base)
        found.update(f"{base}.{alias.name}" for alias in node.names)
    for child in ast.iter_child_nodes(node):
        found |= _imports(child, package)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports."""
    files = {_module_name(p): p for root in ROOTS for p in (REPO / root).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = _imports(ast.parse(path.read_text()), package)
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def strongconnect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                strongconnect(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            strongconnect(node)
    return cycles


def test_the_graph_sees_real_imports():
    graph = import_graph()
    assert "vega3d.params" in graph["vega3d.cli.options"]  # a module-level import
    assert "vega3d.evaluation.run" in graph["vega3d.cli.eval"]  # an import inside a function
    assert "vega3d.cli.submit" in graph["vega3d.cli.pipeline"]


def test_no_import_cycles():
    assert find_cycles(import_graph()) == []
