"""The architecture, checked: imports go down the data path, never up, never in a circle.

Layers, lowest first: the shared base of `models` (config, diagnosis, errors, runs), then `models.prices`,
`models.dataset`, `models.training`, `models.registry`, `models.monitoring`; the command line
(`models/cli.py`, `models/__main__.py`) on top of those; `tasks`
over `models`; `flows` over `tasks`. A module may import its own layer and the layers below. `models`
never imports prefect, `tasks` or `flows`.

The graph is read from the source with `ast`, every import statement counted, those inside functions
too (a lazy import is still a dependency), except under `if __name__ == "__main__":` (that block runs
only in the module executed as a script, which Python imports as `__main__`, not under its own name)
and under `if TYPE_CHECKING:` (never executed).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("models", "tasks", "flows")
LAYERS = (
    ("models.config", "models.diagnosis", "models.errors", "models.runs"),
    ("models.prices",),
    ("models.dataset",),
    ("models.training",),
    ("models.registry",),
    ("models.monitoring",),
    ("models.cli", "models.__main__"),
    ("tasks",),
    ("flows",),
)
FORBIDDEN_IN_MODELS = ("prefect", "prefect_dask", "tasks", "flows")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _skipped_block(node: ast.If) -> bool:
    test = node.test
    if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
        return True
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators)
    )


def imports_of(path: Path, name: str) -> set[str]:
    """Every module `path` imports (absolute names; `from a import b` counts `a.b` when `b` is one)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _skipped_block(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def project_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph = {}
    for name, path in files.items():
        targets = imports_of(path, name)
        graph[name] = {t for t in targets if t in files and t != name}
        graph[name] |= {t for t in targets if t.split(".")[0] in FORBIDDEN_IN_MODELS and t not in files}
    return graph


def layer(module: str) -> int:
    for rank, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    if module == "models":
        return 0  # the package itself: a docstring
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS")


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt in graph and not state.get(nxt):
                found = walk(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if not state.get(node):
            found = walk(node)
            if found:
                return found
    return None


GRAPH = project_graph()


def test_the_import_graph_has_no_cycle():
    cycle = find_cycle({m: {t for t in ts if t in GRAPH} for m, ts in GRAPH.items()})
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_go_down_the_layers_only(module):
    upward = sorted(t for t in GRAPH[module] if t in GRAPH and layer(t) > layer(module))
    assert not upward, f"{module} (layer {layer(module)}) imports higher layers: {upward}"


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.split(".")[0] == "models"))
def test_models_never_imports_prefect_tasks_or_flows(module):
    bad = sorted(t for t in GRAPH[module] if t.split(".")[0] in FORBIDDEN_IN_MODELS)
    assert not bad, (
        f"{module} imports {bad}: models/ is the library, orchestration stays in tasks/ and flows/"
    )


def test_the_checker_sees_what_it_must():
    """The checks above are only as good as the graph: prove it catches each kind of violation."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert layer("models.training.gate") > layer("models.dataset.audit") > layer("models.prices.store")
    assert (
        layer("flows.cli") > layer("tasks.train") > layer("models.cli") > layer("models.monitoring.scorecard")
    )
    assert layer("models.monitoring.scorecard") > layer("models.registry.local")
    # Lazy imports inside functions count; `__main__` guards and TYPE_CHECKING blocks do not.
    assert "models.registry.predictor" in GRAPH["models.registry.local"]
    assert "flows.retrain" in GRAPH["flows.cli"] and "flows.cli" not in GRAPH["flows.retrain"]
    assert "prefect" not in GRAPH["flows.common"]


def test_every_feature_name_the_config_accepts_has_a_function():
    from models.config import FEATURE_NAMES
    from models.dataset.features import FEATURES

    assert tuple(FEATURES) == FEATURE_NAMES
