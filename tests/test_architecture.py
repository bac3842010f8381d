"""The package's shape, checked with `ast`: no import circles, no reaching into private names.

Three rules (issue 13):

1. No import circle among llmroute's modules, of any length. Every import
   counts: at module level, inside functions (lazy), under ``TYPE_CHECKING``,
   and the lazy export tables of the package ``__init__``s (`_EXPORTS`).
2. No module uses another module's private names: no ``from .x import _y``
   (unless ``_y`` is a module), and no ``obj._name`` where ``_name`` is not
   defined in the same module (``self``/``cls`` and dunders are fine).
3. No test reaches into a private attribute of the router, the catalog or the
   executor (the attributes they set on ``self``).

4. Only `_timeouts.py` calls `Task.uncancel()`.

Justified exceptions are listed with their reason in ALLOWED_*.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "llmroute"
TESTS = ROOT / "tests"

# ---------------------------------------------------------------- exceptions

#: Import circles (as sorted module tuples) with a reason to keep them.
ALLOWED_CYCLES: dict[tuple[str, ...], str] = {}

#: (importer, package) imports that reach up a layer on purpose, with a reason: left out
#: of the graph, so that they close no circle. Only imports made at call time (or for type
#: checkers) belong here.
ALLOWED_UPWARD: dict[tuple[str, str], str] = {
    ("llmroute._router", "llmroute.sdk"): (
        "router.openai_client() and friends (issue 14) serve SDK clients over the gateway "
        "application, which wraps the router: imported when first called"
    ),
    ("llmroute._sync", "llmroute.sdk"): "as llmroute._router, for the blocking Router",
}

#: (module, expression) private uses with a reason to keep them.
ALLOWED_PRIVATE: dict[tuple[str, str], str] = {
    ("llmroute.observe.otel", "opentelemetry.metrics._internal._ProxyMeterProvider"): (
        "third-party private: tells the API's no-op proxy from an installed SDK; guarded by "
        "an ImportError fallback"
    ),
}

#: (test file, attribute) reach-ins with a reason to keep them.
ALLOWED_TEST_REACH: dict[tuple[str, str], str] = {}


# ---------------------------------------------------------------- reading the package


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _package(module: str) -> str:
    return module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]


def _resolve(module: str, level: int, name: str | None) -> str:
    """The absolute name of a (relative) import's module."""
    if not level:
        return name or ""
    base = _package(module).split(".")
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def _imports(module: str, tree: ast.Module) -> Iterator[tuple[str, ast.AST]]:
    """Every llmroute module `module` imports, with the node that imports it."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            full = _resolve(module, node.level, node.module)
            for alias in node.names:
                sub = f"{full}.{alias.name}"
                yield (sub if sub in MODULES else full), node
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in node.targets
        ):  # a lazy export table: name -> relative module
            for value in ast.walk(node.value):
                if isinstance(value, ast.Constant) and str(value.value).startswith("."):
                    text = str(value.value)
                    level = len(text) - len(text.lstrip("."))
                    yield _resolve(module, level, text.lstrip(".") or None), node


def _upward(module: str, target: str) -> bool:
    """Whether `module` importing `target` is one of the ALLOWED_UPWARD imports."""
    return any(
        module == importer and (target == package or target.startswith(package + "."))
        for importer, package in ALLOWED_UPWARD
    )


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in MODULES.items():
        for target, _ in _imports(module, ast.parse(path.read_text())):
            if target in MODULES and target != module and not _upward(module, target):
                graph[module].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[tuple[str, ...]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(tuple(sorted(component)))

    for node in sorted({*graph, *(n for targets in graph.values() for n in targets)}):
        if node not in index:
            visit(node)
    return found


def _defined_private_names(tree: ast.Module) -> set[str]:
    """Every ``_name`` a module defines: functions, classes, assignments (also to
    attributes), annotated fields, parameters, ``__slots__`` entries, imports."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store | ast.Del):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)  # __slots__ entries, getattr(x, "_name") targets
    return {n for n in names if n.startswith("_")}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


#: Underscored names that are public API of the standard library.
_STDLIB_PUBLIC = {
    "_replace",
    "_asdict",
    "_fields",
    "_make",
    "_field_defaults",
    "_exit",
    "_getframe",
}


def _private_uses() -> set[tuple[str, str]]:
    """(module, expression) for every use of another module's private name."""
    found = set()
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        own = _defined_private_names(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                full = _resolve(module, node.level, node.module)
                for alias in node.names:
                    if _private(alias.name) and f"{full}.{alias.name}" not in MODULES:
                        found.add((module, f"{'.' * node.level}{node.module or ''}.{alias.name}"))
            elif isinstance(node, ast.Attribute) and _private(node.attr):
                owner = node.value
                if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                    continue
                if node.attr in own or node.attr in _STDLIB_PUBLIC:
                    continue
                found.add((module, ast.unparse(node)))
    return found


def _guarded_attributes() -> set[str]:
    """The private attributes the router, its facades, the catalog and the executor set."""
    classes = {
        "AsyncRouter", "AsyncCompletions", "AsyncChat", "AsyncEmbeddings", "AsyncModels",
        "Router", "Completions", "Chat", "Embeddings", "Models", "Catalog", "Executor",
    }  # fmt: skip
    files = ["_router.py", "_sync.py", "routing/catalog.py", "pipeline/executor.py"]
    names = set()
    for name in files:
        for node in ast.walk(ast.parse((SRC / name).read_text())):
            if isinstance(node, ast.ClassDef) and node.name in classes:
                for inner in ast.walk(node):
                    if (
                        isinstance(inner, ast.Attribute)
                        and isinstance(inner.ctx, ast.Store)
                        and isinstance(inner.value, ast.Name)
                        and inner.value.id == "self"
                        and _private(inner.attr)
                    ):
                        names.add(inner.attr)
    return names


def _test_reach_ins() -> dict[tuple[str, str], list[int]]:
    guarded = _guarded_attributes()
    found: dict[tuple[str, str], list[int]] = defaultdict(list)
    for path in sorted(TESTS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in guarded
                and not (isinstance(node.value, ast.Name) and node.value.id == "self")
            ):
                found[(path.name, node.attr)].append(node.lineno)
    return found


# ---------------------------------------------------------------- the rules


def test_no_import_circles() -> None:
    cycles = set(_cycles(_graph())) - set(ALLOWED_CYCLES)
    assert sorted(cycles) == [], "import circles (see the module docstring)"


def test_no_module_uses_another_modules_private_names() -> None:
    uses = _private_uses() - set(ALLOWED_PRIVATE)
    assert sorted(uses) == [], "give these a public name, or list them with a reason"


def test_no_test_reaches_into_the_router_catalog_or_executor() -> None:
    reach = _test_reach_ins()
    unexpected = {k: v for k, v in reach.items() if k not in ALLOWED_TEST_REACH}
    assert unexpected == {}, "use a public seam (add_stage, routes(), cool_down, ...)"


def test_the_checks_see_what_they_should() -> None:
    """The walkers find a known circle, a private use and a reach-in (else they check nothing)."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [("a", "b", "c")]
    assert "_catalog" in _guarded_attributes() and "_stages" in _guarded_attributes()
    assert _defined_private_names(ast.parse("class A:\n    __slots__ = ('_x',)\n")) >= {"_x"}
    graph = _graph()
    assert "llmroute._router" in graph["llmroute"]  # the lazy table counts
    assert "llmroute._errors" in graph["llmroute"]


def test_only_the_timeouts_module_uncancels_tasks() -> None:
    """`Task.uncancel()` accounting is the subtlest part of asyncio: one module owns it
    (`_timeouts.py`, checked against `asyncio.timeout` in tests/test_timeouts.py)."""
    callers = sorted(
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if any(
            isinstance(node, ast.Attribute) and node.attr == "uncancel"
            for node in ast.walk(ast.parse(path.read_text()))
        )
    )
    assert callers == ["_timeouts.py"]
