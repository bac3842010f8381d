"""The curated public API: `__all__` is sorted, complete and importable."""

from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import llmroute

#: Every package whose names load on first use (`llmroute._lazy`).
LAZY_PACKAGES = [
    "llmroute",
    "llmroute.cache",
    "llmroute.experiments",
    "llmroute.limits",
    "llmroute.observe",
    "llmroute.sdk",
    "llmroute.server",
]


def _type_checking_imports(package: str) -> dict[str, str]:
    """name -> module of the ``if TYPE_CHECKING:`` imports of `package`'s ``__init__``."""
    path = Path(importlib.import_module(package).__file__ or "")
    found: dict[str, str] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom), ast.unparse(imp)
                for alias in imp.names:
                    assert alias.asname == alias.name, f"{alias.name}: use 'import X as X'"
                    found[alias.name] = "." * imp.level + (imp.module or "")
    return found


def test_all_is_sorted_and_unique() -> None:
    for package in LAZY_PACKAGES:
        names = importlib.import_module(package).__all__
        assert list(names) == sorted(set(names)), package


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_the_export_table_is_all_and_what_type_checkers_see(package: str) -> None:
    """`__all__` is the lazy table plus the eager names, and the TYPE_CHECKING block
    imports exactly the table's names from the table's modules (else mypy users would
    not see a name, or see it from elsewhere). Checked without loading any name."""
    module = importlib.import_module(package)
    table: dict[str, str] = vars(module)["_EXPORTS"]
    eager = {n for n in module.__all__ if n in vars(module)} - set(table)
    assert set(module.__all__) == set(table) | eager
    assert _type_checking_imports(package) == table


def test_the_responses_package_lists_each_name_once() -> None:
    """`llmroute.responses` exports its `types` module's names by that module's `__all__`,
    not by a second list of them (issue 16)."""
    import llmroute.responses
    from llmroute.responses import types

    path = Path(llmroute.responses.__file__ or "")
    literal: list[str] = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "__all__":
            literal = [ast.literal_eval(e) for e in node.value.elts]  # type: ignore[attr-defined]
    assert literal and not set(literal) & set(types.__all__)
    assert sorted(llmroute.responses.__all__) == sorted({*literal, *types.__all__})
    assert all(hasattr(llmroute.responses, name) for name in llmroute.responses.__all__)


def test_all_names_exist() -> None:
    for package in LAZY_PACKAGES:
        module = importlib.import_module(package)
        missing = [name for name in module.__all__ if not hasattr(module, name)]
        assert missing == [], package


def test_every_public_class_and_function_is_exported() -> None:
    for name in llmroute.__all__:
        getattr(llmroute, name)  # load every lazy name, whatever ran before
    public = {
        name
        for name, value in vars(llmroute).items()
        if not name.startswith("_") and (inspect.isclass(value) or inspect.isfunction(value))
    }
    assert public - set(llmroute.__all__) == set()


def test_exports_carry_their_public_path() -> None:
    """As httpx: reprs and pickles say `llmroute.Router`. Classes with string annotations
    (dataclasses, pydantic models) keep their defining module, where pydantic and
    `typing.get_type_hints` resolve those annotations."""
    for package in LAZY_PACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            value = getattr(module, name)
            if not (inspect.isclass(value) or inspect.isfunction(value)):
                continue
            own = vars(value).get("__annotations__", {}) if inspect.isclass(value) else {}
            kept = "__pydantic_fields__" in vars(value) or any(
                isinstance(a, str) for a in own.values()
            )
            if kept:
                assert value.__module__.startswith(package + "."), name
            else:
                assert value.__module__ in LAZY_PACKAGES and package.startswith(value.__module__), (
                    name
                )
    assert repr(llmroute.Router) == "<class 'llmroute.Router'>"
    assert llmroute.QuotaExceeded.__module__ == "llmroute"


def test_import_loads_only_the_errors() -> None:
    """`import llmroute` stays cheap: the router and pydantic load on first use."""
    code = "import sys, llmroute; print(sorted(m for m in sys.modules if m.startswith(('llmroute', 'pydantic'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert (
        out.stdout.strip()
        == "['llmroute', 'llmroute._errors', 'llmroute._lazy', 'llmroute._version']"
    )


def test_every_export_is_documented() -> None:
    undocumented = [
        name
        for name in llmroute.__all__
        if name != "__version__" and not inspect.getdoc(getattr(llmroute, name))
    ]
    assert undocumented == []


#: The error tree of `_errors.py`'s docstring, as (class, parent) pairs.
TREE = {
    "ConfigError": "LLMRouteError",
    "RequestError": "LLMRouteError",
    "UnknownModel": "RequestError",
    "ResponseNotFound": "RequestError",
    "UnknownRequest": "RequestError",
    "ProviderError": "LLMRouteError",
    "RateLimited": "ProviderError",
    "ProviderUnavailable": "ProviderError",
    "MalformedResponse": "ProviderUnavailable",
    "ProviderTimeout": "ProviderError",
    "ProviderConnectionError": "ProviderError",
    "AuthenticationError": "ProviderError",
    "PermissionDenied": "ProviderError",
    "ModelNotFound": "ProviderError",
    "QuotaExceeded": "ProviderError",
    "ContextLengthExceeded": "ProviderError",
    "ContentFiltered": "ProviderError",
    "InvalidRequest": "ProviderError",
    "LocalRateLimitExceeded": "LLMRouteError",
    "BudgetExceeded": "LLMRouteError",
    "StreamInterrupted": "LLMRouteError",
    "LengthFinishReasonError": "LLMRouteError",
    "ContentFilterFinishReasonError": "LLMRouteError",
    "AllTargetsFailed": "LLMRouteError",
}
RETRYABLE = {
    "RateLimited",
    "ProviderUnavailable",
    "MalformedResponse",
    "ProviderTimeout",
    "ProviderConnectionError",
}


def test_error_tree_is_the_documented_one() -> None:
    exported = {
        name
        for name in llmroute.__all__
        if isinstance(value := getattr(llmroute, name), type) and issubclass(value, Exception)
    }
    # The transport errors are the engines' own tree (docs/providers.md): the driver turns
    # them into provider errors, so they never reach a caller as such.
    transport = {"TransportError", "ConnectFailed", "TimedOut", "ConnectionLost"}
    assert exported == set(TREE) | {"LLMRouteError"} | transport
    assert all(issubclass(getattr(llmroute, n), llmroute.TransportError) for n in transport)
    assert not any(issubclass(getattr(llmroute, n), llmroute.LLMRouteError) for n in transport)
    for name, parent in TREE.items():
        assert getattr(llmroute, name).__bases__ == (getattr(llmroute, parent),), name
    doc = inspect.getdoc(importlib.import_module("llmroute._errors")) or ""
    for name in TREE:
        assert f"── {name} " in doc, name


def test_retryable_is_said_by_the_branch() -> None:
    """No subclass turns `retryable` back: `except RateLimited` means "wait and retry"."""
    for name in TREE:
        cls = getattr(llmroute, name)
        if issubclass(cls, llmroute.ProviderError):
            assert cls.retryable is (name in RETRYABLE), name
    assert not issubclass(llmroute.QuotaExceeded, llmroute.RateLimited)
