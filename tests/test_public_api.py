"""The curated public API: `__all__` is sorted, complete and importable."""

from __future__ import annotations

import importlib
import inspect

import llmroute


def test_all_is_sorted_and_unique() -> None:
    assert list(llmroute.__all__) == sorted(set(llmroute.__all__))


def test_all_names_exist() -> None:
    missing = [name for name in llmroute.__all__ if not hasattr(llmroute, name)]
    assert missing == []


def test_every_public_class_and_function_is_exported() -> None:
    public = {
        name
        for name, value in vars(llmroute).items()
        if not name.startswith("_") and (inspect.isclass(value) or inspect.isfunction(value))
    }
    assert public - set(llmroute.__all__) == set()


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
    assert exported == set(TREE) | {"LLMRouteError"}
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
