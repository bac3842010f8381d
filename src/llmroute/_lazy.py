"""Lazy exports (PEP 562): one table per package, from which `__all__` is derived.

`import llmroute` loads only the error classes (about 8 ms); the router,
pydantic models and the HTTP engine load when a name is first used (about
400 ms more). A package that exports lazily lists each name once, in a table
of name -> defining module, and gets its `__getattr__`, `__dir__` and
`__all__` from `exports()`. For type checkers the package also imports each
lazy name under ``if TYPE_CHECKING:`` in the ``import X as X`` form (an
explicit re-export, since `__all__` is not a literal); tests/test_public_api.py
checks that this block and the table name the same things.

Each exported class and function gets the public path as its `__module__`
when it is first loaded (``llmroute.Router``, not ``llmroute._sync.Router``),
as httpx does, so reprs, tracebacks and pickles show the name a user imports.
Classes whose annotations are strings keep their defining module: pydantic
(for a deferred build or a `TypeAdapter`) and `typing.get_type_hints` resolve
those strings in the namespace of `__module__`, which the public package does
not hold.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["exports", "publish"]


def publish(value: object, package: str) -> None:
    """Give `value` the public path `package` as its `__module__`, when that is safe.

    Only llmroute's own classes and functions defined below `package` are
    changed, so an object exported by two packages ends with the shorter path.
    """
    module = getattr(value, "__module__", None)
    if not isinstance(module, str) or not module.startswith(package + "."):
        return
    if isinstance(value, type):
        if "__pydantic_fields__" in vars(value) or _string_annotations(value):
            return
    elif not isinstance(value, types.FunctionType):
        return  # type aliases, constants
    value.__module__ = package


def _string_annotations(cls: type) -> bool:
    annotations = vars(cls).get("__annotations__", {})
    return any(isinstance(a, str) for a in annotations.values())


def exports(
    package: str, table: Mapping[str, str], eager: Iterable[str] = ()
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """`__getattr__`, `__dir__` and `__all__` for `package`.

    Args:
        package: the package's `__name__`.
        table: each lazy name and the module (relative to `package`) that defines it.
        eager: the names the package imports itself; they are published now.
    """
    names = sorted({*table, *eager})
    namespace = vars(sys.modules[package])
    for name in eager:
        publish(namespace[name], package)

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        publish(value, package)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return list(names)

    return __getattr__, __dir__, names
